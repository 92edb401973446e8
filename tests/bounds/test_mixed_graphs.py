"""Property-based soundness of IBP, CROWN and alpha-CROWN on random small graphs mixing every
operator family (built directly in the IR), over random boxes with narrow and zero-width dims."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curvebound.bounds.alpha import AlphaOptions, optimize_spec_bound
from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.bounds.ibp import ibp
from curvebound.graph.ir import Graph, Node
from curvebound.ops.base import Interval
from curvebound.ops.bilinear import Mul2
from curvebound.ops.convex import Abs, Exp, Softplus, Square
from curvebound.ops.gelu import Gelu, Silu
from curvebound.ops.linear import MatMulConst
from curvebound.ops.periodic import Sin
from curvebound.ops.relu import LeakyRelu, Relu
from curvebound.ops.s_shaped import Sigmoid, Tanh

LAYERS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Sin", "Gelu", "Silu", "TanhExp", "Square", "Mul2", "Abs",
          "Softplus")
IN, OUT = 3, 2


def build_graph(seed: int, layers: list[str], width: int) -> Graph:
    """Affine layers of the given width, each followed by the drawn nonlinearity; ``TanhExp`` is
    ``exp(3 tanh(.))`` (Exp on a bounded input) and ``Mul2`` multiplies two affine branches."""
    g = torch.Generator().manual_seed(seed)
    nodes = [Node(0, "x", None, (), (IN,))]

    def add(op, inputs, size: int) -> int:
        nodes.append(Node(len(nodes), f"n{len(nodes)}", op, tuple(inputs), (size,)))
        return len(nodes) - 1

    def affine(source: int, a: int, b: int) -> int:
        w = torch.randn(a, b, generator=g, dtype=torch.float64) / a**0.5 * 1.5
        bias = torch.randn(b, generator=g, dtype=torch.float64) * 0.3
        return add(MatMulConst(w, bias, in_rank=1), [source], b)

    unary = {"Relu": Relu, "LeakyRelu": lambda: LeakyRelu(0.1), "Sigmoid": Sigmoid, "Tanh": Tanh, "Sin": Sin,
             "Gelu": Gelu, "Silu": Silu, "Square": Square, "Abs": Abs, "Softplus": Softplus}
    last, size = 0, IN
    for kind in layers:
        pre = affine(last, size, width)
        if kind == "Mul2":
            other = affine(last, size, width)
            last = add(Mul2(), [pre, other], width)
        elif kind == "TanhExp":
            t = add(Tanh(), [pre], width)
            scaled = affine(t, width, width)  # bounded: |.| <= sum |w| + |b|
            last = add(Exp(), [scaled], width)
        else:
            last = add(unary[kind](), [pre], width)
        size = width
    affine(last, size, OUT)
    return Graph(nodes, len(nodes) - 1)


@st.composite
def cases(draw):
    layers = draw(st.lists(st.sampled_from(LAYERS), min_size=1, max_size=3))
    width = draw(st.integers(2, 5))
    seed = draw(st.integers(0, 10_000))
    centre = draw(st.lists(st.floats(-2, 2), min_size=IN, max_size=IN))
    radius = draw(st.lists(st.sampled_from([0.0, 1e-6, 0.01, 0.3, 1.0]), min_size=IN, max_size=IN))
    return layers, width, seed, centre, radius


def samples(box: Interval, n: int = 1500) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.cat([torch.rand(n, IN, generator=g, dtype=torch.float64),
                   torch.randint(0, 2, (n // 3, IN), generator=g).to(torch.float64)])
    return box.lower + t * (box.upper - box.lower)


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_sampled_outputs_stay_inside_ibp_crown_and_alpha_bounds(case):
    layers, width, seed, centre, radius = case
    graph = build_graph(seed, layers, width)
    c = torch.tensor(centre, dtype=torch.float64)[None]
    r = torch.tensor(radius, dtype=torch.float64)[None]
    box = Interval(c - r, c + r)
    x = samples(box)
    values = graph.forward_all(x)
    y = values[graph.output]
    eye = torch.eye(OUT, dtype=torch.float64)
    C = torch.cat([eye, -eye])[:, None, :]
    sampled_min = (y @ C[:, 0, :].T).min(0).values
    tol = 1e-9 * (1 + sampled_min.abs())

    ibp_bounds = ibp(graph, box)
    crown_bounds = intermediate_bounds(graph, box)
    for bounds in (ibp_bounds, crown_bounds):
        for node, b in zip(graph.nodes, bounds):
            v = values[node.index]
            assert torch.all(v >= b.lower - 1e-9 * (1 + v.abs())), (layers, node)
            assert torch.all(v <= b.upper + 1e-9 * (1 + v.abs())), (layers, node)
    ibp_lower = spec_lower_bound(graph, ibp_bounds, C, method="ibp")[:, 0]
    crown = spec_lower_bound(graph, crown_bounds, C)
    assert torch.all(ibp_lower <= sampled_min + tol), layers
    assert torch.all(crown[:, 0] <= sampled_min + tol), (layers, crown[:, 0], sampled_min)
    result = optimize_spec_bound(graph, box, C, sampled_min + 1.0, torch.arange(2 * OUT), crown_bounds, crown,
                                 AlphaOptions(iterations=5))
    assert torch.all(result.lower[:, 0] <= sampled_min + tol), (layers, result.lower[:, 0], sampled_min)
    assert torch.all(result.lower >= crown - 1e-12)
