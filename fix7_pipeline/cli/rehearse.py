"""`fix7 rehearse`: every rehearsal runs the Dagster job `fix7_rehearsal` through the instance.

Exit codes: 0 REHEARSAL_PASSED, 1 REHEARSAL_FAILED, 2 usage error,
3 NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE, 130 REHEARSAL_INTERRUPTED by SIGINT (Ctrl-C),
143 REHEARSAL_INTERRUPTED by SIGTERM. Interrupted, the running stage stops within seconds
(pg_restore/psql killed, the running statement ended), the throwaways are dropped, the packet is
sealed REHEARSAL_INTERRUPTED (not a judgment of the clone) and one line names the stage and the
evidence. No traceback ever reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from fix7_pipeline.cli import flags
from fix7_pipeline.core import interrupts
from fix7_pipeline.core.errors import (EXIT_INTERRUPTED, EXIT_NO_SAFE_CLONE, EXIT_PASSED, EXIT_REHEARSAL_FAILED,
                                       EXIT_USAGE, Fix7Error)
from fix7_pipeline.core.model import INTERRUPTED
from fix7_pipeline.core.report import REHEARSAL_INTERRUPTED

VERDICT_EXIT = {
    "REHEARSAL_PASSED": EXIT_PASSED,
    "REHEARSAL_FAILED": EXIT_REHEARSAL_FAILED,
    "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE": EXIT_NO_SAFE_CLONE,
    "REHEARSAL_INTERRUPTED": EXIT_INTERRUPTED,  # 128 + the signal: 130 SIGINT, 143 SIGTERM
}

# What the run has shown so far, for the one line an interruption prints.
_PROGRESS: dict = {}


class RunInterrupted(Fix7Error):
    """Interrupted before the rehearsal wrote anything: one line, exit 128 + signal."""

    def __init__(self, signum: int | None, message: str):
        super().__init__(message, interrupts.exit_code(signum), rule="interrupted")


class UsageError(Fix7Error):
    def __init__(self, message: str):
        super().__init__(message, EXIT_USAGE, rule="usage")


def _print_stage(stage, outcome, duration, evidence_dir) -> None:
    from fix7_pipeline.core.escape import visible

    reason = visible(outcome.reason)
    if len(reason) > 160:
        reason = reason[:157] + "..."
    print(f"  {stage:<16} {outcome.status:<8} {duration:7.2f}s  {reason}", flush=True)
    summary = outcome.details.get("impact_summary") or {}
    for breach in summary.get("breaches", [])[:5]:  # each breached threshold in full: it fails the rehearsal
        print(f"  {'':<16} {'breach':<8} {'':>8}  {visible(breach)}", flush=True)


def server_url(url: str | None) -> str:
    """The server URL for run config; a password in it moves to the process environment, never to storage.

    The password may be in the userinfo, the query string (?password=) or libpq key=value settings; a URL
    that cannot be read is a usage error (exit 2) before any run, and its message never quotes the URL.
    """
    from fix7_pipeline.core.server import PASSWORD_ENV, split_server_password

    if not url:
        return ""
    clean, password = split_server_password(url)
    if password:
        os.environ[PASSWORD_ENV] = password
    return clean


def validate_request(config: dict, *, junit: str | None = None) -> None:
    """Usage errors (exit 2) found before any Dagster run is created: change files and the evidence directory.

    An operator-named evidence directory must be a writable directory holding no packet file (and not the
    JUnit report about to be written): a sealed packet is never overwritten.
    """
    from fix7_pipeline.core import change
    from fix7_pipeline.core.report import evidence_dir_problem

    for label in ("apply", "rollback"):
        change.read_change(config[f"{label}_sql"], label)
    if config.get("evidence_dir"):
        also = (Path(junit).expanduser().resolve(),) if junit else ()
        problem = evidence_dir_problem(Path(config["evidence_dir"]), also=also)
        if problem:
            raise UsageError(problem)


def request_config(args: argparse.Namespace) -> dict:
    """The job's run config for clone_intake, from the CLI arguments (the flags are the request schema's)."""
    config = flags.request_config(args)
    config["server_url"] = server_url(config.get("server_url"))
    return config


def run_rehearsal(config: dict, *, instance=None, echo: bool = True, tags: dict | None = None,
                  junit: str | None = None) -> dict:
    """Run the fix7_rehearsal job through the Dagster instance; returns verdict, evidence dir and run id."""
    from fix7_pipeline.core import rehearsal
    from fix7_pipeline.core.report import EvidencePacket

    validate_request(config, junit=junit)  # a usage error is found before any run

    if instance is None:
        from fix7_pipeline.instance import get_instance

        instance = get_instance()
    from fix7_pipeline.defs.partitions import rehearsal_key
    from fix7_pipeline.launch import run_job_here

    seen: dict = {}

    def listener(stage, outcome, duration, evidence_dir):
        seen["evidence_dir"] = _PROGRESS["evidence_dir"] = evidence_dir
        if echo and outcome.status != INTERRUPTED:  # an interruption is the one line main() prints
            _print_stage(stage, outcome, duration, evidence_dir)

    rehearsal.STAGE_LISTENERS.append(listener)
    position = interrupts.mark()
    result = None
    try:
        # A run of the code location's job (the UI's Runs tab and Overview list it), keyed as a rehearsal
        # partition of its own, executed here.
        result = run_job_here(
            instance, {"ops": {"clone_intake": {"config": config}},
                       "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            {"fix7/source": "cli", **(tags or {})}, partition_key=rehearsal_key())
    except BaseException as e:  # Dagster handles interruptions inside the run; this is one outside it
        if not interrupts.is_interrupt(e):
            raise
        signum = interrupts.signal_of(e, position)
    else:
        signum = interrupts.signal_of(None, position)
    finally:
        rehearsal.STAGE_LISTENERS.remove(listener)
    run_id = result.run_id if result is not None else None
    evidence_dir = seen.get("evidence_dir")
    interrupted = signum is not None or result is None  # a signal, even one Dagster swallowed
    if not evidence_dir:
        if interrupted:
            raise RunInterrupted(signum, f"interrupted{_by(signum)} during intake; nothing was created and no "
                                         "evidence was written")
        raise Fix7Error("The rehearsal stopped before the intake stage could record anything; see the Dagster "
                        f"run {run_id} in `fix7 ui`.", EXIT_NO_SAFE_CLONE, rule="no_intake")
    packet = EvidencePacket.load(Path(evidence_dir))
    verdict = packet.data.get("verdict")
    if interrupted or verdict == REHEARSAL_INTERRUPTED:
        if not verdict:  # between two stages: no stage could record it
            with interrupts.deferred(reraise=False):
                rehearsal.abandon(_request(config), evidence_dir, signum)
            packet = EvidencePacket.load(Path(evidence_dir))
            verdict = packet.data.get("verdict")
        from fix7_pipeline.defs.stages import record_chain_witness

        record_chain_witness(instance, run_id or packet.data.get("run_id"))
        _report_verdict(instance, run_id)
        return {"verdict": verdict, "evidence_dir": evidence_dir, "run_id": run_id, "success": False,
                "packet": packet.data, "interrupted": True, "signal": signum}
    if not verdict:  # no step sealed it: seal it here, and give Dagster its record of the seal as well
        from fix7_pipeline.core.audit import witness
        from fix7_pipeline.defs.stages import record_witness

        verdict = packet.finalize(incomplete_reason="the Dagster run ended early")
        record_witness(instance, run_id, witness(packet.sealed))
    _report_verdict(instance, run_id)
    return {"verdict": verdict, "evidence_dir": evidence_dir, "run_id": run_id,
            "success": result.success, "packet": packet.data}


def _report_verdict(instance, run_id: str | None) -> None:
    """The verdict as the run's last event (the run page opens there); never masks the verdict itself."""
    from fix7_pipeline.defs.stages import report_verdict

    try:
        with interrupts.deferred(reraise=False):
            report_verdict(instance, run_id)
    except Exception:  # noqa: BLE001 - the tags and the packet still carry the verdict
        pass


