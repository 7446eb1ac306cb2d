"""`fix7 rules`: the sanitization gate's one rule registry (Kingfisher's catalog, detect-secrets' plugins and
fix7's own rules)."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from fix7_pipeline.core.shared.errors import EXIT_PASSED


def cmd_rules(args: argparse.Namespace) -> int:
    from fix7_pipeline.core.sanitization import field_detectors, rules
    from fix7_pipeline.core.shared.escape import visible

    eng = rules.engine()
    entries = [r for r in eng.rules if args.source in (None, r.source)]
    if args.format == "json":
        print(json.dumps({"engine": f"kingfisher-secret-scanner {eng.version}",
                          "loaded": {"detect-secrets": field_detectors.detect_secrets_rules()[1]},
                          "cache": str(rules.cache_dir()),
                          "cache_status": eng.cache_status, "rules": [r.as_dict() for r in entries]}, indent=2))
        return EXIT_PASSED
    by_source = Counter(r.source for r in entries)
    print(f"fix7 rules: {len(entries)} ({', '.join(f'{n} {s}' for s, n in sorted(by_source.items()))}); "
          f"engine kingfisher-secret-scanner {eng.version}, compiled rules {eng.cache_status} "
          f"({visible(rules.cache_dir())}); detect-secrets {field_detectors.detect_secrets_rules()[1]} loaded "
          "from its package")
    width = max((len(r.name) for r in entries), default=4)
    print(f"{'rule':<{width}}  {'source':<14}  {'family':<32}  description")
    for r in entries:
        print(f"{visible(r.name):<{width}}  {r.source:<14}  {visible(r.family):<32}  {visible(r.description)}")
    return EXIT_PASSED


def register(subparsers) -> None:
    p = subparsers.add_parser("rules", help="list the sanitization gate's secret rules (Kingfisher's, "
                                            "detect-secrets' and fix7's)")
    p.add_argument("--source", choices=("kingfisher", "detect-secrets", "fix7"), help="only the rules of this source")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_rules)
