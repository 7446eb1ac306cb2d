"""The operator's change files: read, screened, and run in one transaction with timeouts."""

from __future__ import annotations

import threading

import pytest

from fix7_pipeline.core.change import ChangeSQL, read_change, run_change, screen_change, statement_chunks
from fix7_pipeline.core.errors import EXIT_USAGE, Fix7Error
from fix7_pipeline_tests.pg import as_owner, proof


def _change(text: str, label: str = "apply") -> ChangeSQL:
    return ChangeSQL(label, f"/x/{label}.sql", "0" * 64, text)


@pytest.mark.parametrize("content, why", [
    (b"", "empty"), (b"-- only a comment\n;\n", "empty"), (b"select 'caf\xe9';", "UTF-8")])
def test_unusable_change_files_are_usage_errors(tmp_path, content, why):
    f = tmp_path / "change.sql"
    f.write_bytes(content)
    with pytest.raises(Fix7Error) as e:
        read_change(f, "apply")
    assert e.value.exit_code == EXIT_USAGE and why in e.value.message


def test_missing_change_file_is_a_usage_error(tmp_path):
    with pytest.raises(Fix7Error) as e:
        read_change(tmp_path / "nope.sql", "rollback")
    assert e.value.exit_code == EXIT_USAGE and "rollback" in e.value.message


@pytest.mark.parametrize("sql, rule", [
    ("select dblink_exec('host=prod', 'delete from t');", "change_dblink"),
    ("create extension dblink;", "change_dblink"),
    ("copy (select 1) to program 'curl http://x';", "change_copy_program"),
    ("copy public.t from '/etc/passwd';", "change_server_file"),
    ("create server prod foreign data wrapper postgres_fdw;", "change_postgres_fdw"),
    ("create function f() returns int language plpython3u as $$ return 1 $$;", "change_untrusted_language"),
    ("begin;\nupdate t set a = 1;\ncommit;", "change_transaction_control"),
    ("\\! rm -rf /", "change_meta_command"),
])
def test_outward_and_transaction_statements_are_refused(sql, rule):
    assert rule in {f.rule for f in screen_change(_change(sql))}


def test_ordinary_change_passes_screening():
    assert screen_change(_change("update public.t set program = 'to program' where id = 1;\n")) == []


def test_chunks_rejoin_to_the_file_and_never_split_quotes():
    text = "-- head\ncreate table a (x text);\ninsert into a values (';'), ($$;$$);\n\nselect 1; select 2;\n"
    chunks = statement_chunks(text)
    assert "".join(c for _, _, c in chunks) == text
    assert [line for _, line, _ in chunks] == [2, 3, 5]


def test_run_change_commits_or_rolls_back_whole(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table t (id int primary key, v text)")
    ok = run_change(server, throwaway, _change("insert into t values (1, 'a');\ninsert into t values (2, 'b');\n"))
    assert ok.status == "passed"
    bad = run_change(server, throwaway, _change("insert into t values (3, 'c');\n\ninsert into t values (1, 'dup');\n"))
    assert bad.status == "failed" and "line 3" in bad.reason and "duplicate key" in bad.reason
    assert "Key (id)" not in bad.reason  # DETAIL (the key's value) is never quoted
    with proof(server, throwaway) as c:
        assert c.execute("select count(*) from public.t").fetchone()[0] == 2  # row 3 rolled back with the failure


def test_lock_timeout_fails_the_change_instead_of_hanging(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table t (id int)")
    holder = as_owner(server, throwaway, autocommit=False)
    holder.execute("lock table t in access exclusive mode")
    try:
        done = {}
        thread = threading.Thread(target=lambda: done.update(o=run_change(
            server, throwaway, _change("insert into t values (1);"), lock_timeout_s=1)))
        thread.start()
        thread.join(30)
        assert done["o"].status == "failed" and "lock timeout" in done["o"].reason
    finally:
        holder.rollback()
        holder.close()
