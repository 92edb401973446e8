"""Whole-network bounds contain sampled outputs; CROWN is exact on affine networks; alpha-CROWN
never loses to CROWN."""

import pytest
import torch

from curvebound.bounds.alpha import (
    AlphaOptions,
    intermediate_param_elements,
    optimize_spec_bound,
    still_improving,
)
from curvebound.bounds.crown import (
    backward_bound,
    crown_node_bounds,
    crown_targets,
    intermediate_bounds,
    max_with_gradient_to,
    nodes_needing_bounds,
    spec_lower_bound,
)
from curvebound.bounds.ibp import ibp
from curvebound.graph.ir import Graph, Node
from curvebound.ops.base import Interval
from curvebound.ops.linear import Add2, MatMulConst, ScaleShift
from curvebound.ops.relu import LeakyRelu, Relu
from curvebound.ops.shape import Reshape


def random_graph(seed: int, activations=(Relu, LeakyRelu), widths=(4, 8, 8, 3), residual=True) -> Graph:
    """An MLP with random activations and, optionally, a residual Add of two perturbed nodes."""
    g = torch.Generator().manual_seed(seed)
    nodes = [Node(0, "x", None, (), (widths[0],))]

    def add(op, inputs, shape):
        nodes.append(Node(len(nodes), f"n{len(nodes)}", op, tuple(inputs), shape))
        return len(nodes) - 1

    last = 0
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        w = torch.randn(a, b, generator=g, dtype=torch.float64) / a**0.5 * 2
        bias = torch.randn(b, generator=g, dtype=torch.float64) * 0.5
        pre = add(MatMulConst(w, bias, in_rank=1), [last], (b,))
        if i == len(widths) - 2:
            last = pre
            break
        act_cls = activations[int(torch.randint(len(activations), (1,), generator=g))]
        act = add(act_cls(), [pre], (b,))
        if residual and a == b:
            act = add(Add2(1.0, 1), [act, last], (b,))
        last = act
    return Graph(nodes, last)


