import math

import pytest
import torch
import torch.nn.functional as F

from curvebound.ops.base import Interval
from curvebound.ops.gelu import Elu, Gelu, Selu, Silu
from tests.helpers import assert_elementwise_sound, assert_sound_float32, interval_cases, sample_points

INF = math.inf
OPS = [Gelu(), Gelu("tanh"), Silu(), Elu(), Elu(0.5), Elu(2.0), Elu(-0.5), Selu()]
IDS = [repr(op) for op in OPS]

# inflection points, minima, kinks and window ends of the piece tables, each with a few interval shapes
_FEATURES = [-60.0, -10.0, -2.3994, -1.4185, -math.sqrt(2), -1.2785, -0.7518, 0.0, 1.4185, math.sqrt(2),
             2.3994, 10.0, 60.0]


def feature_cases() -> tuple[torch.Tensor, torch.Tensor]:
    pairs = []
    for c in _FEATURES:
        for left, right in ((0.0, 0.0), (1e-9, 1e-9), (0.3, 0.2), (0.0, 1.5), (1.5, 0.0), (2.5, 3.0), (12.0, 0.1)):
            pairs.append((c - left, c + right))
        pairs += [(c, INF), (-INF, c)]
    t = torch.tensor(pairs, dtype=torch.float64)
    return t[:, 0].contiguous(), t[:, 1].contiguous()


def all_cases() -> tuple[torch.Tensor, torch.Tensor]:
    l1, u1 = interval_cases()
    l2, u2 = feature_cases()
    return torch.cat([l1, l2]), torch.cat([u1, u2])



@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_default_relaxation_is_sound(op):
    lower, upper = all_cases()
    assert_elementwise_sound(op, lower, upper, n=200)
    assert_sound_float32(op, lower, upper, n=200)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_any_params_are_sound(op):
    lower, upper = all_cases()
    g = torch.Generator().manual_seed(7)
    spec = 3
    params = torch.randn(2, spec, *lower.shape, generator=g, dtype=torch.float64)
    params = params * torch.tensor([0.3, 3.0, 1e6], dtype=torch.float64)[None, :, None]  # [2, spec, batch]
    params[0, 0, ::7] = float("nan")
    params[1, 0, ::5] = INF
    for s in range(spec):
        assert_elementwise_sound(op, lower, upper, params[:, s : s + 1], n=120)
    assert_sound_float32(op, lower, upper, params[:, 2:3].float(), n=120)
    # relax broadcasts params [2, spec, batch] against bounds [batch]
    r = op.relax(lower, upper, params)
    assert r.lower_slope.shape == (spec, *lower.shape)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_init_params_reproduce_default_and_projection_is_idempotent(op):
    lower, upper = all_cases()
    default = op.relax(lower, upper)
    params = op.init_params([Interval(lower, upper)], spec=2)
    assert params.shape == (2, 2, *lower.shape)
    for s in range(2):
        again = op.relax(lower, upper, params[:, s])
        for name in ("lower_slope", "lower_intercept", "upper_slope", "upper_intercept"):
            a, b = getattr(default, name), getattr(again, name)
            assert torch.equal(a.isinf(), b.isinf())
            fin = torch.isfinite(a)
            assert torch.allclose(a[fin], b[fin], rtol=1e-12, atol=1e-13), name
    projected = op.project_params(params, [Interval(lower, upper)])
    assert torch.equal(projected, params)
    wild = op.project_params(params * 1e3 - 5, [Interval(lower, upper)])
    grid = torch.cat([torch.linspace(-60, 60, 20001, dtype=torch.float64), torch.tensor(op.nodes).double()])
    d = op.derivative(grid)
    assert wild.min() >= min(d.min().item(), 0.0) - 1e-9 and wild.max() <= d.max().item() + 1e-9


def test_forward_matches_torch():
    x = torch.linspace(-30, 30, 6001, dtype=torch.float64)
    assert torch.equal(Gelu().function(x), F.gelu(x))
    assert torch.equal(Gelu("tanh").function(x), F.gelu(x, approximate="tanh"))
    assert torch.equal(Silu().function(x), F.silu(x))
    assert torch.equal(Elu(0.5).function(x), F.elu(x, 0.5))
    assert torch.equal(Selu().function(x.float()), F.selu(x.float()))  # ONNX defaults = float32 constants
    assert torch.allclose(Selu().function(x), F.selu(x), rtol=1e-7, atol=1e-7)
    for op in (Gelu(), Gelu("tanh"), Silu(), Elu(2.0), Selu()):
        assert torch.allclose(op.exact(x), op.function(x), rtol=1e-12, atol=1e-14)
        grad = torch.autograd.functional.jacobian(lambda t, op=op: op.function(t).sum(), x)
        assert torch.allclose(op.derivative(x), grad, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError):
        Gelu("fast")


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_interval_is_the_exact_image(op):
    lower, upper = all_cases()
    box = op.interval(Interval(lower, upper))
    finite = torch.isfinite(lower) & torch.isfinite(upper) & ((upper - lower) < 50)
    lower, upper = lower[finite], upper[finite]
    x = sample_points(lower, upper, 2000)
    extremes = [torch.maximum(torch.minimum(torch.full_like(lower, p), upper), lower)[None] for p, _ in op.minima]
    fx = op.function(torch.cat([x, *extremes]))
    assert torch.allclose(box.lower[finite], fx.amin(0), rtol=1e-12, atol=1e-13)
    assert torch.allclose(box.upper[finite], fx.amax(0), rtol=1e-12, atol=1e-13)
    # infinite ends take the limits
    box = op.interval(Interval(torch.tensor([-INF, 3.0]).double(), torch.tensor([-40.0, INF]).double()))
    limit = op.left.offset  # f(-inf)
    assert abs(box.upper[0].item() - max(limit, op.function(torch.tensor(-40.0).double()).item())) < 1e-12
    assert box.upper[1].item() == INF


