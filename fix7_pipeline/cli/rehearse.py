"""`fix7 rehearse`: every rehearsal runs the Dagster job `fix7_rehearsal` through the instance.

Exit codes: 0 REHEARSAL_PASSED, 1 REHEARSAL_FAILED, 2 usage error,
3 NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE, 4 REHEARSAL_SERVER_FAULT (the rehearsal server or its login failed;
nothing judged), 130 REHEARSAL_INTERRUPTED by SIGINT (Ctrl-C), 143 REHEARSAL_INTERRUPTED by SIGTERM,
74 REHEARSAL_NOT_JUDGED when the evidence disk filled (ENOSPC). Interrupted, the running stage stops within
seconds (pg_restore/psql killed, the running statement ended), the throwaways are dropped, the packet is sealed
REHEARSAL_INTERRUPTED (not a judgment of the clone) and one line names the stage and the evidence. No traceback
ever reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fix7_pipeline.cli import flags
from fix7_pipeline.core.run import interrupts
from fix7_pipeline.core.shared.environment import set_environment
from fix7_pipeline.core.shared.errors import (EXIT_INTERRUPTED, EXIT_NO_SAFE_CLONE, EXIT_PASSED, EXIT_REHEARSAL_FAILED,
                                              EXIT_SERVER_FAULT, EXIT_USAGE, Fix7Error)
from fix7_pipeline.core.evidence.packet_files import EXIT_EVIDENCE_NOT_WRITTEN
from fix7_pipeline.core.evidence.report import REHEARSAL_INTERRUPTED

VERDICT_EXIT = {
    "REHEARSAL_PASSED": EXIT_PASSED,
    "REHEARSAL_FAILED": EXIT_REHEARSAL_FAILED,
    "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE": EXIT_NO_SAFE_CLONE,
    "REHEARSAL_INTERRUPTED": EXIT_INTERRUPTED,  # 128 + the signal: 130 SIGINT, 143 SIGTERM
    "REHEARSAL_SERVER_FAULT": EXIT_SERVER_FAULT,
    "REHEARSAL_NOT_JUDGED": EXIT_EVIDENCE_NOT_WRITTEN,  # 74: the evidence disk filled; the cause is printed
}

@dataclass
class Progress:
    """What the run has shown so far, for the one line an interruption prints (main passes it down)."""

    evidence_dir: str | None = None




class RunInterrupted(Fix7Error):
    """Interrupted before the rehearsal wrote anything: one line, exit 128 + signal."""

    def __init__(self, signum: int | None, message: str):
        super().__init__(message, interrupts.exit_code(signum), rule="interrupted")


class UsageError(Fix7Error):
    def __init__(self, message: str):
        super().__init__(message, EXIT_USAGE, rule="usage")


def _print_stage(stage: str, md: dict) -> None:
    """One stage's line, from the metadata of its asset's materialization (defs/stages.py)."""
    from fix7_pipeline.core.shared.escape import visible
    from fix7_pipeline.defs.stages import BREACHES_KEY, DURATION_KEY

    reason = visible(md.get("reason") or "")
    if len(reason) > 160:
        reason = reason[:157] + "..."
    print(f"  {stage:<16} {visible(md.get('status')):<8} {float(md.get(DURATION_KEY) or 0.0):7.2f}s  {reason}",
          flush=True)
    for breach in md.get(BREACHES_KEY) or []:  # each breached threshold in full: it fails the rehearsal
        print(f"  {'':<16} {'breach':<8} {'':>8}  {visible(breach)}", flush=True)


class RunFollower:
    """Follows one Dagster run through its own event log: each stage is one line, from its asset's
    materialization or (isolation, sanitization, schema_shape) from its last evaluated gate's check result.

    Registered with `instance.add_event_listener(run_id, ...)`, so it sees each event as Dagster stores it;
    `on_stage(stage, metadata, evidence_dir)` (tests) runs after each stage's line, before the next stage.
    """

    def __init__(self, *, echo: bool, progress: Progress, on_stage=None):
        self.echo, self.progress, self.on_stage = echo, progress, on_stage
        self.stages: list[str] = []

    def __call__(self, entry) -> None:
        from fix7_pipeline.defs.stages import STAGE_KEY

        event = entry.dagster_event
        if event is None:
            return
        if event.event_type_value == "ASSET_MATERIALIZATION":
            carried = event.event_specific_data.materialization.metadata
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":  # a clone gate carries its stage's line
            carried = event.event_specific_data.metadata
        else:
            return
        md = {k: v.value for k, v in carried.items()}
        stage = md.get(STAGE_KEY)
        if not stage:
            return  # evidence_packet: the verdict is read from the run's tags
        if md.get("evidence_dir"):
            self.progress.evidence_dir = str(md["evidence_dir"])
        self.stages.append(stage)
        if self.echo:
            _print_stage(stage, md)
        if self.on_stage is not None:
            self.on_stage(stage, md, self.progress.evidence_dir)

def server_url(url: str | None) -> str:
    """The server URL for run config; a password in it moves to the process environment, never to storage.

    The password may be in the userinfo, the query string (?password=) or libpq key=value settings; a URL
    that cannot be read is a usage error (exit 2) before any run, and its message never quotes the URL.
    """
    from fix7_pipeline.core.postgres.server import PASSWORD_ENV
    from fix7_pipeline.core.postgres.server_urls import split_server_password

    if not url:
        return ""
    clean, password = split_server_password(url)
    if password:
        set_environment({PASSWORD_ENV: password})
    return clean


def validate_request(config: dict, *, junit: str | None = None) -> None:
    """Usage errors (exit 2) found before any Dagster run is created: change files and the evidence directory.

    The change files are checked without being read (intake reads each once; what only their text shows, not
    UTF-8 or no statement, is intake's refusal, which `_finish` reports as the usage error it is). An
    operator-named evidence directory must be a writable directory holding no packet file (and not the
    JUnit report about to be written): a sealed packet is never overwritten.
    """
    from fix7_pipeline.core.change import change_sql as change
    from fix7_pipeline.core.evidence.evidence_dir import evidence_dir_problem

    for label in ("apply", "rollback"):
        change.check_change_path(config[f"{label}_sql"], label)
    if junit:
        from fix7_pipeline.core.evidence.packet_files import output_problem

        problem = output_problem(Path(junit).expanduser())
        if problem:
            raise UsageError(f"The JUnit report {junit!r} {problem}; name a regular file (or a character device, "
                             "a FIFO or a symlink to one).")
    if config.get("evidence_dir"):
        also = (Path(junit).expanduser().resolve(),) if junit else ()
        problem = evidence_dir_problem(config["evidence_dir"], also=also)
        if problem:
            raise UsageError(problem)
    elif os.environ.get("FIX7_EVIDENCE_ROOT"):
        from fix7_pipeline.core.storage.store import root_problem

        problem = root_problem(os.environ["FIX7_EVIDENCE_ROOT"])
        if problem:
            raise UsageError(problem)


def request_config(args: argparse.Namespace) -> dict:
    """The job's run config for clone_intake, from the CLI arguments (the flags are the request schema's)."""
    config = flags.request_config(args)
    config["server_url"] = server_url(config.get("server_url"))
    return config


STORAGE_CONNECTIONS = 4  # beyond the one kept open: the run, its event writes and the follower at once


def run_rehearsal(config: dict, *, instance=None, echo: bool = True, tags: dict | None = None,
                  junit: str | None = None, progress: Progress | None = None, on_stage=None) -> dict:
    """Run the fix7_rehearsal job through the Dagster instance; returns verdict, evidence dir and run id.

    Progress and the verdict come from the run itself: each stage's line from its materialization event
    (RunFollower), the packet's folder and the verdict from the run's tags (fix7/evidence, fix7/verdict).
    The job runs in this process (Dagster's in-process executor): Ctrl-C reaches the running stage at once,
    which then drops its throwaways and seals the packet itself (core/run/interrupts.py). Under the multiprocess
    executor, which the job also runs on (test_multiprocess_e2e.py), the run worker would forward it.
    """
    from fix7_pipeline.core.evidence.report import EvidencePacket
    from fix7_pipeline.core.postgres.server import THROWAWAY_KEY_ENV
    from fix7_pipeline.defs.run_end import end_run
    from fix7_pipeline.defs.stages import PACKET_DIR_TAG

    validate_request(config, junit=junit)  # a usage error is found before any run
    progress = progress if progress is not None else Progress()
    # The secret the throwaway roles' passwords on an external server are derived from, inherited by every
    # step process: this process's own, never written anywhere (an operator's FIX7_THROWAWAY_KEY is kept).
    if not os.environ.get(THROWAWAY_KEY_ENV):
        set_environment({THROWAWAY_KEY_ENV: secrets.token_urlsafe(32)})

    if instance is None:
        from fix7_pipeline.instance import get_instance

        instance = get_instance()
    # dagster-postgres opens a new connection for every storage call (NullPool), about 400 in one rehearsal; a
    # process that runs the job holds a few open instead, as Dagster's webserver does (no statement timeout).
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=STORAGE_CONNECTIONS)
    from fix7_pipeline.defs.crashes import close_crashed_runs, host_tag
    from fix7_pipeline.defs.partitions import rehearsal_key

    close_crashed_runs(instance)  # an earlier rehearsal killed outright is closed as failed, not left running
    from fix7_pipeline.launch import run_job_here

    run_id = str(uuid.uuid4())
    instance.add_event_listener(run_id, RunFollower(echo=echo, progress=progress, on_stage=on_stage))
    position = interrupts.mark()
    result = None
    try:
        # A run of the code location's job (the UI's Runs tab and Overview list it), keyed as a rehearsal
        # partition of its own, executed here; followed through its events as Dagster stores them.
        result = run_job_here(
            instance, {"ops": {"clone_intake": {"config": config}},
                       "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            {"fix7/source": "cli", **host_tag(), **(tags or {})}, partition_key=rehearsal_key(), run_id=run_id)
    except BaseException as e:  # Dagster handles interruptions inside the run; this is one outside it
        if not interrupts.is_interrupt(e):
            raise
        signum = interrupts.signal_of(e, position)
    else:
        signum = interrupts.signal_of(None, position)
    run = instance.get_run_by_id(run_id)
    if run is None:
        run_id = None
    evidence_dir = (run.tags.get(PACKET_DIR_TAG) if run is not None else None) or progress.evidence_dir
    progress.evidence_dir = evidence_dir
    interrupted = signum is not None or result is None  # a signal, even one Dagster swallowed
    if not evidence_dir:
        if interrupted:
            raise RunInterrupted(signum, f"interrupted{by_signal(signum)} during intake; nothing was created and no "
                                         "evidence was written")
        raise Fix7Error("The rehearsal stopped before the intake stage could record anything; see the Dagster "
                        f"run {run_id} in `fix7 ui`.", EXIT_NO_SAFE_CLONE, rule="no_intake")
    packet = EvidencePacket.load(evidence_dir)  # sealed, or (no stage ended the run) the journal's view
    verdict = _tagged_verdict(dict(run.tags) if run is not None else {}, packet.data)
    interrupted = interrupted or (verdict or packet.data.get("verdict")) == REHEARSAL_INTERRUPTED
    end = end_run(instance, run_id, evidence_dir=evidence_dir, interrupted=_request(config) if interrupted else None,
                  signum=signum)
    if interrupted:
        return {"verdict": end.verdict or end.packet.get("verdict"), "evidence_dir": evidence_dir, "run_id": run_id,
                "success": False, "packet": end.packet, "interrupted": True, "signal": signum}
    verdict = _tagged_verdict(end.tags, end.packet)
    if not verdict:
        raise Fix7Error(f"The Dagster run {run_id} carries no verdict tag (fix7/verdict) although its packet in "
                        f"{evidence_dir} is sealed: Dagster's storage did not keep the seal's witness, so the "
                        "verdict is not reported. Run `fix7 audit --verify` and rehearse again.", EXIT_NO_SAFE_CLONE,
                        rule="verdict_untagged")
    return {"verdict": verdict, "evidence_dir": evidence_dir, "run_id": run_id,
            "success": result.success, "packet": end.packet}


def _tagged_verdict(tags: dict, packet: dict) -> str | None:
    """The verdict the run's tags carry (fix7/verdict, recorded when the packet was sealed).

    None when the run recorded none yet. A tag that disagrees with the sealed packet on disk fails closed:
    one of them was changed after the seal, and neither can be reported.
    """
    from fix7_pipeline.core.evidence.audit import WITNESS_PREFIX

    verdict = tags.get(WITNESS_PREFIX + "verdict") or None
    sealed = packet.get("verdict")
    if verdict and sealed and verdict != sealed:
        raise Fix7Error(f"The Dagster run's verdict tag ({verdict}) is not the verdict of its sealed evidence packet "
                        f"({sealed}): one of them was changed after the seal, so neither is reported. Run "
                        "`fix7 audit --verify` and rehearse again.", EXIT_NO_SAFE_CLONE, rule="verdict_mismatch")
    return verdict


def _request(config: dict):
    from dataclasses import fields

    from fix7_pipeline.core.run.rehearsal import RehearsalRequest

    names = {f.name for f in fields(RehearsalRequest)}
    return RehearsalRequest(**{k: v for k, v in config.items() if k in names})


def by_signal(signum: int | None) -> str:
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
    return f"fix7: interrupted{by_signal(out.get('signal'))} {where}; {fate}; evidence: {out['evidence_dir']}"


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


def rehearse_config(config: dict, args: argparse.Namespace, *, echo: bool) -> int:
    with _stderr_held() as held:
        try:
            out = run_rehearsal(config, echo=echo, junit=getattr(args, "junit", None),
                                progress=getattr(args, "progress", None))
        except BaseException as e:
            held["release"] = not (isinstance(e, RunInterrupted) or interrupts.is_interrupt(e))
            raise
        held["release"] = not out.get("interrupted")
    return _finish(out, args)


def cmd_rehearse(args: argparse.Namespace) -> int:
    from fix7_pipeline.core.shared.escape import visible

    config = request_config(args)
    if not args.json:
        print(f"fix7 rehearse: {visible(config['clone_path']) or '(no clone)'}", flush=True)
    return rehearse_config(config, args, echo=not args.json)


USAGE_RULES = ("change_file", "contract")


def _change_file_refusal(packet: dict) -> str | None:
    """A refusal of what the operator handed over besides the dump: a change file (not UTF-8, no statement,
    at intake) or a contract that cannot be read or made (at intake, or where PostgreSQL converts schema SQL
    or a dump): a usage error (exit 2), whatever else the run found."""
    for rule in USAGE_RULES:
        for stage in (packet.get("stages") or {}).values():
            found = (stage or {}).get("findings") or []
            message = next((f["message"] for f in found if f.get("rule") == rule), None)
            if message:
                return message
    return None


def _finish(out: dict, args: argparse.Namespace) -> int:
    verdict = out["verdict"]
    refusal = None if out.get("interrupted") else _change_file_refusal(out["packet"])
    if refusal:
        raise UsageError(f"{refusal} (the refused run's packet: {out['evidence_dir']})")
    if getattr(args, "junit", None):
        from fix7_pipeline.core.evidence.junit import write_junit

        write_junit(Path(args.junit), out["packet"])
    if out.get("interrupted"):
        if getattr(args, "json", False):
            print(json.dumps({"verdict": verdict, "evidence_dir": out["evidence_dir"], "run_id": out["run_id"],
                              "interrupted": out["packet"].get("interrupted")}))
        print(interrupted_line(out), file=sys.stderr, flush=True)
        return interrupts.exit_code(out.get("signal"))
    fault = out["packet"].get("evidence_fault")
    if fault:  # not judged: the disk, never the clone; the cause and the path in one line
        from fix7_pipeline.core.shared.escape import visible

        print(f"fix7: {visible(fault.get('message'))}", file=sys.stderr, flush=True)
    if getattr(args, "json", False):
        print(json.dumps({"verdict": verdict, "evidence_dir": out["evidence_dir"], "run_id": out["run_id"]}))
    else:
        from fix7_pipeline.core.shared.escape import visible

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
