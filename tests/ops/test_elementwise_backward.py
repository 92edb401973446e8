"""One CROWN backward step through an elementwise op is sound: for coefficients ``A`` of both signs,
``A . f(x) >= A_x . x + bias`` for every sampled ``x`` of every interval, finite (the fused
``A u + A+ (l - u)`` path), huge, degenerate and infinite (the ``0 * inf``-safe path)."""

from __future__ import annotations

import pytest
import torch

from curvebound.ops.base import Interval
from curvebound.ops.convex import Exp, Softplus, Square
from curvebound.ops.gelu import Gelu
from curvebound.ops.periodic import Sin
from curvebound.ops.relu import Relu
from curvebound.ops.s_shaped import Sigmoid
from tests.helpers import interval_cases, sample_points

OPS = [Relu(), Sigmoid(), Sin(), Exp(), Gelu(), Square(), Softplus()]


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.kind)
def test_backward_step_is_a_lower_bound_on_every_interval(op):
    lower, upper = interval_cases(-1e3 if isinstance(op, Exp) else -float("inf"),
                                  1e2 if isinstance(op, Exp) else float("inf"))
    n = len(lower)
    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, n, 1, generator=g, dtype=torch.float64)  # [spec, batch, 1]: both signs
    A[0] = A[0].abs()
    A[1] = -A[1].abs()
    (coeff,), bias = op.backward(A, [(1,)], [Interval(lower[:, None], upper[:, None])])
    assert not torch.isnan(coeff).any() and not torch.isnan(bias).any()
    x = sample_points(lower, upper)  # [m, n]
    with torch.no_grad():
        fx = op.function(x)
    finite = torch.isfinite(fx).all(0)
    lhs = A[:, None, :, 0] * fx[None]  # [spec, m, n]
    rhs = coeff[:, None, :, 0] * x[None] + bias[:, None, :]
    slack = 1e-9 * (1 + lhs.abs() + (coeff[:, None, :, 0] * x[None]).abs() + bias[:, None, :].abs())
    bad = (lhs < rhs - slack) & finite[None, None, :]
    where = [(float(lower[j]), float(upper[j])) for j in bad.nonzero()[:, 2]][:3]
    assert not bad.any(), f"{op.kind}: violated on {where}"
