"""`fix7 audit`: every rehearsal the Dagster instance recorded, and `--verify` of the audit chain."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from fix7_pipeline.core.evidence import audit, audit_listing
from fix7_pipeline.core.shared.errors import EXIT_REHEARSAL_FAILED, EXIT_USAGE, Fix7Error
from fix7_pipeline.core.evidence.packet_files import REPORT
from fix7_pipeline.core.shared.names import JOB

DAGSTER_SHA_KEY = f"sha256_{REPORT}"
UNFINISHED = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING", "MANAGED"}


def parse_since(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Fix7Error(f"--since {text!r} is not a date: use YYYY-MM-DD or an ISO time such as "
                        "2025-06-01T02:00:00Z", EXIT_USAGE, rule="usage") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _value(md) -> object:
    return getattr(md, "value", md)


def _run_metadata(instance, run_id: str) -> dict:
    """What the run's materializations recorded, merged over all stage assets (later stages win)."""
    from dagster import DagsterEventType

    merged: dict = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.asset_materialization
        if mat is None:
            continue
        for key, md in (mat.metadata or {}).items():
            v = _value(md)
            if v not in (None, ""):
                merged[key] = str(v)
        if mat.asset_key.to_user_string() == "evidence_packet":
            merged["evidence_packet_materialized"] = "yes"
    return merged


def _source(tags: dict) -> str:
    if tags.get("fix7/source"):
        return tags["fix7/source"]
    if tags.get("dagster/schedule_name"):
        return "schedule"
    if tags.get("dagster/sensor_name"):
        return "sensor"
    return "launchpad"


def collect_rows(instance, since: dt.datetime | None = None, chain_path=None) -> list[dict]:
    """One row per run of the fix7_rehearsal job, oldest first, with its packet hashed now."""
    from dagster import RunsFilter

    from fix7_pipeline.defs.crashes import is_crashed

    by_run = audit.chain_by_run(chain_path)
    rows = []
    for record in instance.get_run_records(filters=RunsFilter(job_name=JOB, created_after=since), ascending=True):
        run = record.dagster_run
        md = _run_metadata(instance, run.run_id)
        started = record.start_time or record.create_timestamp.timestamp()
        chained = by_run.get(run.run_id)
        config = ((run.run_config or {}).get("ops", {}).get("clone_intake", {}) or {}).get("config", {}) or {}
        evidence = md.get("evidence_dir") or (chained or {}).get("evidence_dir") or config.get("evidence_dir") or ""
        witness = audit.witness_from_tags(dict(run.tags or {})) or {}
        evidence = evidence or witness.get("evidence", "")
        row = {"run_id": run.run_id,
               "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
               "run_status": run.status.value, "source": _source(dict(run.tags or {})),
               **audit.packet_row(evidence, chained),
               "dagster_packet_sha256": witness.get("packet_sha256") or md.get(DAGSTER_SHA_KEY, ""),
               "dagster_witness": bool(witness)}
        for key, fallback in (("clone_sha256", md.get("clone_sha256")), ("anchor_id", md.get("anchor_id")),
                              ("verdict", md.get("verdict")), ("attested_by", config.get("attested_by"))):
            if not row.get(key) and fallback:
                row[key] = fallback
        if row["dagster_packet_sha256"] and row["packet_sha256"] and row["dagster_packet_sha256"] != row["packet_sha256"]:
            row["chain"] = "EDITED since Dagster recorded it"
        if row.get("packet_run_id") and row["packet_run_id"] != run.run_id:
            row["chain"] = f"overwritten by run {row['packet_run_id'][:8]}"
        running = run.status.value in UNFINISHED and not is_crashed(instance, run)
        row["state"] = audit.run_state(row, chained, running=running)
        rows.append(row)
    return rows


def dagster_records(instance) -> list[dict]:
    """What Dagster keeps of each run of the job, for audit.cross_check: the witness its tags carry."""
    from dagster import RunsFilter

    out = []
    for record in instance.get_run_records(filters=RunsFilter(job_name=JOB), ascending=True):
        run = record.dagster_run
        out.append({"run_id": run.run_id, "root_run_id": run.root_run_id or run.run_id,
                    "created": record.create_timestamp.timestamp(), "finished": run.status.value not in UNFINISHED,
                    "witness": audit.witness_from_tags(dict(run.tags or {}))})
    return out


