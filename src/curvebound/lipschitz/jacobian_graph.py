"""Graph augmentation: append the reverse-mode derivative of a graph to the graph itself (design e).

``jacobian_graph(graph, output)`` returns a new ``Graph`` with the same input ``x`` whose output
node is ``d f_k / d x`` (shape ``input_shape``) for ``output = k``, or the whole Jacobian
``[n_out, input_size]`` (one row per output, flattened input) for ``output = None``. The forward
nodes are kept at their indices (so bounds computed on the forward graph can be reused); the
derivative nodes are appended after them.

Reverse mode, one output row at a time: the seed is the constant ``e_k`` on the output node; each
forward node, in reverse topological order, receives the sum of the gradient contributions of its
consumers (``Add2``) and hands ``g * d node / d input`` to each of its inputs:

* affine ops: ``L_i^T g`` (``VJPAffine``; ``MatMulConst`` ``x @ W`` directly as ``g @ W^T``);
* ReLU / LeakyReLU / Abs: ``StepGrad(g, z)`` (Clarke relaxation when ``z`` crosses 0);
* Sigmoid, Tanh, GELU: ``Mul2(g, f'(z))`` with ``f'`` one of the derivative ops of ``gradient_ops``;
  Sin: ``Mul2(g, Cos(z))``, Cos: ``-Mul2(g, Sin(z))``; Exp: ``Mul2(g, y)``; Reciprocal:
  ``-Mul2(g, Square(y))``; Square: ``2 Mul2(g, z)``; Sqrt: ``Mul2(g, Reciprocal(y)) / 2``;
  Log: ``Mul2(g, Reciprocal(z))`` (``y`` the op's output, ``z`` its input);
* ``Mul2(x, y)``: ``g y`` to ``x`` and ``g x`` to ``y`` (summed back over broadcast dims);
  ``MatMul2(x, y)``: ``g y^T`` to ``x`` and ``x^T g`` to ``y``.

Gradients that do not depend on ``x`` (the seed and everything affine after it) stay constant
tensors and are folded; a constant times a node is a ``ScaleShift``. Any other operator raises
``UnsupportedGradient`` naming it.

Invariant: for every ``x`` at which the network is differentiable, ``jacobian_graph(g, k).forward(x)``
equals ``autograd.grad(f_k(x), x)`` (up to rounding); at the non-differentiable points of ReLU-like
ops it is one element of the Clarke Jacobian, and the ops' relaxations cover the whole Clarke set.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..graph.ir import Graph, Node
from ..ops.base import AffineOperator, Operator
from ..ops.bilinear import MatMul2, Mul2
from ..ops.convex import Abs, Exp, Log, Reciprocal, Sqrt, Square
from ..ops.gelu import Gelu
from ..ops.linear import Add2, MatMulConst, ScaleShift
from ..ops.periodic import Cos, Sin
from ..ops.relu import LeakyRelu
from ..ops.s_shaped import Sigmoid, Tanh
from ..ops.shape import Concat, Reshape, Transpose
from .gradient_ops import (
    ConstantValue,
    GeluDerivative,
    SigmoidDerivative,
    StepGrad,
    SumToShape,
    TanhDerivative,
    VJPAffine,
)

#: a gradient: the index of a node holding it, or a constant tensor ``[*shape]`` (no batch dim)
Grad = int | Tensor


class UnsupportedGradient(ValueError):
    """The graph holds an operator without a gradient rule here."""


def _infer_shape(op: Operator, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    with torch.no_grad():
        out = op.forward(*(torch.ones((1, *s), dtype=torch.float64) for s in shapes))
    return tuple(out.shape[1:])


class _Builder:
    """Appends nodes to a copy of a graph's node list."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes = [Node(n.index, n.name, n.op, n.inputs, n.shape, n.onnx_node) for n in graph.nodes]

    def shape(self, index: int) -> tuple[int, ...]:
        return self.nodes[index].shape

    def add(self, op: Operator, inputs: Sequence[int], name: str) -> int:
        shape = _infer_shape(op, [self.shape(i) for i in inputs])
        index = len(self.nodes)
        self.nodes.append(Node(index, name, op, tuple(inputs), shape, "jacobian"))
        return index

    def as_node(self, grad: Grad, name: str) -> int:
        if isinstance(grad, Tensor):
            return self.add(ConstantValue(grad), (0,), name)
        return grad

    def scaled(self, node: int, factor: float | Tensor, name: str) -> int:
        """``factor * node`` (``factor`` a float or a constant ``[*shape]``)."""
        if isinstance(factor, float):
            if factor == 1.0:
                return node
            factor = torch.tensor(factor, dtype=torch.float64)
        rank = max(len(self.shape(node)), factor.dim())
        return self.add(ScaleShift(scale=factor, out_rank=rank), (node,), name)

    def times(self, grad: Grad, node: int, name: str, factor: float = 1.0) -> int:
        """``factor * grad * node`` (elementwise, broadcasting)."""
        if isinstance(grad, Tensor):
            return self.scaled(node, grad * factor, name)
        return self.scaled(self.add(Mul2(), (grad, node), name), factor, name + "/scaled")

    def sum_to(self, grad: int, shape: tuple[int, ...], name: str) -> int:
        if self.shape(grad) == tuple(shape):
            return grad
        return self.add(SumToShape(shape), (grad,), name)

    def total(self, parts: list[Grad], name: str) -> Grad | None:
        """Sum of gradient contributions; constants are added up first."""
        constant: Tensor | None = None
        nodes: list[int] = []
        for part in parts:
            if isinstance(part, Tensor):
                constant = part if constant is None else constant + part
            else:
                nodes.append(part)
        if not nodes:
            return constant
        total = nodes[0]
        for other in nodes[1:]:
            total = self.add(Add2(1.0, out_rank=len(self.shape(total))), (total, other), name + "/sum")
        if constant is not None and bool((constant != 0).any()):
            total = self.add(ScaleShift(shift=constant, out_rank=len(self.shape(total))), (total,), name + "/const")
        return total


