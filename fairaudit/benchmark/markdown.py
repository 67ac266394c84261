"""The benchmark as Markdown: the command, the leaderboard (mean ± std over seeds with the t-interval) and
the comparisons with ✓ / ✗, as README's table of measured effects uses them."""

from __future__ import annotations

from typing import Any, Mapping

from fairaudit.metrics import catalogue

TABLE_METRICS = ("accuracy", "balanced_accuracy", "deo", "spd", "eod", "bias_sum", "worst_group_accuracy", "s_r",
                 "leakage")


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:+.{digits}f}".replace("-", "−")


def _interval(ci, digits: int = 3, signed: bool = False) -> str:
    if not ci:
        return "n/a"
    fmt = _signed if signed else _number
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def metric_cell(summary: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``0.812 ± 0.004 [0.802, 0.822]``: mean ± std over seeds and the 95 % interval (``–`` when missing,
    ``n/a`` when every seed's audit left the metric undefined, and ``(1 of 3 n/a)`` appended when some
    did: those seeds are not in the mean)."""
    undefined = int((summary or {}).get("n_undefined") or 0)
    if not summary or summary.get("mean") is None:
        return "n/a" if undefined else "–"
    text = _number(summary["mean"], digits)
    if summary.get("std") is not None:
        text += f" ± {_number(summary['std'], digits)}"
    if summary.get("ci"):
        text += f" {_interval(summary['ci'], digits)}"
    if undefined:
        text += f" ({undefined} of {len(summary.get('values') or []) + undefined} n/a)"
    return text


def seeds_cell(comparison: Mapping[str, Any]) -> str:
    """The number of paired seeds, and how many were left out because the metric was undefined."""
    undefined = int(comparison.get("n_undefined") or 0)
    return f"{comparison.get('n', 0)}" + (f" ({undefined} n/a)" if undefined else "")


def settings_text(settings: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((settings or {}).items())) or "defaults"


def comparison_mark(comparison: Mapping[str, Any]) -> str:
    """``✓`` when the claim holds; ``✗`` otherwise, with ``(worse)`` when the interval is on the wrong side."""
    if comparison.get("holds"):
        return "✓"
    return "✗ (worse)" if comparison.get("verdict") == "worse" else "✗"


def to_markdown(result: Mapping[str, Any]) -> str:
    """The benchmark JSON (:func:`fairaudit.benchmark.aggregate`) as Markdown."""
    setup = result.get("setup") or {}
    rows = result.get("rows") or []
    metrics = [m for m in TABLE_METRICS if any(m in (r.get("metrics") or {}) for r in rows)]
    lines = []
    if setup.get("command"):
        lines += [f"`{setup['command']}`", ""]
    seeds = setup.get("seeds") or []
    lines.append(f"{setup.get('dataset', '?')} · target {setup.get('target', '?')} · sensitive "
                 f"{', '.join(setup.get('sensitive') or []) or '?'} · model {setup.get('model', '?')} · "
                 f"{len(seeds)} seed(s) · {setup.get('split', 'test')} split"
                 + (" · quick" if setup.get("quick") else "") + ". Cells: mean ± std over seeds [95 % "
                 "t-interval].")
    lines.append("")
    header = ["method", "settings", "seeds", *[catalogue.short(m) for m in metrics], "seconds / run", "status"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = row["method"] + (f" (control of {row['control_of']})" if row.get("control_of") else "")
        settings = "no mitigation" if row["method"] == "baseline" else settings_text(row.get("settings"))
        cells = [f"`{name}`" if row["method"] != "baseline" else "baseline", settings, str(row.get("n_seeds", 0)),
                 *[metric_cell((row.get("metrics") or {}).get(m)) for m in metrics],
                 _number((row.get("seconds") or {}).get("mean"), 1), row.get("status", "")]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r.get("status") == "failed"]
    for row in failed:
        lines.append("")
        lines.append(f"`{row['method']}` failed: {row.get('message')}")
    comparisons = result.get("comparisons") or []
    if comparisons:
        lines += ["", "Comparisons, paired by seed (difference = method − other; 95 % t-interval; ✓: the "
                      "claimed direction holds and the interval excludes 0):", ""]
        lines += ["| method | against | metric | better if | mean difference | 95 % CI | seeds | holds |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            metric = catalogue.label(c["metric"])
            lines.append(f"| `{c['method']}` | {'baseline' if c['against'] == 'baseline' else '`' + c['against'] + '`'}"
                         f" | {metric} | {c.get('direction', '')} | {_signed(c.get('mean_diff'))} | "
                         f"{_interval(c.get('ci'), signed=True)} | {seeds_cell(c)} | {comparison_mark(c)} |")
    return "\n".join(lines) + "\n"
