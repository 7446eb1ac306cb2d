"""Sanitization: the secret scan of a restored clone, its rule registry and the redaction of names."""
