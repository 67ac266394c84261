"""All mitigation runs in one table: one row per run plus one *baseline* row per audited setup.

Each run row holds the *after* audit of the run (plain metric names) next to
its *before* audit (``before_`` prefix), the 95 % bootstrap interval of every
after metric (``<metric>_low`` / ``<metric>_high``), the robustness score
``s_r`` and the sensitive-attribute leakage when the run recorded them, and
the run's settings. A *baseline* row stands for the deployed model without
mitigation: its metrics are the runs' shared *before* audit, one row per
distinct (dataset, model, target, sensitive attributes, dataset options).

Runs are read defensively: a run without robustness, leakage or split audits
(older runs, or methods that do not compute them) gets NaN there, so the
table works for every run in the registry. A disparity the audit could not
define (a gap that fewer than two groups define, ``null`` in its JSON) is NaN
too, and ``undefined`` / ``before_undefined`` hold ``{metric: reason}``, so it
is shown as "n/a" with its reason, left out of means over seeds and counted
there, never read as 0.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from fairaudit.metrics import catalogue

OVERALL = ("accuracy", "balanced_accuracy")
DISPARITIES = ("spd", "deo", "eod", "bias_sum", "aaod", "aed", "worst_group_accuracy")
EXTRA = ("s_r", "leakage")
METRICS = OVERALL + DISPARITIES + EXTRA
"""Every metric column of :func:`runs_table` (after values; ``before_<name>`` holds the before values)."""


BASELINE = "baseline"
COLLAPSE_MARGIN = 0.02
"""A run has *collapsed* when its balanced accuracy is within this margin of chance (1 / number of classes),
or when it predicts one class for every sample."""

ID_COLUMNS = ["run_id", "kind", "method", "dataset", "model", "target", "sensitive", "status", "seed", "sweep",
              "swept", "settings", "config_key", "setup_key", "created", "seconds", "collapsed"]


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


_RESULT_CACHE: dict[tuple[str, float], dict] = {}


def _result_json(run: Mapping[str, Any]) -> dict:
    """The run's ``result.json`` (cached by modification time), or ``{}`` when there is none."""
    path = run.get("result_path") or (run.get("artifacts") or {}).get("result")
    if not path:
        return {}
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        return {}
    key = (str(path), mtime)
    if key not in _RESULT_CACHE:
        try:
            _RESULT_CACHE[key] = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return {}
    return _RESULT_CACHE[key]


def full_record(run: Mapping[str, Any]) -> dict:
    """A run as one dict: the registry record, completed by its ``result.json`` (robustness, split audits
    and anything else a method or later version records there). Hand-made result dicts pass through."""
    record = dict(run)
    if "id" not in record and "run_id" in record:
        record["id"] = record["run_id"]
    record.setdefault("status", "done" if record.get("after") else "unknown")
    for key, value in _result_json(record).items():
        if record.get(key) is None:
            record[key] = value
    return record


def leakage_of(run_id: str | None) -> dict | None:
    """The cached leakage probe of a run (``fairaudit.embed.cached_leakage``), or ``None``."""
    if not run_id:
        return None
    try:
        from fairaudit.embed import cached_leakage
    except ImportError:
        return None
    try:
        return cached_leakage(run_id)
    except Exception:  # a broken cache entry must not break the table
        return None


def leakage_value(section: Any) -> float:
    """One leakage number from a probe result: the highest probe accuracy over sensitive attributes.

    Accepts a number, ``{"accuracy": a, "auc": b}``, or ``{attribute: {...}}``; AUC is used when no
    accuracy is given.
    """
    if isinstance(section, (int, float)) and not isinstance(section, bool):
        return _number(section)
    if not isinstance(section, Mapping):
        return math.nan
    for key in ("accuracy", "probe_accuracy", "acc", "auc"):
        if key in section and not isinstance(section[key], Mapping):
            return _number(section[key])
    values = [leakage_value(v) for v in section.values() if isinstance(v, (Mapping, int, float))]
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else math.nan


