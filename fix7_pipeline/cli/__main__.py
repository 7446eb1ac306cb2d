"""`python -m fix7_pipeline.cli`: the same as the `fix7` console script."""

from fix7_pipeline.cli.main import run

run()
