"""Planning, launching and following a benchmark: every row × seed is an ordinary tagged job.

:func:`plan_benchmark` validates everything (method and control names,
settings, seeds, the dataset kind) and builds the jobs without queueing any.
:func:`launch_benchmark` queues them with :func:`fairaudit.jobs.submit` (the
local workers or Ray), each row as a seed repeat of
:mod:`fairaudit.compare.sweeps` (tags ``sweep = <benchmark id>:<row>``,
``benchmark``, ``benchmark_row``), so the Compare page shows them like any
run. A job whose settings and seed match a run already in the registry is
not run again: a finished, queued or running run is reused, an interrupted or
cancelled one resumed; only a failed run is tried anew. The benchmark
(its setup, rows and member runs) is kept in
``$FAIRAUDIT_HOME/benchmarks/<id>.json``; its id is a digest of the setup, so
the same command finds the same benchmark again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from fairaudit import workspace
from fairaudit.benchmark.controls import QUICK_DATA, QUICK_JOB, Row, resolve_rows, row_settings, split_settings
from fairaudit.errors import FairauditError
from fairaudit.io_safety import atomic_write

JOB_DEFAULTS = {"n_boot": 200, "robustness_samples": None, "split_samples": 2000}
REUSE_SCAN = 20_000  # newest registry runs searched for a finished twin of a member job


@dataclass
class BenchmarkPlan:
    """A validated benchmark: its id, setup, rows and one job per (row, seed), nothing queued yet."""

    benchmark_id: str
    setup: dict[str, Any]
    rows: list[Row]
    seeds: list[int]
    specs: dict[tuple[str, int], Any] = field(default_factory=dict)  # (row name, seed) -> JobSpec

    def manifest(self, members: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        return {"id": self.benchmark_id, "setup": self.setup, "rows": [r.to_dict() for r in self.rows],
                "seeds": list(self.seeds), "members": [dict(m) for m in members]}


def _quick_options(dataset_spec, options: Mapping[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in QUICK_DATA.items() if k in dataset_spec.options}, **dict(options)}


def _parent_threat_model(parent, plain, scoped, quick) -> dict | None:
    """The threat model of the method a control row belongs to (``None`` for a method row, or a method
    without its own): a control's S_R is measured as its method's, or the two would not compare."""
    if parent is None:
        return None
    from fairaudit.mitigation.base import get_method, make_config

    method = get_method(parent.method)
    threat = method().threat_model(make_config(method, row_settings(parent, method, plain, scoped, quick)))
    return None if threat is None else threat.to_dict()


def plan_benchmark(dataset: str, methods: str | Sequence[str], *, controls: bool | str | Sequence[str] = False,
                   seeds: int = 3, model: str = "demo", target: str | None = None,
                   sensitive: str | Sequence[str] | None = None, data_options: Mapping[str, Any] | None = None,
                   data_dir: str | None = None, settings: Mapping[str, Any] | None = None, quick: bool = False,
                   device: str = "auto", arch: str | None = None, n_boot: int | None = None,
                   robustness_samples: int | None = None, robustness_eps: float | None = None,
                   split_samples: int | None = None, command: str | None = None,
                   job_fields: Mapping[str, Any] | None = None) -> BenchmarkPlan:
    """Check a benchmark and build its jobs (seeds ``0..seeds−1``); nothing is queued.

    ``settings`` apply to every method that has the setting (``epochs=2``) or to one method
    (``faap.beta=0.5``); a control's own settings win. ``quick`` shrinks the validation and test splits of
    datasets with size options, sets :data:`~fairaudit.benchmark.controls.QUICK_SETTINGS`
    and makes the audits of every run smaller; explicit values win. ``n_boot``, ``robustness_samples`` and
    ``split_samples`` of ``None`` take the job defaults (or the quick ones); ``job_fields`` are further
    :class:`~fairaudit.jobs.JobSpec` fields of every run. ``command`` is recorded in the setup.
    """
    from fairaudit.compare.sweeps import sweep_specs
    from fairaudit.data.registry import get_spec, parse_options
    from fairaudit.jobs.spec import JobSpec
    from fairaudit.mitigation import get_method

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise FairauditError(f"the number of seeds must be a whole number ≥ 1, got {seeds!r}.")
    dataset_spec = get_spec(dataset)
    rows = resolve_rows(methods, dataset, controls)
    plain, scoped = split_settings(dict(settings or {}), rows)
    options = dict(data_options or {})
    if quick:
        options = _quick_options(dataset_spec, options)
    options = parse_options(dataset_spec, options)
    job = {"n_boot": n_boot, "robustness_samples": robustness_samples, "split_samples": split_samples}
    for key, value in job.items():
        if value is None:
            job[key] = QUICK_JOB[key] if quick else JOB_DEFAULTS[key]
    if isinstance(sensitive, str):
        sensitive = [s.strip() for s in sensitive.split(",") if s.strip()]
    seed_list = list(range(seeds))

    specs: dict[tuple[str, int], Any] = {}
    resolved_model = str(model)
    placeholder = "bench-pending"
    by_name = {row.name: row for row in rows}
    for row in rows:
        threat = _parent_threat_model(by_name.get(row.control_of), plain, scoped, quick)
        base = JobSpec(method=row.method, dataset=dataset, model=str(model), target=target,
                       sensitive=list(sensitive) if sensitive else None, data_options=options, data_dir=data_dir,
                       settings=row_settings(row, get_method(row.method), plain, scoped, quick), device=device,
                       arch=arch, robustness_eps=robustness_eps, threat_model=threat, **job,
                       **dict(job_fields or {}))
        resolved_model = base.model
        row.settings = dict(base.settings)  # coerced to the settings' types
        sweep = sweep_specs(base, None, seed_list, sweep_id=placeholder)
        for spec in sweep.specs:
            specs[(row.name, spec.seed)] = spec
    setup = {
        "dataset": dataset, "model": resolved_model, "target": target or dataset_spec.default_target,
        "sensitive": list(sensitive) if sensitive else list(dataset_spec.default_sensitive),
        "data_options": options, "data_dir": data_dir, "settings": dict(settings or {}),
        "methods": [r.name for r in rows if r.control_of is None],
        "controls": [r.name for r in rows if r.control_of is not None], "seeds": seed_list, "quick": bool(quick),
        "device": device, "arch": arch, "robustness_eps": robustness_eps, **job, "split": "test",
    }
    digest = hashlib.sha256(json.dumps({k: v for k, v in setup.items()} | {
        "rows": [r.to_dict() for r in rows]}, sort_keys=True, default=str).encode()).hexdigest()[:10]
    benchmark_id = f"bench-{digest}"
    for (name, _), spec in specs.items():
        spec.tags = {**spec.tags, "sweep": f"{benchmark_id}:{name}", "benchmark": benchmark_id,
                     "benchmark_row": name}
    setup["benchmark_id"] = benchmark_id
    setup["command"] = command
    return BenchmarkPlan(benchmark_id, setup, rows, seed_list, specs)


# ---------------------------------------------------------------------------- the stored benchmark

def benchmarks_dir():
    return workspace.subdir("benchmarks")


def save_manifest(manifest: Mapping[str, Any]) -> None:
    path = benchmarks_dir() / f"{manifest['id']}.json"
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({**manifest, "updated": time.time()}, indent=2,
                                                             default=str)))


def load_manifest(benchmark_id: str) -> dict[str, Any]:
    """The stored benchmark ``benchmark_id`` (setup, rows, member runs)."""
    path = benchmarks_dir() / f"{benchmark_id}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FairauditError(f"there is no benchmark '{benchmark_id}' in this workspace.") from None
    except ValueError:
        raise FairauditError(f"benchmark file '{path}' is not valid JSON; launch the benchmark again.") from None


def list_benchmarks() -> list[dict[str, Any]]:
    """Every stored benchmark, newest first (unreadable files are skipped)."""
    out = []
    for path in benchmarks_dir().glob("bench-*.json"):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda m: m.get("updated") or 0, reverse=True)


# ---------------------------------------------------------------------------- launching

def spec_key(spec: Mapping[str, Any]) -> str:
    """What makes two jobs the same run: the whole spec except its tags (a field left at ``None`` counts as
    absent, so runs recorded before the field existed still match)."""
    return json.dumps({k: v for k, v in spec.items() if k != "tags" and v is not None}, sort_keys=True,
                      default=str)


def _twins(specs: Sequence[Any]) -> dict[str, dict]:
    """Registry runs whose spec equals one of ``specs`` and whose method configuration equals the one the
    spec resolves to now: spec key → the best run (done > queued/running > interrupted/cancelled > failed,
    newest first within each).

    The resolved configuration counts because a spec holds only the settings given: a run made before a
    method's default changed (or before it had a setting) has the same spec but is another experiment."""
    from fairaudit import jobs
    from fairaudit.jobs.execute import resolved_config

    wanted = {spec_key(s.to_dict()): s for s in specs}
    configs = {key: resolved_config(s) for key, s in wanted.items()}
    if not wanted:
        return {}
    methods = {s.method for s in specs}
    rank = {"done": 0, "running": 1, "queued": 1, "interrupted": 2, "cancelled": 2, "failed": 3}
    best: dict[str, dict] = {}
    dataset = next(iter(specs)).dataset
    for listed in jobs.list_runs(limit=REUSE_SCAN, dataset=dataset):
        if listed["method"] not in methods:
            continue
        try:
            run = jobs.get_run(listed["id"])
        except FairauditError:
            continue
        key = spec_key(run.get("spec") or {})
        if key in wanted and run.get("config") == configs[key] and (key not in best or rank.get(run["status"], 9) < rank.get(best[key]["status"], 9)):
            best[key] = run
    return best


