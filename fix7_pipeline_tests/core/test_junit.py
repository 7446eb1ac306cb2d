"""The JUnit report: one test case per stage, failures for failed/blocked, skipped for skipped."""

from __future__ import annotations

import os
import stat
import threading
import xml.etree.ElementTree as ET

import pytest

from fix7_pipeline.core.shared.errors import EXIT_USAGE, Fix7Error
from fix7_pipeline.core.evidence.junit import write_junit
from fix7_pipeline.core.shared.model import STAGES
from fix7_pipeline_tests.e2e_support import fifo_reader


def _packet(statuses: dict, verdict: str | None) -> dict:
    stages = {s: {"status": statuses.get(s, "passed"), "reason": f"{s} reason", "duration_s": 1.5,
                  "findings": [{"rule": "r1", "message": f"{s} finding", "severity": "error"}]
                  if statuses.get(s) in ("failed", "blocked") else []} for s in STAGES}
    return {"verdict": verdict, "run_id": "run-1", "clone": {"sha256": "ab" * 32}, "anchor_id": "anc", "stages": stages}


def _cases(path) -> tuple[ET.Element, dict]:
    suite = ET.parse(path).getroot().find("testsuite")
    return suite, {c.get("name"): c for c in suite.findall("testcase")}


def test_passed_rehearsal_has_one_passing_case_per_stage(tmp_path):
    path = tmp_path / "report.xml"
    write_junit(path, _packet({}, "REHEARSAL_PASSED"))
    suite, cases = _cases(path)
    assert list(cases) == [*STAGES, "verdict"]
    assert all(len(c) == 1 and c[0].tag == "system-out" for n, c in cases.items() if n != "verdict")
    assert len(cases["verdict"]) == 0
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(len(STAGES) + 1), "0", "0")
    assert cases["apply"].get("time") == "1.500"
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == "REHEARSAL_PASSED" and props["clone_sha256"] == "ab" * 32


def test_blocked_gate_is_a_failure_and_later_stages_are_skipped(tmp_path):
    path = tmp_path / "report.xml"
    statuses = {"sanitization": "blocked", **{s: "skipped" for s in STAGES[3:]}}
    write_junit(path, _packet(statuses, "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"))
    suite, cases = _cases(path)
    failure = cases["sanitization"].find("failure")
    assert failure.get("type") == "blocked" and "sanitization finding" in failure.text
    assert all(cases[s].find("skipped") is not None for s in STAGES[3:])
    assert cases["intake"].find("failure") is None
    verdict = cases["verdict"].find("failure")
    assert "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE" in verdict.get("message")
    assert "sanitization: sanitization reason" in verdict.text
    assert (suite.get("failures"), suite.get("skipped")) == ("2", str(len(STAGES) - 3))


def test_unfinished_run_never_reads_as_a_pass(tmp_path):
    path = tmp_path / "report.xml"
    write_junit(path, _packet({s: "skipped" for s in STAGES}, None))
    suite, cases = _cases(path)
    assert suite.get("failures") == "1"
    assert "did not finish" in cases["verdict"].find("failure").get("message")


def test_one_case_per_impact_threshold_and_a_breach_fails_the_verdict_case(tmp_path):
    path = tmp_path / "report.xml"
    packet = _packet({}, "REHEARSAL_FAILED")
    message = "apply line 1 (LOCK TABLE) held ACCESS EXCLUSIVE on public.t for 2.00 s > max_lock_s 1 s"
    packet["impact"] = {"apply": {"thresholds": {"set": True, "passed": False, "results": [
        {"name": "max_lock_s", "limit": 1.0, "measured": 2.0, "passed": False, "breaches": [{"message": message}]},
        {"name": "max_total_s", "limit": 9.0, "measured": 2.1, "passed": True, "breaches": []}]}},
        "rollback": None}
    write_junit(path, packet)
    suite, cases = _cases(path)
    assert list(cases) == [*STAGES, "apply max_lock_s", "apply max_total_s", "verdict"]
    assert cases["apply max_lock_s"].find("failure").get("message") == message
    assert cases["apply max_total_s"].find("failure") is None
    assert cases["apply max_total_s"].find("system-out").text == "measured 2.1 within 9.0"
    assert f"impact: {message}" in cases["verdict"].find("failure").text
    assert (suite.get("tests"), suite.get("failures")) == (str(len(STAGES) + 3), "2")


# -- the path the operator named is written into, never swapped (packet_files.write_output) --------------


def test_a_regular_file_is_rewritten_in_place(tmp_path):
    path, other = tmp_path / "report.xml", tmp_path / "hard-link.xml"
    path.write_text("old")
    path.chmod(0o640)
    os.link(path, other)
    inode = path.stat().st_ino
    write_junit(path, _packet({}, "REHEARSAL_PASSED"))
    assert path.stat().st_ino == inode and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert other.read_text().startswith("<?xml")  # the other link sees the report: the same file


def test_a_symlink_stays_a_link_and_its_target_gets_the_report(tmp_path):
    target, link = tmp_path / "target.xml", tmp_path / "link.xml"
    target.write_text("old")
    link.symlink_to(target)
    write_junit(link, _packet({}, "REHEARSAL_PASSED"))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().startswith("<?xml")
    dangling, new_target = tmp_path / "dangling.xml", tmp_path / "new-target.xml"
    dangling.symlink_to(new_target)
    write_junit(dangling, _packet({}, "REHEARSAL_PASSED"))
    assert dangling.is_symlink() and new_target.read_text().startswith("<?xml")


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_a_character_device_stays_a_device(tmp_path):
    dev = tmp_path / "null-device"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a second /dev/null, never /dev/null itself
    write_junit(dev, _packet({}, "REHEARSAL_PASSED"))
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and os.lstat(dev).st_rdev == os.makedev(1, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["null-device"]  # no temp file left beside it
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_is_written_through_to_its_reader(tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    t, got = fifo_reader(fifo)
    for _ in range(100):  # the reader's open must come first, or the write is refused (next test)
        try:
            write_junit(fifo, _packet({}, "REHEARSAL_PASSED"))
            break
        except Fix7Error:
            threading.Event().wait(0.05)
    t.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got["data"].startswith(b"<?xml") and got["data"].rstrip().endswith(b"</testsuites>")


def test_a_fifo_nobody_reads_is_refused_not_waited_for(tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    with pytest.raises(Fix7Error) as e:
        write_junit(fifo, _packet({}, "REHEARSAL_PASSED"))
    assert e.value.exit_code == EXIT_USAGE and "no process reads" in e.value.message
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_directory_is_refused_with_a_usage_error(tmp_path):
    with pytest.raises(Fix7Error) as e:
        write_junit(tmp_path, _packet({}, "REHEARSAL_PASSED"))
    assert e.value.exit_code == EXIT_USAGE and "is a directory" in e.value.message
