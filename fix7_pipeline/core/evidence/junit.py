"""JUnit XML for CI: one test case per rehearsal stage, so a CI page shows which gate stopped the change.

Every value passes through escape.xml (characters XML 1.0 cannot carry become visible escapes);
ElementTree escapes markup characters, so a name from the dump round-trips as text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..change.impact import breaches
from ..shared.escape import xml as _x
from ..shared.model import BLOCKED, FAILED, INTERRUPTED, SKIPPED, STAGES
from ..shared.names import JOB
from .packet_files import write_output

SUITE = JOB
PASSED_VERDICT = "REHEARSAL_PASSED"


def _findings_text(stage: dict) -> str:
    lines = [f"[{f.get('severity', 'error')}] {f.get('rule')}: {f.get('message')}"
             for f in (stage.get("findings") or [])[:200]]
    return _x("\n".join(lines))


def junit_xml(packet: dict) -> str:
    """The packet's stages as a <testsuite>; failed/blocked are failures, skipped are skipped.

    A last case, `verdict`, fails unless the rehearsal passed, so a CI that gates on the JUnit report alone
    never passes a run that stopped with every stage skipped.
    """
    stages: dict = packet.get("stages") or {}
    names = [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]
    counts = {"failures": 0, "skipped": 0}
    suite = ET.Element("testsuite", name=SUITE)
    props = ET.SubElement(suite, "properties")
    clone = packet.get("clone") or {}
    for key, value in (("verdict", packet.get("verdict")), ("run_id", packet.get("run_id")),
                       ("clone_path", clone.get("path")), ("clone_sha256", clone.get("sha256")),
                       ("anchor_id", packet.get("anchor_id"))):
        ET.SubElement(props, "property", name=key, value=_x(value or ""))
    for name in names:
        st = stages[name] or {}
        status = st.get("status") or SKIPPED
        case = ET.SubElement(suite, "testcase", classname=SUITE,
                             name=_x(name), time=f"{float(st.get('duration_s') or 0):.3f}")
        reason = _x(st.get("reason") or "")
        if status in (FAILED, BLOCKED, INTERRUPTED):
            counts["failures"] += 1
            failure = ET.SubElement(case, "failure", message=f"{_x(status)}: {reason}"[:1000], type=_x(status))
            failure.text = _findings_text(st) or reason
        elif status == SKIPPED:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=reason[:1000])
        elif reason:
            ET.SubElement(case, "system-out").text = reason
    impact_cases = 0
    for label in ("apply", "rollback"):  # one case per impact threshold set (core/change/impact.py)
        impact = (packet.get("impact") or {}).get(label) or {}
        for r in (impact.get("thresholds") or {}).get("results", []):
            impact_cases += 1
            case = ET.SubElement(suite, "testcase", classname=f"{SUITE}.impact", name=_x(f"{label} {r['name']}"),
                                 time="0.000")
            if r.get("passed"):
                ET.SubElement(case, "system-out").text = _x(f"measured {r.get('measured')} within {r.get('limit')}")
            else:
                counts["failures"] += 1
                msgs = [b.get("message", "") for b in r.get("breaches", [])]
                failure = ET.SubElement(case, "failure", type="impact_threshold",
                                        message=_x(msgs[0] if msgs else r["name"])[:1000])
                failure.text = _x("\n".join(msgs))
    verdict = packet.get("verdict")
    case = ET.SubElement(suite, "testcase", classname=SUITE, name="verdict", time="0.000")
    if verdict != PASSED_VERDICT:
        counts["failures"] += 1
        stopped = [_x(f"{n}: {(stages[n] or {}).get('reason')}") for n in names
                   if (stages[n] or {}).get("status") in (FAILED, BLOCKED, INTERRUPTED)]
        stopped += [_x(f"impact: {m}") for label in ("apply", "rollback")
                    for m in breaches((packet.get("impact") or {}).get(label))]
        failure = ET.SubElement(case, "failure", type="verdict",
                                message=_x(f"verdict {verdict or 'none: the run did not finish'}"))
        failure.text = "\n".join(stopped) or "no stage failed, but the rehearsal has no passing verdict"
    suite.set("tests", str(len(names) + impact_cases + 1))
    suite.set("failures", str(counts["failures"]))
    suite.set("errors", "0")
    suite.set("skipped", str(counts["skipped"]))
    suite.set("time", f"{sum(float((stages[n] or {}).get('duration_s') or 0) for n in names):.3f}")
    root = ET.Element("testsuites", name="fix7", tests=suite.get("tests"), failures=suite.get("failures"),
                      errors="0", skipped=suite.get("skipped"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, packet: dict) -> None:
    """Write the JUnit report into the path the operator named (packet_files.write_output): never swapped."""
    write_output(Path(path), junit_xml(packet))
