"""The anchor of a run that starts from a verified clone template, without fingerprinting its rows at all.

The template is checked by its seal (template_seal.copy_and_prove: its pg_database row as its gating packet
sealed it), and that packet seals the anchor fingerprint the template was kept with. The anchor stage would read
every row of a physical copy of the same database. It need not, provided nothing can change the clone between
the copy and the anchor copy:

- fix7's own step in between, REASSIGN OWNED, changes owners, and the fingerprint holds owners (each object's
  `owner` and, through acldefault, its `privileges`). So the schema part is read again after it, in the same
  sealed window, and it may differ from the sealed one in those two attributes only (else the template is
  discarded); rows, sequence positions and large objects' contents are what REASSIGN cannot touch, and are
  carried forward as sealed.
- the write window: right after the copy the clone is sealed (ALLOW_CONNECTIONS false, which binds superusers
  too) while fix7's own session is its only one, checked by backend pid; the anchor is copied before it is
  opened again, after checking that no session is on it and that its pg_database row is the version the seal
  wrote (an admin who opened, wrote and closed it again made a newer one).

If the write window does not hold, nothing is carried: the anchor stage fingerprints the anchor in full, and it
must be the sealed fingerprint (else the run stops as a server fault, not a verdict). The restore diff's after-rollback fingerprint is always a full read, against the carried fingerprint: a copy that was
not the sealed state fails it (core/run/template_fault.py says which it was).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from ..anchor import fingerprint
from ..postgres.throwaways import database_properties
from ..shared.errors import Fix7Error
from .run_record import Anchor

NOT_AS_SEALED = "server.clone_not_as_sealed"  # a fault of the server (another session), no verdict on the change
OWNER_ATTRIBUTES = frozenset({"owner", "privileges"})  # what REASSIGN OWNED may change in the schema part


def anchor_name(tag: str) -> str:
    return f"fix7_anchor_{tag}"


def seal(c: psycopg.Connection, database: str, own: list[psycopg.Connection]) -> str | None:
    """Close `database` to new sessions; its pg_database row version if `own` are then its only sessions."""
    c.execute(sql.SQL("alter database {} with allow_connections false").format(sql.Identifier(database)))
    pids = {row[0] for row in c.execute("select pid from pg_catalog.pg_stat_activity where datname = %s",
                                        (database,))}
    if pids - {s.info.backend_pid for s in own}:
        return None
    return _row_version(c, database)


def unseal(c: psycopg.Connection, database: str) -> None:
    c.execute(sql.SQL("alter database {} with allow_connections true").format(sql.Identifier(database)))


def _row_version(c: psycopg.Connection, database: str) -> str | None:
    row = c.execute("select xmin::text, datallowconn from pg_catalog.pg_database where datname = %s",
                    (database,)).fetchone()
    return row[0] if row is not None and row[1] is False else None


def after_handover(owner_session: psycopg.Connection, proven: dict) -> dict | None:
    """The proven fingerprint with its schema part read again after REASSIGN OWNED (in `owner_session`, the
    sealed clone's one remaining session), or None if anything but owners and privileges moved."""
    with fingerprint.snapshot(owner_session):
        schema = fingerprint.schema_objects(owner_session)
    if set(schema) != set(proven["schema"]):
        return None
    for key, attrs in schema.items():
        before = proven["schema"][key]
        if set(attrs) != set(before) or any(attrs[a] != before[a] for a in attrs if a not in OWNER_ATTRIBUTES):
            return None
    return {**proven, "schema": schema}


def take_anchor(ctx, carried: dict, how: str | None) -> Anchor:
    """The anchor copy (CREATE DATABASE … STRATEGY `how`) of the sealed clone, its fingerprint the carried one; the
    clone opened again either way. If the seal did not hold, an Anchor with no database (`expected`): the anchor
    stage copies and fingerprints the clone as ever, and its fingerprint must be the carried one, for nothing else
    vouches that this copy of the template is the sealed state."""
    server = ctx.server
    tw = ctx.throwaway()
    with server.connect(purpose="anchor with the template check: the sealed clone") as c:
        try:
            intact = _row_version(c, tw.database) == carried["sealed_row"] and not c.execute(
                "select count(*) from pg_catalog.pg_stat_activity where datname = %s", (tw.database,)).fetchone()[0]
            if intact:
                ctx.new_database(anchor_name(tw.tag), template=tw.database, read_only=True, strategy=how)
        finally:
            unseal(c, tw.database)
    fp = carried["fingerprint"]
    return Anchor(database=anchor_name(tw.tag) if intact else "", anchor_id=fingerprint.anchor_id(fp),
                  fingerprint=fp, database_properties=database_properties(server, tw.database))


def expected(record) -> Anchor | None:
    """The sealed fingerprint a reused clone's anchor must have when it could not be carried (take_anchor)."""
    a = record.carried_anchor
    return a if a is not None and not a.database else None


def not_as_sealed(found: str, sealed: str) -> Fix7Error:
    return Fix7Error(
        f"The clone copied from the verified template is not the state its gating packet sealed: its anchor "
        f"fingerprints to {found}, the sealed fingerprint (with this run's owners) is {sealed}. Another session "
        "opened the sealed clone between its copy and its anchor copy (its pg_database row changed), and it, or "
        "the template altered outside PostgreSQL, changed its content. Nothing is judged about the change: "
        "rehearse again.", rule=NOT_AS_SEALED)


def how_read(carried: dict | None, record) -> str:
    """For the packet: whether the anchor carries the template check's fingerprint, and if not, why."""
    if record.carried_anchor is not None and record.carried_anchor.database:
        return "carried from the template check (the clone sealed between them)"
    if carried is not None:
        return ("read in full, and must be the sealed fingerprint: the sealed clone was opened again or had a "
                "session between the template check and the anchor copy")
    return "read in full: another session was on the copy when the template check sealed it"
