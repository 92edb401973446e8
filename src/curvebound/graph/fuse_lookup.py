"""Rewrite ReLU lookup tables into one ``PiecewiseLinear`` op per element.

Pattern (ml4acopf's piecewise-linear Sigmoid, Sin and Cos; any exporter's ``relu(x[..., None] * a + b) @ w``):

    v = Reshape(x)            [..., 1]   (x: [...]; only consumer: the ScaleShift)
    z = v * a + b             [..., K]   (ScaleShift; a, b constant along all but the last axis)
    r = Relu(z)               [..., K]   (only consumer of z)
    y = r @ w (+ c)           [...]      (MatMulConst, 1-D weight; only consumer of r)

becomes ``y = PiecewiseLinear(a, b, w, c)(x)``, the same function of ``x`` (up to the summation order
of floating point), whose relaxation knows that the ``K`` ReLUs see one scalar. Nodes left without
consumers are dropped and the graph renumbered.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops.linear import MatMulConst, ScaleShift
from ..ops.piecewise_linear import PiecewiseLinear
from ..ops.relu import Relu
from ..ops.shape import Reshape
from .ir import Graph, Node, prune


def _per_knot(t: Tensor | None, knots: int, default: float) -> Tensor | None:
    """The constant as ``[K]`` when it varies only along the last axis (None: it does not)."""
    if t is None:
        return torch.full((knots,), default, dtype=torch.float64)
    if t.dim() and any(d != 1 for d in t.shape[:-1]):
        return None
    flat = t.reshape(-1).double()
    if flat.numel() == 1:
        return flat.expand(knots).clone()
    return flat if flat.numel() == knots else None


def _match(graph: Graph, index: int) -> tuple[int, PiecewiseLinear] | None:
    """``(x, op)`` when node ``index`` ends a lookup table, else None."""
    node = graph.nodes[index]
    op = node.op
    if not isinstance(op, MatMulConst) or op.side != "right" or op.weight.dim() != 1 or len(node.inputs) != 1:
        return None
    relu = graph.nodes[node.inputs[0]]
    if not isinstance(relu.op, Relu) or graph.consumers(relu.index) != [index]:
        return None
    shift_node = graph.nodes[relu.inputs[0]]
    if not isinstance(shift_node.op, ScaleShift) or graph.consumers(shift_node.index) != [relu.index]:
        return None
    column = graph.nodes[shift_node.inputs[0]]
    knots = shift_node.shape[-1]
    if (not isinstance(column.op, Reshape) or graph.consumers(column.index) != [shift_node.index]
            or column.shape != (*node.shape, 1) or shift_node.shape != (*node.shape, knots)
            or graph.nodes[column.inputs[0]].shape != node.shape or op.weight.numel() != knots):
        return None
    scale = _per_knot(shift_node.op.scale, knots, 1.0)
    shift = _per_knot(shift_node.op.shift, knots, 0.0)
    if scale is None or shift is None:
        return None
    bias = op.bias
    if bias is not None and bias.numel() != 1:
        return None
    return column.inputs[0], PiecewiseLinear(scale, shift, op.weight, 0.0 if bias is None else float(bias))


def fuse_lookup_tables(graph: Graph) -> Graph:
    """The graph with every lookup table replaced (the same graph when there is none)."""
    found = {node.index: m for node in graph.nodes[1:] if (m := _match(graph, node.index)) is not None}
    if not found:
        return graph
    nodes = [Node(n.index, n.name, found[n.index][1], (found[n.index][0],), n.shape, n.onnx_node)
             if n.index in found else n for n in graph.nodes]
    return prune(nodes, graph.output, graph.input_name, graph.output_name, graph.source)
