"""Influence functions: how retraining on slightly changed data would move a model (Koh & Liang, 2017).

For a model trained to minimise the empirical risk

    R(θ) = (1/n) Σ_i ℓ(x_i, y_i; θ) + (l2 / 2) ‖θ‖²,

giving a sample ``z`` an extra weight ``τ`` moves the minimiser by
``dθ/dτ = −H⁻¹ ∇_θ ℓ(z)`` with ``H = ∇²_θ R(θ)``. Replacing sample ``(x, y)``
by ``(x, y')`` (a label flip, FRoC Eq. 17) changes the risk by
``(1/n)[ℓ(x, y') − ℓ(x, y)]``, so to first order the parameters move by

    Δθ ≈ −(1/n) H⁻¹ [∇_θ ℓ(x, y') − ∇_θ ℓ(x, y)]

and any differentiable objective ``G(θ)`` (a fairness gap, a validation loss)
changes by ``∇_θ G(θ)ᵀ Δθ``. :class:`InfluenceFunction` computes these
quantities without ever forming per-sample gradient matrices: ``H⁻¹ ∇G`` is
solved once (conjugate gradient or LiSSA over Hessian-vector products from
:mod:`torch.func`, or an exact Hessian for models with few parameters) and the
per-sample terms are forward-mode directional derivatives, one batched pass
over the candidates.

The estimate is accurate for convex models trained to convergence (e.g. an
L2-regularised logistic regression); for neural networks the Gauss-Newton
curvature (``curvature="gauss_newton"``) and ``damping`` keep the solve well
posed where the Hessian is not positive definite.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from fairaudit.device import resolve_device
from fairaudit.errors import FairauditError

__all__ = ["InfluenceFunction", "per_sample_cross_entropy"]

SOLVERS = ("auto", "exact", "cg", "lissa")
CURVATURES = ("hessian", "gauss_newton")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def per_sample_cross_entropy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(N,)`` cross-entropy of logits ``outputs`` against integer labels ``y`` (FRoC's L_U, Eq. 5)."""
    return nn.functional.cross_entropy(outputs.float(), y, reduction="none")


