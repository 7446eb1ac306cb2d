"""`fix7`, the command line: `main` parses and dispatches, one module per subcommand.

- `rehearse`   — `fix7 rehearse`: the request's flags, the Dagster run, its progress and exit code
- `demo`       — `fix7 demo`: a synthetic production-shaped clone, rehearsed the same way
- `contract`   — `fix7 contract show | from-sql | from-dump`
- `candidates` — `fix7 candidates`: Table A
- `ui`, `audit`, `diff`, `rules` — the Dagster UI, the audit trail, two databases compared, the secret rules
"""
