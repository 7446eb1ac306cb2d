"""`fix7 contract`: show the contract, or derive one from schema SQL or a dump (PostgreSQL reads it)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fix7_pipeline.cli.rehearse import UsageError, server_url
from fix7_pipeline.core.shared.errors import EXIT_PASSED


def _contract_server(args: argparse.Namespace):
    """The server PostgreSQL reads a schema on: --server, FIX7_REHEARSAL_SERVER or the embedded one."""
    from fix7_pipeline.core.postgres.hosts import HostPolicy
    from fix7_pipeline.core.postgres.server import RehearsalServer

    url = server_url(getattr(args, "server", None)) or os.environ.get("FIX7_REHEARSAL_SERVER") or "embedded"
    return RehearsalServer.from_url(url, HostPolicy((), tuple(getattr(args, "allow_host", None) or ())))


def cmd_contract(args: argparse.Namespace) -> int:
    """`from-sql FILE` / `from-dump DUMP`: PostgreSQL restores the schema into a throwaway and the catalog is read."""
    from fix7_pipeline.core.intake.contract_from_schema import contract_from_schema
    from fix7_pipeline.core.contract.from_yaml import dump_contract_yaml
    from fix7_pipeline.core.intake.contract_load import is_schema_source, load_contract

    if args.action in ("from-sql", "from-dump"):
        what = "schema-only SQL file" if args.action == "from-sql" else "pg_dump (any format; its data is left out)"
        if not args.file:
            raise UsageError(f"`fix7 contract {args.action}` needs the {what}.")
        path = Path(args.file).expanduser()
        if not path.exists():
            raise UsageError(f"There is no file or directory {str(path)!r} to read the contract from.")
        if args.action == "from-sql" and (path.is_dir() or not is_schema_source(path)):
            raise UsageError(f"{str(path)!r} is not schema SQL (it creates no table); for a pg_dump archive use "
                             "`fix7 contract from-dump`.")
        out = dump_contract_yaml(contract_from_schema(_contract_server(args), path))
    else:
        server = _contract_server(args) if args.file and is_schema_source(args.file) else None
        out = dump_contract_yaml(load_contract(args.file, server=server))
    if args.output:
        from fix7_pipeline.core.evidence.packet_files import write_output

        write_output(Path(args.output), out)
        print(f"contract written to {args.output}")
    else:
        sys.stdout.write(out)
    return EXIT_PASSED


def register(subparsers) -> None:
    p = subparsers.add_parser("contract", help="show the contract, or derive one from schema SQL or a dump")
    p.add_argument("action", choices=["from-sql", "from-dump", "show"])
    p.add_argument("file", nargs="?", help="schema SQL (from-sql), a pg_dump of any format (from-dump), or a "
                                          "contract YAML/SQL/dump (show; default: the birth surface)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the YAML here instead of stdout")
    p.add_argument("--server", metavar="URL", help="the server PostgreSQL restores the schema on (default: "
                                                   "FIX7_REHEARSAL_SERVER or the embedded PostgreSQL 18)")
    p.add_argument("--allow-host", action="append", metavar="PATTERN", help="glob of hosts known to be isolated")
    p.set_defaults(func=cmd_contract)
