"""The key of a verified clone template: everything that decided the clone's gates (issue 25). A rehearsal reuses a
template only when every part is the same: the dump, the contract, the secret rule set, fix7's own code, the
server and the host policy."""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path

import psycopg

from ..sanitization import rules

@functools.lru_cache(maxsize=1)
def fix7_version() -> str:
    """The package version and the sha256 of fix7's own code: an edited gate is another fix7."""
    try:
        version = metadata.version("fix7_pipeline")
    except metadata.PackageNotFoundError:
        version = "unknown"
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{version}+{h.hexdigest()[:16]}"


@functools.lru_cache(maxsize=1)
def rule_set_version() -> str:
    """The secret scan's rule set: fix7's rule files and the Kingfisher catalog's version (`fix7 rules`)."""

    h = hashlib.sha256()
    for name in (*rules.RULE_FILES, rules.HEADER_RULE_FILE):
        h.update(name.encode() + b"\0" + rules.rule_path(name).read_bytes() + b"\0")
    try:
        kf = metadata.version("kingfisher-secret-scanner")
    except metadata.PackageNotFoundError:
        kf = "unknown"
    return f"kingfisher {kf}, fix7 rules {h.hexdigest()[:16]}"


def contract_sha256(contract) -> str:
    return hashlib.sha256(json.dumps(contract.as_dict(), sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


def server_identity(server) -> dict:
    """The server a template lives on: its system identifier when the admin may read it, its version, address."""
    ident = None
    with server.connect(purpose="clone template: server identity") as c:
        try:
            ident = str(c.execute("select system_identifier from pg_catalog.pg_control_system()").fetchone()[0])
        except psycopg.Error:
            pass
        version = c.info.server_version
    return {"kind": server.kind, "address": f"{server.host}:{server.port}", "version_num": version,
            "system_identifier": ident}


def key_parts(record, server, contract) -> dict:
    policy = record.request.policy()
    return {"dump_sha256": record.clone.get("sha256") or getattr(record.dump, "sha256", None),
            "contract_sha256": contract_sha256(contract),
            "rule_set": rule_set_version(),
            "fix7_version": fix7_version(),
            "server": server_identity(server),
            "host_policy_sha256": hashlib.sha256(json.dumps(
                [sorted(policy.production_patterns), sorted(policy.allow_patterns)]).encode()).hexdigest()}


def template_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
