"""A contract from PostgreSQL itself: schema SQL or a pg_dump archive, restored and read from the catalog.

fix7 parses no DDL. The schema goes through the same screened, least-privileged restore as a clone
(`restore.restore` into a throwaway from `create_throwaway`: a fresh role owning only a fresh database),
`shape.read_catalog_shape` reads what PostgreSQL made of it — partitions, inheritance, typed and
LIKE-made tables, identity and generated columns, whatever the server accepts — and the throwaway is
dropped. An archive's data is left out; a plain file runs whole, as it would for a clone.
"""

from __future__ import annotations

from pathlib import Path

from ..clone import restore
from ..contract.model import Contract, contract_error
from ..dumps import identify
from ..postgres.server import RehearsalServer
from ..postgres.throwaways import create_throwaway, drop_throwaway
from ..shape.schema_shape import read_catalog_shape
from ..shared.errors import Fix7Error


def contract_from_schema(server: RehearsalServer, path: str | Path, *, source: str | None = None,
                         timeout: float = 1800) -> Contract:
    """The shape of every table that the schema at `path` creates, as PostgreSQL on `server` reads it."""
    p = Path(path)
    source = source or str(p)
    try:
        info = identify.inspect_dump(p, schema_sql=True, timeout=timeout)
    except Fix7Error as e:
        raise contract_error(source, e.message) from None
    tw = create_throwaway(server)
    try:
        try:
            restore.restore(server, tw, info, timeout=timeout, schema_only=True)
        except Fix7Error as e:
            raise contract_error(source, f"PostgreSQL did not accept it ({e.message})") from None
        with server.connect(tw.database, tw.login, purpose="contract from schema") as conn:
            tables = read_catalog_shape(conn)
    finally:
        drop_throwaway(server, tw)
    if not tables:
        raise contract_error(source, "it creates no tables")
    return Contract(tables=tables, annotations={}, source=source)
