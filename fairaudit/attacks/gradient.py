"""Gradient attacks on inputs: FGSM, I-FGSM and PGD under L∞ or L2, for any differentiable loss.

The attacked objective is given in one of three ways:

* a model plus labels: ``pgd_attack(model, x, y, eps=...)`` maximises the
  per-sample cross-entropy of ``model(x_adv)`` against ``y`` (or pulls it
  towards ``y`` with ``targeted=True``);
* a model plus ``loss_fn(output, y)``: any loss of the model's output;
* a loss of the adversarial input itself, ``loss_fn(x_adv)`` (a one-argument
  callable), or a plain callable in place of the model. This is the most
  general form: AEDA's target-preserving attack (Zhang & Sang, Eq. 3,
  ``λ·L_bias(x, b_attack) + (1 − λ)·L_target(x, t)`` minimised with
  ``targeted=True``) or an attack on an attribute classifier are written as a
  lambda over ``x_adv``.

``targeted=False`` ascends the objective, ``targeted=True`` descends it. A
loss may be a scalar or a per-sample ``(N,)`` tensor; per-sample losses keep
each sample's step independent of the rest of the batch and let ``restarts``
keep the best restart sample by sample.

Gradients are taken with :func:`torch.autograd.grad` with respect to the input
only, so the ``.grad`` of every parameter is left as it was, and a model passed
as the first argument runs in eval mode (batch-norm statistics and dropout
frozen) and gets its previous train/eval modes back afterwards.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch
from torch import nn

from fairaudit.attacks.norms import NORMS, project, random_start as draw_random_start, steepest_direction
from fairaudit.errors import FairauditError

Objective = Callable[[torch.Tensor], torch.Tensor]
Clip = tuple[float | torch.Tensor, float | torch.Tensor] | None

__all__ = ["ATTACKS", "attack_by_name", "check_attack", "fgsm_attack", "ifgsm_attack", "pgd_attack"]


def _takes_one_argument(fn: Callable) -> bool:
    """Whether ``fn`` is called as ``fn(x_adv)`` rather than ``fn(output, y)``."""
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return False
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    return len(required) == 1 or len(positional) == 1


def _per_sample_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.float(), y, reduction="none")


def _objective(model_or_loss_fn, loss_fn, y) -> tuple[Objective, nn.Module | None]:
    model = model_or_loss_fn if isinstance(model_or_loss_fn, nn.Module) else None
    if model_or_loss_fn is not None and model is None:
        if loss_fn is not None:
            raise FairauditError("pass either a loss of the adversarial input as the first argument or a model "
                                 "with loss_fn, not both.")
        return model_or_loss_fn, None
    if loss_fn is not None and _takes_one_argument(loss_fn):
        return loss_fn, model
    if model is None:
        raise FairauditError("an attack needs a model, or a loss of the adversarial input (loss_fn=lambda x_adv: ...).")
    if y is None:
        raise FairauditError("an attack on a model's output needs labels y (the true class, or the target class "
                             "with targeted=True).")
    fn = loss_fn or _per_sample_cross_entropy
    return (lambda x_adv: fn(model(x_adv), y)), model


def _check(eps: float, steps: int, norm: str, restarts: int) -> None:
    if norm not in NORMS:
        raise FairauditError(f"unknown attack norm '{norm}'; use {' or '.join(NORMS)}.")
    if not eps >= 0:
        raise FairauditError(f"the attack radius eps must be >= 0, got {eps}.")
    if int(steps) != steps or steps < 1:
        raise FairauditError(f"the number of attack steps must be a whole number >= 1, got {steps}.")
    if int(restarts) != restarts or restarts < 1:
        raise FairauditError(f"the number of restarts must be a whole number >= 1, got {restarts}.")


def _bounds(clip: Clip, like: torch.Tensor):
    if clip is None:
        return None
    lo, hi = (torch.as_tensor(b, dtype=like.dtype, device=like.device) for b in clip)
    return lo, hi


def _apply_bounds(x: torch.Tensor, bounds) -> torch.Tensor:
    return x if bounds is None else torch.maximum(torch.minimum(x, bounds[1]), bounds[0])


def _mask(feature_mask, like: torch.Tensor) -> torch.Tensor | None:
    if feature_mask is None:
        return None
    mask = torch.as_tensor(feature_mask, device=like.device).to(like.dtype)
    try:
        torch.broadcast_shapes(mask.shape, like.shape)
    except RuntimeError:
        raise FairauditError(f"feature_mask of shape {tuple(mask.shape)} does not broadcast to the inputs of "
                             f"shape {tuple(like.shape)}.") from None
    return mask


def _reduce(loss: torch.Tensor, n: int) -> torch.Tensor:
    if loss.dim() == 0:
        return loss
    if loss.shape != (n,):
        raise FairauditError(f"the attack loss must be a scalar or one value per sample ({n},), "
                             f"got shape {tuple(loss.shape)}.")
    return loss.sum()


def _modes(model: nn.Module | None) -> list[tuple[nn.Module, bool]]:
    return [] if model is None else [(m, m.training) for m in model.modules()]


def pgd_attack(model_or_loss_fn: nn.Module | Objective | None, x: torch.Tensor, y: torch.Tensor | None = None, *,
               eps: float, steps: int = 10, step_size: float | None = None, norm: str = "linf",
               random_start: bool = True, targeted: bool = False, loss_fn: Callable | None = None,
               clip: Clip = (0.0, 1.0), feature_mask: torch.Tensor | Sequence[float] | None = None,
               restarts: int = 1, stop_when: Callable[[torch.Tensor], torch.Tensor] | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018) in the ``norm``-ball of radius ``eps`` around ``x``.

    Parameters
    ----------
    model_or_loss_fn:
        The attacked model (run in eval mode), or a callable ``objective(x_adv)``.
    x, y:
        A batch of inputs and, for a model's output loss, its labels (target
        classes when ``targeted``).
    eps, norm:
        Radius of the threat model, ``"linf"`` or ``"l2"`` (per sample, in input units).
    steps, step_size:
        Iterations and step length (default ``2.5 · eps / steps``).
    random_start:
        Start from a uniform draw in the ball (PGD) instead of ``x`` (I-FGSM).
    targeted:
        Minimise the objective instead of maximising it.
    loss_fn:
        ``loss_fn(output, y)`` (default: per-sample cross-entropy), or a
        one-argument ``loss_fn(x_adv)`` used as the whole objective.
    clip:
        ``(lo, hi)`` valid input range (scalars or tensors broadcastable to
        ``x``), enforced after every step; ``None`` for no range.
    feature_mask:
        ``1`` where a feature may change, ``0`` where it must not (e.g. only
        the numeric columns of a tabular row); broadcast against ``x``.
    restarts:
        Independent runs; the one with the best final objective is kept per
        sample (for per-sample losses) or for the whole batch (scalar losses).
    stop_when:
        Optional ``stop_when(x_adv) -> (N,) bool``: samples already
        successful stop moving, which keeps their perturbation small.
    generator:
        Random generator for the random starts (reproducible attacks).

    Returns the adversarial batch (detached, same shape and device as ``x``).
    """
    _check(eps, steps, norm, restarts)
    x0 = x.detach()
    if eps == 0:
        return x0.clone()
    objective, model = _objective(model_or_loss_fn, loss_fn, y)
    step_size = 2.5 * eps / steps if step_size is None else float(step_size)
    bounds, mask = _bounds(clip, x0), _mask(feature_mask, x0)
    sign = -1.0 if targeted else 1.0
    modes = _modes(model)
    if model is not None:
        model.eval()
    try:
        with torch.enable_grad():
            best, best_score = None, None
            for _ in range(int(restarts)):
                x_adv = _run(objective, x0, eps, int(steps), step_size, norm, random_start, sign, bounds, mask,
                             stop_when, generator)
                with torch.no_grad():
                    score = sign * objective(x_adv).detach().float()
                best, best_score = _keep_better(best, best_score, x_adv, score)
    finally:
        for module, mode in modes:
            module.training = mode
    return best


