"""`make bench-diff`: the restore diff beside reladiff, and the fingerprint beside `pg_dump -Fp`.

One run, one machine: a birth-surface clone (N registry rows) is restored as a throwaway, copied as
an anchor, and 2,000 registry rows are changed in the clone. Then, each timed on the same two
databases:

- fix7's restore diff: fingerprint of the changed clone plus the diff against the anchor's
  fingerprint (what the restore_diff stage does), over the whole database;
- reladiff 0.6 (a bench-only tool, pip-installed into the venv on first use) over every table with a
  primary key, all columns (`-c %`), summed;
- fix7's whole-database fingerprint of the anchor, and the wheel's `pg_dump -Fp > /dev/null` of it.

Both diffs must find the same changed rows. Results go to `.fix7/bench/diff-results.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from fix7_pipeline.core.anchor import diff as diff_mod
from fix7_pipeline.core.anchor import fingerprint
from fix7_pipeline.core.clone.restore import restore
from fix7_pipeline.core.dumps.identify import inspect_dump
from fix7_pipeline.core.postgres.hosts import HostPolicy
from fix7_pipeline.core.postgres.pg_tools import run_tool
from fix7_pipeline.core.postgres.server import CHANGE, RehearsalServer, pg_tool
from fix7_pipeline.core.postgres.throwaways import create_database, create_throwaway, drop_throwaway
from fix7_pipeline.core.shared.paths import state_dir
from fix7_pipeline.demo import builder

RELADIFF = "reladiff==0.6.0"
CHANGED_ROWS = 2000


def _log(msg: str) -> None:
    print(f"[bench-diff {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def reladiff_bin() -> str:
    exe = Path(sys.executable).parent / "reladiff"
    if not exe.exists():
        _log(f"installing {RELADIFF} into the venv (bench only)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", RELADIFF, "psycopg2-binary"], check=True)
    return str(exe)


def dump_for(rows: int, seed: int) -> Path:
    out = state_dir() / "bench" / f"diff-r{rows}-s{seed}.dump"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        name = f"fix7_bench_diff_{rows}"
        _log(f"building a {rows}-row clone")
        builder.build_clone(name, registry_rows=rows, seed=seed)
        try:
            builder.dump_clone(name, "custom", out)
        finally:
            builder.drop_clone(name)
    return out


def _keyed_tables(conn) -> list[tuple[str, list[str]]]:
    return [(t, list(k)) for t, k in conn.execute("""
        select c.relname, array(select a.attname from unnest(co.conkey) with ordinality u(n, o)
                                join pg_attribute a on a.attrelid = c.oid and a.attnum = u.n order by u.o)::text[]
        from pg_class c join pg_constraint co on co.conrelid = c.oid and co.contype = 'p'
        where c.relnamespace = 'public'::regnamespace and c.relkind = 'r' order by 1""").fetchall()]


def run_reladiff(exe: str, server: RehearsalServer, tw, db_a: str, db_b: str, tables) -> tuple[float, dict]:
    def url(db: str) -> str:
        return f"postgresql://{quote(tw.login.role)}@{quote(server.host, safe='')}:{server.port}/{db}"

    total, found = 0.0, {}
    for table, key in tables:
        args = [exe, url(db_a), table, url(db_b), table, "-c", "%", "-j", "2"]
        for k in key:
            args += ["-k", k]
        t, r = _timed(lambda: subprocess.run(args, capture_output=True, text=True, timeout=3600))
        if r.returncode not in (0, 1):
            raise RuntimeError(f"reladiff failed on {table}: {r.stderr.strip().splitlines()[-1:]}")
        total += t
        # "+ key, values…" / "- key, values…": only the key fields are kept (values are never printed)
        lines = [ln for ln in r.stdout.splitlines() if ln[:2] in ("+ ", "- ")]
        keys = {tuple(f.strip() for f in ln[2:].split(",")[:len(key)]) for ln in lines}
        if keys:
            found[table] = len(keys)
    return total, found


def run(rows: int, seed: int, out: Path) -> dict:
    exe = reladiff_bin()
    server = RehearsalServer.embedded(HostPolicy())
    tw = create_throwaway(server)
    try:
        dump = dump_for(rows, seed)
        _log(f"restoring {dump.name}")
        t_restore, _ = _timed(lambda: restore(server, tw, inspect_dump(dump)))
        anchor = f"{tw.database}_anchor"
        tw.extra_databases.append(anchor)
        create_database(server, anchor, tw.login, template=tw.database, owned=True)
        with server.connect(tw.database, tw.login, purpose="bench change", session=CHANGE) as c:
            c.execute("update public.birth_registry set row_version = row_version + 1 where id in "
                      "(select id from public.birth_registry order by id offset 7 limit %s)", (CHANGED_ROWS,))
            c.execute("vacuum (analyze)")
            tables = _keyed_tables(c)
        with server.connect(anchor, tw.login, purpose="bench settle", session=CHANGE) as c:
            c.execute("vacuum (analyze)")
        with server.connect(anchor, tw.login, purpose="bench anchor fingerprint") as c, \
                server.connect(anchor, tw.login, purpose="bench anchor fingerprint (second core)") as h:
            t_fp, anchor_fp = _timed(lambda: fingerprint.fingerprint(c, [h]))
        env = server.tool_env(anchor, tw.login, "bench pg_dump", "pg_dump")
        t_dump, r = _timed(lambda: run_tool([pg_tool("pg_dump"), "-Fp", "-f", "/dev/null", "-d", anchor], env))
        assert r.returncode == 0, r.stderr

        def ours():
            with server.connect(tw.database, tw.login, purpose="bench diff") as after, \
                    server.connect(anchor, tw.login, purpose="bench diff (anchor)") as a, \
                    server.connect(tw.database, tw.login, purpose="bench diff (second core)") as h:
                return diff_mod.restore_diff(anchor_fp, fingerprint.fingerprint(after, [h]), a, after)

        t_ours, result = _timed(ours)
        ours_found = {t["table"].split(".", 1)[1]: t["added"] + t["removed"] + t["changed"] for t in result["tables"]}
        _log("reladiff over every keyed table")
        t_rela, rela_found = run_reladiff(exe, server, tw, anchor, tw.database, tables)
    finally:
        drop_throwaway(server, tw)
    res = {"rows": rows, "changed_rows": CHANGED_ROWS, "restore_s": round(t_restore, 2),
           "restore_diff_s": round(t_ours, 2), "reladiff_s": round(t_rela, 2),
           "diff_ratio": round(t_ours / t_rela, 3), "fingerprint_s": round(t_fp, 2), "pg_dump_s": round(t_dump, 2),
           "fingerprint_ratio": round(t_fp / t_dump, 3), "found_by_fix7": ours_found, "found_by_reladiff": rela_found,
           "same_rows_found": ours_found == rela_found}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.diff")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=state_dir() / "bench" / "diff-results.json")
    a = p.parse_args(argv)
    res = run(a.rows, a.seed, a.out)
    print(json.dumps(res, indent=1))
    return 0 if res["same_rows_found"] else 1


if __name__ == "__main__":
    sys.exit(main())
