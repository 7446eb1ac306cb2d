"""`fix7 demo`: build a synthetic production-shaped clone and rehearse the sample FIX7 change on it."""

from __future__ import annotations

import argparse

from fix7_pipeline.cli.rehearse import rehearse_config, request_config


def cmd_demo(args: argparse.Namespace) -> int:
    from fix7_pipeline.core.shared.paths import state_dir
    from fix7_pipeline.demo import builder

    work = state_dir() / "demo"
    work.mkdir(parents=True, exist_ok=True)
    print(f"fix7 demo: building a synthetic production-shaped clone ({args.rows} registry rows)...", flush=True)
    builder.build_clone("fix7_demo_source", registry_rows=args.rows, seed=7)
    dump = builder.dump_clone("fix7_demo_source", "custom", work / "birth_surface_clone.dump")
    apply_sql, rollback_sql = builder.write_sample_change(work)
    print(f"  clone dump: {dump}\n  change:     {apply_sql}\n  rollback:   {rollback_sql}", flush=True)
    ns = argparse.Namespace(clone_path=str(dump), apply_sql=str(apply_sql), rollback_sql=str(rollback_sql),
                            attested_by="fix7 demo (synthetic clone, no production data)",
                            evidence_dir=args.evidence_dir, production_hosts=["*.prod.invalid-corp.com"],
                            server_url=args.server, json=False, junit=None,
                            progress=getattr(args, "progress", None))
    return rehearse_config(request_config(ns), ns, echo=True)


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="build a synthetic clone and rehearse the sample change on it")
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--evidence-dir", metavar="DIR")
    p.add_argument("--server", metavar="URL")
    p.set_defaults(func=cmd_demo)
