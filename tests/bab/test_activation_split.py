"""Activation-space BaB: verifies what CROWN cannot, never verifies a violated property, honours
the deadline."""

from __future__ import annotations

import time

import pytest
import torch

from curvebound.bab.activation_split import GenBabOptions, activation_bab
from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.ops.convex import Exp, Softplus, Square
from curvebound.ops.gelu import Elu, Gelu, Silu
from curvebound.ops.periodic import Cos, Sin
from curvebound.ops.relu import Relu
from curvebound.ops.s_shaped import Atan, Sigmoid, Tanh

from .nets import mlp, product_net, sample, unit_box

ONE_ROW = torch.ones(1, 1, dtype=torch.float64)
GROUP = torch.zeros(1, dtype=torch.long)


def _instance(graph, margin: float):
    """Root bounds, CROWN's bound, the sampled minimum of y and ``rhs = min - margin * range``."""
    box = unit_box(graph.input_size)
    y = graph.forward(sample(box))[:, 0]
    bounds = intermediate_bounds(graph, box)
    crown = float(spec_lower_bound(graph, bounds, ONE_ROW[:, None, :])[0, 0])
    low, span = float(y.min()), float(y.max() - y.min())
    return box, bounds, crown, low, low - margin * span


CASES = [
    ("relu", lambda: mlp(3, Relu), 0.05, "bbps"),
    ("product", lambda: product_net(3), 0.05, "bbps"),
    ("tanh", lambda: mlp(0, Tanh, widths=(3, 12, 1), scale=1.5), 0.03, "babsr"),
    ("sigmoid", lambda: mlp(3, Sigmoid, widths=(3, 12, 1), scale=1.5), 0.015, "babsr"),
]


@pytest.mark.parametrize("name,build,margin,branching", CASES, ids=[c[0] for c in CASES])
def test_bab_verifies_what_crown_cannot(name, build, margin, branching):
    graph = build()
    box, bounds, crown, low, rhs = _instance(graph, margin)
    assert crown <= rhs, f"{name}: CROWN alone already verifies; the case tests nothing"
    out = activation_bab(graph, box, ONE_ROW, torch.tensor([rhs], dtype=torch.float64), GROUP,
                         root_bounds=bounds, deadline=time.monotonic() + 30,
                         options=GenBabOptions(branching=branching, batch=16))
    assert out.status == "verified", (name, out.status, out.reason, out.history[-1])
    assert out.domains_explored > 1
    assert out.history[-1][1] == 0


SOUND = [(act, seed) for act in (Relu, Sigmoid, Tanh, None) for seed in (5, 6)]


@pytest.mark.parametrize("act,seed", SOUND, ids=[f"{a.__name__ if a else 'product'}-{s}" for a, s in SOUND])
def test_bab_never_verifies_a_violated_property(act, seed):
    graph = product_net(seed) if act is None else mlp(seed, act, widths=(3, 6, 6, 1), scale=1.5)
    box, bounds, _crown, low, _ = _instance(graph, 0.0)
    y = graph.forward(sample(box, seed=1))[:, 0]
    for rhs in (low + 1e-3, low - 0.02 * float(y.max() - low)):
        out = activation_bab(graph, box, ONE_ROW, torch.tensor([rhs], dtype=torch.float64), GROUP,
                             root_bounds=bounds, deadline=time.monotonic() + 1.5, options=GenBabOptions(batch=8))
        if out.status == "verified":
            assert float(y.min()) > rhs, (rhs, float(y.min()))
        if rhs > low:
            assert out.status != "verified"


def test_disjuncts_all_rows_carried():
    """Two disjuncts: y >= lo - m (row 0) and -y >= -hi - m (row 1); both true, so verified."""
    graph = mlp(3, Relu)
    box, bounds, _crown, low, rhs = _instance(graph, 0.05)
    y = graph.forward(sample(box))[:, 0]
    high = float(y.max())
    C = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    rows = torch.tensor([rhs, -high - 0.05 * (high - low)], dtype=torch.float64)
    out = activation_bab(graph, box, C, rows, torch.tensor([0, 1]), root_bounds=bounds,
                         deadline=time.monotonic() + 30, options=GenBabOptions(batch=16))
    assert out.status == "verified", out.reason


