"""The effects this release has measured: benchmark outputs shipped in ``assets/benchmarks/``.

Each JSON there is the output of one ``fairaudit benchmark`` command (README shows
the command beside its table). The Mitigate page reads them to say, next to a
method's description, what the benchmark found for it — against the deployed
model and against each of its controls, with the interval over seeds — or that
nothing was measured, so no page states an effect the benchmark did not produce.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fairaudit.metrics import catalogue

PUBLISHED_DIR = Path(__file__).resolve().parents[2] / "assets" / "benchmarks"

SUPERSEDED: dict[str, frozenset[str]] = {"adult_froc": frozenset({"rbf", "fbr"})}
"""Methods whose rows in a shipped benchmark (by file name) measured what the method no longer does, so they
are not shown: ``adult_froc`` ran RbF and FbR when they trained against ξ 0.3 on the numeric columns only;
``adult_rbf_fbr`` measures them training within their S_R threat model."""


@dataclass(frozen=True)
class PublishedEffect:
    """One comparison of a shipped benchmark: ``method − against`` on ``metric``, paired by seed."""

    method: str
    against: str
    metric: str
    direction: str
    mean_diff: float | None
    ci: tuple[float, float] | None
    holds: bool
    n_seeds: int
    dataset: str
    quick: bool
    command: str
    settings: str = ""
    """The method's settings in that benchmark other than its defaults (``p=0.3``); empty for the defaults."""
    setup: str = ""
    """The deployed model's target and data options where they are not the dataset's defaults
    (``Blond_Hair``, ``Smiling, bias=0.7``); empty for the default setup."""

    def sentence(self) -> str:
        """``SPD vs erm: −0.080 [−0.094, −0.066] over 3 seeds on adult ✓ (lower is better)``."""
        label = catalogue.label(self.metric)
        if self.mean_diff is None:
            diff = "no value"
        else:
            diff = _signed(self.mean_diff) + (f" [{_signed(self.ci[0])}, {_signed(self.ci[1])}]" if self.ci else "")
        where = f"{self.dataset}{f' ({self.setup})' if self.setup else ''}{' (quick settings)' if self.quick else ''}" + (
            f" with {self.settings}" if self.settings else "")
        mark = "✓" if self.holds else "✗"
        against = "the deployed model" if self.against == "baseline" else self.against
        return (f"{label} vs {against}: {diff} over {self.n_seeds} seeds on {where} {mark} "
                f"({self.direction} is better)")


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


@lru_cache(maxsize=64)
def _load(path: str, mtime_ns: int) -> dict:
    """One stored benchmark, read once per version of the file (the page asks on every rerun)."""
    return json.loads(Path(path).read_text())


def published_effects(method: str, directory: Path | None = None) -> list[PublishedEffect]:
    """Every shipped comparison of ``method`` (a method name or a control row such as ``faap[only_task]``)."""
    effects = []
    for path in sorted((directory or PUBLISHED_DIR).glob("*.json")):
        if method in SUPERSEDED.get(path.stem, ()):
            continue
        result = _load(str(path), path.stat().st_mtime_ns)
        setup = result.get("setup", {})
        row_settings = {row.get("method"): row.get("settings") or {} for row in result.get("rows", [])}
        for comp in result.get("comparisons", []):
            if comp.get("method") != method:
                continue
            ci = comp.get("ci")
            effects.append(PublishedEffect(
                method=method, against=comp["against"], metric=comp["metric"], direction=comp["direction"],
                mean_diff=comp.get("mean_diff"), ci=tuple(ci) if ci else None, holds=bool(comp.get("holds")),
                n_seeds=int(comp.get("n") or 0), dataset=str(setup.get("dataset")), quick=bool(setup.get("quick")),
                command=str(setup.get("command", "")),
                settings=", ".join(f"{k}={v}" for k, v in sorted(row_settings.get(method, {}).items())),
                setup=_setup_text(setup)))
    return effects


def _setup_text(setup: dict) -> str:
    """The target when it is not the dataset's default, and data options other than split sizes."""
    from fairaudit.data import get_spec
    from fairaudit.errors import FairauditError

    parts = []
    try:
        default_target = get_spec(str(setup.get("dataset"))).default_target
    except FairauditError:
        default_target = None
    target = setup.get("target")
    options = {k: v for k, v in (setup.get("data_options") or {}).items() if not k.startswith("n_")}
    if target and (target != default_target or options):
        parts.append(str(target))
    parts += [f"{k}={v}" for k, v in sorted(options.items())]
    return ", ".join(parts)
