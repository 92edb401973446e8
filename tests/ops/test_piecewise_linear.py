"""PiecewiseLinear (a sum of ReLUs of one scalar): dense-sampling soundness of its interval and lines
for default and arbitrary slopes on every interval family, exactness where no knot is inside, and
the lookup-table rewrite on real and synthetic graphs (same function, sound and tighter bounds)."""

from __future__ import annotations

import math

import pytest
import torch

from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.graph.fuse_lookup import fuse_lookup_tables
from curvebound.ops.base import Interval
from curvebound.ops.piecewise_linear import PiecewiseLinear
from tests.bab.nets import lookup_net, sample, unit_box
from tests.helpers import assert_elementwise_sound, interval_cases, sample_points


def random_pwl(seed: int, knots: int = 12) -> PiecewiseLinear:
    g = torch.Generator().manual_seed(seed)
    scale = torch.randn(knots, generator=g, dtype=torch.float64) * 2
    scale[::5] = 0.0  # constant terms relu(b)
    shift = torch.randn(knots, generator=g, dtype=torch.float64) * 3
    weight = torch.randn(knots, generator=g, dtype=torch.float64)
    return PiecewiseLinear(scale, shift, weight, bias=float(torch.randn(1, generator=g)))


@pytest.mark.parametrize("seed", range(4))
def test_interval_and_lines_are_sound_for_default_and_any_slopes(seed):
    op = random_pwl(seed)
    lower, upper = interval_cases(n_random=40, seed=seed)
    assert_elementwise_sound(op, lower, upper)
    g = torch.Generator().manual_seed(seed)
    for spread in (0.1, 10.0, 1e4):
        params = torch.randn(2, *lower.shape, generator=g, dtype=torch.float64) * spread
        assert_elementwise_sound(op, lower, upper, params)
    # float32 intervals and slopes
    r = op.relax(lower.float(), upper.float(), torch.randn(2, *lower.shape, generator=g))
    x = sample_points(lower.float().double(), upper.float().double(), 200)
    fx = op.function(x)
    finite = torch.isfinite(lower.float()) & torch.isfinite(upper.float())
    below = r.lower_slope.double() * x + r.lower_intercept.double()
    above = r.upper_slope.double() * x + r.upper_intercept.double()
    assert bool(((below <= fx) | ~finite).all()) and bool(((above >= fx) | ~finite).all())


