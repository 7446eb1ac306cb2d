"""Issue 11.6 in a browser, as a new operator and an auditor meet the UI: `fix7 ui` (webserver + daemon, the
way test_webserver_e2e.py starts it) on an instance of its own; one passing rehearsal and one blocked one
(no clone: NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE), both through `fix7 rehearse`, and one launched
as the launchpad does with an empty attestation (the daemon runs it); then headless Debian
chromium, driven by Playwright (`executable_path`, no browser download), opens the asset graph, the
evidence packet, the runs lists, the passing run and the blocked run, and reads each one's verdict (and
the blocked run's reason) on the page.

Issue 21 as an operator meets it (docs/AUTOMATION.md, *Launching a rehearsal from the launchpad*): a run launched
from the job's launchpad in the browser reads its verdict in the Runs list without scrolling; Materialize
all on the asset graph (a backfill), "Add a partition" and a password typed into the launchpad are each
refused with fix7's one line, and the storage database keeps none of them; the catalog shows the last good
rehearsal first; the audit chain's check is green.

Chromium comes from `make browser` (apt-get, as root); where it cannot be installed the test skips,
saying so. `make test-slow` runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fix7_pipeline_tests.e2e_support import built_clone, fix7_ui

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
STORAGE_DB = "fix7_dagster_browser_e2e"
PASSED, NO_SAFE = "REHEARSAL_PASSED", "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
STAGE_ASSETS = ("clone_intake", "rehearsal_clone", "snapshot_anchor", "apply", "rollback", "restore_diff",
                "evidence_packet")
CLONE_GATES = ("isolation_proven", "sanitized", "production_shaped", "data_rules")  # the gates on the clone
PAGE_TIMEOUT_MS = 90_000


def _chromium() -> Path:
    """Debian's chromium, installed by `make browser` when missing (as root); else the test skips."""
    if not CHROMIUM.exists():
        subprocess.run(["make", "-s", "browser"], cwd=PROJECT, capture_output=True, text=True, timeout=900)
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not at {CHROMIUM} and `make browser` could not install it (it needs "
                    "root and apt-get: `apt-get install chromium`); the browser test cannot run without it")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: run `make install`")
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(executable), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory, browser):
    """`fix7 ui` on a free port with its own DAGSTER_HOME and storage database, and two CLI rehearsals."""
    from fix7_pipeline_tests.test_webserver_e2e import GRAPH_QUERY

    root = tmp_path_factory.mktemp("browser")
    dump, apply_sql, rollback_sql = built_clone(root, "fix7_t_browser_src", seed=5)
    home = root / "dagster_home"
    home.mkdir()
    with fix7_ui(home, STORAGE_DB, GRAPH_QUERY, {"FIX7_AUDIT_CHAIN": str(home / "audit-chain.jsonl")}) as \
            (gql, env, _data, port):
        def rehearse(clone: Path, evidence: Path) -> subprocess.CompletedProcess:
            return subprocess.run([str(BIN / "fix7"), "rehearse", "--clone", str(clone), "--apply", str(apply_sql),
                                   "--rollback", str(rollback_sql), "--attested-by", "browser test (synthetic clone)",
                                   "--evidence-dir", str(evidence), "--production-host", "*.prod.invalid-corp.com",
                                   "--json"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)

        passed = rehearse(dump, root / "ev-pass")
        assert passed.returncode == 0, passed.stdout + passed.stderr
        blocked = rehearse(root / "no-such-clone.dump", root / "ev-blocked")
        assert blocked.returncode == 3, blocked.stdout + blocked.stderr
        launchpad = _launch_unattested(gql, dump, apply_sql, rollback_sql, root / "ev-launchpad")
        yield {"base": f"http://127.0.0.1:{port}", "log": home / "ui.log", "root": root, "launchpad": launchpad,
               "dump": dump, "apply": apply_sql, "rollback": rollback_sql,
               "passed": json.loads(passed.stdout.strip().splitlines()[-1])["run_id"],
               "blocked": json.loads(blocked.stdout.strip().splitlines()[-1])["run_id"]}


LOGS = """
query L($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events { __typename
  ... on MessageEvent { message } } } } }
"""


def _launch_unattested(gql, dump: Path, apply_sql: Path, rollback_sql: Path, evidence: Path) -> str:
    """As the launchpad does it, with an empty attestation: the daemon runs it, intake refuses it, and
    fix7_judged_run_sensor adds the verdict as the run's last event. Returns the run id once that event is there."""
    from fix7_pipeline_tests.test_webserver_e2e import LAUNCH, _launch_params, _wait_for_run

    config = {"clone_path": str(dump), "apply_sql": str(apply_sql), "rollback_sql": str(rollback_sql),
              "attested_by": "", "evidence_dir": str(evidence)}
    launched = gql(LAUNCH, {"params": _launch_params(gql, config)})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert _wait_for_run(gql, run_id) == "SUCCESS"  # judged: no safe clone (the run reached its verdict)
    deadline = time.monotonic() + 120
    while True:
        events = gql(LOGS, {"id": run_id})["logsForRun"]["events"]
        if any((e.get("message") or "").startswith("fix7 verdict ") for e in events):
            return run_id
        assert time.monotonic() < deadline, "fix7_judged_run_sensor added no verdict event to the run"
        time.sleep(3)


@pytest.fixture
def page(browser, scene):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield pg
    except BaseException:
        pg.screenshot(path=str(scene["root"] / "failure.png"))
        raise
    finally:
        context.close()


def _open(page, scene, path: str):
    page.goto(scene["base"] + path, wait_until="domcontentloaded")
    return page


def test_the_banner_names_the_real_storage_database(scene):
    assert f"database `{STORAGE_DB}`, role `dagster_storage`" in scene["log"].read_text()


def test_the_asset_graph_shows_every_stage_keyed_by_rehearsal(page, scene):
    from playwright.sync_api import expect

    _open(page, scene, "/asset-groups/fix7_rehearsal")
    body = page.locator("body")
    for asset in STAGE_ASSETS:
        expect(body).to_contain_text(asset)
    page.get_by_text("evidence_packet", exact=True).last.click()
    expect(body).to_contain_text('Dynamic partitions: "fix7_rehearsals"')


def test_the_clone_shows_its_four_gates(page, scene):
    from playwright.sync_api import expect

    _open(page, scene, "/assets/rehearsal_clone?view=checks")
    body = page.locator("body")
    for gate in CLONE_GATES:
        expect(body).to_contain_text(gate)


def test_the_last_good_rehearsal_stays_visible_on_the_packet_after_a_blocked_one(page, scene):
    from playwright.sync_api import expect

    _open(page, scene, "/assets/evidence_packet")
    body = page.locator("body")
    expect(body).to_contain_text("verdict")
    expect(body).to_contain_text(PASSED)  # the blocked rehearsal ran after it, in a partition of its own
    expect(body).to_contain_text("rehearsal_report")


def test_the_passing_run_shows_its_verdict(page, scene):
    from playwright.sync_api import expect

    _open(page, scene, f"/runs/{scene['passed']}")
    expect(page.get_by_text(f"fix7 verdict {PASSED}: restore_diff: every row and schema object is back")
           .first).to_be_visible()


def test_the_blocked_run_shows_its_verdict_and_the_operators_reason(page, scene):
    from playwright.sync_api import expect

    _open(page, scene, f"/runs/{scene['blocked']}")
    expect(page.get_by_text(f"fix7 verdict {NO_SAFE}: intake: The dump at").first).to_be_visible()
    expect(page.locator("body")).to_contain_text("nothing exists at that path")


def test_both_runs_read_with_their_verdicts_in_the_runs_list_and_the_jobs_runs_tab(page, scene):
    from playwright.sync_api import expect

    for path in ("/runs", "/locations/fix7_pipeline/jobs/fix7_rehearsal/runs"):
        _open(page, scene, path)
        body = page.locator("body")
        for run_id in (scene["passed"], scene["blocked"]):
            expect(body).to_contain_text(run_id[:8])
        expect(body).to_contain_text(f"fix7/verdict: {PASSED}")
        expect(body).to_contain_text(f"fix7/verdict: {NO_SAFE}")
        expect(body).to_contain_text("fix7: PASSED")
        expect(body).to_contain_text("fix7: NO SAFE CLONE at intake")
        expect(body).to_contain_text("fix7/reason: intake: The dump at")


def test_a_launchpad_run_without_attestation_reads_its_one_line_refusal(page, scene):
    from playwright.sync_api import expect

    _open(page, scene, f"/runs/{scene['launchpad']}")
    expect(page.get_by_text(f"fix7 verdict {NO_SAFE}: intake: no operator attestation").first).to_be_visible()


LAUNCHPAD = "/locations/fix7_pipeline/jobs/fix7_rehearsal/playground"
EDITOR_READY = ("() => { const e = document.querySelector('.CodeMirror');"
                " return !!e && e.CodeMirror.getValue().includes('clone_intake'); }")


def _launchpad(page, scene, config: dict) -> None:
    """Jobs → fix7_rehearsal → Launchpad: the request typed into the config editor, then Launch Run with no
    partition selected (Dagster asks to confirm; the launch makes the rehearsal's partition)."""
    _open(page, scene, LAUNCHPAD)
    page.wait_for_function(EDITOR_READY)  # the editor holds the request's defaults once the job has loaded
    lines = ["ops:", "  clone_intake:", "    config:"] + [f"      {k}: {json.dumps(v)}" for k, v in config.items()]
    page.evaluate("(v) => document.querySelector('.CodeMirror').CodeMirror.setValue(v)", "\n".join(lines) + "\n")
    page.get_by_role("button", name="Launch Run").click()
    page.get_by_role("button", name="Confirm").click()


def _storage_text() -> str:
    """Every row of every table of the UI's storage database, as text."""
    import psycopg

    from fix7_pipeline.core.postgres.embedded import start_embedded

    info = start_embedded()
    with psycopg.connect(host=str(info["socket_dir"]), port=int(info["port"]), dbname=STORAGE_DB,
                         user="postgres") as conn:
        tables = [r[0] for r in conn.execute("select quote_ident(table_name) from information_schema.tables "
                                             "where table_schema = 'public' and table_type = 'BASE TABLE'")]
        return "\n".join(str(r) for t in tables for r in conn.execute(f"select t::text from {t} t"))


def test_a_run_launched_from_the_jobs_launchpad_reads_its_verdict_first(browser, scene):
    """Issue 21.1 and 21.4: docs/AUTOMATION.md's way in; the run is fix7_rehearsal's, in a partition of its own, and its
    verdict is the first fix7 tag in the job's Runs list, on screen at 1280×800 without scrolling."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        _launchpad(page, scene, {"clone_path": str(scene["dump"]), "apply_sql": str(scene["apply"]),
                                 "rollback_sql": str(scene["rollback"]), "attested_by": "",
                                 "evidence_dir": str(scene["root"] / "ev-browser-launchpad")})
        page.wait_for_url("**/runs/*")
        run_id = page.url.rstrip("/").rsplit("/", 1)[1].split("?")[0]
        expect(page.get_by_text(f"fix7 verdict {NO_SAFE}: intake: no operator attestation").first).to_be_visible(
            timeout=240_000)  # queued, run by the daemon, closed by fix7_judged_run_sensor
        _open(page, scene, "/locations/fix7_pipeline/jobs/fix7_rehearsal/runs")
        headline = page.get_by_text("fix7: NO SAFE CLONE at intake").first
        expect(headline).to_be_visible()
        expect(page.locator("body")).to_contain_text(run_id[:8])
        box = headline.bounding_box()
        assert box and box["y"] + box["height"] <= 800, box  # read without scrolling
        expect(page.get_by_text("partition: ").first).to_be_visible()
    except BaseException:
        page.screenshot(path=str(scene["root"] / "failure-launchpad.png"))
        raise
    finally:
        context.close()


def test_a_password_typed_into_the_launchpad_is_refused_and_stored_nowhere(page, scene):
    """Issue 21.5."""
    import secrets

    from playwright.sync_api import expect

    from fix7_pipeline.instance_guard import PASSWORD

    planted = f"Pw-browser-{secrets.token_hex(8)}"
    _launchpad(page, scene, {"clone_path": str(scene["dump"]), "apply_sql": str(scene["apply"]),
                             "rollback_sql": str(scene["rollback"]), "attested_by": "browser test",
                             "server_url": f"postgresql://ops:{planted}@db.invalid-corp.com:5432/rehearse"})
    expect(page.get_by_text(PASSWORD[:80]).first).to_be_visible()
    assert planted not in _storage_text()


def test_materialize_all_on_the_asset_graph_is_refused_in_one_line(page, scene):
    """Issue 21.1 and 21.6: Materialize all… offers a backfill over the rehearsal partitions; it is refused."""
    from playwright.sync_api import expect

    from fix7_pipeline.instance_guard import BACKFILL

    _open(page, scene, "/asset-groups/fix7_rehearsal")
    page.get_by_role("button", name="Materialize all").click()
    page.get_by_role("button", name="All", exact=True).click()
    page.get_by_role("button", name="Launch backfill").click()
    page.get_by_text("View error").click()
    expect(page.get_by_text(BACKFILL[:80]).first).to_be_visible()
    import psycopg

    from fix7_pipeline.core.postgres.embedded import start_embedded

    info = start_embedded()
    with psycopg.connect(host=str(info["socket_dir"]), port=int(info["port"]), dbname=STORAGE_DB,
                         user="postgres") as conn:
        assert conn.execute("select count(*) from bulk_actions").fetchone()[0] == 0


def test_add_a_partition_is_refused_so_none_exists_without_its_run(page, scene):
    """Issue 21.6."""
    from playwright.sync_api import expect

    from fix7_pipeline.instance_guard import ADD_PARTITION

    _open(page, scene, "/asset-groups/fix7_rehearsal")
    page.get_by_role("button", name="Materialize all").click()
    page.get_by_text("Add a partition").click()
    page.keyboard.type("20261201-fix7-never-ran")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text(ADD_PARTITION[:80]).first).to_be_visible()
    assert "20261201-fix7-never-ran" not in _storage_text()


def test_the_audit_chains_check_is_green_in_the_ui(page, scene):
    """Issue 21.4: audit_chain's check chain_verifies, reported by audit_chain_sensor."""
    from playwright.sync_api import expect

    deadline = time.monotonic() + 120
    while True:
        _open(page, scene, "/assets/audit_chain?view=checks")
        expect(page.locator("body")).to_contain_text("chain_verifies")
        if page.get_by_text("verified: ").count():
            break
        assert time.monotonic() < deadline, page.locator("body").inner_text()[-2000:]
        time.sleep(5)
