"""Extensions: a dump that creates pgcrypto, uuid-ossp, citext, pg_trgm and hstore rehearses on the default
set-up (the embedded PostgreSQL 18 with `make extensions`); one the server lacks is refused by name, with the fix.
"""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from psycopg import sql

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.core.postgres import extensions
from fix7_pipeline.core.dumps.identify import inspect_dump
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.shared.paths import project_dir
from fix7_pipeline.core.clone.restore_failures import RestoreFailed, check_extensions, extension_failure
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome

FIVE = ("pgcrypto", "uuid-ossp", "citext", "pg_trgm", "hstore")
MAJORS = [18] + ([15] if builder.system_pg_dump(15) and builder.system_pg_bin(15) else [])
needs_added = pytest.mark.skipif(
    set(extensions.ADDED) - set(extensions.installed()) or extensions.missing_system_library("uuid-ossp"),
    reason="run `make extensions` (as root it also installs libossp-uuid16)")

SCHEMA = """
CREATE EXTENSION pgcrypto;
CREATE EXTENSION "uuid-ossp";
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
CREATE EXTENSION hstore;
CREATE TABLE public.account (
    id uuid DEFAULT public.uuid_generate_v4() PRIMARY KEY,
    email public.citext NOT NULL UNIQUE,
    attrs public.hstore,
    name text NOT NULL,
    name_digest bytea GENERATED ALWAYS AS (public.digest(name, 'sha256')) STORED,
    salt text DEFAULT encode(public.gen_random_bytes(8), 'hex') NOT NULL,
    v5 uuid DEFAULT public.uuid_generate_v5(public.uuid_ns_url(), 'https://example.test')
);
CREATE INDEX account_name_trgm ON public.account USING gin (name public.gin_trgm_ops);
INSERT INTO public.account (email, attrs, name)
  SELECT 'User' || g || '@Example.test', public.hstore('tier', (g % 3)::text), 'name number ' || g
  FROM generate_series(1, 25) g;
"""
APPLY = "alter table public.account add column nickname public.citext;\n" \
        "update public.account set nickname = lower(name) where attrs -> 'tier' = '1';\n"
ROLLBACK = "alter table public.account drop column nickname;\n"


def _factory(database, major, autocommit=True):
    return psycopg.connect(**builder.factory_conninfo(database, major=None if major == 18 else major),
                           autocommit=autocommit)


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "extensions")
    with home.instance() as inst:
        yield inst
    home.drop()


@pytest.fixture(scope="module")
def ext_dumps(tmp_path_factory):
    d = tmp_path_factory.mktemp("ext_dumps")
    out, made = {}, []
    for major in MAJORS:
        name = f"fix7_t_ext{major}"
        with _factory("postgres", major) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            c.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        made.append((major, name))
        try:
            with _factory(name, major, autocommit=False) as c:
                c.execute(SCHEMA)
                c.commit()
        except psycopg.Error as e:  # the factory itself lacks one: that factory makes no dump
            out[(major, "error")] = str(e).splitlines()[0]
            continue
        m = None if major == 18 else major
        out[(major, "custom")] = builder.dump_clone(name, "custom", d / f"ext{major}.custom", major=m)
        out[(major, "plain")] = builder.dump_clone(name, "plain", d / f"ext{major}.sql", major=m)
    yield out
    for major, name in made:
        with _factory("postgres", major) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def change(tmp_path_factory):
    d = tmp_path_factory.mktemp("ext_change")
    (d / "apply.sql").write_text(APPLY)
    (d / "rollback.sql").write_text(ROLLBACK)
    return d / "apply.sql", d / "rollback.sql"


def _config(clone, apply_sql, rollback_sql, evidence_dir, contract="") -> dict:
    return {"clone_path": str(clone), "apply_sql": str(apply_sql), "rollback_sql": str(rollback_sql),
            "attested_by": "test operator", "contract": str(contract), "evidence_dir": str(evidence_dir),
            "production_hosts": ["*.prod.corp.internal"], "allow_hosts": [], "server_url": "",
            "search_roots": [], "allowed_roots": [], "keep_databases": False}


