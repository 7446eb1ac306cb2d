"""Rehearsal speed: the sanitization stage and the whole rehearsal against a bare restore + apply + rollback.

`python -m benchmarks.rehearsal [--rows N]` builds (or reuses, keyed by rows and seed) a clean
production-shaped clone on the factory server and its custom-format dump, then in one run:

1. **bare**: a fresh database and role (`create_throwaway`), the wheel's `pg_restore --no-owner
   --no-privileges -d` of the dump, `psql -X -1 -v ON_ERROR_STOP=1 -f` the sample FIX7 apply, then
   the same for its rollback, each timed;
2. **rehearsal**: the real `fix7_rehearsal` Dagster job on the same dump and change
   (`fix7_pipeline.cli.rehearse.run_rehearsal`, what `fix7 rehearse` runs), timed as a whole; each stage's own
   time is read from the sealed packet (`stages[*].duration_s`).

Memory is sampled every 0.2 s during each phase: the resident set of this process and its children
(pg_restore, psql) and the proportional set (PSS) of the rehearsal server's processes, plus
`getrusage` peaks. The Dagster runs go to a bench-only instance under `.fix7/bench/dagster_home`
unless DAGSTER_HOME is set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CACHE_VERSION = 1
GOAL_SANITIZATION_VS_RESTORE = 1.0
GOAL_REHEARSAL_VS_BARE = 3.0


def _log(msg: str) -> None:
    print(f"[bench-rehearsal {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the clean clone ----------------------------------------------------------------------------------

def clean_clone(rows: int, seed: int, *, rebuild: bool = False) -> dict:
    """The cached clean clone's custom dump for (rows, seed), with the sample change beside it."""
    import psycopg

    from benchmarks.scan import bench_dir
    from fix7_pipeline.demo import builder

    cdir = bench_dir() / f"rehearsal-r{rows}-s{seed}"
    manifest = cdir / "manifest.json"
    if not rebuild and manifest.exists():
        m = json.loads(manifest.read_text())
        if m.get("cache_version") == CACHE_VERSION and (cdir / "clone.dump").exists():
            _log(f"reusing the clean clone in {cdir}")
            return {**m, "dir": str(cdir), "reused": True}
    work = bench_dir() / f".building-rehearsal-r{rows}-s{seed}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    name = f"fix7_bench_rh_r{rows}_s{seed}_{os.getpid()}"
    try:
        _log(f"building a clean {rows}-row clone on the factory server")
        t0 = time.monotonic()
        builder.build_clone(name, registry_rows=rows, seed=seed)
        t_build = time.monotonic() - t0
        with psycopg.connect(**builder.factory_conninfo(name), autocommit=True) as c:
            db_bytes = c.execute("select pg_database_size(current_database())").fetchone()[0]
            counts = {t: c.execute(f"select count(*) from public.{t}").fetchone()[0]
                      for t in ("birth_registry", "os_proposal_approvals", "directus_activity", "directus_revisions")}
        _log(f"built in {t_build:.1f} s; dumping (custom format)")
        t0 = time.monotonic()
        builder.dump_clone(name, "custom", work / "clone.dump")
        t_dump = time.monotonic() - t0
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        builder.drop_clone(name)
    m = {"cache_version": CACHE_VERSION, "rows": rows, "seed": seed, "row_counts": counts,
         "source_database_bytes": db_bytes, "build_s": round(t_build, 2), "dump_s": round(t_dump, 2),
         "custom_dump_bytes": (work / "clone.dump").stat().st_size}
    (work / "manifest.json").write_text(json.dumps(m, indent=2))
    shutil.rmtree(cdir, ignore_errors=True)
    os.replace(work, cdir)
    return {**m, "dir": str(cdir), "reused": False}


# -- memory --------------------------------------------------------------------------------------------

