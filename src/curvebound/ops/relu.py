"""ReLU and LeakyReLU: ``f(x) = max(x, a x)`` with negative slope ``0 <= a < 1`` (ReLU: a = 0).

Relaxation on ``[l, u]``:
* ``u <= 0``: exact line ``a x``; ``l >= 0``: exact line ``x``.
* ``l < 0 < u``: upper = chord through ``(l, a l)`` and ``(u, u)``; lower = ``s x`` with any slope
  ``s in [a, 1]`` (optimizable; default "adaptive": 1 if ``u > -l`` else ``a``).
  Infinite ends use the chord's limit: ``l = -inf`` -> upper ``max(u, 0)`` constant when ``a = 0``;
  ``u = +inf`` -> slope 1, intercept ``-(1 - a) l``.
Branch point: 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ElementwiseOperator, Interval, LinearRelaxation


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
