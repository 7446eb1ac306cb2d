"""clone."""
