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
import hashlib
import json
import os
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..anchor import fingerprint
from . import carried_anchor
from ..clone.restore_jobs import recreate_empty
from ..evidence import audit
from ..evidence.packet_files import REPORT
from ..evidence.report import EvidencePacket
from ..evidence.verdicts import SAFE_CLONE
from ..postgres.server import SCRATCH
from ..postgres.throwaways import throwaway_mark
from ..sanitization.redact import STATE_KEY as REDACTED_NAMES, RedactedNames
from ..storage.store import evidence_path
from ..shared.errors import Fix7Error
from ..shared.names import BLOCKING_STAGES
from .clone_template_key import key_parts, template_key

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
GATE_STAGES = (*BLOCKING_STAGES, "snapshot_anchor")  # what a template spares a rehearsal
CARRIED = "carried"  # reuse()'s fingerprint for the anchor: for the run record, never the packet
FINGERPRINT = "fingerprint"  # gating_evidence()'s sealed fingerprint: for the run record, never the packet
# the gating packet's field holding its anchor's full fingerprint, sealed with it (set when a template is kept)
FINGERPRINT_FIELD = "clone_template_fingerprint"


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


# -- the gating evidence -------------------------------------------------------------------

def gating_evidence(template: Template) -> tuple[dict | None, str | None, bool]:
    """(the witness of the sealed packet that gated `template`, None) or (None, why not, whether to discard it).

    Not yet sealed (its run goes on) is no reason to discard it; a packet missing, edited, not vouching for every
    gate, naming another template or anchor, or not sealing the template's row and anchor fingerprint is. The
    witness holds that seal (`seal`: oid and row version) and, under FINGERPRINT, the sealed fingerprint (for the
    run record, never the packet)."""

    facts = template.facts
    entry = audit.chain_by_run().get(facts.get("gating_run_id"))
    if entry is None:
        return None, "the run that gated it has not sealed its packet in this audit chain", False
    problems = audit.check_packet(entry)
    if problems:
        return None, f"its gating packet does not hold: {problems[0]}", True
    data = json.loads((evidence_path(entry["evidence_dir"]) / REPORT).read_text(encoding="utf-8"))
    failed = [s for s in GATE_STAGES if data["stages"][s]["status"] != "passed"]
    if data.get("clone_verdict") != SAFE_CLONE or failed:
        return None, f"its gating packet does not pass every gate ({', '.join(failed) or data.get('clone_verdict')})", \
            True
    kept = data.get("clone_template") or {}
    if not (data.get("anchor_id") == entry.get("anchor_id") == facts.get("anchor_id")) or \
            kept.get("database") != template.name:
        return None, "its gating packet names another anchor or template", True
    fp = data.get(FINGERPRINT_FIELD)
    if not isinstance(kept.get("oid"), int) or not kept.get("row_version") or not isinstance(fp, dict) or \
            fingerprint.anchor_id(fp) != data.get("anchor_id") or fingerprint_sha256(fp) != kept.get(
                "anchor_fingerprint_sha256"):
        return None, "its gating packet does not seal the template's pg_database row and anchor fingerprint", True
    w = audit.witness(entry)
    return {"run_id": entry.get("run_id"), "evidence_dir": entry["evidence_dir"],
            "packet_sha256": w["packet_sha256"], "chain_entry_sha256": w["chain_entry_sha256"],
            "chain_seq": int(w["chain_seq"]), "verdict": w["verdict"], "anchor_id": entry.get("anchor_id"),
            "seal": {"oid": kept["oid"], "row_version": kept["row_version"]}, FINGERPRINT: fp}, None, False


def fingerprint_sha256(fp: dict) -> str:
    """The full sha256 of an anchor fingerprint (the anchor id keeps 64 bits of it)."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _row(c: psycopg.Connection, name: str) -> tuple[int, str] | None:
    """A database's (oid, pg_database row version)."""
    row = c.execute("select oid::pg_catalog.int8, xmin::pg_catalog.text from pg_catalog.pg_database "
                    "where datname = %s", (name,)).fetchone()
    return (int(row[0]), row[1]) if row else None


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


