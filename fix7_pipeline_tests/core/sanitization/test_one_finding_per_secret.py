"""Issue 21 item 7: one planted secret is one finding, naming every rule that matched it; notes are not findings.

Several detectors match one token (a provider's own pattern and fix7's `token = ...` assignment; three rules
match an AWS key id), and the sanitization suite's gate of a family failed again for each finding: one planted
token read "4 findings (+3 more)". A passing isolation gate counted its notes about isolated hosts.
"""

from __future__ import annotations

import string

from fix7_pipeline.core.shape import data_rules
from fix7_pipeline.core.sanitization import textscan
from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.shared.model import PASSED, Finding, StageOutcome
from fix7_pipeline.core.run.clone_stages import suite_failures_beyond
from fix7_pipeline_tests.core.sanitization.test_secrets import SALT, scan
from fix7_pipeline_tests.e2e_support import planted, rnd

AWS_ID = string.ascii_uppercase + "234567"


def _github_assignment():
    return planted("GitHub PAT as an assignment", "deploy_token = ghp_", (rnd(36), True))


def _aws_key_id():
    return planted("AWS key id", "deploy key ASIA", (rnd(16, AWS_ID), True))


def test_one_value_one_secret_one_hit_naming_every_rule():
    for make, rules in ((_github_assignment, {"betterleaks.github-pat", "fix7.secret-assignment"}),
                        (_aws_key_id, {"fix7.aws-access-key-id"})):
        p = make()
        hits = textscan.scan_value(p.value.encode(), SALT)
        assert len(hits) == 1, [(h.rule, h.start, h.end) for h in hits]
        assert rules <= set(hits[0].rules) and hits[0].rule == hits[0].rules[0], hits[0]
        assert not any(part in repr(hits) for part in p.windows())


def test_a_provider_rule_reports_before_a_word_keyed_one():
    hit, = textscan.scan_value(_github_assignment().value.encode(), SALT)
    assert hit.rule == "betterleaks.github-pat" and "fix7.secret-assignment" in hit.rules
    # the rule that read the key before the one that judged the value's look alone
    ranked = [r for r in hit.rules if r in ("fix7.secret-assignment", "fix7.generated-value")]
    assert ranked[0] == "fix7.secret-assignment", hit.rules


def test_two_secrets_in_one_value_stay_two_findings():
    value = f"ghp_{rnd(36)} and later sk_live_{rnd(24)}".encode()
    hits = textscan.scan_value(value, SALT)
    assert sorted(h.rule for h in hits) == ["betterleaks.github-pat", "betterleaks.stripe-access-token"], hits


def test_one_planted_token_in_a_table_is_one_finding(server, throwaway):
    p = _github_assignment()
    from fix7_pipeline_tests.pg import as_owner

    with as_owner(server, throwaway) as c:
        c.execute("create table deploy_notes (id int primary key, body text)")
        c.execute("insert into deploy_notes values (1, %s), (2, 'nothing here')", (f"rotated: {p.value}",))
    found = [f for f in scan(server, throwaway) if f.table == "deploy_notes"]
    assert len(found) == 1, [f.as_dict() for f in found]
    f = found[0]
    assert f.row_key == "1" and f.column == "body"
    assert {"betterleaks.github-pat", "fix7.secret-assignment"} <= set(f.extra["rules"])
    assert not any(part in repr(f.as_dict()) for part in p.windows())


def _finding(rule: str, family: str, row: str) -> Finding:
    return Finding(rule, f"t.c: {rule} in row {row}", table="t", column="c", row_key=row, fingerprint="ab" + row,
                   extra={"family": family, "source": "kingfisher", "place": "t.c"})


def test_the_suite_does_not_repeat_the_scans_findings():
    found = [_finding("betterleaks.github-pat", "kingfisher", "1")]
    suite = data_rules.run_sanitization(found, load_contract(None), set())
    assert suite["failed"] >= 1  # the kingfisher gate failed, for this one finding
    assert suite_failures_beyond(found, suite) == []
    outcome = StageOutcome.from_findings(found + suite_failures_beyond(found, suite))
    assert outcome.finding_count == 1 and "more)" not in outcome.reason


def test_a_suite_failure_the_findings_do_not_explain_stays_a_finding():
    found = [_finding("betterleaks.github-pat", "kingfisher", "1")]
    suite = data_rules.run_sanitization(found, load_contract(None), set())
    # the suite counted two rows where the scan has one finding: not the same thing, so it stays a finding
    for e in suite["expectations"]:
        if e["rule"] == "secret:kingfisher":
            e["unexpected_count"] = 2
    assert [f.rule for f in suite_failures_beyond(found, suite)] == ["sanitization.secret:kingfisher"]
    ungated = [_finding("somebody.new-rule", "no-such-family", "2")]
    suite = data_rules.run_sanitization(ungated, load_contract(None), set())
    assert "sanitization.every_finding_gated" in {f.rule for f in suite_failures_beyond(ungated, suite)}


def test_notes_are_not_findings():
    notes = [Finding("outward_pointer", f"x.url points at h{i}.example.invalid, an isolated host.", severity="note")
             for i in range(4)]
    outcome = StageOutcome.from_findings(notes, ok_reason="no outward pointer to a live host")
    assert outcome.status == PASSED and outcome.finding_count == 0 and len(outcome.notes) == 4
    entry = outcome.as_dict()
    assert entry["findings"] == [] and [n["rule"] for n in entry["notes"]] == ["outward_pointer"] * 4
    err = Finding("production_host", "x.url names production host db.prod")
    assert StageOutcome.from_findings([*notes, err]).finding_count == 1
