"""Split nodes, candidate masks, branching points, shortcuts and the beta hook."""

from __future__ import annotations

import torch

from curvebound.bab.beta import SplitHistory, beta_hook
from curvebound.bab.branching import (
    branch_points,
    candidate_mask,
    compute_shortcuts,
    find_split_nodes,
)
from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.graph.ir import Graph, Node
from curvebound.ops.base import Interval
from curvebound.ops.linear import MatMulConst
from curvebound.ops.relu import Relu
from curvebound.ops.s_shaped import Sigmoid, Tanh

from .nets import mlp, product_net, sample, unit_box

F64 = torch.float64


def test_split_nodes_are_bounded_inputs_of_splittable_ops():
    graph = mlp(0, Relu)
    assert [s.index for s in find_split_nodes(graph)] == [1, 3]
    prod = product_net(0)
    (left, right) = find_split_nodes(prod)
    assert (left.index, right.index) == (1, 2)
    assert left.consumers == [(3, 0)] and right.consumers == [(3, 1)]


def test_candidate_masks():
    lower = torch.tensor([[-1.0, 0.5, -12.0, 11.0, -0.001, -3.0]], dtype=F64)
    upper = torch.tensor([[1.0, 2.0, -11.0, 12.0, 0.004, 3.0]], dtype=F64)
    relu = find_split_nodes(mlp(0, Relu, widths=(3, 6, 1)))[0]
    sig = find_split_nodes(mlp(0, Sigmoid, widths=(3, 6, 1)))[0]
    g_relu, g_sig = mlp(0, Relu, widths=(3, 6, 1)), mlp(0, Sigmoid, widths=(3, 6, 1))
    assert candidate_mask(g_relu, relu, lower, upper).tolist() == [[True, False, False, False, True, True]]
    # saturated intervals (entirely outside [-10, 10]) and widths < 0.01 are not split for sigmoid
    assert candidate_mask(g_sig, sig, lower, upper).tolist() == [[True, True, False, False, False, True]]
    assert not candidate_mask(g_sig, sig, lower, upper, relu_only=True).any()


def test_branch_points_inside_and_zero_for_relu_and_crossing_products():
    lower = torch.tensor([-1.0, 0.5, -3.0], dtype=F64)
    upper = torch.tensor([2.0, 2.0, -1.0], dtype=F64)
    g_relu = mlp(0, Relu, widths=(3, 3, 1))
    assert branch_points(g_relu, find_split_nodes(g_relu)[0], lower, upper)[0] == 0
    prod = product_net(0, hidden=3)
    p = branch_points(prod, find_split_nodes(prod)[0], lower, upper, "midpoint")
    assert p.tolist() == [0.0, 1.25, -2.0]
    g_tanh = mlp(0, Tanh, widths=(3, 3, 1))
    for method in ("midpoint", "optimized"):
        p = branch_points(g_tanh, find_split_nodes(g_tanh)[0], lower, upper, method)
        assert bool(((p > lower) & (p < upper)).all())


def test_shortcuts_bound_every_split_node_on_the_box():
    graph = mlp(2, Tanh, widths=(3, 6, 6, 1), scale=1.5)
    box = unit_box(3)
    bounds = intermediate_bounds(graph, box)
    splits = find_split_nodes(graph)
    masks = {s.index: torch.ones(s.size, dtype=torch.bool) for s in splits}
    cuts = compute_shortcuts(graph, bounds, splits, masks)
    x = sample(box, 5000)
    values = graph.forward_all(x)
    for s in splits:
        c = cuts[s.index]
        z = values[s.index].reshape(len(x), -1)[:, c.rows]
        assert torch.all(z >= x @ c.WL.T + c.cL - 1e-9)
        assert torch.all(z <= x @ c.WU.T + c.cU + 1e-9)


def _history(nodes, index, sign, point) -> SplitHistory:
    return SplitHistory(torch.tensor(nodes), torch.tensor(index), torch.tensor(sign, dtype=F64),
                        torch.tensor(point, dtype=F64))


