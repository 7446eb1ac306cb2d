"""Untrusted dumps: what the file is, what it holds, and whether it is safe to restore at all.

Nothing here connects to a database. Archives are read with the wheel's `pg_restore -l`
(never the system's); plain dumps are read line by line with the one SQL lexer
(`core/postgres/sql_lexer.py`), so a meta-command hidden after pg_dump's `\\unrestrict` or a foreign server
pointing at production is refused before anything runs.

- `formats`   — the five formats, size caps, `DumpInfo` and `TocEntry`, and how a dump is refused
- `streams`   — path checks, the sha256 intake records, capped gunzip, a hashing reader, lines
- `archive`   — custom/directory/tar archives through the wheel's `pg_restore`, offline
- `screening` — what must not be restored: meta-commands, outward pointers, untrusted code
- `identify`  — `inspect_dump`: format, versions, table of contents and sha256, in one streamed pass
"""