def test_lines_touch_f_at_the_extremes_and_are_exact_without_a_knot_inside():
    op = random_pwl(7)
    knots = op._knots("cpu")
    knots = knots[torch.isfinite(knots)].sort().values
    # between two consecutive knots f is linear: both chord lines are f itself
    lower, upper = knots[:-1] + 1e-3, knots[1:] - 1e-3
    keep = upper > lower
    lower, upper = lower[keep], upper[keep]
    r = op.relax(lower, upper)
    x = sample_points(lower, upper, 50)
    fx = op.function(x)
    below = r.lower_slope * x + r.lower_intercept
    above = r.upper_slope * x + r.upper_intercept
    assert bool((below <= fx).all() and (above >= fx).all())
    assert bool((above - below <= 1e-10 * (1 + fx.abs())).all())  # exact up to the ulp padding
    assert not bool(op.refinement_mask(Interval(lower, upper)).any())
    # on a wide interval the interval bound is the exact range (up to padding)
    wide_l, wide_u = torch.tensor([-20.0]), torch.tensor([20.0])
    box = op.interval(Interval(wide_l.double(), wide_u.double()))
    dense = op.function(torch.linspace(-20, 20, 200001, dtype=torch.float64))
    assert math.isclose(float(box.lower), float(dense.min()), rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(float(box.upper), float(dense.max()), rel_tol=1e-6, abs_tol=1e-9)


def test_branch_point_is_a_knot_inside():
    op = random_pwl(3)
    lower, upper = torch.tensor([-10.0, 0.0, 5.0], dtype=torch.float64), torch.tensor([10.0, 0.0, 5.0 + 1e-9])
    point = op.branch_point(lower, upper.double())
    assert bool((point >= lower).all() and (point <= upper.double()).all())
    knots = op._knots("cpu")
    assert bool((knots - point[0]).abs().nan_to_num(1.0).min() < 1e-12)


def test_the_rewrite_keeps_the_function_and_gives_sound_tighter_bounds():
    for seed in range(3):
        graph = lookup_net(seed, hidden=4, knots=12)
        fused = fuse_lookup_tables(graph)
        assert [type(n.op).__name__ for n in fused.nodes[1:]] == ["MatMulConst", "PiecewiseLinear", "MatMulConst"]
        box = unit_box(graph.input_size)
        xs = sample(box)
        y = graph.forward(xs)[:, 0]
        assert torch.allclose(fused.forward(xs)[:, 0], y, rtol=1e-12, atol=1e-12)
        C = torch.ones(1, 1, 1, dtype=torch.float64)
        plain = float(spec_lower_bound(graph, intermediate_bounds(graph, box), C)[0, 0])
        better = float(spec_lower_bound(fused, intermediate_bounds(fused, box), -C)[0, 0])
        lower = float(spec_lower_bound(fused, intermediate_bounds(fused, box), C)[0, 0])
        assert lower <= float(y.min()) and -better >= float(y.max())
        assert lower >= plain - 1e-9, (seed, lower, plain)


def test_a_table_with_other_consumers_is_left_alone():
    from curvebound.graph.ir import Graph, Node
    from curvebound.ops.linear import Add2

    graph = lookup_net(0, hidden=4, knots=12)
    nodes = list(graph.nodes)
    relu = next(n for n in nodes if type(n.op).__name__ == "Relu")
    assert any(type(n.op).__name__ == "PiecewiseLinear" for n in fuse_lookup_tables(graph).nodes)
    # a second consumer of the ReLU outputs: the rewrite would change what it reads
    extra = Node(len(nodes), "extra", Add2(), (relu.index, relu.index), relu.shape)
    nodes.append(extra)
    changed = fuse_lookup_tables(Graph(nodes, extra.index))
    assert not any(type(n.op).__name__ == "PiecewiseLinear" for n in changed.nodes)


def test_no_branching_point_table_is_built_for_it():
    """Its split points are its knots (structural): no per-model table may ever be built."""
    from curvebound.bab.branch_points import lookup_branch_points, table_key

    op = random_pwl(0)
    assert table_key(op) is None
    lower, upper = torch.tensor([-10.0], dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64)
    assert torch.equal(lookup_branch_points(op, lower, upper), op.branch_point(lower, upper))


def test_intervals_ending_on_or_next_to_knots():
    """Knots exactly at, one ulp inside and one ulp outside the ends: the extremes are still found."""
    op = random_pwl(11)
    knots = op._knots("cpu")
    knots = knots[torch.isfinite(knots)]
    up = torch.nextafter(knots, torch.full_like(knots, math.inf))
    down = torch.nextafter(knots, torch.full_like(knots, -math.inf))
    lowers, uppers = [], []
    for a in (knots, up, down):
        for width in (0.0, 1e-9, 0.3, 5.0):
            lowers.append(a)
            uppers.append(a + width)
            lowers.append(a - width)
            uppers.append(a)
    lower, upper = torch.cat(lowers), torch.cat(uppers)
    assert_elementwise_sound(op, lower, upper)
    g = torch.Generator().manual_seed(0)
    assert_elementwise_sound(op, lower, upper, torch.randn(2, *lower.shape, generator=g, dtype=torch.float64) * 3)


@pytest.mark.parametrize("seed", range(3))
def test_lines_hold_with_no_tolerance(seed):
    """The padding covers the rounding of f itself: checked with no slack at all (float64)."""
    op = random_pwl(seed, knots=40)
    lower, upper = interval_cases(n_random=40, seed=seed)
    finite = torch.isfinite(lower) & torch.isfinite(upper)
    lower, upper = lower[finite], upper[finite]
    g = torch.Generator().manual_seed(seed)
    for params in (None, torch.randn(2, *lower.shape, generator=g, dtype=torch.float64) * 5):
        r = op.relax(lower, upper, params)
        x = sample_points(lower, upper, 400)
        fx = op.function(x)
        assert bool((r.lower_slope * x + r.lower_intercept <= fx).all())
        assert bool((r.upper_slope * x + r.upper_intercept >= fx).all())
        box = op.interval(Interval(lower, upper))
        assert bool((fx >= box.lower).all() and (fx <= box.upper).all())
