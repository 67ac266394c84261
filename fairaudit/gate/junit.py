"""The gate's verdicts as JUnit XML, the test-report format CI servers read.

One ``<testsuite name="fairaudit.check">`` with one ``<testcase>`` per rule:
a failed rule carries ``<failure message="…">`` (value, interval and
threshold), an inconclusive one ``<skipped message="…">`` (with the sample
size needed), and every case's ``<system-out>`` holds the same message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from fairaudit.gate.check import FAIL, INCONCLUSIVE, GateResult

SUITE = "fairaudit.check"


def junit_xml(result: GateResult) -> str:
    """The JUnit document of ``result`` as text."""
    failures = sum(r.verdict == FAIL for r in result.rules)
    skipped = sum(r.verdict == INCONCLUSIVE for r in result.rules)
    root = ET.Element("testsuites", name="fairaudit", tests=str(len(result.rules)), failures=str(failures),
                      errors="0", skipped=str(skipped))
    suite = ET.SubElement(root, "testsuite", name=SUITE, tests=str(len(result.rules)), failures=str(failures),
                          errors="0", skipped=str(skipped))
    properties = ET.SubElement(suite, "properties")
    for key, value in {"outcome": result.outcome, "n": result.n, **result.settings}.items():
        ET.SubElement(properties, "property", name=str(key), value=str(value))
    for rule in result.rules:
        case = ET.SubElement(suite, "testcase", classname=f"{SUITE}.{rule.scope}", name=rule.name)
        if rule.verdict == FAIL:
            ET.SubElement(case, "failure", message=rule.message, type="fairness-threshold").text = rule.message
        elif rule.verdict == INCONCLUSIVE:
            ET.SubElement(case, "skipped", message=rule.message)
        ET.SubElement(case, "system-out").text = rule.message
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(result: GateResult, path: str | Path) -> Path:
    from fairaudit.io_safety import write_text_atomic

    write_text_atomic(path, junit_xml(result))
    return Path(path)