def test_deadline_is_honoured():
    # rhs just above a sampled output: violated, so no machine is fast enough to finish early (with
    # rhs just below, filtering verified it after 229 domains in about 1 s on one machine, sometimes
    # inside the deadline: the test timed the machine)
    graph = mlp(1, Relu, widths=(3, 16, 16, 1), scale=2.0)
    box, bounds, _crown, _low, rhs = _instance(graph, -0.001)
    start = time.monotonic()
    out = activation_bab(graph, box, ONE_ROW, torch.tensor([rhs], dtype=torch.float64), GROUP,
                         root_bounds=bounds, deadline=start + 1.0, options=GenBabOptions(batch=8))
    assert out.status == "timeout"
    assert time.monotonic() - start < 4.0
    assert out.history and out.history[-1][1] > 0


def test_beta_hook_ignores_indices_of_other_nodes():
    """A history mixing splits of a 50-neuron and a 100-neuron node: the hook at the small node must
    not index with the large node's positions (regression: nln2020 crashed with index 77 of size 50)."""
    import torch

    from curvebound.bab.beta import SplitHistory, beta_hook

    history = SplitHistory(torch.tensor([[3, 7]]), torch.tensor([[10, 77]]), torch.tensor([[1.0, -1.0]]),
                           torch.tensor([[0.5, 0.0]]))
    beta = torch.ones(2, 1, 2)
    A = torch.zeros(2, 1, 50)
    out, bias = beta_hook(history, beta)(3, A)
    assert out[0, 0, 10] == -1.0 and out.abs().sum() == 2.0  # one entry per spec row, at index 10
    assert torch.allclose(bias, torch.full((2, 1), 0.5))


GENERAL = [Sin, Cos, Gelu, Silu, Softplus, Exp, Atan, Elu, Square]


@pytest.mark.parametrize("act", GENERAL, ids=[a.__name__ for a in GENERAL])
def test_bab_on_every_nonlinearity_is_sound(act):
    """Just above the sampled minimum the property is violated: BaB must never call it verified.
    Well below it, BaB may verify, and then no sample violates it."""
    graph = mlp(7, act, widths=(3, 6, 6, 1), scale=1.5)
    box, bounds, _crown, low, _ = _instance(graph, 0.0)
    y = graph.forward(sample(box, seed=2))[:, 0]
    span = float(y.max() - low)
    for rhs in (low + 1e-3 * span, low - 0.05 * span):
        out = activation_bab(graph, box, ONE_ROW, torch.tensor([rhs], dtype=torch.float64), GROUP,
                             root_bounds=bounds, deadline=time.monotonic() + 2, options=GenBabOptions(batch=8))
        assert out.status in ("verified", "timeout", "unknown")
        if out.status == "verified":
            assert float(y.min()) > rhs, (act.__name__, rhs, float(y.min()))
        if rhs > low:
            assert out.status != "verified", act.__name__


def test_domains_start_from_the_root_alpha_crown_parameters():
    """With alpha-CROWN's output parameters as warm start, the root domain is bounded at least as
    tightly as alpha-CROWN bounded it (20 BaB steps from the defaults fall short of 100 at the root)."""
    from curvebound.bounds.alpha import AlphaOptions, optimize_spec_bound

    graph = mlp(4, Sigmoid, widths=(3, 16, 16, 1), scale=2.5)
    box, bounds, crown, low, _ = _instance(graph, 0.0)
    rhs = torch.tensor([low - 1e-6], dtype=torch.float64)
    alpha = optimize_spec_bound(graph, box, ONE_ROW[:, None, :], rhs, GROUP, bounds,
                                torch.tensor([[crown]], dtype=torch.float64), AlphaOptions(iterations=100))
    assert float(alpha.lower[0, 0]) > crown + 1e-6  # alpha helps here, so the warm start matters
    warm = {node: value.detach() for (node, start), value in alpha.params.values.items() if start == graph.output}
    root_margin = {}
    for name, root_alpha in (("cold", None), ("warm", warm)):
        out = activation_bab(graph, box, ONE_ROW, rhs, GROUP, root_bounds=alpha.bounds, root_alpha=root_alpha,
                             deadline=time.monotonic() + 0.5, options=GenBabOptions(batch=4, iterations=20))
        root_margin[name] = out.history[0][2]
    # the warm root starts where alpha-CROWN ended (its last iterate, up to rounding of the best row)
    assert root_margin["warm"] > root_margin["cold"] + 1e-3  # measured: -0.125 against -0.163
    assert root_margin["warm"] >= float(alpha.lower[0, 0] - rhs[0]) - 0.05 * abs(float(alpha.lower[0, 0] - rhs[0]))


