"""The operator's change files: read, screened, and run in one transaction with timeouts."""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from pathlib import Path

import psycopg
import pytest

from fix7_pipeline.core.change.change_sql import (ChangeSQL, open_transaction, read_change, run_change, screen_change,
                                                  session_options, statement_chunks, transaction_escape)
from fix7_pipeline.core.shared.errors import EXIT_USAGE, Fix7Error
from fix7_pipeline_tests.pg import as_owner, proof
from fix7_pipeline.core.postgres.server import CHANGE
from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway


def _change(text: str, label: str = "apply") -> ChangeSQL:
    return ChangeSQL(label, f"/x/{label}.sql", "0" * 64, text)


@pytest.mark.parametrize("content, why", [
    (b"", "empty"), (b"-- only a comment\n;\n", "empty"), (b"/* a block\n -- comment */ ;;\n", "empty"),
    (b"select 'caf\xe9';", "UTF-8")])
def test_unusable_change_files_are_usage_errors(tmp_path, content, why):
    f = tmp_path / "change.sql"
    f.write_bytes(content)
    with pytest.raises(Fix7Error) as e:
        read_change(f, "apply")
    assert e.value.exit_code == EXIT_USAGE and why in e.value.message



@pytest.mark.parametrize("content, why", [(b"", "empty"), (b"-- only a comment\n;\n", "empty"),
                                          (b"select 'caf\xe9';", "UTF-8"), (b"select 1; -- \xc3", "UTF-8")])
def test_an_unusable_change_file_leaves_no_copy(tmp_path, content, why):
    f, copies = tmp_path / "change.sql", tmp_path / "copies"
    f.write_bytes(content)
    with pytest.raises(Fix7Error) as e:
        read_change(f, "apply", copies)
    assert why in e.value.message and list(copies.glob("*")) == []


def test_intake_copy_is_what_runs_and_is_checked_against_its_sha256(tmp_path):
    """read_change streams the file into a private copy (nothing of its text in the record); the text is read
    back from the copy when the change runs, so an edit of the operator's file after intake changes nothing,
    and a copy altered after intake is refused, never run."""
    f, copies = tmp_path / "apply.sql", tmp_path / "copies"
    body = "insert into t values (1, 'é');\n" * 70_000  # more than one read block
    f.write_text(body, encoding="utf-8")
    ch = read_change(f, "apply", copies)
    assert ch.text == "" and ch.sha256 == hashlib.sha256(body.encode()).hexdigest()
    assert ch.bytes == len(body.encode()) and ch.summary()["bytes"] == ch.bytes
    assert oct(Path(ch.copy).stat().st_mode & 0o777) == "0o600" and Path(ch.copy).parent == copies
    f.write_text("drop table t;\n")
    assert ch.loaded().text == body
    Path(ch.copy).write_text(body.replace("(1,", "(2,", 1), encoding="utf-8")
    with pytest.raises(Fix7Error) as e:
        ch.loaded()
    assert e.value.rule == "change_copy" and "nothing was run" in e.value.message


def test_copies_left_by_a_killed_run_are_swept_after_a_week(tmp_path, monkeypatch):
    import os
    import time

    from fix7_pipeline.core.change import change_sql as change_mod

    monkeypatch.setattr(change_mod, "copies_dir", lambda run_id: tmp_path / "change-copies" / run_id)
    f = tmp_path / "apply.sql"
    f.write_text("select 1;\n")
    old, fresh = read_change(f, "apply", change_mod.copies_dir("old-run")), read_change(f, "apply",
                                                                                      change_mod.copies_dir("new-run"))
    week_ago = time.time() - change_mod.STALE_COPIES_S - 60
    os.utime(Path(old.copy).parent, (week_ago, week_ago))
    assert change_mod.sweep_stale_copies() == ["old-run"]
    assert not Path(old.copy).exists() and Path(fresh.copy).exists()

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
    text = "-- head\ncreate table a (x text);\ninsert into a values (';'), ($$;$$);\n\nselect 1; select 2;\nselect 3"
    chunks = statement_chunks(text)
    assert "".join(c for _, _, c in chunks) == text
    assert [line for _, line, _ in chunks] == [2, 3, 5, 6]  # the last statement needs no semicolon


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


# -- one transaction: refused by the lexer's statements, confirmed by the server ---------------------

_names = itertools.count()