def _request(config: dict):
    from dataclasses import fields

    from fix7_pipeline.core.rehearsal import RehearsalRequest

    names = {f.name for f in fields(RehearsalRequest)}
    return RehearsalRequest(**{k: v for k, v in config.items() if k in names})


def _by(signum: int | None) -> str:
    name = interrupts.signal_name(signum)
    return f" ({name})" if name else ""


def interrupted_line(out: dict) -> str:
    """The one line an interrupted rehearsal prints: where, what became of the throwaways, the evidence."""
    packet = out.get("packet") or {}
    info = packet.get("interrupted") or {}
    if packet.get("verdict") == REHEARSAL_INTERRUPTED:
        where = f"{'before' if info.get('before_start') else 'during'} {info.get('stage') or 'the run'}"
    else:
        where = f"after the verdict {packet.get('verdict')} was sealed"
    tw = packet.get("throwaways") or {}
    if tw.get("drop_error"):
        fate = f"throwaways NOT all dropped ({tw['drop_error']}): the next run's sweep drops them"
    elif tw.get("kept"):
        fate = "throwaways kept (--keep-databases): drop them by hand"
    elif tw.get("planned") or tw.get("created"):
        fate = "throwaways dropped"
    else:
        fate = "no throwaway had been created"
    return f"fix7: interrupted{_by(out.get('signal'))} {where}; {fate}; evidence: {out['evidence_dir']}"


