"""The audit engine: streaming inference and disaggregated metrics."""

from fairaudit.audit.engine import audit_predictions, run_audit
from fairaudit.audit.inference import Predictions, iterate_batches, predict

__all__ = ["audit_predictions", "run_audit", "Predictions", "iterate_batches", "predict"]
