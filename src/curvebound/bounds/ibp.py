"""Interval bound propagation (design.md a.2): each operator maps its input intervals forward."""

from __future__ import annotations

import torch

from ..graph.ir import Graph
from ..ops.base import Interval


def clean(interval: Interval) -> Interval:
    """NaN bounds carry no information: replace them by -inf / +inf (sound)."""
    return Interval(
        torch.nan_to_num(interval.lower, nan=-torch.inf), torch.nan_to_num(interval.upper, nan=torch.inf)
    )


def interval_step(graph: Graph, index: int, bounds: list[Interval | None]) -> Interval:
    """IBP bound of node ``index`` from the (already known) bounds of its inputs."""
    node = graph.nodes[index]
    return clean(node.op.interval(*(bounds[i] for i in node.inputs)))


def ibp(graph: Graph, box: Interval, upto: int | None = None) -> list[Interval | None]:
    """Interval bounds of every node (up to ``upto``) for the input box ``[batch, *input_shape]``."""
    last = graph.output if upto is None else upto
    needed = graph.ancestors(last)
    bounds: list[Interval | None] = [None] * len(graph.nodes)
    bounds[0] = box
    for node in graph.nodes[1:]:
        if node.index in needed:
            bounds[node.index] = interval_step(graph, node.index, bounds)
    return bounds
