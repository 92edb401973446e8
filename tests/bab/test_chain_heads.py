"""Split nodes behind pointwise affine chains are cut at the chain's head: the map is recovered
exactly, a cut tightens every copy of the head element and nothing else, and branch-and-bound with
such cuts stays sound and verifies what a ReLU-by-ReLU split could not in the same budget."""

from __future__ import annotations

import time

import torch

from curvebound.bab.activation_split import GenBabOptions, _Bounder, activation_bab
from curvebound.bab.branching import Decision, find_split_nodes
from curvebound.bab.chain_heads import head_map
from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound

from .nets import lookup_net, mlp, sample, unit_box

ONE_ROW = torch.ones(1, 1, dtype=torch.float64)
GROUP = torch.zeros(1, dtype=torch.long)
HIDDEN, KNOTS = 4, 12
X, Z = 1, 3  # node indices in lookup_net: the head x and the broadcast ReLU input z


def test_head_map_recovers_the_broadcast():
    graph = lookup_net(0, hidden=HIDDEN, knots=KNOTS)
    found = head_map(graph, Z, torch.float64, "cpu")
    assert found is not None and found.head == X and found.chain == [X, 2, Z]
    assert torch.equal(found.index, torch.arange(HIDDEN).repeat_interleave(KNOTS))
    assert torch.allclose(found.scale, torch.ones(HIDDEN * KNOTS, dtype=torch.float64), rtol=0, atol=1e-15)
    assert torch.allclose(found.shift, -torch.linspace(-2.0, 2.0, KNOTS, dtype=torch.float64).repeat(HIDDEN))
    # a split node right after a MatMul has no chain
    from curvebound.ops.relu import Relu

    assert head_map(mlp(0, Relu), 1, torch.float64, "cpu") is None


def _bounder(graph):
    box = unit_box(graph.input_size)
    bounds = intermediate_bounds(graph, box)
    return _Bounder(graph, box, ONE_ROW, torch.zeros(1, dtype=torch.float64), GROUP, bounds,
                    find_split_nodes(graph), GenBabOptions(), None), box, bounds


def test_a_cut_tightens_every_copy_of_the_head_element_and_stays_sound():
    graph = lookup_net(1, hidden=HIDDEN, knots=KNOTS)
    bounder, box, bounds = _bounder(graph)
    root = bounder.root_domain(1)
    j = 1 * KNOTS + 5  # copy 5 of head element 1
    point = torch.tensor([0.0], dtype=torch.float64)  # cut that ReLU input at 0
    kids = bounder.children(root, Decision(torch.tensor([Z]), torch.tensor([j]), point, torch.tensor([True])))
    assert kids.history.node.tolist() == [[X], [X]] and kids.history.index.tolist() == [[1], [1]]
    below, above = kids.upper[Z][0], kids.lower[Z][1]
    copies = slice(KNOTS, 2 * KNOTS)
    # every copy of x_1 moved, the other head elements' copies did not
    assert bool((below[copies] < root.upper[Z][0, copies]).all())
    assert bool((above[copies] > root.lower[Z][0, copies]).all())
    assert torch.equal(kids.upper[Z][0, :KNOTS], root.upper[Z][0, :KNOTS])
    assert abs(float(below[j])) < 1e-12 and abs(float(above[j])) < 1e-12
    # each child's intervals contain every sampled point that satisfies the child's cut
    xs = sample(box, 20000)
    z = _node_value(graph, xs, Z).reshape(len(xs), -1)
    for k, side in ((0, z[:, j] <= 0), (1, z[:, j] >= 0)):
        inside = z[side]
        assert bool((inside >= kids.lower[Z][k] - 1e-12).all() and (inside <= kids.upper[Z][k] + 1e-12).all())


def _node_value(graph, xs, index):
    values = [xs]
    for node in graph.nodes[1:index + 1]:
        values.append(node.op.forward(*(values[i] for i in node.inputs)))
    return values[index]


def test_bab_with_head_cuts_is_sound_and_verifies_the_lookup_net():
    for seed in range(3):
        graph = lookup_net(seed, hidden=HIDDEN, knots=KNOTS)
        box = unit_box(graph.input_size)
        y = graph.forward(sample(box))[:, 0]
        low, span = float(y.min()), float(y.max() - y.min())
        bounds = intermediate_bounds(graph, box)
        crown = float(spec_lower_bound(graph, bounds, ONE_ROW[:, None, :])[0, 0])
        for rhs, violated in ((low + 1e-3 * span, True), (low - 0.02 * span, False)):
            out = activation_bab(graph, box, ONE_ROW, torch.tensor([rhs], dtype=torch.float64), GROUP,
                                 root_bounds=bounds, deadline=time.monotonic() + 20, options=GenBabOptions(batch=8))
            if violated:
                assert out.status != "verified", seed
            else:
                assert crown < rhs, seed  # the root bound alone does not prove it
                assert out.status == "verified", (seed, out.status, out.reason)


def test_head_cut_candidates_count_the_gain_on_every_copy():
    """The BaBSR-like gain of the other copies of a head element is never negative, and for the root
    of the lookup net some candidate's copies gain: a cut there tightens more than its own ReLU."""
    from curvebound.bab.branching import ScoreInputs, _sibling_gains, branch_points

    graph = lookup_net(2, hidden=HIDDEN, knots=KNOTS)
    bounder, box, _bounds = _bounder(graph)
    root = bounder.root_domain(1)
    bounder.bound(root)
    inputs = ScoreInputs(root.lower, root.upper, bounder.record_lambda(root), root.lower_bound, GROUP, 1, box)
    split = next(s for s in bounder.splits if s.index == Z)
    points = branch_points(graph, split, root.lower[Z], root.upper[Z])
    columns = torch.arange(split.size)
    gains = _sibling_gains(graph, split, inputs, points, bounder.heads[Z], columns)
    assert gains.shape == (1, 1, split.size, 2)
    assert bool((gains >= -1e-12).all()) and float(gains.amax()) > 0