def _affine_vjp(b: _Builder, node: Node, position: int, grad: Grad) -> Grad:
    op = node.op
    shapes = [b.shape(i) for i in node.inputs]
    vjp = VJPAffine(op, shapes, position)
    if isinstance(grad, Tensor):
        with torch.no_grad():
            return vjp.forward(grad.unsqueeze(0))[0]
    if isinstance(op, MatMulConst) and op.side == "right" and op.weight.dim() == 2:
        transposed = MatMulConst(op.weight.transpose(0, 1).contiguous(), None, "right", len(node.shape))
        return b.add(transposed, (grad,), f"d/{node.name}")
    return b.add(vjp, (grad,), f"d/{node.name}[{position}]")


def _swap_last(b: _Builder, index: int, name: str) -> int:
    rank = len(b.shape(index))
    perm = list(range(rank))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return b.add(Transpose(perm), (index,), name)


def _input_grads(b: _Builder, node: Node, grad: Grad) -> list[tuple[int, Grad]]:
    """``(input index, contribution)`` for each input of ``node`` given the gradient on its output."""
    op, name = node.op, node.name
    if isinstance(op, AffineOperator):
        return [(i, _affine_vjp(b, node, p, grad)) for p, i in enumerate(node.inputs)]
    z = node.inputs[0]
    if isinstance(op, LeakyRelu):  # Relu too
        return [(z, b.add(StepGrad(op.negative_slope), (b.as_node(grad, f"d/{name}/seed"), z), f"d/{name}"))]
    if isinstance(op, Abs):
        return [(z, b.add(StepGrad(-1.0), (b.as_node(grad, f"d/{name}/seed"), z), f"d/{name}"))]
    unary_op: Operator | None
    if isinstance(op, Sigmoid):
        unary_op, source, factor = SigmoidDerivative(), "z", 1.0
    elif isinstance(op, Tanh):
        unary_op, source, factor = TanhDerivative(), "z", 1.0
    elif isinstance(op, Gelu) and op.approximate == "none":
        unary_op, source, factor = GeluDerivative(), "z", 1.0
    elif isinstance(op, Sin):
        unary_op, source, factor = Cos(), "z", 1.0
    elif isinstance(op, Cos):
        unary_op, source, factor = Sin(), "z", -1.0
    elif isinstance(op, Exp):
        unary_op, source, factor = None, "y", 1.0
    elif isinstance(op, Reciprocal):
        unary_op, source, factor = Square(), "y", -1.0
    elif isinstance(op, Square):
        unary_op, source, factor = None, "z", 2.0
    elif isinstance(op, Sqrt):
        unary_op, source, factor = Reciprocal(), "y", 0.5
    elif isinstance(op, Log):
        unary_op, source, factor = Reciprocal(), "z", 1.0
    elif isinstance(op, Mul2):
        x, y = node.inputs
        gx = b.sum_to(b.times(grad, y, f"d/{name}[0]"), b.shape(x), f"d/{name}[0]/sum")
        gy = b.sum_to(b.times(grad, x, f"d/{name}[1]"), b.shape(y), f"d/{name}[1]/sum")
        return [(x, gx), (y, gy)]
    elif isinstance(op, MatMul2):
        x, y = node.inputs
        g = b.as_node(grad, f"d/{name}/seed")
        gx = b.add(MatMul2(), (g, _swap_last(b, y, f"{name}/yT")), f"d/{name}[0]")
        gy = b.add(MatMul2(), (_swap_last(b, x, f"{name}/xT"), g), f"d/{name}[1]")
        return [(x, b.sum_to(gx, b.shape(x), f"d/{name}[0]/sum")), (y, b.sum_to(gy, b.shape(y), f"d/{name}[1]/sum"))]
    else:
        raise UnsupportedGradient(f"no gradient rule for {op.kind} ({op!r}) at node {name!r}")
    base = z if source == "z" else node.index
    derivative = base if unary_op is None else b.add(unary_op, (base,), f"{unary_op.kind}({name})")
    return [(z, b.times(grad, derivative, f"d/{name}", factor))]


