"""The report's "Slices before → after" part of each run (inside the Metrics section).

It shows what the run recorded in its ``slices`` block (:mod:`fairaudit.slices.compare`): the
worst slice before with its gap to the rest before and after, and the top slices after, as
the same table the Run page shows (:func:`fairaudit.views.slices_compare.slices_table`), with a
chart of the gaps and a sentence on whether the harm moved. Nothing is recomputed.
"""

from __future__ import annotations

from typing import Any, Mapping

NO_SLICES = "this run recorded no slices"


def slices_part(run: Mapping[str, Any]) -> tuple[list, dict[str, Any]]:
    """``(blocks, data)`` of one run: HTML blocks and plotly figure for the report, and the JSON of the same."""
    from fairaudit.report.sections import esc, note_html, paragraph, records, table_html
    from fairaudit.views.slices_compare import available, metric_label, slices_chart, slices_summary, slices_table

    title = "<h4>Slices before → after</h4>"
    block = run.get("slices")
    if not block:
        return [title, note_html(f"Not available: {NO_SLICES}.")], {"available": False, "reason": NO_SLICES}
    if not available(block):
        reason = block.get("reason") or NO_SLICES
        return [title, note_html(f"Not available: {reason}")], {"available": False, "reason": reason}
    table = slices_table(block)
    summary = slices_summary(block)
    settings = {k: block.get(k) for k in ("metric", "direction", "max_depth", "min_size", "n_boot", "alpha", "seed",
                                          "n_rows", "attributes", "left_out", "n_slices_tested", "n_significant")}
    text = (f"{metric_label(block)} of every slice of up to {block['max_depth']} attribute values with at least "
            f"{block['min_size']:,} test rows against the rest of the {block['n_rows']:,} rows, on the same rows "
            f"before and after; {block['n_slices_tested']['before']:,} slices tested (Benjamini–Hochberg, FDR "
            f"{block['alpha']:g}); not sliced on: {', '.join(block.get('left_out') or []) or 'none'}.")
    blocks = [title, paragraph(summary), f'<p class="meta">{esc(text)}</p>',
              table_html(table, formats={"q before": ".2e", "q after": ".2e", "Gap before": "+.3f",
                                            "Gap after": "+.3f", "Gap change": "+.3f"})]
    if not table.empty:
        blocks.append(slices_chart(table, block, height=max(240, 48 * len(table) + 90)))
    return blocks, {"available": True, "summary": summary, "table": records(table), "settings": settings,
                    "worst_before_after": block.get("worst_before_after"), "before": block.get("before"),
                    "after": block.get("after")}
