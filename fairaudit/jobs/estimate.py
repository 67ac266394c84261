"""How long a mitigation job will take on this device, said before it starts.

A method counts its work in units (:attr:`~fairaudit.mitigation.base.MitigationMethod.work_unit`, an optimiser
step of the trained model unless the method says otherwise) and says how many its settings imply
(:meth:`~fairaudit.mitigation.base.MitigationMethod.work`, e.g. ``epochs × ⌈rows / batch_size⌉``). The
estimate is

    load and audits  +  the method's set-up  +  units × seconds per unit

where the terms come from one of two sources:

* **finished runs** of the same method, dataset (and options), model and device: their recorded seconds
  (``timings.method`` divided by the units their settings implied, and the rest of ``seconds`` for the load
  and audits; medians over the runs). This is used as soon as one such run exists.
* otherwise a **calibration**: the real job (:func:`~fairaudit.jobs.execute.execute`, on the real data and
  model, with the chosen settings) runs in a scratch folder until the method has worked for
  :data:`CALIBRATION_SECONDS` past its first unit of work (at most :data:`CALIBRATION_UNITS` units), and is
  stopped there. It
  measures the load and the *before* audit (the *after* audit is taken to cost the same), the method's
  set-up before its first unit, and the seconds per unit. A method without a countable unit runs whole.
  Calibrations are cached in the workspace (``estimates/calibrations.json``) per method, dataset, model,
  device, thread count and every setting except those that only change how many units there are
  (:attr:`~fairaudit.mitigation.base.MitigationMethod.work_settings`, e.g. ``epochs``): raising the epochs
  from 2 to 500 reuses the timing, changing the batch size measures again.

The estimate does not foresee work that happens only later in a run (a per-epoch refit or attack pass of
some methods, early stopping, another load on the machine); finished runs correct the first two.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from fairaudit import workspace
from fairaudit.errors import FairauditError
from fairaudit.io_safety import atomic_write
from fairaudit.jobs.spec import JobSpec

CALIBRATION_UNITS = 2000
"""The most units of work a calibration times."""
CALIBRATION_SECONDS = 3.0
"""A calibration times units for this many seconds after the method's first unit (and at least four), so
that one slow or fast step does not decide the estimate. The seconds per unit are those of the second half
of the timed units: the first steps of a run are slower (allocations, caches), and counting them at their
own pace in the set-up keeps the estimate of a long run from taking their pace for the whole."""
CACHE_FILE = "calibrations.json"


class _Calibrated(Exception):
    """Raised from a calibration's progress callback to stop the job once the unit is timed."""


@dataclass
class Estimate:
    """A job's expected duration: ``seconds`` and a one-line ``text`` saying how it was found."""

    seconds: float
    text: str
    source: str  # "calibration" or "runs"
    units: int | None  # units of work the settings imply (None: the method has no countable unit)
    unit: str
    unit_seconds: float
    setup_seconds: float
    overhead_seconds: float  # loading and the before/after audits
    runs: int = 0  # finished runs the estimate is based on
    calibration_seconds: float | None = None
    device: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- text

def duration_text(seconds: float) -> str:
    """``about 40 s``, ``about 7 min``, ``about 2.5 h``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    hours = seconds / 3600
    return f"about {hours:.1f} h" if hours < 10 else f"about {round(hours)} h"


def device_text(device: Any = "auto") -> str:
    """What the estimate was measured on: ``this CPU (2 threads)`` or ``this GPU (NVIDIA H200)``."""
    import torch

    from fairaudit.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"this GPU ({torch.cuda.get_device_name(dev)})"
    threads = torch.get_num_threads()
    return f"this CPU ({threads} thread{'s' if threads != 1 else ''})"


# ---------------------------------------------------------------------------- work

def _method(spec: JobSpec):
    from fairaudit.mitigation.base import get_method

    return get_method(spec.method)


def work_units(spec: JobSpec, sizes: dict[str, int], config: Any = None) -> int | None:
    """Units of work ``spec``'s settings imply for splits of ``sizes`` rows (see ``MitigationMethod.work``)."""
    method = _method(spec)
    return method().work(config if config is not None else spec.config(), sizes)


