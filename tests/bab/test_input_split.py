"""Input-space branch-and-bound: proves what plain CROWN cannot, finds real counterexamples, honours
the deadline, never claims a property that dense sampling violates, and clips soundly."""

import time

import pytest
import torch

from curvebound.bab.input_split import InputSplitOptions, clip_boxes, input_split_bab, input_split_suitable
from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.graph.ir import Graph, Node
from curvebound.ops.base import Interval
from curvebound.ops.linear import MatMulConst
from curvebound.ops.relu import Relu
from curvebound.ops.s_shaped import Sigmoid


def mlp(seed: int, widths=(2, 16, 16, 1), activation=Relu) -> Graph:
    g = torch.Generator().manual_seed(seed)
    nodes = [Node(0, "x", None, (), (widths[0],))]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        w = torch.randn(a, b, generator=g, dtype=torch.float64) / a**0.5 * 1.5
        bias = torch.randn(b, generator=g, dtype=torch.float64) * 0.3
        nodes.append(Node(len(nodes), f"fc{i}", MatMulConst(w, bias, in_rank=1), (len(nodes) - 1,), (b,)))
        if i < len(widths) - 2:
            nodes.append(Node(len(nodes), f"act{i}", activation(), (len(nodes) - 1,), (b,)))
    return Graph(nodes, len(nodes) - 1)


def grid(box: Interval, per_dim: int = 120) -> torch.Tensor:
    lo, hi = box.lower[0], box.upper[0]
    axes = [torch.linspace(float(a), float(b), per_dim, dtype=torch.float64) for a, b in zip(lo, hi)]
    return torch.cartesian_prod(*axes).reshape(-1, len(axes))


def unit_box(n: int = 2) -> Interval:
    return Interval(-torch.ones(1, n, dtype=torch.float64), torch.ones(1, n, dtype=torch.float64))


def one_row(graph: Graph, box: Interval, offset: float):
    """Violated iff y <= rhs with rhs = sampled min + offset (C = [1], one disjunct)."""
    y = graph.forward(grid(box)).reshape(-1)
    C = torch.ones(1, 1, dtype=torch.float64)
    rhs = torch.tensor([float(y.min()) + offset], dtype=torch.float64)
    return C, rhs, torch.zeros(1, dtype=torch.long)


@pytest.mark.parametrize("activation", [Relu, Sigmoid])
def test_verifies_what_crown_alone_cannot(activation):
    graph, box = mlp(3, activation=activation), unit_box()
    box = Interval(box.lower * 2, box.upper * 2)
    C, rhs, groups = one_row(graph, box, -0.05)
    with torch.no_grad():
        crown = spec_lower_bound(graph, intermediate_bounds(graph, box), C[:, None, :])
    assert float(crown[0, 0]) <= float(rhs[0]), "setup: plain CROWN must not prove this property"
    out = input_split_bab(graph, box, C, rhs, groups, deadline=time.monotonic() + 30)
    assert out.status == "verified", out.reason
    assert out.domains_explored > 1 and out.history


def test_naive_branching_and_alpha_also_verify():
    graph, box = mlp(3), unit_box()
    C, rhs, groups = one_row(graph, box, -0.05)
    opts = InputSplitOptions(branching="naive", alpha_iterations=3, clip=False, batch=16)
    out = input_split_bab(graph, box, C, rhs, groups, deadline=time.monotonic() + 30, options=opts)
    assert out.status == "verified", out.reason


@pytest.mark.parametrize("activation", [Relu, Sigmoid])
def test_finds_a_real_counterexample(activation):
    graph, box = mlp(5, widths=(3, 12, 12, 1), activation=activation), unit_box(3)
    C, rhs, groups = one_row(graph, box, 0.02)
    out = input_split_bab(graph, box, C, rhs, groups, deadline=time.monotonic() + 30)
    assert out.status == "counterexample"
    x = torch.as_tensor(out.x, dtype=torch.float64).reshape(1, 3)
    assert bool((x >= box.lower).all() and (x <= box.upper).all())
    assert float(graph.forward(x).reshape(-1)[0]) <= float(rhs[0])


def test_two_disjuncts_of_two_rows():
    """Violated iff (y0 <= a and y1 <= b) or (y0 - y1 <= c and -y0 <= d): verified with slack from sampling."""
    graph, box = mlp(7, widths=(2, 12, 12, 2)), unit_box()
    y = graph.forward(grid(box))
    C = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0], [-1.0, 0.0]], dtype=torch.float64)
    values = y @ C.T  # [points, rows]
    groups = torch.tensor([0, 0, 1, 1])
    # each disjunct: the first row above its sampled min, the second row 0.05 below its min given the first
    rhs = torch.stack([values[:, 0].median(), values[:, 1].min() - 0.05, values[:, 2].median(),
                       values[:, 3].min() - 0.05])
    out = input_split_bab(graph, box, C, rhs, groups, deadline=time.monotonic() + 30)
    assert out.status == "verified", out.reason


