import math

import pytest
import torch

from curvebound.ops.base import ElementwiseOperator, Interval, UnsupportedInput
from curvebound.ops.convex import Abs, Exp, Log, Pow, Reciprocal, Softplus, Sqrt, Square
from tests.helpers import assert_elementwise_sound, assert_sound_float32, interval_cases

INF = math.inf
TINY = 1e-30  # smallest positive lower end used (representable in float32 too)

# (operator, domain lo, domain hi): the interval families are restricted to the operator's domain
CASES = [
    (Exp(), -INF, INF),
    (Softplus(), -INF, INF),
    (Log(), TINY, INF),
    (Reciprocal(), TINY, INF),
    (Reciprocal(), -INF, -TINY),
    (Sqrt(), 0.0, INF),
    (Square(), -INF, INF),
    (Pow(3), -INF, INF),
    (Pow(4), -INF, INF),
    (Pow(5), -INF, INF),
    (Pow(-2), TINY, INF),
    (Pow(-2), -INF, -TINY),
    (Pow(-3), -INF, -TINY),
    (Pow(-1), TINY, INF),
    (Pow(0.5), 0.0, INF),
    (Pow(1.5), 0.0, INF),
    (Pow(-0.5), TINY, INF),
    (Pow(-1.7), TINY, INF),
    (Pow(0), -INF, INF),
    (Pow(1), -INF, INF),
    (Abs(), -INF, INF),
]
IDS = [f"{op!r}[{lo},{hi}]" for op, lo, hi in CASES]


