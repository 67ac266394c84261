"""The HTML report of a face-recognition audit: the page's sections in one self-contained file.

Identification and verification tables with intervals, the gallery's composition, score distributions, DET
curves, the gallery-composition sweep (when measured) and each group's missed probes beside their wrong match.
plotly.js is embedded once, inline, and the images as base64, so the file opens offline.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import plotly.io as pio

from fairaudit.faces.audit import FaceAudit, gallery_composition
from fairaudit.faces.charts import ci_text, det_curves, score_distributions, sweep_chart
from fairaudit.report import sections as S
from fairaudit.report.html import PLOTLY_CONFIG, STYLE, _write_atomic

__all__ = ["face_report_html", "write_face_report"]

SECTIONS = ("Identification", "Verification", "Gallery composition", "Score distributions", "DET curves",
            "Gallery sweep", "Missed probes")


def _identification(audit: FaceAudit) -> list:
    summary = audit.identification.summary
    rows = []
    for group, e in summary["groups"].items():
        row = {"group": group, "probes": e["n_probes"], "people": e["n_identities"]}
        for k in summary["ranks"]:
            row[f"rank-{k}"] = e[f"rank{k}"]
            row[f"rank-{k} CI"] = ci_text(e["ci"].get(f"rank{k}"))
        row["L2 ratio"] = e["l2_ratio"]
        row["error ratio"] = summary["error_ratio"]["per_group"][group]
        rows.append(row)
    ratio = summary["error_ratio"]
    text = (f"Leave-one-out search by cosine similarity. Error ratio (1 − rank-1) / (1 − rank-1 of the best group, "
            f"{ratio['best_group']}): worst {ratio['max']:.2f}, {ci_text(ratio.get('max_ci'))}."
            if ratio["max"] is not None else "Leave-one-out search by cosine similarity.")
    return [S.paragraph(text), S.table_html(pd.DataFrame(rows))]


def _verification(audit: FaceAudit) -> list:
    v = audit.verification.summary
    rows = [{"group": g, "FNMR": e["fnmr"], "FNMR CI": ci_text(e["ci"].get("fnmr")), "FMR": e["fmr"],
             "FMR CI": ci_text(e["ci"].get("fmr"), ".2e"), "genuine pairs": e["n_genuine"],
             "impostor pairs": e["n_impostor"]} for g, e in v["groups"].items()]
    ratios = ", ".join(f"{r.upper()} worst / best {v[f'{r}_ratio']:.2f} ({ci_text(v.get(f'{r}_ratio_ci'))})"
                       for r in ("fnmr", "fmr") if v[f"{r}_ratio"] is not None)
    text = (f"Global threshold {v['threshold']:.4f} for a false-match rate of {v['target_fmr']:g} over all "
            f"{v['n_impostor']:,} impostor pairs (measured {v['overall_fmr']:.2e}); FMR per group counts the "
            f"impostor pairs within the group. {ratios}.")
    return [S.paragraph(text), S.table_html(pd.DataFrame(rows), formats={"FMR": ".2e"})]


def _composition(audit: FaceAudit) -> str:
    rows = [{"group": group, "identities": e["identities"], "images": e["images"],
             "images per identity": e["images_per_identity"]}
            for group, e in gallery_composition(audit.embeddings).items()]
    return S.table_html(pd.DataFrame(rows), fmt=".1f")


def _missed(audit: FaceAudit, dataset, per_group: int = 4) -> list:
    from fairaudit.views.gallery import to_image

    blocks = []
    names = dataset.value_names["identity"]
    for group in audit.identification.group_names:
        pairs = audit.identification.failed(group, per_group)
        blocks.append(S.heading(group, 3))
        if not pairs:
            blocks.append(S.paragraph("No probe was missed at rank 1."))
            continue
        images, captions = [], []
        for probe, match in pairs:
            images += [to_image(dataset[probe][0]), to_image(dataset[match][0])]
            captions += [f"probe {names[dataset.identities[probe]]}", f"matched {names[dataset.identities[match]]}"]
        blocks.append(S.image_grid_html(images, captions, per_row=8))
    return blocks


def face_report_html(audit: FaceAudit, dataset) -> str:
    from plotly.offline import get_plotlyjs

    from fairaudit import __version__

    groups = audit.embeddings.group_names
    content = {
        "Identification": _identification(audit),
        "Verification": _verification(audit),
        "Gallery composition": [_composition(audit)],
        "Score distributions": [score_distributions(audit.verification, groups)],
        "DET curves": [det_curves(audit.verification, groups)],
        "Gallery sweep": ([sweep_chart(audit.sweep)] if audit.sweep is not None
                          else [S.note_html("Not measured: run identify with --gallery-sweep ids or images.")]),
        "Missed probes": _missed(audit, dataset),
    }
    body, toc, n = [], [], 0
    for i, title in enumerate(SECTIONS):
        key = f"faces-{i}"
        toc.append(f'<li><a href="#{key}">{S.esc(title)}</a></li>')
        parts = [f'<section id="{key}"><h2>{S.esc(title)}</h2>']
        for block in content[title]:
            if isinstance(block, str):
                parts.append(block)
            else:
                n += 1
                parts.append(pio.to_html(block, include_plotlyjs=False, full_html=False, config=PLOTLY_CONFIG,
                                         div_id=f"figure-{n}", default_width="100%"))
        body.append("".join(parts) + "</section>")
    meta = audit.meta
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>fairaudit face-recognition report</title><style>{STYLE}</style>"
            f'<script type="text/javascript" id="plotly-js">{get_plotlyjs()}</script></head>'
            f"<body><main><header><h1>Face-recognition audit</h1>"
            f'<p class="meta">{S.esc(meta.get("dataset"))} / {S.esc(meta.get("split"))} · model '
            f'{S.esc(meta.get("model"))} · by {S.esc(", ".join(meta.get("sensitive", [])))} · generated '
            f"{S.esc(generated)} by fairaudit {S.esc(__version__)}; self-contained, opens offline.</p></header>"
            f"<nav><ol>{''.join(toc)}</ol></nav>{''.join(body)}</main></body></html>\n")


def write_face_report(audit: FaceAudit, dataset, path: str | os.PathLike) -> Path:
    return _write_atomic(face_report_html(audit, dataset), path)
