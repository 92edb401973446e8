"""Operators on two perturbed inputs (Mul, MatMul, Max, Min) and two piecewise elementwise ones
(Clip, Floor).

Two-input ops relax ``z = g(x, y)`` (elementwise, numpy broadcasting of the node shapes) with planes
``a_l*x + b_l*y + c_l <= g(x, y) <= a_u*x + b_u*y + c_u`` valid on the box of the two input
intervals; ``backward`` splits ``A`` by sign (lower plane where ``A >= 0``, upper plane where
``A < 0``) and sums the coefficients over broadcast dimensions back to each input's shape.

Mul (McCormick, design b.3), with ``W = (x_u - x_l)(y_u - y_l)``:

* lower plane 1: ``y_l x + x_l y - x_l y_l`` (gap ``(x - x_l)(y - y_l)``, exact unless at ``(x_u, y_u)``),
  lower plane 2: ``y_u x + x_u y - x_u y_u`` (gap ``(x_u - x)(y_u - y)``);
* upper plane 1: ``y_u x + x_l y - x_l y_u`` (gap ``(x - x_l)(y_u - y)``),
  upper plane 2: ``y_l x + x_u y - x_u y_l`` (gap ``(x_u - x)(y - y_l)``);
* lower = ``r_l * plane1 + (1 - r_l) * plane2`` and likewise upper with ``r_u``; any ``r in [0, 1]`` is
  valid. Default: the ``r`` whose plane has the largest minimum (smallest maximum) over the box,
  ``r_l = x_u / (2 w_x) + y_u / (2 w_y)``, ``r_u = x_u / (2 w_x) - y_l / (2 w_y)``, clamped to ``[0, 1]``.
  It equalizes the two gap corners ``x_u y_u - r W`` and ``x_l y_l - (1 - r) W``; the resulting plane's
  minimum over the box equals ``min xy`` (the IBP bound), so for a product feeding the output directly
  no other choice is tighter; ``r = 1/2`` would only minimize the worst-case gap.
* A plane needs its two endpoints finite: with an infinite endpoint ``r`` is forced to the other
  plane; if both planes need an infinite endpoint the side falls back to the IBP constant (possibly
  infinite). A zero-width operand gives the exact line (``c * y`` or ``c * x``).

MatMul: ``out[.., i, j] = sum_k x[.., i, k] y[.., k, j]``, every product relaxed with the Mul planes,
with ``r`` shared over ``k`` (one ``(r_l, r_u)`` per output element) so that ``backward`` is four
matmuls (no ``[spec, batch, i, k, j]`` tensor).

Max: ``max(x, y) = y + relu(x - y)`` with ``d = x - y in [l_d, u_d] = [x_l - y_u, x_u - y_l]``
(rounded outward). Exact when ``x_l >= y_u`` (= x) or ``y_l >= x_u`` (= y); otherwise
lower ``w x + (1 - w) y`` (``w in [0, 1]``, default 1 if ``x_l >= y_l`` else 0: exact minimum) and
upper ``a x + (1 - a) y + max(-a l_d, (1 - a) u_d)`` for any ``a in [0, 1]`` (default the ReLU chord
``a = u_d / (u_d - l_d)``). Min(x, y) = -Max(-x, -y).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import (
    ElementwiseOperator,
    Interval,
    LinearRelaxation,
    Operator,
    pad_outward,
    reduce_to_shape,
    safe_product,
    sum_node_dims,
)
from .linear import align as _align

_CHUNK_ELEMENTS = 1 << 22  # largest [batch, ..., i, k_chunk, j] tensor built by MatMul2


# ---------------------------------------------------------------- shape helpers
def _finite_or_zero(t: Tensor) -> Tensor:
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def _product(a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` of interval endpoints with ``0 * inf = 0`` (a zero endpoint pins the product to 0)."""
    prod = a * b
    return torch.where((a == 0) | (b == 0), torch.zeros_like(prod), prod)


def _exact_complement(w: Tensor) -> tuple[Tensor, Tensor]:
    """``(a, b)`` with ``a ~ w``, ``b ~ 1 - w``, both in ``[0, 1]`` and ``a + b == 1`` exactly in floats
    (Sterbenz: ``1 - v`` is exact for ``v in [1/2, 1]``)."""
    b = 1 - w
    a = torch.where(w >= 0.5, w, 1 - b)
    b = 1 - a
    return a, b


