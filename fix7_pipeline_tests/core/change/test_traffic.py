"""The traffic probe on real PostgreSQL: point reads and writes on the hot tables while a change runs, their waits
placed on the change's statements and locks, the lock queue behind a long reader, and the thresholds that gate."""

from __future__ import annotations

from fix7_pipeline.core.change import traffic
from fix7_pipeline.core.change.change_sql import ChangeSQL, run_change
from fix7_pipeline.core.change.impact import ImpactSettings, Thresholds
from fix7_pipeline.core.change.probe import probing
from fix7_pipeline.core.change.thresholds import ProbeSettings
from fix7_pipeline.core.anchor import fingerprint
from fix7_pipeline_tests.pg import as_owner, proof, server_throwaway_names

TABLES = ("create table public.registry (id int primary key, v text);"
          "insert into public.registry select g, 'r' || g from generate_series(1, 2000) g;"
          "create table public.approvals (id bigint primary key, n int);"
          "insert into public.approvals select g, g from generate_series(1, 2000) g;")
HOT = frozenset({"public.registry", "public.approvals"})


def _settings(**kw) -> ImpactSettings:
    probe = kw.pop("probe", ProbeSettings(sessions=3, rate=40.0, reader_hold_s=0.5))
    return ImpactSettings(hot_tables=kw.pop("hot_tables", HOT), probe=probe,
                          clone_rows={"public.registry": 2000, "public.approvals": 2000}, **kw)


def _rehearse(server, tw, text: str, settings: ImpactSettings, label: str = "apply"):
    with probing(server, tw, settings, label) as run:
        out = run_change(server, tw, ChangeSQL(label, f"/x/{label}.sql", "0" * 64, text), impact=settings)
    return out, traffic.attach(out.details.get("impact"), run, settings)


def _table(imp: dict, name: str) -> dict:
    return next(t for t in imp["traffic"]["tables"] if t["table"] == name)