def _cases(lo: float, hi: float, extra: list[tuple[float, float]] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    lower, upper = interval_cases(lo=lo, hi=hi, n_random=30)
    if extra:
        t = torch.tensor(extra, dtype=torch.float64)
        lower, upper = torch.cat([lower, t[:, 0]]), torch.cat([upper, t[:, 1]])
    return lower, upper


def _random_params(op: ElementwiseOperator, lower: torch.Tensor, scale: float, seed: int) -> torch.Tensor | None:
    """``[k, batch]`` noise, with NaN and +-inf sprinkled in (relax must clamp all of it)."""
    k = len(getattr(op, "param_roles", ()))
    if k == 0:
        return None
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(k, *lower.shape, generator=g, dtype=torch.float64) * scale
    p[:, ::7] = math.nan
    p[:, 1::11] = INF
    p[:, 2::13] = -INF
    return p.to(lower.dtype)



@pytest.mark.parametrize("op,lo,hi", CASES, ids=IDS)
def test_sound_for_default_and_any_params_float64_and_float32(op, lo, hi):
    lower, upper = _cases(lo, hi)
    assert_elementwise_sound(op, lower, upper, n=120)
    assert_sound_float32(op, lower, upper, n=120)
    for seed, scale in enumerate((1.0, 1e6)):
        params = _random_params(op, lower, scale, seed)
        if params is None:
            break
        assert_elementwise_sound(op, lower, upper, params, n=60)
        assert_sound_float32(op, lower, upper, params, n=60)


def test_exp_huge_intervals_and_overflow():
    extra = [(-50.0, 80.0), (-700.0, 700.0), (700.0, 710.0), (-800.0, -700.0), (85.0, 95.0), (-1e4, 1e4),
             (88.0, 88.5), (-INF, 700.0), (709.0, INF)]
    lower, upper = _cases(-INF, INF, extra)
    assert_elementwise_sound(Exp(), lower, upper)
    assert_sound_float32(Exp(), lower, upper)
    op = Exp()
    # float64 [-700, 700]: exp(700) ~ 1e304 is finite, so is the chord
    r = op.relax(torch.tensor([-700.0, 700.0], dtype=torch.float64), torch.tensor([700.0, 710.0], dtype=torch.float64))
    assert torch.isfinite(r.upper_intercept[0]) and r.upper_slope[0] > 0
    assert r.upper_intercept[1] == INF and r.upper_slope[1] == 0  # exp(710) overflows float64
    assert torch.isfinite(r.lower_intercept).all()
    # float32: exp(80) ~ 5.5e34 is finite, exp(100) overflows -> no finite upper line
    r = op.relax(torch.tensor([-50.0, 0.0]), torch.tensor([80.0, 100.0]))
    assert torch.isfinite(r.upper_intercept[0]) and r.upper_intercept[1] == INF and r.upper_slope[1] == 0
    # default lower tangent point is capped at l + 0.99 (slope e^(l+0.99))
    assert math.isclose(r.lower_slope[0].item(), math.exp(-49.01), rel_tol=1e-5)


def test_exp_relaxation_values():
    op = Exp()
    r = op.relax(torch.tensor([0.0, -INF, 1.0, -INF], dtype=torch.float64),
                 torch.tensor([1.0, 2.0, INF, INF], dtype=torch.float64))
    e = math.e
    assert math.isclose(r.upper_slope[0].item(), e - 1) and math.isclose(r.upper_intercept[0].item(), 1.0)
    assert math.isclose(r.lower_slope[0].item(), math.exp(0.5))  # midpoint (cap 0.99 not active)
    assert math.isclose(r.lower_intercept[0].item(), math.exp(0.5) * 0.5)
    # (-inf, 2]: upper is the constant e^2, lower the tangent at u - 1 = 1
    assert r.upper_slope[1] == 0 and math.isclose(r.upper_intercept[1].item(), e**2)
    assert math.isclose(r.lower_slope[1].item(), e) and abs(r.lower_intercept[1].item()) < 1e-12
    # [1, inf): no finite upper line; (-inf, inf): tangent at 0
    assert r.upper_intercept[2] == INF and r.upper_intercept[3] == INF
    assert r.lower_slope[3] == 1.0 and math.isclose(r.lower_intercept[3].item(), 1.0)


def test_log_sqrt_concave_values():
    r = Log().relax(torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([3.0, INF], dtype=torch.float64))
    assert math.isclose(r.lower_slope[0].item(), math.log(3) / 2)  # chord
    assert math.isclose(r.upper_slope[0].item(), 0.5) and math.isclose(r.upper_intercept[0].item(), math.log(2) - 1)
    assert r.lower_slope[1] == 0 and abs(r.lower_intercept[1].item()) < 1e-12  # constant log(1)
    assert math.isclose(r.upper_slope[1].item(), 0.5)  # tangent at l + 1 = 2
    r = Sqrt().relax(torch.tensor([0.0, 0.0], dtype=torch.float64), torch.tensor([4.0, 0.0], dtype=torch.float64))
    assert math.isclose(r.lower_slope[0].item(), 0.5) and abs(r.lower_intercept[0].item()) < 1e-12
    assert math.isclose(r.upper_slope[0].item(), 0.5 / math.sqrt(2))  # tangent at 2
    assert abs(r.upper_intercept[1].item()) < 1e-12 and abs(r.lower_intercept[1].item()) < 1e-12


def test_square_and_odd_power_values():
    lower = torch.tensor([-1.0, -INF, 1.0], dtype=torch.float64)
    upper = torch.tensor([3.0, INF, 3.0], dtype=torch.float64)
    r = Square().relax(lower, upper)
    assert r.lower_slope.tolist() == [2.0, 0.0, 4.0]  # tangent at the midpoint (0 for (-inf, inf))
    assert math.isclose(r.lower_intercept[0].item(), -1.0) and math.isclose(r.lower_intercept[2].item(), -4.0)
    assert math.isclose(r.upper_slope[0].item(), 2.0) and math.isclose(r.upper_intercept[0].item(), 3.0)
    assert r.upper_intercept[1] == INF
    # x^3 on [-1, 2]: upper = tangent at -c u = -1 through (2, 8); lower = tangent at 1/2 through (-1, -1)
    r = Pow(3).relax(torch.tensor([-1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    assert math.isclose(r.upper_slope.item(), 3.0) and math.isclose(r.upper_intercept.item(), 2.0)
    assert math.isclose(r.lower_slope.item(), 0.75) and math.isclose(r.lower_intercept.item(), -0.25)
    # x^3 on [-1, 10]: the tangent at -5 is outside, upper is the chord
    r = Pow(3).relax(torch.tensor([-1.0], dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64))
    assert math.isclose(r.upper_slope.item(), 1001 / 11, rel_tol=1e-9)
    assert math.isclose(r.upper_intercept.item(), 1000 - 10 * 1001 / 11, rel_tol=1e-9)
    assert Pow(3).branch_point(torch.tensor([-1.0]), torch.tensor([10.0])).item() == 0.0


def test_abs_and_softplus_values():
    lower = torch.tensor([-1.0, 1.0, -3.0, -INF, -1.0, -INF], dtype=torch.float64)
    upper = torch.tensor([3.0, 3.0, -1.0, 2.0, INF, INF], dtype=torch.float64)
    r = Abs().relax(lower, upper)
    assert r.upper_slope[:5].tolist() == [0.5, 1.0, -1.0, -1.0, 1.0]
    assert math.isclose(r.upper_intercept[0].item(), 1.5) and math.isclose(r.upper_intercept[3].item(), 4.0)
    assert math.isclose(r.upper_intercept[4].item(), 2.0) and r.upper_intercept[5] == INF
    assert r.lower_slope[:3].tolist() == [0.5, 1.0, -1.0] and r.lower_intercept[1:3].tolist() == [0.0, 0.0]
    assert r.upper_intercept[1:3].tolist() == [0.0, 0.0]  # one-sided: exact
    r = Softplus().relax(torch.tensor([1.0, -INF], dtype=torch.float64), torch.tensor([INF, 2.0], dtype=torch.float64))
    sp = math.log1p(math.exp(1.0))
    assert r.upper_slope[0] == 1.0 and math.isclose(r.upper_intercept[0].item(), sp - 1)
    assert r.upper_slope[1] == 0 and math.isclose(r.upper_intercept[1].item(), math.log1p(math.exp(2.0)))


def test_reciprocal_near_zero_and_both_sides():
    # negative ends are powers of two: helpers.sample_points computes lo + 1 * (hi - lo), which for
    # [-1, -1e-12] rounds to a point above hi (outside the interval)
    lower = torch.tensor([1e-12, 1e-12, 1e-12, -1.0, -(2.0**-40) * (1 + 2.0**-20)], dtype=torch.float64)
    upper = torch.tensor([1.0, 1e-12 * (1 + 1e-6), 1e-6, -(2.0**-40), -(2.0**-40)], dtype=torch.float64)
    op = Reciprocal()
    assert_elementwise_sound(op, lower, upper)
    assert_sound_float32(op, lower, upper)
    r = op.relax(lower, upper)
    at_l = (r.upper_slope * lower + r.upper_intercept)[0].item()
    assert math.isclose(at_l, 1e12, rel_tol=1e-9)  # upper chord is tight at the near-zero end
    assert math.isclose(r.lower_slope[0].item(), -4.0) and math.isclose(r.lower_intercept[0].item(), 4.0)
    # a batch mixing positive and negative intervals is fine (elementwise)
    box = op.interval(Interval(lower, upper))
    assert (box.lower[:3] > 0).all() and (box.upper[3:] < 0).all()


def test_unsupported_inputs_raise_and_valid_ones_do_not():
    def t(*v):
        return torch.tensor(v, dtype=torch.float64)

    invalid = [
        (Log(), t(0.0), t(1.0)), (Log(), t(-1.0), t(2.0)), (Log(), t(-2.0), t(-1.0)),
        (Reciprocal(), t(0.0), t(1.0)), (Reciprocal(), t(-1.0), t(0.0)), (Reciprocal(), t(-1.0), t(1.0)),
        (Reciprocal(), t(1.0, -1.0), t(2.0, 1.0)),  # one bad element is enough
        (Sqrt(), t(-1e-300), t(1.0)), (Pow(0.5), t(-1.0), t(1.0)), (Pow(2.5), t(-1.0), t(-0.5)),
        (Pow(-1), t(0.0), t(1.0)), (Pow(-2), t(-1.0), t(1.0)), (Pow(-0.5), t(0.0), t(1.0)),
    ]
    for op, lower, upper in invalid:
        with pytest.raises(UnsupportedInput):
            op.relax(lower, upper)
        with pytest.raises(UnsupportedInput):
            op.interval(Interval(lower, upper))
    valid = [
        (Log(), t(1e-300, 2.0), t(1.0, INF)), (Reciprocal(), t(1e-12, -1.0), t(1.0, -1e-12)),
        (Sqrt(), t(0.0, 0.0), t(0.0, 4.0)), (Pow(0.5), t(0.0), t(4.0)), (Pow(-2), t(-3.0), t(-1.0)),
        (Pow(-0.5), t(1e-300), t(1.0)), (Pow(3), t(-INF), t(INF)),
    ]
    for op, lower, upper in valid:
        r = op.relax(lower, upper)
        assert not torch.isnan(r.lower_intercept).any() and not torch.isnan(r.upper_intercept).any()
        op.interval(Interval(lower, upper))


@pytest.mark.parametrize("op,lo,hi", CASES, ids=IDS)
def test_init_params_reproduce_default_and_projection_is_feasible(op, lo, hi):
    lower, upper = _cases(lo, hi)
    bounds = [Interval(lower, upper)]
    params = op.init_params(bounds, spec=3)
    r0 = op.relax(lower, upper)
    if params is None:
        assert not op.param_roles
        return
    assert params.shape == (len(op.param_roles), 3, *lower.shape)
    r1 = op.relax(lower, upper, params)
    for name in ("lower_slope", "lower_intercept", "upper_slope", "upper_intercept"):
        a, b = getattr(r1, name), getattr(r0, name)
        # equal up to an ulp: torch's vectorized pow/exp may round differently for another tensor layout
        assert a.shape[0] == 3
        torch.testing.assert_close(a, b.expand_as(a), rtol=1e-13, atol=1e-300, msg=name)
    noisy = params + torch.randn_like(params) * 1e3
    noisy[..., ::5] = math.nan
    projected = op.project_params(noisy, bounds)
    assert torch.isfinite(projected).all()
    if not isinstance(op, Abs):
        assert ((projected >= lower) & (projected <= upper)).all()
    else:
        assert (projected.abs() <= 1).all()
    assert torch.equal(op.project_params(projected, bounds), projected)


@pytest.mark.parametrize("op,lo,hi", [c for c in CASES if c[0].param_roles], ids=[i for c, i in zip(CASES, IDS)
                                                                                     if c[0].param_roles])
def test_gradients_wrt_params_are_finite(op, lo, hi):
    lower, upper = _cases(lo, hi)
    params = op.init_params([Interval(lower, upper)], spec=2)
    params = (params + 0.1 * torch.randn_like(params)).requires_grad_(True)
    r = op.relax(lower, upper, params)
    total = 0
    for t in (r.lower_slope, r.lower_intercept, r.upper_slope, r.upper_intercept):
        total = total + torch.where(torch.isfinite(t), t, torch.zeros_like(t)).clamp(-1e6, 1e6).sum()
    total.backward()
    assert torch.isfinite(params.grad).all()
    assert (params.grad != 0).any()


def test_pow_trivial_exponents_are_exact_and_branch_points_inside():
    x = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    r = Pow(1).relax(x - 1, x + 1)
    assert r.lower_slope.tolist() == [1.0] * 3 and r.lower_intercept.tolist() == [0.0] * 3
    r = Pow(0).relax(x - 1, x + 1)
    assert r.upper_slope.tolist() == [0.0] * 3 and r.upper_intercept.tolist() == [1.0] * 3
    lower, upper = _cases(-INF, INF)
    for op in (Pow(3), Square(), Abs(), Exp()):
        point = op.branch_point(lower, upper)
        assert ((point >= lower) & (point <= upper)).all()
    assert Abs().branch_point(torch.tensor([-1.0]), torch.tensor([5.0])).item() == 0.0