@pytest.fixture(scope="module")
def shared_tw(server):
    """One throwaway for the many small cases below: each names its own table."""
    tw = create_throwaway(server)
    yield tw
    drop_throwaway(server, tw)


def _table() -> str:
    return f"made_here_{next(_names)}"


def _exists(server, tw, table: str) -> bool:
    with proof(server, tw) as c:
        return c.execute("select pg_catalog.to_regclass(%s) is not null", (f"public.{table}",)).fetchone()[0]


# (SQL after a first line that creates {t}, the line of the refused statement, its kind)
ESCAPES = [
    ("update {t} set id = 1; commit; select pg_sleep(10);", 2, "COMMIT"),  # the tester's one-liner
    ("commit and chain;", 2, "COMMIT AND CHAIN"),
    ("commit work and no chain;", 2, "COMMIT"),
    ("abort;", 2, "ABORT"),
    ("end;", 2, "END"),
    ("rollback;", 2, "ROLLBACK"),
    ("rollback and chain;", 2, "ROLLBACK AND CHAIN"),
    ("prepare transaction 'x';", 2, "PREPARE TRANSACTION"),
    ("commit prepared 'x';", 2, "COMMIT PREPARED"),
    ("rollback prepared 'x';", 2, "ROLLBACK PREPARED"),
    ("begin;", 2, "BEGIN"),
    ("start transaction read write;", 2, "START TRANSACTION"),
    ("call p();", 2, "CALL"),
    ("do $$ begin commit; end $$;", 2, "DO"),
    ("do language plpgsql $$ begin call p(); end $$;", 2, "DO"),
    ("select 1;\ndo $body$\nbegin\n  perform 1;\n  rollback;\nend\n$body$;", 3, "DO"),
    ("COMMIT;", 2, "COMMIT"),
    ("CoMmIt WoRk;", 2, "COMMIT"),
    ("Rollback Transaction;", 2, "ROLLBACK"),
    ("/* why */ commit;", 2, "COMMIT"),  # after a comment on the same line
    ("select 1; /* ; */ abort; select 2;", 2, "ABORT"),  # two statements on one line
    ("commit--the rest of the line\nand chain;", 2, "COMMIT AND CHAIN"),  # a comment still separates words
    ("select 1;\n\nend", 4, "END"),  # the last statement needs no semicolon to run
    # A dollar-quote tag of any non-ASCII letters, and an E'' string opening a line, are read as the
    # server reads them: with the lexer reading either differently, the COMMIT here was inside a quote.
    ("select $日$ ' $日$; commit; select $日$ ' $日$;", 2, "COMMIT"),
    ("select\nE'\\''; commit; select 'x';", 3, "COMMIT"),
]


@pytest.mark.parametrize("sql, line, kind", ESCAPES, ids=[e[0][:40] for e in ESCAPES])
def test_transaction_control_anywhere_is_refused_before_anything_runs(sql, line, kind, server, shared_tw):
    t = _table()
    change = _change(f"create table {t} (id int);\n{sql.replace('{t}', t)}\n")
    out = run_change(server, shared_tw, change)
    assert out.status == "failed" and out.details["ran"] is False
    refused = [f for f in out.findings if f.rule == "change_transaction_control"]
    assert [(f.extra["line"], f.extra["statement"]) for f in refused] == [(line, kind)]
    assert out.reason.startswith(f"apply refused before anything ran: apply SQL line {line} is ")
    assert (kind if kind != "DO" else "a DO block") in out.reason
    assert not _exists(server, shared_tw, t)  # the first line never ran either


def test_every_statement_on_a_line_is_seen_in_either_file():
    found = screen_change(_change("begin;\nselect 1; commit; rollback;\nabort", "rollback"))
    assert [(f.extra["line"], f.extra["statement"]) for f in found] == [
        (1, "BEGIN"), (2, "COMMIT"), (2, "ROLLBACK"), (3, "ABORT")]
    assert found[1].message.startswith("rollback SQL line 2 is COMMIT")


