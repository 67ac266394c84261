"""Per-group adversarial robustness: clean vs. adversarial accuracy of every group under FGSM and PGD.

The robustness score follows the FRoC paper (Xu et al., "Towards Fair and
Robust Classification", Eq. 8): ``S_R = Acc(x̃_test, y_test)``, the accuracy on
adversarial versions of the test inputs, with FGSM (Eq. 1) and PGD (Eq. 2) as
the two attacks. Here it is reported for the whole population and for every
(intersectional) sensitive group, together with the *robustness gap*: max − min
adversarial accuracy over the groups.

Every per-group number comes from the metrics engine
(:func:`fairaudit.audit.audit_predictions`) applied to the predictions on the
adversarial inputs, so the clean and adversarial columns are computed by the
same code as any audit.

**Worst case over the threat model.** An attack may land on a point that is
classified correctly although a weaker attack (or the clean input) already
fooled the model. As in the robust accuracy of AutoAttack, a sample counts as
robust under an attack only if the clean input *and* every point found for it
so far inside the same ε-ball are classified correctly: FGSM's result is
pooled with the clean input, PGD's with FGSM's and the clean input (the FGSM
point lies in PGD's ball: same ε, same norm). For each sample the reported
prediction is the first one that is wrong, if any. Hence, group by group,
``PGD accuracy ≤ FGSM accuracy ≤ clean accuracy`` always holds, and ``ε = 0``
gives exactly the clean accuracy.

**Threat model** (:class:`ThreatModel`, :func:`attack_surface`). Every S_R
is measured under one named :class:`ThreatModel` (radius, norm, which
features move, which labels the attack and the score use, PGD steps and
start, number of attacked rows, clipping), recorded with the result as
``threat_model``. ``labels="predicted"`` (the FRoC authors' released code)
attacks the model's clean prediction and scores the adversarial point
against it, so S_R is then the fraction of rows whose prediction the attack
cannot change; the clean audit still uses the true labels.

* Images: every pixel may move, the result is clipped to ``[0, 1]``.
* Tabular data, ``features="all"``: every input column moves, one-hot blocks
  included (as in the FRoC authors' released code); with ``clip="observed"``
  each column stays within its range observed in the attacked split (``[0,
  1]`` for a one-hot column).
* Tabular data, ``features="numeric"`` (the default): only the *numeric* features are perturbed (FRoC §4.2 / §6.2
  attacks numeric features with PGD). They are standardised, so ``eps`` is in
  training standard deviations; the result is clipped to the range of each
  numeric feature observed in the attacked split, so an attack cannot create
  e.g. a negative capital gain. One-hot categorical blocks are held fixed: the
  paper's Greedy/Gumbel attack on categories (a Concrete relaxation followed
  by picking the most probable category) is reduced to a change budget of zero
  categories, so every category stays a valid one-hot vector by construction.
  Datasets without column bookkeeping treat a feature as categorical when all
  its values are 0 or 1.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from fairaudit.attacks import ATTACKS, attack_by_name
from fairaudit.attacks.norms import NORMS
from fairaudit.audit.inference import Predictions, iterate_batches
from fairaudit.data.base import FairDataset, TensorFairDataset
from fairaudit.device import autocast, default_batch_size, resolve_device
from fairaudit.errors import FairauditError
from fairaudit.metrics import AuditReport
from fairaudit.progress import Counter

__all__ = ["ATTACKS", "AttackConfig", "AttackSurface", "FEATURES", "LABELS", "RobustnessAuditor", "RobustnessReport",
           "ThreatModel", "attack_surface", "default_eps", "describe_threat_model", "epsilon_sweep", "parse_attacks",
           "robustness_audit", "sample_rows", "threat_model"]

# ATTACKS (from fairaudit.attacks) lists the attacks weakest first: each one is pooled with the ones before it.
IMAGE_EPS = 8 / 255
TABULAR_EPS = 0.1
FEATURES = ("numeric", "all")  # which tabular columns an attack may move
LABELS = ("true", "predicted")  # which labels the attack targets and S_R is scored against

Postprocess = Callable[[FairDataset], Predictions]


def default_eps(kind: str) -> float:
    """The usual radius: 8/255 on ``[0, 1]`` images, 0.1 standard deviations on standardised features."""
    return IMAGE_EPS if kind == "image" else TABULAR_EPS


def parse_attacks(attacks: str | Sequence[str]) -> list[str]:
    """``"fgsm,pgd"`` or ``["pgd"]`` → attack names in pooling order (FGSM before PGD), validated."""
    names = [a.strip().lower() for a in (attacks.split(",") if isinstance(attacks, str) else attacks)]
    names = [a for a in names if a]
    unknown = [a for a in names if a not in ATTACKS]
    if unknown:
        raise FairauditError(f"unknown attack '{unknown[0]}'; use {', '.join(ATTACKS)} or both comma-separated.")
    if not names:
        raise FairauditError(f"name at least one attack: {', '.join(ATTACKS)}.")
    return [a for a in ATTACKS if a in names]


@dataclass(frozen=True)
class AttackConfig:
    """One attack of the audit. ``step_size`` defaults to ``2.5 · eps / steps`` (PGD); FGSM takes one step ``eps``.

    PGD starts from a random point of the ball unless ``random_start`` is off (then from the clean input).
    """

    name: str
    eps: float
    norm: str = "linf"
    steps: int = 10
    step_size: float | None = None
    restarts: int = 1
    random_start: bool = True

    def to_dict(self) -> dict:
        if self.name == "fgsm":
            return {"name": "fgsm", "eps": self.eps, "norm": self.norm, "steps": 1, "step_size": self.eps,
                    "restarts": 1, "random_start": False}
        step = 2.5 * self.eps / self.steps if self.step_size is None else self.step_size
        return {**dataclasses.asdict(self), "step_size": step}


@dataclass(frozen=True)
class ThreatModel:
    """The named threat model an S_R (FRoC Eq. 8) is measured under.

    ``eps`` (``None``: :func:`default_eps` of the data kind) is the radius in
    ``norm``; ``features`` is ``"numeric"`` (tabular: numeric columns only,
    one-hot blocks fixed) or ``"all"`` (every column, one-hot blocks
    included); ``labels`` is ``"true"`` (attack and score against y) or
    ``"predicted"`` (against the model's clean prediction, as the FRoC
    authors' released code scores S_R); PGD takes ``steps`` steps of
    ``step_size`` (``None``: ``2.5·eps/steps`` with a random start,
    ``eps/steps`` from the clean input); ``samples`` rows of the split are
    attacked (a seeded subsample; ``None``: all rows, ``0``: no attack);
    ``clip`` is ``"observed"`` (tabular columns stay within their observed
    range; images always within ``[0, 1]``) or ``None``. ``name`` labels it
    in results.
    """

    eps: float | None = None
    norm: str = "linf"
    features: str = "numeric"
    labels: str = "true"
    steps: int = 10
    random_start: bool = True
    samples: int | None = None
    clip: str | None = "observed"
    step_size: float | None = None
    name: str = "default"

    def __post_init__(self) -> None:
        if self.eps is not None and (isinstance(self.eps, bool) or not 0 <= float(self.eps) < float("inf")):
            raise FairauditError(f"the threat model's radius eps must be a finite number ≥ 0, got {self.eps!r}.")
        if self.norm not in NORMS:
            raise FairauditError(f"unknown attack norm '{self.norm}'; use {' or '.join(NORMS)}.")
        if self.features not in FEATURES:
            raise FairauditError(f"unknown attacked features '{self.features}'; use {' or '.join(FEATURES)}.")
        if self.labels not in LABELS:
            raise FairauditError(f"unknown attack labels '{self.labels}'; use {' or '.join(LABELS)}.")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise FairauditError(f"the number of PGD steps must be a whole number ≥ 1, got {self.steps!r}.")
        if self.samples is not None and (isinstance(self.samples, bool) or int(self.samples) != self.samples
                                         or self.samples < 0):
            raise FairauditError(f"the number of attacked rows must be a whole number ≥ 0, got {self.samples!r}.")
        if self.clip not in ("observed", None):
            raise FairauditError(f"unknown clipping '{self.clip}'; use 'observed' or None.")
        if self.step_size is not None and not (self.step_size > 0 or (self.step_size == 0 and self.eps == 0)):
            raise FairauditError(f"the PGD step size must be > 0, got {self.step_size!r}.")

    def resolved(self, kind: str) -> "ThreatModel":
        """This threat model with ``eps`` and ``step_size`` filled in for data of ``kind``."""
        eps = default_eps(kind) if self.eps is None else float(self.eps)
        step = self.step_size
        if step is None:
            step = (2.5 if self.random_start else 1.0) * eps / self.steps
        return dataclasses.replace(self, eps=eps, step_size=step)

    def to_dict(self) -> dict:
        """``name, eps, norm, features, labels, steps, step_size, random_start, samples, clip`` (JSON types)."""
        return {"name": self.name, "eps": self.eps, "norm": self.norm, "features": self.features,
                "labels": self.labels, "steps": int(self.steps), "step_size": self.step_size,
                "random_start": bool(self.random_start), "samples": self.samples, "clip": self.clip}

    @classmethod
    def from_dict(cls, data: dict) -> "ThreatModel":
        """The inverse of :meth:`to_dict` (unknown keys, e.g. the attacked column names, are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def describe_threat_model(threat) -> str:
    """One line naming the threat model of an S_R, from a :class:`ThreatModel` or its recorded dict.

    Results recorded before threat models were named carry none: the line then says so."""
    if isinstance(threat, ThreatModel):
        threat = threat.to_dict()
    if not isinstance(threat, dict) or "eps" not in threat:
        return "threat model not recorded (an older result)"
    features = {"all": "all columns (one-hot blocks included)", "numeric": "numeric columns"}.get(
        threat.get("features"), str(threat.get("features")))
    start = "random start" if threat.get("random_start") else "from the clean input"
    step = threat.get("step_size")
    samples = threat.get("samples")
    rows = "all rows" if samples is None else f"{int(samples):,} rows"
    clip = "clipped to the observed range" if threat.get("clip") == "observed" else "unclipped"
    return (f"{threat.get('name', 'default')}: ε {float(threat['eps']):g} {str(threat.get('norm', 'linf')).upper()}"
            f" on {features}, {threat.get('labels', 'true')} labels, PGD-{threat.get('steps')}"
            + (f" (step {float(step):g}, {start})" if step is not None else f" ({start})")
            + f", {rows}, {clip}")


@dataclass
class AttackSurface:
    """Where inputs may move in one split: ``feature_mask`` (1 = may change) and ``clip`` ``(lo, hi)``."""

    feature_mask: torch.Tensor | None
    clip: tuple[torch.Tensor | float, torch.Tensor | float] | None
    description: dict = field(default_factory=dict)


def _all_inputs(dataset: FairDataset) -> torch.Tensor:
    if isinstance(dataset, TensorFairDataset):
        return dataset.x
    return torch.stack([dataset.load_input(i) for i in range(len(dataset))])


def _numeric_columns(dataset: FairDataset) -> list[int]:
    groups = getattr(dataset, "feature_groups", None)
    numeric = getattr(dataset, "numeric_features", None)
    if groups is not None and numeric is not None:
        return sorted(j for column in numeric for j in groups[column])
    x = _all_inputs(dataset)
    binary = ((x == 0) | (x == 1)).all(0)
    return [int(j) for j in torch.nonzero(~binary).flatten()]


def attack_surface(dataset: FairDataset, clip: str | None = "observed", features: str = "numeric") -> AttackSurface:
    """The feature mask and valid range used to attack ``dataset`` (see the module docstring).

    ``clip``: for tabular data, ``"observed"`` clips the attacked features to
    their observed range in ``dataset``; ``None`` leaves them unbounded.
    ``features``: ``"numeric"`` (one-hot blocks fixed) or ``"all"`` (every
    column). Images are always clipped to ``[0, 1]``, every pixel moves.
    """
    if dataset.kind == "image":
        return AttackSurface(None, (0.0, 1.0), {"kind": "image", "perturbed": "all pixels", "clip": [0.0, 1.0]})
    if clip not in ("observed", None):
        raise FairauditError(f"unknown clipping '{clip}' for tabular features; use 'observed' or None.")
    if features not in FEATURES:
        raise FairauditError(f"unknown attacked features '{features}'; use {' or '.join(FEATURES)}.")
    (d,) = dataset.input_shape
    names = dataset.feature_names or [str(j) for j in range(d)]
    if features == "all":
        description = {"kind": "tabular", "perturbed": list(names), "fixed": "nothing (one-hot blocks included)",
                       "clip": clip}
        if clip is None:
            return AttackSurface(None, None, description)
        x = _all_inputs(dataset)
        return AttackSurface(None, (x.amin(0), x.amax(0)), description)
    numeric = _numeric_columns(dataset)
    if not numeric:
        raise FairauditError(f"dataset '{dataset.name}' has no numeric feature to perturb; tabular attacks change "
                             "numeric features only.")
    mask = torch.zeros(d)
    mask[numeric] = 1.0
    description = {"kind": "tabular", "perturbed": [names[j] for j in numeric],
                   "fixed": "one-hot categorical blocks", "clip": clip}
    if clip is None:
        return AttackSurface(mask, None, description)
    x = _all_inputs(dataset)
    lo, hi = torch.full((d,), -torch.inf), torch.full((d,), torch.inf)
    lo[numeric], hi[numeric] = x[:, numeric].amin(0), x[:, numeric].amax(0)
    return AttackSurface(mask, (lo, hi), description)


threat_model = attack_surface  # the former name of attack_surface


class _AmpForward(nn.Module):
    """``model`` under mixed precision on CUDA, with float32 logits (attack gradients and softmax stay exact)."""

    def __init__(self, model: nn.Module, device: torch.device):
        super().__init__()
        self.model, self.device = model, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            return self.model(x).float()


@dataclass
class RobustnessReport:
    """Clean and adversarial audits of the same samples, one per attack."""

    clean: AuditReport
    adversarial: dict[str, AuditReport]
    attacks: dict[str, AttackConfig]
    threat: dict
    """The :class:`ThreatModel` as a dict (``samples`` = rows attacked) plus the attacked columns."""
    meta: dict = field(default_factory=dict)

    @staticmethod
    def _gap(report: AuditReport) -> float | None:
        acc = [g["accuracy"] for g in report.groups if g.get("accuracy") is not None and g["n"] > 0]
        return float(max(acc) - min(acc)) if acc else None

    def gap(self, attack: str | None = None) -> float | None:
        """Max − min accuracy over the groups under ``attack`` (clean accuracy for ``None``)."""
        return self._gap(self.clean if attack is None else self.adversarial[attack])

    @property
    def s_r(self) -> dict[str, float]:
        """FRoC's robustness score S_R (Eq. 8) per attack: overall adversarial accuracy."""
        return {name: float(r.overall["accuracy"]) for name, r in self.adversarial.items()}

    @property
    def strongest(self) -> str:
        """Name of the last (strongest) attack of the audit, e.g. ``"pgd"``."""
        return list(self.adversarial)[-1]

    def groups_frame(self) -> pd.DataFrame:
        """One row per group and condition (``clean`` or an attack name): ``group``, ``n``, ``accuracy``."""
        rows = []
        for condition, report in [("clean", self.clean), *self.adversarial.items()]:
            rows += [{"condition": condition, "group": g["group"], "n": g["n"], "accuracy": g["accuracy"]}
                     for g in report.groups]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """The robustness JSON: ``clean``, ``adversarial`` (per attack), ``s_r``, ``threat_model``, ``meta``."""
        def block(report: AuditReport) -> dict:
            data = report.to_dict()
            return {"overall": data["overall"], "groups": data["groups"], "gap": self._gap(report)}

        return {"clean": block(self.clean),
                "adversarial": {name: {**block(r), "attack": self.attacks[name].to_dict()}
                                for name, r in self.adversarial.items()},
                "s_r": self.s_r, "threat_model": self.threat, "meta": self.meta}


def _sample_indices(n: int, max_samples: int | None, seed: int) -> np.ndarray:
    if max_samples is None or max_samples >= n:
        return np.arange(n)
    if max_samples < 1:
        raise FairauditError(f"the number of sampled rows must be ≥ 1, got {max_samples}.")
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_samples), replace=False))


