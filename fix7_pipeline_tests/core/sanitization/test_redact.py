"""The registry of names that matched a secret rule: keyed digests only, and every printed form scrubbed."""

from __future__ import annotations

import json

from fix7_pipeline.core.shared.model import Finding, StageOutcome
from fix7_pipeline.core.sanitization.redact import RedactedNames

TOKEN = "ghp_" + "Zx9" * 12


def test_a_registered_name_is_printed_as_its_label_everywhere():
    names = RedactedNames()
    label = names.add(TOKEN)
    assert label.startswith("[redacted name ") and TOKEN not in label
    assert names.name(TOKEN) == label and names.name("birth_registry") == "birth_registry"
    assert names.scrub(f"ops.{TOKEN}.c: expected text, found integer") == f"ops.{label}.c: expected text, found integer"
    assert names.scrub_obj({TOKEN: [f"table {TOKEN}", 3]}) == {label: [f"table {label}", 3]}


def test_the_state_holds_no_name_and_round_trips():
    names = RedactedNames()
    names.add(TOKEN)
    state = {"redacted_names": names.as_state()}
    text = json.dumps(state)
    assert not [TOKEN[i:i + 8] for i in range(len(TOKEN) - 7) if TOKEN[i:i + 8] in text]
    again = RedactedNames.from_state(json.loads(text))
    assert TOKEN in again and again.label(TOKEN) == names.label(TOKEN)
    assert not RedactedNames.from_state({}) and RedactedNames.from_state({}).scrub(TOKEN) == TOKEN


def test_a_stage_outcome_is_scrubbed_whole():
    names = RedactedNames()
    names.add(TOKEN)
    outcome = StageOutcome.from_findings(
        [Finding("shape.extra_table", f"{TOKEN}: extra table", severity="note", table=TOKEN, column=None,
                 extra={"object": f"table public.{TOKEN}"})],
        details={"tables": [TOKEN, "birth_registry"]}, ok_reason=f"checked {TOKEN}")
    out = names.scrub_outcome(outcome)
    assert TOKEN not in json.dumps(out.as_dict())
    assert out.findings[0].table == names.label(TOKEN) and out.details["tables"][1] == "birth_registry"