class MemorySampler:
    """Peaks, per phase, of this process tree's RSS and the rehearsal server's PSS (sampled)."""

    def __init__(self, postmaster_pid: int | None, interval: float = 0.2):
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.server = None
        if postmaster_pid:
            try:
                self.server = psutil.Process(postmaster_pid)
            except psutil.Error:
                self.server = None
        self.interval = interval
        self.phase: str | None = None
        self.peaks: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fix7-bench-memory", daemon=True)

    def _tree(self, root, pss: bool) -> int:
        total = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss if pss else p.memory_info().rss
            except (self.psutil.Error, AttributeError):
                try:
                    total += p.memory_info().rss
                except self.psutil.Error:
                    pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            phase = self.phase
            if phase is None:
                continue
            peak = self.peaks.setdefault(phase, {"bench_tree_rss_mb": 0.0, "server_pss_mb": 0.0, "samples": 0})
            peak["bench_tree_rss_mb"] = max(peak["bench_tree_rss_mb"], self._tree(self.me, False) / 2**20)
            if self.server is not None:
                peak["server_pss_mb"] = max(peak["server_pss_mb"], self._tree(self.server, True) / 2**20)
            peak["samples"] += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def result(self) -> dict:
        return {k: {"bench_tree_rss_mb": round(v["bench_tree_rss_mb"], 1),
                    "server_pss_mb": round(v["server_pss_mb"], 1) if self.server is not None else None,
                    "samples": v["samples"]} for k, v in self.peaks.items()}


