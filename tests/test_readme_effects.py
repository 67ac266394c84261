"""README's "Measured effects" come from stored ``fairaudit benchmark`` output, not from hand-typed numbers.

Each ``assets/benchmarks/*.json`` is the output of the command README shows beside its table. Every
"mean ± std" README quotes must be a row's metric in one of them, and every paired difference with its
interval must be one of their comparisons, with ✓ exactly where the comparison holds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "assets" / "benchmarks").glob("*.json"))
NUM = r"[−+]?\d\.\d{3}"
DIFF = re.compile(rf"({NUM}) \[({NUM}), ({NUM})\]([^|\n]*)")
MEAN_STD = re.compile(r"(\d\.\d{3}) ± (\d\.\d{3})")


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### Measured effects")
    return text[start:text.index("\n### ", start + 1)]


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def _flat(command: str) -> str:
    return " ".join(command.replace("\\\n", " ").split())


def _results() -> list[dict]:
    return [json.loads(p.read_text()) for p in RESULTS]


def test_there_are_stored_results():
    assert RESULTS, "assets/benchmarks holds no benchmark output"


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
def test_readme_shows_the_command_and_some_comparisons_of_each_stored_benchmark(path):
    section = _section()
    result = json.loads(path.read_text())
    assert _flat(result["setup"]["command"]) in _flat(section), "README does not show this benchmark's command"
    assert result["setup"]["seeds"] == [0, 1, 2]
    quoted = [c for c in result["comparisons"] if c["ci"] and
              f"{_signed(c['mean_diff'])} [{_signed(c['ci'][0])}, {_signed(c['ci'][1])}]" in section]
    assert len(quoted) >= 2, "README quotes none of this benchmark's comparisons"


def test_every_figure_of_the_section_is_stored_benchmark_output():
    section = _section()
    comparisons = {f"{_signed(c['mean_diff'])} [{_signed(c['ci'][0])}, {_signed(c['ci'][1])}]": c["holds"]
                   for r in _results() for c in r["comparisons"] if c["ci"]}
    means = {f"{m['mean']:.3f} ± {m['std']:.3f}" for r in _results() for row in r["rows"]
             for m in row["metrics"].values() if m.get("mean") is not None and m.get("std") is not None}
    diffs = DIFF.findall(section)
    assert diffs
    for diff, lo, hi, rest in diffs:
        cell = f"{diff} [{lo}, {hi}]"
        assert cell in comparisons, f"{cell} is no stored comparison"
        assert ("✓" in rest) == comparisons[cell], f"{cell}: ✓ must mark exactly the comparisons that hold"
    found = MEAN_STD.findall(section)
    assert found
    for mean, std in found:
        assert f"{mean} ± {std}" in means, f"{mean} ± {std} is no stored row metric"
