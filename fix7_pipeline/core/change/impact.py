"""What production will feel: the measured impact of each statement of a change, warnings and thresholds.

Measured per statement (per statement line: the pieces `change.statement_chunks` runs), from the change's
own session, between statements, inside its one transaction:

- duration (the statement alone: the measurement queries around it are not counted);
- the relation locks it acquired (the session's own rows of `pg_locks`, `pid = pg_backend_pid()`): a lock
  is held to the end of the transaction, so it is held from the statement that took it to COMMIT
  (`held_s`, the sum of the statement durations from there plus the COMMIT), unless a ROLLBACK TO
  SAVEPOINT gave it back earlier;
- the tables and indexes it rewrote (`pg_class.relfilenode` changed, or an index dropped and built again
  under its name) with their size before and after (`pg_relation_size`, main fork);
- the WAL it generated (`pg_current_wal_insert_lsn()` moved: server-wide, so it includes WAL other sessions
  on the rehearsal server wrote meanwhile; "not measurable" when the restoring role may not call it);
- the rows it affected (the server's command tag);

and for the whole file the database size change (`pg_database_size`). The measurement queries read only
`pg_catalog` (qualified names and `OPERATOR(pg_catalog.=)`, so no search_path the change sets can steer
them to a function of the dump); `pg_relation_size` gives its lock back at once, and the catalog locks
they keep are not reported, so they change nothing that is measured.

Warnings name the statement and line: an index built without CONCURRENTLY on a large table, a foreign key
or CHECK added without NOT VALID, a column type change that rewrote the table, an added column whose
default is volatile (it rewrites; a non-volatile one such as now() does not, on PostgreSQL 11 and later),
any other rewrite, and an ACCESS EXCLUSIVE lock on a table the contract marks hot.

Thresholds gate: `max_statement_s`, `max_lock_s` (any lock mode), `max_access_exclusive_s` (ACCESS EXCLUSIVE),
`max_total_s` (every statement and the COMMIT) and `no_rewrite_tables`. Locks and rewrites of relations
the change itself created are reported but gate nothing: no one else can be waiting on them.
"""

from __future__ import annotations

from .analysis import analyse
from .markdown import markdown
from .meter import MeasurementFailed, Meter
from .patterns import Pattern, function_names, patterns
from .thresholds import (THRESHOLD_NAMES, ImpactSettings, Thresholds, breaches, evaluate, settings_for, summary,
                         threshold_problems)
from .units import ACCESS_EXCLUSIVE, LOCK_MODES, mode_name, qualified, scale_note

__all__ = ["ACCESS_EXCLUSIVE", "LOCK_MODES", "THRESHOLD_NAMES", "ImpactSettings", "MeasurementFailed", "Meter",
           "Pattern", "Thresholds", "analyse", "breaches", "evaluate", "function_names", "markdown", "mode_name",
           "patterns", "qualified", "scale_note", "settings_for", "summary", "threshold_problems"]
