"""A benchmark's result: one row per method and control (mean, std and t-interval over seeds) and the
comparisons of every asked-for method against the baseline and against its controls.

The result is the benchmark's JSON::

    {"setup": {...},
     "rows": [{"method", "run_method", "control_of", "settings", "n_seeds", "seeds", "run_ids",
               "metrics": {NAME: {"mean", "std", "ci": [lo, hi] | null, "values": [...], "n_undefined",
                                  "undefined": [{"seed", "reason"}]}},
               "seconds": {"mean", "std", "total", "values"}, "status", "message", "failures"}],
     "comparisons": [{"method", "against", "metric", "direction", "n", "seeds", "mean_diff",
                      "ci": [lo, hi] | null, "holds", "verdict", "n_undefined"}]}

The first row, ``baseline``, is the deployed model before mitigation (each
seed's *before* audit). ``NAME`` runs over :data:`METRIC_NAMES`; ``s_r`` and
``leakage`` appear when a run measured them. A row's ``status`` is ``done``
when every seed finished, ``failed`` (with the first failure's ``message``
and every one in ``failures``) when a seed failed, else the state of its
unfinished runs; its metrics are over the seeds that finished. Against the
baseline a method is paired with the *before* audit of its own runs; against
a control, with the control's run of the same seed (see
:mod:`fairaudit.benchmark.stats` for the intervals). A metric a seed's audit
could not define (``null``: e.g. a gap that fewer than two groups define) is
left out of that row's mean, std and interval and of the pairs of a
comparison, never read as 0: ``n_undefined`` counts those seeds, and
``undefined`` gives each one's reason.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from fairaudit.benchmark.controls import BASELINE, Row
from fairaudit.benchmark.stats import CI_METHOD, paired_comparison, summarize
from fairaudit.compare.table import METRICS

METRIC_NAMES = METRICS
OPTIONAL = ("s_r", "leakage")
COMPARED_ALWAYS = ("accuracy",)
UNDEFINED = "_undefined"  # where a seed's metrics keep the reasons of the undefined ones


def _value(row: Mapping[str, Any], name: str) -> float | None:
    value = row.get(name)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _metrics(by_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, dict]:
    seeds = sorted(by_seed)
    out = {}
    for name in METRIC_NAMES:
        values = [by_seed[s].get(name) for s in seeds]
        if name in OPTIONAL and all(v is None for v in values):
            continue
        out[name] = summarize(values)
        out[name]["undefined"] = [{"seed": s, "reason": (by_seed[s].get(UNDEFINED) or {})[name]} for s in seeds
                                  if by_seed[s].get(name) is None and name in (by_seed[s].get(UNDEFINED) or {})]
    return out


def _audit_metrics(flat: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One seed's metrics from its :func:`~fairaudit.compare.table.runs_table` row, with the reasons of the
    undefined ones under :data:`UNDEFINED`."""
    reasons = flat.get(f"{prefix}undefined")
    return {**{n: _value(flat, f"{prefix}{n}") for n in METRIC_NAMES},
            UNDEFINED: dict(reasons) if isinstance(reasons, Mapping) else {}}


def _seconds(values: Sequence[float | None]) -> dict:
    summary = summarize(values)
    return {"mean": summary["mean"], "std": summary["std"], "total": sum(summary["values"]),
            "values": summary["values"]}


def _status(runs: Sequence[Mapping[str, Any]]) -> str:
    """``done`` when every seed is done; else the most telling state of the others (a failure first)."""
    statuses = [r.get("status") for r in runs]
    if not statuses:
        return "missing"
    if all(s == "done" for s in statuses):
        return "done"
    for status in ("failed", "running", "queued", "interrupted", "cancelled"):
        if status in statuses:
            return status
    return str(statuses[0])


