"""Intake of untrusted dumps: real pg_dump output in every format, and the ways a file can be wrong."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from fix7_pipeline.core.dumps.archive import parse_toc_line
from fix7_pipeline.core.dumps.identify import inspect_dump
from fix7_pipeline.core.dumps.screening import screen_dump
from fix7_pipeline.core.dumps.streams import hash_dump
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.core import hostile

FORMAT_OF = {"plain": "plain", "plain-gz": "plain-gzip", "custom": "custom", "directory": "directory", "tar": "tar"}


@pytest.fixture(scope="module")
def demo_dumps(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dumps")
    name = "fix7h_dumps_demo"
    builder.build_clone(name, registry_rows=30, seed=3)
    try:
        return {fmt: builder.dump_clone(name, fmt, d / f"demo.{fmt}") for fmt in builder.DUMP_FORMATS}
    finally:
        builder.drop_clone(name)


def refused(path, **kw) -> Fix7Error:
    with pytest.raises(Fix7Error) as e:
        inspect_dump(path, **kw)
    assert e.value.exit_code == 3
    return e.value


@pytest.mark.parametrize("fmt", list(FORMAT_OF))
def test_real_dumps_are_identified_and_pass_screening(demo_dumps, fmt):
    info = inspect_dump(demo_dumps[fmt])
    assert info.format == FORMAT_OF[fmt]
    assert info.pg_dump_version.startswith("18.") and info.server_version.startswith("18.")
    assert "public.birth_registry" in info.tables and "public.directus_webhooks" in info.tables
    assert "public.birth_registry" in info.tables_with_data and not info.schema_only
    assert len(info.sha256) == 64 and info.bytes > 0
    owners = {e.owner for e in info.toc if e.kind == "TABLE"}
    assert owners == {"directus"}, owners  # the production role the rehearsal server does not have
    assert any(e.kind == "ACL" for e in info.toc) and any(e.kind == "COMMENT" for e in info.toc)
    if info.is_archive:
        assert info.archive_version and info.archive_version.startswith("1.")
    assert [f for f in screen_dump(info) if f.is_error] == []
    assert inspect_dump(demo_dumps[fmt]).sha256 == info.sha256


def test_directory_hash_covers_member_contents(demo_dumps, tmp_path):
    copy = shutil.copytree(demo_dumps["directory"], tmp_path / "copy")
    before = inspect_dump(copy).sha256
    member = next(p for p in sorted(copy.iterdir()) if p.name != "toc.dat")
    member.write_bytes(member.read_bytes() + b"\0")
    after = hash_dump(copy, "directory")
    assert before != after


def test_schema_only_dump_is_recognised(tmp_path):
    name = "fix7h_dumps_schema"
    builder.build_clone(name, registry_rows=5)
    try:
        out = builder.dump_clone(name, "custom", tmp_path / "schema.dump", schema_only=True)
    finally:
        builder.drop_clone(name)
    info = inspect_dump(out)
    assert info.schema_only and info.tables_with_data == [] and "public.birth_registry" in info.tables


def test_names_with_spaces_and_non_ascii(demo_dumps, tmp_path):
    d = tmp_path / "dossier clône ü"
    d.mkdir()
    p = shutil.copy(demo_dumps["plain"], d / "sauvegarde été ñ.sql")
    info = inspect_dump(p, allowed_roots=[tmp_path])
    assert info.format == "plain" and info.path == Path(p).resolve()


# -- bad inputs ----------------------------------------------------------------------------------

def test_missing_empty_random_and_special_files(tmp_path):
    assert refused(tmp_path / "nope.dump").rule == "dump_missing"
    (tmp_path / "empty.dump").write_bytes(b"")
    assert refused(tmp_path / "empty.dump").rule == "dump_empty"
    (tmp_path / "random.dump").write_bytes(os.urandom(4096))
    e = refused(tmp_path / "random.dump")
    assert e.rule in ("dump_not_pg_dump",) and "not a pg_dump" in e.message
    os.mkfifo(tmp_path / "fifo")
    assert refused(tmp_path / "fifo").rule == "dump_not_regular"
    con = sqlite3.connect(tmp_path / "app.db")
    con.execute("create table t(x)")
    con.commit()
    con.close()
    assert "SQLite" in refused(tmp_path / "app.db").message
    (tmp_path / "hand.sql").write_text("create table t(x int);\n")
    assert refused(tmp_path / "hand.sql").rule == "dump_not_pg_dump"
    (tmp_path / "z.sql.zst").write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(64))
    assert refused(tmp_path / "z.sql.zst").rule == "dump_unsupported_compression"


_INSPECT_WITHOUT_DAC_OVERRIDE = """
import json, sys
from fix7_pipeline.core.dumps.identify import inspect_dump
from fix7_pipeline.core.shared.errors import Fix7Error
path, probe = sys.argv[1], sys.argv[2]
try:
    open(probe, "rb").close()
    probe_readable = True
