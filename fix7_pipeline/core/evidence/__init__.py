"""The evidence: the run's journal, its packet and the audit chain, and where they are kept."""