def _grant_objects(c: psycopg.Connection, server, objects_role: str, role: str) -> None:
    how = sql.SQL(" with inherit true, set false") if server.version() >= 160000 else sql.SQL("")
    c.execute(sql.SQL("grant {} to {}").format(sql.Identifier(objects_role), sql.Identifier(role)) + how)


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
            why = _moved(gating["seal"], found.oid, found.row_version)
            facts.update(discarded=True, recorded_seal=gating["seal"],
                         found_seal={"oid": found.oid, "row_version": found.row_version})
            gating, discard = None, True
        if gating is None:
            c.execute("select pg_catalog.pg_advisory_unlock_all()")
            if discard:
                drop_template(server, name, only_if_run=found.facts.get("gating_run_id"))
            return {**facts, "why": why + ("; discarded" if discard else ""), "discarded": discard}
        sealed_fp = gating.pop(FINGERPRINT)
        got = _copy_and_prove(c, server, found, tw, gating, sealed_fp)
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


def _moved(seal: dict, oid: int, row_version: str) -> str:
    return (f"the template was changed behind fix7's back: its pg_database row is oid {oid} version "
            f"{row_version}, its gating packet sealed oid {seal['oid']} version {seal['row_version']}")


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
            oid, row_version = _close_sessions(c, name)
        except psycopg.Error:  # never half a template
            c.execute(sql.SQL("alter database {} is_template false").format(ident))
            c.execute(sql.SQL("drop database if exists {} with (force)").format(ident))
            raise
        # its seal, with the fingerprint its anchor id hashes, in the packet before the packet is sealed: a reuse
        # checks the template's row against this (the database comment alone an admin could rewrite)
        packet.put(["clone_template", "oid"], oid)
        packet.put(["clone_template", "row_version"], row_version)
        packet.put(["clone_template", "anchor_fingerprint_sha256"], fingerprint_sha256(anchor.fingerprint))
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


def _close_sessions(c: psycopg.Connection, name: str) -> tuple[int, str]:
    """End any session still on the locked template (one opened before it was locked could write into it later
    without touching its row) and wait until none is left; its (oid, row version) then."""
    for _ in range(100):
        if not c.execute("select count(*) from pg_catalog.pg_stat_activity where datname = %s", (name,)).fetchone()[0]:
            break
        c.execute("select pg_catalog.pg_terminate_backend(pid, 1000) from pg_catalog.pg_stat_activity "
                  "where datname = %s and pid <> pg_catalog.pg_backend_pid()", (name,))
        time.sleep(0.05)
    else:
        raise psycopg.errors.ObjectInUse("a session on the template did not end")
    row = _row(c, name)
    if row is None:
        raise psycopg.errors.UndefinedObject("the template is gone")
    return row


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


@dataclass
class _Copied:
    why: str | None = None   # the copy is not the sealed anchor (the template is discarded), else None
    evidence: dict | None = None
    check: str = ""
    copied_s: float = 0.0
    checked_s: float = 0.0
    carried: dict | None = None


BY_SEAL = ("by its seal: oid and pg_database row version as its gating packet sealed them; the anchor fingerprint "
           "carried from that packet, its schema part read again after REASSIGN OWNED")
IN_FULL = ("in full: another session was on the copy when it was sealed, so the copy was fingerprinted and its "
           "anchor id compared with the gating packet's")


