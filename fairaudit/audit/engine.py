"""Audit = one inference pass + the metrics engine, with timings and metadata."""

from __future__ import annotations

import time

from fairaudit.audit.inference import Predictions, ProgressFn, predict
from fairaudit.data.base import FairDataset
from fairaudit.device import resolve_device
from fairaudit.metrics import AuditReport, audit_metrics
from fairaudit.seeding import run_metadata


def audit_predictions(preds: Predictions, *, threshold: float = 0.5, n_boot: int = 1000, ci_level: float = 0.95,
                      seed: int = 0, device="auto", min_group_size: int = 1, meta: dict | None = None) -> AuditReport:
    """Metrics for stored predictions: changing ``threshold`` needs no new inference."""
    start = time.perf_counter()
    report = audit_metrics(preds.labels, scores=preds.scores, sensitive=preds.sensitive,
                           sensitive_names=preds.sensitive_names, value_names=preds.value_names,
                           class_names=preds.class_names, threshold=threshold, n_boot=n_boot, ci_level=ci_level,
                           seed=seed, device=device, min_group_size=min_group_size)
    report.meta.update(run_metadata(seed, report.meta["device"]))
    report.meta.update(preds.meta)
    report.meta.update(meta or {})
    report.meta["metrics_seconds"] = time.perf_counter() - start
    return report


def run_audit(dataset: FairDataset, model, *, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0,
              device="auto", batch_size: int | None = None, num_workers: int | None = None,
              with_latents: bool = False, progress: ProgressFn | None = None,
              meta: dict | None = None) -> tuple[AuditReport, Predictions]:
    """Audit ``model`` on ``dataset``; returns the report and the reusable predictions."""
    device = resolve_device(device)
    start = time.perf_counter()
    preds = predict(model, dataset, device=device, batch_size=batch_size, num_workers=num_workers,
                    with_latents=with_latents, progress=progress)
    inference_seconds = time.perf_counter() - start
    report = audit_predictions(preds, threshold=threshold, n_boot=n_boot, seed=seed, device=device,
                               meta={"model": getattr(model, "arch", type(model).__name__),
                                     "sensitive": list(dataset.sensitive), **(meta or {})})
    report.meta["inference_seconds"] = inference_seconds
    report.meta["seconds"] = time.perf_counter() - start
    return report, preds