class _RowsView(FairDataset):
    """Rows ``rows`` of ``parent`` as a dataset of their own (inputs still decoded lazily by the parent)."""

    def __init__(self, parent: FairDataset, rows: np.ndarray):
        self.parent, self.rows = parent, rows
        self.name, self.kind, self.region_names = parent.name, parent.kind, parent.region_names
        super().__init__(parent.split, parent.attributes.iloc[rows], parent.value_names, parent.input_shape,
                         parent.target, parent.sensitive, parent.feature_names)

    def load_input(self, i: int) -> torch.Tensor:
        return self.parent.load_input(int(self.rows[i]))


def sample_rows(dataset: FairDataset, max_samples: int | None, seed: int = 0) -> FairDataset:
    """A seeded random subsample of at most ``max_samples`` rows of ``dataset`` (``dataset`` itself if it fits).

    Rows keep their order; in-memory data stays in memory. The target and
    sensitive attributes selected on ``dataset`` carry over.
    """
    rows = _sample_indices(len(dataset), max_samples, seed)
    if len(rows) == len(dataset):
        return dataset
    if isinstance(dataset, TensorFairDataset):
        view = TensorFairDataset(dataset.name, dataset.split, dataset.x[torch.as_tensor(rows)],
                                 dataset.attributes.iloc[rows], dataset.value_names, dataset.target,
                                 dataset.sensitive, kind=dataset.kind, feature_names=dataset.feature_names)
        for name in ("feature_groups", "numeric_features", "categorical_features", "favorable_label"):
            if hasattr(dataset, name):
                setattr(view, name, getattr(dataset, name))
    else:
        view = _RowsView(dataset, rows)
    view.source_rows = rows
    return view


