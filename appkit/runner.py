"""The one long pass behind an audit page: data, model, inference.

:func:`run_setup` turns an :class:`~appkit.setup.AuditSetup` into an
:class:`AuditRun` holding the stored predictions. Every threshold, metric and
chart of the page is then computed from those predictions with
:func:`fairaudit.audit.audit_predictions`, so moving the threshold slider
never runs the model again.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from fairaudit.audit import Predictions, predict
from fairaudit.audit.external import predictions_from_frame
from fairaudit.data import load_dataset
from fairaudit.data.base import FairDataset
from fairaudit.errors import FairauditError
from fairaudit.views.gallery import suggest_sensitive
from appkit.setup import MODEL_DEMO, MODEL_PATH, MODEL_UPLOAD, SOURCE_PREDICTIONS, AuditSetup
from fairaudit.progress import Progress


# Share of the progress bar spent training the demo model when it is not cached yet.
TRAIN_SHARE = 0.85


@dataclass
class AuditRun:
    """The outcome of one pass: predictions plus what is needed to show samples."""

    setup: AuditSetup
    predictions: Predictions
    dataset: FairDataset | None  # None for a predictions table
    table: pd.DataFrame | None  # the uploaded predictions table, if any
    model_description: str
    seconds: float

    @property
    def kind(self) -> str:
        return self.dataset.kind if self.dataset is not None else "tabular"

    @property
    def attribute_columns(self) -> list[str]:
        """Columns that can serve as a (second) sensitive attribute."""
        if self.dataset is not None:
            return [c for c in self.dataset.attributes.columns if c != self.dataset.target]
        used = (self.setup.label_column, self.setup.prediction_column, self.setup.score_column)
        return suggest_sensitive(self.table, used)

    @property
    def has_scores(self) -> bool:
        """Whether a decision threshold applies (binary target with probabilities)."""
        probs = self.predictions.probs
        return probs.shape[1] == 2 and not np.all((probs == 0) | (probs == 1))


def read_table(data: bytes, name: str) -> pd.DataFrame:
    """Parse uploaded CSV bytes, with parse errors turned into a :class:`FairauditError`."""
    if not data:
        raise FairauditError(f"the uploaded file '{name}' is empty.")
    try:
        return pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FairauditError(f"cannot read '{name}' as CSV: {str(exc).splitlines()[0]}") from None


def open_dataset(setup: AuditSetup, split: str | None = None) -> FairDataset:
    """The dataset split named by ``setup`` with its target and sensitive attributes selected.

    An empty target or sensitive selection falls back to the dataset's defaults.
    """
    return load_dataset(setup.dataset, split or setup.split, setup.target or None, list(setup.sensitive) or None,
                        setup.data_dir or None, **setup.option_dict)


def load_setup_model(setup: AuditSetup, dataset: FairDataset, progress: Progress | None = None):
    """Return ``(model, description)`` for the model named by ``setup``, validated against ``dataset``.

    The demo model is trained on first use (reported through ``progress``);
    checkpoints must match the dataset's class count and input shape, and a
    TorchScript checkpoint is refused unless ``setup.allow_torchscript``.
    """
    from fairaudit.loading import resolve_model
    from fairaudit.models.upload import load_model_bytes

    if setup.model == MODEL_DEMO:
        def on_train(event: dict) -> None:
            if progress is not None and "fraction" in event:
                epoch = int(event.get("epoch", 0)) + (0 if event.get("event") == "epoch" else 1)
                progress(float(event["fraction"]), f"Training the demo model (first use only) · epoch {epoch}")

        return resolve_model("demo", dataset, data_options=setup.option_dict, data_dir=setup.data_dir,
                             progress=on_train)
    if setup.model == MODEL_PATH:
        if not setup.model_path:
            raise FairauditError("enter the path of a model checkpoint.")
        return resolve_model(setup.model_path, dataset, arch=setup.arch or None,
                             allow_torchscript=setup.allow_torchscript)
    if setup.model == MODEL_UPLOAD:
        if not setup.upload_bytes:
            raise FairauditError("upload a model checkpoint first.")
        model = load_model_bytes(setup.upload_bytes, setup.upload_name or "model.safetensors",
                                 sidecar=setup.sidecar_bytes, arch=setup.arch or None,
                                 expected_num_classes=dataset.num_classes,
                                 expected_input_shape=dataset.input_shape, target=dataset.target,
                                 allow_torchscript=setup.allow_torchscript)
        return model, f"uploaded {setup.upload_name}"
    raise FairauditError(f"unknown model choice '{setup.model}'.")


def run_setup(setup: AuditSetup, progress: Progress | None = None) -> AuditRun:
    """Load data and model, run one inference pass and return the stored predictions."""
    report = progress or (lambda fraction, message="": None)
    start = time.perf_counter()
    if setup.source == SOURCE_PREDICTIONS:
        report(0.1, f"Reading {setup.table_name}")
        table = read_table(setup.table_bytes or b"", setup.table_name or "predictions.csv")
        preds = predictions_from_frame(table, setup.label_column, setup.prediction_column, list(setup.sensitive),
                                       setup.score_column or None, source=setup.table_name or "table")
        return AuditRun(setup, preds, None, table, "external predictions", time.perf_counter() - start)

    report(0.0, f"Loading {setup.dataset} ({setup.split} split)")
    dataset = open_dataset(setup)
    needs_training = setup.model == MODEL_DEMO and not _demo_cached(setup)
    train_share = TRAIN_SHARE if needs_training else 0.0

    def on_model(fraction: float, message: str) -> None:
        report(train_share * fraction, message)

    report(0.0, "Training the demo model (first use only)" if needs_training else "Loading the model")
    model, description = load_setup_model(setup, dataset, on_model)

    def on_batch(done: int, total: int) -> None:
        report(train_share + (1 - train_share) * done / max(total, 1),
               f"Running the model on {total:,} samples · {done:,} done")

    report(train_share, f"Running the model on {len(dataset):,} samples")
    preds = predict(model, dataset, progress=on_batch)
    preds.meta.update({"model": description, "data_options": setup.option_dict})
    return AuditRun(setup, preds, dataset, None, description, time.perf_counter() - start)


def _demo_cached(setup: AuditSetup) -> bool:
    from fairaudit.demo import demo_model_path

    return demo_model_path(setup.dataset, setup.target, setup.option_dict).exists()


def regroup(run: AuditRun, sensitive: Sequence[str]) -> Predictions:
    """The run's predictions grouped by other sensitive attributes, without new inference.

    Used by the intersectional view: the stored probabilities are kept and
    only the group codes are read again from the dataset's attribute table
    (or from the uploaded predictions table).
    """
    sensitive = list(sensitive)
    preds = run.predictions
    if run.dataset is None:
        setup = run.setup
        return predictions_from_frame(run.table, setup.label_column, setup.prediction_column, sensitive,
                                      setup.score_column or None, source=setup.table_name or "table")
    missing = [s for s in sensitive if s not in run.dataset.attributes.columns]
    if missing:
        raise FairauditError(f"dataset '{run.dataset.name}' has no attribute {', '.join(map(repr, missing))}.")
    codes = run.dataset.attributes[sensitive].to_numpy(dtype=np.int64)[preds.indices]
    return Predictions(labels=preds.labels, probs=preds.probs, sensitive=codes, indices=preds.indices,
                       sensitive_names=sensitive, value_names={s: run.dataset.value_names[s] for s in sensitive},
                       class_names=preds.class_names, meta=dict(preds.meta))
