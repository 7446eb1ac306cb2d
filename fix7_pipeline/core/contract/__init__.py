"""The birth-surface contract: the shape a clone must match, plus what its data and secrets must honour.

- `model`     — the dataclasses (`Contract`, `TableShape`, `Column`, keys, checks, indexes) and the annotations
- `from_yaml` — the YAML format (documented at its top), read and written
- `from_sql`  — a contract from PostgreSQL itself: schema SQL or a pg_dump archive, restored and read from the catalog
- `load`      — which one a run uses: the shipped default, an operator's YAML, or SQL/a dump (`load_contract`)
"""
