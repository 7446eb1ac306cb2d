"""change."""
