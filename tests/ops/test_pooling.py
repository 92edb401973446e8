"""MaxPool / ReduceMax (ops/pooling.py), AveragePool / GlobalAveragePool (ops/linear.py) and PRelu
(ops/relu.py): forward against torch, IBP containment and the backward invariant (*)
``A . op(x) >= A_x . x + bias`` sampled at random points and window corners of the input box."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from curvebound.ops.base import Interval
from curvebound.ops.linear import AveragePool, GlobalAveragePool
from curvebound.ops.pooling import MaxPool, ReduceMax, window_max_relaxation
from curvebound.ops.relu import PRelu
from tests.helpers import assert_elementwise_sound, interval_cases

INF = math.inf
F64 = torch.float64


def random_box(shape, seed, infinite=False) -> Interval:
    """``[1, *shape]`` box mixing overlapping intervals (the non-exact windows), narrow and
    zero-width ones, shifted ones (one input dominating its window), wide ones and, optionally,
    infinite ends."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    a, b = torch.randn(n, generator=g, dtype=F64), torch.randn(n, generator=g, dtype=F64)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    cases = [
        (lo, hi), (lo, hi), (lo, hi),  # overlapping: most windows are not exact
        (a, a + 1e-7), (a, a),  # narrow, zero width
        (lo + 6, hi + 6),  # dominates most windows it is in
        (lo * 50, hi * 50),  # wide
        (lo - 6, hi - 6),  # dominated
    ]
    if infinite:
        cases += [(torch.full_like(a, -INF), hi), (lo, torch.full_like(a, INF))]
    assert all(bool((c[0] <= c[1]).all()) for c in cases)
    kinds = torch.randint(0, len(cases), (n,), generator=g)
    lower = torch.stack([c[0] for c in cases])[kinds, torch.arange(n)]
    upper = torch.stack([c[1] for c in cases])[kinds, torch.arange(n)]
    return Interval(lower.reshape(1, *shape), upper.reshape(1, *shape))


def sample_box(box: Interval, n: int, seed: int) -> torch.Tensor:
    """``[N, *shape]`` points: uniform, random corners, all-lower, all-upper, and "window corners":
    one random element at its upper end, the rest at their lower ends (and the reverse).
    Infinite ends are replaced by points 1e3 beyond the finite end (or +-1e3)."""
    g = torch.Generator().manual_seed(seed)
    lower, upper = box.lower[0], box.upper[0]
    far = 1e3
    lo = torch.where(torch.isinf(lower), torch.where(torch.isinf(upper), -far, upper - far), lower)
    hi = torch.where(torch.isinf(upper), torch.where(torch.isinf(lower), far, lower + far), upper)
    t = torch.rand(n, *lo.shape, generator=g, dtype=F64)
    corner = (torch.rand(n, *lo.shape, generator=g) < 0.5).to(F64)
    one_up = torch.zeros(n, lo.numel(), dtype=F64)
    one_up[torch.arange(n), torch.randint(0, lo.numel(), (n,), generator=g)] = 1.0
    one_up = one_up.reshape(n, *lo.shape)
    pts = [lo + t * (hi - lo), lo + corner * (hi - lo), lo[None], hi[None],
           lo + one_up * (hi - lo), hi - one_up * (hi - lo)]
    return torch.cat(pts)


