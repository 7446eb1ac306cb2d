"""A synthetic production-shaped source (the factory) and a sample FIX7 change, for the demo and tests."""

from .builder import (DUMP_FORMATS, build_clone, drop_clone, dump_clone, factory_conninfo, reference_schema_sql,
                      run_sql, system_pg_dump, write_sample_change)

__all__ = ["DUMP_FORMATS", "build_clone", "drop_clone", "dump_clone", "factory_conninfo", "reference_schema_sql",
           "run_sql", "system_pg_dump", "write_sample_change"]