@contextmanager
def _stderr_held():
    """fd 2 goes to a temporary file while the job runs, and to the terminal when it ends, unless the run was
    interrupted: then it holds only the noise of Dagster's helper processes hit by the same Ctrl-C (their
    KeyboardInterrupt tracebacks), which is dropped so the interruption is one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    held = tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)
    state = {"release": True}
    try:
        yield state
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if state["release"]:
            held.seek(0)
            for chunk in iter(lambda: held.read(1 << 16), b""):
                os.write(2, chunk)
        held.close()


def _rehearse(config: dict, args: argparse.Namespace, *, echo: bool) -> int:
    with _stderr_held() as held:
        try:
            out = run_rehearsal(config, echo=echo, junit=getattr(args, "junit", None))
        except BaseException as e:
            held["release"] = not (isinstance(e, RunInterrupted) or interrupts.is_interrupt(e))
            raise
        held["release"] = not out.get("interrupted")
    return _finish(out, args)


def cmd_rehearse(args: argparse.Namespace) -> int:
    from fix7_pipeline.core.escape import visible

    config = request_config(args)
    if not args.json:
        print(f"fix7 rehearse: {visible(config['clone_path']) or '(no clone)'}", flush=True)
    return _rehearse(config, args, echo=not args.json)


def _finish(out: dict, args: argparse.Namespace) -> int:
    verdict = out["verdict"]
    if getattr(args, "junit", None):
        from fix7_pipeline.core.junit import write_junit

        write_junit(Path(args.junit), out["packet"])
    if out.get("interrupted"):
        if getattr(args, "json", False):
            print(json.dumps({"verdict": verdict, "evidence_dir": out["evidence_dir"], "run_id": out["run_id"],
                              "interrupted": out["packet"].get("interrupted")}))
        print(interrupted_line(out), file=sys.stderr, flush=True)
        return interrupts.exit_code(out.get("signal"))
    if getattr(args, "json", False):
        print(json.dumps({"verdict": verdict, "evidence_dir": out["evidence_dir"], "run_id": out["run_id"]}))
    else:
        from fix7_pipeline.core.escape import visible

        print(f"verdict: {verdict}")
        print(f"evidence: {visible(out['evidence_dir'])}")
        print(f"dagster run: {out['run_id']}")
    return VERDICT_EXIT.get(verdict, EXIT_NO_SAFE_CLONE)


def _add_rehearse_args(p: argparse.ArgumentParser) -> None:
    flags.add_request_flags(p)
    p.add_argument("--junit", metavar="FILE", help="write one JUnit test case per stage")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the stage lines")


def register(subparsers) -> None:
    p = subparsers.add_parser("rehearse", help="rehearse a change on an operator's dump")
    _add_rehearse_args(p)
    p.set_defaults(func=cmd_rehearse)