def _correct(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The audit's decision rule at its default threshold 0.5 (Predictions.predictions).
    pred = (probs[:, 1] >= 0.5).long() if probs.shape[1] == 2 else probs.argmax(1)
    return pred == y


class RobustnessAuditor:
    """Clean and adversarial accuracy per group under FGSM and/or PGD.

    Parameters
    ----------
    attacks:
        ``"fgsm"``, ``"pgd"`` or both (a list or a comma-separated string).
    eps:
        Radius of the threat model (default :func:`default_eps` of the dataset kind).
    norm, steps, step_size, restarts, random_start:
        PGD settings (FGSM is one step of length ``eps`` in the same norm);
        ``step_size`` defaults to ``2.5 · eps / steps``; each restart starts
        from a random point of the ball, or from the clean input when
        ``random_start`` is off (one restart is then enough).
    max_samples:
        Attack a seeded random subsample of at most this many samples (``None``: all).
    clip, features:
        Tabular range handling and attacked columns, see :func:`attack_surface`.
    labels:
        ``"true"`` or ``"predicted"`` (attack and score against the model's
        clean prediction), see :class:`ThreatModel`.
    name:
        The threat model's name in the report.
    n_boot:
        Bootstrap resamples of each audit (0: point estimates only).
    seed, device, batch_size:
        Subsample and random-start seed, device (``auto`` = CUDA when
        available; CUDA runs the model under mixed precision with large
        batches), attack batch size.

    Example::

        report = RobustnessAuditor(attacks="fgsm,pgd", eps=8/255).audit(model, test_ds)
        report.s_r["pgd"], report.gap("pgd"), report.to_dict()
    """

    def __init__(self, attacks: str | Sequence[str] = ATTACKS, *, eps: float | None = None, norm: str = "linf",
                 steps: int = 10, step_size: float | None = None, restarts: int = 1, random_start: bool = True,
                 max_samples: int | None = None, clip: str | None = "observed", n_boot: int = 0, seed: int = 0,
                 device="auto", batch_size: int | None = None, features: str = "numeric", labels: str = "true",
                 name: str = "default"):
        self.attacks = attacks
        self.eps = eps
        self.norm = norm
        self.steps = steps
        self.step_size = step_size
        self.restarts = restarts
        self.random_start = bool(random_start)
        self.max_samples = max_samples
        self.clip = clip
        self.n_boot = n_boot
        self.seed = seed
        self.device = device
        self.batch_size = batch_size
        if features not in FEATURES:
            raise FairauditError(f"unknown attacked features '{features}'; use {' or '.join(FEATURES)}.")
        if labels not in LABELS:
            raise FairauditError(f"unknown attack labels '{labels}'; use {' or '.join(LABELS)}.")
        self.features, self.labels, self.name = features, labels, name

    @classmethod
    def from_threat_model(cls, threat: ThreatModel, attacks: str | Sequence[str] = ATTACKS, *, n_boot: int = 0,
                          seed: int = 0, device="auto", batch_size: int | None = None) -> "RobustnessAuditor":
        """An auditor that attacks exactly within ``threat`` (its ``samples`` = ``max_samples``; must not be 0)."""
        if threat.samples == 0:
            raise FairauditError("the threat model attacks no rows (samples = 0).")
        return cls(attacks, eps=threat.eps, norm=threat.norm, steps=threat.steps, step_size=threat.step_size,
                   random_start=threat.random_start, max_samples=threat.samples, clip=threat.clip, n_boot=n_boot,
                   seed=seed, device=device, batch_size=batch_size, features=threat.features, labels=threat.labels,
                   name=threat.name)

    def threat_model(self, kind: str, samples: int | None = None) -> ThreatModel:
        """The :class:`ThreatModel` this auditor attacks within on data of ``kind`` (``samples``: rows attacked)."""
        return ThreatModel(eps=self.eps, norm=self.norm, features=self.features, labels=self.labels,
                           steps=int(self.steps), random_start=self.random_start,
                           samples=self.max_samples if samples is None else int(samples), clip=self.clip,
                           step_size=self.step_size, name=self.name).resolved(kind)

    def _labels(self, clean: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The labels the attack targets and adversarial points are scored against (see :class:`ThreatModel`)."""
        if self.labels == "true":
            return y
        return (clean[:, 1] >= 0.5).long() if clean.shape[1] == 2 else clean.argmax(1)

    def _configs(self, kind: str, attacks: str | Sequence[str] | None = None) -> dict[str, AttackConfig]:
        eps = default_eps(kind) if self.eps is None else float(self.eps)
        if not eps >= 0 or not np.isfinite(eps):
            raise FairauditError(f"the attack radius eps must be a finite number ≥ 0, got {self.eps}.")
        if self.norm not in NORMS:
            raise FairauditError(f"unknown attack norm '{self.norm}'; use {' or '.join(NORMS)}.")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise FairauditError(f"the number of PGD steps must be a whole number ≥ 1, got {self.steps}.")
        if isinstance(self.restarts, bool) or int(self.restarts) != self.restarts or self.restarts < 1:
            raise FairauditError(f"the number of PGD restarts must be a whole number ≥ 1, got {self.restarts}.")
        if self.step_size is not None and not self.step_size > 0:
            raise FairauditError(f"the PGD step size must be > 0, got {self.step_size}.")
        return {name: AttackConfig(name, eps, self.norm, int(self.steps), self.step_size, int(self.restarts),
                                   self.random_start)
                for name in parse_attacks(self.attacks if attacks is None else attacks)}

    def _attack(self, config: AttackConfig, forward: nn.Module, x, y, threat: AttackSurface,
                generator: torch.Generator) -> torch.Tensor:
        mask = None if threat.feature_mask is None else threat.feature_mask.to(x.device)
        clip = None if threat.clip is None else tuple(torch.as_tensor(b, dtype=x.dtype, device=x.device)
                                                      for b in threat.clip)
        return attack_by_name(config.name, forward, x, y, eps=config.eps, steps=config.steps,
                              step_size=config.step_size, random_start=config.random_start, restarts=config.restarts,
                              norm=config.norm, clip=clip, feature_mask=mask, generator=generator)

    def perturb(self, model: nn.Module, dataset: FairDataset, attack: str = "pgd") -> tuple[torch.Tensor, torch.Tensor]:
        """The clean inputs of the (subsampled) ``dataset`` and their adversarial versions under ``attack``.

        Both are returned on the CPU, row ``i`` = the ``i``-th sampled row.
        Only this attack's points are returned (no pooling with weaker attacks).
        """
        (config,) = self._configs(dataset.kind, [attack]).values()
        device = resolve_device(self.device)
        threat = attack_surface(dataset, self.clip, self.features)
        dataset = sample_rows(dataset, self.max_samples, self.seed)
        forward = _AmpForward(model.to(device).eval(), device)
        generator = torch.Generator(device=device).manual_seed(int(self.seed))
        clean, adversarial = [], []
        for x, y, _, _ in iterate_batches(dataset, self.batch_size or default_batch_size(device, dataset.kind),
                                          device):
            x, y = x.to(device).float(), y.to(device)
            if self.labels == "predicted":
                with torch.no_grad():
                    y = self._labels(torch.softmax(forward(x), dim=1), y)
            adversarial.append(self._attack(config, forward, x, y, threat, generator).cpu())
            clean.append(x.cpu())
        return torch.cat(clean), torch.cat(adversarial)

    def audit(self, model: nn.Module, dataset: FairDataset, *, postprocess: Postprocess | None = None,
              progress: Counter | None = None) -> RobustnessReport:
        """Attack ``model`` on ``dataset`` and audit clean and adversarial predictions per group.

        ``postprocess`` (optional) turns a dataset into the final
        :class:`Predictions` (e.g. group thresholds on the model's scores); the
        attacks then target ``model`` and the post-processor decides on the
        clean and on the adversarial inputs. ``progress(done, total)`` counts
        attacked samples.
        """
        from fairaudit.audit import audit_predictions

        start = time.perf_counter()
        configs = self._configs(dataset.kind)
        device = resolve_device(self.device)
        if len(dataset) == 0:
            raise FairauditError(f"split '{dataset.split}' of dataset '{dataset.name}' is empty.")
        threat = attack_surface(dataset, self.clip, self.features)
        full, dataset = dataset, sample_rows(dataset, self.max_samples, self.seed)
        rows = getattr(dataset, "source_rows", None) if dataset is not full else None  # Predictions keep split indices
        num_classes = getattr(model, "num_classes", dataset.num_classes)
        if num_classes != dataset.num_classes:
            raise FairauditError(f"the model has {num_classes} output classes but target '{dataset.target}' "
                                 f"has {dataset.num_classes}.")
        model = model.to(device).eval()
        forward = _AmpForward(model, device)
        batch_size = self.batch_size or default_batch_size(device, dataset.kind)
        generator = torch.Generator(device=device).manual_seed(int(self.seed))
        decide = self._decider(forward, dataset, postprocess)
        clean_probs, probs = [], {name: [] for name in configs}
        labels, attacked_labels, sensitive, order = [], [], [], []
        done = 0
        for x, y, s, idx in iterate_batches(dataset, batch_size, device):
            x, y = x.to(device).float(), y.to(device)
            idx = torch.as_tensor(idx)
            clean = decide(x, idx)
            target = self._labels(clean, y)
            worst, robust = clean.clone(), _correct(clean, target)
            for name, config in configs.items():
                current = decide(self._attack(config, forward, x, target, threat, generator), idx)
                ok = _correct(current, target)
                # Keep, per sample, the first wrong prediction found in the ball (see the module docstring).
                worst = torch.where((robust & ~ok)[:, None], current, worst)
                robust = robust & ok
                probs[name].append(torch.where(robust[:, None], current, worst).cpu())
            clean_probs.append(clean.cpu())
            labels.append(y.cpu())
            attacked_labels.append(target.cpu())
            sensitive.append(torch.as_tensor(s).view(len(y), -1))
            order.append(idx.cpu() if rows is None else torch.as_tensor(rows)[idx.cpu()])
            done += len(y)
            if progress:
                progress(done, len(dataset))

        def predictions(chunks: list[torch.Tensor], condition: str) -> Predictions:
            truth = labels if condition == "clean" else attacked_labels
            return Predictions(labels=torch.cat(truth).numpy().astype(np.int64),
                               probs=torch.cat(chunks).numpy().astype(np.float32),
                               sensitive=torch.cat(sensitive).numpy().astype(np.int64),
                               indices=torch.cat(order).numpy().astype(np.int64),
                               sensitive_names=list(dataset.sensitive),
                               value_names={k: dataset.value_names[k] for k in dataset.sensitive},
                               class_names=dataset.class_names,
                               meta={"dataset": dataset.name, "split": dataset.split, "target": dataset.target,
                                     "device": str(device), "condition": condition})

        def audit(chunks, condition):
            return audit_predictions(predictions(chunks, condition), n_boot=self.n_boot, seed=self.seed,
                                     device=device)

        clean_report = audit(clean_probs, "clean")
        adversarial = {name: audit(chunks, name) for name, chunks in probs.items()}
        meta = {"dataset": dataset.name, "split": dataset.split, "target": dataset.target,
                "sensitive": list(dataset.sensitive), "n": len(dataset), "n_split": len(full),
                "subsampled": len(dataset) < len(full), "seed": self.seed, "device": str(device),
                "worst_case_over": ["clean", *configs], "postprocessed": postprocess is not None,
                "model": getattr(model, "arch", type(model).__name__), "seconds": time.perf_counter() - start}
        named = self.threat_model(dataset.kind, samples=len(dataset)).to_dict()
        surface = {k: v for k, v in threat.description.items() if k != "clip"}
        if dataset.kind == "image":
            surface["clip_range"] = [0.0, 1.0]
        return RobustnessReport(clean_report, adversarial, configs, {**named, **surface}, meta)

    @staticmethod
    def _decider(forward: nn.Module, dataset: FairDataset, postprocess: Postprocess | None):
        if postprocess is None:
            def decide(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return torch.softmax(forward(x), dim=1)
            return decide

        def decide_postprocessed(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            # The post-processor reads a dataset: hand it these inputs with the rows' own attributes.
            view = TensorFairDataset(dataset.name, dataset.split, x.detach().cpu(),
                                     dataset.attributes.iloc[idx.numpy()], dataset.value_names,
                                     dataset.target, dataset.sensitive, kind=dataset.kind,
                                     feature_names=dataset.feature_names)
            preds = postprocess(view)
            probs = np.empty_like(preds.probs)
            probs[preds.indices] = preds.probs
            return torch.as_tensor(probs, device=x.device)
        return decide_postprocessed


def robustness_audit(model: nn.Module, dataset: FairDataset, *, attacks: str | Sequence[str] = ATTACKS,
                     postprocess: Postprocess | None = None, progress: Counter | None = None,
                     **settings) -> RobustnessReport:
    """Shortcut for ``RobustnessAuditor(attacks, **settings).audit(model, dataset)``."""
    return RobustnessAuditor(attacks, **settings).audit(model, dataset, postprocess=postprocess, progress=progress)


def epsilon_sweep(model: nn.Module, dataset: FairDataset, eps_values: Sequence[float], *, attack: str = "fgsm",
                  progress: Counter | None = None, **settings) -> pd.DataFrame:
    """Adversarial accuracy per group for each ε in ``eps_values``.

    Returns a table with one row per (``eps``, ``group``) — ``group`` is
    ``"overall"`` for the whole population — and the columns ``eps``,
    ``group``, ``n`` and ``accuracy``. Other keyword arguments are
    :class:`RobustnessAuditor` settings; the same seeded subsample is attacked
    at every ε.
    """
    (name,) = parse_attacks([attack]) if isinstance(attack, str) and "," not in attack else (None,)
    if name is None:
        raise FairauditError("an ε-sweep runs one attack at a time; name fgsm or pgd.")
    eps_values = [float(e) for e in eps_values]
    if not eps_values:
        raise FairauditError("give at least one ε for the sweep.")
    rows = []
    for k, eps in enumerate(eps_values):
        def step(done: int, total: int, k: int = k) -> None:
            if progress:
                progress(k * total + done, len(eps_values) * total)

        report = RobustnessAuditor(name, eps=eps, **settings).audit(model, dataset, progress=step)
        adversarial = report.adversarial[name]
        rows.append({"eps": eps, "group": "overall", "n": int(adversarial.overall["n"]),
                     "accuracy": float(adversarial.overall["accuracy"])})
        rows += [{"eps": eps, "group": g["group"], "n": int(g["n"]), "accuracy": g["accuracy"]}
                 for g in adversarial.groups]
    return pd.DataFrame(rows, columns=["eps", "group", "n", "accuracy"])