def _run(objective, x0, eps, steps, step_size, norm, random_start, sign, bounds, mask, stop_when, generator):
    delta = (draw_random_start(x0, eps, norm, mask, generator) if random_start else torch.zeros_like(x0))
    x_adv = _apply_bounds(x0 + delta, bounds)
    n = x0.shape[0]
    for _ in range(steps):
        active = None
        if stop_when is not None:
            with torch.no_grad():
                active = ~torch.as_tensor(stop_when(x_adv), device=x0.device).bool().view(n)
            if not bool(active.any()):
                break
        x_adv = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(sign * _reduce(objective(x_adv), n), x_adv)
        if mask is not None:
            grad = grad * mask
        step = step_size * steepest_direction(grad, norm)
        if active is not None:
            step = step * active.view(-1, *([1] * (x0.dim() - 1))).to(step.dtype)
        delta = project(x_adv.detach() + step - x0, eps, norm)
        if mask is not None:
            delta = delta * mask
        x_adv = _apply_bounds(x0 + delta, bounds)
    return x_adv.detach()


def _keep_better(best, best_score, x_adv, score):
    if best is None:
        return x_adv, score
    if score.dim() == 0:
        return (x_adv, score) if score > best_score else (best, best_score)
    better = score > best_score
    best = torch.where(better.view(-1, *([1] * (x_adv.dim() - 1))), x_adv, best)
    return best, torch.where(better, score, best_score)


