"""The evidence: the run's journal, the sealed packet and its verdict, the audit chain, JUnit and run views."""