def check_backward_sound(op, box: Interval, spec: int = 4, n: int = 200, seed: int = 0):
    """Sampled (*) for random ``A`` of mixed signs (with exact zeros), and IBP containment."""
    g = torch.Generator().manual_seed(seed)
    in_shape = tuple(box.lower.shape[1:])
    x = sample_box(box, n, seed + 1)  # [N, *in_shape]
    N = x.shape[0]
    y = op.forward(x)
    out_shape = tuple(y.shape[1:])
    A = torch.randn(spec, 1, *out_shape, generator=g, dtype=F64)
    A = A * (torch.rand(A.shape, generator=g) > 0.2)
    (coeff,), bias = op.backward(A, [in_shape], [box])
    assert coeff.shape == (spec, 1, *in_shape) and bias.shape == (spec, 1)
    assert torch.isfinite(coeff).all() and not torch.isnan(bias).any() and not (bias == INF).any()

    lhs = (A[None, :, 0] * y[:, None]).reshape(N, spec, -1)  # [N, spec, out]
    terms = (coeff[None, :, 0] * x[:, None]).reshape(N, spec, -1)  # [N, spec, in]
    rhs = terms.sum(-1) + bias[None, :, 0]
    scale = lhs.abs().sum(-1) + terms.abs().sum(-1) + bias.abs().nan_to_num(0, 0, 0)[None, :, 0]
    gap = lhs.sum(-1) - rhs + 1e-9 * (1 + scale)
    assert (gap >= 0).all(), f"{op!r}: (*) violated by {-gap.min().item()}"

    ibp = op.interval(box)
    assert (y >= ibp.lower - 1e-9 * (1 + y.abs())).all(), f"{op!r}: interval lower"
    assert (y <= ibp.upper + 1e-9 * (1 + y.abs())).all(), f"{op!r}: interval upper"
    return coeff, bias


def _torch_pads(pads, k):
    out = []
    for lo, hi in zip(reversed(pads[:k]), reversed(pads[k:])):
        out += [lo, hi]
    return out


# ---------------------------------------------------------------- MaxPool / ReduceMax

MAXPOOLS = [  # (input node shape, kernel, strides, pads, dilations)
    ((1, 2, 4, 4), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)),
    ((1, 2, 5, 5), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 1, 5, 6), (3, 2), (2, 1), (1, 0, 2, 1), (1, 1)),  # asymmetric pads, ONNX batch 2
    ((1, 2, 7, 7), (2, 2), (2, 1), (1, 1, 0, 1), (2, 2)),  # dilated
    ((1, 3, 9), (3,), (2,), (1, 2), (1,)),  # 1-D
]


@pytest.mark.parametrize("shape,kernel,strides,pads,dilations", MAXPOOLS)
def test_maxpool_forward_matches_torch(shape, kernel, strides, pads, dilations):
    k = len(kernel)
    op = MaxPool(kernel, strides, pads, dilations)
    x = torch.randn(3, *shape, dtype=F64)
    flat = x.reshape(3 * shape[0], *shape[1:])
    fn = {1: F.max_pool1d, 2: F.max_pool2d}[k]
    ref = fn(F.pad(flat, _torch_pads(pads, k), value=-INF), kernel, strides, dilation=dilations)
    y = op.forward(x)
    assert y.shape == (3, shape[0], *ref.shape[1:])
    assert torch.equal(y.reshape(ref.shape), ref)


@pytest.mark.parametrize("shape,kernel,strides,pads,dilations", MAXPOOLS)
@pytest.mark.parametrize("infinite", [False, True])
def test_maxpool_backward_is_sound(shape, kernel, strides, pads, dilations, infinite):
    op = MaxPool(kernel, strides, pads, dilations)
    for seed in range(4):
        check_backward_sound(op, random_box(shape, 7 * seed + infinite, infinite), seed=seed)


@pytest.mark.parametrize("shape,axes,keepdims", [
    ((2, 3, 4), (2,), True), ((2, 3, 4), (0, 2), False), ((5,), (0,), False), ((1, 2, 3, 3), (2, 3), True),
])
@pytest.mark.parametrize("infinite", [False, True])
def test_reduce_max_forward_and_backward(shape, axes, keepdims, infinite):
    op = ReduceMax(axes, keepdims)
    x = torch.randn(4, *shape, dtype=F64)
    assert torch.equal(op.forward(x), x.amax(dim=tuple(a + 1 for a in axes), keepdim=keepdims))
    for seed in range(4):
        check_backward_sound(op, random_box(shape, 11 * seed + infinite, infinite), seed=seed)


