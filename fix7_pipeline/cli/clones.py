"""`fix7 clones`: the verified clone templates on the rehearsal server (core/run/clone_templates.py): list, drop, cap."""

from __future__ import annotations

import json
import os

from fix7_pipeline.core.run import clone_templates as templates
from fix7_pipeline.core.shared.errors import EXIT_PASSED, EXIT_USAGE, Fix7Error


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_clones(args) -> int:
    from fix7_pipeline.core.postgres.hosts import HostPolicy
    from fix7_pipeline.core.postgres.server import RehearsalServer

    url = args.server or os.environ.get("FIX7_REHEARSAL_SERVER") or "embedded"
    server = RehearsalServer.from_url(url, HostPolicy((), tuple(args.allow_host or ())))
    dropped: list[str] = []
    if args.drop_all:
        dropped += [t.name for t in templates.list_templates(server) if templates.drop_template(server, t.name)]
    for name in args.drop or []:
        if not templates.drop_template(server, name):
            raise Fix7Error(f"There is no clone template {name} on the rehearsal server ({server.describe()}); "
                            "`fix7 clones` lists them.", rule="clone_template", exit_code=EXIT_USAGE)
        dropped.append(name)
    if args.max_bytes is not None:
        dropped += templates.enforce_budget(server, args.max_bytes)
    templates.drop_orphan_roles(server)
    found = templates.list_templates(server)
    if args.json:
        print(json.dumps({"server": server.describe(), "dropped": dropped,
                          "budget_bytes": args.max_bytes if args.max_bytes is not None else templates.max_bytes(),
                          "templates": [{"database": t.name, "bytes": t.bytes, "locked": t.sound, **t.facts}
                                        for t in found]}, indent=2, default=str))
        return EXIT_PASSED
    for name in dropped:
        print(f"dropped {name}")
    total = sum(t.bytes for t in found)
    print(f"{len(found)} clone template(s) on the {server.describe()}, {_size(total)} of a "
          f"{_size(args.max_bytes if args.max_bytes is not None else templates.max_bytes())} budget")
    for t in found:
        f = t.facts
        parts = f.get("parts") or {}
        print(f"{t.name}  {_size(t.bytes):>10}  dump {str(parts.get('dump_sha256'))[:12]}  anchor "
              f"{f.get('anchor_id')}  gated by run {f.get('gating_run_id')}  created {f.get('created_at')}  "
              f"used {f.get('uses', 0)}x{'' if t.sound else '  NOT LOCKED: no run uses it'}")
    return EXIT_PASSED


def _bytes(text: str) -> int:
    import argparse

    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 500M, 20G, 1048576)") from None


def register(subparsers) -> None:
    p = subparsers.add_parser("clones", help="list and drop the verified clone templates a rehearsal starts from "
                                             "(restore and gates skipped); cap them by a disk budget")
    p.add_argument("--server", metavar="URL", help="the rehearsal server (default: FIX7_REHEARSAL_SERVER or the "
                                                   "embedded PostgreSQL 18)")
    p.add_argument("--allow-host", action="append", metavar="PATTERN", help="glob of hosts known to be isolated")
    p.add_argument("--drop", action="append", metavar="NAME", help="drop this template (repeatable)")
    p.add_argument("--drop-all", action="store_true", help="drop every template")
    p.add_argument("--max-bytes", type=_bytes, metavar="SIZE",
                   help="drop the least recently used templates until they fit in SIZE (e.g. 20G); rehearsals "
                        f"apply {templates.BUDGET_ENV} (default 20 GiB) each time they keep one")
    p.add_argument("--json", action="store_true", help="print the templates as one JSON object")
    p.set_defaults(func=cmd_clones)
