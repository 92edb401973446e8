"""Small random graphs for the branch-and-bound tests."""

from __future__ import annotations

import torch

from curvebound.graph.ir import Graph, Node
from curvebound.ops.base import Interval
from curvebound.ops.bilinear import Mul2
from curvebound.ops.linear import MatMulConst


class _Builder:
    def __init__(self, n_in: int, seed: int):
        self.g = torch.Generator().manual_seed(seed)
        self.nodes = [Node(0, "x", None, (), (n_in,))]

    def add(self, op, inputs, shape) -> int:
        self.nodes.append(Node(len(self.nodes), f"n{len(self.nodes)}", op, tuple(inputs), shape))
        return len(self.nodes) - 1

    def linear(self, src: int, a: int, b: int, scale: float) -> int:
        w = torch.randn(a, b, generator=self.g, dtype=torch.float64) / a**0.5 * scale
        bias = torch.randn(b, generator=self.g, dtype=torch.float64) * 0.5
        return self.add(MatMulConst(w, bias, in_rank=1), [src], (b,))


def mlp(seed: int, act, widths=(3, 8, 8, 1), scale: float = 1.0) -> Graph:
    """``Linear -> act -> ... -> Linear`` with random weights."""
    b = _Builder(widths[0], seed)
    last = 0
    for i, (a, w) in enumerate(zip(widths[:-1], widths[1:])):
        last = b.linear(last, a, w, scale)
        if i < len(widths) - 2:
            last = b.add(act(), [last], (w,))
    return Graph(b.nodes, last)


def product_net(seed: int, n_in: int = 3, hidden: int = 6) -> Graph:
    """``y = W (P x + p) * (Q x + q)``: a product of two perturbed hidden layers."""
    b = _Builder(n_in, seed)
    left = b.linear(0, n_in, hidden, 1.0)
    right = b.linear(0, n_in, hidden, 1.0)
    prod = b.add(Mul2(), [left, right], (hidden,))
    return Graph(b.nodes, b.linear(prod, hidden, 1, 1.0))


def unit_box(n_in: int, radius: float = 0.5) -> Interval:
    ones = torch.ones(1, n_in, dtype=torch.float64)
    return Interval(-radius * ones, radius * ones)


def sample(box: Interval, n: int = 50000, seed: int = 0) -> torch.Tensor:
    """Random points and corners of the box, ``[n + n // 8, n_in]``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, box.lower.shape[1], generator=g, dtype=torch.float64)
    corners = torch.randint(0, 2, (n // 8, box.lower.shape[1]), generator=g).to(torch.float64)
    return box.lower + torch.cat([t, corners]) * (box.upper - box.lower)


def lookup_net(seed: int, n_in: int = 3, hidden: int = 4, knots: int = 12) -> Graph:
    """A piecewise-linear activation built from ReLUs, as ml4acopf's ONNX files do:
    ``x = W0 in + b0`` (``[hidden]``), ``z = x[:, None] - t`` (``[hidden, knots]``, a broadcast), then
    ``y = W1 (relu(z) @ w)``: every ``x_i`` is copied into ``knots`` ReLU inputs."""
    from curvebound.ops.linear import ScaleShift
    from curvebound.ops.relu import Relu
    from curvebound.ops.shape import Reshape

    b = _Builder(n_in, seed)
    x = b.linear(0, n_in, hidden, 2.0)
    column = b.add(Reshape((hidden, 1)), [x], (hidden, 1))
    thresholds = torch.linspace(-2.0, 2.0, knots, dtype=torch.float64)
    z = b.add(ScaleShift(None, -thresholds, out_rank=2), [column], (hidden, knots))
    r = b.add(Relu(), [z], (hidden, knots))
    slopes = torch.randn(knots, generator=b.g, dtype=torch.float64)
    pwl = b.add(MatMulConst(slopes, None, in_rank=2), [r], (hidden,))
    return Graph(b.nodes, b.linear(pwl, hidden, 1, 1.0))