def test_interval_minima_values():
    for op, x_min in ((Gelu(), -0.7517915246935645), (Gelu("tanh"), -0.7524614220710163),
                      (Silu(), -1.2784645427610738)):
        box = op.interval(Interval(torch.tensor([-3.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)))
        f_min = op.function(torch.tensor(x_min, dtype=torch.float64)).item()
        assert f_min - 1e-14 <= box.lower.item() <= f_min
        grid = torch.linspace(x_min - 1e-3, x_min + 1e-3, 2001, dtype=torch.float64)
        assert op.function(grid).min().item() >= box.lower.item()


def _max_gap(r, lower, upper):
    gap_l = (r.upper_slope - r.lower_slope) * lower + r.upper_intercept - r.lower_intercept
    gap_u = (r.upper_slope - r.lower_slope) * upper + r.upper_intercept - r.lower_intercept
    return torch.maximum(gap_l, gap_u)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_gap_is_quadratic_in_width_away_from_kinks(op):
    centers = torch.tensor([-7.0, -2.4, -1.7, -1.4185, -0.75, -0.3, 0.4, 1.0, 1.414, 2.0, 3.0, 8.0],
                           dtype=torch.float64)
    d2 = op.derivative(torch.linspace(-10, 10, 40001, dtype=torch.float64)).diff().abs().max() / 5e-4
    kinked = isinstance(op, Elu) and op.alpha != 1.0
    if kinked:
        centers = centers[centers.abs() > 0.2]
    for width in (1e-1, 1e-2, 1e-3):
        lower, upper = centers - width / 2, centers + width / 2
        gap = _max_gap(op.relax(lower, upper), lower, upper)
        assert torch.all(gap >= 0)
        assert torch.all(gap <= 0.5 * d2 * width**2 + 1e-13), (width, gap)
    if kinked:  # at the kink the gap is first order in the width
        for width in (1e-1, 1e-2, 1e-3):
            gap = _max_gap(op.relax(torch.tensor([-width / 2]).double(), torch.tensor([width / 2]).double()),
                           -width / 2, width / 2)
            jump = abs(op.scale * (1 - op.alpha))
            assert 0.05 * jump * width <= gap.item() <= jump * width


def test_tangent_slope_gives_the_tangent_line_on_a_convex_piece():
    op = Gelu()
    lower, upper = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.2], dtype=torch.float64)
    t = torch.tensor([0.3], dtype=torch.float64)
    slope = op.derivative(t)
    r = op.relax(lower, upper, torch.stack([slope, slope])[:, None])
    assert torch.allclose(r.lower_slope, slope)
    assert torch.allclose(r.lower_intercept, op.exact(t) - slope * t, atol=1e-13)
    # the upper line of that slope touches f at an end of the interval
    ends = torch.cat([lower, upper])
    assert torch.isclose((op.exact(ends) - slope * ends).max(), r.upper_intercept[0, 0], atol=1e-13)


def test_infinite_intervals():
    lower = torch.tensor([-INF, -INF, -2.0, -INF], dtype=torch.float64)
    upper = torch.tensor([INF, 1.0, INF, -3.0], dtype=torch.float64)
    for op in (Gelu(), Gelu("tanh"), Silu(), Elu(), Selu()):
        r = op.relax(lower, upper)
        c_right = op.right.slope
        assert torch.isfinite(r.lower_intercept).all()
        assert r.upper_slope[0] == 0 and r.upper_intercept[0] == INF  # no finite upper line on R
        assert 0 <= r.lower_slope[0] <= c_right
        assert torch.isfinite(r.upper_intercept[1:]).all()
        assert r.upper_slope[1] <= 0 and r.upper_slope[3] <= 0  # (-inf, u]: slope <= asymptote slope 0
        assert r.upper_slope[2] >= c_right and r.lower_slope[2] <= c_right
    # on R the default lower lines are the tangents at 0: x/2 <= x Phi(x), x/2 <= x sigmoid(x), x <= elu(x)
    for op, slope in ((Gelu(), 0.5), (Silu(), 0.5), (Elu(), 1.0)):
        r = op.relax(lower[:1], upper[:1])
        assert abs(r.lower_slope.item() - slope) < 1e-15 and -1e-12 < r.lower_intercept.item() <= 0
    # params that would need an infinite intercept are clamped to a finite one where possible
    op = Gelu()
    params = torch.tensor([[[5.0, 5.0, 5.0, 5.0]], [[-5.0, -5.0, -5.0, -5.0]]], dtype=torch.float64)
    r = op.relax(lower, upper, params)
    assert torch.isfinite(r.lower_intercept).all() and torch.isfinite(r.upper_intercept[0, 1:]).all()


def test_params_gradient_is_minus_contact_point():
    op = Silu()
    lower, upper = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.5], dtype=torch.float64)
    t = torch.tensor([0.4], dtype=torch.float64)
    params = op.derivative(t).expand(2, 1, 1).clone().requires_grad_(True)
    r = op.relax(lower, upper, params)
    r.lower_intercept.sum().backward()
    assert torch.allclose(params.grad[0], -t, atol=1e-6)


def test_branch_point_at_kink():
    lower, upper = torch.tensor([-1.0, 0.5, -3.0]), torch.tensor([3.0, 2.5, -1.0])
    assert Elu(2.0).branch_point(lower, upper).tolist() == [0.0, 1.5, -2.0]
    assert Gelu().branch_point(lower, upper).tolist() == [1.0, 1.5, -2.0]