def test_a_three_second_access_exclusive_lock_blocks_the_probe_and_fails_max_blocked_ms(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute(TABLES)
    text = "lock table public.registry in access exclusive mode;\nselect pg_sleep(3);\n"
    out, imp = _rehearse(server, throwaway, text, _settings(thresholds=Thresholds(max_blocked_ms=1000)))
    assert out.status == "passed", out.reason
    t = _table(imp, "public.registry")
    assert t["mode"] == "row" and t["queries"] > 8 and t["reads"] and t["writes"]
    assert t["max_blocked_ms"] >= 2500, t
    assert t["worst"]["by"]["line"] == 1 and t["worst"]["by"]["mode"] == "ACCESS EXCLUSIVE"
    assert t["lock_timeout_fired"] >= 1 and t["longest_queue"] >= 2
    assert _table(imp, "public.approvals")["max_blocked_ms"] < 100  # the other hot table is not locked
    # the change's LOCK TABLE queued behind the long reader, and the probe queued behind it
    waits = {w["line"]: w["wait_s"] for w in imp["traffic"]["change_lock_waits"]}
    assert 0.3 <= waits[1] < 1.0, imp["traffic"]["change_lock_waits"]
    [result] = [r for r in imp["thresholds"]["results"] if r["name"] == "max_blocked_ms"]
    assert result["passed"] is False and result["measured"] >= 2500
    msg = result["breaches"][0]["message"]
    assert msg.startswith("apply line 1 (LOCK TABLE): a probe ") and "of public.registry waited" in msg
    assert "ACCESS EXCLUSIVE" in msg and "> max_blocked_ms 1000 ms" in msg
    during = [s for s in imp["traffic"]["statements"] if s["line"] == 1 and s["table"] == "public.registry"]
    assert during and during[0]["waits_caused"] >= 1 and during[0]["modes"] == ["ACCESS EXCLUSIVE"]
    # the probe's role is gone, and so are its grants
    assert not {n for n in server_throwaway_names(server) if n.startswith("role fix7_probe_")}
    with proof(server, throwaway) as c:
        assert c.execute("select relacl::text from pg_class where relname = 'registry'").fetchone()[0] in (
            None, "{%s=arwdDxtm/%s}" % (throwaway.login.role, throwaway.login.role))


def test_create_index_without_concurrently_blocks_writes_not_reads(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute(TABLES)
        c.execute("insert into public.registry select g, repeat('x', 200) from generate_series(2001, 300000) g")
    text = "create index registry_v on public.registry (v, id);\nselect pg_sleep(1.5);\n"
    out, imp = _rehearse(server, throwaway, text, _settings(probe=ProbeSettings(sessions=3, rate=40.0,
                                                                                reader_hold_s=0)))
    assert out.status == "passed", out.reason
    blocked = [s for s in imp["traffic"]["statements"] if s["table"] == "public.registry" and s["line"] is not None]
    assert any(s["waits_caused"] for s in blocked if s["line"] == 1)
    assert {m for s in blocked for m in s["modes"]} == {"SHARE"}
    t = _table(imp, "public.registry")
    assert t["worst"]["kind"] == "write" and t["max_blocked_ms"] >= 1000
    reads = [q for q, k in zip(imp["traffic"]["timeline"]["blocked"], imp["traffic"]["timeline"]["kind"])
             if q and k == "read"]
    assert not reads  # SHARE lets reads through


def test_a_small_update_shows_no_wait_over_100_ms(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute(TABLES)
    out, imp = _rehearse(server, throwaway, "update public.registry set v = 'x' where id = 1999;\n",
                         _settings(thresholds=Thresholds(max_blocked_ms=100)))
    assert out.status == "passed", out.reason
    assert imp["traffic"]["ran"] and imp["traffic"]["queries"] > 20
    assert imp["traffic"]["max_blocked_ms"] <= 100, imp["traffic"]["tables"]
    assert imp["thresholds"]["passed"] is True


def test_the_probe_changes_nothing_a_fingerprint_sees(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute(TABLES)
        c.execute("create table public.audit (id serial primary key, at timestamptz default now());"
                  "create function public.touch() returns trigger language plpgsql as "
                  "$$ begin insert into public.audit default values; return new; end $$;"
                  "create trigger registry_touch before update on public.registry for each row "
                  "execute function public.touch();")

    def fp():
        with proof(server, throwaway) as c, proof(server, throwaway) as helper:
            return fingerprint.fingerprint(c, [helper])

    before = fp()
    out, imp = _rehearse(server, throwaway, "select pg_sleep(1);\n", _settings())
    assert out.status == "passed" and imp["traffic"]["ran"]
    assert sum(t["writes"] for t in imp["traffic"]["tables"] if "writes" in t) > 10
    assert fp() == before  # no row, sequence, privilege or trigger-written row changed


def test_a_probe_that_cannot_run_fails_max_blocked_ms_closed(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute(TABLES)
    out, imp = _rehearse(server, throwaway, "select 1;\n",
                         _settings(hot_tables=frozenset(), thresholds=Thresholds(max_blocked_ms=1000)))
    assert imp["traffic"]["ran"] is False and "no hot tables" in imp["traffic"]["reason"]
    [result] = imp["thresholds"]["results"]
    assert result["passed"] is False and "cannot be checked" in result["breaches"][0]["message"]


def test_a_full_table_update_gets_a_production_estimate_that_gates(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute(TABLES)
    settings = _settings(production_rows={"public.registry": 40_000_000},
                         thresholds=Thresholds(max_production_estimate_s=1))
    out, imp = _rehearse(server, throwaway, "update public.registry set v = v || 'x';\n"
                                            "update public.approvals set n = n where id = 1;\n", settings)
    assert out.status == "passed", out.reason
    [e] = imp["estimates"]  # the one-row update does not grow with rows
    assert (e["line"], e["table"], e["grows_by"], e["method"]) == (
        1, "public.registry", "UPDATE of many rows", "linear in rows")
    assert e["clone_rows"] == 2000 and e["factor"] == 20000.0
    assert e["production_s"] == round((e["measured_s"] - e["lock_wait_s"]) * 20000, 3) > 1
    [result] = [r for r in imp["thresholds"]["results"] if r["name"] == "max_production_estimate_s"]
    assert result["passed"] is False
    assert result["breaches"][0]["message"].startswith("apply line 1 (UPDATE), UPDATE of many rows of "
                                                       "public.registry: ")
    assert "> max_production_estimate_s 1 s" in result["breaches"][0]["message"]


def test_the_probe_login_reads_and_writes_the_hot_tables_and_nothing_else(server, throwaway):
    import psycopg
    import pytest

    from fix7_pipeline.core.change import probe_role
    from fix7_pipeline.core.postgres.server import SCRATCH

    with as_owner(server, throwaway) as c:
        c.execute(TABLES + "create table public.other (id int primary key, secret text);"
                           "insert into public.other values (1, 's');"
                           "create table public.guarded (id int primary key);"
                           "alter table public.guarded enable row level security;"
                           "create domain public.code as int check (value > 0);"
                           "create table public.coded (id public.code primary key);")
        acl_before = c.execute("select relname, relacl::text from pg_class where relnamespace = 'public'::regnamespace "
                               "order by 1").fetchall()
    tables = probe_role.find_tables(server, throwaway, ["registry", "public.guarded", "coded", "public.nope"])
    modes = {t.name: (t.mode, t.why) for t in tables}
    assert modes["public.registry"] == ("row", "")
    assert modes["public.guarded"][0] == "lock" and "row-level security" in modes["public.guarded"][1]
    assert modes["public.coded"][0] == "lock" and "type the dump defined" in modes["public.coded"][1]
    assert modes["public.nope"][1] == "not a table of the clone"
    role = probe_role.role_name(throwaway.tag, "apply")
    login, granted = probe_role.create(server, throwaway, role, tables, 2)
    try:
        with server.connect(throwaway.database, login, purpose="test probe login", session=SCRATCH) as c:
            assert c.execute("select 1 from public.registry where id = 5").fetchall() == [(1,)]
            c.execute("begin; lock table public.registry in row exclusive mode; rollback")
            for forbidden in ("select v from public.registry", "select * from public.other",
                              "insert into public.registry values (0, 'x')", "delete from public.registry",
                              "truncate public.registry", "create table public.mine (i int)",
                              "select 1 from public.guarded"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(forbidden)
            attrs = c.execute("select rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolinherit "
                              "from pg_roles where rolname = current_user").fetchone()
            assert attrs == (False, False, False, False, False)
    finally:
        assert probe_role.remove(server, throwaway, role, granted) == []
    assert not {n for n in server_throwaway_names(server) if n == f"role {role}"}
    with as_owner(server, throwaway) as c:
        acl_after = c.execute("select relname, relacl::text from pg_class where relnamespace = 'public'::regnamespace "
                              "order by 1").fetchall()
    owner = throwaway.login.role
    norm = {None: None, f"{{{owner}=arwdDxtm/{owner}}}": None}  # granted then revoked: the owner's default
    assert [(n, norm.get(a, a)) for n, a in acl_after] == [(n, norm.get(a, a)) for n, a in acl_before]


def test_a_rewrite_and_an_index_build_are_scaled_by_their_methods(server, throwaway):
    import math

    with as_owner(server, throwaway) as c:
        c.execute(TABLES)
    settings = _settings(production_rows={"public.registry": 40_000_000, "public.approvals": 2_000_000},
                         probe=ProbeSettings(enabled=False))
    out, imp = _rehearse(server, throwaway, "alter table public.approvals alter column n type bigint;\n"
                                            "create index registry_v on public.registry (v);\n"
                                            "alter table public.approvals add constraint n_pos check (n > 0);\n",
                         settings)
    assert out.status == "passed", out.reason
    by = {(e["line"], e["table"]): e for e in imp["estimates"]}
    assert by[(1, "public.approvals")]["grows_by"] == "table rewrite" and by[(1, "public.approvals")]["factor"] == 1000
    index = by[(2, "public.registry")]
    assert index["method"] == "n log n in rows (an index build sorts)"
    assert index["factor"] == round(40_000_000 * math.log(40_000_000) / (2000 * math.log(2000)), 3)
    assert by[(3, "public.approvals")]["grows_by"] == "every row checked"
    assert imp["traffic"]["ran"] is False and imp["traffic"]["reason"] == "turned off (no_traffic_probe)"