def split_sizes(spec: JobSpec) -> dict[str, int]:
    """Rows of each split of the job's dataset (with its options); remembered in this process."""
    key = json.dumps([spec.dataset, spec.target, spec.sensitive, spec.data_dir, spec.data_options],
                     sort_keys=True, default=str)
    if key not in _SIZES:
        from fairaudit.data import get_spec, load_dataset

        _SIZES[key] = {split: len(load_dataset(spec.dataset, split, spec.target, spec.sensitive, spec.data_dir,
                                               **spec.data_options))
                       for split in get_spec(spec.dataset).splits}
    return dict(_SIZES[key])


_SIZES: dict[str, dict[str, int]] = {}


def _model_identity(model: str) -> str:
    if model == "demo":
        return model
    path = Path(model)
    stat = path.stat() if path.exists() else None
    return f"{path}:{stat.st_size}:{int(stat.st_mtime)}" if stat else str(path)


def calibration_key(spec: JobSpec) -> str:
    """What a calibration depends on (see the module help), as a JSON string."""
    import torch

    from fairaudit.device import resolve_device

    method = _method(spec)
    config = dataclasses.asdict(spec.config())
    for name in method.work_settings:
        config.pop(name, None)
    key = {"method": spec.method, "dataset": spec.dataset, "data_options": spec.data_options,
           "target": spec.target, "sensitive": spec.sensitive, "data_dir": spec.data_dir,
           "model": _model_identity(spec.model), "arch": spec.arch, "device": str(resolve_device(spec.device)),
           "threads": torch.get_num_threads(), "n_boot": spec.n_boot,
           "robustness_samples": spec.robustness_samples, "robustness_eps": spec.robustness_eps,
           "split_samples": spec.split_samples, "threat_model": spec.threat_model, "config": config}
    return json.dumps(key, sort_keys=True, default=str)


# ---------------------------------------------------------------------------- calibration

def _cache_path() -> Path:
    return workspace.subdir("estimates") / CACHE_FILE


def _read_cache() -> dict[str, Any]:
    path = _cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_calibration(spec: JobSpec) -> dict[str, Any] | None:
    """The stored calibration of ``spec``'s key, or ``None``."""
    return _read_cache().get(calibration_key(spec))


def _store(key: str, calibration: dict[str, Any]) -> None:
    data = _read_cache()
    data[key] = calibration
    atomic_write(_cache_path(), lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1), encoding="utf-8"))


def calibrate(spec: JobSpec, *, units: int = CALIBRATION_UNITS, seconds: float = CALIBRATION_SECONDS,
              refresh: bool = False) -> dict[str, Any]:
    """Time ``spec``'s job on this device (see the module help) and cache the result; returns
    ``{"sizes", "load", "before", "setup", "unit_seconds", "units_timed", "finished", "seconds"}``."""
    from fairaudit.jobs.execute import BEFORE, LOADING, MITIGATING, execute

    key = calibration_key(spec)
    if not refresh:
        known = _read_cache().get(key)
        if known is not None:
            return known
    unit = _method(spec).work_unit
    marks: dict[str, float] = {}
    unit_times: list[float] = []
    start = time.perf_counter()

    def emit(event: dict) -> None:
        now = time.perf_counter()
        phase = event.get("phase")
        if phase in (LOADING, BEFORE, MITIGATING):
            marks.setdefault(phase, now)
        if phase == MITIGATING and event.get("event") == unit:
            unit_times.append(now)
            if len(unit_times) >= units or (len(unit_times) >= 4 and now - unit_times[0] >= seconds):
                raise _Calibrated()

    finished = False
    with tempfile.TemporaryDirectory(prefix="fairaudit-calibration-") as scratch:
        try:
            result = execute(spec, "calibration", Path(scratch), emit=emit)
            finished = True
        except _Calibrated:
            result = None
    end = time.perf_counter()
    mitigating = marks.get(MITIGATING, end)
    before_start = marks.get(BEFORE, mitigating)
    load, before = before_start - start, mitigating - before_start
    if finished:
        timings = result["timings"]
        load = timings["load"]
        before = timings["before_audit"] + timings["before_extras"]
        after = timings["after_audit"] + timings["slices"] + timings["after_extras"]
        method_seconds = timings["method"]
    else:
        after = before
        method_seconds = end - mitigating
    if len(unit_times) >= 2:
        # The steady pace: from the end of unit k + 1 on (k = half the timed units, 0 with two or three);
        # the set-up is what the first k + 1 units took beyond that pace.
        k = len(unit_times) // 2 if len(unit_times) >= 4 else 0
        unit_seconds = (unit_times[-1] - unit_times[k]) / (len(unit_times) - 1 - k)
        setup = max(0.0, unit_times[k] - mitigating - (k + 1) * unit_seconds)
    elif len(unit_times) == 1:
        unit_seconds = unit_times[0] - mitigating
        setup = 0.0
    else:
        unit_seconds, setup = 0.0, method_seconds
    calibration = {"sizes": split_sizes(spec), "load": load, "before": before, "after": after, "setup": setup,
                   "unit_seconds": unit_seconds, "units_timed": len(unit_times), "finished": finished,
                   "method_seconds": method_seconds, "seconds": end - start, "measured": time.time()}
    calibration["units"] = work_units(spec, calibration["sizes"]) if finished else None
    _store(key, calibration)
    return calibration


