"""The traffic probe's overhead on apply time: the same change, on the same clone, with the probe off and on.

A clone of two hot tables (`--rows` each) and a change that does what most changes do and takes no ACCESS
EXCLUSIVE on a hot table (that one is delayed on purpose: the probe's long reader makes it queue), run `--rounds`
times each way, alternating, on the rehearsal server (embedded by default). Reported: the apply time the impact
section measures (statements and COMMIT) with the probe off and on, the median of each and the overhead; and
the wall time the probe adds around the stage (its role, grants, warm-up and teardown), which is not apply time.

    python -m benchmarks.traffic --rows 200000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace

from fix7_pipeline.core.change import traffic
from fix7_pipeline.core.change.change_sql import ChangeSQL, run_change
from fix7_pipeline.core.change.impact import ImpactSettings
from fix7_pipeline.core.change.probe import probing
from fix7_pipeline.core.change.thresholds import ProbeSettings
from fix7_pipeline.core.postgres.hosts import HostPolicy
from fix7_pipeline.core.postgres.server import CHANGE, RehearsalServer
from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway

SETUP = """
create table public.registry (id bigint primary key, status text not null, v text, updated_at timestamptz);
insert into public.registry select g, 'proposed', md5(g::text), now() from generate_series(1, {rows}) g;
create table public.approvals (id bigint primary key, registry_id bigint not null, decision text);
insert into public.approvals select g, g, 'approved' from generate_series(1, {rows}) g;
create table public.history (id bigint, note text);
insert into public.history select g, md5(g::text) from generate_series(1, {rows}) g;
analyze;
"""
CHANGE_SQL = """
update public.registry set status = 'approved', updated_at = now() where id % 10 = 0;
create index history_note on public.history (note);
alter table public.history add column reviewed_at timestamptz;
update public.approvals set decision = decision where id <= 1000;
"""
UNDO = """
update public.registry set status = 'proposed' where id % 10 = 0;
drop index public.history_note;
alter table public.history drop column reviewed_at;
"""


def _apply(server, tw, settings: ImpactSettings) -> tuple[float, float, dict | None]:
    change = ChangeSQL("apply", "/bench/apply.sql", "0" * 64, CHANGE_SQL)
    started = time.perf_counter()
    with probing(server, tw, settings, "apply") as run:
        out = run_change(server, tw, change, impact=settings)
    wall = time.perf_counter() - started
    impact = traffic.attach(out.details.get("impact"), run, settings)
    if out.status != "passed":
        raise SystemExit(f"the benchmark's change failed: {out.reason}")
    return impact["total_s"], wall, impact.get("traffic")


def run(rows: int, rounds: int, sessions: int, rate: float) -> dict:
    server = RehearsalServer.embedded(HostPolicy())
    tw = create_throwaway(server)
    try:
        with server.connect(tw.database, tw.login, purpose="bench set-up", session=CHANGE) as c:
            c.execute(SETUP.format(rows=int(rows)))
        on = ImpactSettings(hot_tables=frozenset({"public.registry", "public.approvals"}),
                            probe=ProbeSettings(sessions=sessions, rate=rate))
        off = replace(on, probe=replace(on.probe, enabled=False))
        times: dict[str, list] = {"off": [], "on": []}
        walls: dict[str, list] = {"off": [], "on": []}
        probe = None
        for k in range(rounds):
            for name, settings in (("off", off), ("on", on)) if k % 2 == 0 else (("on", on), ("off", off)):
                total, wall, tr = _apply(server, tw, settings)
                times[name].append(total)
                walls[name].append(wall)
                probe = tr if name == "on" else probe
                with server.connect(tw.database, tw.login, purpose="bench undo", session=CHANGE) as c:
                    c.execute(UNDO)
                    c.execute("vacuum analyze")
        med = {n: statistics.median(v) for n, v in times.items()}
        wall_med = {n: statistics.median(v) for n, v in walls.items()}
        return {"rows": rows, "rounds": rounds, "probe": {"sessions": sessions, "rate_per_session": rate},
                "apply_s": times, "apply_median_s": med,
                "overhead_pct": round(100 * (med["on"] - med["off"]) / med["off"], 1) if med["off"] else None,
                "stage_wall_median_s": wall_med,
                "probe_wall_s": round(wall_med["on"] - wall_med["off"], 3),
                "probe_queries_last_round": (probe or {}).get("queries"),
                "probe_max_blocked_ms_last_round": (probe or {}).get("max_blocked_ms")}
    finally:
        drop_throwaway(server, tw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.traffic", description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows of each table (default 200,000)")
    ap.add_argument("--rounds", type=int, default=5, help="runs each way (default 5)")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--rate", type=float, default=20.0, help="queries a second, each probe session")
    args = ap.parse_args(argv)
    result = run(args.rows, args.rounds, args.sessions, args.rate)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
