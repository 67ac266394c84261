"""The contract every mitigation method implements.

A method is a class with a ``Config`` dataclass (hyper-parameters with the
papers' defaults; each field's ``metadata["help"]`` is a one-line help shown in
the UI and the CLI) and a ``run(ctx, config)`` that does the work and returns a
:class:`MitigationResult`. Methods never write their own training loop (they
plug a step into :func:`fairaudit.train.fit`) nor their own attack
(:mod:`fairaudit.attacks`). The job runner builds the context, audits the
deployed model before and the mitigated one after on the test split, and
records everything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from torch import nn

from fairaudit.audit.inference import Predictions
from fairaudit.data.base import FairDataset
from fairaudit.errors import FairauditError
from fairaudit.options import coerce_like
from fairaudit.registry import Registry


@dataclass
class MethodContext:
    """What a method may use; built by the job runner."""

    model: nn.Module  # the deployed model (a SplitModel), already on ``device``
    dataset: str
    target: str
    sensitive: list[str]
    data_options: dict[str, Any]
    data_dir: str | None
    device: Any
    workdir: Path  # artefacts of this run go here
    progress: Callable[[dict], None] = lambda event: None  # same events as fit(); "fraction" in [0, 1]
    should_stop: Callable[[], bool] = lambda: False
    checkpoint_path: Path | None = None  # pass to TrainConfig(checkpoint_path=...) to allow resuming
    resume: bool = False
    seed: int = 0
    splits_used: dict[str, str] = field(default_factory=dict)  # stage -> split, filled by load_split

    def load_split(self, split: str, stage: str = "fit") -> FairDataset:
        """Split ``split`` of the job's dataset, recorded as what ``stage`` used (the run JSON's
        ``splits_used``). A method fits only on ``train`` or ``val``: ``stage="fit"`` refuses ``test``;
        other stages (e.g. ``"perturbation_stats"``) may read it to describe the result."""
        from fairaudit.data import load_dataset

        if stage == "fit" and split == "test":
            raise FairauditError(f"a method cannot fit on the test split of '{self.dataset}', because the result "
                                 "is measured there; fit on 'train' or 'val'.")
        self.splits_used.setdefault(stage, split)
        return load_dataset(self.dataset, split, self.target, self.sensitive, self.data_dir, **self.data_options)


@dataclass
class MitigationResult:
    """What a method hands back: an ``after_model`` to audit like any model, or ready ``after_predictions``
    (post-processing methods), plus artefact paths and method-specific statistics."""

    after_model: nn.Module | None = None
    after_predictions: Callable[[FairDataset], Predictions] | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


FIT_SPLITS = ("train", "val")


def check_fit_split(requested: str, method: str, setting_name: str = "train_split") -> None:
    """Refuse a fit split other than ``train`` or ``val``: the test split is kept for measuring the result."""
    if requested == "test":
        raise FairauditError(f"{method} cannot fit on the test split ({setting_name}='test'), because the result "
                             "is measured there; use 'train' or 'val'.")
    if requested not in FIT_SPLITS:
        raise FairauditError(f"{method} setting '{setting_name}' must be 'train' or 'val', got '{requested}'.")


def fit_split(ctx: MethodContext, requested: str, method: str, setting_name: str = "train_split") -> str:
    """The split a method fits on: ``requested`` (``train`` or ``val``; ``val`` falls back to ``train`` for a
    dataset without one); see :func:`check_fit_split`."""
    from fairaudit.data import get_spec

    check_fit_split(requested, method, setting_name)
    return requested if requested in get_spec(ctx.dataset).splits else "train"


def setting(default: Any, help: str):
    """A ``Config`` field with its one-line help (shown by the UI and ``--list-settings``)."""
    return field(default=default, metadata={"help": help})


class MitigationMethod:
    name: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type]
    kinds: ClassVar[tuple[str, ...]] = ("image", "tabular")
    controls: ClassVar[dict[str, dict[str, Any] | str]] = {}
    """What ``fairaudit benchmark --controls`` runs beside the method to show that its mechanism causes the
    effect: ``name → {setting: value}`` (the method with that part removed, a row ``method[name]``) or
    ``name → "other_method"`` (another registered method, e.g. ``"erm"``)."""
    target_metrics: ClassVar[tuple[str, ...]] = ("deo",)
    """The metrics the method claims to improve; the benchmark compares them (and accuracy) against the
    baseline and the controls."""

    def run(self, ctx: MethodContext, config) -> MitigationResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def threat_model(self, config):
        """The :class:`fairaudit.robustness.ThreatModel` a job measures this method's S_R under (before and
        after), or ``None`` for the job's default (FGSM and PGD-10 on the numeric features, true labels)."""
        return None


def _load_methods() -> None:
    from fairaudit import mitigation  # noqa: F401  (importing the package registers the built-in methods)


METHODS: Registry[type[MitigationMethod]] = Registry("mitigation method", load=_load_methods)
RENAMES: dict[str, Callable[[Mapping[str, Any]], "str | None"]] = {}
"""Method names whose meaning changed: ``name → resolve(recorded settings)`` (see :func:`register_rename`)."""


def register_method(cls: type[MitigationMethod]) -> type[MitigationMethod]:
    """Add ``cls`` to the registry under ``cls.name``; a second, different class of the same name is refused."""
    return METHODS.register(cls.name, cls)


def register_rename(name: str, resolve: Callable[[Mapping[str, Any]], "str | None"]) -> None:
    """Keep runs recorded before method ``name`` changed meaning loadable.

    ``resolve(recorded)`` receives an old record's settings (its full
    configuration where the run stored one) and returns the method that
    record actually ran, or ``None`` when it is today's ``name``. One rename
    per name.
    """
    if name in RENAMES:
        raise FairauditError(f"method name '{name}' already has a rename rule.")
    RENAMES[name] = resolve


def recorded_method(name: str, recorded: Mapping[str, Any] | None) -> str:
    """The method a record of ``name`` with settings/configuration ``recorded`` ran (see :func:`register_rename`)."""
    from fairaudit import mitigation  # noqa: F401  (registers the built-in methods and their renames)

    resolve = RENAMES.get(name)
    return (resolve(dict(recorded or {})) or name) if resolve is not None else name


def get_method(name: str) -> type[MitigationMethod]:
    return METHODS[name]


def make_config(method: type[MitigationMethod], overrides: dict[str, Any] | None = None):
    """Build ``method.Config`` from defaults plus ``key=value`` overrides (strings are coerced)."""
    fields = {f.name: f for f in dataclasses.fields(method.Config)}
    values = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise FairauditError(f"method '{method.name}' has no setting '{key}'; settings: {', '.join(fields)}.")
        value = coerce_like(value, fields[key].default, f"setting '{key}' of '{method.name}'")
        values[key] = value
    config = method.Config(**values)
    validate = getattr(config, "validate", None)
    if validate:
        validate()
    return config


def config_help(method: type[MitigationMethod]) -> list[dict[str, Any]]:
    """``[{name, default, help}]`` for the UI form and ``--help``."""
    return [{"name": f.name, "default": f.default, "help": f.metadata.get("help", "")}
            for f in dataclasses.fields(method.Config)]