@pytest.mark.parametrize("name,build,margin,branching", [CASES[0], CASES[3]], ids=["relu", "sigmoid"])
def test_top_k_filtering_verifies_and_stays_sound(name, build, margin, branching):
    graph = build()
    box, bounds, _crown, low, rhs = _instance(graph, margin)
    options = GenBabOptions(branching=branching, batch=16, filter_top_k=3)
    out = activation_bab(graph, box, ONE_ROW, torch.tensor([rhs], dtype=torch.float64), GROUP,
                         root_bounds=bounds, deadline=time.monotonic() + 30, options=options)
    assert out.status == "verified", (name, out.reason)
    violated = activation_bab(graph, box, ONE_ROW, torch.tensor([low + 1e-3], dtype=torch.float64), GROUP,
                              root_bounds=bounds, deadline=time.monotonic() + 1.5, options=options)
    assert violated.status != "verified"


def test_split_candidates_are_distinct_and_the_first_is_choose_splits():
    from curvebound.bab.activation_split import _Bounder
    from curvebound.bab.beta import SplitHistory
    from curvebound.bab.branching import ScoreInputs, choose_splits, find_split_nodes, split_candidates
    from curvebound.bab.domains import DomainBatch

    graph = mlp(3, Relu)
    box, bounds, _crown, low, rhs = _instance(graph, 0.05)
    splits = find_split_nodes(graph)
    rhs_t = torch.tensor([rhs], dtype=torch.float64)
    bounder = _Bounder(graph, box, ONE_ROW, rhs_t, GROUP, bounds, splits, GenBabOptions(), None)
    root = DomainBatch({s.index: bounds[s.index].lower.reshape(1, -1).clone() for s in splits},
                       {s.index: bounds[s.index].upper.reshape(1, -1).clone() for s in splits},
                       SplitHistory.empty(1, torch.float64, torch.device("cpu")),
                       torch.zeros(1, 1, 0, dtype=torch.float64), torch.full((1, 1), -torch.inf, dtype=torch.float64),
                       torch.zeros(1, dtype=torch.long))
    bounder.bound(root)
    inputs = ScoreInputs(root.lower, root.upper, bounder.record_lambda(root), root.lower_bound - rhs_t[None], GROUP, 1,
                         box)
    first = choose_splits(graph, splits, inputs, method="babsr")
    candidates = split_candidates(graph, splits, inputs, 3, method="babsr")
    assert (candidates[0].node, candidates[0].index) == (first.node, first.index)
    picked = {(int(c.node[0]), int(c.index[0])) for c in candidates if bool(c.valid[0])}
    assert len(picked) == sum(bool(c.valid[0]) for c in candidates) >= 2


def test_a_deadline_passing_inside_the_bbps_shortcuts_ends_as_timeout():
    """The root shortcuts are one CROWN pass per split node (18 s on a 118-bus ml4acopf model): they
    must stop at the deadline, and BaB must report ``timeout`` instead of raising."""
    from curvebound.bab.branching import candidate_mask, compute_shortcuts, find_split_nodes
    from curvebound.errors import TimeLimitReached

    graph = mlp(1, Relu, widths=(3, 16, 16, 1), scale=2.0)
    box, bounds, _crown, low, _ = _instance(graph, 0.0)
    splits = find_split_nodes(graph)
    masks = {s.index: candidate_mask(graph, s, bounds[s.index].lower.reshape(1, -1),
                                     bounds[s.index].upper.reshape(1, -1))[0] for s in splits}
    with pytest.raises(TimeLimitReached):
        compute_shortcuts(graph, bounds, splits, masks, deadline=time.monotonic() - 1)
    out = activation_bab(graph, box, ONE_ROW, torch.tensor([low - 1e-4], dtype=torch.float64), GROUP,
                         root_bounds=bounds, deadline=time.monotonic() - 1, options=GenBabOptions(batch=8))
    assert out.status == "timeout"


