"""fix7_pipeline: rehearse the FIX7 change on a sanitized, production-shaped clone."""
