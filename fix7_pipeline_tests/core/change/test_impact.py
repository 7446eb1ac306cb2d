"""What production will feel: each statement's duration, locks, rewrites, WAL and rows, measured on real
PostgreSQL from the change's own session; the warnings and the thresholds that gate."""

from __future__ import annotations

import pytest

from fix7_pipeline.core.change import impact
from fix7_pipeline.core.change.change_sql import ChangeSQL, run_change
from fix7_pipeline.core.change.impact import ImpactSettings, Thresholds, patterns
from fix7_pipeline_tests.pg import as_owner, superuser


def _run(server, tw, text: str, label: str = "apply", **settings):
    th = settings.pop("thresholds", Thresholds())
    out = run_change(server, tw, ChangeSQL(label, f"/x/{label}.sql", "0" * 64, text),
                     impact=ImpactSettings(thresholds=th, **settings))
    return out, out.details.get("impact")


def _setup(server, tw, sql: str) -> None:
    with as_owner(server, tw) as c:
        c.execute(sql)


def _statement(imp: dict, line: int) -> dict:
    return next(s for s in imp["statements"] if s["line"] == line)


def _rules(imp: dict) -> list[tuple[str, int, str]]:
    return [(w["rule"], w["line"], w["relation"]) for w in imp["warnings"]]


TABLES = ("create table public.registry (id int primary key, v text);"
          "insert into public.registry select g, 'r' || g from generate_series(1, 5000) g;"
          "create table public.approvals (id int primary key, n int, registry_id int references public.registry);"
          "insert into public.approvals select g, g, g from generate_series(1, 5000) g;"
          "create index approvals_n on public.approvals (n);")


def test_access_exclusive_held_through_a_sleep_is_measured_and_gates(server, throwaway):
    _setup(server, throwaway, TABLES)
    text = ("-- FIX7: hold the registry\n"
            "lock table public.registry in access exclusive mode;\n"
            "select pg_sleep(2);\n"
            "update public.approvals set n = n + 1 where id <= 10;\n")
    out, imp = _run(server, throwaway, text, hot_tables=frozenset({"public.registry"}),
                    clone_rows={"public.registry": 5000}, production_rows={"public.registry": 40_000_000},
                    thresholds=Thresholds(max_lock_s=1, max_access_exclusive_s=1.5, max_statement_s=2.5,
                                          max_total_s=1))
    assert out.status == "passed", out.reason  # the change committed; the breach is the verdict's to read
    lock, sleep, update = _statement(imp, 2), _statement(imp, 3), _statement(imp, 4)
    assert lock["kind"] == "LOCK TABLE" and update["kind"] == "UPDATE" and update["rows"] == 10
    assert 2.0 <= sleep["duration_s"] < 2.5 and lock["duration_s"] < 0.5  # measurement time is not counted
    [held] = [lk for lk in lock["locks"] if lk["relation"] == "public.registry"]
    assert held["mode"] == "ACCESS EXCLUSIVE" and 2.0 <= held["held_s"] < 2.5
    assert {(lk["relation"], lk["mode"]) for lk in update["locks"]} >= {("public.approvals", "ROW EXCLUSIVE")}
    assert imp["top_locks"][0]["relation"] == "public.registry" and imp["top_locks"][0]["to"] == "commit"
    assert imp["top_locks"][0]["scale"] == "5,000 rows in the clone; production has 40M"
    assert 2.0 <= imp["max_access_exclusive_s"] == imp["max_lock_s"] <= imp["total_s"] < 2.5
    assert isinstance(update["wal_bytes"], int) and update["wal_bytes"] > 0 and imp["wal_bytes"] > 0
    assert ("hot_table_access_exclusive", 2, "public.registry") in _rules(imp)
    results = {r["name"]: r for r in imp["thresholds"]["results"]}
    assert results["max_statement_s"]["passed"] is True
    assert results["max_total_s"]["passed"] is False and results["max_total_s"]["measured"] == imp["total_s"]
    assert results["max_total_s"]["breaches"][0]["message"].startswith("apply took 2.")
    assert results["max_total_s"]["breaches"][0]["message"].endswith(" s in all (statements and COMMIT) > "
                                                                     "max_total_s 1 s")
    for name, limit in (("max_lock_s", "1"), ("max_access_exclusive_s", "1.5")):
        assert results[name]["passed"] is False
        breach = results[name]["breaches"][0]
        assert (breach["line"], breach["kind"], breach["relation"], breach["mode"]) == (
            2, "LOCK TABLE", "public.registry", "ACCESS EXCLUSIVE")
        assert breach["message"].startswith(f"apply line 2 (LOCK TABLE) held ACCESS EXCLUSIVE on public.registry "
                                            f"for 2.")
        assert f"> {name} {limit} s (5,000 rows in the clone; production has 40M)" in breach["message"]
    assert "impact threshold" not in out.reason  # the stage reports the commit; the packet reads the breach


