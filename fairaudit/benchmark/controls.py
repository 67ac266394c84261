"""The rows of a benchmark: the chosen methods, the controls each method declares, and the quick settings.

A method declares its controls beside itself (``MitigationMethod.controls``):
``{"only_task": {"fairness_weight": 0}}`` is the method with one part removed
and becomes a row ``faap[only_task]``; ``{"erm": "erm"}`` names another method,
whose row is that method's ordinary row. Names are checked before anything
runs, with a suggestion for a misspelt one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from fairaudit.errors import FairauditError
from fairaudit.registry import did_you_mean

BASELINE = "baseline"

QUICK_SETTINGS: dict[str, Any] = {"epochs": 1, "classifier_epochs": 1, "bias_epochs": 1, "iterations": 3,
                                  "stats_samples": 100}
"""``--quick``: every method setting of these names is set to this value (unless given with ``--set``)."""
QUICK_DATA = {"n_val": 250, "n_test": 500}
"""``--quick``: dataset options that make the validation and test splits small (for datasets that have them;
the training split stays as it is, so the deployed model is trained as usual)."""
QUICK_JOB = {"n_boot": 50, "robustness_samples": 64, "split_samples": 300}
"""``--quick``: bootstrap resamples, attacked test samples and audited train/val rows of every member run."""


@dataclass
class Row:
    """One row of the benchmark table: a method with settings, run once per seed.

    ``control_of`` is the method this row is a control of (``None`` for a method that was asked for);
    ``controls`` are the names of this row's control rows (for asked-for methods).
    """

    name: str
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    control_of: str | None = None
    controls: list[str] = field(default_factory=list)
    target_metrics: tuple[str, ...] = ("deo",)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "settings": dict(self.settings),
                "control_of": self.control_of, "controls": list(self.controls),
                "target_metrics": list(self.target_metrics)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Row":
        return cls(name=data["name"], method=data["method"], settings=dict(data.get("settings") or {}),
                   control_of=data.get("control_of"), controls=list(data.get("controls") or []),
                   target_metrics=tuple(data.get("target_metrics") or ("deo",)))


def split_names(value: str | Sequence[str] | None, what: str) -> list[str]:
    """``"faap, erm"`` → ``["faap", "erm"]``; an empty list, or a name given twice, is refused."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(n).strip() for n in items if str(n).strip()]
    if not names:
        raise FairauditError(f"give at least one {what}.")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FairauditError(f"{what} '{twice[0]}' is given twice.")
    return names


def _method(name: str, kind: str, dataset: str):
    from fairaudit.jobs.spec import load_methods
    from fairaudit.mitigation import METHODS

    load_methods()
    if name not in METHODS:
        raise FairauditError(f"unknown method '{name}'{did_you_mean(name, sorted(METHODS))}; methods: "
                             f"{', '.join(sorted(METHODS))}.")
    cls = METHODS[name]
    if kind not in cls.kinds:
        raise FairauditError(f"method '{name}' works on {' and '.join(cls.kinds)} datasets; '{dataset}' is {kind}.")
    return cls


def control_row_name(method: str, control: str) -> str:
    return f"{method}[{control}]"


def resolve_rows(methods: str | Sequence[str], dataset: str, controls: bool | str | Sequence[str] = False
                 ) -> list[Row]:
    """The benchmark's rows: each method of ``methods``, then the controls asked for.

    ``controls`` is ``False`` (none), ``True`` (every control the methods declare) or names of controls:
    ``only_task`` (any chosen method that declares it) or ``faap[only_task]``. A control that is another
    method adds that method's row once (marked ``control_of`` the first method that declares it, unless it
    was asked for itself). Raises :class:`FairauditError` for an unknown method or control name, or a method
    that does not work on the dataset's kind (image or tabular).
    """
    from fairaudit.data.registry import get_spec

    kind = get_spec(dataset).kind
    names = split_names(methods, "method")
    classes = {name: _method(name, kind, dataset) for name in names}
    rows = {name: Row(name, name, target_metrics=tuple(classes[name].target_metrics)) for name in names}
    wanted = _wanted_controls(controls, names, classes)
    order: list[str] = []  # each method, then its controls
    for name in names:
        if name not in order:
            order.append(name)
        for control, what in classes[name].controls.items():
            if (name, control) not in wanted:
                continue
            if isinstance(what, str):
                other = _method(what, kind, dataset)
                if what not in rows:
                    rows[what] = Row(what, what, control_of=name, target_metrics=tuple(other.target_metrics))
                row_name = what
            else:
                row_name = control_row_name(name, control)
                rows[row_name] = Row(row_name, name, dict(what), control_of=name,
                                     target_metrics=rows[name].target_metrics)
            rows[name].controls.append(row_name)
            if row_name not in order:
                order.append(row_name)
    return [rows[n] for n in order]


def _wanted_controls(controls, names: list[str], classes: dict) -> set[tuple[str, str]]:
    declared = {(m, c) for m in names for c in classes[m].controls}
    if controls is True:
        return declared
    if not controls:
        return set()
    chosen: set[tuple[str, str]] = set()
    for item in split_names(controls, "control"):
        if "[" in item and item.endswith("]"):
            method, control = item[:-1].split("[", 1)
            pairs = {(method.strip(), control.strip())} & declared
        else:
            pairs = {(m, c) for m, c in declared if c == item}
        if not pairs:
            known = sorted({control_row_name(m, c) for m, c in declared} | {c for _, c in declared})
            listed = f"; controls of these methods: {', '.join(known)}" if known else \
                "; these methods declare no controls"
            raise FairauditError(f"unknown control '{item}'{did_you_mean(item, known)}{listed}.")
        chosen |= pairs
    return chosen


def row_settings(row: Row, method_cls, user: dict[str, Any], scoped: dict[str, dict[str, Any]],
                 quick: bool) -> dict[str, Any]:
    """The settings of one row's runs: quick defaults < ``--set`` values the method has < ``--set
    METHOD.key=value`` < the control's own settings."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(method_cls.Config)}
    settings: dict[str, Any] = {}
    if quick:
        settings.update({k: v for k, v in QUICK_SETTINGS.items() if k in fields})
    settings.update({k: v for k, v in user.items() if k in fields})
    settings.update(scoped.get(row.method, {}))
    settings.update(row.settings)
    return settings


def split_settings(settings: dict[str, Any], rows: Sequence[Row]) -> tuple[dict[str, Any], dict[str, dict]]:
    """``--set`` pairs into global ones (applied to every method that has the setting) and
    ``METHOD.key=value`` ones; a key no method has, or a scope that names no row's method, is refused."""
    import dataclasses

    from fairaudit.mitigation import get_method

    methods = sorted({row.method for row in rows})
    fields = {m: {f.name for f in dataclasses.fields(get_method(m).Config)} for m in methods}
    plain: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        if "." in key:
            method, name = key.split(".", 1)
            if method not in fields:
                raise FairauditError(f"setting '{key}' names method '{method}', which is not in this benchmark"
                                     f"{did_you_mean(method, methods)}; methods: {', '.join(methods)}.")
            if name not in fields[method]:
                raise FairauditError(f"method '{method}' has no setting '{name}'"
                                     f"{did_you_mean(name, sorted(fields[method]))}.")
            scoped.setdefault(method, {})[name] = value
            continue
        if not any(key in f for f in fields.values()):
            every = sorted(set().union(*fields.values()))
            raise FairauditError(f"no method of this benchmark has a setting '{key}'{did_you_mean(key, every)}.")
        plain[key] = value
    return plain, scoped
