import math

import pytest
import torch

from curvebound.lipschitz.gradient_ops import (
    GeluDerivative,
    SigmoidDerivative,
    StepGrad,
    SumToShape,
    TanhDerivative,
    VJPAffine,
)
from curvebound.ops.base import Interval
from curvebound.ops.linear import Conv, MatMulConst, ScaleShift
from curvebound.ops.shape import Concat
from tests.helpers import assert_elementwise_sound, interval_cases
from tests.ops.test_bilinear import random_box, sample_box

F64 = torch.float64
DERIVATIVES = [
    (SigmoidDerivative(), lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x))),
    (TanhDerivative(), lambda x: 1 - torch.tanh(x) ** 2),
    (GeluDerivative(),
     lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
]


@pytest.mark.parametrize("op,reference", DERIVATIVES, ids=lambda v: getattr(v, "kind", ""))
def test_derivative_ops_compute_f_prime(op, reference):
    x = torch.linspace(-30, 30, 2001, dtype=F64)
    torch.testing.assert_close(op.function(x), reference(x), rtol=1e-12, atol=1e-15)
    # h' by finite differences
    h = 1e-6
    fd = (op.exact(x + h) - op.exact(x - h)) / (2 * h)
    torch.testing.assert_close(op.derivative(x), fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("op", [d[0] for d in DERIVATIVES], ids=lambda op: op.kind)
def test_derivative_ops_are_sound(op):
    for seed in range(2):
        lower, upper = interval_cases(seed=seed)
        assert_elementwise_sound(op, lower, upper)
        params = 2 * torch.randn(2, 1, *lower.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
        assert_elementwise_sound(op, lower, upper, params=params)


@pytest.mark.parametrize("op", [d[0] for d in DERIVATIVES], ids=lambda op: op.kind)
def test_derivative_ops_interval_is_tight(op):
    """IBP is the exact image: sampled extremes come within 1e-6 of both ends."""
    lower, upper = interval_cases(seed=3)
    finite = torch.isfinite(lower) & torch.isfinite(upper) & (upper - lower < 50)
    lower, upper = lower[finite], upper[finite]
    t = torch.linspace(0, 1, 20001, dtype=F64)[:, None]
    values = op.function(lower + t * (upper - lower))
    box = op.interval(Interval(lower, upper))
    assert (values.amin(0) - box.lower).max() < 1e-6
    assert (box.upper - values.amax(0)).max() < 1e-6


@pytest.mark.parametrize("slope", [0.0, 0.1, -1.0])
def test_step_grad_backward_is_sound(slope):
    op = StepGrad(slope)
    for seed in range(8):
        g_box, z_box = random_box((12,), 10 * seed), random_box((12,), 10 * seed + 3)
        g = sample_box(g_box, 100, seed)  # [N, 1, 12]
        z = sample_box(z_box, 100, seed + 1)
        N = g.shape[0]
        out = op.forward(g.reshape(N, 12), z.reshape(N, 12))
        A = torch.randn(4, 1, 12, generator=torch.Generator().manual_seed(seed), dtype=F64)
        (coeff_g, coeff_z), bias = op.backward(A, [(12,), (12,)], [g_box, z_box])
        assert coeff_z is None and coeff_g.shape == (4, 1, 12) and torch.isfinite(coeff_g).all()
        assert not torch.isnan(bias).any() and not (bias == math.inf).any()
        lhs = (A[None, :, 0] * out[:, None]).sum(-1)  # [N, spec]
        linear = coeff_g[None, :, 0] * g.reshape(N, 1, 12)
        rhs = linear.sum(-1) + bias[None, :, 0]
        tol = 1e-9 * (1 + lhs.abs() + linear.abs().sum(-1) + bias.abs().nan_to_num(0, 0, 0)[None, :, 0])
        assert (lhs - rhs + tol >= 0).all(), f"(*) violated by {(rhs - lhs).max().item()}"
        box = op.interval(g_box, z_box)
        assert (out >= box.lower - 1e-9 * (1 + out.abs())).all()
        assert (out <= box.upper + 1e-9 * (1 + out.abs())).all()


def test_step_grad_is_exact_on_stable_neurons_and_uses_chords_when_crossing():
    op = StepGrad(0.0)
    g = Interval(torch.tensor([[-1.0, -1.0, -1.0, 2.0]], dtype=F64), torch.tensor([[3.0, 3.0, 3.0, 5.0]], dtype=F64))
    z = Interval(torch.tensor([[0.5, -2.0, -1.0, -1.0]], dtype=F64), torch.tensor([[1.0, -0.1, 1.0, 1.0]], dtype=F64))
    r = op.relax(g, z)
    assert r.lower_slope[0, :2].tolist() == [1.0, 0.0] and r.upper_slope[0, :2].tolist() == [1.0, 0.0]
    # crossing z, crossing g in [-1, 3]: min(0, g) >= chord 0.25 g - 0.75; max(0, g) <= 0.75 g + 0.75
    assert r.lower_slope[0, 2].item() == pytest.approx(0.25) and r.lower_intercept[0, 2].item() == pytest.approx(-0.75)
    assert r.upper_slope[0, 2].item() == pytest.approx(0.75) and r.upper_intercept[0, 2].item() == pytest.approx(0.75)
    # crossing z, positive g: 0 <= out <= g
    assert r.lower_slope[0, 3].item() == 0.0 and r.upper_slope[0, 3].item() == 1.0


def _affine_cases():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, generator=g, dtype=F64)
    yield MatMulConst(w, torch.randn(3, dtype=F64), "right", 1), [(5,)], 0
    yield MatMulConst(torch.randn(4, 5, generator=g, dtype=F64), None, "left", 2), [(5, 2)], 0
    yield ScaleShift(torch.randn(2, 5, generator=g, dtype=F64), torch.ones(5, dtype=F64), out_rank=2), [(5,)], 0
    conv = Conv(torch.randn(2, 1, 3, 3, generator=g, dtype=F64), torch.zeros(2, dtype=F64), [1, 1], [1, 1, 1, 1],
                [1, 1], 1)
    yield conv, [(1, 1, 5, 5)], 0
    yield Concat(0, [None, 2, None], torch.ones(2, 3, dtype=F64)), [(1, 3), (2, 3)], 1
    yield SumToShape((1, 3)), [(4, 3)], 0


@pytest.mark.parametrize("case", list(_affine_cases()), ids=lambda c: type(c[0]).__name__)
def test_vjp_affine_is_the_transpose(case):
    op, shapes, position = case
    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(1, *s, generator=gen, dtype=F64, requires_grad=True) for s in shapes]
    out = op.forward(*xs)
    vjp = VJPAffine(op, shapes, position)
    gs = torch.randn(6, *out.shape[1:], generator=gen, dtype=F64)
    expected = torch.stack([torch.autograd.grad(out, xs[position], g[None], retain_graph=True)[0][0] for g in gs])
    torch.testing.assert_close(vjp.forward(gs), expected)
    # IBP contains every sample; backward is the exact adjoint (A . L^T g = (L A) . g)
    box = Interval(gs.amin(0, keepdim=True), gs.amax(0, keepdim=True))
    iv = vjp.interval(box)
    values = vjp.forward(gs)
    assert (values >= iv.lower - 1e-12).all() and (values <= iv.upper + 1e-12).all()
    A = torch.randn(3, 1, *shapes[position], generator=gen, dtype=F64)
    (coeff,), bias = vjp.backward(A, [tuple(out.shape[1:])], [None])
    lhs = (A[:, 0].reshape(3, 1, -1) * values.reshape(1, 6, -1)).sum(-1)
    rhs = (coeff[:, 0].reshape(3, 1, -1) * gs.reshape(1, 6, -1)).sum(-1) + bias
    torch.testing.assert_close(lhs, rhs)
