"""The contract every mitigation method implements.

A method is a class with a ``Config`` dataclass (hyper-parameters with the
papers' defaults, each declared with :func:`setting`: a one-line help, its type and
its range or choices, from which the checks, the CLI listing and the app's form
are generated) and a ``run(ctx, config)`` that does the work and returns a
:class:`MitigationResult`. Methods never write their own training loop (they
plug a step into :func:`fairaudit.train.fit`) nor their own attack
(:mod:`fairaudit.attacks`). The job runner builds the context, audits the
deployed model before and the mitigated one after on the test split, and
records everything.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from torch import nn

from fairaudit.audit.inference import Predictions
from fairaudit.data.base import FairDataset
from fairaudit.errors import FairauditError
from fairaudit.options import Setting, parse_values, setting, setting_of  # noqa: F401  (setting: for Configs)
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
    checkpoint_path: Path | None = None  # where stage checkpoints go (see fit); None: no checkpoints
    resume: bool = False
    seed: int = 0
    splits_used: dict[str, str] = field(default_factory=dict)  # stage -> split, filled by load_split
    resumed_from: dict[str, int] | None = None  # {"stage", "epoch"} a resumed run continued from, set by fit
    _written: set = field(default_factory=set, repr=False)  # checkpoints this process wrote (not resumed from)

    # ------------------------------------------------------------------ training

    def stage_checkpoint(self, stage: tuple[int, int] = (0, 1), name: str | None = None) -> Path | None:
        """The checkpoint file of training stage ``stage = (k, n)``: the run's ``checkpoint.pt`` for a
        one-stage method, ``checkpoint.stage<k+1>.pt`` beside it otherwise, or ``checkpoint.<name>.pt``."""
        if self.checkpoint_path is None:
            return None
        path = Path(self.checkpoint_path)
        if name is None and stage[1] <= 1:
            return path
        tag = name if name is not None else f"stage{stage[0] + 1}"
        return path.with_name(f"{path.stem}.{tag}{path.suffix}")

    def checkpoint_epoch(self, stage: tuple[int, int] = (0, 1), name: str | None = None) -> int:
        """The number of epochs of ``stage`` a resumed run already holds in its checkpoint (0 when the run is
        not resumed or the stage has no checkpoint yet)."""
        path = self.stage_checkpoint(stage, name)
        if not (self.resume and path is not None and path.exists()):
            return 0
        import torch

        return int(torch.load(path, map_location="cpu", weights_only=True).get("epoch", 0))

    def fit(self, model: nn.Module, data, step_fn: Callable | None = None, *, settings: Any = None,
            stage: tuple[int, int] = (0, 1), span: tuple[float, float] | None = None,
            state: Mapping[str, Any] | None = None, params=None, val_fn=None, checkpoint: bool | str = True,
            resume: bool | None = None, prefix: str = "", progress: Callable[[dict], None] | None = None,
            **overrides) -> list[dict]:
        """Train ``model`` on ``data`` with the one training loop (:func:`fairaudit.train.fit`), wired to this
        run; returns the per-epoch history.

        The loop's configuration is read from the method's ``settings`` (its
        ``epochs``, ``batch_size``, ``lr`` and ``weight_decay`` where it has
        them) and then from ``overrides`` (any :class:`~fairaudit.train.TrainConfig`
        field, e.g. ``epochs=config.bias_epochs`` or ``sampler_weights``); the
        seed is the run's unless overridden. This call always wires the
        device, cancellation (``should_stop``), progress and checkpoints:

        * ``stage = (k, n)``: this is training stage ``k`` (from 0) of ``n``; its
          progress ``fraction`` is mapped into ``[k/n, (k+1)/n]`` of the method's
          (or into ``span``) and its events carry ``stage`` (from 1) and ``stages``;
        * every stage checkpoints after each epoch into its own file
          (:meth:`stage_checkpoint`; ``checkpoint=name`` picks a named file,
          ``checkpoint=False`` none, for a small helper network a resumed run simply
          trains again), together with ``state``: the objects with
          ``state_dict()`` / ``load_state_dict()`` the step updates itself (a
          discriminator, its optimiser, an adversary, a probe);
        * a resumed run (``ctx.resume``, or ``resume=True`` to continue a stage's own
          checkpoint across rounds) restores model, optimiser, ``state`` and the random
          streams from the stage's checkpoint and trains only the missing epochs; a
          stage that had finished returns at once. The furthest ``(stage, epoch)``
          continued from is recorded in :attr:`resumed_from` (the run JSON's
          ``resumed_from``).

        ``prefix`` renames the events (``bias_step``, ``bias_loss``) so that a
        helper network's training is not recorded as the target model's epochs;
        ``progress`` receives the (mapped) events instead of the run's ``progress``,
        for a method that watches its own training and forwards them.
        """
        from fairaudit.train import TrainConfig, cross_entropy_step
        from fairaudit.train import fit as train_fit

        values: dict[str, Any] = {name: getattr(settings, name) for name in ("epochs", "batch_size", "lr",
                                                                            "weight_decay")
                                  if settings is not None and hasattr(settings, name)}
        values["seed"] = self.seed
        values.update(overrides)
        path = None if checkpoint is False else self.stage_checkpoint(
            stage, checkpoint if isinstance(checkpoint, str) else None)
        config = TrainConfig(**values, checkpoint_path=str(path) if path is not None else None)
        resume = self.resume if resume is None else resume
        resume_from = path if resume and path is not None and path.exists() else None
        if resume_from is not None and self.resume and path not in self._written:
            import torch

            epoch = int(torch.load(resume_from, map_location="cpu", weights_only=True).get("epoch", 0))
            here = {"stage": stage[0] + 1, "epoch": epoch}
            if epoch and (self.resumed_from is None
                          or (here["stage"], epoch) >= (self.resumed_from["stage"], self.resumed_from["epoch"])):
                self.resumed_from = here
        low, high = span if span is not None else (stage[0] / stage[1], (stage[0] + 1) / stage[1])
        progress = progress or self.progress

        def label(event: dict) -> None:
            event = dict(event)
            if stage[1] > 1:
                event.update(stage=stage[0] + 1, stages=stage[1])
            if prefix:
                event["event"] = prefix + str(event.get("event", ""))
                if "loss" in event:
                    event[prefix + "loss"] = event.pop("loss")
            progress(event)

        report = rescaled_progress(label, low, high)

        if path is not None:
            self._written.add(path)
        return train_fit(model, data, config, device=self.device, step_fn=step_fn or cross_entropy_step,
                         params=params, val_fn=val_fn, progress=report, should_stop=self.should_stop,
                         resume_from=resume_from, extra_state=dict(state or {}))

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


def rescaled_progress(progress: Callable[[dict], None], start: float, end: float) -> Callable[[dict], None]:
    """Forward progress events with their ``fraction`` (in [0, 1]) mapped into ``[start, end]``: the one way a
    part of a method (a stage, a pre-processing pass) reports into the method's overall progress."""
    def emit(event: dict) -> None:
        progress({**event, "fraction": start + (end - start) * min(1.0, max(0.0, float(event.get("fraction", 0.0))))})

    return emit


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
TEST_SPLIT_REFUSED = {"test": "{owner} cannot fit on the test split ({name}='test'), because the result is measured "
                              "there; use 'train' or 'val'."}
