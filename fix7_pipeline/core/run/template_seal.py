"""A verified clone template's seal and its check at reuse (core/run/clone_templates.py says what they prove).

The gating packet seals the template's oid, its pg_database row version and the full fingerprint its anchor id
hashes; a run that copies the template checks the row before and after the copy, hands the copy's objects to its
role and carries the sealed fingerprint to its anchor (core/run/carried_anchor.py), reading the copy in full only
when it cannot be sealed at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..anchor import fingerprint
from ..clone.restore_jobs import recreate_empty
from ..evidence import audit
from ..evidence.packet_files import REPORT
from ..evidence.verdicts import SAFE_CLONE
from ..postgres.server import SCRATCH
from ..postgres.throwaways import throwaway_mark
from ..shared.names import BLOCKING_STAGES
from ..storage.store import evidence_path
from . import carried_anchor

GATE_STAGES = (*BLOCKING_STAGES, "snapshot_anchor")  # what a template spares a rehearsal
FINGERPRINT = "fingerprint"  # gating_evidence()'s sealed fingerprint: for the run record, never the packet
# the gating packet's field holding its anchor's full fingerprint, sealed with it (set when a template is kept)
FINGERPRINT_FIELD = "clone_template_fingerprint"


def gating_evidence(template) -> tuple[dict | None, str | None, bool]:
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
            fingerprint.anchor_id(fp) != data.get("anchor_id") or fingerprint.digest(fp) != kept.get(
                "anchor_fingerprint_sha256"):
        return None, "its gating packet does not seal the template's pg_database row and anchor fingerprint", True
    w = audit.witness(entry)
    return {"run_id": entry.get("run_id"), "evidence_dir": entry["evidence_dir"],
            "packet_sha256": w["packet_sha256"], "chain_entry_sha256": w["chain_entry_sha256"],
            "chain_seq": int(w["chain_seq"]), "verdict": w["verdict"], "anchor_id": entry.get("anchor_id"),
            "seal": {"oid": kept["oid"], "row_version": kept["row_version"]}, FINGERPRINT: fp}, None, False


def row_of(c: psycopg.Connection, name: str) -> tuple[int, str] | None:
    """A database's (oid, pg_database row version)."""
    row = c.execute("select oid::pg_catalog.int8, xmin::pg_catalog.text from pg_catalog.pg_database "
                    "where datname = %s", (name,)).fetchone()
    return (int(row[0]), row[1]) if row else None


def close_sessions(c: psycopg.Connection, name: str) -> tuple[int, str]:
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
    row = row_of(c, name)
    if row is None:
        raise psycopg.errors.UndefinedObject("the template is gone")
    return row


def grant_objects(c: psycopg.Connection, server, objects_role: str, role: str) -> None:
    how = sql.SQL(" with inherit true, set false") if server.version() >= 160000 else sql.SQL("")
    c.execute(sql.SQL("grant {} to {}").format(sql.Identifier(objects_role), sql.Identifier(role)) + how)


def moved(seal: dict, oid: int, row_version: str) -> str:
    return (f"the template was changed behind fix7's back: its pg_database row is oid {oid} version "
            f"{row_version}, its gating packet sealed oid {seal['oid']} version {seal['row_version']}")


@dataclass
class Copied:
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


def copy_and_prove(c: psycopg.Connection, server, found, tw, gating: dict, sealed_fp: dict, how: str | None) -> Copied:
    """Copy the template into the run's clone database and hand its objects to the run role (in this copy only).

    The copy is not read in full when it can be sealed at once (no session but fix7's own on it): the template's
    row is checked again after the copy (an admin who opened, edited and closed it meanwhile made a new row
    version), REASSIGN OWNED runs, the schema part is read again and may differ from the sealed fingerprint in
    owners alone (core/run/carried_anchor.py); the sealed fingerprint is carried to the anchor. Otherwise the copy
    is fingerprinted in full, as its objects' owner would, and must be the sealed anchor id. A copy that is not
    the sealed anchor is left empty again."""

    objects_role, role = found.facts["objects_role"], tw.login.role
    started = time.monotonic()
    if c.execute("select count(*) from pg_catalog.pg_database where datdba = "
                 "(select oid from pg_catalog.pg_roles where rolname = %s)", (objects_role,)).fetchone()[0]:
        return Copied(why="the template's object role owns a database")  # REASSIGN OWNED would take it over
    c.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(tw.database)))
    c.execute(sql.SQL("create database {} template {} owner {}{}").format(
        sql.Identifier(tw.database), sql.Identifier(found.name), sql.Identifier(role),
        sql.SQL(" strategy {}").format(sql.SQL(how)) if how else sql.SQL("")))
    copied_s = time.monotonic() - started
    now = row_of(c, found.name)
    if now != (gating["seal"]["oid"], gating["seal"]["row_version"]):  # changed between the check and the copy
        recreate_empty(c, tw.database, role, throwaway_mark())
        return Copied(why=moved(gating["seal"], *(now or (0, "dropped"))),
                       evidence={"recorded_seal": gating["seal"],
                                 "found_seal": {"oid": now[0], "row_version": now[1]} if now else None})
    c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(tw.database),
                                                             sql.Literal(throwaway_mark())))
    c.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(tw.database)))
    grant_objects(c, server, objects_role, role)
    out = Copied(copied_s=copied_s)
    try:
        # the owner session is pinned like the proofs, writable for REASSIGN OWNED alone
        with server.connect(tw.database, tw.login, purpose="clone template: take over the copy's objects",
                            session=SCRATCH) as owner:
            sealed = carried_anchor.seal(c, tw.database, [owner])
            if sealed is not None:
                out.check = BY_SEAL
                handed = hand_over(owner, objects_role, role, sealed_fp)
                if handed is None:
                    out.why = ("the template was changed behind fix7's back: its copy's schema differs from the "
                               "anchor fingerprint its gating packet sealed in more than owners")
                else:
                    out.carried = {"fingerprint": handed, "sealed_row": sealed}
            else:
                out.check = IN_FULL
                carried_anchor.unseal(c, tw.database)
                proven = fingerprint.anchor_id(fingerprint.of_database(server, tw.database, tw.login,
                                                                       "clone template: fingerprint of the copy"))
                if proven != gating["anchor_id"]:
                    out.why = (f"the template was changed behind fix7's back (its copy fingerprints to {proven}, its "
                               f"gating packet recorded {gating['anchor_id']})")
                    out.evidence = {"found_anchor_id": proven, "recorded_anchor_id": gating["anchor_id"]}
                else:
                    reassign(owner, objects_role, role)
    finally:
        c.execute(sql.SQL("revoke {} from {}").format(sql.Identifier(objects_role), sql.Identifier(role)))
        if out.carried is None:
            carried_anchor.unseal(c, tw.database)
    out.checked_s = time.monotonic() - started - copied_s
    if out.why is not None:
        recreate_empty(c, tw.database, role, throwaway_mark())
    return out


def hand_over(owner: psycopg.Connection, objects_role: str, role: str, sealed_fp: dict) -> dict | None:
    """REASSIGN OWNED in the sealed copy, then its schema read again: the sealed fingerprint with the new owners,
    or None if the schema differs from the sealed one in more than owners."""
    reassign(owner, objects_role, role)
    return carried_anchor.after_handover(owner, sealed_fp)


def reassign(owner: psycopg.Connection, objects_role: str, role: str) -> None:
    owner.execute(sql.SQL("reassign owned by {} to {}").format(sql.Identifier(objects_role), sql.Identifier(role)))
