"""Memory against the largest value: `fix7 rehearse` of a clone holding one huge text value with a token at its end.

`python -m benchmarks.memory [--mb 300]` builds a small factory clone plus `public.big_values` (one row,
one text value of that many MB; a GitHub token at its very end, a Slack token across an edge of the scan's
windows), dumps it (custom format), rehearses it through the CLI as an operator would, and samples the resident
set of the CLI's whole process tree (the CLI and every process it starts: pg_restore, psql) every 20 ms from
/proc. The goal (issue 22): peak <= 400 MB + 1.5 x the largest value, and both tokens found. The rehearsal
server's own processes are not in that tree (it is a server the CLI connects to). Results go to
`.fix7/bench/memory-results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

BASE_MB = 400
PER_VALUE = 1.5


def big_value_sql(value_bytes: int, end_token: str, edge_token: str, edge_at: int) -> str:
    """SQL creating public.big_values with one ASCII value of exactly `value_bytes`: `edge_token` at byte
    `edge_at`, `end_token` as its last bytes."""
    rest = value_bytes - edge_at - len(edge_token) - len(end_token)
    assert rest > 1 and all("'" not in t for t in (end_token, edge_token))
    return ("create table public.big_values (id integer primary key, body text);\n"
            f"insert into public.big_values values (1, {_fill(edge_at)} || '{edge_token}' || "
            f"{_fill(rest - 1)} || ' ' || '{end_token}');\n")


def _fill(n: int) -> str:
    """SQL for exactly `n` bytes of hex filler: md5 runs, about as compressible as real text (a repeated
    phrase would compress beyond intake's gzip-ratio cap)."""
    return (f"pg_catalog.substr((select pg_catalog.string_agg(pg_catalog.md5(g::text), ' ') "
            f"from pg_catalog.generate_series(1, {n // 33 + 1}) g), 1, {n})")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def tree_rss_bytes(pid: int) -> int:
    """The resident set of `pid` and all its descendants, from /proc (VmRSS)."""
    kids, total, todo = _children(), 0, [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            with open(f"/proc/{p}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def rehearse_sampled(env_extra: dict, args: list[str], *, interval: float = 0.02, timeout: float = 3600
                     ) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m fix7_pipeline.cli ARGS` with `env_extra`; (its result, peak tree RSS in MB)."""
    from fix7_pipeline.core.shared.paths import project_dir

    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_") and k != "FIX7_DEBUG"}
    env.update(env_extra)
    proc = subprocess.Popen([sys.executable, "-m", "fix7_pipeline.cli", *args], cwd=str(project_dir()), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
            time.sleep(interval)

    sampler = threading.Thread(target=sample, name="fix7-bench-rss", daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sampler.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), peak[0] / 2**20


def run(mb: int) -> dict:
    import secrets
    import shutil
    import string

    from benchmarks.scan import bench_dir
    from fix7_pipeline.core.sanitization import copy_reader
    from fix7_pipeline.demo import builder
    from fix7_pipeline_tests.e2e_support import DagsterHome, load_packet, rehearse_args

    alnum = string.ascii_letters + string.digits
    end = "ghp_" + "".join(secrets.choice(alnum) for _ in range(36))
    edge = ("xoxb-" + "".join(secrets.choice(string.digits) for _ in range(12)) + "-" +
            "".join(secrets.choice(string.digits) for _ in range(13)) + "-" +
            "".join(secrets.choice(alnum) for _ in range(24)))
    work = bench_dir() / f"memory-{mb}mb-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    source, name = f"fix7_bench_mem_src_{os.getpid()}", f"fix7_bench_mem_{os.getpid()}"
    try:
        t0 = time.monotonic()
        builder.build_clone(source, registry_rows=30, seed=5)
        from fix7_pipeline_tests.e2e_support import variant

        variant(source, name, big_value_sql(mb << 20, end, edge, 8 * copy_reader.VALUE_WINDOW - 20))
        dump = builder.dump_clone(name, "custom", work / "big-value.dump")
        built_s = time.monotonic() - t0
    finally:
        builder.drop_clone(name)
        builder.drop_clone(source)
    change = builder.write_sample_change(work / "change")
    home = DagsterHome.create(work / "dagster_home", "benchmem")
    try:
        t0 = time.monotonic()
        r, peak = rehearse_sampled(home.env, rehearse_args(dump, change, work / "evidence"))
        took = time.monotonic() - t0
        packet = load_packet(work / "evidence")
    finally:
        home.drop()
    rules = {f["rule"] for f in packet["stages"].get("sanitization", {}).get("findings", [])
             if f.get("table") == "big_values"}
    bound = BASE_MB + PER_VALUE * mb
    result = {"value_mb": mb, "exit_code": r.returncode, "verdict": packet.get("verdict"),
              "both_tokens_found": result_ok(rules),
              "peak_tree_rss_mb": round(peak, 1), "bound_mb": bound, "within_bound": peak <= bound,
              "rehearsal_s": round(took, 1), "build_and_dump_s": round(built_s, 1),
              "dump_bytes": dump.stat().st_size, "cpus": os.cpu_count(),
              "stages": {k: v.get("status") for k, v in packet.get("stages", {}).items()},
              "stopped_because": None if result_ok(rules) else
              next((v.get("reason") for v in packet.get("stages", {}).values() if v.get("status") == "blocked"), None)}
    if result["both_tokens_found"]:
        shutil.rmtree(work, ignore_errors=True)  # else kept to be read
    (bench_dir() / "memory-results.json").write_text(json.dumps(result, indent=2))
    return result


def result_ok(rules: set[str]) -> bool:
    return {"betterleaks.github-pat", "betterleaks.slack-bot-token"} <= rules


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=300, help="size of the one large value (default 300)")
    a = ap.parse_args(argv)
    res = run(a.mb)
    print(f"one {res['value_mb']} MB text value, token at its end: exit {res['exit_code']} ({res['verdict']}), "
          f"both tokens found: {res['both_tokens_found']}")
    print(f"peak RSS of the fix7 process tree {res['peak_tree_rss_mb']} MB; bound 400 MB + 1.5 x {res['value_mb']} "
          f"MB = {res['bound_mb']:.0f} MB: {'within' if res['within_bound'] else 'OVER'}; rehearsal "
          f"{res['rehearsal_s']} s")
    return 0 if res["within_bound"] and res["both_tokens_found"] else 1


if __name__ == "__main__":
    sys.exit(main())