def test_dominant_input_gives_the_exact_selection():
    """``l_m >= max_{k != m} u_k``: ``y = x_m``, so (*) holds with equality for any A."""
    lower = torch.tensor([[[[0.0, 3.0], [-1.0, 2.5]]]], dtype=F64)  # [1, 1, 2, 2]: x_01 dominates
    upper = torch.tensor([[[[1.0, 4.0], [2.9, 3.0]]]], dtype=F64)
    box = Interval(lower[:, None], upper[:, None])  # node [1, 1, 2, 2]
    op = MaxPool((2, 2), (2, 2), (0, 0, 0, 0))
    for a in (1.0, -2.0):
        (coeff,), bias = op.backward(torch.full((1, 1, 1, 1, 1, 1), a, dtype=F64), [(1, 1, 2, 2)], [box])
        expected = torch.zeros(1, 1, 1, 1, 2, 2, dtype=F64)
        expected[..., 0, 1] = a
        assert torch.equal(coeff, expected) and bias.item() == 0.0


def test_upper_plane_is_the_top_two_chord_and_never_above_max_upper():
    """Window ``[0, 1], [0.5, 2]``: ``m = 1``, ``u_2 = 1``, ``s = (2 - 1) / (2 - 0.5) = 2/3``,
    ``c = 1 - s * 0.5 = 2/3``; lower: ``x_1`` (largest lower bound)."""
    lower = torch.tensor([[[0.0, 0.5]]], dtype=F64)
    upper = torch.tensor([[[1.0, 2.0]]], dtype=F64)
    real = torch.ones(1, 2, dtype=torch.bool)
    j, m, s, c = window_max_relaxation(lower, upper, real)
    assert j.item() == 1 and m.item() == 1
    assert s.item() == pytest.approx(2 / 3) and c.item() == pytest.approx(2 / 3)
    assert c.item() >= 2 / 3  # rounded up, never down
    # on the box the plane is <= the constant max_k u_k = 2, with equality only at x_1 = u_1
    assert s.item() * 2.0 + c.item() == pytest.approx(2.0)
    assert s.item() * 0.5 + c.item() == pytest.approx(1.0)  # = max(x_1, u_2) at x_1 = l_1: tight
    # CROWN's upper bound of the window on the box equals max u; IBP agrees
    op = ReduceMax([0], keepdims=False)
    box = Interval(torch.tensor([[0.0, 0.5]], dtype=F64), torch.tensor([[1.0, 2.0]], dtype=F64))
    (coeff,), bias = op.backward(-torch.ones(1, 1, dtype=F64), [(2,)], [box])
    upper_bound = -(bias + (coeff.clamp(min=0) * box.lower + coeff.clamp(max=0) * box.upper).sum(-1))
    assert upper_bound.item() == pytest.approx(2.0)


def test_pad_slots_never_receive_coefficients_even_with_infinite_lower_bounds():
    """Every lower bound -inf: the argmax ties with the -inf pads must still pick a real input."""
    op = MaxPool((3, 3), (1, 1), (1, 1, 1, 1))
    shape = (1, 1, 3, 3)
    box = Interval(torch.full((1, *shape), -INF, dtype=F64), torch.randn(1, *shape, dtype=F64))
    A = torch.ones(2, 1, 1, 1, 3, 3, dtype=F64)
    (coeff,), bias = op.backward(A, [shape], [box])
    assert coeff.sum().item() == pytest.approx(2 * 9)  # one unit per window, all on real inputs
    check_backward_sound(op, box)


# ---------------------------------------------------------------- AveragePool / GlobalAveragePool