def test_column_type_change_that_rewrites_is_named_with_sizes(server, throwaway):
    _setup(server, throwaway, TABLES)
    text = ("alter table public.approvals alter column n type bigint;\n"
            "alter table public.registry alter column v type varchar(40);\n"
            "alter table public.registry alter column v type text;\n")
    out, imp = _run(server, throwaway, text,
                    thresholds=Thresholds(no_rewrite_tables=("public.approvals", "public.registry",
                                                             "public.nope")))
    assert out.status == "passed", out.reason
    rewrites = {r["relation"]: r for r in _statement(imp, 1)["rewrites"]}
    assert set(rewrites) == {"public.approvals", "public.approvals_pkey", "public.approvals_n"}
    table = rewrites["public.approvals"]
    assert table["relkind"] == "table" and table["size_before_bytes"] > 0 and table["size_after_bytes"] > 0
    assert rewrites["public.approvals_n"]["relkind"] == "index"  # built again under its name
    assert _statement(imp, 2)["rewrites"] != []      # text -> varchar(40) checks every value: a rewrite
    assert _statement(imp, 3)["rewrites"] == []      # varchar -> text is binary-coercible: no rewrite
    [locked] = [lk for lk in _statement(imp, 1)["locks"] if lk["relation"] == "public.approvals"
                and lk["mode"] == "ACCESS EXCLUSIVE"]
    assert locked["held_s"] >= _statement(imp, 1)["duration_s"]
    assert [r for r in _rules(imp) if r[0] == "column_type_change_rewrite"] == [
        ("column_type_change_rewrite", 1, "public.approvals"), ("column_type_change_rewrite", 2, "public.registry")]
    warning = next(w for w in imp["warnings"] if w["line"] == 1)
    assert "ALTER COLUMN n TYPE bigint rewrote public.approvals" in warning["message"]
    [result] = imp["thresholds"]["results"]
    assert result["name"] == "no_rewrite_tables" and result["passed"] is False
    assert result["measured"] == ["public.approvals", "public.registry"]
    unknown, first = result["breaches"][:2]
    assert unknown["message"] == ("no_rewrite_tables names public.nope, which the clone does not have before apply: "
                                  "the threshold cannot be checked")  # a table it cannot see fails closed
    assert first["message"].startswith("apply line 1 (ALTER TABLE) rewrote public.approvals (")


def test_index_without_concurrently_takes_share_and_warns_above_the_size(server, throwaway):
    _setup(server, throwaway, TABLES)
    text = "create index registry_v on public.registry (v);\n"
    out, imp = _run(server, throwaway, text, index_warn_rows=1000, clone_rows={"public.registry": 5000})
    assert out.status == "passed", out.reason
    st = _statement(imp, 1)
    assert st["kind"] == "CREATE INDEX"
    assert ("public.registry", "SHARE", False) in {(lk["relation"], lk["mode"], lk["new_relation"])
                                                    for lk in st["locks"]}
    assert [c["relation"] for c in st["created"]] == ["public.registry_v"] and st["created"][0]["size_bytes"] > 0
    assert _rules(imp) == [("index_without_concurrently", 1, "public.registry")]
    assert "CONCURRENTLY" in imp["warnings"][0]["message"] and "measured: SHARE" in imp["warnings"][0]["message"]
    assert imp["thresholds"] == {"set": False, "passed": True, "results": []}  # nothing set: nothing gated
    # below both sizes, and on a table the change creates itself: no warning
    out, imp = _run(server, throwaway, "create index registry_v2 on public.registry (v);\n"
                    "create table public.fresh (x int);\ncreate index fresh_x on public.fresh (x);\n",
                    index_warn_rows=10_000, clone_rows={"public.registry": 5000})
    assert out.status == "passed" and _rules(imp) == []
    assert all(lk["new_relation"] for lk in _statement(imp, 3)["locks"] if lk["relation"].startswith("public.fresh"))


def test_volatile_default_rewrites_and_a_stable_one_does_not(server, throwaway):
    _setup(server, throwaway, TABLES)
    text = ("alter table public.approvals add column at timestamptz default now();\n"
            "alter table public.approvals add column token uuid default gen_random_uuid();\n"
            "alter table public.approvals add constraint approvals_n_check check (n > 0);\n"
            "alter table public.approvals add constraint approvals_n2 check (n > -1) not valid, "
            "add constraint c_reg foreign key (registry_id) references public.registry (id);\n"
            "comment on table public.approvals is 'add constraint x check (1 > 0) -- not valid';\n")
    out, imp = _run(server, throwaway, text)
    assert out.status == "passed", out.reason
    assert _statement(imp, 1)["rewrites"] == []                    # now() is stable: PostgreSQL 11+ does not rewrite
    assert "public.approvals" in {r["relation"] for r in _statement(imp, 2)["rewrites"]}
    assert _rules(imp) == [("volatile_default", 2, "public.approvals"),
                           ("constraint_without_not_valid", 3, "public.approvals"),
                           ("constraint_without_not_valid", 4, "public.approvals")]
    assert "gen_random_uuid()" in imp["warnings"][0]["message"] and "rewrote public.approvals" in \
        imp["warnings"][0]["message"]
    assert "FOREIGN KEY" in imp["warnings"][2]["message"]