def launch_benchmark(plan: BenchmarkPlan, *, ray_address: str | None = None,
                     submit: Callable[..., str] | None = None, reuse: bool = True) -> dict[str, Any]:
    """Queue the plan's jobs (reusing runs of the same settings and seed) and store the benchmark.

    Returns the stored manifest: ``{"id", "setup", "rows", "seeds", "members": [{"row", "seed", "run_id",
    "reused"}]}``.
    """
    from fairaudit import jobs

    submit = submit or jobs.submit
    specs = list(plan.specs.values())
    twins = _twins(specs) if reuse else {}
    members = []
    for (row, seed), spec in plan.specs.items():
        twin = twins.get(spec_key(spec.to_dict()))
        reused = twin is not None and twin["status"] != "failed"
        if reused:
            run_id = twin["id"]
            if twin["status"] in ("interrupted", "cancelled"):
                jobs.resume(run_id)
        else:
            run_id = submit(spec, ray_address=ray_address)
        members.append({"row": row, "seed": seed, "run_id": run_id, "reused": reused})
    manifest = plan.manifest(members)
    manifest["created"] = time.time()
    save_manifest(manifest)
    return manifest


def member_runs(manifest: Mapping[str, Any]) -> list[dict]:
    """The registry records of a benchmark's member runs (a deleted run is left out)."""
    from fairaudit import jobs

    runs = []
    for member in manifest.get("members") or []:
        try:
            runs.append(jobs.get_run(member["run_id"]))
        except FairauditError:
            continue
    return runs


def wait_benchmark(manifest: Mapping[str, Any], *, poll: float = 0.5, timeout: float | None = None,
                   on_update: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Block until every member run is finished (or ``timeout`` seconds pass); returns their records."""
    from fairaudit.jobs import FINISHED

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        runs = member_runs(manifest)
        if on_update is not None:
            on_update(runs)
        if all(r["status"] in FINISHED for r in runs) or (deadline is not None and time.monotonic() > deadline):
            return runs
        time.sleep(poll)
