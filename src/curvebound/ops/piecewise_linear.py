"""A univariate piecewise-linear function given as a sum of ReLUs ("lookup table" activations).

    f(x) = c + sum_k w_k relu(a_k x + b_k)                                      (elementwise)

ONNX files of power-flow proxies (ml4acopf) approximate Sigmoid, Sin and Cos this way: every scalar
``x`` is broadcast against ``K`` thresholds, passed through ``K`` ReLUs and summed with weights. Bounded
ReLU by ReLU, the ``K`` relaxations ignore that they all see the same ``x`` (each is loose on its own,
and their errors add up); ``graph/fuse_lookup.py`` rewrites that pattern into this op.

Math, on an input interval ``[l, u]``:

* f is continuous and linear between the knots ``t_k = -b_k / a_k``, so for any slope ``s`` the
  extremes of ``f(x) - s x`` on ``[l, u]`` are attained at ``l``, ``u`` or a knot inside. With
  ``P = {l, u} U {t_k in (l, u)}``:

      s x + min_{p in P} (f(p) - s p)  <=  f(x)  <=  s x + max_{p in P} (f(p) - s p),

  valid for *every* ``s`` (the optimizable parameters, one lower and one upper slope per element;
  default: the chord slope). Values are padded outward by a few ulps of the magnitudes involved.
* interval: ``[min_P f, max_P f]`` (padded the same way).
* an unbounded side gives the vacuous line (slope 0, intercept -inf / +inf).
* branching point: the knot inside ``(l, u)`` nearest the midpoint (both children are then closer to
  linear), else the midpoint. Only elements with a knot strictly inside are worth splitting or a
  tighter bound (``refinement_mask``): f is exactly linear elsewhere.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ElementwiseOperator, Interval, LinearRelaxation
from .convex import _round_outward as _outward


class PiecewiseLinear(ElementwiseOperator):
    kind = "PiecewiseLinear"
    splittable = True

    def __init__(self, scale: Tensor, shift: Tensor, weight: Tensor, bias: float = 0.0):
        self.scale, self.shift, self.weight = scale.double(), shift.double(), weight.double()
        self.bias = float(bias)
        # the largest |slope| f can have: bound for the slope parameters
        self.max_slope = float((self.weight * self.scale).abs().sum())
        # |each term| <= |x| sum|w a| + sum|w b| + |c|: the scale of f's rounding error (cancellation)
        self.term_bound = (self.max_slope, float((self.weight * self.shift).abs().sum()) + abs(self.bias))
        self.pad_ulps = len(self.weight) + 16.0

    def _knots(self, device) -> Tensor:
        """``t_k = -b_k / a_k`` in float64 (NaN where ``a_k = 0``), from the constants as stored (a
        ``Graph.to`` may have rounded them: the knots must be those of the function evaluated)."""
        a, b = self.scale.to(device=device, dtype=torch.float64), self.shift.to(device=device, dtype=torch.float64)
        return torch.where(a != 0, -b / torch.where(a != 0, a, 1.0), torch.nan)

    # ---- the function ------------------------------------------------------------------------
    def _at(self, x: Tensor) -> Tensor:
        """f at ``x`` (any shape, float64), by the same formula as ``function``."""
        s, b, w = (t.to(device=x.device, dtype=torch.float64) for t in (self.scale, self.shift, self.weight))
        return torch.relu(x[..., None] * s + b) @ w + self.bias

    def function(self, x: Tensor) -> Tensor:
        s, b, w = (t.to(device=x.device, dtype=x.dtype) for t in (self.scale, self.shift, self.weight))
        return torch.relu(x[..., None] * s + b) @ w + self.bias

    def _points(self, lower: Tensor, upper: Tensor) -> Tensor:
        """``[..., K + 2]``: ``l``, ``u`` and every knot, knots outside ``[l, u]`` replaced by ``l``."""
        knots = self._knots(lower.device)
        lo, hi = lower.double()[..., None], upper.double()[..., None]
        inside = (knots > lo) & (knots < hi)
        return torch.cat([lo, hi, torch.where(inside, knots, lo)], -1)

    def _pad(self, points: Tensor, magnitude: Tensor) -> Tensor:
        """Outward padding of values computed at ``points [..., P]``: ``(K + 16)`` ulps of the largest
        magnitude involved (``magnitude``, and the terms of the sum, which may cancel)."""
        terms = points.abs().amax(-1) * self.term_bound[0] + self.term_bound[1]
        return self.pad_ulps * torch.finfo(torch.float64).eps * (1 + magnitude + terms)

    # ---- interval ---------------------------------------------------------------------------
    def interval(self, x: Interval) -> Interval:
        finite = torch.isfinite(x.lower) & torch.isfinite(x.upper)
        lower = torch.where(finite, x.lower, 0.0)
        upper = torch.where(finite, x.upper, 0.0)
        points = self._points(lower, upper)
        values = self._at(points)
        pad = self._pad(points, values.abs().amax(-1))
        low = torch.where(finite, values.amin(-1) - pad, -torch.inf)
        high = torch.where(finite, values.amax(-1) + pad, torch.inf)
        return Interval(_outward(low, x.lower.dtype, -1), _outward(high, x.lower.dtype, 1))

    # ---- linear relaxation ------------------------------------------------------------------
    def chord_slope(self, lower: Tensor, upper: Tensor) -> Tensor:
        width = (upper - lower).double()
        ok = torch.isfinite(width) & (width > 0)
        safe_l = torch.where(ok, lower.double(), 0.0)
        safe_u = torch.where(ok, upper.double(), 1.0)
        slope = (self._at(safe_u) - self._at(safe_l)) / (safe_u - safe_l)
        return torch.where(ok, slope, 0.0)

    def relax(self, lower: Tensor, upper: Tensor, params: Tensor | None = None) -> LinearRelaxation:
        dtype = lower.dtype
        finite = torch.isfinite(lower) & torch.isfinite(upper)
        lo = torch.where(finite, lower, 0.0)
        hi = torch.where(finite, upper, 0.0)
        if params is None:
            slope_l = slope_u = self.chord_slope(lo, hi).to(dtype)
        else:
            slope_l, slope_u = params[0], params[1]  # [spec, batch, *shape]
        points = self._points(lo, hi)  # [batch, *shape, P]
        values = self._at(points)
        lines = []
        for slope, upper_side in ((slope_l, False), (slope_u, True)):
            s64 = slope.double()
            offsets = values - s64[..., None] * points  # broadcasts over spec
            magnitude = values.abs().amax(-1) + (s64.abs() * points.abs().amax(-1))
            pad = self._pad(points, magnitude)
            if upper_side:
                intercept = _outward(offsets.amax(-1) + pad, dtype, 1)
                intercept = torch.where(finite, intercept, torch.inf)
            else:
                intercept = _outward(offsets.amin(-1) - pad, dtype, -1)
                intercept = torch.where(finite, intercept, -torch.inf)
            slope = torch.where(finite, slope, torch.zeros_like(slope))
            lines.append((slope, intercept))
        (ls, li), (us, ui) = lines
        ls, li, us, ui = torch.broadcast_tensors(ls, li, us, ui)
        return LinearRelaxation(ls, li, us, ui)

    def init_params(self, input_bounds, spec):
        b = input_bounds[0]
        slope = self.chord_slope(b.lower, b.upper).to(b.lower.dtype)
        return torch.stack([slope, slope]).unsqueeze(1).expand(2, spec, *slope.shape).clone()

    def project_params(self, params, input_bounds):
        return params.clamp(-self.max_slope, self.max_slope)

    def refinement_mask(self, interval: Interval) -> Tensor:
        """Elements with a knot strictly inside: elsewhere f is linear and its lines exact."""
        knots = self._knots(interval.lower.device)
        lo, hi = interval.lower[..., None].double(), interval.upper[..., None].double()
        return ((knots > lo) & (knots < hi)).any(-1)

    def branch_point(self, lower: Tensor, upper: Tensor) -> Tensor:
        mid = super().branch_point(lower, upper)
        knots = self._knots(lower.device).to(lower.dtype)
        inside = (knots > lower[..., None]) & (knots < upper[..., None])
        distance = torch.where(inside, (knots - mid[..., None]).abs(), torch.inf)
        nearest = knots[distance.argmin(-1)]
        return torch.where(inside.any(-1), nearest, mid)

    def __repr__(self) -> str:
        return f"PiecewiseLinear(knots={len(self.weight)})"

