"""The evidence packet: rehearsal-report.json, clone-provenance.json and a readable report.md.

The stages append what they learn to the run's journal (core/evidence/journal.py); nothing rewrites the packet
while the run goes on. Whatever ends the run (the last stage, a stage that stops it, an interruption, the
CLI for a run that ended early) calls `render` once: it claims the packet exclusively, folds the journal
into the packet's data, fixes the verdict, writes the three files atomically and seals them into the audit
chain as its last step. A sealed packet is never rendered again; a crash leaves the journal, which
`EvidencePacket.load` reads as an unsealed packet (verdict None).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from ..change.impact import breaches, markdown as impact_markdown
from ..postgres.server_faults import is_server_fault
from ..shared.escape import md, md_code
from ..shared.model import BLOCKED, FAILED, INTERRUPTED, PASSED, SKIPPED, STAGES, StageOutcome
from ..shared.names import BLOCKING_STAGES, CHANGE_STAGES, JOB
from ..storage.store import evidence_path, is_remote
from .audit import seal, unwritten_entry
from .charts import write_charts
from .evidence_dir import EvidenceDirRefused
from . import journal
from .packet_files import (PROVENANCE, READABLE, RENDER_CLAIM, REPORT, EvidenceNotWritten, sha256_file, write_evidence,
                           writing)
from .seed import LIVE_PRODUCTION_ROW, SEED_MUST_CONTAIN, SEED_MUST_NOT_CONTAIN
from .verdicts import (NO_SAFE_CLONE, NOT_PROVEN, REHEARSAL_FAILED, REHEARSAL_INTERRUPTED, REHEARSAL_NOT_JUDGED,
                       REHEARSAL_PASSED, REHEARSAL_SERVER_FAULT, SAFE_CLONE, verdict_word)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class EvidencePacket:
    """The packet's data in one evidence directory: its verdict, rendering and sealing (see `render`)."""

    def __init__(self, directory: Path, data: dict):
        self.dir = evidence_path(directory)
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
            "job": JOB,
            "started_at": utc_now(),
            "finished_at": None,
            "request": request,
            "clone": {},
            "attestation": request.get("attestation"),
            "stages": {s: {"status": SKIPPED, "reason": "not reached", "findings": []} for s in STAGES},
            "isolation_proven": NOT_PROVEN,
            "anchor_id": None,
            "restore_diff": {"tables": [], "schema": [], "sequences": [], "empty": None},
            "impact": {},
            "restoring_role": None,
            "connections": [],
            # planned: named on disk before each CREATE, so even kill -9 leaves them named (the next sweep drops them)
            "throwaways": {"planned": [], "created": [], "dropped": [], "swept": []},
            "table_A_candidates": [],
            "live_production_contact": False,
            "production_mutation": False,
            "exact_operator_input_needed": None,
            "previous_packet_sha256": None,
        }
        packet = cls(directory, data)
        packet._claim()
        return packet

    def _claim(self) -> None:
        """Start the journal exclusively (O_EXCL): of two runs naming one directory, one writes."""
        held = REPORT if (self.dir / REPORT).exists() else journal.JOURNAL
        try:
            if held == REPORT:
                raise journal.JournalTaken(held)
            journal.create(self.dir, self.data)
        except journal.JournalTaken:
            raise EvidenceDirRefused(
                f"The evidence directory {self.dir} already holds an evidence packet ({held}), and a packet is "
                "never overwritten; name a new directory, or leave it unset (--evidence-dir, evidence_dir) for a "
                "fresh one.") from None

    @classmethod
    def load(cls, directory: Path) -> EvidencePacket:
        """The sealed packet; before (or without, after a crash) its render, the journal's view of it."""
        directory = evidence_path(directory)
        report = directory / REPORT
        if report.exists():
            return cls(directory, json.loads(report.read_text(encoding="utf-8")))
        packet = cls(directory, journal.fold(journal.read(directory)))
        entry = unwritten_entry(directory)
        if entry is not None:  # sealed, its files not written: what the chain keeps of it
            packet.data.update(verdict=entry.get("verdict"), judged=False,
                               evidence_fault=entry["evidence_not_written"], finished_at=entry.get("sealed_at"))
        return packet

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

    def write_file(self, name: str, text: str) -> dict:
        """A further packet file, written atomically; its sha256 goes into rehearsal-report.json (`files`), which
        the audit chain seals, so the file cannot be edited unnoticed."""
        path = self.dir / name
        write_evidence(path, text)
        entry = {"file": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
        self.data.setdefault("files", {})[name] = entry
        return entry

    def stage_status(self, stage: str) -> str:
        return self.data["stages"][stage]["status"]

    # -- verdicts ------------------------------------------------------------------
    def server_fault(self) -> dict | None:
        """The stage the rehearsal server stopped, and why ({"stage", "rule", "message"}); None if none did."""
        for s in STAGES:
            st = self.data["stages"][s]
            if st["status"] in (FAILED, BLOCKED):
                hit = next((f for f in st.get("findings") or [] if is_server_fault(f.get("rule"))), None)
                if hit:
                    return {"stage": s, "rule": hit["rule"], "message": hit.get("message")}
        return None

    def clone_verdict(self) -> str | None:
        fault = self.server_fault()
        statuses = [self.stage_status(s) for s in BLOCKING_STAGES if not (fault and s == fault["stage"])]
        if any(s in (FAILED, BLOCKED) for s in statuses):
            return NO_SAFE_CLONE
        if fault and fault["stage"] in BLOCKING_STAGES:
            return None  # a gate the server stopped decided nothing
        if all(s == PASSED for s in statuses):
            return SAFE_CLONE
        return None

    def interruption(self) -> dict | None:
        """Where the run was interrupted, if it was: {"stage", "signal", "at", ...}."""
        if self.data.get("interrupted"):
            return self.data["interrupted"]
        stage = next((s for s in STAGES if self.stage_status(s) == INTERRUPTED), None)
        return {"stage": stage, "signal": None} if stage else None

    def verdict(self) -> str | None:
        if self.interruption():
            return REHEARSAL_INTERRUPTED  # never a judgment, whatever ran before it
        if self.server_fault():
            return REHEARSAL_SERVER_FAULT  # the server failed, not the clone nor the change
        cv = self.clone_verdict()
        if cv == NO_SAFE_CLONE:
            return NO_SAFE_CLONE
        if cv is None:
            return None
        statuses = [self.stage_status(s) for s in CHANGE_STAGES]
        if any(s in (FAILED, BLOCKED) for s in statuses):
            return REHEARSAL_FAILED
        if all(s == PASSED for s in statuses):
            return REHEARSAL_FAILED if self.impact_breaches() else REHEARSAL_PASSED
        return None

    def impact_breaches(self) -> list[str]:
        """Every impact threshold breached by apply or rollback (core/change/impact.py): any one fails the rehearsal."""
        return [m for label in ("apply", "rollback") for m in breaches((self.data.get("impact") or {}).get(label))]

    def finalize(self, *, incomplete_reason: str | None = None, interrupted: dict | None = None,
                 fault: EvidenceNotWritten | None = None, fault_stage: str | None = None) -> str:
        """Fix the verdict; a run that stopped without a gate deciding is a failure, never a pass.

        `interrupted` ({"stage", "signal", ...}) seals REHEARSAL_INTERRUPTED: the stages not run say so,
        and the clone is judged only if every clone gate had already decided before the interruption.
        """
        if interrupted is not None:
            self.data["interrupted"] = {**interrupted, "at": utc_now()}
        if fault is not None:
            self.evidence_not_written(fault, fault_stage)
            self.sealed = seal(self)
            return self.data["verdict"]
        if self.interruption():
            return self._finalize_interrupted()
        if self.server_fault():
            return self._finalize_server_fault()
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
        self.sealed = seal(self)  # saves the packet linked to the previous one and chains it
        return verdict

    def _finalize_interrupted(self) -> str:
        info = self.interruption() or {}
        self.data["interrupted"] = info
        by = f" by {info['signal']}" if info.get("signal") else ""
        self._seal_not_judged(REHEARSAL_INTERRUPTED,
                              f"the rehearsal was interrupted{by} during {info.get('stage') or 'the run'}")
        return REHEARSAL_INTERRUPTED

    def _finalize_server_fault(self) -> str:
        fault = self.server_fault()
        self.data["server_fault"] = {**fault, "server": (self.data["request"].get("server") or {})}
        self.sealed = self._seal_not_judged(REHEARSAL_SERVER_FAULT,
                                            f"the rehearsal server failed during {fault['stage']}")
        return REHEARSAL_SERVER_FAULT

    def _seal_not_judged(self, verdict: str, why: str) -> dict:
        """Seal a run that judged nothing: the stages not run say why; the clone is SAFE only if every clone gate
        had passed before, else not judged (None); nothing is asked of the operator. Returns the chain entry."""
        for s in STAGES:
            st = self.data["stages"][s]
            if st["status"] == SKIPPED:
                st["reason"] = f"not run: {why}"
        self.data["verdict"] = verdict
        self.data["clone_verdict"] = SAFE_CLONE if self.clone_verdict() == SAFE_CLONE else None
        self.data["exact_operator_input_needed"] = None
        self.data["finished_at"] = utc_now()
        return seal(self)

    def evidence_not_written(self, fault: EvidenceNotWritten, stage: str | None = None) -> None:
        """The evidence could not be written: the run is sealed REHEARSAL_NOT_JUDGED, naming the cause and path."""
        if self.data.get("evidence_fault"):
            return
        self.data["evidence_fault"] = {**fault.as_dict(), "stage": stage}
        self.data["verdict"] = REHEARSAL_NOT_JUDGED
        self.data["judged"] = False
        self.data["clone_verdict"] = self.clone_verdict() if self.clone_verdict() == SAFE_CLONE else None
        self.data["exact_operator_input_needed"] = None
        self.data["finished_at"] = utc_now()

    def report_text(self) -> str:
        """rehearsal-report.json as written (and as hashed into the chain when it cannot be written)."""
        return json.dumps(self.data, indent=2, sort_keys=False, default=str) + "\n"

    def problems(self) -> list[str]:
        out = []
        for s in BLOCKING_STAGES:
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
        interrupted = self.interruption()
        cv = d.get("clone_verdict") or self.clone_verdict() or (REHEARSAL_INTERRUPTED if interrupted else NO_SAFE_CLONE)
        fault = self.server_fault() if not interrupted and not d.get("clone_verdict") else None
        if fault:
            cv = REHEARSAL_SERVER_FAULT
        if cv == REHEARSAL_INTERRUPTED:
            by = f" by {interrupted['signal']}" if interrupted.get("signal") else ""
            note = (f"NOT JUDGED: the rehearsal was interrupted{by} during {interrupted.get('stage') or 'the run'} "
                    "before the clone gates decided; nothing is known about this clone. Rehearse it again.")
        elif cv == REHEARSAL_SERVER_FAULT:
            note = (f"NOT JUDGED: the rehearsal server failed during {fault['stage']} before the clone gates decided "
                    f"({fault.get('message')}); nothing is known about this clone. Fix the server and rehearse again.")
        else:
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
            # core/run/clone_templates.py: the verified template this clone was copied from, or the one it left
            "clone_reuse": d.get("clone_reuse"),
            "clone_template": d.get("clone_template"),
        }

    def _method(self) -> str:
        d = self.data
        kind = (d["request"].get("server") or {}).get("kind", "embedded")
        steps = "the operator-named dump was hashed and screened"
        if (d.get("clone_reuse") or {}).get("reused"):
            steps += (f", copied from the verified clone template {d['clone_reuse']['template']} whose gates passed "
                      f"in the sealed packet {d['clone_reuse']['gating_packet']['packet_sha256'][:12]}, its anchor "
                      + ("fingerprint carried from that packet (the template's pg_database row as sealed; the restore "
                         "diff reads the rolled-back clone in full against it)"
                         if str(d["clone_reuse"].get("check", "")).startswith("by its seal")
                         else "fingerprint proven equal on the copy"))
        elif d["stages"]["isolation"]["status"] != SKIPPED:
            steps += (f", restored by a least-privileged role into a throwaway database on the {kind} rehearsal "
                      "server, and gated for isolation, sanitization and schema shape")
        if d["stages"]["snapshot_anchor"]["status"] != SKIPPED:
            steps += " before snapshot anchor -> apply -> rollback -> restore diff"
        else:
            steps += "; the run stopped before anything was rehearsed"
        interrupted = self.interruption()
        if interrupted:
            by = f" by {interrupted['signal']}" if interrupted.get("signal") else ""
            steps += f"; the run was interrupted{by} during {interrupted.get('stage') or 'the run'}"
        return (f"fix7_pipeline Dagster job {JOB} (run {d.get('run_id')}): {steps}. Every connection went "
                "through one host guard to the rehearsal server only; no live production system was contacted.")

    def markdown(self) -> str:
        """rehearsal-report.md. Every value is escaped (core/shared/escape.py): names from the dump or the
        operator cannot split a line, add a table cell or become markup."""
        d = self.data
        clone = d.get("clone") or {}
        lines = [f"# FIX7 rehearsal — {verdict_word(d.get('verdict') or 'IN PROGRESS')}", "",
                 f"- run: {md_code(d.get('run_id'))}  started {md(d.get('started_at'))}  "
                 f"finished {md(d.get('finished_at'))}",
                 f"- clone: {md_code(clone.get('path'))} sha256 {md_code(clone.get('sha256'))} "
                 f"format {md(clone.get('format'))} pg_dump {md(clone.get('pg_dump_version'))}",
                 f"- attestation: {md(json.dumps(d.get('attestation')))}",
                 f"- anchor: {md_code(d.get('anchor_id'))}; "
                 f"isolation proven: {verdict_word(d.get('isolation_proven'))}",
                 *([f"- interrupted{' by ' + md(i['signal']) if i.get('signal') else ''} during {md(i.get('stage'))} "
                    f"at {md(i.get('at'))}: not a judgment of the clone or the change"]
                   if (i := self.interruption()) else []),
                 "", "| stage | status | duration | reason |", "|---|---|---|---|"]
        for s in STAGES:
            st = d["stages"][s]
            lines.append(f"| {s} | {md(st['status'])} | {md(st.get('duration_s', ''))} | {md(st.get('reason'))} |")
        diff = d.get("restore_diff") or {}
        if diff.get("tables") or diff.get("schema") or diff.get("sequences"):
            lines += ["", "## Restore diff", "", "| table | added | removed | changed |", "|---|---|---|---|"]
            lines += [f"| {md(t['table'])} | {md(t['added'])} | {md(t['removed'])} | {md(t['changed'])} |"
                      for t in diff.get("tables", [])]
            lines += [f"- schema: {md(o)}" for o in diff.get("schema", [])]
            lines += [f"- sequence: {md(o)}" for o in diff.get("sequences", [])]
        impact = {k: v for k, v in (d.get("impact") or {}).items() if v}
        if impact:
            lines += ["", "## Impact: what production will feel"]
            for label in ("apply", "rollback"):
                if impact.get(label):
                    lines += ["", *impact_markdown(label, impact[label])]
        for s in STAGES:
            fs = d["stages"][s].get("findings") or []
            if fs:
                lines += ["", f"## Findings: {s}", ""]
                lines += [f"- \\[{md(f.get('severity', 'error'))}\\] {md(f.get('rule'))}: {md(f.get('message'))}"
                          for f in fs[:200]]
            notes = d["stages"][s].get("notes") or []
            if notes:  # what a gate noted (an isolated host, an optional table absent): not findings
                lines += ["", f"## Notes: {s}", ""]
                lines += [f"- {md(f.get('rule'))}: {md(f.get('message'))}" for f in notes[:200]]
        need = d.get("exact_operator_input_needed")
        if need:
            lines += ["", "## What the operator must supply", "", md(need["item"]), ""]
            lines += [f"- {md(p)}" for p in need.get("problems", [])]
        lines += ["", "## Connections opened", "", "| host | port | database | role | purpose |", "|---|---|---|---|---|"]
        lines += [f"| {md(c['host'])} | {md(c['port'])} | {md(c['database'])} | {md(c['role'])} | {md(c['purpose'])} |"
                  for c in d.get("connections", [])]
        return "\n".join(lines) + "\n"

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data.setdefault("files", {}).update(write_charts(self.dir, self.data.get("impact") or {}))
        write_evidence(self.dir / REPORT, self.report_text())
        write_evidence(self.dir / PROVENANCE, json.dumps(self.provenance(), indent=2, default=str) + "\n")
        write_evidence(self.dir / READABLE, self.markdown())


