"""The audit chain: every finalized evidence packet records the sha256 of the packet sealed before it.

The chain index is `audit-chain.jsonl` beside the Dagster instance (.fix7/dagster_home/, or
FIX7_AUDIT_CHAIN), one JSON line per sealed packet, appended under an exclusive lock. Because each packet's own file carries the previous packet's sha256,
changing one byte of any packet breaks its hash, and hiding that by rewriting the index would mean
rewriting every later packet as well. `verify_chain` re-hashes every packet and reports gaps, missing
files and edits.

The newest packet has no later packet to vouch for it, so the run that seals a packet (whatever its
verdict) also hands `witness(entry)` (the packet's and the chain entry's sha256) to Dagster, which keeps it
as run tags; `cross_check` then compares every chain entry, and the packet files on disk, with that
record (`fix7 audit --verify`). This module imports nothing from Dagster.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..shared.errors import Fix7Error
from ..shared.paths import dagster_home
from ..storage import s3_store
from ..storage.store import evidence_path, is_remote, scheme
from . import journal
from .packet_files import PROVENANCE, READABLE, REPORT, EvidenceNotWritten
from .packet_files import sha256_file as _sha256

CHAIN_FILE = "audit-chain.jsonl"
RENDERED = (PROVENANCE, READABLE)

# What `fix7 audit` says each run is (the `state` column). Sealed runs are judged, or not judged (interrupted, a
# fault of the server or the disk: `judged: false` in their chain entry, whatever the verdict's name); a run whose
# process died left a journal and no seal (crashed); an edited, deleted or forged packet or chain entry is tampered.
JUDGED, NOT_JUDGED, CRASHED, RUNNING, TAMPERED = "judged", "not judged", "crashed", "running", "TAMPERED"
NO_PACKET, NOT_SEALED, OVERWRITTEN = "no packet", "not sealed", "overwritten"
# The verdicts that judge the clone or the change; any other verdict a packet is sealed with judged nothing.
JUDGED_VERDICTS = ("REHEARSAL_PASSED", "REHEARSAL_FAILED", "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE")


def chain_path() -> Path:
    """FIX7_AUDIT_CHAIN, else `<root>/audit-chain` when FIX7_EVIDENCE_ROOT is in S3 (one object per entry: every
    machine of a deployment seals into it), else beside the Dagster instance (DAGSTER_HOME, default
    .fix7/dagster_home): one chain per instance, so a temporary test instance never mixes into the project's
    history."""
    env = os.environ.get("FIX7_AUDIT_CHAIN")
    if env:
        return evidence_path(env)
    root = os.environ.get("FIX7_EVIDENCE_ROOT") or ""
    if scheme(root) == "s3":
        return evidence_path(root) / "audit-chain"
    return dagster_home() / CHAIN_FILE


@contextmanager
def _locked(path: Path):
    """One writer at a time across processes (the daemon may run two rehearsals at once)."""
    if is_remote(path):
        with s3_store.chain_lock(path):
            yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_chain(path: Path | None = None) -> list[dict]:
    """The chain's entries in order; an unreadable line is an error, never skipped."""
    path = evidence_path(path or chain_path())
    if is_remote(path):
        lines = s3_store.chain_lines(path)
    elif not path.exists():
        return []
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
    entries = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or "packet_sha256" not in entry:
                raise ValueError("not a chain entry")
        except ValueError:
            raise Fix7Error(f"The audit chain {path} is damaged at line {n}: it is not a chain entry. "
                            "Restore the file from a backup; the chain cannot be trusted as it is.",
                            1, rule="audit_chain_damaged") from None
        entries.append(entry)
    return entries


def last_packet_sha256(path: Path | None = None) -> str | None:
    entries = read_chain(path)
    return entries[-1]["packet_sha256"] if entries else None


def _canonical(entry: dict) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


def entry_sha256(entry: dict) -> str:
    """The sha256 of a chain entry as written (canonical JSON): what Dagster keeps of it."""
    return hashlib.sha256(_canonical(entry).encode("utf-8")).hexdigest()


