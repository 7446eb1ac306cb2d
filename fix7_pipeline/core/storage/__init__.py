"""Where evidence and run records are kept: a folder on this machine or a prefix in an S3 bucket (a library every
stage may use; it imports nothing else of core)."""