except PermissionError:
    probe_readable = False
try:
    inspect_dump(path)
    print(json.dumps({"probe_readable": probe_readable, "rule": None}))
except Fix7Error as e:
    print(json.dumps({"probe_readable": probe_readable, "rule": e.rule, "exit_code": e.exit_code}))
"""


def _drop_dac_capabilities() -> None:  # runs in the child before exec
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: what lets root read a mode-000 file
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: the exec'd process never gets them back
            os._exit(97)


def _inspect_unprivileged(path: Path, probe: Path) -> dict:
    """inspect_dump as a process that file permissions apply to: as root (CI), one that has dropped the
    capabilities that bypass them; else this process itself."""
    import json
    import subprocess
    import sys

    if os.geteuid() != 0:
        try:
            open(probe, "rb").close()
            readable = True
        except PermissionError:
            readable = False
        try:
            inspect_dump(path)
            return {"probe_readable": readable, "rule": None}
        except Fix7Error as e:
            return {"probe_readable": readable, "rule": e.rule, "exit_code": e.exit_code}
    r = subprocess.run([sys.executable, "-c", _INSPECT_WITHOUT_DAC_OVERRIDE, str(path), str(probe)],
                       capture_output=True, text=True, timeout=120, preexec_fn=_drop_dac_capabilities)
    assert r.returncode != 97, "could not drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (prctl PR_CAPBSET_DROP refused)"
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["custom file", "directory dump's toc.dat", "directory dump's data file",
                                  "directory that cannot be listed"])
def test_unreadable_dump_is_refused(demo_dumps, tmp_path, case):
    """Runs as root too: the inspection runs in a process without the capabilities that bypass file modes."""
    if case == "custom file":
        path = probe = Path(shutil.copy(demo_dumps["custom"], tmp_path / "locked.dump"))
    else:
        path = Path(shutil.copytree(demo_dumps["directory"], tmp_path / "locked.dir"))
        probe = {"directory dump's toc.dat": path / "toc.dat",
                 "directory dump's data file": max((p for p in path.iterdir() if p.name != "toc.dat"),
                                                   key=lambda p: p.stat().st_size),
                 "directory that cannot be listed": path}[case]
    os.chmod(probe, 0)
    try:
        got = _inspect_unprivileged(path, probe if probe.is_file() else probe / "toc.dat")
    finally:
        os.chmod(probe, 0o700 if probe.is_dir() else 0o600)
    assert got["probe_readable"] is False, "the check ran with permission to read the file anyway"
    assert (got["rule"], got.get("exit_code")) == ("dump_unreadable", 3), got
    assert inspect_dump(path).format in ("custom", "directory")  # the same dump, readable again, is fine


def test_truncated_custom_archive_is_refused(demo_dumps, tmp_path):
    short = hostile.truncated_copy(demo_dumps["custom"], tmp_path / "short.dump", 0.01)
    assert refused(short).rule in ("dump_corrupt", "dump_truncated")
    cut_in_data = hostile.truncated_copy(demo_dumps["custom"], tmp_path / "cut.dump", 0.8)
    e = refused(cut_in_data)
    assert e.rule in ("dump_truncated", "dump_corrupt") and "complete" in e.message
    assert str(tmp_path) not in e.message.split("cannot be used:")[1]


def test_a_custom_archive_damaged_in_any_one_data_block_is_refused_and_its_hash_is_the_file_s(demo_dumps, tmp_path):
    """Intake reads each data block through on its own (archive_read.py): a block damaged anywhere, the first,
    one in the middle or the last, is refused; what it hashes is the whole file, in its one pass."""
    import hashlib

    from fix7_pipeline.core.dumps.archive import list_archive

    source = demo_dumps["custom"]
    raw = source.read_bytes()
    info = inspect_dump(source)
    assert info.sha256 == hashlib.sha256(raw).hexdigest() and info.bytes == len(raw)
    assert [e.line for e in info.toc] == [e.line for e in list_archive(source, "custom")[1]]
    # where compressed data lies: the registry's COPY rows are the bulk of the archive, placed after its schema
    for where in (0.3, 0.6, 0.97):
        at = int(len(raw) * where)
        damaged = tmp_path / f"damaged-{where}.dump"
        damaged.write_bytes(raw[:at] + bytes(b ^ 0x5A for b in raw[at:at + 512]) + raw[at + 512:])
        e = refused(damaged)
        assert e.rule in ("dump_truncated", "dump_corrupt"), (where, e.rule, e.message)


def test_truncated_plain_dump_is_refused_by_screening(demo_dumps, tmp_path):
    text = demo_dumps["plain"].read_text()
    cut = tmp_path / "cut.sql"
    cut.write_text(text[: text.index("COPY public.birth_registry")] + text[text.index("COPY public.birth_registry"):][:400])
    info = inspect_dump(cut)
    rules = {f.rule for f in screen_dump(info)}
    assert rules == {"dump_truncated"}


def test_directory_without_toc_and_with_symlinked_member(demo_dumps, tmp_path):
    empty = tmp_path / "notadump"
    empty.mkdir()
    (empty / "1234.dat.gz").write_bytes(b"x")
    assert "toc.dat" in refused(empty).message
    d = shutil.copytree(demo_dumps["directory"], tmp_path / "linked")
    member = next(p for p in sorted(d.iterdir()) if p.name != "toc.dat")
    member.unlink()
    member.symlink_to("/etc/passwd")
    e = refused(d)
    assert e.rule == "dump_directory_member" and "symbolic link" in e.message


def test_symlink_outside_allowed_roots(demo_dumps, tmp_path):
    inside = tmp_path / "inbox"
    inside.mkdir()
    link = inside / "clone.dump"
    link.symlink_to(demo_dumps["custom"])
    e = refused(link, allowed_roots=[inside])
    assert e.rule == "dump_outside_roots" and "symbolic link" in e.message
    assert inspect_dump(link).format == "custom"  # no roots given: the link is followed
    real = shutil.copy(demo_dumps["custom"], inside / "real.dump")
    assert inspect_dump(real, allowed_roots=[inside]).format == "custom"
    assert refused(demo_dumps["custom"], allowed_roots=[inside]).rule == "dump_outside_roots"


def test_gzip_bomb_is_refused_without_expanding_it(tmp_path):
    bomb = hostile.gzip_bomb(tmp_path / "bomb.sql.gz", 48 * 1024 * 1024)
    assert bomb.stat().st_size < 200 * 1024
    assert refused(bomb).rule == "dump_gzip_bomb"
    assert refused(bomb, max_plain_bytes=8 * 1024 * 1024).rule == "dump_too_large"


def test_gzipped_archive_and_damaged_gzip(demo_dumps, tmp_path):
    import gzip

    gz = tmp_path / "custom.dump.gz"
    gz.write_bytes(gzip.compress(demo_dumps["custom"].read_bytes()))
    assert refused(gz).rule == "dump_unsupported_compression"
    broken = hostile.truncated_copy(demo_dumps["plain-gz"], tmp_path / "broken.sql.gz", 0.5)
    assert refused(broken).rule in ("dump_truncated", "dump_corrupt")


def test_dump_from_newer_pg_dump_is_refused(demo_dumps, tmp_path):
    text = demo_dumps["plain"].read_text().replace("-- Dumped by pg_dump version 18.", "-- Dumped by pg_dump version 99.")
    p = tmp_path / "future.sql"
    p.write_text(text)
    e = refused(p)
    assert e.rule == "dump_too_new" and "pg_dump 99." in e.message


# -- screening plain dumps -------------------------------------------------------------------------

def _screen(path) -> list:
    return [f for f in screen_dump(inspect_dump(path)) if f.is_error]


def test_meta_command_after_unrestrict_is_refused_by_line(demo_dumps, tmp_path):
    p = hostile.with_lines_after_unrestrict(demo_dumps["plain"], tmp_path / "escape.sql",
                                            ["\\! touch /tmp/fix7-should-never-exist"])
    findings = _screen(p)
    assert findings and findings[0].rule == "psql_meta_command"
    last = len(p.read_text().splitlines())
    assert f"Line {last}" in findings[0].message and "\\!" in findings[0].message
    assert "touch" not in findings[0].message and "fix7-should" not in findings[0].message


@pytest.mark.parametrize("payload,rule_word", [
    ("\\connect other_db", "--create"),
    ("\\copy public.t from program 'id'", "\\copy"),
    ("\\set ON_ERROR_STOP 0", "\\set"),
    ("\\i /etc/passwd", "\\i"),
    ("\\o /tmp/fix7-out", "\\o"),
    ("select 1 \\g /tmp/fix7-out", "\\g"),
    ("\\unrestrict wrongkey", "\\unrestrict"),
    ("\\restrict anotherkey", "\\restrict"),
])
def test_meta_commands_inside_the_dump_are_refused(demo_dumps, tmp_path, payload, rule_word):
    p = hostile.with_line_inserted(demo_dumps["plain"], tmp_path / "meta.sql", "CREATE TABLE public.birth_registry",
                                   [payload])
    findings = _screen(p)
    assert [f.rule for f in findings] == ["psql_meta_command"], findings
    assert rule_word in findings[0].message


def test_backslashes_in_quotes_comments_and_copy_data_are_not_meta_commands(demo_dumps, tmp_path):
    p = hostile.with_line_inserted(demo_dumps["plain"], tmp_path / "ok.sql", "CREATE TABLE public.birth_registry", [
        "SELECT 'a\\! b', E'\\\\x', $q$ \\! not a command $q$, \"we\\ird\"; -- \\! in a comment",
        "/* block \\! comment",
        "   still \\o comment */",
        "CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$",
        "  SELECT '\\! body';",
        "$$;",
    ])
    assert _screen(p) == []


def test_sql_after_unrestrict_is_refused(demo_dumps, tmp_path):
    p = hostile.with_lines_after_unrestrict(demo_dumps["plain"], tmp_path / "after.sql", ["DROP TABLE x;"])
    assert [f.rule for f in _screen(p)] == ["psql_meta_command"]


def test_untrusted_extension_refused_trusted_allowed(demo_dumps, tmp_path):
    p = hostile.with_line_inserted(demo_dumps["plain"], tmp_path / "ext.sql", "CREATE TABLE public.birth_registry", [
        "CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;",
        'CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;',
        "CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA public;",
    ])
    findings = _screen(p)
    assert [f.rule for f in findings] == ["extension_not_allowed"]
    assert findings[0].extra["entries"] == ["EXTENSION dblink"] and findings[0].extra["isolation"] is True


def test_fdw_dump_is_refused_in_plain_and_archive_form(tmp_path):
    made = hostile.fdw_and_prod_webhook(tmp_path)
    for path in (made["custom"], made["plain"]):
        findings = _screen(path)
        rules = {f.rule for f in findings}
        assert {"foreign_server", "user_mapping", "foreign_table", "extension_not_allowed"} <= rules
        assert all(f.extra.get("isolation") for f in findings if f.rule != "event_trigger")
        text = " ".join(f.message for f in findings)
        assert "prod-password" not in text
    findings = _screen(made["plain"])
    server = next(f for f in findings if f.rule == "foreign_server")
    assert "db.prod.corp.internal" in server.message
    assert "prod-password" not in " ".join(f.message + str(f.extra) for f in findings)


def test_toc_line_parsing_handles_multiword_kinds_and_spaces():
    e = parse_toc_line("2587; 0 0 USER MAPPING - USER MAPPING postgres SERVER prod postgres")
    assert (e.kind, e.name, e.owner, e.label) == ("USER MAPPING", "USER MAPPING postgres SERVER prod", "postgres",
                                                  "USER MAPPING postgres SERVER prod")
    e = parse_toc_line("221; 1259 16962 TABLE DATA public my table directus")
    assert (e.kind, e.schema, e.name, e.owner) == ("TABLE DATA", "public", "my table", "directus")
    e = parse_toc_line("2676; 0 0 COMMENT - EXTENSION hstore ")
    assert (e.kind, e.name, e.owner) == ("COMMENT", "EXTENSION hstore", None)


def test_a_custom_archive_left_to_the_restore_is_hashed_and_listed_but_not_read_through(demo_dumps, tmp_path):
    """A rehearsal's intake leaves a custom archive's data blocks to the restore (core/run/intake_vouch.py): a
    block damaged in the data passes intake, hashed as the file and listed; read through, it is refused. A directory
    archive is read through either way (pg_restore feeds a tar member cut short to the server as rows)."""
    import hashlib

    raw = demo_dumps["custom"].read_bytes()
    at = int(len(raw) * 0.97)  # in the last data block, past the table of contents
    damaged = tmp_path / "damaged.dump"
    damaged.write_bytes(raw[:at] + bytes(b ^ 0x5A for b in raw[at:at + 512]) + raw[at + 512:])
    info = inspect_dump(damaged, restore_reads_custom_data=True)
    assert info.sha256 == hashlib.sha256(damaged.read_bytes()).hexdigest() and info.toc
    assert refused(damaged).rule in ("dump_truncated", "dump_corrupt")
    d = shutil.copytree(demo_dumps["directory"], tmp_path / "dir")
    member = max((p for p in d.iterdir() if p.name != "toc.dat"), key=lambda p: p.stat().st_size)
    member.write_bytes(member.read_bytes()[:member.stat().st_size // 2])
    assert refused(d, restore_reads_custom_data=True).rule in ("dump_truncated", "dump_corrupt")
