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
    seconds; use 1000 for a final report).
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
        if str(self.model) != "demo":
            path = Path(self.model).expanduser()
            if not path.is_file():
                raise ModelLoadError(f"model file '{self.model}' does not exist.")
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
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
