"""Convex / concave elementwise operators: Exp, Log, Reciprocal, Sqrt, Square, Pow, Abs, Softplus.

Every function here is convex or concave on each input interval it accepts, except odd integer
powers on an interval crossing 0 (concave left of 0, convex right of 0). Relaxation on ``[l, u]``
(design.md b):

* **Slopes.** Convex: lower slope ``f'(t_L)`` (tangent point ``t_L``, optimizable), upper slope = the
  chord slope. Concave: swapped (lower = chord, upper ``f'(t_U)``). Odd power crossing 0: both are
  tangent slopes; the defaults are the S-shape lines (upper: the tangent at ``d = -c_n u`` that
  passes through ``(u, u^n)``, else the chord; lower symmetric). An infinite end replaces the chord
  slope by its limit, the asymptotic slope ``f'(+-inf)``.
* **Intercepts by exact offset.** For a slope ``a`` the intercepts are
  ``b_L = inf_{x in [l,u]} f(x) - a x`` and ``b_U = sup_{x in [l,u]} f(x) - a x``, taken over the finite
  ends, the limits at infinite ends and the critical points ``f'(x) = a`` (closed form per function)
  inside ``[l, u]``. For a tangent slope this is the tangent, for the chord slope the chord; for any
  other slope it is still the tightest valid line, so every parameter value is sound by construction.
* **Rounding.** Each candidate value of ``f(x) - a x`` is padded outward by the ``pad_outward`` rule
  (``16 eps (1 + |f(x)| + |a x|)``) before the max/min, so only the extreme point's magnitude
  loosens the line (the slope needs no pad: the offset is computed for the rounded slope). A line
  that is not finite after that (overflow, or no finite line exists, e.g. the upper line of ``exp``
  on ``[l, +inf)``) is replaced by the IBP constant (slope 0, intercept the interval bound, possibly
  infinite). Non-float64 inputs are relaxed in float64: slopes are rounded to the input dtype first,
  offsets computed for those slopes, intercepts rounded outward; IBP values likewise (torch's
  float32 ``pow`` can be several ulps off).

Invariant: ``lower_slope*x + lower_intercept <= f(x) <= upper_slope*x + upper_intercept`` for every
``x`` in ``[l, u]`` and every parameter value. Intervals outside the domain (Log/Sqrt/fractional Pow of
negatives, Reciprocal/negative Pow of an interval touching 0) raise ``UnsupportedInput``.

Optimizable parameters ``[k, spec, batch, *shape]`` are tangent points, one row per entry of
``param_roles`` ("lower" and/or "upper"), clamped into ``[l, u]`` (non-finite -> default); Abs's
single row is the lower slope in ``[-1, 1]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import ElementwiseOperator, Interval, LinearRelaxation, UnsupportedInput

INF = math.inf


def _sign_inf(value: Tensor) -> Tensor:
    """``+inf`` where ``value > 0``, ``-inf`` where ``< 0``, ``0`` where ``== 0`` (the limit of ``value * x``
    as ``x -> +inf``)."""
    return torch.where(value > 0, INF, torch.where(value < 0, -INF, 0.0)).to(value.dtype)


def _widen(lower: Tensor, upper: Tensor, ulps: int = 2) -> Interval:
    """Move interval ends outward by ``ulps`` representable numbers (covers rounding of ``f``)."""
    down = torch.full_like(lower, -INF)
    up = torch.full_like(upper, INF)
    for _ in range(ulps):
        lower, upper = torch.nextafter(lower, down), torch.nextafter(upper, up)
    return Interval(lower, upper)


def _accurate(function, x: Tensor) -> Tensor:
    """``function(x)`` evaluated in float64 and rounded to ``x``'s dtype (torch's float32 pow, for one,
    can be several ulps off; the float64 value rounded is within half an ulp plus a float64 ulp)."""
    return function(x) if x.dtype == torch.float64 else function(x.double()).to(x.dtype)


def _round_outward(value: Tensor, dtype: torch.dtype, direction: int) -> Tensor:
    """float64 ``value`` rounded to ``dtype`` towards ``direction * inf`` (never to the other side)."""
    if value.dtype == dtype:
        return value
    rounded = value.to(dtype)
    wrong = (rounded.double() < value) if direction > 0 else (rounded.double() > value)
    away = torch.full_like(rounded, direction * INF)
    return torch.where(wrong, torch.nextafter(rounded, away), rounded)


def _finite_point(lower: Tensor, upper: Tensor) -> Tensor:
    """A finite point of ``[l, u]``: the midpoint, or ``l + 1`` / ``u - 1`` / ``0`` for infinite ends."""
    fin_l, fin_u = torch.isfinite(lower), torch.isfinite(upper)
    mid = lower / 2 + upper / 2
    mid = torch.where(~fin_l & fin_u, upper - 1, mid)
    mid = torch.where(fin_l & ~fin_u, lower + 1, mid)
    mid = torch.where(~fin_l & ~fin_u, torch.zeros_like(mid), mid)
    return torch.minimum(torch.maximum(mid, lower), upper)


class ConvexFamily(ElementwiseOperator):
    """Shared relaxation engine (module docstring). Subclasses give the math: ``function``,
    ``derivative``, ``critical_points``, ``tail``, ``asymptotic_slope``, ``curvature``, ``interval``
    and optionally ``check_domain`` / ``default_point``."""

    #: which lines use an (optimizable) tangent point: "lower" (convex parts), "upper" (concave parts)
    param_roles: tuple[str, ...] = ()
    pad_ulps: float = 16.0

    # ---- math hooks -------------------------------------------------------------------------------
    def derivative(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def critical_points(self, slope: Tensor) -> list[Tensor]:
        """All ``x`` with ``f'(x) = slope`` (NaN/inf where none); may lie outside any interval."""
        raise NotImplementedError

    def tail(self, slope: Tensor, sign: int) -> Tensor:
        """``lim f(x) - slope*x`` as ``x -> sign * inf`` (only used where that end is infinite)."""
        raise NotImplementedError

    def asymptotic_slope(self, sign: int) -> float:
        """``lim f'(x)`` as ``x -> sign * inf``: the chord slope's limit for an infinite end."""
        raise NotImplementedError

    def curvature(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """Masks ``(convex, concave)`` of f on ``[l, u]``; neither = crossing (odd powers only)."""
        raise NotImplementedError

    def check_domain(self, lower: Tensor, upper: Tensor) -> None:
        """Raise ``UnsupportedInput`` if some ``[l, u]`` leaves the domain that can be bounded."""

    def default_point(self, lower: Tensor, upper: Tensor, role: str) -> Tensor:
        """Default tangent point of the ``role`` line (may be non-finite: replaced by a finite point)."""
        return _finite_point(lower, upper)

    # ---- parameters -------------------------------------------------------------------------------
    def project_param(self, value: Tensor, lower: Tensor, upper: Tensor, role: str) -> Tensor:
        """Tangent point clamped into ``[l, u]``; non-finite values -> the default."""
        default = self.default_point(lower, upper, role)
        default = torch.where(torch.isfinite(default), default, _finite_point(lower, upper))
        value = torch.where(torch.isfinite(value), value, default)
        return torch.minimum(torch.maximum(value, lower), upper)

    def param_slope(self, value: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        """Slope of the line given by a (projected) parameter: ``f'(t)``, non-finite -> 0."""
        return self._finite_or_zero(self.derivative(value))

    def _param(self, lower: Tensor, upper: Tensor, params: Tensor | None, role: str) -> Tensor:
        value = self.default_point(lower, upper, role) if params is None else params[self.param_roles.index(role)]
        return self.project_param(value, lower, upper, role)

    def init_params(self, input_bounds, spec):
        if not self.param_roles:
            return None
        b = input_bounds[0]
        lower, upper = b.lower.double(), b.upper.double()  # as relax computes the defaults
        rows = torch.stack([self._param(lower, upper, None, role) for role in self.param_roles]).to(b.lower.dtype)
        # [k, spec, batch, *shape]
        return rows.unsqueeze(1).expand(rows.shape[0], spec, *rows.shape[1:]).clone()

    def project_params(self, params, input_bounds):
        if not self.param_roles:
            return params
        b = input_bounds[0]
        rows = [self.project_param(params[i], b.lower, b.upper, role) for i, role in enumerate(self.param_roles)]
        return torch.stack(rows)

    # ---- relaxation -------------------------------------------------------------------------------
    @staticmethod
    def _finite_or_zero(t: Tensor) -> Tensor:
        return torch.where(torch.isfinite(t), t, torch.zeros_like(t))

    def chord_slope(self, lower: Tensor, upper: Tensor) -> Tensor:
        """``(f(u) - f(l)) / (u - l)``; ``f'(l)`` when ``l = u``; the asymptotic slope for one infinite
        end, 0 for two; non-finite results -> 0 (any finite slope is sound with exact offsets)."""
        fin_l, fin_u = torch.isfinite(lower), torch.isfinite(upper)
        anchor = torch.where(fin_l, lower, torch.where(fin_u, upper, torch.zeros_like(upper)))
        x_l, x_u = torch.where(fin_l, lower, anchor), torch.where(fin_u, upper, anchor)
        width = x_u - x_l
        wide = width > 0
        chord = (self.function(x_u) - self.function(x_l)) / torch.where(wide, width, torch.ones_like(width))
        slope = torch.where(wide, chord, self.derivative(x_l))
        slope = torch.where(~fin_l & fin_u, self.asymptotic_slope(-1), slope)
        slope = torch.where(fin_l & ~fin_u, self.asymptotic_slope(1), slope)
        slope = torch.where(~fin_l & ~fin_u, torch.zeros_like(slope), slope)
        return self._finite_or_zero(slope)

    def offset(self, lower: Tensor, upper: Tensor, slope: Tensor, upper_side: bool) -> Tensor:
        """Exact offset, padded: ``sup`` (``upper_side``) or ``inf`` over ``[l, u]`` of ``f(x) - slope*x``.

        Candidates: finite ends, limits at infinite ends, critical points inside ``[l, u]``. Each
        candidate value is moved outward by ``pad_ulps * eps * (1 + |f(x)| + |slope*x|)`` (the
        ``pad_outward`` rule, per candidate) *before* the max/min: whichever candidate is the true
        extreme, its rounding is covered, and a far candidate with a huge ``|f|`` does not loosen the
        line. Limits at infinity are exact (0 or +-inf) and are not padded."""
        direction = 1.0 if upper_side else -1.0
        excluded = -direction * INF
        eps = torch.finfo(slope.dtype).eps
        fin_l, fin_u = torch.isfinite(lower), torch.isfinite(upper)
        anchor = torch.where(fin_l, lower, torch.where(fin_u, upper, torch.zeros_like(upper)))
        values = []

        def add(x: Tensor, ok: Tensor, otherwise: Tensor | float) -> None:
            x = torch.where(ok, x, anchor)  # finite, inside the domain: no NaN values or gradients
            fx, ax = self.function(x), slope * x
            padded = fx - ax + direction * self.pad_ulps * eps * (1 + fx.abs() + ax.abs())
            values.append(torch.where(ok, padded, otherwise))

        add(lower, fin_l, self.tail(slope, -1))
        add(upper, fin_u, self.tail(slope, 1))
        for x in self.critical_points(slope):
            add(x, torch.isfinite(x) & (x >= lower) & (x <= upper), excluded)
        g = torch.stack(torch.broadcast_tensors(*values))
        g = torch.where(torch.isnan(g), -excluded, g)  # NaN (inf - inf): the conservative side
        return g.amax(0) if upper_side else g.amin(0)

    def slopes(self, lower: Tensor, upper: Tensor, params: Tensor | None) -> tuple[Tensor, Tensor]:
        """Lower and upper slopes (module docstring); always finite."""
        convex, concave = self.curvature(lower, upper)
        chord = self.chord_slope(lower, upper)
        lower_slope, upper_slope = chord, chord
        if "lower" in self.param_roles:
            tangent = self.param_slope(self._param(lower, upper, params, "lower"), lower, upper)
            lower_slope = torch.where(concave, chord, tangent)
        if "upper" in self.param_roles:
            tangent = self.param_slope(self._param(lower, upper, params, "upper"), lower, upper)
            upper_slope = torch.where(convex, chord, tangent)
        return lower_slope, upper_slope

    def relax(self, lower: Tensor, upper: Tensor, params: Tensor | None = None) -> LinearRelaxation:
        """Lines valid on ``[l, u]`` for any ``params``. Lower precisions are computed in float64: the
        slopes are rounded to the input dtype first, then the offsets are computed for those exact
        slopes and rounded outward, so ``torch``'s float32 rounding of f never enters."""
        self.check_domain(lower, upper)
        dtype = lower.dtype
        box = self.interval(Interval(lower, upper))
        lower64, upper64 = lower.double(), upper.double()
        slopes = self.slopes(lower64, upper64, None if params is None else params.double())
        lower_slope, upper_slope = (self._finite_or_zero(s.to(dtype)) for s in slopes)
        lower_intercept = _round_outward(self.offset(lower64, upper64, lower_slope.double(), False), dtype, -1)
        upper_intercept = _round_outward(self.offset(lower64, upper64, upper_slope.double(), True), dtype, 1)
        lines = torch.broadcast_tensors(lower_slope, lower_intercept, upper_slope, upper_intercept)
        return self._fallback(LinearRelaxation(*lines), box)

    @staticmethod
    def _fallback(r: LinearRelaxation, box: Interval) -> LinearRelaxation:
        """Replace non-finite lines by the interval constants (``slope 0``, intercept ``box`` bound)."""
        lower_ok = torch.isfinite(r.lower_slope) & torch.isfinite(r.lower_intercept)
        upper_ok = torch.isfinite(r.upper_slope) & torch.isfinite(r.upper_intercept)
        zero = torch.zeros_like(r.lower_slope)
        return LinearRelaxation(
            torch.where(lower_ok, r.lower_slope, zero),
            torch.where(lower_ok, r.lower_intercept, box.lower.expand_as(zero)),
            torch.where(upper_ok, r.upper_slope, zero),
            torch.where(upper_ok, r.upper_intercept, box.upper.expand_as(zero)),
        )

    def _monotone_interval(self, x: Interval, increasing: bool) -> Interval:
        self.check_domain(x.lower, x.upper)
        f_l, f_u = _accurate(self.function, x.lower), _accurate(self.function, x.upper)
        return _widen(f_l, f_u) if increasing else _widen(f_u, f_l)


def _all(lower: Tensor) -> Tensor:
    return torch.ones_like(lower, dtype=torch.bool)


def _none(lower: Tensor) -> Tensor:
    return torch.zeros_like(lower, dtype=torch.bool)


class Exp(ConvexFamily):
    """``exp(x)``: convex increasing. Default lower tangent point ``min(midpoint, l + 0.99)`` (the
    reference's cap, design.md f.6): on huge intervals such as ``[-50, 80]`` the midpoint tangent has
    slope ``e^15`` and reaches ``-2e8`` at ``l`` where ``exp`` is ``~0``; the capped tangent stays within a
    small factor of ``f(l)`` on the low end, which is where softmax-style uses need precision.
    ``(-inf, u]``: upper line is the constant ``e^u``; ``[l, +inf)``: upper intercept ``+inf``."""

    kind = "Exp"
    param_roles = ("lower",)

    def function(self, x: Tensor) -> Tensor:
        return torch.exp(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.exp(x)

    def critical_points(self, slope: Tensor) -> list[Tensor]:
        ok = slope > 0
        return [torch.where(ok, torch.log(torch.where(ok, slope, torch.ones_like(slope))), torch.nan)]

    def tail(self, slope: Tensor, sign: int) -> Tensor:
        if sign > 0:
            return torch.full_like(slope, INF)
        return _sign_inf(slope)  # e^x - a x as x -> -inf

    def asymptotic_slope(self, sign: int) -> float:
        return INF if sign > 0 else 0.0

    def curvature(self, lower, upper):
        return _all(lower), _none(lower)

    def default_point(self, lower, upper, role):
        mid = _finite_point(lower, upper)
        return torch.where(torch.isfinite(lower), torch.minimum(mid, lower + 0.99), mid)

    def interval(self, x: Interval) -> Interval:
        return self._monotone_interval(x, increasing=True)


class Softplus(ConvexFamily):
    """``log(1 + e^x)`` (computed as ``logaddexp(x, 0)``, accurate for all x): convex increasing,
    asymptotes ``0`` and ``x``. Lower tangent at the midpoint; upper chord, ``(-inf, u]``: constant
    ``softplus(u)``, ``[l, +inf)``: slope 1, intercept ``softplus(l) - l``."""

    kind = "Softplus"
    param_roles = ("lower",)

    def function(self, x: Tensor) -> Tensor:
        return torch.logaddexp(x, torch.zeros_like(x))

    def derivative(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)

    def critical_points(self, slope: Tensor) -> list[Tensor]:
        ok = (slope > 0) & (slope < 1)
        safe = torch.where(ok, slope, torch.full_like(slope, 0.5))
        return [torch.where(ok, torch.log(safe) - torch.log1p(-safe), torch.nan)]

    def tail(self, slope: Tensor, sign: int) -> Tensor:
        if sign > 0:
            return _sign_inf(1 - slope)  # (1 - a) x + log(1 + e^-x)
        return _sign_inf(slope)

    def asymptotic_slope(self, sign: int) -> float:
        return 1.0 if sign > 0 else 0.0

    def curvature(self, lower, upper):
        return _all(lower), _none(lower)

    def interval(self, x: Interval) -> Interval:
        return self._monotone_interval(x, increasing=True)


class Log(ConvexFamily):
    """``log(x)``, requires ``l > 0``: concave increasing. Lower chord (``[l, +inf)``: constant
    ``log l``), upper tangent at ``t`` (default midpoint; valid on all of ``x > 0``)."""

    kind = "Log"
    param_roles = ("upper",)

    def function(self, x: Tensor) -> Tensor:
        return torch.log(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.reciprocal(x)

    def critical_points(self, slope: Tensor) -> list[Tensor]:
        ok = slope > 0
        return [torch.where(ok, torch.reciprocal(torch.where(ok, slope, torch.ones_like(slope))), torch.nan)]

    def tail(self, slope: Tensor, sign: int) -> Tensor:
        return torch.where(slope > 0, -INF, INF).to(slope.dtype)  # log x - a x as x -> +inf

    def asymptotic_slope(self, sign: int) -> float:
        return 0.0

    def curvature(self, lower, upper):
        return _none(lower), _all(lower)

    def check_domain(self, lower, upper):
        if bool((lower <= 0).any()):
            raise UnsupportedInput(f"Log of an interval reaching {lower.min().item()} <= 0")

    def interval(self, x: Interval) -> Interval:
        return self._monotone_interval(x, increasing=True)


def _odd_tangent_ratio(n: int) -> float:
    """``c_n`` in ``(0, 1]`` with ``(n-1) c^n + n c^(n-1) = 1``: for odd ``n`` and ``u > 0`` the tangent of
    ``x^n`` at ``d = -c_n u`` passes through ``(u, u^n)`` (n = 3: c = 1/2). Bisection; the left end is kept."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if (n - 1) * mid**n + n * mid ** (n - 1) - 1 < 0:
            lo = mid
        else:
            hi = mid
    return lo


class Pow(ConvexFamily):
    """``x^p`` for a constant exponent p.

    * ``p = 0``: the constant 1; ``p = 1``: the identity (exact lines).
    * even integer ``p >= 2`` (and fractional ``p > 1`` on ``x >= 0``): convex; lower tangent at the
      midpoint (it minimizes the worst gap ``max (x - t)^2 = w^2 / 4`` for ``x^2``, four times less than
      the reference's "0 or the endpoint nearer 0"; per neuron CROWN loses at most ``|A|`` times that gap).
    * odd integer ``p >= 3``: concave for ``u <= 0``, convex for ``l >= 0``, S-shape when crossing 0
      (defaults: tangent through the far end when it touches inside ``[l, u]``, else the chord).
    * negative integer p: ``[l, u]`` must not touch 0; convex on ``x > 0``; on ``x < 0`` convex for even,
      concave for odd p.
    * fractional p: requires ``l >= 0`` (``l > 0`` for ``p < 0``); convex for ``p > 1`` or ``p < 0``,
      concave for ``0 < p < 1``.
    Critical points of ``x^p - a x`` are ``x^(p-1) = a / p`` (closed form)."""

    kind = "Pow"

    def __init__(self, exponent: float):
        p = float(exponent)
        if not math.isfinite(p):
            raise ValueError(f"Pow exponent {exponent} is not finite")
        self.exponent = p
        self.integer = p.is_integer()
        self.odd = self.integer and int(p) % 2 != 0
        self.even = self.integer and not self.odd
        self.linear = p in (0.0, 1.0)
        if self.linear:
            self.param_roles = ()
        elif self.odd:
            self.param_roles = ("lower", "upper")
        elif 0 < p < 1:
            self.param_roles = ("upper",)
        else:
            self.param_roles = ("lower",)
        self.crossing_odd = self.odd and p >= 3
        self.splittable = not self.linear
        self._c = _odd_tangent_ratio(int(p)) if self.crossing_odd else 0.0

    def function(self, x: Tensor) -> Tensor:
        return torch.pow(x, self.exponent)

    def derivative(self, x: Tensor) -> Tensor:
        p = self.exponent
        if p - 1 >= 0:
            return p * torch.pow(x, p - 1)
        zero = x == 0
        safe = torch.where(zero, torch.ones_like(x), x)
        return torch.where(zero, INF, p * torch.pow(safe, p - 1))

    def critical_points(self, slope: Tensor) -> list[Tensor]:
        p = self.exponent
        q = slope / p
        e = 1.0 / (p - 1)
        nonzero = q != 0
        safe = torch.where(nonzero, q.abs(), torch.ones_like(q))
        root = torch.where(nonzero, torch.pow(safe, e), 0.0 if e > 0 else INF)  # |q|^e
        if self.odd:  # p - 1 even: x = +-|q|^e when q >= 0
            plus = torch.where(q >= 0, root, torch.nan)
            return [plus, -plus]
        if self.even:  # p - 1 odd: x = sign(q) |q|^e
            return [torch.where(q >= 0, root, -root)]
        return [torch.where(q >= 0, root, torch.nan)]  # fractional: x >= 0 only

    def tail(self, slope: Tensor, sign: int) -> Tensor:
        p = self.exponent
        if p > 1:
            return torch.full_like(slope, -INF if (sign < 0 and self.odd) else INF)
        if p > 0:  # 0 < p < 1, x -> +inf: x^p - a x
            return torch.where(slope > 0, -INF, INF).to(slope.dtype)
        return _sign_inf(-sign * slope)  # x^p -> 0: -a x

    def asymptotic_slope(self, sign: int) -> float:
        p = self.exponent
        if p > 1:
            return -INF if (sign < 0 and self.even) else INF
        return 0.0

    def curvature(self, lower, upper):
        p = self.exponent
        convex_pos = p * (p - 1) > 0
        convex_neg = convex_pos if self.even else not convex_pos  # sign of x^(p-2) for x < 0
        pos = lower >= 0
        neg = (upper <= 0) & ~pos
        crossing = ~pos & ~neg
        convex = (pos & convex_pos) | (neg & convex_neg) | (crossing & self.even & convex_pos)
        concave = (pos & (not convex_pos)) | (neg & (not convex_neg))
        return convex, concave

    def check_domain(self, lower, upper):
        p = self.exponent
        if self.integer and p >= 0:
            return
        if self.integer:
            bad = (lower <= 0) & (upper >= 0)
            what = "an interval touching 0"
        elif p > 0:
            bad = lower < 0
            what = "an interval with negative values"
        else:
            bad = lower <= 0
            what = "an interval reaching 0 or below"
        if bool(bad.any()):
            raise UnsupportedInput(f"{self!r} of {what} (domain of x^{p})")

    def default_point(self, lower, upper, role):
        base = _finite_point(lower, upper)
        if not self.crossing_odd:
            return base
        p = self.exponent
        crossing = (lower < 0) & (upper > 0)
        chord = self.chord_slope(lower, upper).clamp(min=0)
        root = torch.pow(chord / p, 1.0 / (p - 1))
        chord_point = torch.where(root <= upper, root, -root)  # f'(t) = chord slope, t in [l, u]
        if role == "upper":
            touch = -self._c * upper  # tangent there passes through (u, u^p)
            point = torch.where(touch >= lower, touch, chord_point)
        else:
            touch = -self._c * lower
            point = torch.where(touch <= upper, touch, chord_point)
        return torch.where(crossing, point, base)

    def relax(self, lower, upper, params=None):
        if not self.linear:
            return super().relax(lower, upper, params)
        one = torch.ones_like(lower)
        zero = torch.zeros_like(lower)
        if self.exponent == 0.0:
            return LinearRelaxation(zero, one, zero, one)
        return LinearRelaxation(one, zero, one, zero)

    def interval(self, x: Interval) -> Interval:
        self.check_domain(x.lower, x.upper)
        if self.linear:
            return Interval(self.function(x.lower), self.function(x.upper))
        f_l, f_u = _accurate(self.function, x.lower), _accurate(self.function, x.upper)
        low, high = torch.minimum(f_l, f_u), torch.maximum(f_l, f_u)
        if self.even and self.exponent > 0:
            low = torch.where((x.lower < 0) & (x.upper > 0), torch.zeros_like(low), low)
        return _widen(low, high)

    def branch_point(self, lower: Tensor, upper: Tensor) -> Tensor:
        point = super().branch_point(lower, upper)
        if self.crossing_odd:  # split into the concave and the convex part
            point = torch.where((lower < 0) & (upper > 0), torch.zeros_like(point), point)
        return point

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.exponent})"


class Square(Pow):
    """``x^2`` (ONNX ``Pow`` with exponent 2 / ``Mul(x, x)``): convex, see ``Pow``."""

    def __init__(self):
        super().__init__(2.0)

    def function(self, x: Tensor) -> Tensor:
        return x * x

    def __repr__(self) -> str:
        return "Square()"


class Sqrt(Pow):
    """``sqrt(x)``, requires ``l >= 0``: concave increasing; lower chord, upper tangent at ``t``
    (``t = 0`` has an infinite slope: the line falls back to the constant ``sqrt(u)``)."""

    kind = "Sqrt"

    def __init__(self):
        super().__init__(0.5)

    def function(self, x: Tensor) -> Tensor:
        return torch.sqrt(x)

    def __repr__(self) -> str:
        return "Sqrt()"


class Reciprocal(Pow):
    """``1 / x``, requires ``0`` outside ``[l, u]`` (``l > 0`` or ``u < 0``): convex decreasing on ``x > 0``
    (lower tangent, upper chord), concave decreasing on ``x < 0`` (lower chord, upper tangent)."""

    kind = "Reciprocal"

    def __init__(self):
        super().__init__(-1.0)

    def function(self, x: Tensor) -> Tensor:
        return torch.reciprocal(x)

    def __repr__(self) -> str:
        return "Reciprocal()"


class Abs(ConvexFamily):
    """``|x|``: exact lines ``x`` / ``-x`` when one-sided. Crossing 0: upper chord (slope
    ``(u + l)/(u - l)``, intercept ``-2 l u / (u - l)``), lower ``s x`` with slope ``s in [-1, 1]``
    (optimizable; default the chord slope, the ``s`` minimizing the worst gap ``max(u(1-s), -l(1+s))``;
    the reference uses 0). Infinite ends take the chord's limits (slope ``+-1``). Branch point 0."""

    kind = "Abs"
    param_roles = ("lower",)
    splittable = True

    def function(self, x: Tensor) -> Tensor:
        return torch.abs(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.sign(x)

    def critical_points(self, slope: Tensor) -> list[Tensor]:
        return [torch.zeros_like(slope)]  # the kink

    def tail(self, slope: Tensor, sign: int) -> Tensor:
        return _sign_inf(1 - slope) if sign > 0 else _sign_inf(1 + slope)

    def asymptotic_slope(self, sign: int) -> float:
        return float(sign)

    def curvature(self, lower, upper):
        return _all(lower), _none(lower)

    def default_point(self, lower, upper, role):
        return self.chord_slope(lower, upper).clamp(-1.0, 1.0)

    def project_param(self, value, lower, upper, role):
        value = torch.where(torch.isfinite(value), value, self.default_point(lower, upper, role))
        return value.clamp(-1.0, 1.0)

    def param_slope(self, value, lower, upper):
        one = torch.ones_like(lower)
        return torch.where(lower >= 0, one, torch.where(upper <= 0, -one, value))

    def relax(self, lower, upper, params=None):
        r = super().relax(lower, upper, params)
        side = (lower >= 0) | (upper <= 0)  # one-sided: |x| is the line x or -x, no padding needed
        exact = torch.where(lower >= 0, 1.0, -1.0).to(lower.dtype)
        zero = torch.zeros_like(lower)
        return LinearRelaxation(
            torch.where(side, exact, r.lower_slope),
            torch.where(side, zero, r.lower_intercept),
            torch.where(side, exact, r.upper_slope),
            torch.where(side, zero, r.upper_intercept),
        )

    def interval(self, x: Interval) -> Interval:
        a_l, a_u = x.lower.abs(), x.upper.abs()
        crossing = (x.lower < 0) & (x.upper > 0)
        low = torch.where(crossing, torch.zeros_like(a_l), torch.minimum(a_l, a_u))
        return Interval(low, torch.maximum(a_l, a_u))

    def branch_point(self, lower: Tensor, upper: Tensor) -> Tensor:
        point = super().branch_point(lower, upper)
        return torch.where((lower < 0) & (upper > 0), torch.zeros_like(point), point)