def _leakage(record: Mapping[str, Any]) -> tuple[float, float]:
    probe = record.get("leakage")
    if not isinstance(probe, Mapping):
        probe = leakage_of(record.get("id"))
    if not isinstance(probe, Mapping):
        return math.nan, math.nan
    if isinstance(probe.get("attributes"), Mapping):  # {"attributes": {attr: {"before": {...}, "after": {...}}}}
        per_stage = {stage: {attr: (stages or {}).get(stage) for attr, stages in probe["attributes"].items()}
                     for stage in ("before", "after")}
        return leakage_value(per_stage["before"]), leakage_value(per_stage["after"])
    return leakage_value(probe.get("before")), leakage_value(probe.get("after"))


def _s_r(record: Mapping[str, Any], stage: str) -> float:
    """FRoC's S_R (accuracy under attack, Eq. 8): the run summary's value, else that of the strongest (last)
    attack of the run's robustness block."""
    summary = _number(((record.get("summary") or {}).get(stage) or {}).get("s_r"))
    if not math.isnan(summary):
        return summary
    block = (record.get("robustness") or {}).get(stage)
    if not isinstance(block, Mapping):
        return math.nan
    s_r = block.get("s_r")
    if isinstance(s_r, Mapping):  # {attack: S_R}; the attacks are listed weakest first
        attacks = [a for a in (block.get("adversarial") or {}) if a in s_r] or list(s_r)
        return _number(s_r[attacks[-1]]) if attacks else math.nan
    return _number(s_r)


def _threat_model(record: Mapping[str, Any]) -> dict | None:
    """The recorded threat model of the run's S_R (``robustness.threat_model``), or ``None``."""
    threat = (record.get("robustness") or {}).get("threat_model")
    return dict(threat) if isinstance(threat, Mapping) else None


def _threat_key(threat: Mapping[str, Any] | None) -> str:
    """What makes two S_R comparable: every field of the threat model but the number of attacked rows (a
    subsample estimates the same score)."""
    return _json_key({k: v for k, v in (threat or {}).items() if k != "samples"}) if threat else ""


def threat_model_caption(table: pd.DataFrame) -> str | None:
    """One sentence when the S_R of the rows of ``table`` (from :func:`runs_table`) were measured under
    different threat models, naming each and the rows measured under it; ``None`` when they share one.

    Only rows with an S_R count (a run's before or after value, a baseline's). Runs recorded before threat
    models were named form a group of their own ("threat model not recorded")."""
    from fairaudit.robustness.audit import describe_threat_model

    groups: dict[str, tuple[str, list[str]]] = {}
    for _, row in table.iterrows():
        values = [row.get("s_r"), row.get("before_s_r")] if row.get("kind") != BASELINE else [row.get("s_r")]
        if not any(isinstance(v, float) and not math.isnan(v) for v in values):
            continue
        threat = row.get("threat_model") if isinstance(row.get("threat_model"), Mapping) else None
        key = _threat_key(threat)
        label = describe_threat_model(dict(threat, samples=None)).replace(", all rows", "") if threat else \
            describe_threat_model(None)
        name = f"baseline ({row.get('dataset')})" if row.get("kind") == BASELINE else str(row.get("method"))
        names = groups.setdefault(key, (label, []))[1]
        if name not in names:
            names.append(name)
    if len(groups) < 2:
        return None
    parts = [f"{label} — {', '.join(names)}" for label, names in groups.values()]
    return ("S_R is not comparable across these rows: they were measured under different threat models. "
            + "; ".join(parts) + ".")


def audit_value(audit: Mapping[str, Any] | None, name: str) -> float:
    """A metric of an audit JSON: overall metrics first, then disparities; NaN when absent."""
    if not audit:
        return math.nan
    if name in (audit.get("overall") or {}):
        return _number(audit["overall"][name])
    return _number((audit.get("disparities") or {}).get(name))


def audit_undefined(audit: Mapping[str, Any] | None, names: Sequence[str] = OVERALL + DISPARITIES) -> dict[str, str]:
    """``{metric: reason}`` of the metrics among ``names`` that an audit JSON records as undefined."""
    reasons = (audit or {}).get("undefined") or {}
    return {name: str(reasons[name]) for name in names if name in reasons and math.isnan(audit_value(audit, name))}


def undefined_text(undefined: Mapping[str, str] | None) -> str:
    """``EOD n/a: only group 'g=A' defines ...; DEO n/a: ...`` (empty when nothing is undefined)."""
    if not isinstance(undefined, Mapping):
        return ""
    return "; ".join(f"{catalogue.label(name)} n/a: {reason}" for name, reason in undefined.items())


