"""The change stage: the operator's change and rollback run in one transaction each, and what production would feel."""
