"""A self-contained audit report of finished mitigation runs: one HTML file, readable offline.

:func:`build_report` computes the sections of :mod:`fairaudit.report.sections`
for one or more runs; the :class:`AuditReportDocument` it returns renders them
as a single HTML file (plotly.js embedded once, inline; images as base64
data URIs; no external URL is loaded) or as JSON with the same content.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import plotly.graph_objects as go
import plotly.io as pio

from fairaudit.errors import FairauditError
from fairaudit.progress import Progress
from fairaudit.report import sections as S


PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
"""No "produced with plotly" link: the report links to nothing outside itself."""

STYLE = """
body { font-family: Inter, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2937; margin: 0; background: #f8fafc; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
header { border-bottom: 2px solid #e5e7eb; margin-bottom: 16px; }
h1 { font-size: 1.7em; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.35em; margin-top: 2em; border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; }
h3 { font-size: 1.1em; margin-top: 1.4em; }
h4 { font-size: 0.98em; margin: 1em 0 0.4em; color: #374151; }
nav ol { columns: 2; font-size: 0.95em; }
nav a { color: #1d4ed8; text-decoration: none; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.86em; margin: 6px 0 12px; }
th, td { border: 1px solid #e5e7eb; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
td.pass { background: #dcfce7; color: #166534; font-weight: 600; }
td.fail { background: #fee2e2; color: #991b1b; font-weight: 600; }
.note { color: #6b7280; font-style: italic; }
.flag { background: #fef3c7; border-left: 4px solid #d97706; color: #78350f; padding: 6px 12px; margin: 6px 0 12px; }
.flag ul, .flag p { margin: 4px 0; }
.meta { color: #4b5563; font-size: 0.92em; }
pre { background: #f3f4f6; padding: 8px; white-space: pre-wrap; word-break: break-all; font-size: 0.85em; }
.image-grid { display: grid; gap: 6px; justify-content: start; }
.image-grid figure { margin: 0; text-align: center; font-size: 0.75em; color: #4b5563; }
.image-grid img { width: 96px; height: 96px; image-rendering: pixelated; display: block; }
"""

@dataclass
class ReportOptions:
    """What goes into a report.

    ``explain`` / ``embed`` switch off the sections that cost seconds
    (attribution maps, 2-D embeddings); ``samples`` is the embedding sample
    size; ``tolerances`` maps a disparity name (or a kind: ``gap``, ``ratio``,
    ``floor``) to its limit, as on the Audit page.
    """

    explain: bool = True
    embed: bool = True
    samples: int = 2000
    tolerances: dict[str, float] = field(default_factory=dict)
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 10:
            raise FairauditError(f"the embedding sample size must be an integer ≥ 10, got {self.samples!r}.")
        for name, value in (self.tolerances or {}).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= float(value) <= 1:
                raise FairauditError(f"tolerance '{name}' must be a number in [0, 1], got {value!r}.")


@dataclass
class AuditReportDocument:
    """The computed sections of a report, ready to be written as HTML or JSON."""

    run_ids: list[str]
    sections: list[S.Section]
    options: ReportOptions
    generated: str

    @property
    def title(self) -> str:
        return "fairaudit report · " + (f"run {self.run_ids[0]}" if len(self.run_ids) == 1
                                        else f"{len(self.run_ids)} runs")

    def section(self, key: str) -> S.Section:
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """The report as data: ``runs``, ``generated``, ``options``, ``versions`` and one entry per section."""
        from fairaudit.jobs.execute import library_versions

        return {"title": self.title, "runs": list(self.run_ids), "generated": self.generated,
                "options": {"explain": self.options.explain, "embed": self.options.embed,
                            "samples": self.options.samples, "tolerances": dict(self.options.tolerances)},
                "versions": library_versions(),
                "sections": {s.key: s.to_dict() for s in self.sections}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default, allow_nan=False)

    def to_html(self) -> str:
        """One HTML document: plotly.js inline once, every figure drawn from it, nothing fetched."""
        from plotly.offline import get_plotlyjs

        from fairaudit import __version__

        body, toc = [], []
        figure_count = 0
        for section in self.sections:
            toc.append(f'<li><a href="#{section.key}">{S.esc(section.title)}</a></li>')
            parts = [f'<section id="{section.key}"><h2>{S.esc(section.title)}</h2>']
            for block in section.blocks:
                if isinstance(block, go.Figure):
                    figure_count += 1
                    parts.append(pio.to_html(block, include_plotlyjs=False, full_html=False,
                                             config=PLOTLY_CONFIG, div_id=f"figure-{figure_count}",
                                             default_width="100%"))
                else:
                    parts.append(block)
            parts.append("</section>")
            body.append("".join(parts))
        runs = ", ".join(self.run_ids)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"generator\" content=\"fairaudit {S.esc(__version__)}\">"
            f"<title>{S.esc(self.title)}</title><style>{STYLE}</style>"
            f'<script type="text/javascript" id="plotly-js">{get_plotlyjs()}</script></head>'
            f"<body><main><header><h1>Fairness audit report</h1>"
            f'<p class="meta">Runs {S.esc(runs)} · generated {S.esc(self.generated)} by fairaudit '
            f"{S.esc(__version__)}. This file is self-contained: it opens offline, interactive charts "
            f"included.</p></header><nav><ol>{''.join(toc)}</ol></nav>{''.join(body)}</main></body></html>\n")

    def write_html(self, path: str | os.PathLike) -> Path:
        return _write_atomic(self.to_html(), path)

    def write_json(self, path: str | os.PathLike) -> Path:
        return _write_atomic(self.to_json(), path)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _write_atomic(text: str, path: str | os.PathLike) -> Path:
    from fairaudit.io_safety import write_text_atomic

    return write_text_atomic(path, text)


def section_builders(options: ReportOptions) -> list[tuple[str, Callable[[list[dict]], S.Section]]]:
    """``(title, function of the runs)`` of every section, in report order."""
    return [
        ("Data and models", S.overview_section),
        ("Metrics", S.metrics_section),
        ("Verdicts", lambda runs: S.verdicts_section(runs, options.tolerances)),
        ("Splits", S.splits_section),
        ("Robustness", S.robustness_section),
        ("Explanations", lambda runs: S.explanations_section(runs, enabled=options.explain, device=options.device,
                                                             seed=options.seed)),
        ("Perturbations", S.perturbations_section),
        ("Embeddings", lambda runs: S.embeddings_section(runs, enabled=options.embed, samples=options.samples,
                                                         device=options.device, seed=options.seed)),
        ("Trade-off", S.tradeoff_section),
        ("Training", S.training_section),
        ("Configuration", S.configuration_section),
    ]


def build_report(run_ids: Sequence[str], *, options: ReportOptions | None = None,
                 progress: Progress | None = None, **kwargs: Any) -> AuditReportDocument:
    """Compute every section of the report of the finished runs ``run_ids``.

    Options are given as a :class:`ReportOptions` or as its fields
    (``explain=False``, ``embed=False``, ``samples=500``, ``tolerances={...}``,
    ``device``, ``seed``). Raises :class:`FairauditError` for an unknown run, a
    run that is not done, or no run at all; a section whose module is missing
    or fails says so in the report instead.
    """
    if options is None:
        options = ReportOptions(**kwargs)
    elif kwargs:
        raise FairauditError("give report options either as a ReportOptions or as keywords, not both.")
    ids = list(dict.fromkeys(str(r) for r in run_ids))
    if not ids:
        raise FairauditError("name at least one run to report on.")
    runs = [S.load_report_run(run_id) for run_id in ids]
    builders = section_builders(options)
    built = []
    for done, (title, builder) in enumerate(builders, start=1):
        built.append(builder(runs))
        if progress is not None:
            progress(done / len(builders), title)  # the share of sections built and the last one's title
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return AuditReportDocument(ids, built, options, generated)


def report_html(run_ids: Sequence[str], **options: Any) -> str:
    """The HTML report of ``run_ids`` as a string (what the app offers for download)."""
    return build_report(run_ids, **options).to_html()


def report_bytes(run_ids: Sequence[str], **options: Any) -> bytes:
    """:func:`report_html` encoded as UTF-8, for a download button."""
    return report_html(run_ids, **options).encode("utf-8")


def report_tolerances(values: Mapping[str, Any] | None) -> dict[str, float]:
    """Tolerances from ``name=value`` pairs (CLI) checked against the known disparities and kinds."""
    from fairaudit.views.tables import DISPARITIES

    known = {info.name for info in DISPARITIES} | {"gap", "ratio", "floor"}
    out = {}
    for name, value in (values or {}).items():
        if name not in known:
            raise FairauditError(f"unknown tolerance '{name}'; use one of {', '.join(sorted(known))}.")
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            raise FairauditError(f"tolerance '{name}' must be a number, got {value!r}.") from None
    return out
