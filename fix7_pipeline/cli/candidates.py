"""`fix7 candidates`: Table A, every candidate clone under the folders classified, nothing restored."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fix7_pipeline.core.shared.errors import EXIT_PASSED


def cmd_candidates(args: argparse.Namespace) -> int:
    from fix7_pipeline.core.sanitization import candidates

    rows = candidates.find_candidates([Path(r).expanduser() for r in args.search_root])
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(candidates.format_table(rows))
    return EXIT_PASSED


def register(subparsers) -> None:
    p = subparsers.add_parser("candidates", help="Table A: classify candidate clones under folders, restoring nothing")
    p.add_argument("--search-root", action="append", required=True, metavar="DIR")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_candidates)
