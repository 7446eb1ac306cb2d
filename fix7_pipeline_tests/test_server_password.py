"""Issues 9.7 and 15.1, no password in run storage.

`--server` with a password anywhere (userinfo, `?password=`, libpq `password=`, percent-encoded) moves it
to the process environment before the run exists; a URL that cannot be read is exit 2 with a sentence that
does not quote it. Each is run through the CLI with a fresh Dagster home, then the planted password is
searched for in every row of the Dagster storage database, every file of the Dagster home, of `.fix7/` (the
embedded server's data directory and log included) and of the evidence, and in what was printed.

Run config that reaches Dagster directly (launchpad, rehearsal.yaml) with a password is refused, naming
FIX7_REHEARSAL_SERVER_PASSWORD; the packet and the stage output never hold it. The packet's connection
ledger names the Dagster storage connection too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fix7_pipeline.core.run import rehearsal
from fix7_pipeline.core.run.automation_config import load_automation_config
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.shared.paths import state_dir
from fix7_pipeline.core.postgres.server import PASSWORD_ENV
from fix7_pipeline.core.postgres.server_urls import parse_server_url, split_server_password
from fix7_pipeline_tests.e2e_support import (DagsterHome, files_below, files_under, find_leaks, load_packet,
                                             minimal_plain_dump, planted, rnd, tiny_change)

HOST = "db.example.test"


@pytest.fixture
def chain(tmp_path, monkeypatch):
    monkeypatch.setenv("FIX7_AUDIT_CHAIN", str(tmp_path / "audit-chain.jsonl"))


# -- reading the URL ---------------------------------------------------------------------------

@pytest.mark.parametrize("url, clean, password", [
    (f"postgresql://ops:Pw1@{HOST}:5433/rehearse", f"postgresql://ops@{HOST}:5433/rehearse", "Pw1"),
    (f"postgresql://ops:p%40ss%3Aw%2Fd@{HOST}/r", f"postgresql://ops@{HOST}/r", "p@ss:w/d"),
    (f"postgres://ops@{HOST}/r?password=Pw2&sslmode=require", f"postgres://ops@{HOST}/r?sslmode=require", "Pw2"),
    (f"postgresql://ops@{HOST}/r?pass%77ord=Pw%263", f"postgresql://ops@{HOST}/r", "Pw&3"),
    (f"postgresql://ops:Pw4@{HOST}/r?password=Pw4", f"postgresql://ops@{HOST}/r", "Pw4"),
    (f"host={HOST} port=5433 dbname=r user=ops password=Pw5", f"postgresql://ops@{HOST}:5433/r", "Pw5"),
    ("host=/tmp/sock user=ops password='P w 6'", "postgresql://ops@/?host=/tmp/sock", "P w 6"),
    (f"postgresql://ops@{HOST}/r", f"postgresql://ops@{HOST}/r", None),
    ("postgresql://ops@/postgres?host=/tmp/s&port=5432", "postgresql://ops@/postgres?host=/tmp/s&port=5432", None),
])
def test_the_password_is_found_wherever_it_is(url, clean, password):
    assert split_server_password(url) == (clean, password)
    assert parse_server_url(clean).password is None


@pytest.mark.parametrize("url", [
    "postgresql://u:SeCrEtPw@[db.example.test/p",     # unbalanced IPv6 bracket
    "postgresql://u:SeCrEtPw#x@db.example.test/p",    # '#' cuts the URL inside the password
    "postgresql://u:SeCrEtPw?x@db.example.test/p",    # '?' likewise
    "postgresql://u:1234/SeCrEtPw@db.example.test/p",  # '/' likewise: host "u", port 1234
    "postgresql://u:SeCrEtPw@db.example.test:notaport/p",
    "postgresql://u:SeCrEtPw@db.example.test/p?password=other",
    "postgresql://u@db.example.test/p?sslpassword=SeCrEtPw",
    "mysql://u:SeCrEtPw@db.example.test/p",
    "host=db.example.test password='SeCrEtPw",
    "host=db.example.test hostaddr=10.0.0.1 password=SeCrEtPw",
    "postgresql://u:SeCrEtPw@db.example.test/p\nx",
])
def test_an_unreadable_url_is_a_usage_error_that_never_quotes_it(url):
    with pytest.raises(Fix7Error) as e:
        split_server_password(url)
    assert e.value.exit_code == 2 and e.value.rule == "server_url"
    assert "SeCrEtPw" not in e.value.message and "SeCrEtPw" not in str(e.value)
    assert PASSWORD_ENV in e.value.message


# -- the CLI, end to end -------------------------------------------------------------------------

def _password() -> object:
    return planted("server password", "Pw-", (rnd(24), True))


CASES = {
    "malformed": lambda pw: f"postgresql://ops:{pw}@[{HOST}/rehearse",
    "userinfo": lambda pw: f"postgresql://ops:{pw}@{HOST}:5432/rehearse",
    "query": lambda pw: f"postgresql://ops@{HOST}:5432/rehearse?password={pw}&connect_timeout=5",
    "conninfo": lambda pw: f"host={HOST} port=5432 dbname=rehearse user=ops password='{pw}'",
}


@pytest.mark.parametrize("case", [c if c in ("malformed", "userinfo") else pytest.param(c, marks=pytest.mark.slow)
                                  for c in CASES])
def test_a_server_password_is_never_stored(case, tmp_path, chain):
    written_since = time.time() - 2  # the password is made below: no file written before can hold it (mtime slack)
    pw = _password()
    change = tiny_change(tmp_path / "change")
    clone = minimal_plain_dump(tmp_path / "clone.sql")
    ev = tmp_path / "ev"
    home = DagsterHome.create(tmp_path / "dagster_home", "srvpw")
    try:
        r = home.cli("rehearse", "--clone", str(clone), "--apply", str(change[0]), "--rollback", str(change[1]),
                     "--attested-by", "ops", "--evidence-dir", str(ev), "--server", CASES[case](pw.value))
        out = r.stdout + r.stderr
        assert "Traceback" not in out and "internal error" not in out, out
        with home.instance() as inst:
            runs = inst.get_runs()
        if case == "malformed":
            assert r.returncode == 2, out
            assert "cannot be read" in r.stderr and PASSWORD_ENV in r.stderr
            assert runs == [] and not ev.exists()  # refused before any run was created
        else:
            assert r.returncode == 4, out  # the server-unreachable path: intake blocks, the server's fault
            packet = load_packet(ev)
            assert packet["verdict"] == "REHEARSAL_SERVER_FAULT" and packet["exact_operator_input_needed"] is None
            intake = packet["stages"]["intake"]
            assert intake["status"] == "blocked" and "Could not connect to the rehearsal server" in intake["reason"]
            assert f"{HOST}:5432" in intake["reason"]  # the password did reach the connection attempt's target
            assert len(runs) == 1
            config = runs[0].run_config["ops"]["clone_intake"]["config"]
            assert config["server_url"] == f"postgresql://ops@{HOST}:5432/rehearse" + (
                "?connect_timeout=5" if case == "query" else "")
            assert [c["purpose"] for c in packet["connections"]] == ["dagster storage"]
            assert packet["connections"][0]["database"] == home.storage_db
        blobs = {"stdout": r.stdout.encode(), "stderr": r.stderr.encode(),
                 "dagster storage rows": home.storage_rows()}
        blobs.update(files_under(home.path, "dagster_home"))
        blobs.update(files_under(ev, "evidence"))
        blobs.update(files_below(state_dir(), ".fix7", since=written_since))
        assert len(blobs) > 5
        assert find_leaks(blobs, [pw]) == []
    finally:
        home.drop()


# -- run config straight into Dagster: launchpad, schedule, sensor -----------------------------

def _request(tmp_path, server_url: str) -> rehearsal.RehearsalRequest:
    change = tiny_change(tmp_path / "change")
    return rehearsal.RehearsalRequest(clone_path=str(minimal_plain_dump(tmp_path / "clone.sql")),
                                      apply_sql=str(change[0]), rollback_sql=str(change[1]), attested_by="ops",
                                      evidence_dir=str(tmp_path / "ev"), server_url=server_url)


@pytest.mark.parametrize("case", ["userinfo", "query", "conninfo", "malformed"])
def test_intake_refuses_a_password_in_run_config(case, tmp_path, chain):
    pw = _password()
    state, outcome = rehearsal.intake(_request(tmp_path, CASES[case](pw.value)), "run-launchpad")
    assert outcome.status == "blocked"
    assert PASSWORD_ENV in outcome.reason
    assert any(f.rule in ("server_password", "server_url") for f in outcome.findings)
    packet = Path(state.evidence_dir)
    blobs = files_under(packet, "evidence")
    blobs["stage output"] = json.dumps(state.as_json(), default=str).encode()
    assert find_leaks(blobs, [pw]) == []
    assert [c["purpose"] for c in load_packet(packet)["connections"]] == ["dagster storage"]  # nothing dialled


def test_the_instance_refuses_a_launchpad_password_before_anything_is_stored(tmp_path, chain):
    """Issue 21.5: a run of the job whose run config carries the server's password, in any form, is refused by
    the instance's storage (instance_guard.py) with one line: no run, no run config, no packet; the password is
    in no table of the storage database."""
    import psycopg

    from fix7_pipeline.definitions import defs
    from fix7_pipeline.instance_guard import PASSWORD, RehearsalRefused, storage_url

    home = DagsterHome.create(tmp_path / "dagster_home", "launchpad")
    planted_values = []
    try:
        with home.instance() as inst:
            for case in ("userinfo", "query", "conninfo", "malformed"):
                pw = _password()
                planted_values.append(pw)
                request = _request(tmp_path, CASES[case](pw.value))
                with pytest.raises(RehearsalRefused) as e:
                    defs.resolve_job_def("fix7_rehearsal").execute_in_process(
                        run_config={"ops": {"clone_intake": {"config": {
                            k: getattr(request, k) for k in ("clone_path", "apply_sql", "rollback_sql",
                                                             "attested_by", "evidence_dir", "server_url")}}}},
                        instance=inst, raise_on_error=False, tags={"dagster/partition": f"launchpad-{case}"})
                line = str(e.value)
                assert "\n" not in line and (line == PASSWORD or PASSWORD_ENV in line), line
                assert find_leaks({"refusal": line.encode()}, [pw]) == []
            assert inst.get_runs() == []
            url = storage_url(inst).replace("postgresql+psycopg2://", "postgresql://")
        with psycopg.connect(url) as conn:
            tables = [r[0] for r in conn.execute(
                "select quote_ident(table_name) from information_schema.tables "
                "where table_schema = 'public' and table_type = 'BASE TABLE'")]
            rows = "\n".join(str(r) for t in tables for r in conn.execute(f"select t::text from {t} t"))
        assert find_leaks({"dagster_storage": rows.encode()}, planted_values) == []
        assert not (tmp_path / "ev").exists()
    finally:
        home.drop()


YAML = "clone_path: clone.sql\napply_sql: apply.sql\nrollback_sql: rollback.sql\nserver_url: \"{url}\"\n"


@pytest.mark.parametrize("case", ["userinfo", "query", "conninfo", "malformed"])
def test_rehearsal_yaml_refuses_a_server_password(case, tmp_path):
    pw = _password()
    path = tmp_path / "rehearsal.yaml"
    path.write_text(YAML.format(url=CASES[case](pw.value).replace("'", "")))
    with pytest.raises(Fix7Error) as e:
        load_automation_config(path)
    assert e.value.exit_code == 2 and PASSWORD_ENV in e.value.message
    assert find_leaks({"message": e.value.message.encode()}, [pw]) == []
    path.write_text(YAML.format(url=f"postgresql://ops@{HOST}/rehearse"))
    assert load_automation_config(path).request["server_url"] == f"postgresql://ops@{HOST}/rehearse"


def test_an_external_server_without_a_secret_blocks_before_any_throwaway_exists(tmp_path, chain, monkeypatch):
    """No admin password and no FIX7_THROWAWAY_KEY: a throwaway role's password could not be derived by the
    next step, so isolation blocks, naming both variables, before any role or database is named or made."""
    from fix7_pipeline.demo import builder

    monkeypatch.setenv("FIX7_THROWAWAY_KEY", "set-in-the-environment")  # the source's own (none) decides

    info = builder.factory_conninfo()
    url = f"postgresql://{info['user']}@/postgres?host={info['host']}&port={info['port']}"
    servers = rehearsal.ServerSource()  # what a webserver without either variable holds
    state, outcome = rehearsal.intake(_request(tmp_path, url), "run-no-secret", servers=servers)
    assert outcome.status == "passed", outcome.reason
    state, outcome = rehearsal.restore_clone(state, servers)
    assert outcome.status == "blocked" and outcome.findings[0].rule == "throwaway_key"
    assert PASSWORD_ENV in outcome.reason and "FIX7_THROWAWAY_KEY" in outcome.reason
    packet = load_packet(Path(state.evidence_dir))
    assert packet["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    assert packet["throwaways"].get("planned", []) == [] and packet["throwaways"]["created"] == []
    assert "drop_error" not in packet["throwaways"] and state.throwaway is None
