"""Domain logic in plain Python: nothing here imports Dagster."""
