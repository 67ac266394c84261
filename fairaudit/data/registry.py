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
from fairaudit.options import Setting, describe_settings, parse_values, setting_of
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
    options: dict[str, Any] = field(default_factory=dict)
    """``option → default``; given as :func:`~fairaudit.options.setting` declarations (help, type, range or
    choices), or as plain defaults (the type of the default, any value), and kept as the defaults."""
    splits: tuple[str, ...] = ("train", "test")
    settings: dict[str, Setting] = field(default_factory=dict, compare=False, repr=False)
    """``option → Setting``, filled from ``options``."""

    def __post_init__(self) -> None:
        declared = {name: setting_of(value) for name, value in self.options.items()}
        self.settings = {**declared, **self.settings}
        self.options = {name: s.default for name, s in self.settings.items()}


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
    """Option values (strings from ``--data-opt k=v``) converted to each option's type and checked against its
    range or choices (:func:`fairaudit.options.parse_values`)."""
    known = ", ".join(sorted(spec.options)) or "none"
    return parse_values(spec.settings, dict(options), lambda key: f"option '{key}' of dataset '{spec.name}'",
                        owner=spec.name, error=DatasetError,
                        unknown=lambda key: f"dataset '{spec.name}' has no option '{key}'; options: {known}.")


def option_help(spec: DatasetSpec) -> list[dict[str, Any]]:
    """One row per option of ``spec``, in the shape of :func:`fairaudit.mitigation.config_help`'s rows."""
    return describe_settings(spec.settings)


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
