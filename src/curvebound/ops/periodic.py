"""Sin and Cos: ``f(x) = sin(x + phase)`` with phase 0 (Sin) or pi/2 (Cos).

IBP: exact image of ``[l, u]``: 1 if a peak ``peak + 2k*pi`` lies inside, else the larger end value;
-1 if a trough ``peak + pi + 2k*pi`` lies inside, else the smaller end value; padded by a few ulps.

Relaxation on ``[l, u]`` (width < 2*pi, finite, ``max(|l|, |u|) <= 1e5``): a line is fixed by its
slope ``a``; its intercept is the *exact support value*

    b_lower(a) = min_{x in [l, u]} f(x) - a*x,      b_upper(a) = max_{x in [l, u]} f(x) - a*x,

taken over the ends and the critical points ``f'(x) = cos(x + phase) = a``, i.e.
``x = +-acos(a) - phase + 2k*pi`` (at most one per sign inside an interval shorter than 2*pi: the
first one at or above l, found with a remainder).  The min/max is exact up to rounding, so
``a*x + b_lower <= f(x) <= a*x + b_upper`` holds on ``[l, u]`` for *every* slope ``a``; a final
``pad_outward`` covers floating-point rounding (float64 and float32).

Slopes are the optimizable parameters: ``params [2, spec, batch, *shape]`` = (lower slope, upper
slope), clamped to [-1, 1] (a steeper line is pointwise dominated by the slope +-1 one).  The default
slope of each side maximises the line at the midpoint (minimum area between line and f), i.e. the
convex / concave envelope of f at the midpoint: best of chord, tangent at the midpoint, slope 0, a
6-step bisection on the supergradient and the secant through the contact points it brackets (loss
vs. the exact envelope < 2e-4 on random intervals).  On a convex piece this gives tangent-at-midpoint (lower) and
chord (upper), on a concave piece the reverse; mixed pieces get the envelope line.

Intervals that are non-finite, at least 2*pi wide, or have ``max(|l|, |u|) > 1e5`` (where the float
argument reduction and ``a*x`` rounding make lines meaningless) get the constant lines -1 and 1.
All math runs in float64 and the results are cast back to the input dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .base import ElementwiseOperator, Interval, LinearRelaxation, pad_outward

PI = math.pi
TWO_PI = 2 * math.pi
#: beyond this magnitude of x only the constant lines -1 <= f <= 1 are used.
LARGE_INPUT = 1e5
#: bisection steps on the supergradient when choosing default slopes.
SLOPE_SEARCH_STEPS = 6
PAD_ULPS = 16.0


def _exact_range(
    f: Callable[[Tensor], Tensor], peak: float, lower: Tensor, upper: Tensor
) -> tuple[Tensor, Tensor]:
    """Image of ``[lower, upper]`` under ``f(x) = sin(x + pi/2 - peak)`` (finite float64 ends):
    maxima 1 at ``peak + 2k*pi``, minima -1 at ``peak + pi + 2k*pi``, else the end values."""
    k = torch.ceil((lower - peak) / TWO_PI)
    has_max = peak + k * TWO_PI <= upper
    k = torch.ceil((lower - peak - PI) / TWO_PI)
    has_min = peak + PI + k * TWO_PI <= upper
    f_lower, f_upper = f(lower), f(upper)
    one = torch.ones_like(f_lower)
    hi = torch.where(has_max, one, torch.maximum(f_lower, f_upper))
    lo = torch.where(has_min, -one, torch.minimum(f_lower, f_upper))
    return lo, hi


def _critical_points(slope: Tensor, lower: Tensor, upper: Tensor, phase: float) -> tuple[Tensor, Tensor]:
    """For each sign, the first critical point ``x >= lower`` of ``sin(x + phase) - slope*x``, i.e. of
    ``x = +-acos(slope) - phase + 2k*pi`` (slope in [-1, 1]), clipped to ``upper``. Both lie in
    ``[lower, upper]`` in floating point; for width < 2*pi they are the only interior critical points
    (rounding can only drop one lying within ulps of an end, where the end value is as good).
    They carry no gradient of their own (envelope theorem: d/da min_x g = -argmin)."""
    theta = torch.acos(slope.detach())
    start = lower.detach()
    return tuple(
        torch.minimum(start + torch.remainder(base - start, TWO_PI), upper)
        for base in (theta - phase, -theta - phase)
    )


class _Periodic(ElementwiseOperator):
    """``f(x) = sin(x + phase)``; subclasses fix ``phase``, ``peak = pi/2 - phase`` and ``function``."""

    splittable = True
    phase: float = 0.0
    peak: float = PI / 2

    # ---- helpers ----
    @staticmethod
    def _prepare(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """float64 ends with the constant-line cases (non-finite, >= 2*pi wide, huge, empty) masked
        to 0; returns ``l, u, const, M = max(|l|, |u|)``."""
        lo, up = torch.broadcast_tensors(lower.double(), upper.double())
        magnitude = torch.maximum(lo.abs(), up.abs())
        finite = torch.isfinite(lo) & torch.isfinite(up)
        const = ~finite | (up - lo >= TWO_PI) | (magnitude > LARGE_INPUT) | ~(lo <= up)
        zero = torch.zeros_like(lo)
        return (torch.where(const, zero, lo), torch.where(const, zero, up), const,
                torch.where(const, zero, magnitude).detach())

    @staticmethod
    def _clean_slope(slope: Tensor, const: Tensor, dtype: torch.dtype) -> Tensor:
        """Any slope -> a usable one: NaN -> 0, clamp to [-1, 1], 0 on constant-line elements,
        rounded to ``dtype`` (the slope that is returned is the one the intercept is exact for)."""
        slope = torch.nan_to_num(slope.to(dtype), nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1.0, 1.0)
        return torch.where(const, torch.zeros_like(slope), slope)

    def _support(self, slope: Tensor, lower: Tensor, upper: Tensor, f_lower: Tensor, f_upper: Tensor,
                 take_min: bool) -> Tensor:
        """Exact ``min`` (or ``max``) over ``[lower, upper]`` of ``f(x) - slope*x`` (float64): the best
        of the two ends (values ``f_lower``, ``f_upper``) and the two critical points."""
        pick = torch.minimum if take_min else torch.maximum
        best = pick(f_lower - slope * lower, f_upper - slope * upper)
        for point in _critical_points(slope, lower, upper, self.phase):
            best = pick(best, self.function(point) - slope * point)
        return best

    @torch.no_grad()
    def _default_slopes(self, lower: Tensor, upper: Tensor, const: Tensor, magnitude: Tensor,
                        dtype: torch.dtype) -> Tensor:
        """``[2, *shape]`` (lower, upper) slopes maximising (lower) / minimising (upper) the line at the
        midpoint, net of the rounding pad. Works in ``y = x + phase`` with sin; the upper line of sin
        on ``[L, U]`` is minus the lower line of sin on ``[L + pi, U + pi]``."""
        y_lo, y_up = lower + self.phase, upper + self.phase
        y_lo = torch.stack([y_lo, y_lo + PI])
        y_up = torch.stack([y_up, y_up + PI])
        pad_per_slope = PAD_ULPS * torch.finfo(dtype).eps * 2 * magnitude  # pad grows with |a| * M
        best = _envelope_slope_at_mid(y_lo, y_up, pad_per_slope)
        slopes = torch.stack([best[0], -best[1]])
        return torch.where(const, torch.zeros_like(slopes), slopes).to(dtype)

    # ---- operator interface ----
    def interval(self, x: Interval) -> Interval:
        dtype = x.lower.dtype
        lo, up, const, _ = self._prepare(x.lower, x.upper)
        f_lo, f_up = _exact_range(self.function, self.peak, lo, up)
        pad = 4 * torch.finfo(dtype).eps
        one = torch.ones_like(f_lo)
        f_lo = torch.where(const, -one, (f_lo - pad).clamp(-1.0, 1.0))
        f_up = torch.where(const, one, (f_up + pad).clamp(-1.0, 1.0))
        return Interval(f_lo.to(dtype), f_up.to(dtype))

    def relax(self, lower: Tensor, upper: Tensor, params: Tensor | None = None) -> LinearRelaxation:
        """Lines ``a_l x + b_l <= f(x) <= a_u x + b_u`` on ``[lower, upper]``, sound for any ``params``
        (slopes; NaN/out-of-range values are cleaned). Shapes: ``[batch, *shape]`` without params,
        ``[spec, batch, *shape]`` with ``params [2, spec, batch, *shape]``."""
        dtype = lower.dtype
        lo, up, const, magnitude = self._prepare(lower, upper)
        slopes = self._default_slopes(lo, up, const, magnitude, dtype) if params is None else params
        lower_slope = self._clean_slope(slopes[0], const, dtype)
        upper_slope = self._clean_slope(slopes[1], const, dtype)
        f_lo, f_up = self.function(lo), self.function(up)
        lower_b = self._support(lower_slope.double(), lo, up, f_lo, f_up, take_min=True)
        upper_b = self._support(upper_slope.double(), lo, up, f_lo, f_up, take_min=False)
        # rounding pad: |f| <= 1, |a x| <= |a| M, |b| <= 1 + |a| M
        lower_r = pad_outward(
            LinearRelaxation(lower_slope, lower_b.to(dtype), lower_slope, lower_b.to(dtype)),
            (2 + 2 * lower_slope.double().abs() * magnitude).to(dtype), PAD_ULPS)
        upper_r = pad_outward(
            LinearRelaxation(upper_slope, upper_b.to(dtype), upper_slope, upper_b.to(dtype)),
            (2 + 2 * upper_slope.double().abs() * magnitude).to(dtype), PAD_ULPS)
        one = torch.ones((), dtype=dtype, device=lower.device)
        return LinearRelaxation(
            lower_slope, torch.where(const, -one, lower_r.lower_intercept),
            upper_slope, torch.where(const, one, upper_r.upper_intercept),
        )

    def init_params(self, input_bounds, spec):
        b = input_bounds[0]
        lo, up, const, magnitude = self._prepare(b.lower, b.upper)
        slopes = self._default_slopes(lo, up, const, magnitude, b.lower.dtype)  # [2, batch, *shape]
        return slopes.unsqueeze(1).expand(2, spec, *slopes.shape[1:]).clone()

    def project_params(self, params, input_bounds):
        return torch.nan_to_num(params, nan=0.0).clamp(-1.0, 1.0)


def _envelope_slope_at_mid(lower: Tensor, upper: Tensor, pad_per_slope: Tensor) -> Tensor:
    """Slope ``a`` maximising ``V(a) = min_{y in [L, U]} sin(y) - a (y - m) - pad_per_slope |a|``
    (``m`` the midpoint): the lower line of sin that is highest at the midpoint. ``V`` is concave;
    candidates: chord, tangent at m, 0, a bisection on the supergradient ``m - argmin``, and the
    secant through the contact points left and right of m that the bisection ends with."""
    mid = (lower + upper) / 2
    width = upper - lower
    sin_lo, sin_up = torch.sin(lower), torch.sin(upper)
    slope_min, slope_max = _exact_range(torch.cos, 0.0, lower, upper)
    has_width = width > 0
    chord = torch.where(has_width, (sin_up - sin_lo) / torch.where(has_width, width, torch.ones_like(width)),
                        torch.cos(mid))
    chord = torch.minimum(torch.maximum(chord, slope_min), slope_max)

    def value(a: Tensor) -> tuple[Tensor, Tensor]:
        """``V(a)`` and the point where the min is attained."""
        gap_lo, gap_up = sin_lo - a * (lower - mid), sin_up - a * (upper - mid)
        v = torch.minimum(gap_lo, gap_up)
        argmin = torch.where(gap_lo <= gap_up, lower, upper)
        for point in _critical_points(a, lower, upper, 0.0):
            gap = torch.sin(point) - a * (point - mid)
            argmin = torch.where(gap < v, point, argmin)
            v = torch.minimum(gap, v)
        return v - pad_per_slope * a.abs(), argmin

    best_a = chord
    best_v, _ = value(chord)
    for cand in (torch.cos(mid).clamp(-1.0, 1.0), torch.zeros_like(mid)):
        v, _ = value(cand)
        better = v > best_v
        best_a, best_v = torch.where(better, cand, best_a), torch.where(better, v, best_v)
    lo_a, hi_a = slope_min, slope_max
    touch_lo, touch_up = lower, upper  # argmins at lo_a (left of mid) and hi_a (right of mid)
    for _ in range(SLOPE_SEARCH_STEPS):
        a = (lo_a + hi_a) / 2
        v, argmin = value(a)
        better = v > best_v
        best_a, best_v = torch.where(better, a, best_a), torch.where(better, v, best_v)
        go_down = argmin > mid  # supergradient mid - argmin < 0
        hi_a, touch_up = torch.where(go_down, a, hi_a), torch.where(go_down, argmin, touch_up)
        lo_a, touch_lo = torch.where(go_down, lo_a, a), torch.where(go_down, touch_lo, argmin)
    # the optimal line touches sin left and right of mid: the secant through the two contact points
    span = touch_up - touch_lo
    has_span = span > 0
    secant = (torch.sin(touch_up) - torch.sin(touch_lo)) / torch.where(has_span, span, torch.ones_like(span))
    secant = torch.where(has_span, torch.minimum(torch.maximum(secant, slope_min), slope_max), best_a)
    v, _ = value(secant)
    best_a = torch.where(v > best_v, secant, best_a)
    return best_a


class Sin(_Periodic):
    """``sin(x)``; see the module docstring for IBP and the relaxation."""

    kind = "Sin"
    phase = 0.0
    peak = PI / 2

    def function(self, x: Tensor) -> Tensor:
        return torch.sin(x)


class Cos(_Periodic):
    """``cos(x) = sin(x + pi/2)``, evaluated with cos itself (no rounding of the shift)."""

    kind = "Cos"
    phase = PI / 2
    peak = 0.0

    def function(self, x: Tensor) -> Tensor:
        return torch.cos(x)