def aggregate(manifest: Mapping[str, Any], runs: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The benchmark JSON of a stored benchmark (``manifest``) from its member ``runs`` (registry records;
    read from the registry when not given)."""
    from fairaudit.benchmark.runner import member_runs
    from fairaudit.compare.table import full_record, runs_table

    records = {r["id"]: full_record(r) for r in (member_runs(manifest) if runs is None else runs)}
    table = runs_table(list(records.values()), baselines=False) if records else None
    by_id = {} if table is None else {r["run_id"]: r for r in table.to_dict("records")}
    rows = [Row.from_dict(r) for r in manifest.get("rows") or []]
    members: dict[str, list[dict]] = {r.name: [] for r in rows}
    for member in manifest.get("members") or []:
        if member["run_id"] in records and member["row"] in members:
            members[member["row"]].append(member)

    after: dict[str, dict[int, dict]] = {}
    before: dict[str, dict[int, dict]] = {}
    result_rows = []
    baseline_by_seed: dict[int, dict] = {}
    baseline_seconds: dict[int, float | None] = {}
    for row in rows:
        runs_of_row = [records[m["run_id"]] for m in members[row.name]]
        after[row.name], before[row.name] = {}, {}
        seconds, failures = [], []
        for member, record in zip(members[row.name], runs_of_row):
            seed, flat = int(member["seed"]), by_id.get(member["run_id"], {})
            if record.get("before"):
                before[row.name][seed] = _audit_metrics(flat, "before_")
                if seed not in baseline_by_seed:
                    baseline_by_seed[seed] = before[row.name][seed]
                    baseline_seconds[seed] = _value((record.get("timings") or {}), "before_audit")
            if record.get("status") == "done":
                after[row.name][seed] = _audit_metrics(flat)
                seconds.append(_value(record, "seconds"))
            elif record.get("status") == "failed":
                failures.append({"seed": seed, "run_id": record["id"], "message": record.get("message")})
        status = _status(runs_of_row)
        result_rows.append({
            "method": row.name, "run_method": row.method, "control_of": row.control_of,
            "settings": dict(row.settings), "n_seeds": len(after[row.name]), "seeds": sorted(after[row.name]),
            "run_ids": [m["run_id"] for m in sorted(members[row.name], key=lambda m: m["seed"])],
            "metrics": _metrics(after[row.name]), "seconds": _seconds(seconds), "status": status,
            "message": failures[0]["message"] if failures else None, "failures": failures})
    baseline = {"method": BASELINE, "run_method": None, "control_of": None, "settings": {},
                "n_seeds": len(baseline_by_seed), "seeds": sorted(baseline_by_seed), "run_ids": [],
                "metrics": _metrics(baseline_by_seed),
                "seconds": _seconds([baseline_seconds[s] for s in sorted(baseline_seconds)]),
                "status": "done" if baseline_by_seed else "missing", "message": None, "failures": []}
    return {"setup": {**dict(manifest.get("setup") or {}), "ci_method": CI_METHOD},
            "rows": [baseline, *result_rows], "comparisons": comparisons(rows, after, before)}


def _series(by_seed: Mapping[int, Mapping[str, Any]], metric: str) -> dict[int, float | None]:
    """Seed → value (``None`` where undefined; :func:`paired_comparison` counts those and leaves them out)."""
    return {s: v.get(metric) for s, v in by_seed.items()}


def comparisons(rows: Sequence[Row], after: Mapping[str, Mapping[int, dict]],
                before: Mapping[str, Mapping[int, dict]]) -> list[dict]:
    """Every asked-for method against the baseline (its own runs' *before* audits) and each of its controls,
    on its target metrics and accuracy, paired by seed."""
    out = []
    for row in rows:
        if row.control_of is not None:
            continue
        metrics = list(dict.fromkeys([*row.target_metrics, *COMPARED_ALWAYS]))
        against = [(BASELINE, before[row.name])] + [(c, after.get(c, {})) for c in row.controls]
        for name, other in against:
            for metric in metrics:
                out.append({"method": row.name, "against": name,
                            **paired_comparison(_series(after[row.name], metric), _series(other, metric), metric)})
    return out
