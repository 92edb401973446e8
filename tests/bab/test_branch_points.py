"""Branching-point lookup table: points strictly inside, better than the midpoint, close to a brute-force
search, cached once per key, Mul with the other operand, warm-up."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

from curvebound.bab import branch_points as bp
from curvebound.ops.base import Interval
from curvebound.ops.bilinear import Mul2
from curvebound.ops.convex import Reciprocal
from curvebound.ops.periodic import Sin
from curvebound.ops.relu import Relu
from curvebound.ops.s_shaped import Tanh

INF = math.inf


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    """Every test builds into its own cache directory and starts with an empty memory cache."""
    directory = tmp_path / "tables"
    monkeypatch.setattr(bp, "table_directory", lambda: directory)
    bp.clear_table_cache()
    yield directory
    bp.clear_table_cache()


def total_loss(op, lower, point, upper, other=None):
    y = (None, None) if other is None else (other.lower, other.upper)
    return bp._child_loss(op, lower, point, *y) + bp._child_loss(op, point, upper, *y)


def brute_force(op, lower, upper, candidates=1000):
    """Best of ``candidates - 1`` evenly spaced ratios (the reference's search), per interval."""
    ratios = torch.arange(1, candidates, dtype=torch.float64) / candidates
    points = lower[:, None] + ratios * (upper - lower)[:, None]
    lo, up = (t[:, None].expand_as(points).reshape(-1) for t in (lower, upper))
    values = total_loss(op, lo, points.reshape(-1), up).reshape(points.shape)
    return values.min(dim=1).values


def test_points_strictly_inside_or_fallback():
    op = Tanh()
    g = torch.Generator().manual_seed(0)
    lower = torch.rand(300, generator=g, dtype=torch.float64) * 10 - 5
    width = torch.rand(300, generator=g, dtype=torch.float64) ** 3 * (5 - lower)
    upper = lower + width.clamp(min=1e-9)
    extra = torch.tensor([[-5.0, 5.0], [2.0, 2.03], [-1e6, 1e6], [-7.0, 3.0], [0.1, 0.1 + 1e-6]],
                         dtype=torch.float64)
    lower, upper = torch.cat([lower, extra[:, 0]]), torch.cat([upper, extra[:, 1]])
    for dtype in (torch.float64, torch.float32):
        lo, up = lower.to(dtype), upper.to(dtype)
        point = bp.lookup_branch_points(op, lo, up)
        assert point.dtype == dtype and point.shape == lo.shape
        interior = torch.nextafter(lo, up) < up  # some float strictly between (float32 may collapse l, u)
        assert int(interior.sum()) >= 290
        assert bool(((point > lo) & (point < up))[interior].all())
        table_hit = point != op.branch_point(lo, up)
        assert int(table_hit.sum()) > 150  # most random intervals are served by the table
    # huge, out of range and narrower than half a grid step: exactly the operator's own point
    lo, up = extra[2:, 0], extra[2:, 1]
    assert torch.equal(bp.lookup_branch_points(op, lo, up), op.branch_point(lo, up))
    # infinite: the operator's point when strictly inside, else a finite point inside
    lo = torch.tensor([-INF, 1.0, -INF, -INF], dtype=torch.float64)
    up = torch.tensor([2.0, INF, INF, -3.0], dtype=torch.float64)
    point = bp.lookup_branch_points(op, lo, up)
    assert torch.equal(point, torch.tensor([0.0, 2.0, 0.0, -4.0], dtype=torch.float64))


def test_relu_like_and_domain_fallbacks():
    lower = torch.tensor([-1.0, -3.0, 0.5])
    upper = torch.tensor([2.0, 1.0, 4.0])
    # ReLU: 0 when crossing; a stable interval (never split in practice) still gets a point inside
    assert torch.equal(bp.lookup_branch_points(Relu(), lower, upper), torch.tensor([0.0, 0.0, 2.25]))
    assert bp.table_key(Relu()) is None
    # Reciprocal: two segments avoiding 0; an interval outside both falls back
    op = Reciprocal()
    lo = torch.tensor([0.2, -4.0, 0.01], dtype=torch.float64)
    up = torch.tensor([3.0, -0.5, 0.04], dtype=torch.float64)
    point = bp.lookup_branch_points(op, lo, up)
    assert bool(((point > lo) & (point < up)).all())
    assert point[2] == op.branch_point(lo, up)[2]
    assert point[0] < (lo[0] + up[0]) / 2 and point[1] > (lo[1] + up[1]) / 2  # towards the steep end
    spans = [(s, s + (r.shape[0] - 1) * bp.STEP) for s, r in zip(bp.get_table(op).starts, bp.get_table(op).ratios)]
    assert spans == [pytest.approx((-5.0, -0.05)), pytest.approx((0.05, 5.0))]


@pytest.mark.parametrize("op", [Tanh(), Sin()], ids=repr)
def test_table_point_beats_midpoint_and_matches_brute_force(op):
    lower = torch.tensor([-4.0, -2.3, -0.7, 0.31, -4.9, 1.2, -3.33], dtype=torch.float64)
    upper = torch.tensor([3.0, 0.4, 2.9, 4.77, -1.1, 2.05, 4.91], dtype=torch.float64)
    point = bp.lookup_branch_points(op, lower, upper)
    table = total_loss(op, lower, point, upper)
    midpoint = total_loss(op, lower, (lower + upper) / 2, upper)
    best = brute_force(op, lower, upper)
    assert bool((table <= midpoint * (1 + 1e-3)).all())  # no worse, up to the grid's resolution
    assert bool((table <= best * 1.03).all()), (table / best)
    assert float((midpoint / best).max()) > 1.2  # the midpoint is clearly worse somewhere


def test_cache_reuse(fresh_cache):
    op = Tanh()
    lower, upper = torch.tensor([-1.0, 0.5]), torch.tensor([2.0, 3.0])
    builds = bp.BUILD_STATS["builds"]
    first = bp.lookup_branch_points(op, lower, upper)
    assert bp.BUILD_STATS["builds"] == builds + 1
    path = bp.table_path(bp.table_key(op))
    assert path.is_file() and path.parent == fresh_cache and f"_v{bp.TABLE_VERSION}_" in path.name
    assert torch.equal(bp.lookup_branch_points(op, lower, upper), first)  # memory
    bp.clear_table_cache()
    assert torch.equal(bp.lookup_branch_points(Tanh(), lower, upper), first)  # disk
    assert bp.BUILD_STATS["builds"] == builds + 1
    path.write_bytes(b"not a table")  # corrupt file: rebuilt once, then reused
    bp.clear_table_cache()
    assert torch.equal(bp.lookup_branch_points(op, lower, upper), first)
    assert bp.BUILD_STATS["builds"] == builds + 2


def test_keys_name_the_parameters_that_change_f():
    from curvebound.ops.convex import Pow, Square
    from curvebound.ops.gelu import Gelu

    keys = {bp.table_key(op) for op in (Gelu(), Gelu("tanh"), Pow(3.0), Pow(5.0), Square(), Mul2())}
    assert len(keys) == 6
    assert bp.table_key(Gelu("tanh")).startswith("Gelu(approximate='tanh')")
    assert "inputs=2" in bp.table_key(Mul2()) and bp.table_key(Gelu()) == bp.table_key(Gelu())


def test_mul_uses_the_other_operand():
    op = Mul2()
    lower = torch.tensor([0.5, -3.0, -2.0, 1.0], dtype=torch.float64)
    upper = torch.tensor([3.5, -1.0, 2.0, 2.0], dtype=torch.float64)
    other = Interval(torch.tensor([-1.0, 0.5, -4.0, 1.0], dtype=torch.float64),
                     torch.tensor([2.0, 4.0, 1.0, 1.0], dtype=torch.float64))  # last: zero width
    point = bp.lookup_branch_points(op, lower, upper, other)
    assert bool(((point > lower) & (point < upper)).all())
    # McCormick looseness is w_x^2 w_y^2 / 2 for any plane mix: the optimum is the midpoint
    mid = (lower + upper) / 2
    assert torch.allclose(point[:3], mid[:3], atol=0.02)
    assert point[3] == op.branch_point(lower, upper)[3]  # degenerate other operand: fallback
    assert torch.equal(bp.lookup_branch_points(op, lower, upper), op.branch_point(lower, upper))  # no other
    table = total_loss(op, lower[:3], point[:3], upper[:3], other[:3])
    assert bool((table <= total_loss(op, lower[:3], mid[:3], upper[:3], other[:3]) * (1 + 1e-6)).all())


def test_warmup_and_command(fresh_cache):
    ops = [Tanh(), Relu(), Reciprocal()]
    results = bp.warmup(ops, progress=False)
    assert [key for key, _ in results] == [bp.table_key(Tanh()), bp.table_key(Reciprocal())]
    assert all(seconds >= 0 for _, seconds in results)
    builds = bp.BUILD_STATS["builds"]
    bp.clear_table_cache()
    again = bp.warmup(ops, progress=False)  # loads from disk
    assert bp.BUILD_STATS["builds"] == builds and sum(s for _, s in again) < 1.0
    default = [op for op in bp.default_ops() if bp.table_key(op) is not None]
    assert len(default) == len(bp.default_ops()) and len({bp.table_key(op) for op in default}) == len(default)
    # the command prints one line per table (all tables preloaded in memory: no build here)
    for op in bp.default_ops():
        bp._TABLES[bp.table_key(op)] = bp._TABLES.get(bp.table_key(Tanh()))
    out = CliRunner().invoke(bp.warmup_command, ["--no-progress"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == len(bp.default_ops()) + 1 and "Sigmoid()" in out.output