def test_beta_terms_are_sound_for_any_nonnegative_beta():
    """Domains with two split constraints each; random beta >= 0; sampled points that satisfy a domain's
    constraints never go below its bound."""
    for act in (Relu, Sigmoid):
        graph = mlp(4, act, widths=(3, 6, 6, 1), scale=1.5)
        box = unit_box(3)
        bounds = intermediate_bounds(graph, box)
        x = sample(box, 20000)
        values = graph.forward_all(x)
        z1, z3 = values[1], values[3]
        # domain 0: z1[2] <= m1, z3[4] >= m3; domain 1: z1[2] >= m1, z3[4] <= m3 (medians: both non-empty)
        m1, m3 = float(z1[:, 2].median()), float(z3[:, 4].median())
        hist = _history([[1, 3], [1, 3]], [[2, 4], [2, 4]], [[-1, 1], [1, -1]], [[m1, m3], [m1, m3]])
        n = 2
        batch_bounds = [None if b is None else Interval(b.lower.expand(n, *b.lower.shape[1:]),
                                                        b.upper.expand(n, *b.upper.shape[1:])) for b in bounds]
        C = torch.ones(1, n, 1, dtype=F64)
        inside = [(z1[:, 2] <= m1) & (z3[:, 4] >= m3), (z1[:, 2] >= m1) & (z3[:, 4] <= m3)]
        y = values[graph.output][:, 0]
        g = torch.Generator().manual_seed(0)
        for trial in range(5):
            beta = torch.rand(1, n, 2, generator=g, dtype=F64) * 10 ** (trial - 2)
            lb = spec_lower_bound(graph, batch_bounds, C, hook=beta_hook(hist, beta))[0]
            for d in range(n):
                assert inside[d].any()
                assert float(y[inside[d]].min()) >= float(lb[d]) - 1e-9, (act, trial, d)


def _two_copies_net() -> Graph:
    """``z = (x, x + 5)``, ``y = relu(z_2) - 5 + 0 * relu(z_1)``: y = x on [-1, 1]."""
    nodes = [Node(0, "x", None, (), (1,))]
    nodes.append(Node(1, "z", MatMulConst(torch.tensor([[1.0, 1.0]], dtype=F64),
                                          torch.tensor([0.0, 5.0], dtype=F64), in_rank=1), (0,), (2,)))
    nodes.append(Node(2, "h", Relu(), (1,), (2,)))
    nodes.append(Node(3, "y", MatMulConst(torch.tensor([[0.0], [1.0]], dtype=F64),
                                          torch.tensor([-5.0], dtype=F64), in_rank=1), (2,), (1,)))
    return Graph(nodes, 3)


def test_split_on_early_relu_tightens_only_through_beta():
    """Split z_1 >= 0 on y = x, x in [-1, 1]: the interval change alone cannot move the bound (y does
    not depend on relu(z_1)); the beta term lifts it from -1 to 0."""
    graph = _two_copies_net()
    box = Interval(-torch.ones(1, 1, dtype=F64), torch.ones(1, 1, dtype=F64))
    bounds = intermediate_bounds(graph, box)
    bounds[1] = Interval(torch.tensor([[0.0, 4.0]], dtype=F64), bounds[1].upper)  # the child z_1 >= 0
    C = torch.ones(1, 1, 1, dtype=F64)
    hist = _history([[1]], [[0]], [[1.0]], [[0.0]])
    without = spec_lower_bound(graph, bounds, C, hook=beta_hook(hist, torch.zeros(1, 1, 1, dtype=F64)))
    with_beta = spec_lower_bound(graph, bounds, C, hook=beta_hook(hist, torch.ones(1, 1, 1, dtype=F64)))
    assert abs(float(without) + 1.0) < 1e-9
    assert abs(float(with_beta)) < 1e-9


def test_later_candidates_come_from_the_better_child_ranking_too():
    """With ``Lam = -1`` on ``x^2`` (upper chord), midpoint splits: neuron A on [-1, 1] gains 1 in both
    children, C on [-0.8, 0.8] 0.64 in both, B on [-0.1, 10] 0.505 in one and 50.5 in the other. The
    worse-child ranking is A, C, B; the second candidate is B all the same, the better-child ranking's
    best, which filtering then judges by real bounds (estimates can be far off: ``split_candidates``)."""
    from curvebound.bab.branching import ScoreInputs, split_candidates
    from curvebound.ops.convex import Square

    nodes = [Node(0, "x", None, (), (3,)), Node(1, "sq", Square(), (0,), (3,))]
    nodes.append(Node(2, "y", MatMulConst(torch.ones(3, 1, dtype=F64), torch.zeros(1, dtype=F64), in_rank=1),
                      (1,), (1,)))
    graph = Graph(nodes, 2)
    splits = find_split_nodes(graph)
    lower = torch.tensor([[-1.0, -0.1, -0.8]], dtype=F64)
    upper = torch.tensor([[1.0, 10.0, 0.8]], dtype=F64)
    inputs = ScoreInputs({0: lower}, {0: upper}, {1: -torch.ones(1, 1, 3, dtype=F64)},
                         torch.tensor([[-100.0]], dtype=F64), torch.zeros(1, dtype=torch.long), 1,
                         Interval(lower, upper))
    candidates = split_candidates(graph, splits, inputs, 3, method="babsr", point_method="midpoint")
    assert [int(c.index[0]) for c in candidates] == [0, 1, 2]
    assert all(bool(c.valid[0]) for c in candidates)
    assert float(candidates[1].point[0]) == 4.95
    (only,) = split_candidates(graph, splits, inputs, 1, method="babsr", point_method="midpoint")
    assert int(only.index[0]) == 0
