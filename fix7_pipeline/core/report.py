"""The evidence packet: rehearsal-report.json, clone-provenance.json and a readable report.md.

`rehearsal-report.json` is the packet's single source of truth. Every stage loads it,
records its outcome and re-renders all three files atomically, so the packet on disk
is complete and consistent whatever stage stops the run, and a crash loses at most
the stage that was running.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path

from .model import BLOCKED, FAILED, PASSED, SKIPPED, STAGES, StageOutcome

REPORT = "rehearsal-report.json"
PROVENANCE = "clone-provenance.json"
READABLE = "rehearsal-report.md"

REHEARSAL_PASSED = "REHEARSAL_PASSED"
REHEARSAL_FAILED = "REHEARSAL_FAILED"
NO_SAFE_CLONE = "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
SAFE_CLONE = "SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
NOT_PROVEN = "N/A_NO_CLONE_TO_PROVE"

CLONE_GATES = ("intake", "isolation", "sanitization", "schema_shape")
CHANGE_STAGES = ("snapshot_anchor", "apply", "rollback", "restore_diff")

SEED_MUST_CONTAIN = [
    "birth_registry table shape matching production (columns, types, PK)",
    "registry-row expectations (object id, status fields)",
    "approval fields (e.g. os_proposal_approvals) as modeled in production",
    "Directus-related expected fields IF the birth surface writes Directus rows",
    "system_issues-related expected fields IF modeled",
    "required IDs / hashes / timestamps used by the birth surface",
    "rollback fields / snapshot anchor needed to prove restore",
]
SEED_MUST_NOT_CONTAIN = [
    "production secrets / credentials / connection strings to live hosts",
    "any pointer that resolves to a live production host",
]
LIVE_PRODUCTION_ROW = {
    "candidate_clone": "live production PG / Directus / VPS",
    "source": "production",
    "production_shaped": True,
    "isolated": False,
    "contains_secrets": True,
    "allowed": False,
    "present": "n/a",
    "note": "FORBIDDEN. Not contacted: every connection of this run went through the host guard to the "
            "rehearsal server only (see rehearsal-report.json `connections`).",
}


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_evidence_dir(root: Path, sha256: str | None, run_id: str) -> Path:
    """<utc-timestamp>-<sha8>-<run8>: the run id keeps runs started in the same second apart."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return root / f"{stamp}-{(sha256 or 'noclone')[:8]}-{run_id[:8]}"