def _copy_and_prove(c: psycopg.Connection, server, found: Template, tw, gating: dict, sealed_fp: dict) -> _Copied:
    """Copy the template into the run's clone database and hand its objects to the run role (in this copy only).

    The copy is not read in full when it can be sealed at once (no session but fix7's own on it): the template's
    row is checked again after the copy (an admin who opened, edited and closed it meanwhile made a new row
    version), REASSIGN OWNED runs, the schema part is read again and may differ from the sealed fingerprint in
    owners alone (core/run/carried_anchor.py); the sealed fingerprint is carried to the anchor. Otherwise the copy
    is fingerprinted in full, as its objects' owner would, and must be the sealed anchor id. A copy that is not
    the sealed anchor is left empty again."""

    objects_role, role, how = found.facts["objects_role"], tw.login.role, strategy(server, found.bytes)
    started = time.monotonic()
    if c.execute("select count(*) from pg_catalog.pg_database where datdba = "
                 "(select oid from pg_catalog.pg_roles where rolname = %s)", (objects_role,)).fetchone()[0]:
        return _Copied(why="the template's object role owns a database")  # REASSIGN OWNED would take it over
    c.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(tw.database)))
    c.execute(sql.SQL("create database {} template {} owner {}{}").format(
        sql.Identifier(tw.database), sql.Identifier(found.name), sql.Identifier(role),
        sql.SQL(" strategy {}").format(sql.SQL(how)) if how else sql.SQL("")))
    copied_s = time.monotonic() - started
    now = _row(c, found.name)
    if now != (gating["seal"]["oid"], gating["seal"]["row_version"]):  # changed between the check and the copy
        recreate_empty(c, tw.database, role, throwaway_mark())
        return _Copied(why=_moved(gating["seal"], *(now or (0, "dropped"))),
                       evidence={"recorded_seal": gating["seal"],
                                 "found_seal": {"oid": now[0], "row_version": now[1]} if now else None})
    c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(tw.database),
                                                             sql.Literal(throwaway_mark())))
    c.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(tw.database)))
    _grant_objects(c, server, objects_role, role)
    out = _Copied(copied_s=copied_s)
    try:
        # the owner session is pinned like the proofs, writable for REASSIGN OWNED alone
        with server.connect(tw.database, tw.login, purpose="clone template: take over the copy's objects",
                            session=SCRATCH) as owner:
            sealed = carried_anchor.seal(c, tw.database, [owner])
            if sealed is not None:
                out.check = BY_SEAL
                handed = _hand_over(owner, objects_role, role, sealed_fp)
                if handed is None:
                    out.why = ("the template was changed behind fix7's back: its copy's schema differs from the "
                               "anchor fingerprint its gating packet sealed in more than owners")
                else:
                    out.carried = {"fingerprint": handed, "sealed_row": sealed}
            else:
                out.check = IN_FULL
                carried_anchor.unseal(c, tw.database)
                with server.connect(tw.database, tw.login, purpose="clone template: fingerprint of the copy") as \
                        conn, server.connect(tw.database, tw.login,
                                             purpose="clone template: fingerprint (second core)") as h:
                    proven = fingerprint.anchor_id(fingerprint.fingerprint(conn, [h]))
                if proven != gating["anchor_id"]:
                    out.why = (f"the template was changed behind fix7's back (its copy fingerprints to {proven}, its "
                               f"gating packet recorded {gating['anchor_id']})")
                    out.evidence = {"found_anchor_id": proven, "recorded_anchor_id": gating["anchor_id"]}
                else:
                    owner.execute(sql.SQL("reassign owned by {} to {}").format(sql.Identifier(objects_role),
                                                                               sql.Identifier(role)))
    finally:
        c.execute(sql.SQL("revoke {} from {}").format(sql.Identifier(objects_role), sql.Identifier(role)))
        if out.carried is None:
            carried_anchor.unseal(c, tw.database)
    out.checked_s = time.monotonic() - started - copied_s
    if out.why is not None:
        recreate_empty(c, tw.database, role, throwaway_mark())
    return out


def _hand_over(owner: psycopg.Connection, objects_role: str, role: str, sealed_fp: dict) -> dict | None:
    """REASSIGN OWNED in the sealed copy, then its schema read again: the sealed fingerprint with the new owners,
    or None if the schema differs from the sealed one in more than owners."""
    owner.execute(sql.SQL("reassign owned by {} to {}").format(sql.Identifier(objects_role), sql.Identifier(role)))
    return carried_anchor.after_handover(owner, sealed_fp)


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
