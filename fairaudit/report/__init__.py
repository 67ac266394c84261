"""Self-contained HTML (and JSON) audit reports of finished mitigation runs.

``python -m fairaudit report RUN_ID… --html OUT.html [--json OUT.json]`` and
the app's "Download audit report (HTML)" button call :func:`build_report` /
:func:`report_html`. The HTML file embeds plotly.js once, inline, and its
images as data URIs, so it opens offline for someone who never used the app.
"""

from fairaudit.report.html import (AuditReportDocument, ReportOptions, build_report, report_bytes, report_html,
                                   report_tolerances, section_builders)
from fairaudit.report.sections import Section, load_report_run

__all__ = ["AuditReportDocument", "ReportOptions", "Section", "build_report", "load_report_run", "report_bytes",
           "report_html", "report_tolerances", "section_builders"]