class EvidencePacket:
    """Load-update-render of the packet in one evidence directory."""

    def __init__(self, directory: Path, data: dict):
        self.dir = Path(directory)
        self.data = data
        self.sealed: dict | None = None  # the audit-chain entry finalize() appended

    @classmethod
    def start(cls, directory: Path, *, run_id: str, request: dict) -> EvidencePacket:
        data = {
            "doc": "fix7-rehearsal-report",
            "schema_version": 1,
            "verdict": None,
            "clone_verdict": None,
            "run_id": run_id,
            "job": "fix7_rehearsal",
            "started_at": utc_now(),
            "finished_at": None,
            "request": request,
            "clone": {},
            "attestation": request.get("attestation"),
            "stages": {s: {"status": SKIPPED, "reason": "not reached", "findings": []} for s in STAGES},
            "isolation_proven": NOT_PROVEN,
            "anchor_id": None,
            "restore_diff": {"tables": [], "schema": [], "sequences": [], "empty": None},
            "restoring_role": None,
            "connections": [],
            "throwaways": {"created": [], "dropped": [], "swept": []},
            "table_A_candidates": [],
            "live_production_contact": False,
            "production_mutation": False,
            "exact_operator_input_needed": None,
            "previous_packet_sha256": None,
        }
        packet = cls(directory, data)
        packet.save()
        return packet

    @classmethod
    def load(cls, directory: Path) -> EvidencePacket:
        return cls(directory, json.loads((Path(directory) / REPORT).read_text(encoding="utf-8")))

    # -- updates -------------------------------------------------------------------
    def record_stage(self, stage: str, outcome: StageOutcome, duration_s: float | None = None) -> None:
        if stage not in STAGES:
            raise KeyError(stage)
        entry = outcome.as_dict()
        if duration_s is not None:
            entry["duration_s"] = round(duration_s, 3)
        self.data["stages"][stage] = entry

    def add_connections(self, entries: list[dict]) -> None:
        self.data["connections"].extend(entries)

    def set(self, **kw) -> None:
        self.data.update(kw)

    def stage_status(self, stage: str) -> str:
        return self.data["stages"][stage]["status"]

    # -- verdicts ------------------------------------------------------------------
    def clone_verdict(self) -> str | None:
        statuses = [self.stage_status(s) for s in CLONE_GATES]
        if any(s in (FAILED, BLOCKED) for s in statuses):
            return NO_SAFE_CLONE
        if all(s == PASSED for s in statuses):
            return SAFE_CLONE
        return None

    def verdict(self) -> str | None:
        cv = self.clone_verdict()
        if cv == NO_SAFE_CLONE:
            return NO_SAFE_CLONE
        if cv is None:
            return None
        statuses = [self.stage_status(s) for s in CHANGE_STAGES]
        if any(s in (FAILED, BLOCKED) for s in statuses):
            return REHEARSAL_FAILED
        if all(s == PASSED for s in statuses):
            return REHEARSAL_PASSED
        return None

    def finalize(self, *, incomplete_reason: str | None = None) -> str:
        """Fix the verdict; a run that stopped without a gate deciding is a failure, never a pass."""
        verdict = self.verdict()
        if verdict is None:
            reason = incomplete_reason or "the run stopped before every stage finished"
            for s in STAGES:
                if self.stage_status(s) == SKIPPED:
                    self.data["stages"][s]["reason"] = f"not reached: {reason}"
            verdict = NO_SAFE_CLONE if self.clone_verdict() is None else REHEARSAL_FAILED
        for s in STAGES:
            st = self.data["stages"][s]
            if st["status"] == SKIPPED and st.get("reason") == "not reached":
                st["reason"] = "not reached: an earlier stage stopped the run"
        self.data["verdict"] = verdict
        self.data["clone_verdict"] = self.clone_verdict() or (NO_SAFE_CLONE if verdict == NO_SAFE_CLONE else None)
        if verdict == NO_SAFE_CLONE:
            self.data["exact_operator_input_needed"] = self.operator_input_needed()
        else:
            self.data["exact_operator_input_needed"] = None
        self.data["finished_at"] = utc_now()
        from .audit import seal

        self.sealed = seal(self)  # saves the packet linked to the previous one and chains it
        return verdict

    def problems(self) -> list[str]:
        out = []
        for s in CLONE_GATES:
            st = self.data["stages"][s]
            if st["status"] in (FAILED, BLOCKED):
                errs = [f for f in st.get("findings", []) if f.get("severity", "error") == "error"]
                if not errs:
                    out.append(f"{s}: {st.get('reason')}")
                for f in errs[:25]:
                    out.append(f"{s}: {f['message']}")
                if len(errs) > 25:
                    out.append(f"{s}: … and {len(errs) - 25} more findings in rehearsal-report.json")
        return out

    def operator_input_needed(self) -> dict:
        problems = self.problems()
        leaks = [p for p in problems if p.startswith(("sanitization:", "isolation:"))]
        shape = [p for p in problems if p.startswith("schema_shape:")]
        intake = [p for p in problems if p.startswith("intake:")]
        return {
            "blocker": "FIX7-P0-OPERATOR-INPUT-1 / FIX7-P0-DRYRUN-PROD-ROLLBACK-1 (production leg)",
            "item": "an operator-provided production-shaped, secret-free, isolated DB dump clone of the birth "
                    "surface, attested as a sanitized non-production copy",
            "problems": problems,
            "must_contain": SEED_MUST_CONTAIN + [f"fix: {p}" for p in shape + intake],
            "must_not_contain": SEED_MUST_NOT_CONTAIN + [f"remove: {p}" for p in leaks],
            "delivery": "place a pg_dump (plain, custom, directory or tar) at an operator-named path and run "
                        "`fix7 rehearse --clone PATH --apply FILE --rollback FILE --attested-by NAME`, which "
                        "records the attestation that it is a sanitized, non-production copy; the rehearsal "
                        "then proves snapshot -> apply -> rollback -> restore on it with no production contact",
            "actor": "operator (rehearsal-only; production still needs its own change approval and rollback grant)",
        }

    # -- rendering -----------------------------------------------------------------
    def provenance(self) -> dict:
        d = self.data
        clone = d.get("clone") or {}
        st = d["stages"]
        present = bool(clone.get("present"))

        def gate(stage: str):
            s = st[stage]["status"]
            return True if s == PASSED else False if s in (FAILED, BLOCKED) else "NOT_CHECKED"

        contains = {PASSED: False, FAILED: True, BLOCKED: True}.get(st["sanitization"]["status"], "NOT_CHECKED")
        cv = d.get("clone_verdict") or self.clone_verdict() or NO_SAFE_CLONE
        note = "; ".join(self.problems()[:5]) if cv == NO_SAFE_CLONE else (
            f"Restored into a throwaway database and proven isolated, sanitized and production-shaped; "
            f"rehearsal verdict {d.get('verdict')}.")
        operator_row = {
            "candidate_clone": "operator-provided production-shaped DB dump clone",
            "source": f"operator ({(d.get('attestation') or {}).get('attested_by') or 'no attestation'}) at "
                      f"{d['request'].get('clone_path')}",
            "production_shaped": gate("schema_shape"),
            "isolated": gate("isolation"),
            "contains_secrets": contains,
            "allowed": cv == SAFE_CLONE,
            "present": present,
            "note": note or "NOT PROVIDED or not usable in this run.",
        }
        return {
            "doc": "fix7-p0-shaped-clone-provenance",
            "date": (d.get("started_at") or utc_now())[:10],
            "macro": "FIX7_P0_PRODUCTION_SHAPED_CLONE_REHEARSAL_AND_CI_GATE",
            "delegated_decision_consumed": "AUTHORIZE_PRODUCTION_SHAPED_CLONE_REHEARSAL_ONLY",
            "method": self._method(),
            "live_production_contact": False,
            "table_A_clone_provenance": [operator_row, *d.get("table_A_candidates", []), LIVE_PRODUCTION_ROW],
            "verdict": cv,
            "isolation_proven": d.get("isolation_proven"),
            "secrets_exposed_or_used": False,
            "exact_operator_input_needed": d.get("exact_operator_input_needed"),
            "production_mutation": False,
            "real_run": True,
            "qt001": False,
            "cutover": False,
            "ci_triggered": bool(os.environ.get("CI")),
            "clone": {k: clone.get(k) for k in ("path", "sha256", "bytes", "format", "pg_dump_version",
                                                "server_version")},
            "attestation": d.get("attestation"),
            "rehearsal_verdict": d.get("verdict"),
            "run_id": d.get("run_id"),
        }

    def _method(self) -> str:
        d = self.data
        kind = (d["request"].get("server") or {}).get("kind", "embedded")
        steps = "the operator-named dump was hashed and screened"
        if d["stages"]["isolation"]["status"] != SKIPPED:
            steps += (f", restored by a least-privileged role into a throwaway database on the {kind} rehearsal "
                      "server, and gated for isolation, sanitization and schema shape")
        if d["stages"]["snapshot_anchor"]["status"] != SKIPPED:
            steps += " before snapshot anchor -> apply -> rollback -> restore diff"
        else:
            steps += "; the run stopped before anything was rehearsed"
        return (f"fix7_pipeline Dagster job fix7_rehearsal (run {d.get('run_id')}): {steps}. Every connection went "
                "through one host guard to the rehearsal server only; no live production system was contacted.")

    def markdown(self) -> str:
        d = self.data
        lines = [f"# FIX7 rehearsal — {d.get('verdict') or 'IN PROGRESS'}", "",
                 f"- run: `{d.get('run_id')}`  started {d.get('started_at')}  finished {d.get('finished_at')}",
                 f"- clone: `{(d.get('clone') or {}).get('path')}` sha256 `{(d.get('clone') or {}).get('sha256')}` "
                 f"format {(d.get('clone') or {}).get('format')} pg_dump {(d.get('clone') or {}).get('pg_dump_version')}",
                 f"- attestation: {json.dumps(d.get('attestation'))}",
                 f"- anchor: `{d.get('anchor_id')}`; isolation proven: {d.get('isolation_proven')}",
                 "", "| stage | status | duration | reason |", "|---|---|---|---|"]
        for s in STAGES:
            st = d["stages"][s]
            reason = (st.get("reason") or "").replace("|", "\\|")
            lines.append(f"| {s} | {st['status']} | {st.get('duration_s', '')} | {reason} |")
        diff = d.get("restore_diff") or {}
        if diff.get("tables") or diff.get("schema") or diff.get("sequences"):
            lines += ["", "## Restore diff", "", "| table | added | removed | changed |", "|---|---|---|---|"]
            lines += [f"| {t['table']} | {t['added']} | {t['removed']} | {t['changed']} |" for t in diff.get("tables", [])]
            lines += [f"- schema: {o}" for o in diff.get("schema", [])]
            lines += [f"- sequence: {o}" for o in diff.get("sequences", [])]
        for s in STAGES:
            fs = d["stages"][s].get("findings") or []
            if fs:
                lines += ["", f"## Findings: {s}", ""]
                lines += [f"- [{f.get('severity', 'error')}] {f.get('rule')}: {f.get('message')}" for f in fs[:200]]
        need = d.get("exact_operator_input_needed")
        if need:
            lines += ["", "## What the operator must supply", "", need["item"], ""]
            lines += [f"- {p}" for p in need.get("problems", [])]
        lines += ["", "## Connections opened", "", "| host | port | database | role | purpose |", "|---|---|---|---|---|"]
        lines += [f"| {c['host']} | {c['port']} | {c['database']} | {c['role']} | {c['purpose']} |"
                  for c in d.get("connections", [])]
        return "\n".join(lines) + "\n"

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / REPORT, json.dumps(self.data, indent=2, sort_keys=False, default=str) + "\n")
        write_atomic(self.dir / PROVENANCE, json.dumps(self.provenance(), indent=2, default=str) + "\n")
        write_atomic(self.dir / READABLE, self.markdown())