def _append(path: Path, entry: dict) -> None:
    line = (_canonical(entry) + "\n").encode("utf-8")
    if is_remote(path):
        return s3_store.chain_append(path, entry["seq"], line)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def seal(packet) -> dict | None:
    """Save a finalized EvidencePacket linked to the chain's last packet and append it to the chain.

    Called by EvidencePacket.finalize. A packet finalized again (a re-executed run) gets a new entry
    that names the sha256 it supersedes, so the history shows both. When its files cannot be written (the
    disk is full) it is sealed all the same, REHEARSAL_NOT_JUDGED with `evidence_not_written`, and never again
    (None).
    """
    path = chain_path()
    with _locked(path):
        try:
            entries = read_chain(path)
        except Fix7Error:
            packet.data["previous_packet_sha256"] = None
            packet.save()
            raise
        directory = str(evidence_path(packet.dir).resolve())
        earlier = [e for e in entries if e.get("evidence_dir") == directory]
        if earlier and earlier[-1].get("evidence_not_written") and not (evidence_path(directory) / REPORT).exists():
            return None  # sealed already, its files not written: never sealed twice
        packet.data["previous_packet_sha256"] = entries[-1]["packet_sha256"] if entries else None
        try:
            packet.save()
            written = True
        except EvidenceNotWritten as fault:  # the disk is full: sealed here, REHEARSAL_NOT_JUDGED, no files
            packet.evidence_not_written(fault, "evidence_packet")
            _remove_unsealed(evidence_path(directory))
            written = False
        d = packet.data
        entry = {
            "seq": len(entries) + 1,
            "sealed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "run_id": d.get("run_id"),
            "evidence_dir": directory,
            "verdict": d.get("verdict"),
            "clone_sha256": (d.get("clone") or {}).get("sha256"),
            "attested_by": (d.get("attestation") or {}).get("attested_by"),
            "anchor_id": d.get("anchor_id"),
            "previous_packet_sha256": d["previous_packet_sha256"],
            # not written: the sha256 of the report as it would have been, so the chain still links through it
            "packet_sha256": _sha256(evidence_path(directory) / REPORT) if written else
            hashlib.sha256(packet.report_text().encode("utf-8")).hexdigest(),
            "rendered_sha256": {name: _sha256(evidence_path(directory) / name) for name in RENDERED
                                if written and (evidence_path(directory) / name).exists()},
            "supersedes": earlier[-1]["packet_sha256"] if earlier else None,
        }
        if d.get("interrupted"):  # REHEARSAL_INTERRUPTED: a record of an interruption, not a judgment
            entry["interrupted"] = {k: d["interrupted"].get(k) for k in ("stage", "signal", "at")}
        if d.get("interrupted") or d.get("judged") is False or d.get("verdict") not in JUDGED_VERDICTS:
            entry["judged"] = False
        if d.get("server_fault"):  # REHEARSAL_SERVER_FAULT: the server failed; nothing was judged
            entry["server_fault"] = {k: d["server_fault"].get(k) for k in ("stage", "rule")}
        if not written:
            entry["evidence_not_written"] = {k: d["evidence_fault"].get(k) for k in ("errno", "path", "stage",
                                                                                      "message")}
        _append(path, entry)
    return entry


def _remove_unsealed(directory: Path) -> None:
    """Packet files a render wrote before the disk filled: never sealed, so never left to be taken as sealed."""
    for name in (REPORT, *RENDERED):
        try:
            (directory / name).unlink(missing_ok=True)
        except OSError:
            pass


def unwritten_entry(directory: Path, path: Path | None = None) -> dict | None:
    """The chain entry that sealed `directory` without its files (the disk was full), if that is its last."""
    directory = str(evidence_path(directory).resolve())
    try:
        mine = [e for e in read_chain(path) if e.get("evidence_dir") == directory]
    except Fix7Error:
        return None
    return mine[-1] if mine and mine[-1].get("evidence_not_written") else None


