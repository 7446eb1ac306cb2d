"""The pipeline's names, defined once: the Dagster job, its assets and checks, the stages of the evidence packet
and the clone gates. Core, the Dagster layer (defs/) and the CLI all read them from here."""

from __future__ import annotations

JOB = "fix7_rehearsal"  # the one Dagster job a rehearsal runs as (also the JUnit suite and the evidence's job)
ASSET_GROUP = JOB  # the asset group every rehearsal asset belongs to
PARTITIONS = "fix7_rehearsals"  # the dynamic partitions: one per rehearsal

# The stages of a rehearsal as the evidence packet records them, in order.
STAGES = ("intake", "isolation", "sanitization", "schema_shape", "snapshot_anchor", "apply", "rollback",
          "restore_diff")
# Stages that judge whether the clone may be rehearsed on at all: one that fails *blocks* the run (no safe clone).
BLOCKING_STAGES = ("intake", "isolation", "sanitization", "schema_shape")
# Stages that rehearse the change on the clone: one that fails *fails* the rehearsal.
CHANGE_STAGES = ("snapshot_anchor", "apply", "rollback", "restore_diff")

# The four clone gates (asset checks on the restored clone, evaluated in its step), in order, and each one's stage.
GATES = ("isolation_proven", "sanitized", "production_shaped", "data_rules")
STAGE_OF_GATE = {"isolation_proven": "isolation", "sanitized": "sanitization", "production_shaped": "schema_shape",
                 "data_rules": "schema_shape"}

# The job's assets in order (each one step; rehearsal_clone's also evaluates the clone gates).
INTAKE_ASSET, CLONE_ASSET, ANCHOR_ASSET = "clone_intake", "rehearsal_clone", "snapshot_anchor"
APPLY_ASSET, ROLLBACK_ASSET, DIFF_ASSET, PACKET_ASSET = "apply", "rollback", "restore_diff", "evidence_packet"
ASSETS = (INTAKE_ASSET, CLONE_ASSET, ANCHOR_ASSET, APPLY_ASSET, ROLLBACK_ASSET, DIFF_ASSET, PACKET_ASSET)
# Every asset check of the job: (asset, check).
CHECKS = frozenset({(INTAKE_ASSET, "intake_safe"), *((CLONE_ASSET, g) for g in GATES),
                    (ANCHOR_ASSET, "anchor_taken"), (APPLY_ASSET, "change_applied"),
                    (APPLY_ASSET, "impact_within_thresholds"), (ROLLBACK_ASSET, "rollback_applied"),
                    (ROLLBACK_ASSET, "impact_within_thresholds"), (DIFF_ASSET, "restore_diff_empty")})
