"""SQL pieces for proof queries that no object of the dump can intercept.

Proof sessions resolve names in pg_catalog alone (see `server.SESSION_OPTIONS`), so a dump's
`public.md5` or `=` is never found. What a search_path cannot stop is a cast: `CREATE CAST (my_enum AS
text) WITH FUNCTION public.f(my_enum)` is looked up by type, wherever it lives. A value of a type the
dump defined is therefore printed by its type's output function (`concat(…)` takes "any"), and
only types that come with PostgreSQL (whose casts only a superuser could add) are cast with `::text`.
"""

from __future__ import annotations

from psycopg import sql

FIRST_NORMAL_OID = 16384  # every object below this oid comes with PostgreSQL itself


def is_builtin(type_oid: int | None) -> bool:
    return type_oid is not None and int(type_oid) < FIRST_NORMAL_OID


def as_text(expr: sql.Composable, type_oid: int | None = None) -> sql.Composable:
    """`expr` as text, NULL kept NULL, through no cast a dump could have defined."""
    if is_builtin(type_oid):
        return sql.SQL("({})::pg_catalog.text").format(expr)
    return sql.SQL("(case when {e} is null then null else pg_catalog.concat({e}) end)").format(e=expr)