def _postmaster_pid() -> int | None:
    from fix7_pipeline.core.postgres.embedded import start_embedded

    try:
        return int((Path(start_embedded()["pgdata"]) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# -- the two measurements -------------------------------------------------------------------------------

def _tool(args: list[str], env: dict, what: str) -> tuple[float, str | None]:
    """Run one client tool; (seconds, None) or (seconds, why it failed). Server text is never kept:
    an error can quote row values."""
    t0 = time.perf_counter()
    r = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=6 * 3600,
                       errors="replace")
    took = time.perf_counter() - t0
    if r.returncode == 0:
        return took, None
    if "statement timeout" in r.stderr:
        return took, "canceled by the statement timeout"
    return took, f"{what} failed with exit code {r.returncode}"


def bare(server, dump: Path, apply_sql: Path, rollback_sql: Path, statement_timeout_s: int, jobs: int = 1) -> dict:
    """pg_restore -d, psql -f apply, psql -f rollback into a fresh database of a fresh role.

    apply and rollback get the rehearsal's statement timeout (`-c statement_timeout`), so both sides stop
    a runaway statement at the same point."""
    from fix7_pipeline.core.postgres.server import pg_tool
    from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway

    tw = create_throwaway(server)
    steps: dict[str, dict] = {}
    try:
        env = server.tool_env(tw.database, tw.login, "bench bare restore", "pg_restore")
        parallel = ["-j", str(jobs)] if jobs > 1 else []
        t, err = _tool([pg_tool("pg_restore"), "--no-owner", "--no-privileges", *parallel, "-d", tw.database,
                        str(dump)], env, "pg_restore")
        steps["restore"] = {"s": round(t, 2), "error": err}
        env = server.tool_env(tw.database, tw.login, "bench bare change", "psql")
        env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c statement_timeout={int(statement_timeout_s)}s".strip()
        psql = [pg_tool("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", tw.database, "-f"]
        for label, path in (("apply", apply_sql), ("rollback", rollback_sql)):
            if any(x["error"] for x in steps.values()):
                steps[label] = {"s": None, "error": "not run: an earlier step failed"}
                continue
            t, err = _tool([*psql, str(path)], env, f"psql -f {label}")
            steps[label] = {"s": round(t, 2), "error": err}
    finally:
        drop_throwaway(server, tw)
    complete = not any(x["error"] for x in steps.values())
    return {"restore_s": steps["restore"]["s"], "apply_s": steps["apply"]["s"], "rollback_s": steps["rollback"]["s"],
            "total_s": round(sum(x["s"] for x in steps.values()), 2) if complete else None,
            "errors": {k: x["error"] for k, x in steps.items() if x["error"]},
            "statement_timeout_s": int(statement_timeout_s),
            "commands": [f"pg_restore --no-owner --no-privileges {' '.join(parallel)} -d <db> <custom dump>",
                         "psql -X -q -1 -v ON_ERROR_STOP=1 -d <db> -f fix7_apply.sql",
                         "psql -X -q -1 -v ON_ERROR_STOP=1 -d <db> -f fix7_rollback.sql"],
            "as": "a fresh least-privileged role owning a fresh database (create_throwaway), wheel client tools"}


def sanitization_parts(server, dump: Path) -> dict:
    """Where the sanitization stage's time goes: the dump restored as the isolation stage restores it, then
    the stage's three calls one by one, in its order, on the same cold (never vacuumed) clone."""
    import secrets as pysecrets

    from fix7_pipeline.core.intake.contract_load import load_contract
    from fix7_pipeline.core.shape import data_rules
    from fix7_pipeline.core.sanitization import secrets
    from fix7_pipeline.core.dumps.identify import inspect_dump
    from fix7_pipeline.core.clone.restore import restore
    from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway

    contract = load_contract(None)
    tw = create_throwaway(server)
    try:
        t0 = time.perf_counter()
        restore(server, tw, inspect_dump(dump, verify_data=False))
        parts = {"restore_s": time.perf_counter() - t0}
        t0 = time.perf_counter()
        secrets.scan_secrets(lambda db: server.connect(db, tw.login, purpose="secret scan"), tw.database, contract,
                             pysecrets.token_hex(16))
        parts["scan_secrets_s"] = time.perf_counter() - t0
        with server.connect(tw.database, tw.login, purpose="catalog secrets") as conn:
            t0 = time.perf_counter()
            if hasattr(secrets, "scan_catalog"):
                secrets.scan_catalog(conn)
            parts["scan_catalog_s"] = time.perf_counter() - t0
            url = server.sqlalchemy_source(tw.database, tw.login, "great expectations: sanitization suite")
            t0 = time.perf_counter()
            data_rules.run_sanitization(url, conn, contract)
            parts["gx_sanitization_suite_s"] = time.perf_counter() - t0
    finally:
        drop_throwaway(server, tw)
    return {k: round(v, 2) for k, v in parts.items()}


def _bench_instance():
    """A Dagster instance for bench runs: the one DAGSTER_HOME names, else .fix7/bench/dagster_home."""
    from benchmarks.scan import bench_dir
    from fix7_pipeline.core.shared.environment import set_environment
    from fix7_pipeline.instance import get_instance, prepare_dagster_home

    if not os.environ.get("DAGSTER_HOME"):
        home = bench_dir() / "dagster_home"
        set_environment(defaults={"FIX7_AUDIT_CHAIN": str(home / "audit-chain.jsonl")})
        prepare_dagster_home(home, storage_db="dagster_bench")
    return get_instance()


def rehearse(dump: Path, apply_sql: Path, rollback_sql: Path, statement_timeout_s: int, **extra) -> dict:
    """The fix7_rehearsal job on the dump; wall time of the call and each stage's time from the packet."""
    from benchmarks.scan import bench_dir
    from fix7_pipeline.cli import rehearse as cli
    from fix7_pipeline.cli.main import quiet

    quiet()
    t0 = time.perf_counter()
    import fix7_pipeline.definitions  # noqa: F401  (imported once per process; timed apart)
    instance = _bench_instance()
    t_setup = time.perf_counter() - t0
    evidence = Path(tempfile.mkdtemp(prefix="rehearsal-evidence-", dir=bench_dir()))
    config = {"clone_path": str(dump), "apply_sql": str(apply_sql), "rollback_sql": str(rollback_sql),
              "attested_by": "fix7 bench (synthetic clone, no production data)", "contract": "",
              "evidence_dir": str(evidence), "production_hosts": ["*.prod.invalid-corp.com"], "allow_hosts": [],
              "server_url": "", "search_roots": [], "allowed_roots": [], "keep_databases": False,
              "statement_timeout_s": int(statement_timeout_s), **extra}
    try:
        t0 = time.perf_counter()
        out = cli.run_rehearsal(config, instance=instance, echo=False)
        wall = time.perf_counter() - t0
    finally:
        instance.dispose()
    packet = out["packet"]
    stages = {name: s.get("duration_s") for name, s in packet["stages"].items()}
    statuses = {name: s.get("status") for name, s in packet["stages"].items()}
    reasons = {name: s.get("reason") for name, s in packet["stages"].items() if s.get("status") != "passed"}
    return {"evidence_dir": str(evidence), "verdict": out["verdict"], "wall_s": round(wall, 2), "stages_s": stages, "stage_status": statuses,
            "clone_reuse": {k: (packet.get("clone_reuse") or {}).get(k) for k in ("reused", "why", "copy",
                                                                                 "fingerprint_check_s")},
            "stage_reasons": reasons, "statement_timeout_s": int(statement_timeout_s),
            "stages_sum_s": round(sum(v for v in stages.values() if v), 2),
            "overhead_s": round(wall - sum(v for v in stages.values() if v), 2),
            "import_and_instance_s": round(t_setup, 2),
            "call": "fix7_pipeline.cli.rehearse.run_rehearsal (a run of the code location's fix7_rehearsal job, "
                    "executed in process)"}


def run(rows: int = 1_000_000, seed: int = 7, out: Path | None = None, rebuild: bool = False,
        statement_timeout_s: int = 600, breakdown: bool = False) -> dict:
    from benchmarks.scan import bench_dir
    from fix7_pipeline.core.postgres.hosts import HostPolicy
    from fix7_pipeline.core.postgres.server import RehearsalServer
    from fix7_pipeline.demo import builder

    out = Path(out) if out else bench_dir() / "rehearsal-results.json"
    clone = clean_clone(rows, seed, rebuild=rebuild)
    cdir = Path(clone["dir"])
    dump = cdir / "clone.dump"
    apply_sql, rollback_sql = builder.write_sample_change(cdir / "change")
    with open(dump, "rb") as f:  # the same warm page cache for both
        while f.read(1 << 24):
            pass
    server = RehearsalServer.embedded(HostPolicy())
    with MemorySampler(_postmaster_pid()) as mem:
        mem.phase = "bare"
        _log("bare: pg_restore -d, psql -f apply, psql -f rollback")
        b = bare(server, dump, apply_sql, rollback_sql, statement_timeout_s)
        _log(f"bare: restore {b['restore_s']} s, apply {b['apply_s']} s, rollback {b['rollback_s']} s"
             + (f" ({b['errors']})" if b["errors"] else ""))
        mem.phase = "bare_j2"
        b2 = bare(server, dump, apply_sql, rollback_sql, statement_timeout_s, jobs=2)
        _log(f"bare -j 2: restore {b2['restore_s']} s, total {b2['total_s']} s")
        from fix7_pipeline.core.run import clone_templates as templates

        for t in templates.list_templates(server):  # a template of an earlier bench run cites a packet now gone
            if templates.gating_evidence(t)[0] is None:
                templates.drop_template(server, t.name)
        mem.phase = "rehearsal"
        _log("rehearsal: the fix7_rehearsal job")
        # the first rehearsal restores and gates whatever templates exist (issue 25); it keeps its gated clone
        r = rehearse(dump, apply_sql, rollback_sql, statement_timeout_s, fresh_clone=True)
        _log(f"rehearsal: {r['verdict']} in {r['wall_s']} s")
        mem.phase = "second"
        _log("second rehearsal of the same dump: from its verified clone template")
        r2 = rehearse(dump, apply_sql, rollback_sql, statement_timeout_s)
        _log(f"second rehearsal: {r2['verdict']} in {r2['wall_s']} s (reused: {r2['clone_reuse']['reused']})")
        parts = None
        if breakdown:
            mem.phase = "breakdown"
            _log("breakdown: the sanitization stage's calls one by one on a fresh restore")
            parts = sanitization_parts(server, dump)
            _log(f"breakdown: {parts}")
        mem.phase = None
    for rr in (r, r2):  # the first's packet stays until the second cited it as its template's gating packet
        shutil.rmtree(rr.pop("evidence_dir"), ignore_errors=True)
    san = r["stages_s"].get("sanitization")
    complete = r["verdict"] == "REHEARSAL_PASSED" and b["total_s"]
    ratios = {"sanitization_vs_bare_restore": round(san / b["restore_s"], 3) if san and b["restore_s"] else None,
              "rehearsal_vs_bare": round(r["wall_s"] / b["total_s"], 3) if complete else None,
              "isolation_stage_vs_bare_restore": (round(r["stages_s"]["isolation"] / b["restore_s"], 3)
                                                  if r["stages_s"].get("isolation") and b["restore_s"] else None),
              "second_rehearsal_vs_bare": (round(r2["wall_s"] / b["total_s"], 3)
                                           if r2["verdict"] == "REHEARSAL_PASSED" and b["total_s"] else None),
              "second_vs_first_rehearsal": round(r2["wall_s"] / r["wall_s"], 3) if r["wall_s"] else None,
              "rehearsal_vs_bare_j2": round(r["wall_s"] / b2["total_s"], 3) if complete and b2["total_s"] else None,
              "second_rehearsal_vs_bare_j2": (round(r2["wall_s"] / b2["total_s"], 3)
                                              if r2["verdict"] == "REHEARSAL_PASSED" and b2["total_s"] else None)}
    self_ru, child_ru = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "kind": "fix7 rehearsal benchmark", "rows": rows, "seed": seed,
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "clone": {k: v for k, v in clone.items() if k != "dir"},
        "bare": b, "bare_j2": b2, "rehearsal": r, "second_rehearsal": r2, "sanitization_breakdown_s": parts, "ratios": ratios,
        "goal": {"sanitization_vs_bare_restore_at_most": GOAL_SANITIZATION_VS_RESTORE,
                 "rehearsal_vs_bare_at_most": GOAL_REHEARSAL_VS_BARE,
                 "sanitization_met": bool(ratios["sanitization_vs_bare_restore"] is not None and
                                          ratios["sanitization_vs_bare_restore"] <= GOAL_SANITIZATION_VS_RESTORE),
                 "rehearsal_met": bool(ratios["rehearsal_vs_bare"] is not None and
                                       ratios["rehearsal_vs_bare"] <= GOAL_REHEARSAL_VS_BARE)},
        "memory": {"peaks_by_phase": mem.result(),
                   "getrusage_peak_rss_mb": {"bench_process": round(self_ru.ru_maxrss / 1024, 1),
                                             "largest_child": round(child_ru.ru_maxrss / 1024, 1)}},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    result["results_file"] = str(out)
    return result


def render_text(result: dict) -> str:
    b, r, q, g = result["bare"], result["rehearsal"], result["ratios"], result["goal"]
    n = result["clone"]["row_counts"]
    mem = result["memory"]
    lines = [f"fix7 rehearsal benchmark: {n['birth_registry']:,} registry rows, {n['os_proposal_approvals']:,} "
             f"approvals, {n['directus_revisions']:,} revisions; custom dump "
             f"{result['clone']['custom_dump_bytes'] / 1e6:.0f} MB; {result['machine']['cores']} cores", "",
             f"bare   pg_restore -d {b['restore_s']} s   psql -f apply {b['apply_s']} s   "
             f"psql -f rollback {b['rollback_s']} s   total {b['total_s']} s"
             + (f"   ({'; '.join(f'{k}: {v}' for k, v in b['errors'].items())})" if b["errors"] else ""),
             f"fix7   rehearsal {r['wall_s']:>8.2f} s ({r['verdict']}); stages:"]
    for stage, s in r["stages_s"].items():
        why = r["stage_reasons"].get(stage)
        lines.append(f"         {stage:<16}{s if s is not None else '-':>9} s  {r['stage_status'].get(stage)}"
                     + (f" ({why[:100]})" if why else ""))
    lines += [f"         {'(dagster etc.)':<16}{r['overhead_s']:>9} s   (+ {r['import_and_instance_s']} s importing the "
              "definitions and opening the instance, before the timer)"]
    r2 = result.get("second_rehearsal")
    if r2:
        reuse = r2.get("clone_reuse") or {}
        how = (f"copy {reuse['copy']['strategy']} {reuse['copy']['seconds']} s, fingerprint check "
               f"{reuse['fingerprint_check_s']} s" if reuse.get("reused") else f"not reused: {reuse.get('why')}")
        lines.append(f"fix7   second rehearsal {r2['wall_s']:>8.2f} s ({r2['verdict']}; {how}); stages: " + ", ".join(
            f"{k} {v}" for k, v in r2["stages_s"].items()))
        lines.append(f"second rehearsal / bare total = {q.get('second_rehearsal_vs_bare')}   second / first "
                     f"rehearsal = {q.get('second_vs_first_rehearsal')}")
    b2 = result.get("bare_j2")
    if b2:
        lines.append(f"bare   pg_restore -j 2 {b2['restore_s']} s, total {b2['total_s']} s;  rehearsal / bare -j 2 = "
                     f"{q.get('rehearsal_vs_bare_j2')}   second rehearsal / bare -j 2 = "
                     f"{q.get('second_rehearsal_vs_bare_j2')}")
    lines += ["",
              f"sanitization / bare pg_restore = {q['sanitization_vs_bare_restore']}  (goal <= "
              f"{g['sanitization_vs_bare_restore_at_most']}: {'met' if g['sanitization_met'] else 'NOT met'})",
              f"rehearsal / bare total        = {q['rehearsal_vs_bare']}  (goal <= {g['rehearsal_vs_bare_at_most']}: "
              f"{'met' if g['rehearsal_met'] else 'NOT met'})", ""]
    for phase, p in mem["peaks_by_phase"].items():
        lines.append(f"peak memory, {phase:<10} bench process tree RSS {p['bench_tree_rss_mb']:>7.1f} MB, "
                     f"server PSS {p['server_pss_mb']} MB")
    if result.get("sanitization_breakdown_s"):
        lines.append("sanitization stage, call by call on a fresh restore: " + ", ".join(
            f"{k} {v}" for k, v in result["sanitization_breakdown_s"].items()))
    ru = mem["getrusage_peak_rss_mb"]
    lines += [f"getrusage peak RSS: bench process {ru['bench_process']} MB, largest child {ru['largest_child']} MB",
              f"results: {result.get('results_file')}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rehearsal", description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="birth_registry rows (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default .fix7/bench/rehearsal-results.json)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached clean clone")
    ap.add_argument("--breakdown", action="store_true",
                    help="afterwards, time the sanitization stage's calls one by one on a fresh restore")
    ap.add_argument("--statement-timeout", type=int, default=600, metavar="S",
                    help="statement timeout of apply and rollback, both sides (default 600, the rehearsal's)")
    a = ap.parse_args(argv)
    if a.rows < 1 or a.statement_timeout < 1:
        ap.error("--rows and --statement-timeout must be positive")
    result = run(a.rows, a.seed, a.out, a.rebuild, a.statement_timeout, a.breakdown)
    print(render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
