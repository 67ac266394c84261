"""Sweeps and seed repeats: a batch of mitigation jobs over a grid of settings × seeds, tagged together.

A sweep varies one or two settings of a method (FAAP's ``beta``, a penalty
weight ``alpha``, a pair ``lambda_f`` × ``lambda_r``) over the values given,
and optionally repeats every grid point over seeds ``0..k−1``. Every job is an
ordinary :class:`~fairaudit.jobs.JobSpec` submitted with
:func:`fairaudit.jobs.submit` (local worker pool or Ray, as configured), with
``tags = {"sweep": <id>, "swept": [<setting>, ...]}``, so the Compare view can
join a sweep's points in order of the swept value, show every value tried,
and average seed repeats into mean ± std. A seed repeat alone is a sweep with
an empty grid.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from fairaudit.errors import FairauditError
from fairaudit.jobs.spec import JobSpec

MAX_SWEPT = 2
MAX_JOBS = 200


@dataclass
class Sweep:
    """A submitted batch: its id, the swept settings, the grid, the seeds, and the run ids in grid order."""

    sweep_id: str
    swept: list[str]
    grid: dict[str, list[Any]]
    seeds: list[int]
    run_ids: list[str] = field(default_factory=list)
    specs: list[JobSpec] = field(default_factory=list)


def new_sweep_id() -> str:
    return "sweep-" + time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def parse_grid(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, list[str]]:
    """``["beta=0.5,1,2", "alpha=0.1,1"]`` → ``{"beta": ["0.5", "1", "2"], "alpha": ["0.1", "1"]}``.

    Values stay strings; :class:`JobSpec` coerces them to each setting's type. A mapping passes through
    with its values turned into lists.
    """
    if isinstance(items, Mapping):
        grid = {str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in items.items()}
    else:
        grid = {}
        for item in items or []:
            if "=" not in item:
                raise FairauditError(f"a grid is given as setting=v1,v2,..., got {item!r}.")
            key, values = (part.strip() for part in item.split("=", 1))
            if not key:
                raise FairauditError(f"a grid is given as setting=v1,v2,..., got {item!r}.")
            if key in grid:
                raise FairauditError(f"setting '{key}' appears twice in the grid.")
            grid[key] = [v.strip() for v in values.split(",") if v.strip()]
    for key, values in grid.items():
        if not values:
            raise FairauditError(f"the grid of setting '{key}' has no values.")
        if len({str(v) for v in values}) != len(values):
            raise FairauditError(f"the grid of setting '{key}' repeats a value: {', '.join(map(str, values))}.")
    if len(grid) > MAX_SWEPT:
        raise FairauditError(f"a sweep varies at most {MAX_SWEPT} settings at once, got {len(grid)}: "
                             f"{', '.join(grid)}.")
    return grid


def _seeds(seeds: int | Sequence[int] | None, base_seed: int) -> list[int]:
    if seeds is None:
        return [base_seed]
    if isinstance(seeds, bool):
        raise FairauditError(f"the number of seeds must be a positive integer, got {seeds!r}.")
    if isinstance(seeds, int):
        if seeds < 1:
            raise FairauditError(f"the number of seeds must be a positive integer, got {seeds}.")
        return list(range(seeds))
    values = [int(s) for s in seeds]
    if not values:
        raise FairauditError("give at least one seed.")
    return values


def sweep_specs(base: JobSpec | Mapping[str, Any], grid: Sequence[str] | Mapping[str, Any] | None = None,
                seeds: int | Sequence[int] | None = None, *, sweep_id: str | None = None) -> Sweep:
    """The jobs of a sweep (not submitted): every grid point × every seed, tagged with one sweep id.

    ``base`` is the job the grid starts from (its settings are kept unless swept); ``seeds`` is a count
    ``k`` (seeds ``0..k−1``), a list of seeds, or ``None`` (the base job's seed only). Every job is
    validated before any is returned, so a bad value fails before anything is queued.
    """
    base_dict = base.to_dict() if isinstance(base, JobSpec) else dict(base)
    grid_values = parse_grid(grid)
    seed_list = _seeds(seeds, int(base_dict.get("seed", 0)))
    n_jobs = len(seed_list) * max(1, len(list(itertools.product(*grid_values.values()))))
    if n_jobs > MAX_JOBS:
        raise FairauditError(f"this sweep would queue {n_jobs} jobs; the limit is {MAX_JOBS}.")
    sweep_id = sweep_id or new_sweep_id()
    swept = list(grid_values)
    specs = []
    for point in itertools.product(*grid_values.values()):
        settings = {**(base_dict.get("settings") or {}), **dict(zip(swept, point))}
        for seed in seed_list:
            tags = {**(base_dict.get("tags") or {}), "sweep": sweep_id, "swept": swept}
            specs.append(JobSpec.from_dict({**base_dict, "settings": settings, "seed": seed, "tags": tags}))
    coerced = {k: [] for k in swept}
    for spec in specs:
        for k in swept:
            if spec.settings[k] not in coerced[k]:
                coerced[k].append(spec.settings[k])
    return Sweep(sweep_id=sweep_id, swept=swept, grid=coerced, seeds=seed_list, specs=specs)


def launch_sweep(base: JobSpec | Mapping[str, Any], grid: Sequence[str] | Mapping[str, Any] | None = None,
                 seeds: int | Sequence[int] | None = None, *, sweep_id: str | None = None,
                 ray_address: str | None = None,
                 submit: Callable[..., str] | None = None) -> Sweep:
    """Submit every job of :func:`sweep_specs` with :func:`fairaudit.jobs.submit`; returns the
    :class:`Sweep` with its run ids (grid order, seeds innermost)."""
    from fairaudit import jobs

    sweep = sweep_specs(base, grid, seeds, sweep_id=sweep_id)
    submit = submit or jobs.submit
    for spec in sweep.specs:
        sweep.run_ids.append(submit(spec, ray_address=ray_address))
    return sweep


def repeat_seeds(base: JobSpec | Mapping[str, Any], k: int, **kwargs: Any) -> Sweep:
    """Run the same job over seeds ``0..k−1`` (a sweep with an empty grid)."""
    return launch_sweep(base, None, k, **kwargs)


def sweep_runs(sweep_id: str, *, limit: int = 1000) -> list[dict]:
    """The registry records of a sweep's runs (oldest first)."""
    from fairaudit import jobs

    runs = []
    for listed in reversed(jobs.list_runs(limit=limit)):
        run = jobs.get_run(listed["id"])
        if ((run.get("spec") or {}).get("tags") or {}).get("sweep") == sweep_id:
            runs.append(run)
    return runs


def sweep_progress(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per status and the mean progress of a batch of runs."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    mean = sum(float(r.get("progress") or 0.0) for r in runs) / len(runs) if runs else 0.0
    return {"n": len(runs), "counts": counts, "progress": mean,
            "finished": sum(counts.get(s, 0) for s in ("done", "failed", "cancelled", "interrupted"))}
