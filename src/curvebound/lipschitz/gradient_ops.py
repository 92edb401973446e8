"""Operators that only the derivative (backward) graph needs, with the same interface as ``ops/``.

* ``VJPAffine(op, input_shapes, position)``: ``g -> L_i^T g``, the vector-Jacobian product of an
  affine operator ``op(x_1, .., x_k) = sum_i L_i x_i + op(0)`` w.r.t. its input ``i``. Linear in ``g``,
  computed by autograd on ``op.forward`` at zero (exactly how ``AffineOperator.backward`` computes
  ``A L_i``). IBP: ``L_i^T mid(g) +- |L_i|^T rad(g)``, where ``|L_i|^T r`` is the VJP of
  ``op.abs_linear`` (``= sum_i |L_i| r_i``, linear in the radii) or, for monotone ops (``L_i >= 0``),
  of ``op.forward`` itself. Its ``backward`` is the generic exact one of ``AffineOperator``
  (``A -> L_i A``, bias 0), obtained by double backward.
* ``ConstantValue(c)``: ``x -> c`` (a constant gradient made into a node; ``L = 0``).
* ``SumToShape(shape)``: the adjoint of numpy broadcasting (sums the broadcast dims away).
* ``StepGrad(a)``: ``(g, z) -> g * (1[z > 0] + a 1[z <= 0])``, the gradient step of ReLU (``a = 0``),
  LeakyReLU (``a`` its slope) and Abs (``a = -1``). Relaxation (Clarke generalized Jacobian, design e):
  ``z > 0`` on the box: exactly ``g``; ``z <= 0``: exactly ``a g``; otherwise the value lies in
  ``{g, a g}``, between the concave ``m(g) = min(g, a g)`` and the convex ``M(g) = max(g, a g)``
  (``a <= 1``), so the chords of ``m`` (below ``m``) and ``M`` (above ``M``) over ``[g_l, g_u]`` are
  valid lower / upper lines in ``g`` alone (coefficient 0 on ``z``). They are the tightest lines of
  this form, so there are no optimizable parameters.
* ``SigmoidDerivative``, ``TanhDerivative``, ``GeluDerivative``: ``f'`` of an activation as an
  elementwise operator, relaxed by the generic "candidate slope + exact offset" engine of
  ``ops/gelu.py`` (``CurveActivation``) from a piece table on which ``f''`` is monotone (``f'``
  convex or concave), with tails where ``f'`` is within a tiny remainder of a constant. IBP is the
  exact image from the (known) extrema of ``f'``.

Each satisfies the backward invariant (*) of ``ops/base.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..ops.base import (
    AffineOperator,
    Interval,
    LinearRelaxation,
    Operator,
    pad_outward,
    reduce_to_shape,
    safe_product,
    sum_node_dims,
)
from ..ops.gelu import CurveActivation, Tail

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------- affine helpers
class VJPAffine(AffineOperator):
    """``g [batch, *out_shape] -> L_i^T g [batch, *input_shapes[position]]`` for an affine ``op``."""

    kind = "VJP"

    def __init__(self, op: AffineOperator, input_shapes: Sequence[tuple[int, ...]], position: int):
        self.op = op
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.position = int(position)
        self.monotone = bool(getattr(op, "monotone", False))

    def _vjp(self, function, g: Tensor) -> Tensor:
        batch = g.shape[0]
        zeros = [torch.zeros((batch, *s), dtype=g.dtype, device=g.device, requires_grad=True)
                 for s in self.input_shapes]
        with torch.enable_grad():
            out = function(*zeros)
            if not out.requires_grad:
                grad = None
            else:
                grad = torch.autograd.grad(out, zeros[self.position], grad_outputs=g.reshape(out.shape),
                                           create_graph=g.requires_grad, allow_unused=True)[0]
        return torch.zeros_like(zeros[self.position]).detach() if grad is None else grad

    def forward(self, g: Tensor) -> Tensor:
        return self._vjp(self.op.forward, g)

    def interval(self, g: Interval) -> Interval:
        mid = self.forward(g.mid)
        if self.monotone:
            rad = self.forward(g.radius)
        else:
            rad = self._vjp(self.op.abs_linear, g.radius)
        return Interval(mid - rad, mid + rad)

    def __repr__(self) -> str:
        return f"VJPAffine({self.op!r}, input={self.position})"


class ConstantValue(AffineOperator):
    """``x -> c`` broadcast over the batch (``c [*shape]``): a constant gradient as a graph node."""

    kind = "Constant"
    monotone = True

    def __init__(self, value: Tensor):
        self.value = value

    def forward(self, x: Tensor) -> Tensor:
        c = self.value.to(dtype=x.dtype, device=x.device)
        return c.unsqueeze(0).expand(x.shape[0], *c.shape)

    def interval(self, x: Interval) -> Interval:
        c = self.value.to(dtype=x.lower.dtype, device=x.lower.device)
        c = c.unsqueeze(0).expand(x.lower.shape[0], *c.shape)
        return Interval(c, c)

    def backward(self, A, input_shapes, input_bounds, params=None):
        return [None], sum_node_dims(A * self.value.to(A.dtype))

    def __repr__(self) -> str:
        return f"ConstantValue({tuple(self.value.shape)})"


class SumToShape(AffineOperator):
    """Sum a broadcast value ``[batch, *full]`` back to ``[batch, *shape]`` (adjoint of broadcasting)."""

    kind = "SumToShape"
    monotone = True

    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: Tensor) -> Tensor:
        return reduce_to_shape(x, self.shape, leading=1)

    def __repr__(self) -> str:
        return f"SumToShape({self.shape})"


# ---------------------------------------------------------------- ReLU-family gradient step
class StepGrad(Operator):
    """``(g, z) -> g * s(z)`` with ``s(z) = 1`` for ``z > 0`` and ``a`` for ``z <= 0`` (``a <= 1``); see the
    module doc for the relaxation. ``g`` and ``z`` have the same node shape."""

    kind = "StepGrad"
    requires_input_bounds = (0, 1)

    def __init__(self, negative_slope: float = 0.0):
        if not negative_slope <= 1.0:
            raise ValueError(f"StepGrad needs a <= 1, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def forward(self, g: Tensor, z: Tensor) -> Tensor:
        return torch.where(z > 0, g, self.negative_slope * g)

    def _scaled(self, t: Tensor) -> Tensor:
        """``a * t`` with ``0 * inf = 0``."""
        return safe_product(torch.full_like(t, self.negative_slope), t)

    def _value_range(self, gl: Tensor, gu: Tensor) -> tuple[Tensor, Tensor]:
        """Range of ``{g, a g : g in [gl, gu]}``."""
        agl, agu = self._scaled(gl), self._scaled(gu)
        return torch.minimum(gl, torch.minimum(agl, agu)), torch.maximum(gu, torch.maximum(agl, agu))

    def interval(self, g: Interval, z: Interval) -> Interval:
        gl, gu = g.lower, g.upper
        agl, agu = self._scaled(gl), self._scaled(gu)
        lo_cross, hi_cross = self._value_range(gl, gu)
        active, inactive = z.lower > 0, z.upper <= 0
        lower = torch.where(active, gl, torch.where(inactive, torch.minimum(agl, agu), lo_cross))
        upper = torch.where(active, gu, torch.where(inactive, torch.maximum(agl, agu), hi_cross))
        return Interval(lower, upper)

    def relax(self, g: Interval, z: Interval) -> LinearRelaxation:
        """Lines in ``g``: ``ls g + li <= g s(z) <= us g + ui`` for every ``g in [gl, gu]``, ``z in [zl, zu]``."""
        a = self.negative_slope
        gl, gu = g.lower, g.upper
        one, zero = torch.ones_like(gl), torch.zeros_like(gl)
        active, inactive = z.lower > 0, z.upper <= 0
        crossing = ~active & ~inactive
        width = gu - gl
        chordable = crossing & (gl < 0) & (gu > 0) & torch.isfinite(width) & (width > 0)
        safe_w = torch.where(chordable, width, one)
        gl0 = torch.where(chordable, gl, zero)
        gu0 = torch.where(chordable, gu, zero)
        # chord of m(g) = min(g, a g) through (gl, gl), (gu, a gu); of M(g) = max(g, a g) through (gl, a gl), (gu, gu)
        m_slope = (a * gu0 - gl0) / safe_w
        m_int = gl0 - m_slope * gl0
        big_slope = (gu0 - a * gl0) / safe_w
        big_int = a * gl0 - big_slope * gl0
        # g one-signed while z crosses: m and M are single lines
        nonneg, nonpos = crossing & (gl >= 0), crossing & (gu <= 0) & ~(gl >= 0)
        lo_s = torch.where(active, one, torch.where(inactive, a * one, torch.where(nonneg, a * one, one)))
        up_s = torch.where(active, one, torch.where(inactive, a * one, torch.where(nonneg, one, a * one)))
        lo_i, up_i = zero, zero
        lo_s = torch.where(chordable, m_slope, lo_s)
        up_s = torch.where(chordable, big_slope, up_s)
        lo_i = torch.where(chordable, m_int, lo_i)
        up_i = torch.where(chordable, big_int, up_i)
        # crossing, g crossing 0 but no finite chord (infinite end or zero width): the constant range
        fallback = crossing & ~nonneg & ~nonpos & ~chordable
        lo_c, hi_c = self._value_range(gl, gu)
        lo_s, up_s = torch.where(fallback, zero, lo_s), torch.where(fallback, zero, up_s)
        lo_i, up_i = torch.where(fallback, lo_c, lo_i), torch.where(fallback, hi_c, up_i)
        r = LinearRelaxation(lo_s, lo_i, up_s, up_i)
        magnitude = torch.where(chordable, gl0.abs() + gu0.abs(), zero)
        padded = pad_outward(r, magnitude)
        return LinearRelaxation(lo_s, torch.where(chordable, padded.lower_intercept, lo_i),
                                up_s, torch.where(chordable, padded.upper_intercept, up_i))

    def backward(self, A, input_shapes, input_bounds, params=None):
        g, z = input_bounds
        assert g is not None and z is not None, "StepGrad needs the bounds of both inputs"
        r = self.relax(g, z)
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        coeff = safe_product(pos, r.lower_slope) + safe_product(neg, r.upper_slope)
        bias = sum_node_dims(safe_product(pos, r.lower_intercept) + safe_product(neg, r.upper_intercept))
        return [coeff, None], bias

    def refinement_mask(self, interval: Interval) -> Tensor:
        """Tighter bounds matter only where the (g or z) interval contains 0 in its interior or at its
        lower end (``z`` crossing decides the case, ``g`` crossing the chords)."""
        return (interval.lower <= 0) & (interval.upper > 0)

    def __repr__(self) -> str:
        return f"StepGrad({self.negative_slope})"


# ---------------------------------------------------------------- derivatives of smooth activations
class SmoothDerivative(CurveActivation):
    """``h = f'`` of an activation, relaxed by ``CurveActivation`` (``derivative`` here is ``h' = f''``).
    Subclasses also list ``extrema`` (every interior local extremum ``(x, h(x))``); IBP is the exact
    image of ``[l, u]``: the end values (limits at +-inf) and the extrema inside, padded by ``4 eps``."""

    splittable = False
    extrema: tuple[tuple[float, float], ...] = ()

    def interval(self, x: Interval) -> Interval:
        lower, upper = x.lower, x.upper
        f_lower, f_upper = self._end_value(lower), self._end_value(upper)
        low, high = torch.minimum(f_lower, f_upper), torch.maximum(f_lower, f_upper)
        for point, value in self.extrema:
            inside = (lower <= point) & (point <= upper)
            low = torch.where(inside, torch.clamp(low, max=value), low)
            high = torch.where(inside, torch.clamp(high, min=value), high)
        eps = torch.finfo(low.dtype).eps
        return Interval(low - 4 * eps * (1 + low.abs()), high + 4 * eps * (1 + high.abs()))

    def function(self, x: Tensor) -> Tensor:
        return self.exact(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _sigmoid_prime(x: Tensor) -> Tensor:
    e = torch.exp(-x.abs())
    return e / (1 + e) ** 2


class SigmoidDerivative(SmoothDerivative):
    """``h = sigmoid' = s (1 - s)``: concave on ``[-c, c]`` with ``c = ln(2 + sqrt 3) = 1.3169578969``
    (zeros of ``1 - 6 s + 6 s^2``), convex outside; maximum 1/4 at 0; ``0 < h(x) <= h(40) < 5e-18`` beyond
    ``|x| = 40``."""

    kind = "SigmoidDerivative"
    _WINDOW = 40.0

    def __init__(self):
        t, c = self._WINDOW, math.log(2.0 + math.sqrt(3.0))
        tail = 2 * math.exp(-t)
        self.nodes = (-t, -c, c, t)
        self.curvature = (1, -1, 1)
        self.left = Tail(0.0, 0.0, 0.0, tail)
        self.right = Tail(0.0, 0.0, 0.0, tail)
        self.extrema = ((0.0, 0.25),)

    def exact(self, x: Tensor) -> Tensor:
        return _sigmoid_prime(x)

    def derivative(self, x: Tensor) -> Tensor:
        return -_sigmoid_prime(x) * torch.tanh(x / 2)


class TanhDerivative(SmoothDerivative):
    """``h = tanh' = 1 - tanh^2 = sech^2``: concave on ``[-c, c]`` with ``c = atanh(1/sqrt 3) =
    0.6584789485`` (zeros of ``1 - 3 tanh^2``), convex outside; maximum 1 at 0; ``h < 4 e^-40`` beyond 20."""

    kind = "TanhDerivative"
    _WINDOW = 20.0

    def __init__(self):
        t, c = self._WINDOW, math.atanh(1.0 / math.sqrt(3.0))
        tail = 8 * math.exp(-2 * t)
        self.nodes = (-t, -c, c, t)
        self.curvature = (1, -1, 1)
        self.left = Tail(0.0, 0.0, 0.0, tail)
        self.right = Tail(0.0, 0.0, 0.0, tail)
        self.extrema = ((0.0, 1.0),)

    def exact(self, x: Tensor) -> Tensor:
        return 4 * _sigmoid_prime(2 * x)

    def derivative(self, x: Tensor) -> Tensor:
        return -8 * _sigmoid_prime(2 * x) * torch.tanh(x)


class GeluDerivative(SmoothDerivative):
    """``h = gelu' = Phi(x) + x phi(x)`` (erf form); ``h' = phi(x)(2 - x^2)``, ``h'' = x phi(x)(x^2 - 4)``:
    pieces ``[-T, -2, 0, 2, T]`` concave, convex, concave, convex; minimum at ``-sqrt 2``, maximum at
    ``sqrt 2``; beyond ``T = 10``: ``h(-T) <= h < 0`` (left) and ``1 < h <= h(T)`` (right)."""

    kind = "GeluDerivative"
    _WINDOW = 10.0

    def __init__(self):
        t = self._WINDOW
        phi_t = math.exp(-0.5 * t * t) * _INV_SQRT_2PI
        tail_phi = 0.5 * math.erfc(t * _INV_SQRT2)  # Phi(-t)
        left_value = tail_phi - t * phi_t  # h(-t) < 0
        right_excess = t * phi_t - tail_phi  # h(t) - 1 > 0
        self.nodes = (-t, -2.0, 0.0, 2.0, t)
        self.curvature = (-1, 1, -1, 1)
        self.left = Tail(0.0, 0.0, 2 * left_value, 0.0)
        self.right = Tail(0.0, 1.0, 0.0, 2 * right_excess)
        s = math.sqrt(2.0)
        phi_s = math.exp(-1.0) * _INV_SQRT_2PI
        self.extrema = ((-s, 0.5 * math.erfc(s * _INV_SQRT2) - s * phi_s),
                        (s, 1.0 - 0.5 * math.erfc(s * _INV_SQRT2) + s * phi_s))

    def exact(self, x: Tensor) -> Tensor:
        density = x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
        neg = 0.5 * torch.special.erfc(-x * _INV_SQRT2)
        pos = 1.0 - 0.5 * torch.special.erfc(x * _INV_SQRT2)
        return torch.where(x < 0, neg, pos) + density

    def derivative(self, x: Tensor) -> Tensor:
        return torch.exp(-0.5 * x * x) * _INV_SQRT_2PI * (2 - x * x)