@dataclass
class ChainReport:
    entries: int = 0
    verified: int = 0
    superseded: int = 0
    dagster_checked: int = 0
    problems: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)  # runs that left a journal and no seal: listed, not problems
    not_judged: list[str] = field(default_factory=list)  # sealed runs that judged nothing, and why
    states: dict[str, int] = field(default_factory=dict)  # runs per run_state

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(path: Path | None = None) -> ChainReport:
    """Re-hash every packet of the chain; report gaps, broken links, missing and edited files."""
    path = evidence_path(path or chain_path())
    report = ChainReport()
    try:
        entries = read_chain(path)
    except Fix7Error as e:
        report.problems.append(e.message)
        return report
    report.entries = len(entries)
    latest = {e.get("evidence_dir"): i for i, e in enumerate(entries)}
    previous = None
    for i, e in enumerate(entries):
        where = f"entry {i + 1} (run {e.get('run_id')}, {e.get('evidence_dir')})"
        if e.get("seq") != i + 1:
            report.problems.append(f"gap: {where} has sequence number {e.get('seq')}, expected {i + 1}")
        if e.get("previous_packet_sha256") != previous:
            report.problems.append(f"gap: {where} links to previous packet {e.get('previous_packet_sha256')}, "
                                   f"but the packet before it is {previous}")
        previous = e.get("packet_sha256")
        if latest.get(e.get("evidence_dir")) != i:
            report.superseded += 1
            continue
        report.problems.extend(f"{where}: {p}" for p in check_packet(e))
        report.verified += 1
    return report


def check_packet(entry: dict) -> list[str]:
    directory = evidence_path(entry.get("evidence_dir") or "")
    report = directory / REPORT
    if entry.get("evidence_not_written"):  # sealed without files (disk full): none may appear later
        return [f"packet forged: {report} exists, but the chain sealed this run with no packet written "
                f"({entry['evidence_not_written'].get('errno')})"] if report.exists() else []
    if not report.is_file():
        return [f"packet missing: {report} no longer exists"]
    problems = []
    actual = _sha256(report)
    if actual != entry.get("packet_sha256"):
        problems.append(f"packet edited: {REPORT} hashes to {actual}, the chain sealed {entry.get('packet_sha256')}")
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except ValueError:
        return problems + [f"packet unreadable: {REPORT} is not JSON"]
    if data.get("previous_packet_sha256") != entry.get("previous_packet_sha256"):
        problems.append("packet relinked: its previous_packet_sha256 differs from the chain's")
    if data.get("run_id") != entry.get("run_id"):
        problems.append(f"packet swapped: it names run {data.get('run_id')}")
    for name, sealed in (entry.get("rendered_sha256") or {}).items():
        f = directory / name
        if not f.is_file():
            problems.append(f"packet incomplete: {name} is missing")
        elif _sha256(f) != sealed:
            problems.append(f"packet edited: {name} differs from what was sealed")
    return problems


# -- the third witness: what Dagster keeps of each sealed packet -------------------------------------

WITNESS_PREFIX = "fix7/"
WITNESS_KEYS = ("packet_sha256", "chain_entry_sha256", "chain_seq", "verdict", "evidence")
SEAL_KEYS = ("packet_sha256", "chain_entry_sha256", "chain_seq")  # only a seal gives a run these


def witness(entry: dict | None) -> dict | None:
    """What the run that sealed a packet hands to Dagster (as run tags): the packet's and the chain entry's
    sha256, so a packet and its chain line rewritten together still disagree with Dagster's storage."""
    if not entry:
        return None
    return {"packet_sha256": entry["packet_sha256"], "chain_entry_sha256": entry_sha256(entry),
            "chain_seq": str(entry["seq"]), "verdict": str(entry.get("verdict") or ""),
            "evidence": str(entry.get("evidence_dir") or "")}


def witness_tags(w: dict) -> dict[str, str]:
    return {WITNESS_PREFIX + k: str(w[k]) for k in WITNESS_KEYS}


def witness_from_tags(tags: dict) -> dict | None:
    """The witness a run's tags carry; None when the run recorded none (incomplete ones are returned as they are)."""
    found = {k: str(tags.get(WITNESS_PREFIX + k) or "") for k in WITNESS_KEYS}
    # fix7/verdict and fix7/evidence are also what the Runs list shows of a run in progress: alone, no witness
    return found if any(found[k] for k in SEAL_KEYS) else None


