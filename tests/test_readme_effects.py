"""README's "Measured effects" come from stored ``fairaudit benchmark`` output, not from hand-typed numbers.

Each ``assets/benchmarks/*.json`` is the output of the command README shows beside its table; every
comparison README quotes (mean difference and interval) and every row mean it shows must be the
JSON's, rounded as the benchmark's Markdown rounds them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "assets" / "benchmarks").glob("*.json"))


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### Measured effects")
    return text[start:text.index("\n### ", start + 1)]


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def _flat(command: str) -> str:
    return " ".join(command.replace("\\\n", " ").split())


def test_there_are_stored_results():
    assert RESULTS, "assets/benchmarks holds no benchmark output"


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
def test_readme_shows_the_command_and_the_numbers_of_each_stored_benchmark(path):
    section = _section()
    result = json.loads(path.read_text())
    assert _flat(result["setup"]["command"]) in _flat(section), "README does not show this benchmark's command"
    assert result["setup"]["seeds"] == [0, 1, 2]
    shown = 0
    for comp in result["comparisons"]:
        if comp["metric"] == "accuracy" and comp["against"] == "baseline":
            continue
        cell = f"{_signed(comp['mean_diff'])} [{_signed(comp['ci'][0])}, {_signed(comp['ci'][1])}]"
        if cell in section:
            shown += 1
            assert ("✓" in section.split(cell, 1)[1].split("\n", 1)[0]) == comp["holds"], cell
    assert shown >= 2, "README quotes none of this benchmark's comparisons"
    targets = {comp["metric"] for comp in result["comparisons"]} - {"accuracy"}
    for row in result["rows"]:
        if row["method"] == "baseline":
            continue
        for metric in targets:
            m = row["metrics"][metric]
            assert f"{m['mean']:.3f} ± {m['std']:.3f}" in section, (row["method"], metric)