@pytest.mark.parametrize("kernel,strides,pads,include", [
    ((2, 2), (2, 2), (0, 0, 0, 0), False), ((3, 3), (1, 1), (1, 1, 1, 1), False),
    ((3, 3), (1, 1), (1, 1, 1, 1), True), ((3, 2), (2, 1), (0, 1, 2, 0), False),
])
def test_average_pool_forward_and_backward(kernel, strides, pads, include):
    shape = (1, 2, 5, 6)
    op = AveragePool(kernel, strides, pads, include)
    x = torch.randn(3, *shape, dtype=F64)
    padded = F.pad(x.reshape(3, *shape[1:]), _torch_pads(pads, 2))
    window_sum = F.avg_pool2d(padded, kernel, strides) * math.prod(kernel)
    ones = F.pad(torch.ones(1, 1, *shape[2:], dtype=F64), _torch_pads(pads, 2))
    count = math.prod(kernel) if include else F.avg_pool2d(ones, kernel, strides) * math.prod(kernel)
    assert torch.allclose(op.forward(x).reshape(window_sum.shape), window_sum / count, rtol=1e-12)
    for seed in range(3):
        check_backward_sound(op, random_box(shape, seed, infinite=False), seed=seed)


def test_global_average_pool():
    op = GlobalAveragePool()
    x = torch.randn(2, 1, 3, 4, 5, dtype=F64)
    assert torch.allclose(op.forward(x), x.mean(dim=(3, 4), keepdim=True))
    check_backward_sound(op, random_box((1, 3, 4, 5), 2))


# ---------------------------------------------------------------- PRelu


def _slopes(k: int, seed: int) -> torch.Tensor:
    """Per-element slopes: convex ones (incl. 0 and negative), 1, and concave ones above 1."""
    g = torch.Generator().manual_seed(seed)
    fixed = torch.tensor([0.0, 0.25, -0.5, -3.0, 1.0, 1.5, 4.0, 0.999, 1.001], dtype=F64)
    random = torch.randn(k, generator=g, dtype=F64) * 3
    return torch.where(torch.arange(k) % 2 == 0, fixed[torch.arange(k) % len(fixed)], random)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prelu_relaxation_sound_for_tensor_slopes(seed):
    lower, upper = interval_cases(seed=seed)
    op = PRelu(_slopes(lower.numel(), seed))
    assert_elementwise_sound(op, lower, upper)
    for value in (0.1, 0.5, 1.0, 7.0, -3.0):  # any parameter is clamped into the valid family
        assert_elementwise_sound(op, lower, upper, torch.full((1, *lower.shape), value, dtype=F64))


def test_prelu_concave_slope_swaps_the_chord_to_the_lower_side():
    """a = 3 on [-1, 2]: chord through (-1, -3) and (2, 2) = (5/3) x - 4/3 is the lower line,
    upper line s x with s in [1, 3] (default 1 since u > -l)."""
    r = PRelu(torch.tensor([3.0], dtype=F64)).relax(torch.tensor([-1.0], dtype=F64), torch.tensor([2.0], dtype=F64))
    assert r.lower_slope.item() == pytest.approx(5 / 3) and r.lower_intercept.item() == pytest.approx(-4 / 3)
    assert r.lower_intercept.item() <= -4 / 3  # moved outward (down), never up
    assert r.upper_slope.item() == 1.0 and r.upper_intercept.item() == 0.0


def test_prelu_negative_slope_interval_peaks_at_the_left_end():
    op = PRelu(torch.tensor([-2.0], dtype=F64))
    box = op.interval(Interval(torch.tensor([-3.0], dtype=F64), torch.tensor([1.0], dtype=F64)))
    assert box.lower.item() == 0.0 and box.upper.item() == 6.0


def test_prelu_channel_slopes_backward_is_sound():
    """Slope ``[C, 1, 1]`` broadcast against a ``[N, C, H, W]`` node, as torch.nn.PReLU exports it."""
    slope = torch.tensor([-1.0, 0.2, 2.5], dtype=F64).reshape(3, 1, 1)
    op = PRelu(slope)
    x = torch.randn(2, 1, 3, 2, 2, dtype=F64)
    expected = torch.where(x >= 0, x, slope * x)
    assert torch.equal(op.forward(x), expected)
    for seed in range(4):
        check_backward_sound(op, random_box((1, 3, 2, 2), seed, infinite=True), seed=seed)
