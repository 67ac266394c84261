"""One registry of datasets, like torchvision's model builders.

Each entry is a :class:`DatasetSpec`; its ``builder(split, data_dir, **options)``
returns a :class:`~fairaudit.data.base.FairDataset`. :func:`load_dataset` is the
only entry point the app and the CLI use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from fairaudit.data.base import FairDataset
from fairaudit.errors import DatasetError
from fairaudit.options import coerce_like
from fairaudit.registry import Registry


@dataclass
class DatasetSpec:
    name: str
    builder: Callable[..., FairDataset]
    kind: str  # "image" | "tabular"
    description: str
    default_target: str
    default_sensitive: list[str]
    embedded: bool = True  # False: needs a user-given ``data_dir``
    options: dict[str, Any] = field(default_factory=dict)  # option -> default (type used for parsing)
    splits: tuple[str, ...] = ("train", "test")


def _ensure_loaded() -> None:
    # Importing the loader modules registers them.
    from fairaudit.data import embedded, folders  # noqa: F401


DATASETS: Registry[DatasetSpec] = Registry("dataset", error=DatasetError, load=_ensure_loaded)


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset; a different dataset under a taken name is refused."""
    return DATASETS.register(spec.name, spec)


def list_datasets() -> list[DatasetSpec]:
    return list(DATASETS.values())


def get_spec(name: str) -> DatasetSpec:
    return DATASETS[name]


def parse_options(spec: DatasetSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Coerce option values (strings from ``--data-opt k=v``) to the default's type."""
    parsed = {}
    for key, value in options.items():
        if key not in spec.options:
            known = ", ".join(sorted(spec.options)) or "none"
            raise DatasetError(f"dataset '{spec.name}' has no option '{key}'; options: {known}.")
        value = coerce_like(value, spec.options[key], f"option '{key}' of dataset '{spec.name}'")
        parsed[key] = value
    return parsed


def load_dataset(name: str, split: str = "test", target: str | None = None,
                 sensitive: Sequence[str] | str | None = None, data_dir: str | Path | None = None,
                 **options: Any) -> FairDataset:
    """Build a split of a registered dataset and select target / sensitive attributes."""
    spec = get_spec(name)
    if split not in spec.splits:
        raise DatasetError(f"dataset '{name}' has no split '{split}'; splits: {', '.join(spec.splits)}.")
    if not spec.embedded:
        if data_dir is None:
            raise DatasetError(f"dataset '{name}' is read from a local folder: pass --data-dir PATH.")
        data_dir = Path(data_dir).expanduser()
        if not data_dir.exists():
            raise DatasetError(f"data folder '{data_dir}' does not exist.")
    opts = parse_options(spec, options)
    ds = spec.builder(split=split, data_dir=data_dir, **opts)
    return ds.select(target, sensitive)
