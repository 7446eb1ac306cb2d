"""detect-secrets' plugins in the one registry: loaded from the pinned package, each pattern a rule naming its
plugin, a widened pattern confirmed by the plugin's own. Values are random per run and never printed."""

from __future__ import annotations

import re

import pytest

from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.sanitization import field_detectors, rules, textscan
from fix7_pipeline_tests.e2e_support import rnd


def test_plugins_are_loaded_from_the_package_and_listed():
    loaded, version = field_detectors.detect_secrets_rules()
    assert version == field_detectors.PINNED
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    with_patterns = {c.__name__ for c in get_mapping_from_secret_type_to_class().values()
                     if isinstance(c.__dict__.get("denylist"), (list, tuple))}
    assert {r.plugin for r in loaded} == with_patterns - set(field_detectors.LEFT_OUT)
    registry = {r.name: r for r in rules.registry()}
    for r in loaded:
        assert registry[r.id].source == "detect-secrets" and registry[r.id].family == "detect-secrets"


def test_lookaround_is_removed_for_the_engine_and_kept_for_confirmation():
    assert field_detectors._strip_lookaround(r"(?:(?<=\W)|(?<=^))key(?!\w)") == "(?:|)key"
    assert field_detectors._non_capturing(r"(a|b)(?P<x>c)[(]\(") == r"(?:a|b)(?:c)[(]\("
    widened = [r for r in field_detectors.detect_secrets_rules()[0] if r.confirm is not None]
    assert widened and all(not re.search(r"\(\?<?[=!]", r.pattern) for r in widened)


def test_a_widened_match_the_plugin_would_not_make_is_dropped():
    """GitLab's plugin wants no word character after the token: a longer run is not its token."""
    rule = "detect-secrets.GitLabTokenDetector.0"
    ok = f"token glpat-{rnd(20)} rotated".encode()
    too_long = f"token glpat-{rnd(60)}".encode()
    # computed apart from the asserts, so that a failure prints rule names, never the values
    confirmed = (field_detectors.confirm(rule, ok, 6, 6 + 26), field_detectors.confirm(rule, too_long, 6, 6 + 56))
    assert confirmed == (True, False)
    reported = [rule in {r for h in textscan.scan_value(v, "s") for r in h.rules} for v in (ok, too_long)]
    assert reported == [True, False]


def test_detectors_kingfisher_lacks_are_found_and_one_finding_names_every_rule():
    """IBM Cloud IAM and SoftLayer keys (detect-secrets ships them); an AWS key id that Kingfisher, detect-secrets
    and fix7 all match is one finding naming the three."""
    ibm = f"ibm_cloud_iam_api_key = {rnd(44, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-')}"
    hits = textscan.scan_value(ibm.encode(), "s")
    assert any("detect-secrets.IbmCloudIamDetector.0" in h.rules for h in hits)
    aws = f"the key AKIA{rnd(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')} was rotated"
    hits = textscan.scan_value(aws.encode(), "s")
    assert len(hits) == 1 and {"detect-secrets.AWSKeyDetector.0", "fix7.aws-access-key-id"} <= set(hits[0].rules)
    assert not hits[0].rule.startswith("fix7.")  # a provider's pattern reports it


def test_without_the_pinned_package_the_gate_fails_closed(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_detect_secrets(name, *a, **kw):
        if name.startswith("detect_secrets"):
            raise ImportError("No module named 'detect_secrets'")
        return real_import(name, *a, **kw)

    field_detectors.detect_secrets_rules.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_detect_secrets)
    try:
        with pytest.raises(Fix7Error, match="detect-secrets==1.5.0"):
            field_detectors.detect_secrets_rules()
    finally:
        monkeypatch.undo()
        field_detectors.detect_secrets_rules.cache_clear()
    assert field_detectors.detect_secrets_rules()[0]
