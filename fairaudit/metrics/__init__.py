"""Group-fairness metrics: per-group rates, disparities and bootstrap intervals.

Everything is derived from per-group confusion matrices held in one tensor
(``confusion``), so point estimates and Poisson-bootstrap replicates share the
same code (``rates``) and run vectorised on the CPU or a GPU::

    from fairaudit.metrics import audit_metrics
    report = audit_metrics(y_true, scores=p, sensitive=s, sensitive_names=["Male", "Young"])
    report.disparities["spd"], report.ci["spd"], report.groups_frame()

:class:`GroupMetrics` accumulates the same counts batch by batch inside an
evaluation loop (and across processes) and reports through the same code.
"""

from fairaudit.metrics.audit import audit_metrics
from fairaudit.metrics.rates import DISPARITY_NAMES, OVERALL_METRICS, PER_GROUP_METRICS, summarize
from fairaudit.metrics.report import AuditReport
from fairaudit.metrics.streaming import GroupMetrics

__all__ = ["audit_metrics", "AuditReport", "GroupMetrics", "PER_GROUP_METRICS", "DISPARITY_NAMES", "OVERALL_METRICS", "summarize"]