def audit_interval(audit: Mapping[str, Any] | None, name: str) -> tuple[float, float]:
    interval = ((audit or {}).get("ci") or {}).get(name)
    if isinstance(interval, Sequence) and len(interval) == 2:
        return _number(interval[0]), _number(interval[1])
    return math.nan, math.nan


def is_collapsed(audit: Mapping[str, Any] | None, margin: float = COLLAPSE_MARGIN) -> bool:
    """Whether a model behind an audit has collapsed: balanced accuracy near chance or a single predicted class.

    Chance is 1 / number of classes; a single predicted class shows as an overall selection rate of 0 or 1
    (binary targets; the group selection rates weighted by group size).
    """
    if not audit:
        return False
    n_classes = (audit.get("meta") or {}).get("n_classes") or 2
    balanced = audit_value(audit, "balanced_accuracy")
    if not math.isnan(balanced) and balanced <= 1.0 / n_classes + margin:
        return True
    groups = audit.get("groups") or []
    if n_classes == 2 and groups:
        sizes = np.array([_number(g.get("n")) for g in groups])
        rates = np.array([_number(g.get("selection_rate")) for g in groups])
        ok = ~(np.isnan(sizes) | np.isnan(rates))
        if ok.any() and sizes[ok].sum() > 0:
            overall = float((sizes[ok] * rates[ok]).sum() / sizes[ok].sum())
            return overall <= 1e-9 or overall >= 1 - 1e-9
    return False


def _seed(record: Mapping[str, Any], spec: Mapping[str, Any]) -> int:
    seed = _number(record.get("seed", spec.get("seed", 0)))
    return 0 if math.isnan(seed) else int(seed)


def _json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _settings_text(settings: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((settings or {}).items()))


def _row(record: Mapping[str, Any], audit: Mapping[str, Any] | None, before: Mapping[str, Any] | None) -> dict:
    row: dict[str, Any] = {}
    for name in OVERALL + DISPARITIES:
        row[name] = audit_value(audit, name)
        row[f"before_{name}"] = audit_value(before, name)
        row[f"{name}_low"], row[f"{name}_high"] = audit_interval(audit, name)
    row["undefined"], row["before_undefined"] = audit_undefined(audit), audit_undefined(before)
    row["collapsed"] = is_collapsed(audit)
    return row


def _identity(record: Mapping[str, Any]) -> dict:
    spec = record.get("spec") or {}
    audit = record.get("before") or record.get("after") or {}
    meta = audit.get("meta") or {}
    target = spec.get("target") or meta.get("target")
    sensitive = spec.get("sensitive") or meta.get("sensitive_names") or meta.get("sensitive") or []
    if isinstance(sensitive, str):
        sensitive = [s for s in sensitive.split(",") if s]
    return {"dataset": record.get("dataset") or spec.get("dataset") or meta.get("dataset") or "",
            "model": str(record.get("model") or spec.get("model") or "demo"),
            "target": target or "", "sensitive": ",".join(sensitive),
            "data_options": spec.get("data_options") or {}}


def _setup_key(identity: Mapping[str, Any]) -> str:
    return _json_key([identity["dataset"], identity["model"], identity["target"], identity["sensitive"],
                      identity["data_options"]])


def _fetch_runs(limit: int) -> list[dict]:
    from fairaudit import jobs

    runs = []
    for listed in jobs.list_runs(limit=limit):
        try:
            runs.append(jobs.get_run(listed["id"]))
        except Exception:  # deleted meanwhile
            continue
    return runs