"""``refuse=`` of a fit-split setting (``choices=FIT_SPLITS``): the test split gets its own sentence."""


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


def config_settings(config: Any) -> dict[str, Setting]:
    """``name → Setting`` of a ``Config`` dataclass (or an instance), in declaration order."""
    return {f.name: setting_of(f) for f in dataclasses.fields(config)}


def _what(method_name: str) -> Callable[[str], str]:
    return lambda key: f"setting '{key}' of '{method_name}'"


def check_config(config: Any, method_name: str) -> None:
    """Check every field of a built ``config`` against its declaration (range, choices), then the
    ``Config``'s own ``validate()`` (the rules between fields that a single declaration cannot say)."""
    parse_values(config_settings(config), {f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
                 _what(method_name), owner=method_name)
    validate = getattr(config, "validate", None)
    if validate:
        validate()


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
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    """Named sets of settings a form or ``--preset`` starts from: ``quick`` (a short demo run: few epochs;
    :mod:`fairaudit.jobs.estimate` says how long on this device) and ``paper`` (the settings the method's paper publishes); explicit settings override
    them (see :func:`preset_settings`)."""
    work_unit: ClassVar[str] = "step"
    """The progress event that marks one unit of the method's work (an optimiser step of the trained model by
    default); the duration estimate times a few of them and multiplies by :meth:`work`."""
    work_settings: ClassVar[tuple[str, ...]] = ("epochs",)
    """Settings that change only how many units of work a run does, not what one costs (so one timing of the
    unit serves every value of them)."""

    def work(self, config, sizes: Mapping[str, int]) -> int | None:
        """How many units of work (:attr:`work_unit` events) the settings ``config`` imply, given the rows of
        each split (``sizes``): ``epochs × ⌈rows of the fitted split / batch_size⌉`` by default. ``None``:
        the method has no countable unit, and its duration is measured by running it whole."""
        epochs, batch = getattr(config, "epochs", None), getattr(config, "batch_size", None)
        if not epochs or not batch:
            return None
        split = getattr(config, "train_split", "train")
        rows = sizes.get(split) or sizes.get("train") or 0
        return int(epochs) * math.ceil(rows / int(batch))

    def __init_subclass__(cls, **kwargs) -> None:
        """A method that names no presets but trains for ``epochs`` gets ``quick``: one epoch."""
        super().__init_subclass__(**kwargs)
        config = cls.__dict__.get("Config")
        if "presets" not in cls.__dict__ and config is not None and not any(
                "presets" in base.__dict__ for base in cls.__mro__[1:-1] if base is not MitigationMethod) and \
                "epochs" in {f.name for f in dataclasses.fields(config)}:
            cls.presets = {"quick": {"epochs": 1}}

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
    """Build ``method.Config`` from defaults plus ``key=value`` overrides (strings are coerced to each
    setting's type), checked against the declarations (:func:`check_config`)."""
    settings = config_settings(method.Config)
    values = parse_values(settings, dict(overrides or {}), _what(method.name), owner=method.name,
                          unknown=lambda key: f"method '{method.name}' has no setting '{key}'; "
                                              f"settings: {', '.join(settings)}.")
    config = method.Config(**values)
    check_config(config, method.name)
    return config


def preset_settings(method: type[MitigationMethod], preset: str | None,
                    settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings of ``preset`` of ``method`` (``None``: none) with the explicit ``settings`` over them."""
    if preset is None or preset == "":
        return dict(settings or {})
    presets = method.presets
    if preset not in presets:
        known = ", ".join(presets) if presets else "none"
        raise FairauditError(f"method '{method.name}' has no preset '{preset}'; its presets: {known}.")
    return {**presets[preset], **dict(settings or {})}


def config_help(method: type[MitigationMethod]) -> list[dict[str, Any]]:
    """One row per setting for the UI form, ``--list-settings`` and the report: ``name``, ``default``,
    ``help``, ``type``, ``optional``, ``unit``, ``range`` (``min``, ``max``, ``min_inclusive``,
    ``max_inclusive``, ``text``) or ``None``, ``choices`` or ``None`` (see :class:`fairaudit.options.Setting`)."""
    return [declared.describe(name) for name, declared in config_settings(method.Config).items()]
