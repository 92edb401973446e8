"""Small random graphs for the Lipschitz tests, built directly in the IR."""

from __future__ import annotations

import torch

from curvebound.graph.ir import Graph, Node
from curvebound.ops.base import Operator
from curvebound.ops.bilinear import Mul2
from curvebound.ops.gelu import Gelu
from curvebound.ops.linear import MatMulConst
from curvebound.ops.periodic import Cos, Sin
from curvebound.ops.relu import LeakyRelu, Relu
from curvebound.ops.s_shaped import Sigmoid, Tanh

ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid, "tanh": Tanh, "sin": Sin, "cos": Cos, "gelu": Gelu,
               "leaky": lambda: LeakyRelu(0.1)}


class _Net:
    def __init__(self, n_in: int):
        self.nodes = [Node(0, "x", None, (), (n_in,))]

    def add(self, op: Operator, inputs: tuple[int, ...], shape: tuple[int, ...]) -> int:
        self.nodes.append(Node(len(self.nodes), f"n{len(self.nodes)}", op, inputs, shape))
        return len(self.nodes) - 1

    def linear(self, x: int, n_out: int, g: torch.Generator, scale: float = 1.0) -> int:
        n_in = self.nodes[x].shape[0]
        w = torch.randn(n_in, n_out, generator=g, dtype=torch.float64) * scale / n_in**0.5
        b = torch.randn(n_out, generator=g, dtype=torch.float64) * 0.3
        return self.add(MatMulConst(w, b, "right", 1), (x,), (n_out,))

    def graph(self, out: int) -> Graph:
        return Graph(self.nodes, out)


def mlp(widths: list[int], activation: str, seed: int, scale: float = 1.5) -> Graph:
    """``x -> [linear -> activation]* -> linear`` with the given widths (first: inputs, last: outputs)."""
    g = torch.Generator().manual_seed(seed)
    net = _Net(widths[0])
    h = 0
    for width in widths[1:-1]:
        z = net.linear(h, width, g, scale)
        h = net.add(ACTIVATIONS[activation](), (z,), (width,))
    return net.graph(net.linear(h, widths[-1], g, scale))


def product_net(n_in: int, hidden: int, n_out: int, seed: int) -> Graph:
    """``W3 (tanh(W1 x) * sin(W2 x)) + gelu(W4 x) . 1`` style net with a product of two perturbed values."""
    g = torch.Generator().manual_seed(seed)
    net = _Net(n_in)
    a = net.add(Tanh(), (net.linear(0, hidden, g, 1.5),), (hidden,))
    b = net.add(Sin(), (net.linear(0, hidden, g, 1.5),), (hidden,))
    m = net.add(Mul2(), (a, b), (hidden,))
    c = net.add(Gelu(), (net.linear(m, hidden, g, 1.5),), (hidden,))
    d = net.add(Sigmoid(), (net.linear(0, hidden, g, 1.5),), (hidden,))
    e = net.add(Mul2(), (c, d), (hidden,))
    return net.graph(net.linear(e, n_out, g))