def test_a_lock_given_back_by_rollback_to_savepoint_is_held_only_until_then(server, throwaway):
    _setup(server, throwaway, TABLES)
    text = ("savepoint a;\nlock table public.registry in access exclusive mode;\nrollback to savepoint a;\n"
            "select pg_sleep(0.5);\n")
    out, imp = _run(server, throwaway, text, thresholds=Thresholds(max_access_exclusive_s=0.4))
    assert out.status == "passed", out.reason
    [lk] = [lk for lk in imp["locks"] if lk["relation"] == "public.registry"]
    assert lk["to"] == "line 3" and lk["held_s"] < 0.4
    assert imp["thresholds"]["passed"] is True and imp["total_s"] >= 0.5


def test_measurement_is_not_steered_by_a_search_path_the_change_sets(server, throwaway):
    """The dump's own `=` on the types the measurement queries compare, first on the path: never called."""
    ops = "".join(
        f"create function public.evil_eq(a {t}, b {t}) returns boolean language plpgsql as "
        f"$$ begin raise exception 'dump code ran'; end $$;"
        f"create operator public.= (leftarg = {t}, rightarg = {t}, function = public.evil_eq);"
        for t in ("oid", "integer", "text", "name", '"char"'))
    _setup(server, throwaway, TABLES + ops)
    text = ("set local search_path = public, pg_catalog;\n"
            "alter table public.approvals alter column n type bigint;\nselect 1;\n")
    out, imp = _run(server, throwaway, text)
    assert out.status == "passed", out.reason
    assert "public.approvals" in {r["relation"] for r in _statement(imp, 2)["rewrites"]}


def test_wal_is_reported_not_measurable_when_the_role_may_not_read_it(server, throwaway):
    with superuser(server, throwaway.database) as c:
        c.execute("revoke execute on function pg_catalog.pg_current_wal_insert_lsn() from public")
    _setup(server, throwaway, TABLES)
    out, imp = _run(server, throwaway, "update public.registry set v = v where id < 100;\n")
    assert out.status == "passed", out.reason
    assert imp["wal_bytes"] is None and _statement(imp, 1)["wal_bytes"] is None
    assert imp["wal_note"].startswith("not measurable: the restoring role may not call pg_current_wal_insert_lsn()")
    assert _statement(imp, 1)["rows"] == 99 and imp["db_size_change_bytes"] is not None


def test_a_failed_change_keeps_what_was_measured_and_every_threshold_fails(server, throwaway):
    _setup(server, throwaway, TABLES)
    out, imp = _run(server, throwaway, "update public.registry set v = 'x' where id = 1;\nselect 1/0;\n",
                    thresholds=Thresholds(max_total_s=100))
    assert out.status == "failed" and "division by zero" in out.reason
    assert imp["completed"] is False and [s["line"] for s in imp["statements"]] == [1, 2]
    assert _statement(imp, 2)["failed"] is True
    assert imp["thresholds"]["passed"] is False  # a file that did not finish proves no threshold


def test_patterns_read_statements_not_text():
    assert [p.rule for p in patterns("create index concurrently i on t (x)", 1)] == []
    assert [(p.rule, p.table) for p in patterns('create unique index i on only "S"."T" (x)', 1)] == [
        ("index_without_concurrently", ["S", "T"])]
    assert [p.rule for p in patterns("alter table t add constraint c check (x > 0) /* not valid */", 1)] == [
        "constraint_without_not_valid"]
    assert [p.rule for p in patterns("alter table t add constraint c check (x <> 'not valid') not valid", 1)] == []
    assert [p.rule for p in patterns("alter table t add foreign key (a) references u not valid", 1)] == []
    [p] = patterns("alter table if exists only s.t alter column c set data type numeric(20) using c::numeric", 1)
    assert (p.rule, p.table, p.detail, p.extra["type"]) == ("column_type_change", ["s", "t"], "c", "numeric")
    [p] = patterns("alter table t add column c int default (floor(random() * 10))::int not null", 1)
    assert p.extra["functions"] == ["floor", "random"]


def test_thresholds_that_make_no_sense_are_named():
    assert impact.threshold_problems({"max_lock_s": -1, "max_total_s": float("nan"), "no_rewrite_tables": [""]}) == [
        "max_lock_s must be a number of seconds at or above 0, not -1",
        "max_total_s must be a number of seconds at or above 0, not nan",
        "no_rewrite_tables must be a list of table names (schema.table, or table for public)"]
    assert impact.threshold_problems({"max_lock_s": 0, "index_warn_rows": 10, "no_rewrite_tables": ["t"]}) == []


@pytest.mark.parametrize("mode, name", [("AccessExclusiveLock", "ACCESS EXCLUSIVE"), ("ShareLock", "SHARE"),
                                        ("ShareUpdateExclusiveLock", "SHARE UPDATE EXCLUSIVE")])
def test_lock_modes_read_as_sql_spells_them(mode, name):
    assert impact.mode_name(mode) == name