def test_children_inherit_their_parents_optimized_alpha():
    """After bounding, every domain keeps its optimized output parameters; its children start from
    them (not from the root's); on this net, one step from the parent's alpha already gives each
    child at least its parent's bound."""
    from curvebound.bab.activation_split import _Bounder
    from curvebound.bab.branching import ScoreInputs, choose_splits, find_split_nodes

    graph = mlp(4, Sigmoid, widths=(3, 16, 16, 1), scale=2.5)
    box, bounds, _crown, low, rhs = _instance(graph, 0.05)
    splits = find_split_nodes(graph)
    rhs_t = torch.tensor([rhs], dtype=torch.float64)
    bounder = _Bounder(graph, box, ONE_ROW, rhs_t, GROUP, bounds, splits, GenBabOptions(), None)
    root = bounder.root_domain(1)
    bounder.bound(root)
    assert root.alpha and all(v.shape[:3] == (1, v.shape[1], 1) for v in root.alpha.values())
    inputs = ScoreInputs(root.lower, root.upper, bounder.record_lambda(root), root.lower_bound - rhs_t[None],
                         GROUP, 1, box)
    kids = bounder.children(root, choose_splits(graph, splits, inputs, method="babsr"))
    for node, value in root.alpha.items():
        assert torch.equal(kids.alpha[node], value.expand(2, *value.shape[1:]))
    parent_bound = float(root.lower_bound[0, 0])
    kids.lower_bound = torch.full_like(kids.lower_bound, -torch.inf)  # forget the inherited floor
    bounder.bound(kids, iterations=1)
    assert bool((kids.lower_bound[:, 0] >= parent_bound - 1e-9).all()), (kids.lower_bound, parent_bound)


def test_automatic_batch_follows_model_size_and_free_memory(monkeypatch):
    import curvebound.bab.activation_split as module

    graph = mlp(0, Relu, widths=(3, 200, 200, 200, 1))
    monkeypatch.setattr(module, "free_memory", lambda device: 64 * 2**30)
    plenty = [module.automatic_batch(graph, spec) for spec in (1, 10, 100, 10_000)]
    assert plenty[0] == module.MAX_BATCH["cpu"] and plenty == sorted(plenty, reverse=True) and plenty[-1] == 4
    assert module.automatic_batch(graph, 1, "cuda") == module.MAX_BATCH["cuda"]  # no CPU round limit
    monkeypatch.setattr(module, "free_memory", lambda device: 2**24)  # 16 MiB left
    assert module.automatic_batch(graph, 1, "cuda") < module.MAX_BATCH["cuda"]
    assert 4 <= module.automatic_batch(graph, 10) < plenty[1]


@pytest.mark.parametrize("act,steps", [(Relu, 1), (Sigmoid, 3)], ids=["relu", "sigmoid"])
def test_filtering_bounds_children_with_more_steps_unless_every_split_is_a_relu(act, steps):
    """A ReLU cut changes the bound at once; a Sigmoid cut needs the child's own slopes, which one step
    (the parent's parameters, projected) does not give it."""
    from curvebound.bab.activation_split import _Bounder, _filter_candidates
    from curvebound.bab.branching import ScoreInputs, find_split_nodes, split_candidates

    graph = mlp(3, act)
    box, bounds, _crown, _low, rhs = _instance(graph, 0.05)
    splits = find_split_nodes(graph)
    rhs_t = torch.tensor([rhs], dtype=torch.float64)
    bounder = _Bounder(graph, box, ONE_ROW, rhs_t, GROUP, bounds, splits, GenBabOptions(filter_iterations=3), None)
    assert bounder.relu_splits_only == (act is Relu)
    root = bounder.root_domain(1)
    bounder.bound(root)
    inputs = ScoreInputs(root.lower, root.upper, bounder.record_lambda(root), root.lower_bound - rhs_t[None], GROUP, 1,
                         box)
    candidates = split_candidates(graph, splits, inputs, 3, method="babsr")
    seen = []
    bound = bounder.bound
    bounder.bound = lambda domains, effort=1, iterations=None: (seen.append(iterations), bound(domains, effort,
                                                                                             iterations))[1]
    _filter_candidates(bounder, root, candidates)
    assert seen and set(seen) == {steps}
