"""ReLU and LeakyReLU: ``f(x) = max(x, a x)`` with ``0 <= a < 1`` (ReLU: a = 0); PRelu (any slope tensor) below.

Relaxation on ``[l, u]``:
* ``u <= 0``: exact line ``a x``; ``l >= 0``: exact line ``x``.
* ``l < 0 < u``: upper = chord through ``(l, a l)`` and ``(u, u)``; lower = ``s x`` with any slope
  ``s in [a, 1]`` (optimizable; default "adaptive": 1 if ``u > -l`` else ``a``).
  Infinite ends use the chord's limit: ``l = -inf`` -> upper ``max(u, 0)`` constant when ``a = 0``;
  ``u = +inf`` -> slope 1, intercept ``-(1 - a) l``.
Branch point: 0.

PRelu: ``f(x) = x`` for ``x >= 0``, ``a x`` otherwise, with a tensor slope ``a`` (any real, broadcast
against the node shape). ``f = max(x, a x)`` where ``a <= 1`` (convex) and ``f = min(x, a x)`` where
``a >= 1`` (concave). On a crossing interval ``l < 0 < u`` the chord ``c(x)`` through ``(l, a l)`` and
``(u, u)`` and the lines ``s x`` with ``s`` between ``a`` and 1 swap roles:

* ``a < 1``: ``s x <= f(x) <= c(x)``  (``s x <= x`` for ``x >= 0`` iff ``s <= 1``; ``s x <= a x`` for
  ``x < 0`` iff ``s >= a``; the chord lies above a convex function);
* ``a > 1``: ``c(x) <= f(x) <= s x``  (the same inequalities reversed; concave below its chord);
* ``a = 1``: ``f(x) = x`` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ElementwiseOperator, Interval, LinearRelaxation, safe_product


class LeakyRelu(ElementwiseOperator):
    kind = "LeakyRelu"
    splittable = True

    def __init__(self, negative_slope: float = 0.01):
        if not 0.0 <= negative_slope < 1.0:
            raise ValueError(f"LeakyRelu slope {negative_slope} outside [0, 1): not supported")
        self.negative_slope = float(negative_slope)

    def function(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, x, self.negative_slope * x)

    def interval(self, x: Interval) -> Interval:
        return Interval(self.function(x.lower), self.function(x.upper))

    def _default_lower_slope(self, lower: Tensor, upper: Tensor) -> Tensor:
        one = torch.ones_like(lower)
        return torch.where(upper > -lower, one, one * self.negative_slope)

    def relax(self, lower, upper, params=None):
        a = self.negative_slope
        crossing = (lower < 0) & (upper > 0)
        active = lower >= 0
        if bool(torch.isfinite(lower).all()) and bool(torch.isfinite(upper).all()):
            return self._relax_finite(lower, upper, params, crossing, active)
        # chord through (l, a*l) and (u, u), computed so that infinite ends take the limit
        width = upper - lower
        finite = torch.isfinite(lower) & torch.isfinite(upper)
        safe_width = torch.where(crossing & finite, width, torch.ones_like(width))
        chord_slope = (upper - a * lower) / safe_width
        chord_intercept = upper - chord_slope * upper
        inf_upper = torch.isinf(upper)
        inf_lower = torch.isinf(lower)
        chord_slope = torch.where(inf_upper, torch.ones_like(upper), chord_slope)
        chord_intercept = torch.where(inf_upper, -(1 - a) * lower, chord_intercept)
        # l = -inf, u finite: the only valid lines have slope a; intercept covers the max at u
        chord_slope = torch.where(inf_lower & ~inf_upper, torch.full_like(upper, a), chord_slope)
        chord_intercept = torch.where(inf_lower & ~inf_upper, (1 - a) * upper.clamp(min=0), chord_intercept)
        both_inf = inf_lower & inf_upper
        chord_intercept = torch.where(both_inf, torch.full_like(upper, float("inf")), chord_intercept)
        chord_slope = torch.where(both_inf, torch.full_like(upper, a), chord_slope)

        if params is None:
            lower_slope = self._default_lower_slope(lower, upper)
        else:
            lower_slope = params[0].clamp(a, 1.0)
        # a lower slope of 1 is invalid when l = -inf (x < max(x, a x) but unbounded below is fine:
        # s x <= max(x, a x) holds for all x iff a <= s <= 1 — always valid, no special case).
        exact_slope = torch.where(active, torch.ones_like(lower), torch.full_like(lower, a))
        zero = torch.zeros_like(lower)
        lower_slope = torch.where(crossing, lower_slope, exact_slope)
        upper_slope = torch.where(crossing, chord_slope, exact_slope)
        upper_intercept = torch.where(crossing, chord_intercept, zero)
        return LinearRelaxation(lower_slope, torch.zeros_like(lower_slope), upper_slope, upper_intercept)

    def _relax_finite(self, lower, upper, params, crossing, active) -> LinearRelaxation:
        """Fast path for finite bounds: the chord through (l, a l) and (u, u) on crossing elements."""
        a = self.negative_slope
        width = torch.where(crossing, upper - lower, torch.ones_like(upper))
        exact_slope = torch.where(active, torch.ones_like(lower), torch.full_like(lower, a))
        chord_slope = torch.where(crossing, (upper - a * lower) / width, exact_slope)
        upper_intercept = torch.where(crossing, upper - chord_slope * upper, torch.zeros_like(upper))
        if params is None:
            lower_slope = self._default_lower_slope(lower, upper)
        else:
            lower_slope = params[0].clamp(a, 1.0)
        lower_slope = torch.where(crossing, lower_slope, exact_slope)
        return LinearRelaxation(lower_slope, torch.zeros_like(lower_slope), chord_slope, upper_intercept)

    def init_params(self, input_bounds, spec):
        b = input_bounds[0]
        slope = self._default_lower_slope(b.lower, b.upper)
        return slope.unsqueeze(0).unsqueeze(0).expand(1, spec, *slope.shape).clone()

    def project_params(self, params, input_bounds):
        return params.clamp(self.negative_slope, 1.0)

    def refinement_mask(self, interval: Interval) -> Tensor:
        return (interval.lower < 0) & (interval.upper > 0)

    def branch_point(self, lower: Tensor, upper: Tensor) -> Tensor:
        return torch.zeros_like(lower)

    def __repr__(self) -> str:
        return f"LeakyRelu({self.negative_slope})"


class Relu(LeakyRelu):
    kind = "Relu"

    def __init__(self):
        super().__init__(0.0)

    def function(self, x: Tensor) -> Tensor:
        return torch.relu(x)

    def __repr__(self) -> str:
        return "Relu()"


class PRelu(ElementwiseOperator):
    """ONNX ``PRelu(x, slope)``: ``f(x) = x`` for ``x >= 0``, ``slope * x`` otherwise, with a constant
    ``slope`` tensor of any sign and size (ONNX shape, broadcast against ``[batch, *node_shape]``
    from the right, e.g. ``[C, 1, 1]`` for ``[N, C, H, W]``). Relaxation: module doc.

    Params ``[1, spec, batch, *shape]``: the slope ``s`` of the line ``s x`` (lower line where
    ``slope < 1``, upper line where ``slope > 1``), clamped into ``[min(slope, 1), max(slope, 1)]``;
    default ``1`` if ``u > -l`` else ``slope`` (the one of the two that minimizes the area between
    the line and ``f`` on ``[l, u]``, in both the convex and the concave case).
    A uniform slope in ``[0, 1)`` is imported as ``LeakyRelu`` instead (same function)."""

    kind = "PRelu"
    splittable = True

    def __init__(self, slope: Tensor):
        self.slope = slope if torch.is_tensor(slope) else torch.as_tensor(slope, dtype=torch.float64)

    def _slope_like(self, t: Tensor) -> Tensor:
        """The slope broadcast to ``t: [batch, *shape]`` (numpy rules, aligned on the right)."""
        return self.slope.to(dtype=t.dtype, device=t.device).expand_as(t)

    def function(self, x: Tensor) -> Tensor:
        slope = self.slope.to(dtype=x.dtype, device=x.device)
        return torch.where(x >= 0, x, safe_product(slope, x))  # 0 * -inf = 0 for a zero slope

    def interval(self, x: Interval) -> Interval:
        """f is linear on each side of 0, so its extremes on ``[l, u]`` are at ``l``, ``u`` or 0."""
        zero = torch.zeros_like(x.lower)
        kink = torch.minimum(torch.maximum(zero, x.lower), x.upper)
        values = torch.stack(torch.broadcast_tensors(self.function(x.lower), self.function(x.upper), kink))
        return Interval(values.amin(0), values.amax(0))

    def _line_bounds(self, slope: Tensor) -> tuple[Tensor, Tensor]:
        return torch.minimum(slope, torch.ones_like(slope)), torch.maximum(slope, torch.ones_like(slope))

    def _default_line_slope(self, lower: Tensor, upper: Tensor, slope: Tensor) -> Tensor:
        return torch.where(upper > -lower, torch.ones_like(slope), slope)

    def relax(self, lower, upper, params=None):
        a = self._slope_like(lower)
        one, zero = torch.ones_like(lower), torch.zeros_like(lower)
        crossing = (lower < 0) & (upper > 0) & (a != 1)
        convex = a < 1
        exact_slope = torch.where(lower >= 0, one, a)

        # chord through (l, a l) and (u, u), with its limits at infinite ends
        lo_fin, up_fin = torch.isfinite(lower), torch.isfinite(upper)
        lf, uf = torch.where(lo_fin, lower, zero), torch.where(up_fin, upper, zero)
        both = crossing & lo_fin & up_fin
        width = torch.where(both, uf - lf, one)
        chord_slope = torch.where(both, (uf - a * lf) / width, a)
        chord_intercept = uf - chord_slope * uf
        chord_slope = torch.where(~up_fin & lo_fin, one, chord_slope)  # u = +inf: the line x - (1 - a) l
        chord_intercept = torch.where(~up_fin & lo_fin, -(1 - a) * lf, chord_intercept)
        chord_intercept = torch.where(~lo_fin & up_fin, (1 - a) * uf, chord_intercept)  # l = -inf: a x + (1 - a) u
        no_chord = ~lo_fin & ~up_fin  # no finite line: a x +- inf
        inf = torch.full_like(lower, float("inf"))
        chord_intercept = torch.where(no_chord, torch.where(convex, inf, -inf), chord_intercept)
        # the chord is exact in real arithmetic: move it outward by a few ulps of its magnitude
        pad = 8 * torch.finfo(lower.dtype).eps * (1 + a.abs()) * (lf.abs() + uf.abs())
        chord_intercept = torch.where(convex, chord_intercept + pad, chord_intercept - pad)

        low_s, high_s = self._line_bounds(a)
        if params is None:
            line_slope = self._default_line_slope(lower, upper, a)
        else:
            line_slope = torch.minimum(torch.maximum(params[0], low_s), high_s)
        lower_slope = torch.where(crossing, torch.where(convex, line_slope, chord_slope), exact_slope)
        upper_slope = torch.where(crossing, torch.where(convex, chord_slope, line_slope), exact_slope)
        lower_intercept = torch.where(crossing & ~convex, chord_intercept, zero)
        upper_intercept = torch.where(crossing & convex, chord_intercept, zero)
        return LinearRelaxation(lower_slope, lower_intercept, upper_slope, upper_intercept)

    def init_params(self, input_bounds, spec):
        b = input_bounds[0]
        a = self._slope_like(b.lower)
        slope = self._default_line_slope(b.lower, b.upper, a).expand_as(b.lower)
        return slope.unsqueeze(0).unsqueeze(0).expand(1, spec, *slope.shape).clone()

    def project_params(self, params, input_bounds):
        low_s, high_s = self._line_bounds(self._slope_like(input_bounds[0].lower))
        return torch.minimum(torch.maximum(params, low_s), high_s)

    def refinement_mask(self, interval: Interval) -> Tensor:
        a = self._slope_like(interval.lower)
        return (interval.lower < 0) & (interval.upper > 0) & (a != 1)

    def branch_point(self, lower: Tensor, upper: Tensor) -> Tensor:
        return torch.zeros_like(lower)

    def __repr__(self) -> str:
        return f"PRelu(slope={tuple(self.slope.shape)})"