def verify(instance, chain_path=None) -> tuple[audit.ChainReport, list[str]]:
    """Three witnesses, compared: the chain's links, the packet files on disk, and Dagster's record of each
    sealed packet (every chain entry, the newest included); plus every finished run checked for a gap."""
    report = audit.verify_chain(chain_path)
    warnings: list[str] = []
    try:
        entries = audit.read_chain(chain_path)
    except Fix7Error:
        entries = None  # verify_chain reported the damage; nothing below can be matched against it
    if entries is not None:
        problems, notes, report.dagster_checked = audit.cross_check(entries, dagster_records(instance))
        report.problems.extend(problems)
        warnings.extend(notes)
    genesis = entries[0].get("sealed_at", "") if entries else ""
    sealed = {e.get("run_id"): e for e in entries or []}
    for row in collect_rows(instance, chain_path=chain_path):
        report.states[row["state"]] = report.states.get(row["state"], 0) + 1
        if row["state"] == audit.RUNNING:
            continue
        where = f"run {row['run_id']} ({row['evidence_dir'] or 'no evidence dir'})"
        if row["state"] == audit.CRASHED:  # not tampering: what a killed run leaves, listed for what it is
            during = f" during {row['stopped_during']}" if row.get("stopped_during") else ""
            report.crashed.append(f"{where}: crashed{during}: its process died before the packet was sealed; "
                                  "only its journal is on disk, nothing was judged")
            continue
        if row["state"] == audit.NOT_JUDGED:
            report.not_judged.append(f"{where}: {row['verdict']}: "
                                     f"{audit.not_judged_reason(sealed.get(row['run_id']))}")
        if row["dagster_witness"]:
            if row["chain"].startswith("overwritten"):
                warnings.append(f"{where}: its evidence directory now holds the packet of a later run "
                                f"({row['chain']})")
            continue  # cross_check compared its packet, its chain entry and Dagster's record
        if row["dagster_packet_sha256"] and row["packet_sha256"] and \
                row["dagster_packet_sha256"] != row["packet_sha256"]:
            report.problems.append(f"{where}: packet edited: {REPORT} hashes to {row['packet_sha256']}, Dagster "
                                   f"recorded {row['dagster_packet_sha256']} when the run finished")
        elif row["chain"] == "packet missing" and row["dagster_packet_sha256"]:
            report.problems.append(f"{where}: packet missing, but Dagster recorded one with sha256 "
                                   f"{row['dagster_packet_sha256']}")
        elif row["chain"] == "not sealed" and row["verdict"] not in ("", "(unfinished)"):
            if genesis and row["started_at"] < genesis:
                warnings.append(f"{where}: finalized before the audit chain began ({genesis}); not chained")
            else:
                report.problems.append(f"{where}: gap: the finalized packet is not in the audit chain")
        elif row["chain"].startswith("overwritten"):
            warnings.append(f"{where}: its evidence directory now holds the packet of a later run "
                            f"({row['chain']})")
        elif row["chain"] in ("packet missing", "no packet"):
            warnings.append(f"{where}: no evidence packet on disk (the run stopped before writing one, or it "
                            "was written elsewhere)")
    return report, warnings


def cmd_audit(args: argparse.Namespace) -> int:
    from fix7_pipeline.instance import get_instance

    since = parse_since(args.since)
    instance = get_instance()
    if args.verify:
        report, warnings = verify(instance)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        if not report.ok:
            print(f"AUDIT CHAIN BROKEN: {audit.chain_path()}", file=sys.stderr)
            for problem in report.problems:
                print(f"  - {problem}", file=sys.stderr)
            raise Fix7Error(f"audit verification failed with {len(report.problems)} problem(s), listed above; "
                            "the evidence history cannot be trusted until each is explained.",
                            EXIT_REHEARSAL_FAILED, rule="audit_chain_broken")
        for line in report.crashed:
            print(f"crashed: {line}")
        for line in report.not_judged:
            print(f"not judged: {line}")
        print(f"audit chain verified: {report.verified} packet(s) re-hashed, {report.entries} link(s) checked"
              f"{f', {report.superseded} superseded' if report.superseded else ''}, "
              f"{report.dagster_checked} entr{'y' if report.dagster_checked == 1 else 'ies'} matched with "
              f"Dagster's record ({audit.chain_path()})")
        if report.states:
            print("runs: " + ", ".join(f"{n} {state}" for state, n in sorted(report.states.items())))
        return 0
    rows = collect_rows(instance, since)
    sys.stdout.write(audit_listing.render(rows, args.format))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("audit", help="list every rehearsal recorded in the Dagster instance; "
                                            "--verify re-hashes every evidence packet")
    p.add_argument("--since", metavar="DATE", help="only rehearsals started on or after DATE (YYYY-MM-DD or ISO "
                                                   "time; UTC unless a zone is given)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--verify", action="store_true", help="re-hash every packet of the audit chain and check it "
                                                         "against Dagster's record; exit 1 on a gap or an edit")
    p.set_defaults(func=cmd_audit)
