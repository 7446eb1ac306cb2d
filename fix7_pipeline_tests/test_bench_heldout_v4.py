"""Held-out corpus v4: trivy's expected findings read back to the spans their masks cover, checkov's sanity
values by file; each source fixed by a digest. No real test data here: made-up repositories."""

from __future__ import annotations

import json

from benchmarks import heldout_v4 as v4
from fix7_pipeline_tests.test_bench_heldout_v2 import SECRET, _repo

_GO = '''package secret_test

func TestSecretScanner(t *testing.T) {
	masked40 := strings.Repeat("*", 40)
	wantFindingA := types.SecretFinding{
		RuleID:    "acme-token",
		StartLine: 2,
		EndLine:   2,
		Match:     "ACME_TOKEN=" + strings.Repeat("*", %(n)d),
	}
	wantFindingB := types.SecretFinding{
		RuleID:    "rule1",
		StartLine: 1,
		EndLine:   1,
		Match:     "generic secret=\\"*********\\"",
	}
	wantFindingC := types.SecretFinding{
		RuleID:    "private-key",
		StartLine: 2,
		EndLine:   3,
		Match:     "****",
	}
	wantFindingD := types.SecretFinding{
		RuleID:    "stripe-publishable-token",
		StartLine: 3,
		EndLine:   3,
		Match:     `pk = "` + masked40 + `"`,
	}
	openAIFinding := func(ruleID, title, severity string, length int) types.SecretFinding {}
	wantFindingE := openAIFinding("openai-project-api-key", "OpenAI", "CRITICAL", %(o)d)
	tests := []struct {
	}{
		{
			name:          "find acme",
			configPath:    filepath.Join("testdata", "skip-test.yaml"),
			inputFilePath: filepath.Join("testdata", "acme.txt"),
			want: types.Secret{
				Findings: []types.SecretFinding{wantFindingA, wantFindingD},
			},
		},
		{
			name:          "custom rule",
			configPath:    filepath.Join("testdata", "config.yaml"),
			inputFilePath: filepath.Join("testdata", "custom.txt"),
			want: types.Secret{Findings: []types.SecretFinding{wantFindingB}},
		},
		{
			name:          "key",
			inputFilePath: "testdata/key.txt",
			want: types.Secret{Findings: []types.SecretFinding{wantFindingC}},
		},
		{
			name:          "openai",
			inputFilePath: filepath.Join("testdata", "openai.txt"),
			want: types.Secret{Findings: []types.SecretFinding{wantFindingE}},
		},
		{
			name:          "invalid",
			inputFilePath: filepath.Join("testdata", "openai-invalid.txt"),
			want:          types.Secret{},
		},
	}
}
'''


def test_trivy_findings_are_the_spans_their_masks_cover(tmp_path):
    openai = "sk-proj-" + SECRET + "T3BlbkFJ" + SECRET
    publishable = "pk_live_" + SECRET + "0123456789abcdef"[:40 - len(SECRET) - 8]
    git, commit = _repo(tmp_path, {
        "pkg/fanal/secret/scanner_test.go": _GO % {"n": len(SECRET), "o": len(openai)},
        "pkg/fanal/secret/testdata/config.yaml": "rules:\n  - id: rule1\n    regex: secret\n",
        "pkg/fanal/secret/testdata/acme.txt": f"# config\nACME_TOKEN={SECRET} # rotated\npk = \"{publishable}\"\n",
        "pkg/fanal/secret/testdata/custom.txt": 'generic secret="abcdefghi"\n',
        "pkg/fanal/secret/testdata/key.txt": "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\nz9Q8Rk1x\n"
                                             "-----END RSA PRIVATE KEY-----\n",
        "pkg/fanal/secret/testdata/openai.txt": openai + "\n",
        "pkg/fanal/secret/testdata/openai-invalid.txt": "sk-nope-" + SECRET[::-1] + "\n",
    })
    got = [(e["part"], e["kind"], e["value"]) for e in v4.extract_trivy(git, commit)]
    assert got == [
        ("secret", "trivy:acme-token", SECRET),
        ("negative", "trivy-ok:stripe-publishable-token", publishable),
        ("secret", "trivy:private-key", "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\nz9Q8Rk1x\n"
                                        "-----END RSA PRIVATE KEY-----"),
        ("secret", "trivy:openai-project-api-key", openai),
        ("negative", "trivy-none:openai-invalid", "sk-nope-" + SECRET[::-1]),
    ]


def test_checkov_sanity_values_by_file_and_its_prose_left_out(tmp_path):
    git, commit = _repo(tmp_path, {
        "tests/secrets/sanity/secrets/true_positive.json": json.dumps({"acme_password": SECRET, "x": "short"}),
        "tests/secrets/sanity/non_secrets/true_negative.json": json.dumps(
            {"label": "Enter the code we sent you by text.", "ref": "REF-2024-000123", "word": "Passwords"}),
    })
    got = [(e["part"], e["value"], e["provider"]) for e in v4.extract_checkov(git, commit)]
    assert got == [("secret", SECRET, "acme"), ("negative", "REF-2024-000123", "service")]