def cross_check(entries: list[dict], records: list[dict]) -> tuple[list[str], list[str], int]:
    """Every chain entry against Dagster's record of it, and the latest packet of each directory against both.

    `records`: one per Dagster run of the job: run_id, root_run_id (the run it re-executes, if any), created
    (epoch seconds), finished (bool) and witness (witness_from_tags, or None). Returns (problems, warnings, entries compared
    with a Dagster record); each problem names the run and which witness disagrees. A chain entry of a run
    whose family in Dagster recorded no witness is only a warning when every such run is older than the first
    run that did (sealed by a fix7 that did not record witnesses yet).
    """
    problems: list[str] = []
    warnings: list[str] = []
    family: dict[str, list[dict]] = {}
    for r in records:
        for key in {r["run_id"], r.get("root_run_id") or r["run_id"]}:
            family.setdefault(key, []).append(r)
    witnessed = [r for r in records if r.get("witness")]
    first_witnessed = min((r["created"] for r in witnessed), default=None)
    latest = {e.get("evidence_dir"): i for i, e in enumerate(entries)}
    matched: set[int] = set()
    compared = 0
    for i, e in enumerate(entries):
        seq = str(i + 1)
        where = f"run {e.get('run_id')} (chain entry {seq}, {e.get('evidence_dir')})"
        runs = family.get(e.get("run_id") or "", [])
        if not runs:
            problems.append(f"{where}: Dagster has no record of this run: the chain names a run this instance "
                            "never ran")
            continue
        recorded = [r for r in runs if r.get("witness")]
        if not recorded:
            if not all(r.get("finished", True) for r in runs):
                warnings.append(f"{where}: the run has not finished; it records its packet in Dagster as it "
                                "seals it")
            elif first_witnessed is None or all(r["created"] < first_witnessed for r in runs):
                warnings.append(f"{where}: sealed before runs recorded their packet in Dagster; only the chain's "
                                "links and the packet files vouch for it")
            else:
                problems.append(f"{where}: Dagster has no record of this run's packet")
            continue
        mine = [r for r in recorded if r["witness"].get("chain_seq") == seq]
        if not mine:
            w = recorded[-1]["witness"]
            problems.append(f"{where}: Dagster's record of this run is chain entry {w.get('chain_seq') or '?'} "
                            f"(packet sha256 {w.get('packet_sha256') or '?'}), not this one")
            continue
        matched.update(id(r) for r in mine)
        compared += 1
        w = mine[-1]["witness"]
        missing = [k for k in WITNESS_KEYS if not w.get(k)]
        if missing:
            problems.append(f"{where}: Dagster's record of this run's packet is incomplete (no "
                            f"{', '.join(WITNESS_PREFIX + k for k in missing)})")
            continue
        if entry_sha256(e) != w["chain_entry_sha256"]:
            what = [f"{k} {e.get(k)!s} where Dagster recorded {w[t]}" for k, t in
                    (("packet_sha256", "packet_sha256"), ("verdict", "verdict"), ("evidence_dir", "evidence"))
                    if str(e.get(k) or "") != w[t]]
            problems.append(f"{where}: chain entry differs from Dagster's record of it (written by the run when it "
                            f"sealed the packet): the chain line was rewritten"
                            + (f" ({'; '.join(what)})" if what else ""))
        if latest.get(e.get("evidence_dir")) != i:
            continue  # a later entry sealed this directory again; its packet on disk is that entry's
        report = evidence_path(w["evidence"]) / REPORT
        if report.is_file():  # a missing packet is reported by verify_chain
            actual = _sha256(report)
            if actual != w["packet_sha256"]:
                problems.append(f"{where}: packet file sha256 {actual} differs from Dagster's record "
                                f"{w['packet_sha256']} (written by the run when it sealed the packet)"
                                + ("; the chain entry was rewritten to match the edited file"
                                   if e.get("packet_sha256") == actual else ""))
    for r in witnessed:
        if id(r) not in matched:
            w = r["witness"]
            problems.append(f"run {r['run_id']} ({w.get('evidence') or 'no evidence dir'}): gap: the finalized "
                            f"packet is not in the audit chain (Dagster recorded it as chain entry "
                            f"{w.get('chain_seq') or '?'}, packet sha256 {w.get('packet_sha256') or '?'})")
    return problems, warnings, compared


def chain_by_run(path: Path | None = None) -> dict[str, dict]:
    """The latest chain entry of each run id."""
    return {e.get("run_id"): e for e in read_chain(path)}