@dataclass(frozen=True)
class Planes:
    """``lower_x*x + lower_y*y + lower_c <= g(x, y) <= upper_x*x + upper_y*y + upper_c`` on the box;
    tensors broadcast against ``[spec, batch, *out_shape]``."""

    lower_x: Tensor
    lower_y: Tensor
    lower_c: Tensor
    upper_x: Tensor
    upper_y: Tensor
    upper_c: Tensor


class BivariateElementwise(Operator):
    """``z = g(x, y)`` elementwise with broadcasting; subclasses give ``function``, ``interval`` and
    ``planes`` on broadcast bounds. ``backward`` keeps (*) because each plane bounds ``g`` on the box."""

    requires_input_bounds = (0, 1)

    def function(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def planes(self, xl: Tensor, xu: Tensor, yl: Tensor, yu: Tensor, params: Tensor | None) -> Planes:
        raise NotImplementedError

    def default_params(self, xl: Tensor, xu: Tensor, yl: Tensor, yu: Tensor) -> Tensor:
        """``[k, batch, *out_shape]`` default parameters on broadcast bounds."""
        raise NotImplementedError

    @staticmethod
    def _broadcast(x: Interval, y: Interval) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        nd = max(x.lower.dim(), y.lower.dim()) - 1
        ts = [_align(t, nd) for t in (x.lower, x.upper, y.lower, y.upper)]
        return tuple(torch.broadcast_tensors(*ts))  # type: ignore[return-value]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        nd = max(x.dim(), y.dim()) - 1
        return self.function(_align(x, nd), _align(y, nd))

    def backward(self, A, input_shapes, input_bounds, params=None):
        bx, by = input_bounds
        assert bx is not None and by is not None, f"{self.kind} needs the bounds of both inputs"
        xl, xu, yl, yu = self._broadcast(bx, by)  # [batch, *out_shape]
        p = self.planes(xl, xu, yl, yu, params)
        pos, neg = A.clamp(min=0), A.clamp(max=0)  # [spec, batch, *out_shape]
        coeff_x = safe_product(pos, p.lower_x) + safe_product(neg, p.upper_x)
        coeff_y = safe_product(pos, p.lower_y) + safe_product(neg, p.upper_y)
        bias = sum_node_dims(safe_product(pos, p.lower_c) + safe_product(neg, p.upper_c))
        return [reduce_to_shape(coeff_x, input_shapes[0]), reduce_to_shape(coeff_y, input_shapes[1])], bias

    def init_params(self, input_bounds, spec):
        xl, xu, yl, yu = self._broadcast(*input_bounds)
        default = self.default_params(xl, xu, yl, yu)  # [k, batch, *out]
        return default.unsqueeze(1).expand(default.shape[0], spec, *default.shape[1:]).clone()

    def project_params(self, params, input_bounds):
        return params.clamp(0.0, 1.0)


# ---------------------------------------------------------------- Mul
def _default_mul_r(xl: Tensor, xu: Tensor, yl: Tensor, yu: Tensor) -> tuple[Tensor, Tensor]:
    """Per-product default ``(r_l, r_u)`` (see module doc); 1 where a width is 0 or not finite."""
    wx, wy = xu - xl, yu - yl
    usable = (wx > 0) & (wy > 0) & torch.isfinite(wx) & torch.isfinite(wy)
    one = torch.ones_like(wx)
    sx, sy = torch.where(usable, 2 * wx, one), torch.where(usable, 2 * wy, one)
    ax = _finite_or_zero(xu) / sx
    r_lower = (ax + _finite_or_zero(yu) / sy).nan_to_num(0.5).clamp(0, 1)
    r_upper = (ax - _finite_or_zero(yl) / sy).nan_to_num(0.5).clamp(0, 1)
    return torch.where(usable, r_lower, one), torch.where(usable, r_upper, one)


def _force_r(r: Tensor, valid1: Tensor, valid2: Tensor) -> Tensor:
    """Plane 1 only where plane 2 is invalid, plane 2 only where plane 1 is invalid."""
    r = torch.where(valid2, r, torch.ones_like(r))
    return torch.where(valid1, r, torch.zeros_like(r))


class Mul2(BivariateElementwise):
    """``z = x * y`` of two perturbed tensors (McCormick planes, see module doc).
    Params ``[2, spec, batch, *out_shape] = (r_l, r_u)``, clamped into ``[0, 1]``."""

    kind = "Mul"
    splittable = True

    def function(self, x, y):
        return x * y

    def interval(self, x: Interval, y: Interval) -> Interval:
        xl, xu, yl, yu = self._broadcast(x, y)
        corners = torch.stack([_product(xl, yl), _product(xl, yu), _product(xu, yl), _product(xu, yu)])
        return Interval(corners.amin(0), corners.amax(0))

    def default_params(self, xl, xu, yl, yu):
        return torch.stack(_default_mul_r(xl, xu, yl, yu))

    def planes(self, xl, xu, yl, yu, params):
        if params is None:
            r_l, r_u = _default_mul_r(xl, xu, yl, yu)
        else:
            r_l, r_u = params[0].clamp(0, 1), params[1].clamp(0, 1)
        fxl, fxu, fyl, fyu = (torch.isfinite(t) for t in (xl, xu, yl, yu))
        r_l = _force_r(r_l, fxl & fyl, fxu & fyu)
        r_u = _force_r(r_u, fxl & fyu, fxu & fyl)
        xl0, xu0, yl0, yu0 = (_finite_or_zero(t) for t in (xl, xu, yl, yu))
        # an infinite endpoint only ever meets an exact 0 weight, so the mixes below are the valid plane
        lower_x = r_l * yl0 + (1 - r_l) * yu0
        lower_y = r_l * xl0 + (1 - r_l) * xu0
        lower_c = -(safe_product(r_l, xl0 * yl0) + safe_product(1 - r_l, xu0 * yu0))
        upper_x = r_u * yu0 + (1 - r_u) * yl0
        upper_y = r_u * xl0 + (1 - r_u) * xu0
        upper_c = -(safe_product(r_u, xl0 * yu0) + safe_product(1 - r_u, xu0 * yl0))
        # rounding of the mixes: error <= few eps * max|x| * max|y| (all finite when r is mixed);
        # with a forced plane the coefficients are endpoints and only the intercept is rounded
        all_finite = fxl & fxu & fyl & fyu
        mx = torch.maximum(xl0.abs(), xu0.abs())
        my = torch.maximum(yl0.abs(), yu0.abs())
        mag_l = torch.where(all_finite, 4 * mx * my, lower_c.abs())
        mag_u = torch.where(all_finite, 4 * mx * my, upper_c.abs())
        eps = torch.finfo(lower_c.dtype).eps
        lower_c = lower_c - 16 * eps * (1 + mag_l)
        upper_c = upper_c + 16 * eps * (1 + mag_u)

        # no plane available: the IBP constants (possibly infinite)
        box = self.interval(Interval(xl, xu), Interval(yl, yu))
        zero = torch.zeros_like(lower_x)
        no_lower = ~((fxl & fyl) | (fxu & fyu))
        no_upper = ~((fxl & fyu) | (fxu & fyl))
        lower_x, lower_y = torch.where(no_lower, zero, lower_x), torch.where(no_lower, zero, lower_y)
        lower_c = torch.where(no_lower, box.lower, lower_c)
        upper_x, upper_y = torch.where(no_upper, zero, upper_x), torch.where(no_upper, zero, upper_y)
        upper_c = torch.where(no_upper, box.upper, upper_c)

        # a zero-width operand makes the product linear: the exact line, unpadded
        const_y = (yl == yu) & fyl
        const_x = (xl == xu) & fxl & ~const_y
        exact = const_x | const_y
        ex = torch.where(const_y, yl, zero)
        ey = torch.where(const_x, xl, zero)
        return Planes(
            torch.where(exact, ex, lower_x), torch.where(exact, ey, lower_y), torch.where(exact, zero, lower_c),
            torch.where(exact, ex, upper_x), torch.where(exact, ey, upper_y), torch.where(exact, zero, upper_c),
        )

    def branch_point(self, lower, upper):
        crossing = (lower < 0) & (upper > 0)
        return torch.where(crossing, torch.zeros_like(lower), super().branch_point(lower, upper))

    def __repr__(self) -> str:
        return "Mul2()"


# ---------------------------------------------------------------- Max / Min
class Max2(BivariateElementwise):
    """``z = max(x, y)`` of two perturbed tensors (see module doc).
    Params ``[2, spec, batch, *out_shape] = (w, a)``: weight of ``x`` in the lower and upper plane."""

    kind = "Max"

    def function(self, x, y):
        return torch.maximum(x, y)

    def interval(self, x: Interval, y: Interval) -> Interval:
        xl, xu, yl, yu = self._broadcast(x, y)
        return Interval(torch.maximum(xl, yl), torch.maximum(xu, yu))

    @staticmethod
    def _difference_bounds(xl, xu, yl, yu) -> tuple[Tensor, Tensor]:
        """Outward-rounded ``[l_d, u_d]`` containing ``x - y``."""
        ld = torch.nextafter(xl - yu, torch.full_like(xl, -math.inf))
        ud = torch.nextafter(xu - yl, torch.full_like(xu, math.inf))
        return ld, ud

    def default_params(self, xl, xu, yl, yu):
        ld, ud = self._difference_bounds(xl, xu, yl, yu)
        w = (xl >= yl).to(xl.dtype)
        width = ud - ld
        chord = torch.where(torch.isfinite(width) & (width > 0), ud / width, torch.full_like(ud, 0.5))
        return torch.stack([w, chord.nan_to_num(0.5).clamp(0, 1)])

    def planes(self, xl, xu, yl, yu, params):
        if params is None:
            params = Max2.default_params(self, xl, xu, yl, yu)  # not Min2's (bounds already negated)
        ld, ud = self._difference_bounds(xl, xu, yl, yu)
        w, a = params[0].clamp(0, 1), params[1].clamp(0, 1)
        ld_fin, ud_fin = torch.isfinite(ld), torch.isfinite(ud)
        # an infinite end of x - y admits a single slope: 1 for u_d = inf, 0 for l_d = -inf
        a = torch.where(ud_fin, a, torch.ones_like(a))
        a = torch.where(ld_fin, a, torch.zeros_like(a))
        w_x, w_y = _exact_complement(w)
        a_x, a_y = _exact_complement(a)
        # relu(d) <= a d + c on [l_d, u_d] iff c >= -a l_d and c >= (1 - a) u_d; one ulp up covers rounding
        intercept = torch.maximum(-safe_product(a_x, ld), safe_product(a_y, ud))
        intercept = torch.nextafter(intercept, torch.full_like(intercept, math.inf))
        # both ends of x - y infinite: no plane, the constant max(x_u, y_u)
        no_plane = ~ld_fin & ~ud_fin
        upper_const = torch.maximum(xu, yu)
        zero, one = torch.zeros_like(intercept), torch.ones_like(intercept)
        a_x, a_y = torch.where(no_plane, zero, a_x), torch.where(no_plane, zero, a_y)
        intercept = torch.where(no_plane, upper_const, intercept)
        # exact cases
        is_x = xl >= yu
        is_y = (yl >= xu) & ~is_x
        exact = is_x | is_y
        ex = torch.where(is_x, one, zero)
        ey = torch.where(is_y, one, zero)
        return Planes(
            torch.where(exact, ex, w_x), torch.where(exact, ey, w_y), zero.expand_as(w_x),
            torch.where(exact, ex, a_x), torch.where(exact, ey, a_y), torch.where(exact, zero, intercept),
        )

    def __repr__(self) -> str:
        return "Max2()"


class Min2(Max2):
    """``z = min(x, y) = -max(-x, -y)``. Params ``(a, w)``: weight of ``x`` in the lower and upper
    plane (the lower plane of Min is the negated upper plane of Max and vice versa)."""

    kind = "Min"

    def function(self, x, y):
        return torch.minimum(x, y)

    def interval(self, x: Interval, y: Interval) -> Interval:
        xl, xu, yl, yu = self._broadcast(x, y)
        return Interval(torch.minimum(xl, yl), torch.minimum(xu, yu))

    def default_params(self, xl, xu, yl, yu):
        return super().default_params(-xu, -xl, -yu, -yl).flip(0)

    def planes(self, xl, xu, yl, yu, params):
        p = super().planes(-xu, -xl, -yu, -yl, None if params is None else params.flip(0))
        # max(-x, -y) <= a (-x) + b (-y) + c  <=>  min(x, y) >= a x + b y - c
        return Planes(p.upper_x, p.upper_y, -p.upper_c, p.lower_x, p.lower_y, -p.lower_c)

    def __repr__(self) -> str:
        return "Min2()"


# ---------------------------------------------------------------- MatMul
class MatMul2(Operator):
    """``out = x @ y`` of two perturbed tensors, node shapes ``[*bx, n, k] @ [*by, k, m]`` (>= 2-D,
    leading dims broadcast). Every product ``x_ik y_kj`` is relaxed with the Mul planes, with the mix
    weights shared over ``k``: params ``[2, spec, batch, *out_shape] = (r_l, r_u)`` in ``[0, 1]``;
    default the mean over ``k`` of Mul's per-product default.

    With ``P = A+ r_l + A- (1 - r_u)``, ``Q = A+ (1 - r_l) + A- r_u``, ``R = A+ r_l + A- r_u``,
    ``S = A+ (1 - r_l) + A- (1 - r_u)``:
    ``A_x = P y_l^T + Q y_u^T``, ``A_y = x_l^T R + x_u^T S``,
    ``bias = -sum(A+ r_l (x_l y_l) + A+ (1 - r_l)(x_u y_u) + A- r_u (x_l y_u) + A- (1 - r_u)(x_u y_l))``.
    A plane is used for output ``(i, j)`` only if its endpoints are finite for every ``k``; otherwise ``r``
    is forced to the other plane, or that side falls back to the IBP constant.
    """

    kind = "MatMul"
    requires_input_bounds = (0, 1)
    splittable = True

    @staticmethod
    def _check(*shapes: Sequence[int]) -> None:
        if any(len(s) < 2 for s in shapes):
            raise ValueError(f"MatMul2 needs node shapes of rank >= 2, got {[tuple(s) for s in shapes]}")

    @staticmethod
    def _aligned(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        nd = max(x.dim(), y.dim()) - 1
        return _align(x, nd), _align(y, nd)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        self._check(x.shape[1:], y.shape[1:])
        x, y = self._aligned(x, y)
        return torch.matmul(x, y)

    def _over_k(self, fn, xl, xu, yl, yu) -> list[Tensor]:
        """Sum over ``k`` of ``fn(x[.., i, k, None], y[.., None, k, j])`` (each returning a list of
        ``[batch, ..., i, k_chunk, j]`` tensors), in chunks of ``k`` to bound memory."""
        k = xl.shape[-1]
        out_elems = math.prod(torch.broadcast_shapes(xl.shape[:-2], yl.shape[:-2])) * xl.shape[-2] * yl.shape[-1]
        step = max(1, _CHUNK_ELEMENTS // max(out_elems, 1))
        totals: list[Tensor] | None = None
        for start in range(0, k, step):
            sl = slice(start, min(start + step, k))
            xs = [t[..., sl].unsqueeze(-1) for t in (xl, xu)]
            ys = [t[..., sl, :].unsqueeze(-3) for t in (yl, yu)]
            parts = [p.sum(-2) for p in fn(*xs, *ys)]
            totals = parts if totals is None else [a + b for a, b in zip(totals, parts)]
        assert totals is not None
        return totals

    def interval(self, x: Interval, y: Interval) -> Interval:
        """Exact sum over ``k`` of each product's range, padded for the rounding of the sums."""
        self._check(x.lower.shape[1:], y.lower.shape[1:])
        xl, yl = self._aligned(x.lower, y.lower)
        xu, yu = self._aligned(x.upper, y.upper)

        def ranges(xl, xu, yl, yu):
            corners = torch.stack([_product(xl, yl), _product(xl, yu), _product(xu, yl), _product(xu, yu)])
            lo, hi = corners.amin(0), corners.amax(0)
            return [lo, hi, _finite_or_zero(lo).abs() + _finite_or_zero(hi).abs()]

        lower, upper, mag = self._over_k(ranges, xl, xu, yl, yu)
        pad = (2 * xl.shape[-1] + 4) * torch.finfo(lower.dtype).eps * mag
        return Interval(lower - pad, upper + pad)

    def default_params(self, xl: Tensor, xu: Tensor, yl: Tensor, yu: Tensor) -> Tensor:
        """``[2, batch, *out_shape]``: mean over ``k`` of the per-product default ``(r_l, r_u)``."""
        r_l, r_u = self._over_k(lambda *b: list(_default_mul_r(*b)), xl, xu, yl, yu)
        k = xl.shape[-1]
        return torch.stack([r_l / k, r_u / k]).clamp(0, 1)

    def init_params(self, input_bounds, spec):
        xl, yl = self._aligned(input_bounds[0].lower, input_bounds[1].lower)
        xu, yu = self._aligned(input_bounds[0].upper, input_bounds[1].upper)
        default = self.default_params(xl, xu, yl, yu)
        return default.unsqueeze(1).expand(2, spec, *default.shape[1:]).clone()

    def project_params(self, params, input_bounds):
        return params.clamp(0.0, 1.0)

    def backward(self, A, input_shapes, input_bounds, params=None):
        bx, by = input_bounds
        assert bx is not None and by is not None, "MatMul needs the bounds of both inputs"
        self._check(*input_shapes)
        xl, yl = self._aligned(bx.lower, by.lower)  # [batch, *bx, n, k], [batch, *by, k, m]
        xu, yu = self._aligned(bx.upper, by.upper)
        if params is None:
            r_l, r_u = self.default_params(xl, xu, yl, yu)  # [batch, *out_shape]
        else:
            r_l, r_u = params[0].clamp(0, 1), params[1].clamp(0, 1)  # [spec, batch, *out_shape]
        rows = [torch.isfinite(t).all(-1).unsqueeze(-1) for t in (xl, xu)]  # [batch, *bx, n, 1]
        cols = [torch.isfinite(t).all(-2).unsqueeze(-2) for t in (yl, yu)]  # [batch, *by, 1, m]
        (fxl, fxu), (fyl, fyu) = rows, cols
        lower1, lower2 = fxl & fyl, fxu & fyu  # [batch, *out_shape]
        upper1, upper2 = fxl & fyu, fxu & fyl
        r_l, r_u = _force_r(r_l, lower1, lower2), _force_r(r_u, upper1, upper2)
        no_lower, no_upper = ~(lower1 | lower2), ~(upper1 | upper2)
        zero = torch.zeros((), dtype=A.dtype, device=A.device)
        pos = torch.where(no_lower, zero, A.clamp(min=0))  # [spec, batch, *out_shape]
        neg = torch.where(no_upper, zero, A.clamp(max=0))
        xl0, xu0, yl0, yu0 = (_finite_or_zero(t) for t in (xl, xu, yl, yu))
        p_l, q_l = pos * r_l, pos * (1 - r_l)
        p_u, q_u = neg * r_u, neg * (1 - r_u)
        # an infinite endpoint only meets exact 0 weights (forced r or fallback), so zeroing it is exact
        coeff_x = (p_l + q_u) @ yl0.transpose(-1, -2) + (q_l + p_u) @ yu0.transpose(-1, -2)
        coeff_y = xl0.transpose(-1, -2) @ (p_l + p_u) + xu0.transpose(-1, -2) @ (q_l + q_u)
        bias = -sum_node_dims(
            safe_product(p_l, xl0 @ yl0) + safe_product(q_l, xu0 @ yu0)
            + safe_product(p_u, xl0 @ yu0) + safe_product(q_u, xu0 @ yl0)
        )
        # rounding of the k-, i- and j-sums: <= (k + n + m) eps sum |A_ij| sum_k max|x_ik| max|y_kj|
        mag = torch.maximum(xl0.abs(), xu0.abs()) @ torch.maximum(yl0.abs(), yu0.abs())
        n, k, m = xl.shape[-2], xl.shape[-1], yl.shape[-1]
        ulps = 4 * (n + k + m) + 16
        bias = bias - sum_node_dims((pos - neg) * (ulps * torch.finfo(A.dtype).eps * (1 + mag)))
        if bool(no_lower.any()) or bool(no_upper.any()):
            box = self.interval(bx, by)
            fb = safe_product(torch.where(no_lower, A.clamp(min=0), zero), box.lower)
            fb = fb + safe_product(torch.where(no_upper, A.clamp(max=0), zero), box.upper)
            bias = bias + sum_node_dims(fb)
        return [reduce_to_shape(coeff_x, input_shapes[0]), reduce_to_shape(coeff_y, input_shapes[1])], bias

    def __repr__(self) -> str:
        return "MatMul2()"


# ---------------------------------------------------------------- Clip
class Clip(ElementwiseOperator):
    """``f(x) = min(max(x, min), max)`` (None: no clamp on that side); nondecreasing, piecewise linear.

    Exact on one piece (constant ``min``, identity, constant ``max``). When ``[l, u]`` crosses a kink,
    any slope ``s`` gives the valid lines ``s x + min_v (f(v) - s v)`` (lower) and
    ``s x + max_v (f(v) - s v)`` (upper), ``v`` over the vertices ``l, u, min, max`` clamped into
    ``[l, u]`` (infinite ends use the tail limit). Slopes are params ``[2, spec, batch, *shape]``
    (lower, upper) clamped to ``[0, 1]``. Defaults: on a convex kink (only ``min`` inside) ReLU-like
    adaptive lower (1 if ``u - min > min - l`` else 0) and chord upper; on a concave kink (only ``max``)
    the mirror; both inside: lower through ``(min, min), (u, max)`` if ``u - min > min - l`` else 0,
    upper through ``(l, min), (max, max)`` if ``max - l > u - max`` else 0.
    """

    kind = "Clip"
    splittable = True

    def __init__(self, min: float | None = None, max: float | None = None):  # noqa: A002 (ONNX names)
        lo = -math.inf if min is None else float(min)
        hi = math.inf if max is None else float(max)
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise ValueError(f"Clip bounds [{min}, {max}] are not an interval")
        self.min, self.max = min, max
        self.lo, self.hi = lo, hi

    def function(self, x: Tensor) -> Tensor:
        return x.clamp(min=self.lo, max=self.hi)

    def interval(self, x: Interval) -> Interval:
        return Interval(self.function(x.lower), self.function(x.upper))

    def _default_slopes(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = self.lo, self.hi
        f_l, f_u = self.function(lower), self.function(upper)
        tail_left = 0.0 if math.isfinite(lo) else 1.0
        tail_right = 0.0 if math.isfinite(hi) else 1.0
        finite = torch.isfinite(lower) & torch.isfinite(upper) & (upper > lower)
        chord = (f_u - f_l) / torch.where(finite, upper - lower, torch.ones_like(lower))
        chord = torch.where(torch.isinf(lower), torch.full_like(chord, tail_left), chord)
        chord = torch.where(torch.isinf(upper), torch.full_like(chord, tail_right), chord)
        chord = chord.nan_to_num(0.0).clamp(0, 1)
        cross_lo = (lower < lo) & (upper > lo)
        cross_hi = (lower < hi) & (upper > hi)
        one, zero = torch.ones_like(lower), torch.zeros_like(lower)
        left_wins = (upper - lo) > (lo - lower)  # mass right of the kink at min
        right_wins = (hi - lower) > (upper - hi)  # mass left of the kink at max
        through_lo = ((hi - lo) / (upper - lo)).nan_to_num(0.0).clamp(0, 1)
        through_hi = ((hi - lo) / (hi - lower)).nan_to_num(0.0).clamp(0, 1)
        both = cross_lo & cross_hi
        lower_slope = torch.where(both, torch.where(left_wins, through_lo, zero), chord)
        lower_slope = torch.where(cross_lo & ~cross_hi, torch.where(left_wins, one, zero), lower_slope)
        upper_slope = torch.where(both, torch.where(right_wins, through_hi, zero), chord)
        upper_slope = torch.where(cross_hi & ~cross_lo, torch.where(right_wins, one, zero), upper_slope)
        return lower_slope, upper_slope

    def _offset(self, v: Tensor, slope: Tensor) -> Tensor:
        """``f(v) - slope * v``, at ``v = -inf / +inf`` its limit along the tail."""
        lo, hi = self.lo, self.hi
        v0 = _finite_or_zero(v)
        value = self.function(v0) - slope * v0
        inf = torch.full_like(value, math.inf)
        # left tail f = lo (lo finite) or x; right tail f = hi (hi finite) or x
        a_left, b_left = (0.0, lo) if math.isfinite(lo) else (1.0, 0.0)
        a_right, b_right = (0.0, hi) if math.isfinite(hi) else (1.0, 0.0)
        left = torch.where(a_left - slope == 0, torch.full_like(value, b_left), inf)
        left = torch.where(a_left - slope > 0, -inf, left)
        right = torch.where(a_right - slope == 0, torch.full_like(value, b_right), -inf)
        right = torch.where(a_right - slope > 0, inf, right)
        value = torch.where(v == -math.inf, left, value)
        return torch.where(v == math.inf, right, value)

    def relax(self, lower, upper, params=None):
        lo, hi = self.lo, self.hi
        if params is None:
            s_lower, s_upper = self._default_slopes(lower, upper)
        else:
            s_lower, s_upper = params[0].clamp(0, 1), params[1].clamp(0, 1)
        vertices = [lower, upper, lower.clamp(min=lo).clamp(max=upper), upper.clamp(max=hi).clamp(min=lower)]
        c_lower = torch.stack(torch.broadcast_tensors(*[self._offset(v, s_lower) for v in vertices])).amin(0)
        c_upper = torch.stack(torch.broadcast_tensors(*[self._offset(v, s_upper) for v in vertices])).amax(0)
        magnitude = 2 * (_finite_or_zero(lower).abs() + _finite_or_zero(upper).abs())
        magnitude = magnitude + (abs(lo) if math.isfinite(lo) else 0.0) + (abs(hi) if math.isfinite(hi) else 0.0)
        padded = pad_outward(LinearRelaxation(s_lower, c_lower, s_upper, c_upper), magnitude)
        # exact pieces
        below, above = upper <= lo, lower >= hi
        middle = (lower >= lo) & (upper <= hi) & ~below & ~above
        exact = below | above | middle
        zero = torch.zeros_like(lower)
        exact_slope = torch.where(middle, torch.ones_like(lower), zero)
        exact_intercept = torch.where(above, torch.full_like(lower, hi), zero)
        exact_intercept = torch.where(below, torch.full_like(lower, lo), exact_intercept)
        return LinearRelaxation(
            torch.where(exact, exact_slope, s_lower), torch.where(exact, exact_intercept, padded.lower_intercept),
            torch.where(exact, exact_slope, s_upper), torch.where(exact, exact_intercept, padded.upper_intercept),
        )

    def init_params(self, input_bounds, spec):
        b = input_bounds[0]
        slopes = torch.stack(self._default_slopes(b.lower, b.upper))
        return slopes.unsqueeze(1).expand(2, spec, *slopes.shape[1:]).clone()

    def project_params(self, params, input_bounds):
        return params.clamp(0.0, 1.0)

    def branch_point(self, lower, upper):
        mid = super().branch_point(lower, upper)
        at_hi = torch.where((lower < self.hi) & (upper > self.hi), torch.full_like(lower, self.hi), mid)
        return torch.where((lower < self.lo) & (upper > self.lo), torch.full_like(lower, self.lo), at_hi)

    def __repr__(self) -> str:
        return f"Clip({self.min}, {self.max})"


# ---------------------------------------------------------------- Floor
class Floor(ElementwiseOperator):
    """``f(x) = floor(x)``. Exact constant when ``floor(l) == floor(u)``. Otherwise, for slopes
    ``s, t in [0, 1]`` (params ``[2, spec, batch, *shape]``):
    ``s x + floor(l) - s (floor(l) + 1) <= floor(x) <= t x + (1 - t) floor(u)`` on ``[l, u]``;
    ``s = t = 1`` are the lines ``x - 1`` and ``x``, ``s = t = 0`` the image constants. Default per side:
    the endpoint slope with the larger (smaller) mean over ``[l, u]``; 1 at an infinite end (the only
    finite choice there).
    """

    kind = "Floor"

    def function(self, x: Tensor) -> Tensor:
        return torch.floor(x)

    def interval(self, x: Interval) -> Interval:
        return Interval(torch.floor(x.lower), torch.floor(x.upper))

    @staticmethod
    def _default_slopes(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        fl_l, fl_u = torch.floor(lower), torch.floor(upper)
        mean = (lower + upper) / 2
        one, zero = torch.ones_like(lower), torch.zeros_like(lower)
        s = torch.where(mean - 1 > fl_l, one, zero)  # line x - 1 beats the constant floor(l) on average
        t = torch.where(mean < fl_u, one, zero)  # line x beats the constant floor(u) on average
        s = torch.where(torch.isinf(lower), one, s)
        t = torch.where(torch.isinf(upper), one, t)
        return s, t

    def relax(self, lower, upper, params=None):
        if params is None:
            s, t = self._default_slopes(lower, upper)
        else:
            s, t = params[0].clamp(0, 1), params[1].clamp(0, 1)
        fl_l, fl_u = torch.floor(lower), torch.floor(upper)
        fl_l0, fl_u0 = _finite_or_zero(fl_l), _finite_or_zero(fl_u)
        c_lower = fl_l0 - s * (fl_l0 + 1)
        c_upper = fl_u0 - t * fl_u0
        inf = torch.full_like(c_lower, math.inf)
        c_lower = torch.where(lower == -math.inf, torch.where(s == 1, -torch.ones_like(c_lower), -inf), c_lower)
        c_upper = torch.where(upper == math.inf, torch.where(t == 1, torch.zeros_like(c_upper), inf), c_upper)
        magnitude = 2 * (_finite_or_zero(lower).abs() + _finite_or_zero(upper).abs()) + 2
        padded = pad_outward(LinearRelaxation(s, c_lower, t, c_upper), magnitude)
        exact = fl_l == fl_u
        zero = torch.zeros_like(lower)
        return LinearRelaxation(
            torch.where(exact, zero, s), torch.where(exact, fl_l, padded.lower_intercept),
            torch.where(exact, zero, t), torch.where(exact, fl_l, padded.upper_intercept),
        )

    def init_params(self, input_bounds, spec):
        b = input_bounds[0]
        slopes = torch.stack(self._default_slopes(b.lower, b.upper))
        return slopes.unsqueeze(1).expand(2, spec, *slopes.shape[1:]).clone()

    def project_params(self, params, input_bounds):
        return params.clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return "Floor()"
