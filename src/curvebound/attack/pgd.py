"""PGD attack on a VNN-LIB property over one input box (design d.2).

The unsafe region of the box is an OR of AND-terms (disjuncts): disjunct ``d`` is violated at ``x`` iff
``C_d @ f(x) <= rhs_d`` holds row-wise. Its violation margin is

    m_d(x) = max_rows (C_d f(x) - rhs_d),

so the property is violated at ``x`` iff ``min_d m_d(x) <= 0``. The attack runs Adam on a hinge loss
(sum over rows of ``relu(C_d f(x) - rhs_d)``) from many starts at once, projects onto the box after each
step, and stops as soon as one start reaches ``margin <= 0``. A hit is a candidate only: it is judged
under the given torch model; the ONNX replay (``io.replay``) decides whether it is real.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from curvebound.spec import InputBox

__all__ = ["AttackResult", "pgd_attack", "disjunct_margins"]


@dataclass
class AttackResult:
    """Best point found. ``margin = min_d m_d(x)`` under the attacked model; ``found`` iff ``margin <= 0``."""

    x: np.ndarray  # [n_inputs] float64, inside the box (up to float rounding of zero-width dims)
    margin: float
    disjunct: int  # index of the disjunct attaining ``margin``
    found: bool
    steps_run: int = 0


@dataclass
class _Spec:
    """All disjuncts stacked: ``rows = y @ C.T - rhs`` then ``rows[:, index]`` is ``[B, D, max_rows]``
    (padding points at an extra column holding ``-inf``, which never wins a max)."""

    C: Tensor  # [total_rows, n_out]
    rhs: Tensor  # [total_rows]
    index: Tensor  # [D, max_rows] long, into rows with a trailing -inf column
    valid: Tensor  # [D, max_rows] bool


def _stack_disjuncts(disjuncts: list[Any], n_out: int, dtype: torch.dtype, device: torch.device) -> _Spec:
    Cs, rhss, counts = [], [], []
    for d in disjuncts:
        C = np.asarray(d.C, dtype=np.float64).reshape(-1, n_out)
        rhs = np.asarray(d.rhs, dtype=np.float64).reshape(-1)
        if C.shape[0] != rhs.shape[0]:
            raise ValueError(f"disjunct has {C.shape[0]} rows in C but {rhs.shape[0]} in rhs")
        Cs.append(C)
        rhss.append(rhs)
        counts.append(C.shape[0])
    total = sum(counts)
    max_rows = max(max(counts), 1)
    index = np.full((len(counts), max_rows), total, dtype=np.int64)  # `total` = the -inf column
    start = 0
    for i, k in enumerate(counts):
        index[i, :k] = np.arange(start, start + k)
        start += k
    index_t = torch.as_tensor(index, device=device)
    return _Spec(
        C=torch.as_tensor(np.concatenate(Cs, axis=0), dtype=dtype, device=device),
        rhs=torch.as_tensor(np.concatenate(rhss), dtype=dtype, device=device),
        index=index_t,
        valid=index_t < total,
    )


def _row_margins(y: Tensor, spec: _Spec) -> Tensor:
    """``[B, D, max_rows]`` values ``C_d y - rhs_d``; padding entries are ``-inf``."""
    rows = y @ spec.C.T - spec.rhs  # [B, total_rows]
    pad = torch.full_like(rows[:, :1], -math.inf)
    return torch.cat([rows, pad], dim=1)[:, spec.index]


def disjunct_margins(y: Tensor, disjuncts: list[Any]) -> Tensor:
    """``[B, D]`` violation margins ``m_d = max_rows(C_d y - rhs_d)`` for outputs ``y`` ``[B, n_out]``.
    A disjunct without rows (always violated) has margin ``-inf``."""
    spec = _stack_disjuncts(disjuncts, y.shape[-1], y.dtype, y.device)
    return _row_margins(y, spec).amax(dim=2)


def _inward_bounds(lower: np.ndarray, upper: np.ndarray, dtype: torch.dtype, device: torch.device
                   ) -> tuple[Tensor, Tensor]:
    """Box bounds in ``dtype``, rounded inward so every projected point lies inside the float64 box.
    A dimension with no ``dtype`` value inside it (a zero-width dim not representable) keeps the value
    nearest to its lower bound."""
    lo = torch.as_tensor(lower, dtype=torch.float64, device=device).to(dtype)
    hi = torch.as_tensor(upper, dtype=torch.float64, device=device).to(dtype)
    lo64 = torch.as_tensor(lower, dtype=torch.float64, device=device)
    hi64 = torch.as_tensor(upper, dtype=torch.float64, device=device)
    lo = torch.where(lo.double() < lo64, torch.nextafter(lo, torch.full_like(lo, math.inf)), lo)
    hi = torch.where(hi.double() > hi64, torch.nextafter(hi, torch.full_like(hi, -math.inf)), hi)
    hi = torch.where(hi < lo, lo, hi)
    return lo, hi


def _initial_points(lo: Tensor, hi: Tensor, restarts: int, gen: torch.Generator) -> Tensor:
    """``[restarts, n_in]``: the centre, a few random corners, a few points near corners, then uniform."""
    n = lo.shape[0]
    width = hi - lo
    u = torch.rand(restarts, n, generator=gen, dtype=torch.float64).to(lo)
    t = u.clone()
    t[0] = 0.5
    n_corner = max(restarts // 6, 1) if restarts > 1 else 0
    corners = (u[1:1 + n_corner] < 0.5).to(lo)
    t[1:1 + n_corner] = corners
    near = slice(1 + n_corner, 1 + 2 * n_corner)
    m = t[near].shape[0]
    if m:
        corner = (torch.rand(m, n, generator=gen, dtype=torch.float64) < 0.5).to(lo)
        t[near] = corner + (1 - 2 * corner) * 0.1 * t[near]  # within 10% of a corner
    return (lo + t * width).clamp(lo, hi)


def _resolve_dtype_device(model: Callable[[Tensor], Tensor], box: Any, dtype: torch.dtype | None,
                          device: torch.device | str | None) -> tuple[torch.dtype, torch.device]:
    ref: Tensor | None = box.lower if isinstance(box.lower, Tensor) else None
    if ref is None and isinstance(model, torch.nn.Module):
        ref = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = dtype or (ref.dtype if ref is not None else torch.float64)
    device = torch.device(device) if device is not None else (ref.device if ref is not None
                                                              else torch.device("cpu"))
    return dtype, device


def pgd_attack(model: Callable[[Tensor], Tensor], box: InputBox, *, restarts: int = 30, steps: int = 100,
               seed: int = 0, deadline: float | None = None, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None, max_batch: int = 1024,
               final_lr_ratio: float = 0.01, polish_steps: int = 10, rel_tol: float = 1e-5) -> AttackResult:
    """Search the box for ``x`` with ``min_d m_d(model(x)) <= 0``.

    ``model`` maps ``[N, n_inputs]`` to ``[N, n_outputs]`` differentiably. With ``restarts * D <= max_batch``
    every start attacks every disjunct separately (batch ``[restarts * D, n_in]``); otherwise each start
    minimizes the hinge of its closest disjunct (batch ``[restarts, n_in]``), which keeps hundreds of
    disjuncts affordable. Step size starts at ``(upper - lower) / 4`` per dimension and decays
    geometrically to ``final_lr_ratio`` of that. ``deadline`` is a ``time.monotonic()`` value; the best point
    so far is returned when it passes. dtype/device default to the box tensors' (if torch), else the
    model's parameters', else float64 on CPU. Boxes must be finite.

    The hinge asks for a little slack, ``C y - rhs <= -rel_tol * (1 + |rhs|)``, so that a hit survives
    the float rounding of an ONNX replay: after the first hit the attack runs up to ``polish_steps`` more
    steps; it returns the first point with the slack, else the point of least margin seen.
    """
    lower = np.asarray(box.lower.detach().cpu() if isinstance(box.lower, Tensor) else box.lower,
                       dtype=np.float64).reshape(-1)
    upper = np.asarray(box.upper.detach().cpu() if isinstance(box.upper, Tensor) else box.upper,
                       dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise ValueError("pgd_attack needs a finite input box")
    if np.any(lower > upper):
        raise ValueError("input box has lower > upper")
    if not box.disjuncts:
        raise ValueError("input box has no disjuncts (nothing to attack)")
    dtype, device = _resolve_dtype_device(model, box, dtype, device)
    gen = torch.Generator().manual_seed(seed)
    lo, hi = _inward_bounds(lower, upper, dtype, device)
    restarts = max(int(restarts), 1)

    x0 = _initial_points(lo, hi, restarts, gen)  # [restarts, n_in]
    n_out = np.asarray(box.disjuncts[0].C).shape[-1]
    spec = _stack_disjuncts(box.disjuncts, n_out, dtype, device)
    n_disj = spec.index.shape[0]

    per_disjunct = restarts * n_disj <= max_batch
    if per_disjunct:  # sample b attacks disjunct b % D
        x = x0.repeat_interleave(n_disj, dim=0)
        target = torch.arange(n_disj, device=device).repeat(restarts)
    else:
        x = x0
        target = None
    batch = x.shape[0]

    best_margin = torch.full((batch,), math.inf, dtype=dtype, device=device)
    best_x = x.detach().clone()
    best_disj = torch.zeros(batch, dtype=torch.long, device=device)

    width = hi - lo
    lr0 = width / 4
    decay = final_lr_ratio ** (1.0 / max(steps, 1))
    beta1, beta2, eps = 0.9, 0.999, 1e-12
    m1 = torch.zeros_like(x)
    m2 = torch.zeros_like(x)
    slack = rel_tol * (1 + spec.rhs.abs())  # [total_rows]
    slack = torch.cat([slack, slack.new_zeros(1)])[spec.index]  # [D, max_rows]
    steps_run = 0
    first_hit: int | None = None
    x = x.detach()

    for step in range(steps + 1):
        x.requires_grad_(True)
        y = model(x).reshape(batch, -1)
        rows = _row_margins(y, spec)  # [B, D, max_rows]
        margins = rows.detach().amax(dim=2)  # [B, D]
        cur, cur_d = margins.min(dim=1)
        better = cur < best_margin
        best_margin = torch.where(better, cur, best_margin)
        best_x = torch.where(better[:, None], x.detach(), best_x)
        best_disj = torch.where(better, cur_d, best_disj)
        if first_hit is None and bool((best_margin <= 0).any()):
            first_hit = step
        if first_hit is not None:
            with_slack = (rows.detach() + slack).amax(dim=2).min(dim=1).values  # [B]
            if bool((with_slack <= 0).any()) or step - first_hit >= polish_steps:
                if bool((with_slack <= 0).any()):  # return the point that has the slack
                    i = int(with_slack.argmin())
                    return AttackResult(x=x[i].detach().to(torch.float64).cpu().numpy(), margin=float(cur[i]),
                                        disjunct=int(cur_d[i]), found=True, steps_run=steps_run)
                break
        if step == steps or (deadline is not None and time.monotonic() >= deadline):
            break
        hinge = torch.where(spec.valid, rows + slack, torch.zeros_like(rows)).clamp(min=0).sum(dim=2)
        if target is not None:
            loss_b = hinge.gather(1, target[:, None]).squeeze(1)
        else:
            loss_b = hinge.min(dim=1).values
        (grad,) = torch.autograd.grad(loss_b.sum(), x)
        grad = torch.nan_to_num(grad)
        with torch.no_grad():
            m1 = beta1 * m1 + (1 - beta1) * grad
            m2 = beta2 * m2 + (1 - beta2) * grad * grad
            m_hat = m1 / (1 - beta1 ** (step + 1))
            v_hat = m2 / (1 - beta2 ** (step + 1))
            lr = lr0 * decay ** step
            x = torch.minimum(torch.maximum(x - lr * m_hat / (v_hat.sqrt() + eps), lo), hi)
        steps_run = step + 1

    i = int(best_margin.argmin())
    margin = float(best_margin[i])
    x_best = best_x[i].detach().to(torch.float64).cpu().numpy()
    return AttackResult(x=x_best, margin=margin, disjunct=int(best_disj[i]), found=margin <= 0,
                        steps_run=steps_run)