class InfluenceFunction:
    """Influence of training samples on the parameters of a trained model and on objectives of them.

    Parameters
    ----------
    model:
        The trained model (its current parameters are the minimiser θ̂).
    loss_fn:
        ``loss_fn(outputs, y) -> (N,)`` per-sample training loss (default:
        cross-entropy of logits).
    l2:
        The L2 penalty ``l2/2 ‖θ‖²`` the model was trained with (e.g. the
        optimiser's weight decay); it is part of the Hessian.
    damping:
        Extra ``damping · I`` added to the Hessian, for models whose Hessian is
        not positive definite (neural networks).
    curvature:
        ``"hessian"`` (the exact Hessian of the risk) or ``"gauss_newton"``
        (the generalised Gauss-Newton matrix ``Jᵀ ∇²_out ℓ J``, positive
        semi-definite for convex losses, so conjugate gradient always
        applies; for a model linear in its parameters, such as a logistic
        regression, both are the same matrix).
    solver:
        ``"exact"`` (dense matrix, at most ``max_exact`` parameters),
        ``"cg"`` (conjugate gradient), ``"lissa"`` (stochastic Neumann series,
        Agarwal et al. 2017) or ``"auto"`` (exact when small, else CG).
    max_iter, tol:
        Iterations and relative residual tolerance of CG; LiSSA runs
        ``max_iter`` recursion steps.
    lissa_scale, lissa_batch:
        LiSSA divides the Hessian by ``lissa_scale`` (must exceed its largest
        eigenvalue) and estimates each step on ``lissa_batch`` random rows.
    params:
        Names of the parameters the influence is taken over (default: all
        that require gradients).
    batch_size:
        Rows per batch in Hessian-vector products and per-sample passes.
    device:
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    seed:
        Seed of LiSSA's row sampling.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn = per_sample_cross_entropy, *, l2: float = 0.0,
                 damping: float = 0.0, curvature: str = "hessian", solver: str = "auto", max_iter: int = 200,
                 tol: float = 1e-6, lissa_scale: float = 10.0, lissa_batch: int = 512, max_exact: int = 3000,
                 params: Iterable[str] | None = None, batch_size: int = 8192, device="auto", seed: int = 0):
        if solver not in SOLVERS:
            raise FairauditError(f"unknown influence solver '{solver}'; use {', '.join(SOLVERS)}.")
        if curvature not in CURVATURES:
            raise FairauditError(f"unknown curvature '{curvature}'; use {' or '.join(CURVATURES)}.")
        if l2 < 0 or damping < 0:
            raise FairauditError(f"l2 and damping must be >= 0, got l2={l2}, damping={damping}.")
        if max_iter < 1:
            raise FairauditError(f"max_iter must be >= 1, got {max_iter}.")
        self.model = model
        self.loss_fn = loss_fn
        self.l2, self.damping, self.curvature = float(l2), float(damping), curvature
        self.solver, self.max_iter, self.tol = solver, int(max_iter), float(tol)
        self.lissa_scale, self.lissa_batch, self.max_exact = float(lissa_scale), int(lissa_batch), int(max_exact)
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.seed = int(seed)
        named = dict(model.named_parameters())
        names = list(params) if params is not None else [k for k, p in named.items() if p.requires_grad]
        unknown = [k for k in names if k not in named]
        if unknown:
            raise FairauditError(f"the model has no parameter(s) {', '.join(unknown)}.")
        if not names:
            raise FairauditError("the model has no trainable parameters to take the influence over.")
        self.names = names
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None
        self._hessian: torch.Tensor | None = None
        self.last_solve: dict = {}

    # ------------------------------------------------------------------ parameters

    def _params(self) -> dict[str, torch.Tensor]:
        named = dict(self.model.named_parameters())
        return {k: named[k].detach().to(self.device) for k in self.names}

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self._params().values())

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """One flat vector (in parameter order) from a ``{name: tensor}`` dict."""
        return torch.cat([tensors[k].reshape(-1) for k in self.names])

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for k, p in self._params().items():
            out[k] = vector[start:start + p.numel()].view_as(p)
            start += p.numel()
        return out

    def _buffers(self) -> dict[str, torch.Tensor]:
        return {k: b.to(self.device) for k, b in self.model.named_buffers()}

    def _call(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, ({**self._buffers(), **params}), (x,), strict=False)

    # ------------------------------------------------------------------ training set and Hessian

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "InfluenceFunction":
        """Set the training set whose mean loss (plus the L2 term) defines the Hessian H."""
        if len(x) != len(y) or len(x) == 0:
            raise FairauditError(f"influence needs a non-empty training set with one label per row, got "
                                 f"{len(x)} rows and {len(y)} labels.")
        self._x = x.detach().to(self.device)
        self._y = torch.as_tensor(y).to(self.device).long()
        self._hessian = None
        self.model.eval()  # dropout and batch-norm statistics frozen: H is the Hessian of one function
        return self

    @property
    def n_train(self) -> int:
        self._require_fit()
        return len(self._x)

    def _require_fit(self) -> None:
        if self._x is None:
            raise FairauditError("call fit(x, y) with the training set before asking for influences.")

    def _risk(self, params: dict[str, torch.Tensor], rows: slice | torch.Tensor | None = None) -> torch.Tensor:
        """Sum of the training losses over ``rows`` (the caller divides by n)."""
        x, y = (self._x, self._y) if rows is None else (self._x[rows], self._y[rows])
        return self.loss_fn(self._call(params, x), y).sum()

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``(H + damping·I) v`` for a flat vector ``v`` (double backward, batched over the training set)."""
        self._require_fit()
        v = v.to(self.device, torch.float32)
        params = self._params()
        tangent = self.unflatten(v)
        parts = []
        for start in range(0, self.n_train, self.batch_size):
            rows = slice(start, start + self.batch_size)
            if self.curvature == "hessian":
                _, out = jvp(lambda p: grad(lambda q: self._risk(q, rows))(p), (params,), (tangent,))
            else:
                out = self._gauss_newton_product(params, tangent, rows)
            parts.append(self.flatten(out))
        return sum(parts) / self.n_train + (self.l2 + self.damping) * v

    def _gauss_newton_product(self, params, tangent, rows) -> dict[str, torch.Tensor]:
        """``Jᵀ (∇²_out ℓ) J v`` over ``rows``: ``J v`` forward, the loss Hessian on the outputs, then ``Jᵀ``."""
        x, y = self._x[rows], self._y[rows]
        outputs, jv = jvp(lambda p: self._call(p, x), (params,), (tangent,))
        _, hjv = jvp(grad(lambda o: self.loss_fn(o, y).sum()), (outputs.detach(),), (jv,))
        _, pullback = vjp(lambda p: self._call(p, x), params)
        return pullback(hjv.to(outputs.dtype))[0]

    def hessian(self) -> torch.Tensor:
        """The dense ``(P, P)`` matrix ``H + damping·I`` (only for models with at most ``max_exact`` parameters)."""
        self._require_fit()
        p = self.n_params
        if p > self.max_exact:
            raise FairauditError(f"an exact Hessian of {p} parameters is too large (limit {self.max_exact}); "
                                 f"use solver='cg' or 'lissa'.")
        if self._hessian is None:
            eye = torch.eye(p, device=self.device)
            # Hessian-vector products with the basis vectors, a chunk of them at a time under vmap.
            h = torch.cat([vmap(self.hvp)(eye[i:i + 64]) for i in range(0, p, 64)])
            self._hessian = 0.5 * (h + h.T)
        return self._hessian

    def inverse_hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``(H + damping·I)⁻¹ v`` with the configured solver; ``last_solve`` records how it went."""
        self._require_fit()
        v = v.detach().to(self.device, torch.float32)
        solver = self.solver
        if solver == "auto":
            solver = "exact" if self.n_params <= self.max_exact else "cg"
        if solver == "exact":
            h = self.hessian().double()
            # A least-squares solve tolerates a singular H (e.g. an unregularised over-parametrised head).
            out = torch.linalg.lstsq(h, v.double().unsqueeze(1)).solution.squeeze(1).float()
            residual = (h.float() @ out - v).norm() / v.norm().clamp_min(1e-30)
            self.last_solve = {"solver": "exact", "residual": float(residual)}
            return out
        if solver == "cg":
            return self._conjugate_gradient(v)
        return self._lissa(v)

    def _conjugate_gradient(self, b: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rs = r @ r
        norm_b = b.norm().clamp_min(1e-30)
        it = 0
        for it in range(1, self.max_iter + 1):
            hp = self.hvp(p)
            curvature = p @ hp
            if curvature <= 0:  # H not positive definite along p: stop at the last good iterate
                break
            alpha = rs / curvature
            x = x + alpha * p
            r = r - alpha * hp
            rs_new = r @ r
            if rs_new.sqrt() <= self.tol * norm_b:
                rs = rs_new
                break
            p = r + (rs_new / rs) * p
            rs = rs_new
        self.last_solve = {"solver": "cg", "iterations": it, "residual": float(rs.sqrt() / norm_b)}
        return x

    def _lissa(self, b: torch.Tensor) -> torch.Tensor:
        """Stochastic Neumann series: h_{t+1} = b + (I − H_batch / scale) h_t, result h_T / scale."""
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        params = self._params()
        h = b.clone()
        reg = self.l2 + self.damping
        for _ in range(self.max_iter):
            rows = torch.randint(0, self.n_train, (min(self.lissa_batch, self.n_train),), generator=generator)
            rows = rows.to(self.device)
            _, out = jvp(lambda p: grad(lambda q: self._risk(q, rows))(p), (params,), (self.unflatten(h),))
            hv = self.flatten(out) / len(rows) + reg * h
            h = b + h - hv / self.lissa_scale
            if not torch.isfinite(h).all():
                raise FairauditError("LiSSA diverged; increase lissa_scale above the Hessian's largest eigenvalue.")
        self.last_solve = {"solver": "lissa", "iterations": self.max_iter}
        return h / self.lissa_scale

    # ------------------------------------------------------------------ gradients of objectives

    def objective_gradient(self, objective: Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.Tensor]
                           ) -> torch.Tensor:
        """Flat ``∇_θ G`` of a scalar objective ``G``.

        ``objective(forward)`` receives ``forward(x) -> outputs`` (the model
        at the current parameters, differentiable in them) and returns a
        scalar, e.g. ``lambda f: fairness_gap(f(x).softmax(1)[:, 1], a)``.
        """
        params = self._params()
        g = grad(lambda p: objective(lambda x: self._call(p, x.to(self.device))))(params)
        return self.flatten(g)

    def loss_directional(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``(N,)`` directional derivatives ``vᵀ ∇_θ ℓ(x_i, y_i)``, one forward-mode pass per batch."""
        params = self._params()
        tangent = self.unflatten(v.detach().to(self.device, torch.float32))
        y = torch.as_tensor(y).to(self.device).long()
        out = []
        for start in range(0, len(x), self.batch_size):
            xb, yb = x[start:start + self.batch_size].to(self.device), y[start:start + self.batch_size]
            _, d = jvp(lambda p: self.loss_fn(self._call(p, xb), yb), (params,), (tangent,))
            out.append(d.detach())
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    def per_sample_grad_norms(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        """``(N,)`` norms ``‖∇_θ ℓ(x_i, y_i)‖₂`` (per-sample gradients with ``vmap``, in chunks)."""
        params = self._params()
        y = torch.as_tensor(y).to(self.device).long()

        def one(xi, yi):
            g = grad(lambda p: self.loss_fn(self._call(p, xi.unsqueeze(0)), yi.unsqueeze(0)).sum())(params)
            return torch.sqrt(sum((t.float() ** 2).sum() for t in g.values()))

        out = []
        for start in range(0, len(x), chunk):
            out.append(vmap(one)(x[start:start + chunk].to(self.device), y[start:start + chunk]).detach())
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    # ------------------------------------------------------------------ influences

    def label_change_influence(self, objective_grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                               new_y: torch.Tensor | None = None, solved: torch.Tensor | None = None
                               ) -> torch.Tensor:
        """Predicted change of an objective G when each training row ``(x_i, y_i)`` becomes ``(x_i, new_y_i)``.

        Returns ``(N,)`` values ``−(1/n) ∇Gᵀ H⁻¹ [∇ℓ(x_i, new_y_i) − ∇ℓ(x_i, y_i)]``
        (FRoC Eq. 17 combined with the chain rule of Eq. 18–20; negative
        means retraining with that label lowers G). ``new_y`` defaults to the
        flipped binary label ``1 − y``; ``solved`` may pass a precomputed
        ``H⁻¹ ∇G`` (H is symmetric, so one solve serves every row).
        """
        self._require_fit()
        y = torch.as_tensor(y).to(self.device).long()
        new_y = 1 - y if new_y is None else torch.as_tensor(new_y).to(self.device).long()
        s = self.inverse_hvp(objective_grad) if solved is None else solved
        delta = self.loss_directional(x, new_y, s) - self.loss_directional(x, y, s)
        return -delta / self.n_train