def _backpropagate(b: _Builder, graph: Graph, seed: Tensor, tag: str) -> Grad:
    """Gradient of ``seed . f(x)`` w.r.t. ``x`` as a node index or a constant."""
    pending: dict[int, list[Grad]] = {graph.output: [seed]}
    for index in range(graph.output, 0, -1):
        parts = pending.pop(index, None)
        if not parts:
            continue
        node = graph.nodes[index]
        grad = b.total(parts, f"{tag}d/{node.name}")
        if grad is None:
            continue
        for i, contribution in _input_grads(b, node, grad):
            pending.setdefault(i, []).append(contribution)
    total = b.total(pending.get(0, []), f"{tag}d/input")
    if total is None:
        return torch.zeros(graph.input_shape, dtype=torch.float64)
    return total


def jacobian_graph(graph: Graph, output: int | None = None) -> Graph:
    """The graph augmented with its Jacobian (see module doc). ``output``: the flat index of the
    output whose gradient is wanted (node shape ``input_shape``), or None for all outputs (node shape
    ``[n_out, input_size]``). Raises ``UnsupportedGradient`` for operators without a rule."""
    n_out = graph.output_size
    rows = range(n_out) if output is None else [output]
    if output is not None and not 0 <= output < n_out:
        raise ValueError(f"output {output} out of range: the graph has {n_out} outputs")
    b = _Builder(graph)
    row_nodes = []
    for k in rows:
        seed = torch.zeros(n_out, dtype=torch.float64)
        seed[k] = 1.0
        grad = _backpropagate(b, graph, seed.reshape(graph.output_shape), f"[{k}]")
        row_nodes.append(b.as_node(grad, f"d{graph.output_name}[{k}]/d{graph.input_name}"))
    if output is not None:
        out = row_nodes[0]
    else:
        flat = [b.add(Reshape((1, graph.input_size)), (r,), f"row[{k}]") for k, r in enumerate(row_nodes)]
        out = flat[0] if len(flat) == 1 else b.add(Concat(0, [None] * len(flat)), flat, "jacobian")
    return Graph(b.nodes, out, graph.input_name, f"d{graph.output_name}/d{graph.input_name}", graph.source)
