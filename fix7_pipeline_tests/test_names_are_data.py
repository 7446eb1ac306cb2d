"""Issue 9.6, names are data: a name, path or value from the dump or the operator is escaped for the format
it is written into — Markdown (rehearsal-report.md), JUnit XML, Dagster metadata, the terminal.

The hostile name is a real file on disk, rehearsed through the intake stage and the Dagster job; the
Markdown is parsed with markdown-it (CommonMark + GFM tables) and the JUnit with xml.etree.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.core.shared import escape
from fix7_pipeline.core.run import rehearsal
from fix7_pipeline.core.sanitization.candidates import format_table
from fix7_pipeline.core.evidence.junit import write_junit
from fix7_pipeline.core.shared.model import BLOCKED, Finding, StageOutcome
from fix7_pipeline.core.evidence.packet_files import READABLE
from fix7_pipeline.core.evidence.report import EvidencePacket
from fix7_pipeline.core.intake.request import RehearsalRequest
from fix7_pipeline.core.run.run_record import RunRecord
from fix7_pipeline.defs.stages import stage_metadata
from fix7_pipeline_tests.e2e_support import DagsterHome, config, minimal_plain_dump, tiny_change, verdict_facts

EVIL = "evil\n# PASSED | x <b>`&amp;.dump"
EVIL_ATTESTATION = "ops <i>*x*</i> | [y](http://e.test) _u_ ~~s~~\n# PASSED"
CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202e]")
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


@pytest.fixture
def chain(tmp_path, monkeypatch):
    monkeypatch.setenv("FIX7_AUDIT_CHAIN", str(tmp_path / "audit-chain.jsonl"))


def test_escapers():
    assert escape.visible("a\nb\r\tc\x1b[2J\u202ed\u2028e\udcff") == "a\\nb\\r\\tc\\x1b[2J\\u202ed\\u2028e\\udcff"
    assert escape.visible("plain /path/x_y.dump") == "plain /path/x_y.dump"
    assert escape.md("a|b*c_d`e<f>[g](h)&i#j\\k\nl") == "a\\|b\\*c\\_d\\`e\\<f\\>\\[g\\]\\(h\\)\\&i\\#j\\\\k\\nl"
    assert escape.md_code("/tmp/a-b/c_d.dump") == "`/tmp/a-b/c_d.dump`"
    assert escape.md_code(EVIL) == escape.md(EVIL)
    assert escape.xml("a\x00b\x1bc\rd\ne\tf\ufffeg\udcffh") == "a\\x00b\\x1bc\\rd\ne\tf\\ufffeg\\udcffh"


def _render(md_text: str) -> str:
    return MarkdownIt("commonmark").enable("table").enable("strikethrough").render(md_text)


def _intake(tmp_path, clone: Path, attested_by: str) -> EvidencePacket:
    apply_sql, rollback_sql = tiny_change(tmp_path / "change")
    request = rehearsal.RehearsalRequest(clone_path=str(clone), apply_sql=str(apply_sql),
                                         rollback_sql=str(rollback_sql), attested_by=attested_by,
                                         evidence_dir=str(tmp_path / "ev"))
    state, _ = rehearsal.intake(request, "run-names")
    return EvidencePacket.load(Path(state.evidence_dir))


@pytest.mark.parametrize("present", [True, False], ids=["dump_present", "dump_missing"])
def test_a_hostile_clone_name_stays_text_in_the_markdown_report(present, tmp_path, chain):
    clone = tmp_path / EVIL
    if present:
        minimal_plain_dump(clone)  # intake passes: the name and the attestation reach the stage reason
    packet = _intake(tmp_path, clone, EVIL_ATTESTATION)
    assert packet.data["clone"]["path"] == str(clone)
    assert packet.data["stages"]["intake"]["status"] == ("passed" if present else "blocked")
    # as rendered: sealed when intake blocked, else from the journal (a passing intake renders nothing)
    text = (packet.dir / READABLE).read_text() if not present else packet.markdown()

    assert not any(line.lstrip("\\").startswith("# PASSED") for line in text.splitlines())
    assert "\n# PASSED" not in text and not CONTROL.search(text.replace("\n", ""))
    for raw in ("<b>", "<i>", "](http", "`&amp;"):
        assert raw not in text
    assert all(len(UNESCAPED_PIPE.findall(line)) == 5 for line in text.splitlines() if line.startswith("| intake "))

    rendered = _render(text)
    assert rendered.count("<h1>") == 1 and "<b>" not in rendered and "<i>" not in rendered
    assert "<a " not in rendered and "<em>" not in rendered and "<s>" not in rendered
    assert html.escape(escape.visible(str(clone)), quote=False) in rendered  # shown literally, newline as \n
    rows = re.findall(r"<tr>(.*?)</tr>", rendered, re.S)
    assert rows and all(len(re.findall(r"<t[dh]", row)) in (4, 5) for row in rows)


def test_junit_parses_and_round_trips_a_hostile_name(tmp_path, chain):
    clone = minimal_plain_dump(tmp_path / EVIL)
    packet = _intake(tmp_path, clone, EVIL_ATTESTATION)
    packet.finalize()
    path = tmp_path / "junit.xml"
    write_junit(path, packet.data)
    suite = ET.parse(path).getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["clone_path"] == str(clone)  # newline, |, <, `, & all round-trip as text
    intake = next(c for c in suite.findall("testcase") if c.get("name") == "intake")
    assert EVIL_ATTESTATION in intake.find("system-out").text


def test_junit_replaces_what_xml_cannot_carry(tmp_path):
    name = "bad\x00name\x1b[31m\ufffe.dump"
    reason = f"the dump {name} is \x07 not usable"
    packet = {"verdict": "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE", "run_id": "r", "clone": {"path": name},
              "stages": {"intake": {"status": BLOCKED, "reason": reason,
                                    "findings": [{"rule": "dump_missing", "message": reason}]}}}
    path = tmp_path / "junit.xml"
    write_junit(path, packet)
    suite = ET.parse(path).getroot().find("testsuite")  # would raise on a raw NUL or ESC
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["clone_path"] == "bad\\x00name\\x1b[31m\\ufffe.dump"
    failure = suite.find("testcase").find("failure")
    assert "\\x07" in failure.get("message") and "\\x07" in failure.text


def test_dagster_text_metadata_and_terminal_tables_carry_no_control_character():
    outcome = StageOutcome(status=BLOCKED, reason="table evil\n# x\x1b[2J\u202e blocked",
                           findings=[Finding(rule="r", message="m")])
    record = RunRecord(request=RehearsalRequest(), run_id="run-names", evidence_dir="/ev",
                       clone={"format": "plain\n", "pg_dump_version": "18\x1b"})
    md = stage_metadata(outcome, record)
    assert md["reason"].value == "table evil\\n# x\\x1b[2J\\u202e blocked"
    assert md["clone_format"] == "plain\\n" and md["clone_pg_dump_version"] == "18\\x1b"
    table = format_table([{"candidate_clone": EVIL, "source": "x\x1b[2J", "note": "n\ny"}])
    assert not CONTROL.search(table.replace("\n", "")) and len(table.splitlines()) == 4


def test_through_the_job_metadata_and_check_descriptions_stay_on_one_line(tmp_path, chain):
    clone = minimal_plain_dump(tmp_path / EVIL)
    change = tiny_change(tmp_path / "change")
    home = DagsterHome.create(tmp_path / "home", "names")
    try:
        with home.instance() as inst:
            out = run_rehearsal(config(clone, *change, tmp_path / "ev", attested_by=""), instance=inst, echo=False)
            assert out["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
            import dagster as dg
            from dagster import DagsterEventType

            tags = {k: v for k, v in inst.get_run_by_id(out["run_id"]).tags.items() if k.startswith("fix7")}
            facts = verdict_facts(inst, out["run_id"])

            mats = [e.asset_materialization for e in inst.all_logs(out["run_id"],
                                                                   of_type=DagsterEventType.ASSET_MATERIALIZATION)]
            checks = [e.dagster_event.event_specific_data
                      for e in inst.all_logs(out["run_id"], of_type=DagsterEventType.ASSET_CHECK_EVALUATION)]
        assert mats == []  # intake ended the rehearsal: its failed gate carries what its output would have
        intake = next(c for c in checks if c.check_name == "intake_safe")
        assert intake.metadata["clone_path"].value == escape.visible(str(clone))
        # the run's tags: one line each, the attestation escaped, the verdict and its reason first
        assert tags["fix7/verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
        assert tags["fix7"] == "NO SAFE CLONE at intake"
        assert facts["attested_by"] == "(none)" and facts["clone_sha256"] == out["packet"]["clone"]["sha256"]
        assert tags["fix7/reason"].startswith("intake: no operator attestation") and facts["stopped_at"] == "intake"
        assert all(not CONTROL.search(str(v)) for v in facts.values()), facts
        assert all(not CONTROL.search(v) for v in tags.values()), tags
        tables = 0
        for m in [*mats, *checks]:
            for key, value in m.metadata.items():
                if isinstance(value, dg.MarkdownMetadataValue):  # lines of a table: a name cannot add one
                    text = value.value
                    assert not CONTROL.search(text.replace("\n", "")), (key, text)
                    rendered = _render(text)
                    assert "<b>" not in rendered and "<i>" not in rendered and "<a " not in rendered, key
                    for table in re.findall(r"<table>(.*?)</table>", rendered, re.S):
                        widths = {len(re.findall(r"<t[dh]", row)) for row in re.findall(r"<tr>(.*?)</tr>", table,
                                                                                        re.S)}
                        assert len(widths) == 1, (key, text)
                        tables += 1
                elif isinstance(getattr(value, "value", None), str):
                    assert not CONTROL.search(value.value), (key, value.value)
        assert tables >= 2  # the stage summary and rehearsal-report.md's stage table
        descriptions = [c.description for c in checks]
        assert descriptions and all(not CONTROL.search(d or "") for d in descriptions)
    finally:
        home.drop()