def runs_table(runs: Iterable[Mapping[str, Any]] | None = None, *, limit: int = 500,
               baselines: bool = True) -> pd.DataFrame:
    """One row per run (its *after* audit) plus one ``baseline`` row per audited setup (its *before* audit).

    ``runs`` are registry records (:func:`fairaudit.jobs.get_run`) or result JSONs; by default the newest
    ``limit`` runs of the registry. Columns: the identity of the run (``run_id``, ``kind`` = ``run`` or
    ``baseline``, ``method``, ``dataset``, ``model``, ``target``, ``sensitive``, ``status``, ``seed``,
    ``sweep``/``swept`` tags, ``settings`` text, ``config_key`` (the settings without the seed, equal for
    seed repeats), ``setup_key``, ``created``, ``seconds``, ``collapsed``), then for every name in
    :data:`METRICS` the after value, ``before_<name>`` and, for audit metrics, ``<name>_low``/``<name>_high``
    (95 % bootstrap interval), and ``undefined`` / ``before_undefined``: ``{metric: reason}`` of the
    metrics the audit could not define (NaN in their columns), and ``threat_model``: the recorded threat model
    of the run's S_R (``None`` when the run recorded none; a baseline row has its run's, see
    :func:`threat_model_caption`). Runs that are not done have NaN metrics.
    """
    records = [full_record(r) for r in (_fetch_runs(limit) if runs is None else runs)]
    rows, baseline_rows = [], {}
    for record in records:
        identity = _identity(record)
        setup_key = _setup_key(identity)
        spec = record.get("spec") or {}
        tags = spec.get("tags") or record.get("tags") or {}
        config = record.get("config") or spec.get("settings") or {}
        before, after = record.get("before"), record.get("after")
        done = record.get("status") == "done" and bool(after)
        leak_before, leak_after = _leakage(record)
        row = {"run_id": record.get("id") or "", "kind": "run", "method": record.get("method") or spec.get("method"),
               **{k: identity[k] for k in ("dataset", "model", "target", "sensitive")},
               "status": record.get("status"), "seed": _seed(record, spec),
               "sweep": tags.get("sweep") or "", "swept": ",".join(tags.get("swept") or []),
               "settings": _settings_text(spec.get("settings") or {}),
               "config_key": _json_key([setup_key, record.get("method") or spec.get("method"), config]),
               "setup_key": setup_key, "created": _number(record.get("created")),
               "seconds": _number(record.get("seconds")),
               **_row(record, after if done else None, before),
               "s_r": _s_r(record, "after") if done else math.nan, "before_s_r": _s_r(record, "before"),
               "leakage": leak_after if done else math.nan, "before_leakage": leak_before,
               "config": config, "threat_model": _threat_model(record)}
        rows.append(row)
        if baselines and before and setup_key not in baseline_rows:
            baseline_rows[setup_key] = {
                **row, "run_id": f"{BASELINE}:{row['run_id']}", "kind": BASELINE, "method": BASELINE,
                "status": "done", "sweep": "", "swept": "", "settings": "no mitigation", "config": {},
                "config_key": _json_key([setup_key, BASELINE]), "seconds": math.nan,
                **_row(record, before, before), "s_r": row["before_s_r"], "leakage": leak_before}
    columns = ID_COLUMNS + [c for name in METRICS for c in (name, f"before_{name}")] + [
        f"{n}_{side}" for n in OVERALL + DISPARITIES for side in ("low", "high")] + [
        "undefined", "before_undefined", "config", "threat_model"]
    frame = pd.DataFrame(rows + list(baseline_rows.values()), columns=columns)
    return frame.reset_index(drop=True)


def done_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The finished run rows and the baselines (what the charts draw)."""
    return table[(table["kind"] == BASELINE) | (table["status"] == "done")]


def seed_summary(table: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean ± standard deviation of every metric per configuration repeated over seeds.

    Rows of ``table`` (from :func:`runs_table`) with the same ``config_key`` (same method, setup and
    settings, any seed) form one configuration; finished runs only. Columns: the identity of the
    configuration, ``n_seeds``, ``seeds``, ``run_ids``, and per metric ``<name>`` (mean) and
    ``<name>_std`` (sample standard deviation; NaN for a single seed) over the seeds where it is defined,
    and ``<name>_n_undefined``, the number of seeds where the audit left it undefined. Baselines pass
    through with ``n_seeds`` = 1.
    """
    finished = done_runs(table)
    if finished.empty:
        return pd.DataFrame(columns=["config_key", "kind", "method", "dataset", "model", "target", "sensitive",
                                     "settings", "sweep", "swept", "n_seeds", "seeds", "run_ids", "collapsed",
                                     *metrics, *[f"{m}_std" for m in metrics],
                                     *[f"{m}_n_undefined" for m in metrics]])
    keys = ["config_key", "kind", "method", "dataset", "model", "target", "sensitive", "settings"]
    grouped = finished.groupby("config_key", sort=False)
    first = grouped[keys[1:] + ["sweep", "swept"]].first()
    means = grouped[list(metrics)].mean()
    stds = grouped[list(metrics)].std(ddof=1).add_suffix("_std")
    out = pd.concat([first, means, stds], axis=1)
    out["n_seeds"] = grouped.size()
    out["seeds"] = grouped["seed"].agg(lambda s: ",".join(str(v) for v in sorted(s)))
    out["run_ids"] = grouped["run_id"].agg(list)
    out["collapsed"] = grouped["collapsed"].any()
    undefined = finished["undefined"] if "undefined" in finished else pd.Series([{}] * len(finished),
                                                                                 index=finished.index)
    for m in metrics:
        flags = undefined.map(lambda reasons, m=m: isinstance(reasons, Mapping) and m in reasons)
        out[f"{m}_n_undefined"] = flags.groupby(finished["config_key"], sort=False).sum().astype(int)
    return out.reset_index()