# Complete files that create {t}: look like transaction control, are not, and run.
LOOK_ALIKES = [
    "create table {t} (id int);\nselect 'commit';\n",
    "create table {t} (id int); -- commit\n",
    "/* rollback; */ create table {t} (id int);\n",
    "create table {t} (id int);\nselect $x$ commit; $x$, E'\\' commit; ', 'it''s; rollback', U&'end;';\n",
    'create table {t} ("end" int, "commit" text);\nselect "end", "commit" from {t};\n',
    "create table {t} (id int);\ncomment on table {t} is 'rollback;';\n",
    # creating a function or procedure whose body commits is fine; only calling a procedure is refused
    "create table {t} (id int);\ncreate function {t}_f() returns int language plpgsql as $$\nbegin\n"
    "  commit;\n  return 1;\nend $$;\n",
    "create table {t} (id int);\ncreate procedure {t}_p() language plpgsql as $$ begin rollback; end $$;\n",
    "create table {t} (id int);\ndo $$ begin perform 1; end $$;\n",
    # savepoints stay inside the transaction; a prepared statement is not PREPARE TRANSACTION
    "create table {t} (id int);\nsavepoint a; insert into {t} values (1); rollback to savepoint a;\n"
    "rollback work to a; release savepoint a;\nprepare {t}_q as select 1; execute {t}_q; deallocate {t}_q;\n",
    # they describe the transaction and cannot end it
    "create table {t} (id int);\nset session characteristics as transaction read only;\nset transaction read only;\n",
]


@pytest.mark.parametrize("sql", LOOK_ALIKES, ids=[s.split("\n")[1][:40] or s[:40] for s in LOOK_ALIKES])
def test_look_alikes_are_not_refused_and_commit_in_one_transaction(sql, server, shared_tw):
    t = _table()
    change = _change(sql.replace("{t}", t))
    assert screen_change(change) == []
    out = run_change(server, shared_tw, change)
    assert out.status == "passed", out.reason
    m = re.fullmatch(r"apply committed in one transaction \(xid (\d+), confirmed by the server\)", out.reason)
    assert m and out.details["transaction_id"] == m.group(1)
    assert out.details["one_transaction"] is True
    assert _exists(server, shared_tw, t)


def _change_connection(server, tw, statement_timeout_s=5, lock_timeout_s=5):
    return server.connect(tw.database, tw.login, purpose="test", autocommit=False, session=CHANGE,
                          options=session_options(statement_timeout_s, lock_timeout_s))


def test_server_check_fails_when_the_transaction_ended_in_between(server, shared_tw):
    with _change_connection(server, shared_tw) as c:
        xid = open_transaction(c, "apply", 5, 5)
        assert transaction_escape(c, xid) is None
        c.execute("savepoint a; rollback to savepoint a")  # a subtransaction is the same transaction
        assert transaction_escape(c, xid) is None
        c.execute("commit")
        assert transaction_escape(c, xid) == "the server reports no open transaction (status IDLE)"
        c.execute("select 1")  # the client opens a new transaction: only the server's id tells
        assert transaction_escape(c, xid, ask_server=False) is None
        assert transaction_escape(c, xid).startswith(f"the server's transaction id changed from {xid} to ")
        c.rollback()


def test_commit_hidden_from_the_lexer_is_stopped_by_the_server(server, shared_tw):
    """Turning standard_conforming_strings off by an expression the screen cannot read makes the server
    see a COMMIT inside what the lexer reads as one string; the server reports the setting, so the
    next piece never runs."""
    t = _table()
    change = _change(f"create table {t} (id int);\n"
                     "select pg_catalog.set_config('standard_' || 'conforming_strings', 'off', false);\n"
                     "select 'a\\''; commit; select '';\n"
                     "select 1; -- '\n;\n")
    assert screen_change(change) == []
    out = run_change(server, shared_tw, change)
    assert out.status == "failed" and out.findings[0].rule == "change_string_syntax"
    assert "stopped after line 2" in out.reason and out.details["one_transaction"] is False
    assert not _exists(server, shared_tw, t)  # rolled back: the COMMIT never reached the server


def test_statement_timeout_fails_the_change_naming_it(server, shared_tw):
    out = run_change(server, shared_tw, _change("select 1;\nselect pg_sleep(3);\n"), statement_timeout_s=1)
    assert out.status == "failed" and "statement timeout" in out.reason and "line 2" in out.reason


def test_session_timeouts_outlive_commit_rollback_and_reset(server, shared_tw):
    with _change_connection(server, shared_tw, statement_timeout_s=1) as c:
        open_transaction(c, "apply", 1, 5)
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("rollback; reset all; commit; select pg_sleep(3)")  # SET LOCAL would be gone here
