"""GELU (erf and tanh forms), SiLU, ELU and SELU: activations that are neither convex nor monotone.

Each function f is described by a small static table: a finite *window* ``[T_L, T_R]`` cut at its
inflection points and kinks into pieces on which f' is monotone (f convex or concave), and two
*tails* outside the window where ``f(x) = c x + d + r(x)`` with a remainder ``r`` bounded by tiny
constants (e.g. GELU: ``|r| < 2e-22`` beyond ``|x| = 10``).

Relaxation ("candidate slope + exact offset"). For any slope ``a`` the best lines of that slope are

    a x + inf_{[l,u]} (f(x) - a x)  <=  f(x)  <=  a x + sup_{[l,u]} (f(x) - a x),

and the inf / sup of the gap ``g(x) = f(x) - a x`` is computed exactly: it is attained at ``l``, ``u``,
a piece boundary, or an interior critical point ``f'(x) = a`` — a minimum only on a convex piece, a
maximum only on a concave one — found by vectorized bisection on that piece (f' is monotone there);
the leftover bracket ``[p, q]`` costs at most ``max|g'(p)|,|g'(q)| * (q - p)``. Tails add the exact
extremes of the affine part ``(c - a) x + d`` plus the remainder bounds. The result is sound for *any*
slope; where no finite line of that slope exists (e.g. an upper line on ``(-inf, +inf)``) the
intercept is ``+-inf`` and the slope is set to 0. ``pad_outward`` covers rounding.

Slopes: the default tries, per side, the chord slope and the tangent slope at the midpoint, and keeps
the line with the larger (lower side) / smaller (upper side) value at the midpoint — i.e. the smaller
integral of the gap over ``[l, u]``. Infinite ends are replaced by a finite surrogate for this choice
only. The optimizable parameters are these two slopes themselves: ``params[0]`` the lower-line
slope, ``params[1]`` the upper-line slope, ``[2, spec, batch, *shape]``; the exact offset makes any
value sound (relax clamps it into ``[min f', max f']`` on ``[l, u]`` and into the range that keeps
the intercept finite for infinite ends). The gradient of the intercept w.r.t. the slope is ``-x*``
(the contact point), which is what alpha-CROWN needs.

All internal work is in float64 with numerically stable forms of f; the returned lines have the
dtype of the bounds (slopes are rounded to that dtype *before* their offsets are computed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ElementwiseOperator, Interval, LinearRelaxation, pad_outward

#: Bisection steps for f'(x) = a on one piece (width <= 120), by output dtype: the bracket left over
#: (width w) costs |g'| * w ~ f'' * w^2 in the offset (1e-15 resp. 1e-8), below the rounding pad.
BISECTION_STEPS = {torch.float64: 32}
BISECTION_STEPS_DEFAULT = 20

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_GELU_K = math.sqrt(2.0 / math.pi)
_TANH_GELU_C = 0.044715


@dataclass(frozen=True)
class Tail:
    """Beyond a window end: ``f(x) = slope * x + offset + r(x)`` with ``rem_lo <= r(x) <= rem_hi``."""

    slope: float
    offset: float
    rem_lo: float
    rem_hi: float

    def limit(self, sign: int) -> float:
        """``lim f(x)`` as ``x -> sign * inf``."""
        if self.slope == 0:
            return self.offset
        return math.copysign(math.inf, self.slope * sign)


def _small_remainder(value: float) -> tuple[float, float]:
    """Remainder bounds ``[min(0, 2v), max(0, 2v)]`` from the (monotone) remainder ``v`` at the window end."""
    return min(0.0, 2.0 * value), max(0.0, 2.0 * value)


class CurveActivation(ElementwiseOperator):
    """Generic engine for a scalar activation given by a piece table (see module doc).

    Subclasses set ``nodes`` (``T_L``, breakpoints, ``T_R``; sorted, finite), ``curvature`` (per piece:
    +1 convex, -1 concave, 0 affine), ``left``/``right`` tails, ``minima`` (interior local minima as
    ``(x, f(x))``; f has no interior maxima), and implement ``function`` (the torch forward),
    ``exact`` (float64, accurate in the tails) and ``derivative`` (float64, finite x inside the
    window; left derivative at kinks).
    """

    splittable = True
    nodes: tuple[float, ...] = ()
    curvature: tuple[int, ...] = ()
    left: Tail
    right: Tail
    minima: tuple[tuple[float, float], ...] = ()

    def exact(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def derivative(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    # ---------------------------------------------------------------- IBP
    def _end_value(self, x: Tensor) -> Tensor:
        """f at a bound, with the limits at +-inf."""
        finite = torch.isfinite(x)
        value = self.function(torch.where(finite, x, torch.zeros_like(x)))
        value = torch.where(x == -math.inf, torch.full_like(value, self.left.limit(-1)), value)
        return torch.where(x == math.inf, torch.full_like(value, self.right.limit(1)), value)

    def interval(self, x: Interval) -> Interval:
        """Exact image ``[min(f(l), f(u), f(x_min) if x_min in [l,u]), max(f(l), f(u))]``, padded by
        ``4 eps (1 + |v|)`` for the rounding of the torch forward."""
        lower, upper = x.lower, x.upper
        f_lower, f_upper = self._end_value(lower), self._end_value(upper)
        low, high = torch.minimum(f_lower, f_upper), torch.maximum(f_lower, f_upper)
        for point, value in self.minima:
            inside = (lower <= point) & (point <= upper)
            low = torch.where(inside, torch.clamp(low, max=value), low)
        eps = torch.finfo(low.dtype).eps
        low = low - 4 * eps * (1 + low.abs())
        high = high + 4 * eps * (1 + high.abs())
        return Interval(low, high)

    # ---------------------------------------------------------------- relaxation
    def _window_clamp(self, x: Tensor) -> Tensor:
        return x.clamp(self.nodes[0], self.nodes[-1])

    def _slope_range(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """``[min f', max f']`` over ``[l, u]`` (f' is monotone per piece: ends and breakpoints suffice;
        beyond the window the tail slopes stand in)."""
        points = [self._window_clamp(lower), self._window_clamp(upper)]
        points += [self._window_clamp(torch.clamp(torch.full_like(lower, n), lower, upper)) for n in self.nodes]
        d = self.derivative(torch.stack(points))
        d_min, d_max = d.amin(0), d.amax(0)
        for beyond, slope in ((lower < self.nodes[0], self.left.slope), (upper > self.nodes[-1], self.right.slope)):
            d_min = torch.where(beyond, d_min.clamp(max=slope), d_min)
            d_max = torch.where(beyond, d_max.clamp(min=slope), d_max)
        return d_min, d_max

    def _feasible_slopes(self, lower: Tensor, upper: Tensor, slope_lo: Tensor, slope_hi: Tensor,
                         dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Clamp raw slopes into ``[min f', max f']`` and into the range with a finite intercept
        (``u = inf``: lower ``<= c_R``, upper ``>= c_R``; ``l = -inf``: lower ``>= c_L``, upper ``<= c_L``),
        then round to ``dtype``. Idempotent."""
        d_min, d_max = self._slope_range(lower, upper)
        cl, cr = self.left.slope, self.right.slope
        inf_l, inf_u = lower == -math.inf, upper == math.inf
        out = []
        for slope, is_lower in ((slope_lo, True), (slope_hi, False)):
            a = torch.nan_to_num(slope.to(torch.float64), nan=0.0)
            a = torch.minimum(torch.maximum(a, d_min), d_max)
            if is_lower:
                a = torch.where(inf_u, a.clamp(max=cr), a)
                a = torch.where(inf_l, a.clamp(min=cl), a)
            else:
                a = torch.where(inf_u, a.clamp(min=cr), a)
                a = torch.where(inf_l, a.clamp(max=cl), a)
            out.append(a.to(dtype).to(torch.float64))
        return out[0], out[1]

    def _offset(self, lower: Tensor, upper: Tensor, slope: Tensor, is_lower: bool, steps: int) -> Tensor:
        """``inf`` (is_lower) / ``sup`` over ``x in [l, u]`` of ``f(x) - slope * x``, float64, rigorous up to
        rounding (may be ``-inf`` / ``+inf``)."""
        lower, upper, slope = torch.broadcast_tensors(lower, upper, slope)
        pick = torch.minimum if is_lower else torch.maximum
        neutral = math.inf if is_lower else -math.inf
        best = torch.full_like(slope, neutral)

        def gap(x: Tensor) -> Tensor:
            return self.exact(x) - slope * x

        # finite ends and the piece boundaries inside [l, u]
        for end in (lower, upper):
            finite = torch.isfinite(end)
            value = gap(torch.where(finite, end, torch.zeros_like(end)))
            best = pick(best, torch.where(finite, value, torch.full_like(value, neutral)))
        for node in self.nodes:
            best = pick(best, gap(torch.clamp(torch.full_like(lower, node), lower, upper)))

        # interior critical points f'(x) = slope: minima on convex pieces, maxima on concave ones
        want = 1 if is_lower else -1
        pieces = [i for i, c in enumerate(self.curvature) if c == want]
        if pieces:
            starts = torch.stack([torch.clamp(torch.full_like(lower, self.nodes[i]), lower, upper) for i in pieces])
            ends = torch.stack([torch.clamp(torch.full_like(lower, self.nodes[i + 1]), lower, upper) for i in pieces])
            p, q = self._bracket_roots(starts.detach(), ends.detach(), slope.detach(), want, steps)
            with torch.no_grad():
                steep = torch.maximum((self.derivative(p) - slope).abs(), (self.derivative(q) - slope).abs())
                margin = steep * (q - p)
            inner = pick(gap(p), gap(q)) + (-margin if is_lower else margin)
            best = pick(best, inner.amin(0) if is_lower else inner.amax(0))

        # tails: f(x) - a x = (c - a) x + d + r(x), affine part extreme at the tail segment's ends
        for tail, beyond, far, near in (
            (self.left, lower < self.nodes[0], lower, torch.clamp(upper, max=self.nodes[0])),
            (self.right, upper > self.nodes[-1], upper, torch.clamp(lower, min=self.nodes[-1])),
        ):
            k = tail.slope - slope
            far_finite = torch.isfinite(far)
            far_value = k * torch.where(far_finite, far, torch.zeros_like(far))
            sign = torch.sign(k.detach()) * (1.0 if tail is self.right else -1.0)  # sign of k * far at +-inf
            far_value = torch.where(far_finite, far_value, sign * math.inf)
            far_value = torch.where(~far_finite & (k == 0), torch.zeros_like(far_value), far_value)
            near_value = k * torch.where(beyond, near, torch.zeros_like(near))
            rem = tail.rem_lo if is_lower else tail.rem_hi
            value = pick(far_value, near_value) + tail.offset + rem
            best = pick(best, torch.where(beyond, value, torch.full_like(value, neutral)))
        return best

    def _bracket_roots(self, starts: Tensor, ends: Tensor, slope: Tensor, direction: int,
                       steps: int) -> tuple[Tensor, Tensor]:
        """Brackets ``[p, q]`` (``[pieces, ...]``) of the roots of ``f'(x) = slope`` on pieces where
        ``direction * f'`` increases (a bracket collapses onto an end where there is no root).

        Usually at most one piece per element holds a root (the f' ranges of same-curvature pieces are
        disjoint for these functions), so one bisection runs on that piece only; otherwise every piece
        is bisected."""
        with torch.no_grad():
            below_start = direction * (self.derivative(starts) - slope) < 0
            above_end = direction * (self.derivative(ends) - slope) > 0
            has_root = below_start & above_end
            if starts.shape[0] > 1 and bool((has_root.sum(0) <= 1).all()):
                index = has_root.to(torch.uint8).argmax(0, keepdim=True)  # piece with the root (or 0)
                p, q = self._bisect(starts.gather(0, index), ends.gather(0, index), slope, direction, steps)
                p = torch.where(has_root, p, starts)  # no root: bracket collapses onto a piece end
                q = torch.where(has_root, q, starts)
                return p, q
            return self._bisect(starts, ends, slope, direction, steps)

    def _bisect(self, starts: Tensor, ends: Tensor, slope: Tensor, direction: int,
                steps: int) -> tuple[Tensor, Tensor]:
        p, q = starts.clone(), ends.clone()
        for _ in range(steps):
            mid = (p + q) / 2
            go_right = direction * (self.derivative(mid) - slope) < 0
            p = torch.where(go_right, mid, p)
            q = torch.where(go_right, q, mid)
        return p, q

    def _surrogate(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """Finite stand-in for ``[l, u]`` used only to pick default slopes: an infinite end becomes the
        finite end -+ ``2 max(1, |end|)``; ``(-inf, inf)`` becomes ``[-1, 1]``."""
        inf_l, inf_u = torch.isinf(lower), torch.isinf(upper)
        lo = torch.where(inf_l, torch.zeros_like(lower), lower)
        hi = torch.where(inf_u, torch.zeros_like(upper), upper)
        lo_s = torch.where(inf_l, hi - 2 * hi.abs().clamp(min=1), lo)
        hi_s = torch.where(inf_u, lo + 2 * lo.abs().clamp(min=1), hi)
        both = inf_l & inf_u
        lo_s = torch.where(both, -torch.ones_like(lo_s), lo_s)
        hi_s = torch.where(both, torch.ones_like(hi_s), hi_s)
        return lo_s, hi_s

    def _default_lines(self, lower: Tensor, upper: Tensor, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """Per side, the better of the chord slope and the midpoint tangent slope (after clamping),
        judged by the line's value at the (surrogate) midpoint. Returns ``slope_lo, b_lo, slope_hi, b_hi``."""
        lo_s, hi_s = self._surrogate(lower, upper)
        mid = (lo_s + hi_s) / 2
        width = hi_s - lo_s
        tangent = self.derivative(self._window_clamp(mid))
        safe_width = torch.where(width > 0, width, torch.ones_like(width))
        chord = torch.where(width > 0, (self.exact(hi_s) - self.exact(lo_s)) / safe_width, tangent)
        raw = torch.stack([chord, tangent])  # [2 candidates, batch, *shape]
        slope_lo, slope_hi = self._feasible_slopes(lower, upper, raw, raw, dtype)
        steps = BISECTION_STEPS.get(dtype, BISECTION_STEPS_DEFAULT)
        chosen: list[Tensor] = []
        for slope, is_lower in ((slope_lo, True), (slope_hi, False)):
            intercept = self._offset(lower, upper, slope, is_lower, steps)
            at_mid = slope * mid + intercept
            take_chord = at_mid[0] > at_mid[1] if is_lower else at_mid[0] < at_mid[1]
            chosen += [torch.where(take_chord, slope[0], slope[1]), torch.where(take_chord, intercept[0], intercept[1])]
        return tuple(chosen)

    def _finish(self, lower: Tensor, upper: Tensor, slope_lo: Tensor, b_lo: Tensor, slope_hi: Tensor,
                b_hi: Tensor, dtype: torch.dtype) -> LinearRelaxation:
        """Infinite intercepts get slope 0; cast to ``dtype`` and pad for rounding."""
        slope_lo = torch.where(torch.isfinite(b_lo), slope_lo, torch.zeros_like(slope_lo))
        slope_hi = torch.where(torch.isfinite(b_hi), slope_hi, torch.zeros_like(slope_hi))
        # magnitude of everything rounded: |f|, |a x|, |b| at the finite points that were evaluated
        lo_f = torch.where(torch.isfinite(lower), lower, torch.clamp(upper, max=self.nodes[0]))
        hi_f = torch.where(torch.isfinite(upper), upper, torch.clamp(lower, min=self.nodes[-1]))
        lo_f, hi_f = torch.nan_to_num(lo_f), torch.nan_to_num(hi_f)
        reach = torch.maximum(lo_f.abs(), hi_f.abs())
        magnitude = (
            self.exact(lo_f).abs() + self.exact(hi_f).abs()
            + (slope_lo.abs() + slope_hi.abs()) * reach
            + torch.nan_to_num(b_lo, neginf=0.0).abs() + torch.nan_to_num(b_hi, posinf=0.0).abs()
        )
        r = LinearRelaxation(slope_lo.to(dtype), b_lo.to(dtype), slope_hi.to(dtype), b_hi.to(dtype))
        return pad_outward(r, magnitude.to(dtype))

    def relax(self, lower: Tensor, upper: Tensor, params: Tensor | None = None) -> LinearRelaxation:
        """Lines ``a_l x + b_l <= f(x) <= a_u x + b_u`` on ``[l, u]`` (see module doc); ``params`` are the
        two slopes ``[2, spec, batch, *shape]``, any values (clamped here)."""
        dtype = lower.dtype
        lo64, hi64 = lower.to(torch.float64), upper.to(torch.float64)
        if params is None:
            return self._finish(lo64, hi64, *self._default_lines(lo64, hi64, dtype), dtype)
        slope_lo, slope_hi = self._feasible_slopes(lo64, hi64, params[0], params[1], dtype)
        steps = BISECTION_STEPS.get(dtype, BISECTION_STEPS_DEFAULT)
        b_lo = self._offset(lo64, hi64, slope_lo, True, steps)
        b_hi = self._offset(lo64, hi64, slope_hi, False, steps)
        return self._finish(lo64, hi64, slope_lo, b_lo, slope_hi, b_hi, dtype)

    def init_params(self, input_bounds, spec):
        """The default slopes ``[2, spec, batch, *shape]``: ``relax`` with them reproduces the default lines."""
        b = input_bounds[0]
        with torch.no_grad():
            slope_lo, _, slope_hi, _ = self._default_lines(
                b.lower.to(torch.float64), b.upper.to(torch.float64), b.lower.dtype
            )
        slopes = torch.stack([slope_lo, slope_hi]).to(b.lower.dtype)
        return slopes.unsqueeze(1).expand(2, spec, *slopes.shape[1:]).clone()

    def project_params(self, params, input_bounds):
        """Clamp the slopes into their useful, finite-intercept range (see ``_feasible_slopes``)."""
        b = input_bounds[0]
        slope_lo, slope_hi = self._feasible_slopes(
            b.lower.to(torch.float64), b.upper.to(torch.float64), params[0], params[1], params.dtype
        )
        return torch.stack([slope_lo, slope_hi]).to(params.dtype)


class Gelu(CurveActivation):
    """``x Phi(x)`` (``approximate="none"``) or ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
    (``"tanh"``). Convex on ``[-s, s]`` (s = sqrt 2, resp. 1.41850400879...), concave outside; one
    minimum at about -0.7518 (-0.7525); ``f -> 0`` at ``-inf``, ``f - x -> 0`` at ``+inf``."""

    kind = "Gelu"
    _WINDOW = 10.0

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"Gelu approximate={approximate!r}: expected 'none' or 'tanh'")
        self.approximate = approximate
        t = self._WINDOW
        if approximate == "none":
            inflection = math.sqrt(2.0)
            self.minima = ((-0.7517915246935644574579, -0.1699712074799036616939),)
            rem = t * 0.5 * math.erfc(t * _INV_SQRT2)  # t Phi(-t)
        else:
            inflection = 1.418504008790828355548
            self.minima = ((-0.7524614220710162584880, -0.1700407505712540506391),)
            z = _TANH_GELU_K * (t + _TANH_GELU_C * t**3)
            rem = t / (1.0 + math.exp(2.0 * z))  # t sigmoid(-2 z(t))
        self.nodes = (-t, -inflection, inflection, t)
        self.curvature = (-1, 1, -1)
        self.left = Tail(0.0, 0.0, *_small_remainder(-rem))
        self.right = Tail(1.0, 0.0, *_small_remainder(-rem))

    def function(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)

    def exact(self, x: Tensor) -> Tensor:
        if self.approximate == "none":
            # x Phi(x) with Phi from erfc on the side where it does not cancel
            neg = x * 0.5 * torch.special.erfc(-x * _INV_SQRT2)
            pos = x - x * 0.5 * torch.special.erfc(x * _INV_SQRT2)
            return torch.where(x < 0, neg, pos)
        z = _TANH_GELU_K * (x + _TANH_GELU_C * x**3)
        return x * torch.sigmoid(2 * z)

    def derivative(self, x: Tensor) -> Tensor:
        if self.approximate == "none":
            return 0.5 * torch.special.erfc(-x * _INV_SQRT2) + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
        z = _TANH_GELU_K * (x + _TANH_GELU_C * x**3)
        s = torch.sigmoid(2 * z)
        return s + x * 2 * s * (1 - s) * _TANH_GELU_K * (1 + 3 * _TANH_GELU_C * x * x)

    def __repr__(self) -> str:
        return f"Gelu(approximate={self.approximate!r})"


class Silu(CurveActivation):
    """``x sigmoid(x)``: convex on ``[-s, s]`` (s = 2.39935728..., root of ``x tanh(x/2) = 2``), concave
    outside; one minimum at about -1.2785; ``f -> 0`` at ``-inf``, ``f - x -> 0`` at ``+inf``."""

    kind = "Silu"
    _WINDOW = 60.0

    def __init__(self):
        t = self._WINDOW
        inflection = 2.399357280515467667833
        rem = t / (1.0 + math.exp(t))  # t sigmoid(-t)
        self.nodes = (-t, -inflection, inflection, t)
        self.curvature = (-1, 1, -1)
        self.left = Tail(0.0, 0.0, *_small_remainder(-rem))
        self.right = Tail(1.0, 0.0, *_small_remainder(-rem))
        self.minima = ((-1.278464542761073795109, -0.2784645427610737951094),)

    def function(self, x: Tensor) -> Tensor:
        return F.silu(x)

    def exact(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(x)
        return s + x * s * (1 - s)

    def __repr__(self) -> str:
        return "Silu()"


class Elu(CurveActivation):
    """``scale * (x if x > 0 else alpha (e^x - 1))`` with ``scale = 1``. Kink at 0 (convex when
    ``alpha <= 1``); the left piece is convex for ``alpha > 0``; ``f -> -scale alpha`` at ``-inf``.
    ``alpha`` (and SELU's ``gamma``) are rounded to float32, as ONNX attributes are, so the function
    is the same in every dtype."""

    kind = "Elu"
    _WINDOW = 60.0

    def __init__(self, alpha: float = 1.0, scale: float = 1.0):
        alpha32 = float(torch.tensor(alpha, dtype=torch.float32))
        scale32 = float(torch.tensor(scale, dtype=torch.float32))
        if not (math.isfinite(alpha32) and math.isfinite(scale32) and scale32 > 0):
            raise ValueError(f"{self.kind}: need finite alpha and a positive finite scale, got {alpha}, {scale}")
        self.alpha, self.scale = alpha32, scale32
        negative_scale = scale32 * alpha32
        self.nodes = (-self._WINDOW, 0.0)
        self.curvature = (int(math.copysign(1, negative_scale)) if negative_scale != 0 else 0,)
        self.left = Tail(0.0, -negative_scale, *_small_remainder(negative_scale * math.exp(-self._WINDOW)))
        self.right = Tail(scale32, 0.0, 0.0, 0.0)
        self.minima = ((0.0, 0.0),) if negative_scale < 0 else ()

    def function(self, x: Tensor) -> Tensor:
        return torch.ops.aten.elu(x, self.alpha, self.scale, 1.0)

    def exact(self, x: Tensor) -> Tensor:
        return self.scale * torch.where(x > 0, x, self.alpha * torch.expm1(x.clamp(max=0)))

    def derivative(self, x: Tensor) -> Tensor:
        return self.scale * torch.where(x > 0, torch.ones_like(x), self.alpha * torch.exp(x.clamp(max=0)))

    def branch_point(self, lower: Tensor, upper: Tensor) -> Tensor:
        """The kink 0 when it lies strictly inside, else the midpoint."""
        kink_inside = (lower < 0) & (upper > 0)
        return torch.where(kink_inside, torch.zeros_like(lower), super().branch_point(lower, upper))

    def __repr__(self) -> str:
        return f"Elu(alpha={self.alpha})"


class Selu(Elu):
    """``gamma * (x if x > 0 else alpha (e^x - 1))``: kink at 0 (left slope ``gamma alpha`` ~ 1.758 >
    right slope ``gamma``, so the kink is concave), left piece convex."""

    kind = "Selu"

    def __init__(self, alpha: float = 1.67326319217681884765625, gamma: float = 1.05070102214889526123046875):
        super().__init__(alpha, gamma)
        self.gamma = self.scale

    def __repr__(self) -> str:
        return f"Selu(alpha={self.alpha}, gamma={self.gamma})"
