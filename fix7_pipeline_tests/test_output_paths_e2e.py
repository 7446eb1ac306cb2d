"""Issue 22: a path the operator names as an output is written into, never swapped. Through the CLI,
`--junit` at a character device leaves it a device, at a symlink leaves the link (its target gets the report),
at a FIFO feeds the reader; a directory is refused with exit 2 before any run. Each run stops at intake (the
dump is missing), so it is sealed within seconds and the JUnit report is written as for any verdict."""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET

import pytest

from fix7_pipeline_tests.e2e_support import DagsterHome, fifo_reader, tiny_change


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("output_paths_home"), "outpaths")
    yield h
    h.drop()


def _rehearse(home, tmp_path, junit):
    change = tiny_change(tmp_path / "change")
    return home.cli("rehearse", "--clone", str(tmp_path / "missing.dump"), "--apply", str(change[0]),
                    "--rollback", str(change[1]), "--evidence-dir", str(tmp_path / "ev"), "--junit", str(junit))


def _is_report(data: bytes) -> None:
    suite = ET.fromstring(data).find("testsuite")
    assert suite is not None and suite.get("failures") != "0"


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_junit_at_a_device_node_leaves_it_a_device(home, tmp_path):
    dev = tmp_path / "out" / "null"
    dev.parent.mkdir()
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a device of our own: /dev/null is never risked
    before = os.lstat(dev)
    r = _rehearse(home, tmp_path, dev)
    assert r.returncode == 3, r.stdout + r.stderr
    st = os.lstat(dev)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert (st.st_mode, st.st_ino) == (before.st_mode, before.st_ino)
    assert sorted(p.name for p in dev.parent.iterdir()) == ["null"]
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_junit_through_a_symlink_leaves_the_link(home, tmp_path):
    target, link = tmp_path / "reports" / "junit.xml", tmp_path / "junit-link.xml"
    target.parent.mkdir()
    link.symlink_to(target)
    r = _rehearse(home, tmp_path, link)
    assert r.returncode == 3, r.stdout + r.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    _is_report(target.read_bytes())


def test_junit_at_a_fifo_feeds_its_reader(home, tmp_path):
    fifo = tmp_path / "junit.fifo"
    os.mkfifo(fifo)
    reader, got = fifo_reader(fifo)
    r = _rehearse(home, tmp_path, fifo)
    reader.join(30)
    assert r.returncode == 3, r.stdout + r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    _is_report(got["data"])


def test_junit_at_a_directory_is_a_usage_error_before_any_run(home, tmp_path):
    r = _rehearse(home, tmp_path, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "is a directory" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ev").exists()
