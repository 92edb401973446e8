"""curvebound's small typed graph IR.

A ``Graph`` is a topologically ordered list of ``Node``s. Node 0 is the single perturbed input;
every other node is an ``Operator`` applied to earlier nodes. Everything that does not depend on
the input was folded into constants (held by the operators) when the graph was built, so every
node here depends on the input.

Shapes are ONNX shapes with dynamic dimensions fixed to 1; values carry curvebound's own batch
dimension in front: ``[batch, *node.shape]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..ops.base import Operator


@dataclass
class Node:
    index: int
    name: str  # the ONNX tensor name this node produces (for messages)
    op: Operator | None  # None for the input node
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    onnx_node: str = ""  # the ONNX node that produced it (for messages)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"Node({self.index}, {self.name!r}, {self.op!r}, inputs={self.inputs}, shape={self.shape})"


@dataclass
class Graph:
    nodes: list[Node]
    output: int
    input_name: str = "input"
    output_name: str = "output"
    source: str = ""  # file the graph came from
    _consumers: list[list[int]] | None = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.nodes[0].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.nodes[self.output].shape

    @property
    def input_size(self) -> int:
        return self.nodes[0].size

    @property
    def output_size(self) -> int:
        return self.nodes[self.output].size

    def consumers(self, index: int) -> list[int]:
        if self._consumers is None:
            consumers: list[list[int]] = [[] for _ in self.nodes]
            for node in self.nodes[1:]:
                for i in set(node.inputs):
                    consumers[i].append(node.index)
            self._consumers = consumers
        return self._consumers[index]

    def ancestors(self, index: int) -> set[int]:
        """All nodes the given node depends on, itself included."""
        seen = {index}
        stack = [index]
        while stack:
            for i in self.nodes[stack.pop()].inputs:
                if i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    def forward_all(self, x: Tensor, upto: int | None = None) -> list[Tensor | None]:
        """Values of all nodes for input ``x: [batch, *input_shape]`` (nodes after ``upto`` are None)."""
        last = self.output if upto is None else upto
        needed = self.ancestors(last)
        values: list[Tensor | None] = [None] * len(self.nodes)
        values[0] = x
        for node in self.nodes[1:]:
            if node.index not in needed:
                continue
            values[node.index] = node.op.forward(*(values[i] for i in node.inputs))
        return values

    def forward(self, x: Tensor) -> Tensor:
        """Output ``[batch, *output_shape]`` for input ``[batch, *input_shape]``."""
        return self.forward_all(x)[self.output]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Graph:
        """Move every tensor constant held by the operators to ``device``/``dtype`` (in place)."""
        for node in self.nodes[1:]:
            for key, value in vars(node.op).items():
                if isinstance(value, Tensor):
                    target = dtype if value.is_floating_point() else value.dtype
                    setattr(node.op, key, value.to(device=device, dtype=target))
        return self


def prune(nodes: list[Node], output: int, input_name: str, output_name: str, source: str) -> Graph:
    """Keep node 0 and the ancestors of ``output``, renumbered in order."""
    full = Graph(nodes, output)
    keep = sorted(full.ancestors(output) | {0})
    new_index = {old: new for new, old in enumerate(keep)}
    kept = [
        Node(new_index[i], nodes[i].name, nodes[i].op, tuple(new_index[j] for j in nodes[i].inputs),
             nodes[i].shape, nodes[i].onnx_node)
        for i in keep
    ]
    if output != 0:
        kept[new_index[output]].name = output_name
    return Graph(kept, new_index[output], input_name=input_name, output_name=output_name, source=source)
