"""The birth-surface contract: the shape a clone must match, plus what its data and secrets must honour.

- `model`     — the dataclasses (`Contract`, `TableShape`, `Column`, keys, checks, indexes) and the annotations
- `from_yaml` — the YAML format (documented at its top), read and written, and the shipped default contract

Which contract a run uses (the default, an operator's YAML, or schema SQL / a dump restored and read from the
catalog) is intake's: core/intake/contract_load.py and contract_from_schema.py.
"""