@needs_added
@pytest.mark.parametrize("major,fmt", [(18, "custom")] + [(15, "plain")] * (15 in MAJORS))
def test_dump_with_the_five_extensions_rehearses_on_the_default_set_up(major, fmt, ext_dumps, change, instance,
                                                                      tmp_path):
    assert (major, "error") not in ext_dumps, ext_dumps.get((major, "error"))
    dump = ext_dumps[(major, fmt)]
    contract = tmp_path / "contract.yaml"
    r = subprocess.run([sys.executable, "-m", "fix7_pipeline.cli", "contract", "from-dump",
                        str(ext_dumps[(major, "custom")] if (major, "custom") in ext_dumps else dump),
                        "-o", str(contract)], capture_output=True, text=True, cwd=str(project_dir()), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "public.citext" in contract.read_text() and "public.hstore" in contract.read_text()
    out = run_rehearsal(_config(dump, *change, tmp_path / "ev", contract), instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_PASSED", [(s, v["status"], v["reason"]) for s, v in packet["stages"].items()
                                                  if v["status"] != "passed"]
    assert set(FIVE) <= set(extensions_in(dump))


def extensions_in(dump) -> list[str]:
    from fix7_pipeline.core.clone.restore_failures import dump_extensions

    return dump_extensions(inspect_dump(dump))


def test_a_missing_extension_is_named_with_its_fix_in_the_verdict(ext_dumps, change, instance, tmp_path):
    """An allow-listed extension the rehearsal server has no build of: the verdict names it and the fix."""
    base = next(v for k, v in ext_dumps.items() if k[1] == "plain")
    text = base.read_text()
    marker = "\n--\n-- Name: pgcrypto; Type: EXTENSION"
    assert marker in text
    planted = ("\n--\n-- Name: pgvector; Type: EXTENSION; Schema: -; Owner: -\n--\n\n"
               "CREATE EXTENSION IF NOT EXISTS pgvector WITH SCHEMA public;\n\n")
    dump = tmp_path / "needs-pgvector.sql"
    dump.write_text(text.replace(marker, planted + marker, 1))
    out = run_rehearsal(_config(dump, *change, tmp_path / "ev"), instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    iso = packet["stages"]["isolation"]
    assert iso["status"] == "blocked" and iso["findings"][0]["rule"] == "extension_missing"
    assert "lacks the extension(s) the dump creates: pgvector." in iso["reason"]
    assert "rehearse on a PostgreSQL 18 server that has them" in iso["reason"]
    assert "pgcrypto" not in iso["reason"].split("Fix:")[0]  # only what is missing is named


def test_each_missing_extension_and_an_unloadable_one_are_named(server, monkeypatch, ext_dumps):
    dump = next(v for k, v in ext_dumps.items() if k[1] == "custom")
    info = inspect_dump(dump)
    for e in info.toc:
        if e.kind == "EXTENSION" and e.name in ("citext", "hstore"):
            e.name = {"citext": "pgvector", "hstore": "no_such_ext"}[e.name]
    monkeypatch.setattr(extensions, "missing_system_library",
                        lambda ext: "libossp-uuid.so.16" if ext == "uuid-ossp" else None)
    with pytest.raises(Fix7Error) as e:
        check_extensions(server, info)
    msg = e.value.message
    assert e.value.rule == "extension_missing"
    assert "creates: no_such_ext, pgvector." in msg
    assert "has the extension uuid-ossp but cannot load it: its module needs libossp-uuid.so.16" in msg
    assert "apt-get install libossp-uuid16" in msg
    # the same from a restore's own error lines (SQL without a table of contents, an external server)
    failed = RestoreFailed("x", ['line 3: ERROR:  extension "pgcrypto" is not available',
                                 'line 9: ERROR:  could not load library "/x/lib/uuid-ossp.so": libossp-uuid.so.16: '
                                 'cannot open shared object file: No such file or directory'])
    mapped = extension_failure(server, failed)
    assert mapped.rule == "extension_missing" and "creates: pgcrypto." in mapped.message
    assert "make extensions" in mapped.message and "cannot load it" in mapped.message
