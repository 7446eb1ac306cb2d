"""Verified clone templates: restore and gate a dump once, rehearse it many times (issue 25).

A run whose four clone gates passed leaves its anchor (the physical copy taken right after the gates, whose
fingerprint its sealed packet records as `anchor_id`) on the rehearsal server as a template database, named by a
key of everything that decided the gates: the dump's sha256, the contract's (its canonical JSON), the secret
rule set's version, fix7's version (its package version and the sha256 of its code), the server's identity and
the host policy the isolation gate applied. The next rehearsal with the same key copies the template
(`CREATE DATABASE … TEMPLATE`) instead of restoring and gating the dump again, after proving two things:

- the sealed packet that gated it is intact in the audit chain (core.audit), passed every gate and names this
  template and this anchor id;
- the template's seal holds: its oid and its pg_database row version (`xmin`) are the ones that packet sealed.
  To change a template's content through PostgreSQL an admin must first change that row (ALLOW_CONNECTIONS,
  rename, owner; drop and create is a new oid), and any change of the row is a new version (a freeze or a VACUUM
  FULL keeps the raw xmin: checked on PostgreSQL 15 and 18). A template whose row moved was changed behind fix7's
  back: discarded before the copy, and the full path runs. The copy is not read in full: the anchor fingerprint
  the packet sealed is carried to the run's anchor (core/run/carried_anchor.py), its schema part read again
  after REASSIGN OWNED.

What the seal does not see: a template edited outside PostgreSQL (its files written, the server started in
single-user mode, which ignores ALLOW_CONNECTIONS), or a session an admin held on it from before it was locked.
Such a template can still never pass a rehearsal: the restore diff reads the rolled-back clone in full and
compares it with the carried (sealed) fingerprint, so an altered copy differs; on that failure the run reads
its anchor copy in full once, and says which it was (core/run/template_fault.py): "template altered outside
PostgreSQL; discarded" (a fault of the server, no verdict on the change) or "the rollback did not restore".

Runs cannot change a template: it has ALLOW_CONNECTIONS false, IS_TEMPLATE true, and belongs to fix7's own
role `fix7_templates` (NOLOGIN), never to a run's; the objects inside it belong to the gating run's restoring
role, kept NOLOGIN without a password. A run that copies it takes the objects over in its own copy only
(`REASSIGN OWNED`, through a membership it holds for that statement alone).

Where the key and the gating evidence live: the template database's own COMMENT (JSON of hashes and ids, nothing
read from the dump). It is created, renamed and dropped with the database in the same statements, so it can
never describe a database that is gone or be missing from one that exists, and it works the same on the
embedded server and on an external one, where fix7 may have no database of its own. It is not trusted alone:
the chain entry and the sealed packet it names are checked at every use.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..anchor import fingerprint
from ..clone.restore_jobs import recreate_empty
from ..evidence.report import EvidencePacket
from ..postgres.throwaways import throwaway_mark
from ..sanitization.redact import STATE_KEY as REDACTED_NAMES, RedactedNames
from ..shared.errors import Fix7Error
from .clone_template_key import key_parts, template_key
from .template_seal import (BY_SEAL, FINGERPRINT, FINGERPRINT_FIELD, GATE_STAGES, IN_FULL, close_sessions,  # noqa: F401
                            copy_and_prove, gating_evidence, moved)

ENV = "FIX7_CLONE_TEMPLATES"            # "off": no template is kept nor used
BUDGET_ENV = "FIX7_CLONE_TEMPLATES_MAX_BYTES"
DEFAULT_MAX_BYTES = 20 * 2**30          # 20 GiB of templates per rehearsal server
STRATEGY_ENV = "FIX7_TEMPLATE_COPY_STRATEGY"  # wal_log or file_copy; unset: by the template's size
# Measured on the embedded PostgreSQL 18 (2 cores, file_copy_method = copy): a 78 MB template copies in 0.9 s by
# WAL_LOG and 1.25 s by FILE_COPY (its two checkpoints dominate); a 379 MB one in 1.77 s and 1.05 s.
FILE_COPY_FROM_BYTES = 200 * 2**20
PREFIX = "fix7_template_"
OWNER_ROLE = "fix7_templates"
MARK = "fix7-template "
OBJECTS_MARK = "fix7-template-objects "
CARRIED = "carried"  # reuse()'s fingerprint for the anchor: for the run record, never the packet


def enabled() -> bool:
    return os.environ.get(ENV, "on").strip().lower() not in ("off", "0", "no", "false")


def max_bytes() -> int:
    try:
        return int(os.environ.get(BUDGET_ENV) or DEFAULT_MAX_BYTES)
    except ValueError:
        return DEFAULT_MAX_BYTES


def template_name(key: str) -> str:
    return PREFIX + key[:24]


# -- what the server holds -----------------------------------------------------------------

@dataclass
class Template:
    name: str
    facts: dict          # the comment's JSON; {} when the comment is not fix7's
    bytes: int
    owner: str
    allow_connections: bool
    is_template: bool
    oid: int = 0
    row_version: str = ""  # its pg_database row's xmin: any ALTER DATABASE makes a new one

    @property
    def sound(self) -> bool:
        """Locked the way fix7 left it (a template someone unlocked is used by no run)."""
        return bool(self.facts) and self.owner == OWNER_ROLE and not self.allow_connections and self.is_template


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _lock(c: psycopg.Connection, name: str, shared: bool = False) -> None:
    fn = "pg_advisory_lock_shared" if shared else "pg_advisory_lock"
    c.execute(sql.SQL("select pg_catalog.{}(pg_catalog.hashtext({}))").format(
        sql.Identifier(fn), sql.Literal("fix7 clone template " + name)))


def list_templates(server) -> list[Template]:
    with server.connect(purpose="clone templates: list") as c:
        rows = c.execute(
            "select d.datname, pg_catalog.shobj_description(d.oid, 'pg_database'), "
            "pg_catalog.pg_database_size(d.oid), pg_catalog.pg_get_userbyid(d.datdba), d.datallowconn, "
            "d.datistemplate, d.oid::pg_catalog.int8, d.xmin::pg_catalog.text from pg_catalog.pg_database d "
            "where d.datname like %s order by 1", (PREFIX.replace("_", "\\_") + "%",)).fetchall()
    out = []
    for name, comment, size, owner, allow, is_template, oid, row_version in rows:
        facts = {}
        if comment and comment.startswith(MARK):
            try:
                facts = json.loads(comment[len(MARK):])
            except ValueError:
                facts = {}
        out.append(Template(name, facts, int(size or 0), owner, bool(allow), bool(is_template), int(oid),
                            row_version))
    return out


def _find(server, name: str) -> Template | None:
    return next((t for t in list_templates(server) if t.name == name), None)


def drop_template(server, name: str, *, only_if_run: str | None = None) -> bool:
    """Drop one template (after any copy of it in progress) and, when nothing else holds objects of it, the role
    its objects belong to. `only_if_run`: only the template that run gated (not one a later run put there)."""
    if not name.startswith(PREFIX):
        raise Fix7Error(f"{name} is not a fix7 clone template (their names start with {PREFIX}).",
                        rule="clone_template")
    with server.connect(purpose="clone templates: drop") as c:
        _lock(c, name)
        row = c.execute("select pg_catalog.shobj_description(oid, 'pg_database') from pg_catalog.pg_database "
                        "where datname = %s", (name,)).fetchone()
        if row is None:
            return False
        facts = json.loads(row[0][len(MARK):]) if row[0] and row[0].startswith(MARK) else {}
        if only_if_run is not None and facts.get("gating_run_id") != only_if_run:
            return False
        c.execute(sql.SQL("alter database {} is_template false").format(sql.Identifier(name)))
        c.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
        _drop_objects_role(c, facts.get("objects_role"))
    return True


def _drop_objects_role(c: psycopg.Connection, role: str | None) -> None:
    if not role:
        return
    comment = c.execute("select pg_catalog.shobj_description(oid, 'pg_authid') from pg_catalog.pg_roles "
                        "where rolname = %s", (role,)).fetchone()
    if comment is None or not (comment[0] or "").startswith(OBJECTS_MARK):
        return
    try:
        c.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
    except psycopg.Error:
        pass  # a copy in progress still holds objects of it: `fix7 clones` drops it later


def drop_orphan_roles(server) -> list[str]:
    """Roles that owned the objects of a template now gone (their drop waited on a copy in progress)."""
    names = {t.name for t in list_templates(server)}
    dropped = []
    with server.connect(purpose="clone templates: orphan roles") as c:
        for role, comment in c.execute(
                "select rolname, pg_catalog.shobj_description(oid, 'pg_authid') from pg_catalog.pg_roles "
                "where pg_catalog.shobj_description(oid, 'pg_authid') like %s", (OBJECTS_MARK + "%",)).fetchall():
            if comment[len(OBJECTS_MARK):].strip() not in names:
                try:
                    c.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
                    dropped.append(role)
                except psycopg.Error:
                    pass
    return dropped


def enforce_budget(server, budget: int, keep: str | None = None) -> list[str]:
    """Drop the least recently used templates until they fit in `budget` bytes; `keep` goes last."""
    found = list_templates(server)
    total = sum(t.bytes for t in found)
    order = sorted(found, key=lambda t: (t.name == keep, t.facts.get("last_used_at") or t.facts.get("created_at")
                                         or ""))
    dropped = []
    for t in order:
        if total <= budget:
            break
        if drop_template(server, t.name):
            dropped.append(t.name)
            total -= t.bytes
    return dropped


# -- use ---------------------------------------------------------------------------------

def strategy(server, size: int) -> str | None:
    """CREATE DATABASE's copy strategy (PostgreSQL 15+): FILE_COPY for a large template (no WAL of its blocks;
    with file_copy_method = clone on PostgreSQL 18 and a copy-on-write filesystem, a clone of the files), WAL_LOG
    for a small one (FILE_COPY's checkpoints cost more than it saves)."""
    if server.version() < 150000:
        return None
    wanted = (os.environ.get(STRATEGY_ENV) or "").strip().lower()
    if wanted in ("file_copy", "wal_log"):
        return wanted
    return "file_copy" if size >= FILE_COPY_FROM_BYTES else "wal_log"


def copy_strategy(server, database: str) -> str | None:
    """How to copy a clone database (its anchor): by its size, as a template is. A 1.37 GB clone copied in 3.1 s by
    FILE_COPY and 9.6 s by WAL_LOG (embedded PostgreSQL 18, 2 busy cores)."""
    with server.connect(purpose="copy strategy: the database's size") as c:
        size = c.execute("select pg_catalog.pg_database_size(%s)", (database,)).fetchone()[0]
    return strategy(server, int(size or 0))


def reuse(server, record, tw, packet, contract) -> dict:
    """Start the run's clone from the verified template of its key, if there is one that holds.

    Returns the facts for the packet: `reused` True (the clone database `tw.database` is now a copy of the
    template, its objects the run role's), or False with `why` (the clone database is empty as created, and
    the full path runs). A template that no longer holds is discarded here. A template that cannot be used
    (the server refused a step) is only a slower run: the full path runs and the packet says why."""
    try:
        return _reuse(server, record, tw, packet, contract)
    except (psycopg.Error, Fix7Error) as e:
        # never the server's message: it can quote a name from the dump, and this is written before any scan
        why = e.message if isinstance(e, Fix7Error) else f"{type(e).__name__}, SQLSTATE {e.sqlstate}"
        with server.connect(purpose="clone template: not used, the clone database empty again") as c:
        
            recreate_empty(c, tw.database, tw.login.role, throwaway_mark())
        return {"reused": False, "why": f"the template could not be used ({why}); restored and gated instead"}


def _reuse(server, record, tw, packet, contract) -> dict:
    if not enabled():
        return {"reused": False, "why": f"clone templates are off ({ENV}=off)"}
    parts = key_parts(record, server, contract)
    key = template_key(parts)
    name = template_name(key)
    facts = {"reused": False, "key": key, "template": name}
    if record.request.fresh_clone:
        return {**facts, "why": "--fresh-clone: restored and gated again"}
    with server.connect(purpose="clone template: copy") as c:
        _lock(c, name, shared=True)  # a template being kept or dropped is seen before or after, never during
        found = _find(server, name)
        if found is None:
            return {**facts, "why": "no template of this key on the server"}
        discard, why, gating = False, None, None
        if not found.sound or found.facts.get("key") != key or found.facts.get("parts") != parts:
            discard, why = True, "the template was unlocked or relabelled behind fix7's back"
        else:
            gating, why, discard = gating_evidence(found)
        if gating is not None and (found.oid, found.row_version) != (gating["seal"]["oid"],
                                                                     gating["seal"]["row_version"]):
            why = moved(gating["seal"], found.oid, found.row_version)
            facts.update(discarded=True, recorded_seal=gating["seal"],
                         found_seal={"oid": found.oid, "row_version": found.row_version})
            gating, discard = None, True
        if gating is None:
            c.execute("select pg_catalog.pg_advisory_unlock_all()")
            if discard:
                drop_template(server, name, only_if_run=found.facts.get("gating_run_id"))
            return {**facts, "why": why + ("; discarded" if discard else ""), "discarded": discard}
        sealed_fp = gating.pop(FINGERPRINT)
        got = copy_and_prove(c, server, found, tw, gating, sealed_fp, strategy(server, found.bytes))
        if got.why is not None:
            c.execute("select pg_catalog.pg_advisory_unlock_all()")
            drop_template(server, name, only_if_run=found.facts.get("gating_run_id"))
            return {**facts, "discarded": True, **(got.evidence or {}), "why": got.why + ": discarded"}
        _count_use(c, name)
    how = strategy(server, found.bytes)
    return {"reused": True, "key": key, "template": name, "key_parts": parts, "gating_packet": gating,
            "carried_anchor_id": gating["anchor_id"], "check": got.check, "seal": gating["seal"],
            "copy": {"strategy": how or "wal_log (server default)", "seconds": round(got.copied_s, 3)},
            "fingerprint_check_s": round(got.checked_s, 3), "template_bytes": found.bytes, CARRIED: got.carried}


# -- keep --------------------------------------------------------------------------------

def adopt(server, record, packet) -> tuple[str | None, bool]:
    """At the end of a run whose gates passed: keep its anchor as the template of its key.

    Returns (the anchor database now kept as the template, or None; whether the run's role must stay, as the
    owner of the template's objects). Never raises: a template not kept is only a slower next run."""
    try:
        return _adopt(server, record, packet)
    except Exception as e:  # noqa: BLE001 - recorded; the run's throwaways are dropped as ever
        try:
            packet.set(clone_template={"kept": False, "why": f"not kept: {type(e).__name__}"})
        except Exception:  # noqa: BLE001
            pass
        return None, False


def _gates_passed(record) -> bool:

    data = EvidencePacket.load(record.evidence_dir).data
    return all(data["stages"][s]["status"] == "passed" for s in GATE_STAGES) and \
        not (data.get("clone_reuse") or {}).get("reused")


def _adopt(server, record, packet) -> tuple[str | None, bool]:
    anchor = record.anchor
    if not enabled() or anchor is None or record.throwaway is None or record.request.keep_databases \
            or record.contract is None or not _gates_passed(record):
        return None, False
    parts = key_parts(record, server, record.contract)
    key = template_key(parts)
    name = template_name(key)
    role = record.throwaway.role
    with server.connect(purpose="clone template: keep") as c:
        _lock(c, name)
        held = c.execute("select pg_catalog.shobj_description(oid, 'pg_database') from pg_catalog.pg_database "
                         "where datname = %s", (name,)).fetchone()
        if held is not None and f'"gating_run_id": "{record.run_id}"' in (held[0] or ""):
            return anchor.database, True  # kept by this run already (its throwaways are dropped once more)
        if held is not None:
            packet.set(clone_template={"kept": False, "database": name, "key": key,
                                       "why": "a template of this key is already on the server"})
            return None, False
        if RedactedNames.from_state({REDACTED_NAMES: record.redacted_names}).scrub_obj(anchor.fingerprint) != \
                anchor.fingerprint:
            packet.set(clone_template={"kept": False, "database": name, "key": key,
                                       "why": "its anchor fingerprint names an object whose name matched a secret "
                                              "rule, and the packet that must seal it never prints such a name"})
            return None, False
        _ensure_owner_role(c)
        for attempt in range(50):  # the run's last sessions on the anchor may still be ending
            c.execute("select pg_catalog.pg_terminate_backend(pid) from pg_catalog.pg_stat_activity "
                      "where datname = %s and pid <> pg_catalog.pg_backend_pid()", (anchor.database,))
            try:
                c.execute(sql.SQL("alter database {} rename to {}").format(sql.Identifier(anchor.database),
                                                                           sql.Identifier(name)))
                break
            except psycopg.errors.ObjectInUse:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        facts = {"key": key, "parts": parts, "gating_run_id": record.run_id, "anchor_id": anchor.anchor_id,
                 "objects_role": role, "created_at": _now(), "dump_bytes": record.clone.get("bytes")}
        # named in the packet before the seal, so the sealed packet vouches for this template and no other
        packet.set(clone_template={"kept": True, "database": name, "key": key, "anchor_id": anchor.anchor_id,
                                   "objects_role": role})
        ident = sql.Identifier(name)
        try:
            _lock_template(c, name, role, facts)
            oid, row_version = close_sessions(c, name)
        except psycopg.Error:  # never half a template
            c.execute(sql.SQL("alter database {} is_template false").format(ident))
            c.execute(sql.SQL("drop database if exists {} with (force)").format(ident))
            raise
        # its seal, with the fingerprint its anchor id hashes, in the packet before the packet is sealed: a reuse
        # checks the template's row against this (the database comment alone an admin could rewrite)
        packet.put(["clone_template", "oid"], oid)
        packet.put(["clone_template", "row_version"], row_version)
        packet.put(["clone_template", "anchor_fingerprint_sha256"], fingerprint.digest(anchor.fingerprint))
        packet.set(**{FINGERPRINT_FIELD: anchor.fingerprint})
    dropped = enforce_budget(server, max_bytes(), keep=name)
    if dropped:
        packet.put(["clone_template", "evicted"], dropped)
    if name in dropped:
        packet.put(["clone_template", "kept"], False)
        packet.put(["clone_template", "why"], f"larger than the templates' disk budget ({BUDGET_ENV})")
    return anchor.database, name not in dropped


def _lock_template(c: psycopg.Connection, name: str, role: str, facts: dict) -> None:
    """The renamed anchor made fix7's, unconnectable, copyable; the run's role kept only as its objects' owner."""
    ident = sql.Identifier(name)
    for statement in (
            sql.SQL("alter database {} owner to {}").format(ident, sql.Identifier(OWNER_ROLE)),
            sql.SQL("alter database {} with allow_connections false is_template true").format(ident),
            sql.SQL("alter database {} reset all").format(ident),
            sql.SQL("revoke all on database {} from public, {}").format(ident, sql.Identifier(role)),
            sql.SQL("comment on database {} is {}").format(ident, sql.Literal(
                MARK + json.dumps(facts, sort_keys=True))),
            sql.SQL("alter role {} nologin password null").format(sql.Identifier(role)),
            sql.SQL("comment on role {} is {}").format(sql.Identifier(role), sql.Literal(OBJECTS_MARK + name))):
        c.execute(statement)


def _ensure_owner_role(c: psycopg.Connection) -> None:
    if not c.execute("select 1 from pg_catalog.pg_roles where rolname = %s", (OWNER_ROLE,)).fetchone():
        try:
            c.execute(sql.SQL("create role {} nologin").format(sql.Identifier(OWNER_ROLE)))
            c.execute(sql.SQL("comment on role {} is {}").format(sql.Identifier(OWNER_ROLE), sql.Literal(
                "fix7: owns the verified clone templates (fix7 clones)")))
            if not c.execute("select rolsuper from pg_catalog.pg_roles where rolname = current_user").fetchone()[0]:
                # an admin that is not superuser (a managed server) gives its templates to the role it is a member of
                c.execute(sql.SQL("grant {} to current_user").format(sql.Identifier(OWNER_ROLE)))
        except psycopg.errors.DuplicateObject:
            pass


def _count_use(c: psycopg.Connection, name: str) -> None:
    """The template's last use and count, for the budget's eviction order; concurrent uses each count."""
    with c.transaction():
        c.execute("select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(%s))", ("fix7 template use " + name,))
        comment = c.execute("select pg_catalog.shobj_description(oid, 'pg_database') from pg_catalog.pg_database "
                            "where datname = %s", (name,)).fetchone()[0]
        facts = json.loads(comment[len(MARK):])
        facts.update(last_used_at=_now(), uses=int(facts.get("uses") or 0) + 1)
        c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(name),
                                                                 sql.Literal(MARK + json.dumps(facts, sort_keys=True))))


def reused_reason(facts: dict) -> str:
    g = facts["gating_packet"]
    return (f"reused verified clone {facts['key'][:12]} ({facts['template']}): gated by sealed packet "
            f"{g['packet_sha256'][:12]} (audit chain #{g['chain_seq']}), anchor {facts['carried_anchor_id']} "
            + ("carried by its seal" if facts.get("check") == BY_SEAL else "proven equal on the copy"))
