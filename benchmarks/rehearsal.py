"""Rehearsal speed: the whole rehearsal, first and repeated, against a bare restore + apply + rollback.

`python -m benchmarks.rehearsal [--rows N]` builds (or reuses, keyed by rows and seed) a clean
production-shaped clone on the factory server and its custom-format dump, then in one run, on that dump:

1. **bare**, single-stream and `-j 2`: a fresh database and role (`create_throwaway`), the wheel's
   `pg_restore --no-owner --no-privileges [-j 2] -d` of the dump, `psql -X -1 -v ON_ERROR_STOP=1 -f` an
   apply, then its rollback, each timed;
2. **first rehearsal**: the real `fix7_rehearsal` Dagster job (`fix7_pipeline.cli.rehearse.run_rehearsal`, what
   `fix7 rehearse` runs) with `fresh_clone`: restore, every gate, and a verified clone template kept;
3. **repeat rehearsal**: the same dump with *another* change, as an operator fixing a change or CI on the next
   push runs it: from the template the first one verified (issue 25).

The headline is the **light change** (the sample FIX7 change limited to 2,000 certified births, its
rollback indexed); the second row is the **heavy** sample change (every approved birth), bare and a first
rehearsal, whose minutes of apply and rollback weigh the same on both sides. A rehearsal's time is its whole
process, as an operator waits for `fix7 rehearse`: interpreter, imports and instance included. Each stage's own
time is read from the sealed packet (`stages[*].duration_s`); the rest of the run's time is Dagster's, between
stages.

Each rehearsal runs in a process of its own, as `fix7 rehearse` does. Memory is sampled every 0.2 s during
each phase: the resident set of the processes the benchmark started (the rehearsal's, with its client tools;
pg_restore and psql on the bare side) and the proportional set (PSS) of the rehearsal server's processes, plus
`getrusage` peaks. The Dagster runs go to a bench-only instance under `.fix7/bench/dagster_home`
unless DAGSTER_HOME is set.
"""

from __future__ import annotations

import argparse
import hashlib
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
LIGHT_ROWS = 2000
# issue 25 (light change, 2 cores): first rehearsal against bare -j 2 and single-stream, repeat against bare -j 2;
# issue 26: the sanitization stage against a bare pg_restore; both: peak RSS of the bench process tree
GOALS = {"rehearsal_vs_bare_j2": 2.0, "rehearsal_vs_bare": 1.5, "second_rehearsal_vs_bare_j2": 0.75,
         "sanitization_vs_bare_restore": 0.5}
