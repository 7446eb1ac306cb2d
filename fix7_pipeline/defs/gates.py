"""The clone gates: restored and isolated, sanitized, production-shaped. Each blocks what follows."""

from __future__ import annotations

import dagster as dg

from fix7_pipeline.core import rehearsal
from fix7_pipeline.core.run_record import RunRecord
from fix7_pipeline.defs.resources import RehearsalServerResource
from fix7_pipeline.defs.stages import GROUP, OWNERS, REHEARSALS, gate, stage_events, witnessed_if_interrupted


@dg.asset(
    group_name=GROUP, owners=OWNERS, partitions_def=REHEARSALS, kinds={"postgres"},
    description="The dump restored into a throwaway database by a role that owns only that database, "
                "with no superuser or server-file privileges; then proven isolated: no foreign servers, "
                "user mappings, subscriptions, dblink, or webhook/flow/setting URL pointing at a live host.",
    check_specs=[gate("rehearsal_clone", "isolation_proven",
                      "Nothing in the restored clone points at a live host.")],
)
def rehearsal_clone(context, clone_intake: RunRecord, rehearsal_server: RehearsalServerResource):
    with witnessed_if_interrupted(context):
        record, outcome = rehearsal.restore_and_isolate(clone_intake, rehearsal_server.source())
    extra = {"restored_database": record.throwaway.database if record.throwaway else ""}
    yield from stage_events("rehearsal_clone", "isolation_proven", outcome, record, extra)


@dg.asset(
    group_name=GROUP, owners=OWNERS, partitions_def=REHEARSALS, kinds={"postgres", "great_expectations"},
    description="Secret scan (Kingfisher's rule catalog plus fix7's own rules) of every place the clone holds "
                "text: every text-like value of every table, large objects, and the catalog (names, comments, "
                "function bodies, view definitions, defaults, settings, options). The Great Expectations "
                "sanitization suite then gates the scan's findings per rule family and the contract's "
                "must-be-NULL columns and must-be-empty tables. Findings name rule, place, row key and a salted "
                "fingerprint, never a value; every finding is in sanitization-findings.jsonl.",
    check_specs=[gate("sanitization_check", "no_secrets", "The clone carries no secrets."),
                 gate("sanitization_check", "sanitization_suite",
                      "Great Expectations sanitization suite over the scan's findings: no finding of any rule "
                      "family, must-be-NULL columns are NULL, sessions are empty.")],
)
def sanitization_check(context, rehearsal_clone: RunRecord, rehearsal_server: RehearsalServerResource):
    with witnessed_if_interrupted(context):
        record, outcome = rehearsal.sanitization(rehearsal_clone, rehearsal_server.source())
    yield from stage_events("sanitization_check", "no_secrets", outcome, record, suite_check="sanitization_suite")


@dg.asset(
    group_name=GROUP, owners=OWNERS, partitions_def=REHEARSALS, kinds={"postgres", "great_expectations"},
    description="The clone's tables, columns, types, keys and constraints against production's shape (the "
                "contract), and the birth surface's data rules as a Great Expectations suite run in PostgreSQL.",
    check_specs=[gate("schema_shape_validation", "production_shaped",
                      "Shape and data rules match production's contract."),
                 gate("schema_shape_validation", "data_rules_suite",
                      "Great Expectations data-rules suite of the birth surface, run inside PostgreSQL.")],
)
def schema_shape_validation(context, sanitization_check: RunRecord, rehearsal_server: RehearsalServerResource):
    with witnessed_if_interrupted(context):
        record, outcome = rehearsal.schema_shape(sanitization_check, rehearsal_server.source())
    yield from stage_events("schema_shape_validation", "production_shaped", outcome, record,
                            suite_check="data_rules_suite")
