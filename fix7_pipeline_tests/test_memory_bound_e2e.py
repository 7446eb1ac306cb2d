"""Issue 22 item 2, "bounded memory": the peak resident set of the whole process tree of `fix7 rehearse`
(the CLI and every process it starts: pg_restore, psql) stays within 400 MB + 1.5 x the largest single value.

The clone carries one 48 MB text value with a GitHub token at its very end and a Slack token across an edge of
the scan's windows; both must be found (so the value really was read) while /proc is sampled every 20 ms.
The memory figure for a 300 MB value is `make bench-memory` (benchmarks/memory.py).
"""

from __future__ import annotations

import secrets
import string

from fix7_pipeline.core.sanitization import copy_reader
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import (DagsterHome, find_leaks, findings, load_packet, planted, rehearse_args,
                                             rnd, variant)

SOURCE = "fix7_t_e2e_membound_src"
VALUE_MB = 48
BASE_MB = 400
PER_VALUE = 1.5


def test_a_48_mb_value_is_scanned_within_the_memory_bound(tmp_path, server):
    from benchmarks.memory import big_value_sql, rehearse_sampled

    end = planted("GitHub token at the value's end", "ghp_", (rnd(36), True))
    edge = planted("Slack token across a window edge", "xoxb-", (rnd(12, string.digits), True), "-",
                   (rnd(13, string.digits), True), "-", (rnd(24), True))
    value_bytes = VALUE_MB << 20
    # the Slack token starts 20 bytes before the end of the 8th window
    edge_at = 8 * copy_reader.VALUE_WINDOW - 20
    builder.build_clone(SOURCE, registry_rows=30, seed=5)
    name = f"fix7h_e2e_membound_{secrets.token_hex(3)}"
    try:
        variant(SOURCE, name, big_value_sql(value_bytes, end.value, edge.value, edge_at))
        try:
            dump = builder.dump_clone(name, "custom", tmp_path / "big-value.dump")
        finally:
            builder.drop_clone(name)
    finally:
        builder.drop_clone(SOURCE)
    change = builder.write_sample_change(tmp_path / "change")
    home = DagsterHome.create(tmp_path / "dagster_home", "membound")
    try:
        ev = tmp_path / "evidence"
        r, peak_mb = rehearse_sampled(home.env, rehearse_args(dump, change, ev))
        out = r.stdout + r.stderr
        assert r.returncode == 3 and "Traceback" not in out, out
        packet = load_packet(ev)
        assert packet["stages"]["sanitization"]["status"] == "blocked"
        found = {(f["rule"], f.get("table"), f.get("column"), f.get("row_key")) for f in findings(packet, "sanitization")}
        assert {("betterleaks.github-pat", "big_values", "body", "1"),
                ("betterleaks.slack-bot-token", "big_values", "body", "1")} <= found, found
        assert find_leaks({"stdout": r.stdout.encode(), "stderr": r.stderr.encode()}, [end, edge]) == []
        bound = BASE_MB + PER_VALUE * VALUE_MB
        assert 0 < peak_mb <= bound, f"peak RSS of the process tree {peak_mb:.0f} MB > {bound:.0f} MB"
    finally:
        home.drop()
