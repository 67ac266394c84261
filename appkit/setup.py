"""What one audit in the app is made of: data source, model, split, attributes.

An :class:`AuditSetup` is immutable and hashable; :meth:`AuditSetup.key` is a
short stable digest used to key the background pass, the caches and the
threshold-dependent reports, so that any change of dataset, option, model,
split or attribute starts a new pass while returning to an earlier setup is
instant.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any, Mapping

DEMO_DATASET = "synthetic-faces"
DEMO_OPTIONS = {"bias": 0.9}
DEMO_TARGET = "Smiling"
DEMO_SENSITIVE = ("Male",)

SOURCE_DATASET = "dataset"
SOURCE_PREDICTIONS = "predictions"

MODEL_DEMO = "demo"
MODEL_PATH = "path"
MODEL_UPLOAD = "upload"


def _freeze(options: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((options or {}).items()))


@dataclass(frozen=True)
class AuditSetup:
    """Everything that determines the predictions of one audit.

    ``source`` is ``"dataset"`` (a registered dataset plus a model) or
    ``"predictions"`` (a table of existing predictions, no model). Uploaded
    bytes take part in :meth:`key` through their SHA-256 digest.
    """

    source: str = SOURCE_DATASET
    # A registered dataset ...
    dataset: str = DEMO_DATASET
    options: tuple[tuple[str, Any], ...] = _freeze(DEMO_OPTIONS)
    data_dir: str | None = None
    split: str = "test"
    target: str | None = DEMO_TARGET
    sensitive: tuple[str, ...] = DEMO_SENSITIVE
    # ... and the model: the demo model, a checkpoint path or an uploaded checkpoint.
    model: str = MODEL_DEMO
    model_path: str | None = None
    arch: str | None = None
    allow_torchscript: bool = False  # the user accepted running a TorchScript checkpoint's code
    upload_name: str | None = None
    upload_bytes: bytes | None = field(default=None, repr=False)
    sidecar_bytes: bytes | None = field(default=None, repr=False)
    # A predictions table: file name, its bytes and the column mapping.
    table_name: str | None = None
    table_bytes: bytes | None = field(default=None, repr=False)
    label_column: str | None = None
    prediction_column: str | None = None
    score_column: str | None = None

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def is_demo(self) -> bool:
        return self.source == SOURCE_DATASET and self.model == MODEL_DEMO

    def changed_options(self) -> dict[str, Any]:
        """The options that differ from the dataset's defaults (what is worth showing)."""
        from fairaudit.data import get_spec

        defaults = get_spec(self.dataset).options
        return {k: v for k, v in self.options if defaults.get(k) != v}

    def with_options(self, options: Mapping[str, Any]) -> "AuditSetup":
        return replace(self, options=_freeze(options))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description; uploaded bytes are replaced by their digest."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                value = hashlib.sha256(value).hexdigest()
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[f.name] = value
        return out

    def key(self) -> str:
        """A 16-character digest that changes whenever the predictions would."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def data_title(self) -> str:
        """The data part of :meth:`title`, e.g. ``synthetic-faces (bias=0.5) · test``."""
        if self.source == SOURCE_PREDICTIONS:
            return f"predictions from {self.table_name}"
        opts = ", ".join(f"{k}={v}" for k, v in self.changed_options().items())
        return f"{self.dataset} ({opts}) · {self.split}" if opts else f"{self.dataset} · {self.split}"

    def model_title(self) -> str:
        return {MODEL_DEMO: "demo model", MODEL_PATH: f"model {self.model_path}",
                MODEL_UPLOAD: f"model {self.upload_name}"}.get(self.model, self.model)

    def title(self) -> str:
        """A one-line description, e.g. ``synthetic-faces (bias=0.5) · test · demo model`` (default options omitted)."""
        if self.source == SOURCE_PREDICTIONS:
            return self.data_title()
        return f"{self.data_title()} · {self.model_title()}"


def full_options(dataset: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dataset's option defaults overridden by ``options``, so equal choices give equal keys."""
    from fairaudit.data import get_spec

    return {**get_spec(dataset).options, **(options or {})}


@lru_cache(maxsize=1)
def demo_setup() -> AuditSetup:
    """The setup the app opens on: the demo model on synthetic-faces (bias 0.9), Smiling vs Male, test split."""
    return AuditSetup().with_options(full_options(DEMO_DATASET, DEMO_OPTIONS))
