"""The Dagster layer: thin and declarative; the work lives in fix7_pipeline.core."""
