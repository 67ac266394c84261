"""What a mitigation job is: method + dataset + model + hyper-parameters, validated when it is created."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairaudit.errors import FairauditError, ModelLoadError

TEST_METHODS_ENV = "FAIRAUDIT_TEST_METHODS"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def load_methods() -> None:
    """Import the built-in methods, plus the test-only ones when ``FAIRAUDIT_TEST_METHODS=1``.

    Worker processes and Ray tasks call this too, so a method registered by
    :mod:`fairaudit.jobs.testing` is found wherever the job runs.
    """
    from fairaudit import mitigation  # noqa: F401  (registers the built-in methods)

    if os.environ.get(TEST_METHODS_ENV) == "1":
        from fairaudit.jobs import testing

        testing.register()


@dataclass
class JobSpec:
    """A mitigation job; creating one validates it, so a bad name or setting fails before anything is queued.

    ``settings`` are ``key=value`` overrides of the method's ``Config`` (strings
    are coerced to the default's type); after validation they hold the coerced
    values. ``model`` is ``"demo"`` or a checkpoint path; relative paths
    (``model``, ``data_dir``) are made absolute, because the job may run in
    another process. ``n_boot`` is the number of bootstrap resamples of the
    before/after audits (200 by default: confidence intervals within a few
    seconds; use 1000 for a final report). ``tags`` label a run as part of a
    batch (``{"sweep": id, "swept": [...]}`` for a sweep or seed repeat, see
    :mod:`fairaudit.compare.sweeps`); they do not change what the run does.
    ``robustness_samples`` test samples (seeded subsample; default: the
    method's threat model's count, else 500 on CUDA, 128 on the CPU; 0: off)
    are attacked with FGSM and PGD-10 at radius ``robustness_eps`` (default:
    the method's threat model's, else 8/255 for images, 0.1 for standardised
    tabular features) before and after the method, and the train and validation splits are audited on at most
    ``split_samples`` rows each (0: off), see :func:`fairaudit.jobs.execute.execute`.
    A TorchScript model file is refused unless ``allow_torchscript`` is true.
    ``threat_model`` (a :meth:`fairaudit.robustness.ThreatModel.to_dict`) replaces the method's own threat
    model for the S_R; the benchmark gives a method's controls the method's, so their S_R compare.
    """

    method: str
    dataset: str
    model: str = "demo"
    target: str | None = None
    sensitive: list[str] | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    seed: int = 0
    arch: str | None = None
    n_boot: int = 200
    tags: dict[str, Any] = field(default_factory=dict)
    robustness_samples: int | None = None
    robustness_eps: float | None = None
    split_samples: int = 2000
    allow_torchscript: bool = False
    threat_model: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from fairaudit.data.registry import get_spec, parse_options
        from fairaudit.mitigation.base import get_method, make_config

        load_methods()
        method = get_method(self.method)
        dataset = get_spec(self.dataset)
        if dataset.kind not in method.kinds:
            raise FairauditError(f"method '{self.method}' works on {' and '.join(method.kinds)} datasets; "
                                 f"'{self.dataset}' is {dataset.kind}.")
        self.data_options = parse_options(dataset, dict(self.data_options or {}))
        config = make_config(method, self.settings)
        self.settings = {k: getattr(config, k) for k in (self.settings or {})}
        if isinstance(self.sensitive, str):
            self.sensitive = [s.strip() for s in self.sensitive.split(",") if s.strip()]
        if not _DEVICE.match(str(self.device)):
            raise FairauditError(f"unsupported device {self.device!r}; use auto, cpu or cuda.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise FairauditError(f"the seed must be an integer, got {self.seed!r}.")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 0:
            raise FairauditError(f"the number of bootstrap resamples must be an integer ≥ 0, got {self.n_boot!r}.")
        if self.threat_model is not None:
            from fairaudit.robustness import ThreatModel

            if not isinstance(self.threat_model, dict):
                raise FairauditError(f"a job's threat model must be a mapping of its fields, got "
                                     f"{self.threat_model!r}.")
            self.threat_model = ThreatModel.from_dict(self.threat_model).to_dict()
        if not isinstance(self.tags or {}, dict):
            raise FairauditError(f"job tags must be a mapping of names to values, got {self.tags!r}.")
        self.tags = dict(self.tags or {})
        for name in ("robustness_samples", "split_samples"):
            value = getattr(self, name)
            if value is None and name == "robustness_samples":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FairauditError(f"{name} must be an integer ≥ 0 (0 turns it off), got {value!r}.")
        if self.robustness_eps is not None and (isinstance(self.robustness_eps, bool) or not isinstance(
                self.robustness_eps, (int, float)) or not 0 <= self.robustness_eps < float("inf")):
            raise FairauditError(f"robustness_eps must be a number ≥ 0 (or None for the default), "
                                 f"got {self.robustness_eps!r}.")
        if str(self.model) != "demo":
            from fairaudit.models.checkpoint_files import refuse_torchscript

            path = Path(self.model).expanduser()
            if not path.is_file():
                raise ModelLoadError(f"model file '{self.model}' does not exist.")
            refuse_torchscript(path, self.model, self.allow_torchscript is True)
            self.model = str(path.resolve())
        if self.data_dir is not None:
            self.data_dir = str(Path(self.data_dir).expanduser().resolve())

    def config(self):
        """The method's validated ``Config`` object."""
        from fairaudit.mitigation.base import get_method, make_config

        return make_config(get_method(self.method), self.settings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: dict[str, Any] | None = None) -> "JobSpec":
        """The spec of a stored run; ``config`` (the run's full recorded configuration, if any) tells a method
        whose name changed meaning which one the run ran (see :func:`fairaudit.mitigation.register_rename`)."""
        from fairaudit.mitigation.base import recorded_method

        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "method" in values:
            values["method"] = recorded_method(values["method"], config if config else values.get("settings"))
        return cls(**values)