def packet_row(evidence_dir: str | None, chain_entry: dict | None) -> dict:
    """What the audit listing shows of one packet: read from disk, hashed now, compared with the chain."""
    row = {"evidence_dir": evidence_dir or "", "verdict": "", "clone_sha256": "", "attested_by": "",
           "anchor_id": "", "packet_sha256": "", "chain": "not sealed"}
    if not evidence_dir:
        row["chain"] = "no packet"
        return row
    report = evidence_path(evidence_dir) / REPORT
    if chain_entry and chain_entry.get("evidence_not_written") and not report.exists():
        fault = chain_entry["evidence_not_written"]
        row.update(packet_run_id=chain_entry.get("run_id") or "", verdict=chain_entry.get("verdict") or "",
                   clone_sha256=chain_entry.get("clone_sha256") or "", attested_by=chain_entry.get("attested_by") or "",
                   anchor_id=chain_entry.get("anchor_id") or "",
                   chain=f"sealed #{chain_entry.get('seq')}, not written ({fault.get('errno')})")
        return row
    if not report.is_file():
        return _journal_row(row, evidence_path(evidence_dir))
    row["packet_sha256"] = _sha256(report)
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except ValueError:
        row["chain"] = "packet unreadable"
        return row
    row.update(packet_run_id=data.get("run_id") or "", verdict=data.get("verdict") or "(unfinished)", clone_sha256=(data.get("clone") or {}).get("sha256") or "",
               attested_by=(data.get("attestation") or {}).get("attested_by") or "", anchor_id=data.get("anchor_id") or "")
    if chain_entry:
        row["chain"] = f"sealed #{chain_entry.get('seq')}" if chain_entry.get("packet_sha256") == row["packet_sha256"] \
            else "EDITED since sealed"
    return row


def _journal_row(row: dict, directory: Path) -> dict:
    """A run that left a journal and no packet (it crashed, or is still running): what the journal recorded,
    marked not sealed; no packet sha256, as there is no packet to hash."""
    if not journal.exists(directory):
        row["chain"] = "packet missing"
        return row
    try:
        data = journal.fold(journal.read(directory))
    except (OSError, ValueError):
        row["chain"] = "journal unreadable"
        return row
    stages = data.get("stages") or {}
    reached = [s for s, st in stages.items() if (st or {}).get("status") not in (None, "skipped")]
    following = [s for s in stages if s not in reached]
    row.update(packet_run_id=data.get("run_id") or "", verdict="(unfinished)",
               stopped_during=following[0] if following else (reached[-1] if reached else ""),
               clone_sha256=(data.get("clone") or {}).get("sha256") or "",
               attested_by=(data.get("attestation") or {}).get("attested_by") or "",
               anchor_id=data.get("anchor_id") or "", chain="journal only, not sealed")
    return row


def run_state(row: dict, chain_entry: dict | None, *, running: bool) -> str:
    """What one listed run is: judged, not judged, crashed, running, tampered (or no packet, not sealed,
    overwritten). `row` is packet_row's; `running`: its Dagster run is unfinished and its process alive."""
    chain = row.get("chain") or ""
    sealed = bool(chain_entry or row.get("dagster_witness") or row.get("dagster_packet_sha256"))
    if chain.startswith(("EDITED", "packet unreadable", "journal unreadable")):
        return TAMPERED
    if chain in ("journal only, not sealed", "packet missing") and sealed:
        return TAMPERED  # the chain or Dagster recorded a seal: its packet was deleted
    if chain.startswith("sealed #"):
        return NOT_JUDGED if (chain_entry or {}).get("judged") is False else JUDGED
    if chain == "journal only, not sealed":
        return RUNNING if running else CRASHED
    if chain == "packet missing":
        return NO_PACKET
    if chain.startswith("overwritten"):
        return OVERWRITTEN
    if chain == "not sealed":
        return RUNNING if running else NOT_SEALED
    return RUNNING if running else NO_PACKET


def not_judged_reason(entry: dict | None) -> str:
    """Why a sealed run judged nothing, from its chain entry: the interruption or the evidence fault."""
    entry = entry or {}
    fault, stopped = entry.get("evidence_not_written") or {}, entry.get("interrupted") or {}
    if fault:
        return (f"the evidence could not be written during {fault.get('stage')}: {fault.get('errno')} at "
                f"{fault.get('path')}")
    if stopped:
        by = f" by {stopped['signal']}" if stopped.get("signal") else ""
        return f"interrupted{by} during {stopped.get('stage')}"
    return "nothing was judged"