def render(directory: Path, *, incomplete_reason: str | None = None, interrupted: dict | None = None,
           fault: EvidenceNotWritten | None = None, fault_stage: str | None = None) -> EvidencePacket | None:
    """Render the packet from the run's journal, once: the packet files written, the verdict fixed and sealed
    into the audit chain as the last step. Returns the sealed packet (`.sealed` holds its chain entry, but for an
    interruption), or None when the packet was already rendered or is being rendered (the claim file is created
    exclusively, and left behind by a render that crashed), or when a sealed packet is there: that is never
    rendered over.
    """
    directory = evidence_path(directory)
    try:
        with writing(directory / RENDER_CLAIM):
            if is_remote(directory):
                (directory / RENDER_CLAIM).create(b"")
            else:
                os.close(os.open(directory / RENDER_CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return None
    except EvidenceNotWritten as e:  # not even the claim fits: the chain's lock decides who seals (audit.seal)
        fault = fault or e
    if (directory / REPORT).exists() or unwritten_entry(directory) is not None:
        if not (directory / REPORT).exists():
            return None  # sealed without its files (the disk was full): the claim stays
        (directory / RENDER_CLAIM).unlink(missing_ok=True)
        return None
    packet = EvidencePacket(directory, journal.fold(journal.read(directory)))
    packet.finalize(incomplete_reason=incomplete_reason, interrupted=interrupted, fault=fault,
                    fault_stage=fault_stage)
    if packet.data.get("evidence_fault") and packet.sealed is None:
        return None  # another render sealed it first
    if not packet.data.get("evidence_fault"):
        (directory / RENDER_CLAIM).unlink(missing_ok=True)  # sealed: rehearsal-report.json refuses later renders
    # not written: the claim stays, refusing every later render (the chain records the seal)
    return packet
