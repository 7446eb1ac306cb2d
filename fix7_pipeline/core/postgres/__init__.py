"""The rehearsal server: the host guard, connections and their ledger, the embedded server, throwaway databases
and roles, server URLs, client tools, and SQL read the way PostgreSQL reads it."""