# ---------------------------------------------------------------------------- finished runs

def _same_job(spec: JobSpec, run: dict, device: str) -> bool:
    recorded = run.get("spec") or {}
    return (run.get("method") == spec.method and run.get("dataset") == spec.dataset
            and str(run.get("device")) == device and not run.get("resume")
            and recorded.get("data_options", {}) == spec.data_options and recorded.get("model") == spec.model
            and isinstance(run.get("seconds"), (int, float)) and isinstance((run.get("timings") or {}).get("method"),
                                                                             (int, float)))


def finished_runs(spec: JobSpec, registry=None, limit: int = 200) -> list[dict]:
    """Finished (``done``) runs of the same method, dataset and options, model and device, not resumed, newest
    first."""
    from fairaudit.device import resolve_device
    from fairaudit.jobs.registry import DONE, JobRegistry

    registry = registry or JobRegistry()
    device = str(resolve_device(spec.device))
    candidates = [r for r in registry.list(limit=limit, dataset=spec.dataset, status=DONE)
                  if r.get("method") == spec.method and str(r.get("device")) == device]
    return [run for run in (registry.get(r["id"]) for r in candidates) if _same_job(spec, run, device)]


def _run_units(spec: JobSpec, run: dict, sizes: dict[str, int]) -> int | None:
    from fairaudit.mitigation.base import make_config

    method = _method(spec)
    known = {f.name for f in dataclasses.fields(method.Config)}
    config = make_config(method, {k: v for k, v in (run.get("config") or {}).items() if k in known})
    return method().work(config, sizes)


# ---------------------------------------------------------------------------- estimate

def estimate(spec: JobSpec, *, registry=None, calibrate_if_needed: bool = True,
             sizes: dict[str, int] | None = None) -> Estimate | None:
    """How long ``spec`` will take on this device (see the module help). Without a finished run or a cached
    calibration, the job is calibrated now unless ``calibrate_if_needed`` is false (then ``None``)."""
    from fairaudit.device import resolve_device

    method = _method(spec)
    where = device_text(spec.device)
    runs = finished_runs(spec, registry)
    calibration = None
    if not runs:
        calibration = cached_calibration(spec)
        if calibration is None:
            if not calibrate_if_needed:
                return None
            calibration = calibrate(spec)
    if sizes is None:
        sizes = calibration["sizes"] if calibration is not None else split_sizes(spec)
    units = work_units(spec, sizes)
    unit = method.work_unit
    if runs:
        overhead = statistics.median(float(r["seconds"]) - float(r["timings"]["method"]) for r in runs)
        rates, wholes = [], []
        for run in runs:
            run_units = _run_units(spec, run, sizes)
            (rates if run_units else wholes).append(float(run["timings"]["method"]) / (run_units or 1))
        if units and rates:
            unit_seconds, method_seconds = statistics.median(rates), units * statistics.median(rates)
        else:
            unit_seconds, method_seconds = 0.0, statistics.median(wholes or rates)
        seconds = overhead + method_seconds
        source = f"from {len(runs)} finished run{'s' if len(runs) != 1 else ''}"
        result = Estimate(seconds, f"{duration_text(seconds)} on {where}, {source}", "runs", units, unit,
                          unit_seconds, 0.0, overhead, runs=len(runs), device=str(resolve_device(spec.device)))
    else:
        overhead = calibration["load"] + calibration["before"] + calibration["after"]
        if calibration["finished"] and (not units or calibration.get("units") == units
                                        or not calibration["units_timed"]):
            method_seconds = calibration["method_seconds"]
            setup, unit_seconds = calibration["setup"], calibration["unit_seconds"]
        else:
            setup, unit_seconds = calibration["setup"], calibration["unit_seconds"]
            method_seconds = setup + (units or 0) * unit_seconds
        seconds = overhead + method_seconds
        took = duration_text(calibration["seconds"]).removeprefix("about ")
        source = f"from a {took} calibration"
        result = Estimate(seconds, f"{duration_text(seconds)} on {where}, {source}", "calibration", units, unit,
                          unit_seconds, setup, overhead, calibration_seconds=calibration["seconds"],
                          device=str(resolve_device(spec.device)))
    if units:
        result.text += f" ({units:,} {unit}s × {unit_seconds:.3g} s)".replace(",", " ")
    result.details["sizes"] = dict(sizes)
    return result