GOAL_PEAK_RSS_MB = 400


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
    """Peaks, per phase, of the RSS of the processes the benchmark started (a rehearsal worker with its client tools;
    pg_restore and psql for bare) and the rehearsal server's PSS (sampled)."""

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

    def _tree(self, root, pss: bool, itself: bool = True) -> int:
        total = 0
        for p in [root, *root.children(recursive=True)][0 if itself else 1:]:
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
            peak = self.peaks.setdefault(phase, {"process_tree_rss_mb": 0.0, "server_pss_mb": 0.0, "samples": 0})
            peak["process_tree_rss_mb"] = max(peak["process_tree_rss_mb"], self._tree(self.me, False, False) / 2**20)
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
        return {k: {"process_tree_rss_mb": round(v["process_tree_rss_mb"], 1),
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
    """Where the sanitization stage's time goes: the dump restored as the isolation stage restores it, then the
    stage's two parts on the same cold (never vacuumed) clone: the scan of every place that holds text (tables,
    large objects, catalog, settings) and the GX suite over its findings."""
    import secrets as pysecrets

    from fix7_pipeline.core.clone.restore import restore
    from fix7_pipeline.core.dumps.identify import inspect_dump
    from fix7_pipeline.core.intake.contract_load import load_contract
    from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway
    from fix7_pipeline.core.sanitization import secrets
    from fix7_pipeline.core.shape import data_rules

    contract = load_contract(None)
    tw = create_throwaway(server)
    try:
        t0 = time.perf_counter()
        restore(server, tw, inspect_dump(dump, verify_data=False))
        parts = {"restore_s": time.perf_counter() - t0}
        t0 = time.perf_counter()
        scan = secrets.scan_secrets(lambda db: server.connect(db, tw.login, purpose="secret scan"), tw.database,
                                    contract, pysecrets.token_hex(16))
        parts["scan_secrets_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        data_rules.run_sanitization(list(scan), contract, scan.present_tables)
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


def rehearse_here(dump: Path, apply_sql: Path, rollback_sql: Path, statement_timeout_s: int, **extra) -> dict:
    """The fix7_rehearsal job on the dump in this process; wall time of the call and each stage's time from the
    packet."""
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
    statements = {name: (packet["stages"].get(name) or {}).get("impact_summary", {}).get("total_s")
                  for name in ("apply", "rollback")}
    statuses = {name: s.get("status") for name, s in packet["stages"].items()}
    reasons = {name: s.get("reason") for name, s in packet["stages"].items() if s.get("status") != "passed"}
    return {"evidence_dir": str(evidence), "verdict": out["verdict"], "wall_s": round(wall, 2), "stages_s": stages,
            "change_statements_s": statements, "stage_status": statuses,
            "clone_reuse": {k: (packet.get("clone_reuse") or {}).get(k) for k in ("reused", "why", "copy",
                                                                                 "fingerprint_check_s")},
            "stage_reasons": reasons, "statement_timeout_s": int(statement_timeout_s),
            "stages_sum_s": round(sum(v for v in stages.values() if v), 2),
            "overhead_s": round(wall - sum(v for v in stages.values() if v), 2),
            "import_and_instance_s": round(t_setup, 2),
            "call": "fix7_pipeline.cli.rehearse.run_rehearsal (a run of the code location's fix7_rehearsal job, "
                    "executed in process)"}


def rehearse(dump: Path, apply_sql: Path, rollback_sql: Path, statement_timeout_s: int, **extra) -> dict:
    """One rehearsal in a process of its own, as `fix7 rehearse` runs one: its memory is its own (the bench samples
    this process's children), and nothing one rehearsal imported or cached carries into the next."""
    args = {"dump": str(dump), "apply_sql": str(apply_sql), "rollback_sql": str(rollback_sql),
            "statement_timeout_s": statement_timeout_s, "extra": extra}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "benchmarks.rehearsal", "--worker", json.dumps(args)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=6 * 3600)
    process_s = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"the rehearsal worker failed (exit {r.returncode}): {r.stderr[-2000:]}")
    return {**json.loads(r.stdout.strip().splitlines()[-1]), "process_s": round(process_s, 2)}


def worker(args: dict) -> int:
    """`--worker`: one rehearsal here, its result as the last line of standard output."""
    from fix7_pipeline.cli.main import leave

    r = rehearse_here(Path(args["dump"]), Path(args["apply_sql"]), Path(args["rollback_sql"]),
                      int(args["statement_timeout_s"]), **args["extra"])
    r["worker_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(r))
    leave(0)  # as `fix7 rehearse` ends


LIGHT_ANCHOR = "where a.birth_registry_id = r.id and a.decision <> 'approved');\n"


def write_changes(directory: Path) -> dict[str, tuple[Path, Path]]:
    """The three changes of one run: `light` (the sample limited to the LIGHT_ROWS lowest ids), `other` (the
    LIGHT_ROWS highest ids: another change, for the repeat rehearsal) and `heavy` (the sample as shipped)."""
    from fix7_pipeline.demo import builder

    heavy = builder.write_sample_change(directory / "heavy")
    apply_text = heavy[0].read_text()
    if apply_text.count(LIGHT_ANCHOR) != 1:
        raise RuntimeError("the sample change no longer selects its births as benchmarks/rehearsal.py expects")
    out = {"heavy": heavy}
    for name, order in (("light", "asc"), ("other", "desc")):
        d = directory / name
        d.mkdir(parents=True, exist_ok=True)
        limited = LIGHT_ANCHOR.replace(");\n", f")\norder by r.id {order} limit {LIGHT_ROWS};\n")
        (d / "fix7_apply.sql").write_text(apply_text.replace(LIGHT_ANCHOR, limited))
        (d / "fix7_rollback.sql").write_text(heavy[1].read_text())
        out[name] = (d / "fix7_apply.sql", d / "fix7_rollback.sql")
    return out


def _at_bare_change_time(r: dict, bare_side: dict) -> float | None:
    """A passed rehearsal's process time with its apply and rollback statements' time replaced by bare psql's."""
    took = r.get("change_statements_s") or {}
    if _passed(r) is None or None in (took.get("apply"), took.get("rollback")):
        return None
    return _passed(r) - took["apply"] - took["rollback"] + bare_side["apply_s"] + bare_side["rollback_s"]


def _ratio(a, b) -> float | None:
    return round(a / b, 3) if a and b else None


def _passed(r: dict) -> float | None:
    """A rehearsal's time as an operator waits for it: its whole process, imports and instance included."""
    return r["process_s"] if r["verdict"] == "REHEARSAL_PASSED" else None


def run(rows: int = 1_000_000, seed: int = 7, out: Path | None = None, rebuild: bool = False,
        statement_timeout_s: int = 600, breakdown: bool = False, heavy: bool = True) -> dict:
    from benchmarks.scan import bench_dir
    from fix7_pipeline.core.postgres.hosts import HostPolicy
    from fix7_pipeline.core.postgres.server import RehearsalServer
    from fix7_pipeline.core.run import clone_templates as templates

    out = Path(out) if out else bench_dir() / "rehearsal-results.json"
    clone = clean_clone(rows, seed, rebuild=rebuild)
    cdir = Path(clone["dir"])
    dump = cdir / "clone.dump"
    changes = write_changes(cdir / "changes")
    digest = hashlib.sha256()
    with open(dump, "rb") as f:  # the same warm page cache for both sides
        while block := f.read(1 << 24):
            digest.update(block)
    server = RehearsalServer.embedded(HostPolicy())
    for t in templates.list_templates(server):  # the first rehearsal restores and gates: no template of this dump
        if (t.facts.get("parts") or {}).get("dump_sha256") == digest.hexdigest():
            templates.drop_template(server, t.name)
    heavy_row: dict | None = None
    with MemorySampler(_postmaster_pid()) as mem:
        mem.phase = "bare"
        _log("bare: pg_restore -d, psql -f apply, psql -f rollback (light change)")
        b = bare(server, dump, *changes["light"], statement_timeout_s)
        _log(f"bare: restore {b['restore_s']} s, apply {b['apply_s']} s, rollback {b['rollback_s']} s"
             + (f" ({b['errors']})" if b["errors"] else ""))
        mem.phase = "bare_j2"
        b2 = bare(server, dump, *changes["light"], statement_timeout_s, jobs=2)
        _log(f"bare -j 2: restore {b2['restore_s']} s, total {b2['total_s']} s")
        mem.phase = "rehearsal"
        _log("first rehearsal (light change): restore, every gate, a verified clone template kept")
        r = rehearse(dump, *changes["light"], statement_timeout_s, fresh_clone=True)
        _log(f"first rehearsal: {r['verdict']} in {r['process_s']} s")
        mem.phase = "second"
        _log("repeat rehearsal of the same dump with another change: from its verified clone template")
        r2 = rehearse(dump, *changes["other"], statement_timeout_s)
        _log(f"repeat rehearsal: {r2['verdict']} in {r2['process_s']} s (reused: {r2['clone_reuse']['reused']})")
        if heavy:
            mem.phase = "heavy"
            _log("heavy sample change: bare -j 2, then a first rehearsal")
            hb = bare(server, dump, *changes["heavy"], statement_timeout_s, jobs=2)
            hr = rehearse(dump, *changes["heavy"], statement_timeout_s, fresh_clone=True)
            _log(f"heavy: bare -j 2 total {hb['total_s']} s, first rehearsal {hr['verdict']} in {hr['process_s']} s")
            heavy_row = {"bare_j2": hb, "rehearsal": hr,
                         "rehearsal_vs_bare_j2": _ratio(_passed(hr), hb["total_s"])}
        parts = None
        if breakdown:
            mem.phase = "breakdown"
            _log("breakdown: the sanitization stage's calls one by one on a fresh restore")
            parts = sanitization_parts(server, dump)
            _log(f"breakdown: {parts}")
        mem.phase = None
    for rr in (r, r2, *([heavy_row["rehearsal"]] if heavy_row else [])):
        shutil.rmtree(rr.pop("evidence_dir"), ignore_errors=True)  # kept until the repeat cited the first's packet
    ratios = {"rehearsal_vs_bare_j2": _ratio(_passed(r), b2["total_s"]),
              "rehearsal_vs_bare": _ratio(_passed(r), b["total_s"]),
              "second_rehearsal_vs_bare_j2": _ratio(_passed(r2), b2["total_s"]),
              "second_rehearsal_vs_bare": _ratio(_passed(r2), b["total_s"]),
              "second_vs_first_rehearsal": _ratio(_passed(r2), _passed(r)),
              "sanitization_vs_bare_restore": _ratio(r["stages_s"].get("sanitization"), b["restore_s"]),
              "isolation_stage_vs_bare_j2_restore": _ratio(r["stages_s"].get("isolation"), b2["restore_s"]),
              # the first rehearsal with its change's statements taking as long as bare psql's: the rehearsal's
              # clone is analyzed (core/clone/restore.py), the bare one is not, so their plans may differ
              "rehearsal_at_bare_change_time_vs_bare_j2": _ratio(_at_bare_change_time(r, b2), b2["total_s"])}
    peaks = mem.result()
    peak_rss = max((p["process_tree_rss_mb"] for k, p in peaks.items() if k in ("rehearsal", "second", "heavy")),
                   default=None)
    self_ru, child_ru = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "kind": "fix7 rehearsal benchmark", "rows": rows, "seed": seed,
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "clone": {k: v for k, v in clone.items() if k != "dir"},
        "changes": {"light": f"the sample change limited to the {LIGHT_ROWS} lowest-id approved births",
                    "other": f"the sample change limited to the {LIGHT_ROWS} highest-id approved births (the repeat's)",
                    "heavy": "the sample change as shipped (every approved birth)"},
        "bare": b, "bare_j2": b2, "rehearsal": r, "second_rehearsal": r2, "heavy": heavy_row,
        "sanitization_breakdown_s": parts, "ratios": ratios,
        "goal": {"at_most": GOALS, "peak_rss_mb_at_most": GOAL_PEAK_RSS_MB,
                 "met": {k: bool(ratios[k] is not None and ratios[k] <= v) for k, v in GOALS.items()},
                 "peak_rss_met": bool(peak_rss is not None and peak_rss <= GOAL_PEAK_RSS_MB)},
        "memory": {"peaks_by_phase": peaks, "peak_rehearsal_rss_mb": peak_rss,
                   "getrusage_peak_rss_mb": {"bench_process": round(self_ru.ru_maxrss / 1024, 1),
                                             "largest_child": round(child_ru.ru_maxrss / 1024, 1)}},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    result["results_file"] = str(out)
    return result


def _stages_line(r: dict) -> str:
    return (f"run {r['wall_s']} s = " + ", ".join(f"{k} {v}" for k, v in r["stages_s"].items())
            + f", Dagster between stages {r['overhead_s']}; before the run (interpreter, imports, instance) "
              f"{round(r['process_s'] - r['wall_s'], 2)}")


def render_text(result: dict) -> str:
    b, b2, r, r2, q, g = (result[k] for k in ("bare", "bare_j2", "rehearsal", "second_rehearsal", "ratios", "goal"))
    n = result["clone"]["row_counts"]
    mem = result["memory"]

    def bare_line(label: str, x: dict) -> str:
        return (f"bare   {label:<22} restore {x['restore_s']} s, apply {x['apply_s']} s, rollback {x['rollback_s']} s,"
                f" total {x['total_s']} s" + (f" ({'; '.join(f'{k}: {v}' for k, v in x['errors'].items())})"
                                              if x["errors"] else ""))

    reuse = r2.get("clone_reuse") or {}
    how = (f"copy {reuse['copy']['strategy']} {reuse['copy']['seconds']} s, fingerprint check "
           f"{reuse['fingerprint_check_s']} s" if reuse.get("reused") else f"not reused: {reuse.get('why')}")
    lines = [f"fix7 rehearsal benchmark: {n['birth_registry']:,} registry rows, {n['os_proposal_approvals']:,} "
             f"approvals, {n['directus_revisions']:,} revisions; custom dump "
             f"{result['clone']['custom_dump_bytes'] / 1e6:.0f} MB; {result['machine']['cores']} cores", "",
             f"light change ({result['changes']['light']}):",
             bare_line("pg_restore", b), bare_line("pg_restore -j 2", b2),
             f"fix7   first rehearsal  {r['process_s']:>8.2f} s ({r['verdict']}): {_stages_line(r)}",
             f"fix7   repeat rehearsal {r2['process_s']:>8.2f} s ({r2['verdict']}; another change; {how}): "
             f"{_stages_line(r2)}"]
    for stage, why in {**r["stage_reasons"], **r2["stage_reasons"]}.items():
        lines.append(f"         {stage}: {why[:100]}")
    lines.append("")
    for k, limit in g["at_most"].items():
        lines.append(f"{k:<32} = {q[k]}  (goal <= {limit}: {'met' if g['met'][k] else 'NOT met'})")
    lines.append(f"{'second_vs_first_rehearsal':<32} = {q['second_vs_first_rehearsal']}")
    h = result.get("heavy")
    if h:
        lines += ["", f"heavy change ({result['changes']['heavy']}):", bare_line("pg_restore -j 2", h["bare_j2"]),
                  f"fix7   first rehearsal  {h['rehearsal']['process_s']:>8.2f} s ({h['rehearsal']['verdict']}): "
                  f"{_stages_line(h['rehearsal'])}",
                  f"{'rehearsal_vs_bare_j2 (heavy)':<32} = {h['rehearsal_vs_bare_j2']}"]
    lines.append("")
    for phase, p in mem["peaks_by_phase"].items():
        lines.append(f"peak memory, {phase:<10} process tree RSS {p['process_tree_rss_mb']:>7.1f} MB, "
                     f"server PSS {p['server_pss_mb']} MB")
    lines.append(f"peak RSS of the rehearsals {mem['peak_rehearsal_rss_mb']} MB (goal <= {g['peak_rss_mb_at_most']}: "
                 f"{'met' if g['peak_rss_met'] else 'NOT met'})")
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
    ap.add_argument("--no-heavy", action="store_true",
                    help="leave out the heavy sample change's row (bare -j 2 and a first rehearsal with it)")
    ap.add_argument("--statement-timeout", type=int, default=600, metavar="S",
                    help="statement timeout of apply and rollback, both sides (default 600, the rehearsal's)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(json.loads(a.worker))
    if a.rows < 1 or a.statement_timeout < 1:
        ap.error("--rows and --statement-timeout must be positive")
    result = run(a.rows, a.seed, a.out, a.rebuild, a.statement_timeout, a.breakdown, heavy=not a.no_heavy)
    print(render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