def sample_box(graph: Graph, box: Interval, n: int = 4000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, *box.lower.shape[1:], generator=g, dtype=torch.float64)
    corners = torch.randint(0, 2, (n // 4, *box.lower.shape[1:]), generator=g).to(torch.float64)
    t = torch.cat([t, corners])
    return box.lower + t * (box.upper - box.lower)


@pytest.mark.parametrize("seed", range(8))
def test_crown_and_ibp_contain_sampled_values_of_every_node(seed):
    graph = random_graph(seed)
    box = Interval(-torch.ones(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.float64) * 0.5)
    x = sample_box(graph, box)
    values = graph.forward_all(x)
    for method_bounds in (ibp(graph, box), intermediate_bounds(graph, box)):
        for node, b in zip(graph.nodes, method_bounds):
            v = values[node.index]
            assert torch.all(v >= b.lower - 1e-9), node
            assert torch.all(v <= b.upper + 1e-9), node


@pytest.mark.parametrize("seed", range(8))
def test_spec_bounds_are_sound_and_at_least_as_tight_as_ibp(seed):
    graph = random_graph(seed)
    box = Interval(-torch.ones(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.float64))
    C = torch.randn(5, 1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    bounds = intermediate_bounds(graph, box)
    lower = spec_lower_bound(graph, bounds, C)
    ibp_lower = spec_lower_bound(graph, ibp(graph, box), C, method="ibp")
    y = graph.forward(sample_box(graph, box))
    sampled_min = (y @ C[:, 0, :].T).min(0).values
    assert torch.all(lower[:, 0] <= sampled_min + 1e-9)
    assert torch.all(lower >= ibp_lower - 1e-12)


def test_crown_is_exact_on_an_affine_network():
    g = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    nodes = [Node(0, "x", None, (), (4,)), Node(1, "h", MatMulConst(w1, in_rank=1), (0,), (6,)),
             Node(2, "y", MatMulConst(w2, in_rank=1), (1,), (2,))]
    graph = Graph(nodes, 2)
    box = Interval(-torch.ones(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.float64))
    C = torch.eye(2, dtype=torch.float64)[:, None, :]
    lower = backward_bound(graph, ibp(graph, box), 2, C)
    exact = -(w1 @ w2).abs().sum(0)  # min over the box of each output
    assert torch.allclose(lower[:, 0], exact)
    assert torch.all(lower[:, 0] > ibp(graph, box)[2].lower[0] + 1e-6)  # IBP is strictly looser here


@pytest.mark.parametrize("seed", range(4))
def test_alpha_crown_is_sound_and_never_looser_than_crown(seed):
    graph = random_graph(seed + 10, widths=(4, 16, 16, 16, 2), residual=False)
    box = Interval(-torch.ones(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.float64))
    C = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)[:, None, :]
    bounds = intermediate_bounds(graph, box)
    crown = spec_lower_bound(graph, bounds, C)
    result = optimize_spec_bound(graph, box, C, torch.zeros(2, dtype=torch.float64), torch.tensor([0, 1]),
                                 bounds, crown, None)
    y = graph.forward(sample_box(graph, box))
    sampled_min = (y @ C[:, 0, :].T).min(0).values
    assert torch.all(result.lower >= crown - 1e-12)
    assert torch.all(result.lower[:, 0] <= sampled_min + 1e-9)


def test_max_with_gradient_to_takes_the_max_and_sends_the_gradient_to_the_primary_bound():
    primary = torch.tensor([-torch.inf, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    other = torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64, requires_grad=True)
    value = max_with_gradient_to(primary, other)
    assert value.tolist() == [0.0, 2.0, 3.0]  # no NaN where the primary bound is -inf
    value.sum().backward()
    assert primary.grad.tolist() == [0.0, 1.0, 1.0]  # where `other` wins, the primary still gets it
    assert other.grad.tolist() == [1.0, 0.0, 0.0]  # only where the primary is not finite
    far = max_with_gradient_to(torch.tensor([-1e20], dtype=torch.float64), torch.tensor([-3.0], dtype=torch.float64))
    assert far.item() == -3.0  # the value is the max exactly, never a rounded sum


def test_bounds_behind_pointwise_chains_come_from_crown_at_the_chain_head():
    """A 'lookup table' block (ml4acopf): ``relu(reshape(x W) + shift) . w``. CROWN runs at the
    MatMul (4 rows), not at the 4x6 broadcast sum, and the bounds there equal direct CROWN ones."""
    g = torch.Generator().manual_seed(3)

    def weight(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    nodes = [Node(0, "x", None, (), (3,)),
             Node(1, "h", MatMulConst(weight(3, 8), None, in_rank=1), (0,), (8,)),
             Node(2, "r", Relu(), (1,), (8,)),
             Node(3, "z", MatMulConst(weight(8, 4), None, in_rank=1), (2,), (4,)),
             Node(4, "col", Reshape((4, 1)), (3,), (4, 1)),
             Node(5, "grid", ScaleShift(None, torch.linspace(-2, 2, 6, dtype=torch.float64), 2), (4,), (4, 6)),
             Node(6, "act", Relu(), (5,), (4, 6)),
             Node(7, "y", MatMulConst(weight(6), None, in_rank=2), (6,), (4,))]
    graph = Graph(nodes, 7)
    targets = crown_targets(graph, nodes_needing_bounds(graph))
    assert targets == {1: [[1]], 3: [[3, 4, 5]]}  # node 5 is served by CROWN at node 3
    box = Interval(-torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64))
    bounds = intermediate_bounds(graph, box)
    rows = torch.arange(24)
    lb, ub = crown_node_bounds(graph, bounds, 5, rows)  # CROWN straight at the broadcast node
    assert torch.allclose(bounds[5].lower.reshape(1, -1), torch.maximum(lb, ibp(graph, box)[5].lower.reshape(1, -1)))
    assert torch.allclose(bounds[5].upper.reshape(1, -1), torch.minimum(ub, ibp(graph, box)[5].upper.reshape(1, -1)))
    y = graph.forward(sample_box(graph, box))
    assert torch.all(y >= bounds[7].lower - 1e-9) and torch.all(y <= bounds[7].upper + 1e-9)


def _difference_of_two_outputs(seed: int):
    """A 4-16-16-2 random MLP on [-1, 1]^4 with the spec ``y0 - y1``: graph, box, C, CROWN bounds."""
    graph = random_graph(seed, widths=(4, 16, 16, 2), residual=False)
    box = Interval(-torch.ones(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.float64))
    C = torch.tensor([[1.0, -1.0]], dtype=torch.float64)[:, None, :]
    bounds = intermediate_bounds(graph, box)
    return graph, box, C, bounds, spec_lower_bound(graph, bounds, C)


def test_alpha_crown_with_frozen_intermediate_bounds_optimizes_only_the_output():
    graph, box, C, bounds, crown = _difference_of_two_outputs(21)
    options = AlphaOptions(max_intermediate_params=0)
    assert intermediate_param_elements(graph, bounds) > 0
    result = optimize_spec_bound(graph, box, C, torch.full((1,), 1e9, dtype=torch.float64), torch.tensor([0]),
                                 bounds, crown, options)
    assert {start for _, start in result.params.values} == {graph.output}
    y = graph.forward(sample_box(graph, box))
    assert torch.all(result.lower >= crown - 1e-12)
    assert result.lower[0, 0] > crown[0, 0]  # the output's slopes alone still tighten the bound
    assert result.lower[0, 0] <= (y @ C[0, 0]).min() + 1e-9


def test_still_improving_tells_a_steady_climb_from_a_plateau():
    times = [float(t) for t in range(1, 31)]
    climbing = [(t, -1.0 / t) for t in times]  # -0.05 at 20 s, -0.033 at 30 s: gains half its size
    plateau = [(t, -0.7 - 0.1 / t) for t in times]  # -0.705 at 20 s, -0.703 at 30 s
    assert still_improving(climbing, 0.25)
    assert not still_improving(plateau, 0.25)
    assert still_improving(plateau[:2], 0.25)  # too short to judge
    assert not still_improving(climbing + [(31.0, 0.01)], 0.25)  # refuted: nothing left to gain
    assert not still_improving(climbing + [(31.0, -torch.inf)], 0.25)


def test_alpha_stops_past_the_soft_deadline_unless_still_improving():
    graph, box, C, bounds, crown = _difference_of_two_outputs(12)
    rhs, groups = torch.full((1,), 1e9, dtype=torch.float64), torch.tensor([0])
    never_enough = AlphaOptions(iterations=20, patience=20, extend_min_gain=torch.inf)
    stopped = optimize_spec_bound(graph, box, C, rhs, groups, bounds, crown, never_enough, soft_deadline=0.0)
    assert stopped.iterations == 3 and len(stopped.history) == 3  # three to judge the trend, then stop
    always = AlphaOptions(iterations=20, patience=20, extend_min_gain=-torch.inf)
    went_on = optimize_spec_bound(graph, box, C, rhs, groups, bounds, crown, always, soft_deadline=0.0)
    assert went_on.iterations == 20
    assert [m for _, m in went_on.history] == sorted(m for _, m in went_on.history)  # best so far