def estimate_many(specs: Iterable[JobSpec], *, registry=None, calibrate_if_needed: bool = True) -> Estimate | None:
    """The total duration of ``specs`` run one after another (a sweep, a benchmark): the sum of each spec's
    estimate, where a spec without finished runs or a cached calibration of its own borrows the timing of the
    first spec of the same method, dataset and model, scaled by its own units of work (so a grid calibrates
    once per method). One spec gives its own :func:`estimate`."""
    specs = list(specs)
    if not specs:
        raise FairauditError("there are no runs to estimate.")
    if len(specs) == 1:  # one job: its own estimate, worded as such
        return estimate(specs[0], registry=registry, calibrate_if_needed=calibrate_if_needed)
    parts: list[Estimate] = []
    reference: dict[tuple, Estimate] = {}
    for spec in specs:
        group = (spec.method, spec.dataset, json.dumps(spec.data_options, sort_keys=True, default=str), spec.model)
        ref = reference.get(group)
        own = estimate(spec, registry=registry, calibrate_if_needed=ref is None and calibrate_if_needed,
                       sizes=ref.details.get("sizes") if ref is not None else None)
        if own is None and ref is not None:
            units = work_units(spec, ref.details["sizes"])
            seconds = (ref.overhead_seconds + ref.setup_seconds + units * ref.unit_seconds
                       if units and ref.units else ref.seconds)
            own = dataclasses.replace(ref, seconds=seconds, units=units)
        if own is None:
            return None
        reference.setdefault(group, own)
        parts.append(own)
    total = sum(p.seconds for p in parts)
    runs = sum(p.runs for p in parts)
    calibrations = sum(p.source == "calibration" for p in parts)
    basis = []
    if runs:
        basis.append(f"{runs} finished run{'s' if runs != 1 else ''}")
    if calibrations:
        basis.append("calibration")
    n = len(specs)
    text = (f"{duration_text(total)} on {device_text(specs[0].device)} for {n} run{'s' if n != 1 else ''} one "
            f"after another ({duration_text(total / n).removeprefix('about ')} each on average, from "
            f"{' and '.join(basis)})")
    return Estimate(total, text, "many", None, "run", total / n, 0.0, 0.0, runs=runs, device=parts[0].device,
                    details={"runs": n, "each": [p.seconds for p in parts]})


def launch_line(spec: JobSpec, **kwargs) -> str:
    """``estimated time: about 7 min on this CPU (2 threads), from a 3 s calibration`` for a CLI's stderr."""
    found = estimate(spec, **kwargs)
    return f"estimated time: {found.text}" if found is not None else "estimated time: unknown"


__all__ = ["Estimate", "calibrate", "cached_calibration", "calibration_key", "estimate", "estimate_many",
           "finished_runs", "work_units", "split_sizes", "duration_text", "device_text", "launch_line",
           "CALIBRATION_UNITS", "CALIBRATION_SECONDS"]