def test_deadline_in_the_past_times_out_quickly():
    graph, box = mlp(3), unit_box()
    C, rhs, groups = one_row(graph, box, -0.05)
    t = time.monotonic()
    out = input_split_bab(graph, box, C, rhs, groups, deadline=t - 1.0)
    assert out.status == "timeout"
    assert time.monotonic() - t < 0.5


@pytest.mark.parametrize("seed", range(6))
def test_verified_means_no_sampled_violation(seed):
    graph, box = mlp(seed, widths=(2, 10, 10, 1), activation=Relu if seed % 2 else Sigmoid), unit_box()
    y = graph.forward(grid(box, 150)).reshape(-1)
    rhs = torch.tensor([float(y.min()) - 0.02 + 0.04 * (seed % 3 == 0)], dtype=torch.float64)
    C, groups = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.long)
    out = input_split_bab(graph, box, C, rhs, groups, deadline=time.monotonic() + 20)
    if out.status == "verified":
        assert float(y.min()) > float(rhs[0])
    if out.status == "counterexample":
        x = torch.as_tensor(out.x, dtype=torch.float64).reshape(1, 2)
        assert float(graph.forward(x).reshape(-1)[0]) <= float(rhs[0])
    assert out.status in ("verified", "counterexample")


def test_clipping_keeps_every_point_that_satisfies_the_linear_constraints():
    g = torch.Generator().manual_seed(0)
    n, batch = 3, 50
    lower = torch.rand(batch, n, generator=g, dtype=torch.float64) - 1
    upper = lower + torch.rand(batch, n, generator=g, dtype=torch.float64) * 2
    coeff = torch.randn(3, batch, n, generator=g, dtype=torch.float64)
    coeff[0, :, 1] = 0.0
    bias = torch.randn(3, batch, generator=g, dtype=torch.float64)
    rhs = torch.zeros(3, dtype=torch.float64)
    groups = torch.tensor([0, 0, 1])  # disjunct 0 = rows 0 and 1, disjunct 1 = row 2
    open_ = torch.ones(2, batch, dtype=torch.bool)
    new_lo, new_hi = clip_boxes(lower, upper, coeff, bias, rhs, groups, open_)
    assert bool((new_lo >= lower).all() and (new_hi <= upper).all())
    t = torch.rand(4000, batch, n, generator=g, dtype=torch.float64)
    x = lower + t * (upper - lower)  # [points, batch, n]
    lin = torch.einsum("rbn,pbn->prb", coeff, x) + bias  # [points, rows, batch]
    feasible = ((lin[:, 0] <= 0) & (lin[:, 1] <= 0)) | (lin[:, 2] <= 0)  # [points, batch]
    inside = ((x >= new_lo) & (x <= new_hi)).all(-1)
    assert bool((inside | ~feasible).all()), "clipping removed a point that may violate"
    assert bool((new_hi - new_lo < upper - lower).any()), "clipping should shrink some box"


def test_suitability_counts_perturbed_dimensions():
    few = Interval(torch.zeros(1, 100, dtype=torch.float64), torch.zeros(1, 100, dtype=torch.float64))
    few.upper[0, :5] = 1.0
    assert input_split_suitable(Graph([Node(0, "x", None, (), (100,))], 0), few)
    many = Interval(torch.zeros(1, 100, dtype=torch.float64), torch.ones(1, 100, dtype=torch.float64))
    assert not input_split_suitable(Graph([Node(0, "x", None, (), (100,))], 0), many)


def test_deadline_inside_a_round_reports_timeout_with_the_domains_explored(monkeypatch):
    """A deadline that passes inside a round's CROWN (TimeLimitReached) ends as ``timeout``, keeping
    the count of boxes explored (the bench used to show 0 domains for such runs)."""
    from curvebound.bab import input_split
    from curvebound.errors import TimeLimitReached

    original = input_split._process_children
    calls = []

    def second_call_times_out(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise TimeLimitReached()
        return original(*args, **kwargs)

    monkeypatch.setattr(input_split, "_process_children", second_call_times_out)
    graph, box = mlp(3), unit_box()
    C, rhs, groups = one_row(graph, box, -0.05)
    out = input_split_bab(graph, box, C, rhs, groups, deadline=time.monotonic() + 30)
    assert out.status == "timeout" and len(calls) == 2
    assert out.domains_explored > 1
