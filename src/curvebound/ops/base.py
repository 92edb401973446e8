"""The one interface every operator implements, and the two generic kinds built on it.

Tensor layout conventions (used everywhere in curvebound):

* A node value is ``[batch, *node_shape]``: ``node_shape`` is the ONNX shape of the tensor (with any
  dynamic dimension fixed to 1) and ``batch`` is curvebound's own leading batch dimension (input
  boxes, restarts of an attack, branch-and-bound domains).
* A linear-bound coefficient tensor is ``A: [spec, batch, *node_shape]``. The bound algorithms only
  ever compute *lower* bounds: "A . v + bias is a lower bound of the spec" — an upper bound of
  ``c . v`` is minus the lower bound of ``-c . v``, so upper bounds are obtained by stacking ``-C``
  under ``C`` as extra spec rows.

An operator's ``backward`` is the only place where its relaxation meets the algorithms: given ``A``
on its output, it returns ``A_i`` on each input and a bias such that, for every input value inside
the given input intervals,

    A . op(x_1, ..., x_k)  >=  sum_i A_i . x_i + bias.                              (*)

Every implementation must keep (*) true for every feasible input and every value of its
optimizable parameters (``params``), in floating point; that invariant is what the soundness tests
sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Interval:
    """Elementwise bounds ``lower <= x <= upper``; both ``[batch, *shape]``."""

    lower: Tensor
    upper: Tensor

    @property
    def mid(self) -> Tensor:
        return (self.lower + self.upper) / 2

    @property
    def radius(self) -> Tensor:
        return (self.upper - self.lower) / 2

    def intersect(self, other: Interval) -> Interval:
        return Interval(torch.maximum(self.lower, other.lower), torch.minimum(self.upper, other.upper))

    def __getitem__(self, index) -> Interval:
        return Interval(self.lower[index], self.upper[index])


@dataclass(frozen=True)
class LinearRelaxation:
    """Two lines per element: ``lower_slope*x + lower_intercept <= f(x) <= upper_slope*x + upper_intercept``.

    Tensors broadcast against ``[spec, batch, *shape]`` (optimizable relaxations may differ per spec
    row, plain ones are ``[batch, *shape]``).
    """

    lower_slope: Tensor
    lower_intercept: Tensor
    upper_slope: Tensor
    upper_intercept: Tensor


class UnsupportedInput(ValueError):
    """Raised by an operator whose input interval leaves the domain it can bound soundly
    (e.g. Log or Reciprocal of an interval containing 0). The verifier turns it into ``unknown``."""


class Operator:
    """Base class. Subclasses set ``kind`` (the ONNX-style op name used in messages and tables)."""

    kind: str = "Operator"
    #: indices of inputs whose intervals ``backward`` needs (nonlinear ops); affine ops need none.
    requires_input_bounds: tuple[int, ...] = ()
    #: True when branch-and-bound may split this op's input interval.
    splittable: bool = False

    def forward(self, *inputs: Tensor) -> Tensor:
        """Concrete value, batched: each input ``[batch, *in_shape]`` -> ``[batch, *out_shape]``."""
        raise NotImplementedError

    def interval(self, *inputs: Interval) -> Interval:
        """Sound elementwise output interval (IBP)."""
        raise NotImplementedError

    def backward(
        self,
        A: Tensor,
        input_shapes: Sequence[tuple[int, ...]],
        input_bounds: Sequence[Interval | None],
        params: Tensor | None = None,
    ) -> tuple[list[Tensor | None], Tensor]:
        """Linear-bound step (*) above. ``A: [spec, batch, *out_shape]``; returns one
        ``[spec, batch, *in_shape]`` coefficient per input (``None`` if it contributes nothing) and a
        bias ``[spec, batch]``."""
        raise NotImplementedError

    def refinement_mask(self, interval: Interval) -> Tensor | None:
        """Which elements of this op's input would get a tighter relaxation from tighter bounds
        (``[batch, *shape]`` bool), or None for all. CROWN computes intermediate bounds only there
        (e.g. ReLU: only unstable neurons ``l < 0 < u``)."""
        return None

    # ---- optimizable relaxations (alpha-CROWN); ops without parameters keep the defaults ----
    def init_params(self, input_bounds: Sequence[Interval], spec: int) -> Tensor | None:
        """Initial parameters ``[k, spec, batch, *shape]`` (the default relaxation), or None."""
        return None

    def project_params(self, params: Tensor, input_bounds: Sequence[Interval]) -> Tensor:
        """Map parameters back into their feasible set after an optimizer step."""
        return params

    # ---- branch-and-bound ----
    def branch_point(self, lower: Tensor, upper: Tensor) -> Tensor:
        """Where to split the (first) input interval ``[lower, upper]``; must lie inside it.
        Default: the midpoint (a finite point for infinite ends)."""
        mid = (lower + upper) / 2
        mid = torch.where(torch.isfinite(mid), mid, torch.zeros_like(mid))
        return torch.minimum(torch.maximum(mid, lower), upper)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def sum_node_dims(t: Tensor, leading: int = 2) -> Tensor:
    """Sum all dims after the first ``leading`` ones: ``[spec, batch, *shape] -> [spec, batch]``."""
    return t.reshape(*t.shape[:leading], -1).sum(-1)


def contract_node_dims(A: Tensor, t: Tensor) -> Tensor:
    """``sum_node_dims(A * t)`` for ``A: [spec, batch, *shape]`` and ``t`` broadcastable to it,
    without the ``A * t`` temporary when ``t`` is ``[batch, *shape]`` (one batched mat-vec)."""
    spec, batch = A.shape[:2]
    if tuple(t.shape) == tuple(A.shape[1:]):
        return torch.einsum("sbn,bn->sb", A.reshape(spec, batch, -1), t.reshape(batch, -1))
    return sum_node_dims(A * t)


def reduce_to_shape(t: Tensor, shape: Sequence[int], leading: int = 2) -> Tensor:
    """Sum ``t: [*lead, *full]`` over the dims numpy broadcasting added to ``shape`` ->
    ``[*lead, *shape]`` (the adjoint of broadcasting ``shape`` to ``full``)."""
    extra = t.dim() - leading - len(shape)
    if extra > 0:
        t = t.sum(dim=tuple(range(leading, leading + extra)))
    dims = tuple(leading + i for i, n in enumerate(shape) if n == 1 and t.shape[leading + i] != 1)
    if dims:
        t = t.sum(dim=dims, keepdim=True)
    return t.reshape(*t.shape[:leading], *shape)


def safe_product(A: Tensor, t: Tensor) -> Tensor:
    """``A * t`` with ``0 * inf = 0``: a zero coefficient never picks up an infinite intercept."""
    prod = A * t
    return torch.where(A == 0, torch.zeros((), dtype=prod.dtype, device=prod.device), prod)


class AffineOperator(Operator):
    """An operator affine in all its (perturbed) inputs: ``f(x) = sum_i L_i x_i + f(0)``.

    ``backward`` is exact and generic: the coefficients are the vector-Jacobian product
    ``A L_i`` (computed by autograd on a zero input) and the bias is ``A . f(0)``. Subclasses only
    write ``forward`` and, for IBP, either set ``monotone = True`` (f is nondecreasing in every input,
    e.g. reshapes, slices, adding a constant) or implement ``abs_linear`` (``|L| r``).
    """

    monotone: bool = False
    #: every output element is an affine function of at most one input element (reshapes, slices,
    #: gathers, broadcasts, elementwise scale/shift): IBP through the op is exact, so CROWN bounds
    #: of its output follow from CROWN bounds of its input (``bounds.crown`` uses this)
    pointwise: bool = False

    def abs_linear(self, *radii: Tensor) -> Tensor:
        """``sum_i |L_i| r_i`` for radii ``r_i >= 0``."""
        raise NotImplementedError

    def interval(self, *inputs: Interval) -> Interval:
        if self.monotone:
            return Interval(self.forward(*(b.lower for b in inputs)), self.forward(*(b.upper for b in inputs)))
        mid = self.forward(*(b.mid for b in inputs))
        rad = self.abs_linear(*(b.radius for b in inputs))
        return Interval(mid - rad, mid + rad)

    def backward(self, A, input_shapes, input_bounds, params=None):
        spec, batch = A.shape[:2]
        flat = A.reshape(spec * batch, *A.shape[2:])
        zeros = [
            torch.zeros((spec * batch, *shape), dtype=A.dtype, device=A.device, requires_grad=True)
            for shape in input_shapes
        ]
        with torch.enable_grad():
            out = self.forward(*zeros)
            grads = torch.autograd.grad(
                out, zeros, grad_outputs=flat, create_graph=A.requires_grad, allow_unused=True
            )
        bias = sum_node_dims((flat * out.detach()).reshape(spec, batch, -1))
        coeffs = [None if g is None else g.reshape(spec, batch, *shape) for g, shape in zip(grads, input_shapes)]
        return coeffs, bias


class ElementwiseOperator(Operator):
    """A unary elementwise nonlinearity ``y = f(x)``, defined by its math:

    * ``function``: f itself (torch);
    * ``interval``: image of ``[lower, upper]`` (must contain f([l, u]));
    * ``relax(lower, upper, params)``: lines valid on ``[lower, upper]`` (see LinearRelaxation).

    ``backward`` is generic: lower pass uses the lower line where ``A >= 0`` and the upper line where
    ``A < 0``.
    """

    requires_input_bounds = (0,)

    def function(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.function(x)

    def relax(self, lower: Tensor, upper: Tensor, params: Tensor | None = None) -> LinearRelaxation:
        raise NotImplementedError

    def backward(self, A, input_shapes, input_bounds, params=None):
        bounds = input_bounds[0]
        assert bounds is not None, f"{self.kind} needs its input bounds"
        r = self.relax(bounds.lower, bounds.upper, params)
        finite = all(bool(torch.isfinite(t).all()) for t in (r.lower_slope, r.upper_slope, r.lower_intercept,
                                                               r.upper_intercept))
        # each element takes exactly one line (A+ l + A- u): a fused ``A u + A+ (l - u)`` would cancel
        # catastrophically when the lines' slopes differ by orders of magnitude (Exp on [-20, 100])
        pos, neg = A.clamp(min=0), A.clamp(max=0)
        if finite:  # the intercepts are contracted without an ``A * t`` temporary
            coeff = torch.addcmul(pos * r.lower_slope, neg, r.upper_slope)
            bias = contract_node_dims(pos, r.lower_intercept) + contract_node_dims(neg, r.upper_intercept)
            return [coeff], bias
        # 0 * inf = 0: a zero coefficient never picks up an infinite line
        coeff = safe_product(pos, r.lower_slope) + safe_product(neg, r.upper_slope)
        bias = sum_node_dims(safe_product(pos, r.lower_intercept) + safe_product(neg, r.upper_intercept))
        return [coeff], bias


def pad_outward(r: LinearRelaxation, magnitude: Tensor, ulps: float = 16.0) -> LinearRelaxation:
    """Move both lines outward by ``ulps * eps(dtype) * (1 + magnitude)``.

    Lines built from tangents and chords are exact in real arithmetic but their floating-point
    construction can put them a few ulps on the wrong side of f; ``magnitude`` should bound
    ``|f|`` and ``|slope * x|`` on the interval (e.g. ``|f(l)| + |f(u)| + |slope| * max(|l|, |u|)``).
    """
    eps = torch.finfo(r.lower_intercept.dtype).eps
    pad = ulps * eps * (1 + magnitude.abs())
    return LinearRelaxation(r.lower_slope, r.lower_intercept - pad, r.upper_slope, r.upper_intercept + pad)
