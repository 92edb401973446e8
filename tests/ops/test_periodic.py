import math

import pytest
import torch

from curvebound.ops.base import Interval
from curvebound.ops.periodic import Cos, Sin
from tests.helpers import assert_elementwise_sound, assert_sound_float32, interval_cases

OPS = [Sin(), Cos()]



def multi_period_cases(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Intervals 0.5 .. 20 periods wide (and just below / above 2*pi) at random offsets."""
    g = torch.Generator().manual_seed(seed)
    periods = torch.tensor([0.5, 0.9, 0.999, 1.0, 1.001, 1.5, 2.0, 3.7, 20.0], dtype=torch.float64)
    widths = periods * 2 * math.pi
    offsets = torch.randn(8, generator=g, dtype=torch.float64) * 10
    lower = (offsets[:, None] + 0 * widths).flatten()
    return lower, (offsets[:, None] + widths).flatten()


def extremum_cases() -> tuple[torch.Tensor, torch.Tensor]:
    """Intervals ending exactly at (float-rounded) peaks, troughs and zeros of sin and cos."""
    pts = torch.tensor([k * math.pi / 2 for k in range(-9, 10)], dtype=torch.float64)
    lows, ups = [], []
    for w in (0.0, 1e-9, 1e-3, 0.5, math.pi / 2, math.pi, 3 * math.pi / 2, 2 * math.pi - 1e-9):
        lows += [pts, pts - w]
        ups += [pts + w, pts]
    return torch.cat(lows), torch.cat(ups)


def random_params(lower: torch.Tensor, spec: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, spec, *lower.shape, generator=g, dtype=torch.float64) * scale


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_default_relaxation_sound_float64(op):
    for lower, upper in (interval_cases(), interval_cases(seed=5), multi_period_cases(), extremum_cases()):
        assert_elementwise_sound(op, lower, upper)


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_default_relaxation_sound_float32(op):
    for lower, upper in (interval_cases(), interval_cases(seed=5), multi_period_cases(), extremum_cases()):
        assert_sound_float32(op, lower, upper)


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_sound_for_any_params(op):
    lower, upper = _all_cases()
    for seed, scale in enumerate((0.5, 10.0, 1e6)):
        params = random_params(lower, 2, scale, seed)
        for s in range(2):  # the float64 helper takes one spec row at a time
            assert_elementwise_sound(op, lower, upper, params[:, s:s + 1])
        assert_sound_float32(op, lower, upper, params)
    weird = torch.tensor([math.nan, math.inf, -math.inf, 1.0, -1.0], dtype=torch.float64)
    params = weird[torch.randint(0, 5, (2, 1, *lower.shape), generator=torch.Generator().manual_seed(0))]
    assert_elementwise_sound(op, lower, upper, params)


def _all_cases() -> tuple[torch.Tensor, torch.Tensor]:
    parts = [interval_cases(seed=2), multi_period_cases(seed=1), extremum_cases()]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_init_params_reproduce_default_relaxation(op):
    lower, upper = _all_cases()
    for dtype in (torch.float64, torch.float32):
        lo, up = lower.to(dtype), upper.to(dtype)
        params = op.init_params([Interval(lo, up)], spec=2)
        assert params.shape == (2, 2, *lo.shape) and params.dtype == dtype
        assert torch.equal(op.project_params(params, [Interval(lo, up)]), params)
        default, from_params = op.relax(lo, up), op.relax(lo, up, params)
        for name in ("lower_slope", "lower_intercept", "upper_slope", "upper_intercept"):
            d, p = getattr(default, name), getattr(from_params, name)
            assert p.shape == (2, *lo.shape)
            assert torch.equal(d.expand_as(p), p), name


def test_project_params_clamps_slopes():
    op = Sin()
    lower, upper = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    params = torch.tensor([[[5.0, -7.0, math.nan]], [[0.5, -0.25, 1.0]]], dtype=torch.float64)
    projected = op.project_params(params, [Interval(lower, upper)])
    assert projected.tolist() == [[[1.0, -1.0, 0.0]], [[0.5, -0.25, 1.0]]]


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_interval_is_exact(op):
    lower = torch.tensor([0.1, 0.1, -0.3, 2.0, -1e8, -math.inf, 1.0, 4.0], dtype=torch.float64)
    upper = torch.tensor([3.0, 1.0, 0.3, 9.0, 1e8, 0.0, math.inf, 4.0], dtype=torch.float64)
    box = op.interval(Interval(lower, upper))
    grid = lower[None] + torch.linspace(0, 1, 200001, dtype=torch.float64)[:, None] * (upper - lower)[None]
    finite = torch.isfinite(upper - lower) & ((upper - lower) < 100)
    fx = op.function(grid[:, finite])
    assert torch.allclose(box.lower[finite], fx.amin(0), atol=1e-9)
    assert torch.allclose(box.upper[finite], fx.amax(0), atol=1e-9)
    assert box.lower[~finite].tolist() == [-1.0] * 3 and box.upper[~finite].tolist() == [1.0] * 3


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_huge_and_infinite_intervals_get_constant_lines(op):
    lower = torch.tensor([-1e8, 1e8, -math.inf, 3.0, 0.0], dtype=torch.float64)
    upper = torch.tensor([1e8, 1e8 + 1, 0.0, math.inf, 7.0], dtype=torch.float64)
    r = op.relax(lower, upper, torch.ones(2, 1, 5, dtype=torch.float64))
    assert r.lower_slope.abs().max() == 0 and r.upper_slope.abs().max() == 0
    assert r.lower_intercept.flatten().tolist() == [-1.0] * 5
    assert r.upper_intercept.flatten().tolist() == [1.0] * 5


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_narrow_intervals_have_quadratic_gap(op):
    g = torch.Generator().manual_seed(7)
    centers = torch.cat([torch.rand(200, generator=g, dtype=torch.float64) * 40 - 20,
                         torch.tensor([k * math.pi / 2 for k in range(-4, 5)], dtype=torch.float64)])
    for width in (1e-3, 1e-2):
        lower, upper = centers - width / 2, centers + width / 2
        r = op.relax(lower, upper)
        x = lower + torch.linspace(0, 1, 101, dtype=torch.float64)[:, None] * (upper - lower)
        gap = (r.upper_slope - r.lower_slope) * x + (r.upper_intercept - r.lower_intercept)
        # chord + tangent at the midpoint would give <= w^2 / 8 (|f''| <= 1)
        assert gap.max() <= width**2 / 8 * 1.01


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_lines_tighter_than_constant_band_on_half_period(op):
    # same shapes of f for Sin and Cos: shift by the phase
    lower = torch.tensor([0.0, -math.pi / 2, -1.0, 0.5], dtype=torch.float64) - op.phase
    upper = lower + torch.tensor([math.pi, math.pi, 2.5, 4.0], dtype=torch.float64)
    r = op.relax(lower, upper)
    x = lower + torch.linspace(0, 1, 1001, dtype=torch.float64)[:, None] * (upper - lower)
    gap = (r.upper_slope - r.lower_slope) * x + (r.upper_intercept - r.lower_intercept)
    box = op.interval(Interval(lower, upper))
    # [0, pi] on the sin piece: lines are the tangent y=1 and the chord y=0, i.e. the exact hull
    assert gap[:, 0].max() <= 1 + 1e-12
    assert torch.all(gap.max(0).values < 2.0)  # always better than the constant band -1..1
    # the mean gap is never worse than the IBP box (equal on [0, pi], where both are exact)
    assert torch.all(gap.mean(0) <= (box.upper - box.lower) + 1e-12)


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_convex_and_concave_pieces_use_chord_and_midpoint_tangent(op):
    # sin is concave on [0.3, 2.5]: upper = tangent at the midpoint, lower = chord (and mirrored)
    lower = torch.tensor([0.3, 0.3 + math.pi], dtype=torch.float64) - op.phase
    upper = torch.tensor([2.5, 2.5 + math.pi], dtype=torch.float64) - op.phase
    r = op.relax(lower, upper)
    mid = (lower + upper) / 2
    chord = (op.function(upper) - op.function(lower)) / (upper - lower)
    tangent = -torch.sin(mid) if isinstance(op, Cos) else torch.cos(mid)
    assert torch.allclose(r.lower_slope, torch.stack([chord[0], tangent[1]]), atol=1e-9)
    assert torch.allclose(r.upper_slope, torch.stack([tangent[0], chord[1]]), atol=1e-9)
    # touching: the lines reach f at the midpoint (tangent) / both ends (chord)
    assert torch.allclose(r.upper_slope[0] * mid[0] + r.upper_intercept[0], op.function(mid[0]), atol=1e-12)
    at_lower = r.lower_slope[0] * lower[0] + r.lower_intercept[0]
    assert torch.allclose(at_lower, op.function(lower[0]), atol=1e-12)


def test_cos_matches_shifted_sin():
    g = torch.Generator().manual_seed(3)
    lower = torch.rand(50, generator=g, dtype=torch.float64) * 20 - 10
    upper = lower + torch.rand(50, generator=g, dtype=torch.float64) * 6
    rc = Cos().relax(lower, upper)
    rs = Sin().relax(lower + math.pi / 2, upper + math.pi / 2)
    assert torch.allclose(rc.lower_slope, rs.lower_slope, atol=1e-6)
    assert torch.allclose(rc.upper_slope, rs.upper_slope, atol=1e-6)
    assert torch.allclose(rc.lower_intercept, rs.lower_intercept + rs.lower_slope * math.pi / 2, atol=1e-6)


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_gradients_are_finite(op):
    lower, upper = _all_cases()
    lower, upper = lower.clone().requires_grad_(), upper.clone().requires_grad_()
    params = op.init_params([Interval(lower.detach(), upper.detach())], spec=2)
    params[:, 0] = torch.tensor([1.0, -1.0], dtype=torch.float64)[:, None]  # acos is singular here
    params.requires_grad_()
    r = op.relax(lower, upper, params)
    (r.lower_intercept.sum() - r.upper_intercept.sum() + r.lower_slope.sum()).backward()
    for t in (params, lower, upper):
        assert torch.isfinite(t.grad).all()
    # envelope theorem: d(min_x f(x) - a x)/da = -argmin; Sin on [0, 1], slope 0.9 -> argmin = 1
    a = torch.full((2, 1, 1), 0.9, dtype=torch.float64, requires_grad=True)
    lo, up = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    Sin().relax(lo, up, a).lower_intercept.sum().backward()
    assert torch.allclose(a.grad[0], torch.tensor([[-1.0]], dtype=torch.float64))


def test_splittable_and_kind():
    assert Sin().kind == "Sin" and Cos().kind == "Cos"
    assert Sin().splittable and Cos().splittable


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_backward_bound_holds_on_sampled_inputs(op):
    g = torch.Generator().manual_seed(4)
    lower = torch.randn(2, 3, 4, generator=g, dtype=torch.float64) * 3
    upper = lower + torch.rand(2, 3, 4, generator=g, dtype=torch.float64) * 4
    A = torch.randn(5, 2, 3, 4, generator=g, dtype=torch.float64)  # [spec, batch, *shape]
    bounds = [Interval(lower, upper)]
    for params in (None, op.init_params(bounds, spec=5) + torch.randn(2, 5, 2, 3, 4, generator=g)):
        (coeff,), bias = op.backward(A, [(3, 4)], bounds, params)
        assert coeff.shape == A.shape and bias.shape == (5, 2)
        x = lower + torch.rand(200, 1, 2, 3, 4, generator=g, dtype=torch.float64) * (upper - lower)
        value = (A * op.function(x)).sum((-1, -2))  # [200, spec, batch]
        bound = (coeff * x).sum((-1, -2)) + bias
        assert torch.all(bound <= value + 1e-12)