def mean_std_text(mean: float, std: float, digits: int = 3, n_undefined: int = 0, n: int | None = None) -> str:
    """``0.812 ± 0.004`` (or only the mean when there is no spread); ``n/a`` when the metric is undefined in
    every seed, and ``0.812 ± 0.004 (1 of 3 n/a)`` when it is in ``n_undefined`` of ``n`` seeds."""
    if math.isnan(mean):
        return "n/a" if n_undefined else "–"
    text = f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    if n_undefined:
        text += f" ({n_undefined} of {n} n/a)" if n else f" ({n_undefined} n/a)"
    return text


def _cells(values: pd.Series, undefined: pd.Series, metric: str) -> pd.Series:
    """A metric column as shown: numbers, or ``n/a`` text where the audit left the metric undefined."""
    flags = undefined.map(lambda reasons: isinstance(reasons, Mapping) and metric in reasons)
    if not flags.any():
        return values
    return pd.Series(["n/a" if flag else ("" if math.isnan(v) else f"{v:.3f}") for v, flag in zip(values, flags)],
                     index=values.index, dtype=object)


def filter_table(table: pd.DataFrame, **allowed: Sequence[str] | None) -> pd.DataFrame:
    """Rows whose ``column`` value is in ``allowed[column]`` (an empty or ``None`` choice keeps all);
    baselines pass every filter on ``method`` and ``status``."""
    keep = pd.Series(True, index=table.index)
    for column, values in allowed.items():
        if values:
            match = table[column].isin(list(values))
            if column in ("method", "status"):
                match |= table["kind"] == BASELINE
            keep &= match
    return table[keep]


def display_table(table: pd.DataFrame, *, aggregate_seeds: bool = False) -> pd.DataFrame:
    """The table as shown to people: readable column names, every metric after and before mitigation.

    With ``aggregate_seeds`` one row per configuration (:func:`seed_summary`) with ``mean ± std`` text.
    A metric the audit left undefined reads ``n/a`` (a column that holds one becomes text), and the
    ``Undefined`` / ``Undefined before`` columns say why.
    """
    names = {"method": "Method", "dataset": "Dataset", "model": "Model", "target": "Target",
             "sensitive": "Sensitive", "settings": "Settings", "sweep": "Sweep"}
    if aggregate_seeds:
        summary = seed_summary(table)
        out = pd.DataFrame({"Runs": [", ".join(ids) for ids in summary["run_ids"]],
                            **{label: summary[col] for col, label in names.items()},
                            "Seeds": summary["n_seeds"]})
        for metric in METRICS:
            out[catalogue.label(metric)] = [
                mean_std_text(m, s, n_undefined=int(k), n=int(n)) for m, s, k, n in
                zip(summary[metric], summary[f"{metric}_std"], summary[f"{metric}_n_undefined"],
                    summary["n_seeds"])]
        out["Collapsed"] = summary["collapsed"].to_numpy()
        return out
    out = pd.DataFrame({"Run": table["run_id"], **{label: table[col] for col, label in names.items()},
                        "Status": table["status"], "Seed": table["seed"]})
    none = pd.Series([{}] * len(table), index=table.index, dtype=object)
    after, before = table.get("undefined", none), table.get("before_undefined", none)
    for metric in METRICS:
        shown = catalogue.label(metric)
        out[shown] = _cells(table[metric], after, metric)
        out[f"{shown} before"] = _cells(table[f"before_{metric}"], before, metric)
    out["Undefined"] = after.map(undefined_text)
    out["Undefined before"] = before.map(undefined_text)
    out["Seconds"] = table["seconds"]
    out["Collapsed"] = table["collapsed"]
    return out.reset_index(drop=True)
