"""The snapshot anchor (a copy and a logical fingerprint of the clone) and the restore diff measured against it."""