def ifgsm_attack(model_or_loss_fn, x, y=None, *, eps: float, steps: int = 10, step_size: float | None = None,
                 **kwargs) -> torch.Tensor:
    """Iterative FGSM (Kurakin et al. 2017): PGD from ``x`` itself, default step ``eps / steps``."""
    return pgd_attack(model_or_loss_fn, x, y, eps=eps, steps=steps,
                      step_size=eps / steps if step_size is None else step_size, random_start=False, **kwargs)


def fgsm_attack(model_or_loss_fn, x, y=None, *, eps: float, norm: str = "linf", targeted: bool = False,
                loss_fn: Callable | None = None, clip: Clip = (0.0, 1.0), feature_mask=None,
                random_start: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of length ``eps``.

    With ``norm="l2"`` it is the fast gradient method (step along ``grad / ‖grad‖₂``).
    Arguments as in :func:`pgd_attack`.
    """
    return pgd_attack(model_or_loss_fn, x, y, eps=eps, steps=1, step_size=eps, norm=norm,
                      random_start=random_start, targeted=targeted, loss_fn=loss_fn, clip=clip,
                      feature_mask=feature_mask, generator=generator)


ATTACKS = ("fgsm", "pgd")
"""The attacks selectable by name, weakest first."""


def check_attack(name: str, what: str = "attack") -> str:
    """``name`` if it is one of :data:`ATTACKS`, else one sentence naming them."""
    if name not in ATTACKS:
        raise FairauditError(f"unknown {what} '{name}'; use {' or '.join(ATTACKS)}.")
    return name


def attack_by_name(name: str, model_or_loss_fn, x, y=None, *, eps: float, steps: int = 10,
                   step_size: float | None = None, random_start: bool = True, restarts: int = 1,
                   stop_when=None, **common) -> torch.Tensor:
    """The attack ``name`` (``"fgsm"`` or ``"pgd"``) with one set of documented defaults.

    ``"fgsm"`` is :func:`fgsm_attack` (one step of length ``eps``; ``steps``,
    ``step_size``, ``random_start``, ``restarts`` and ``stop_when`` do not apply);
    ``"pgd"`` is :func:`pgd_attack` with 10 steps of ``2.5 · eps / steps`` from a
    random start (Madry et al. 2018). A caller that follows a paper's own
    schedule passes it explicitly (e.g. FRoC's ``step_size = eps / steps`` from the
    clean input). ``common`` (``norm``, ``clip``, ``feature_mask``, ``targeted``,
    ``loss_fn``, ``generator``) goes to either attack.
    """
    if check_attack(name) == "fgsm":
        common.pop("generator", None)
        return fgsm_attack(model_or_loss_fn, x, y, eps=eps, **common)
    return pgd_attack(model_or_loss_fn, x, y, eps=eps, steps=steps, step_size=step_size, random_start=random_start,
                      restarts=restarts, stop_when=stop_when, **common)
