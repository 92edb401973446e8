"""Split nodes behind pointwise affine chains are split at the chain's head.

A split node ``z`` reached from an earlier node ``h`` through pointwise affine ops only (reshape,
slice, gather, broadcast, elementwise scale/shift: ``bounds.crown.pointwise_chain``) is an affine
image of it, element by element: ``z_j = a_j h_{i_j} + b_j``. Several elements, often of several split
nodes, can copy one ``h_i``: ml4acopf broadcasts each of 226 voltages against 54 thresholds and feeds
the 54 copies to ReLUs (a piecewise-linear Sigmoid); a batch-norm shift between a layer and its
activation is the one-copy case.

Cutting ``z_j`` at ``p`` is therefore done on the head: the children are ``h_i <= q`` and ``h_i >= q``
with ``q = (p - b_j) / a_j`` (the two swap when ``a_j < 0``), which partition the domain whatever the
rounding of ``q``. Every split node behind ``h`` then gets its interval again by IBP along its chain
(exact for these ops), intersected with what it had, so one split tightens the relaxation of every
copy, and the beta constraint is stated on ``h_i``.

The map ``(i_j, a_j, b_j)`` is read off the chain's own forward pass on three probes of the head
(zeros, ones, ``1, 2, 3, ...``) and checked on a fourth; a chain that does not pass the check is not
used (its split node is cut directly, as before).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..bounds.crown import pointwise_chain
from ..bounds.ibp import interval_step
from ..graph.ir import Graph
from ..ops.base import Interval


@dataclass
class HeadMap:
    """``z_j = scale[j] * h[index[j]] + shift[j]`` (flat indices) along ``chain = [h, ..., z]``."""

    chain: list[int]
    index: Tensor  # [size of z] long
    scale: Tensor  # [size of z]; 0 where z_j is a constant
    shift: Tensor  # [size of z]

    @property
    def head(self) -> int:
        return self.chain[0]


def _run_chain(graph: Graph, chain: list[int], head_value: Tensor) -> Tensor:
    value = head_value
    for index in chain[1:]:
        value = graph.nodes[index].op.forward(value)
    return value.reshape(value.shape[0], -1)


def head_map(graph: Graph, split_node: int, dtype: torch.dtype, device: torch.device | str) -> HeadMap | None:
    """The affine map from the head of the pointwise chain ending at ``split_node``, or None when the
    node is not behind such a chain (or the chain fails the probe check)."""
    chain = pointwise_chain(graph, split_node)
    if len(chain) < 2:
        return None
    head = graph.nodes[chain[0]]
    size = head.size
    ramp = torch.arange(1, size + 1, dtype=dtype, device=device)
    probes = torch.stack([torch.zeros(size, dtype=dtype, device=device), torch.ones(size, dtype=dtype, device=device),
                          ramp, 0.5 * ramp**2 - 3.0])
    try:
        out = _run_chain(graph, chain, probes.reshape(4, *head.shape))
    except (RuntimeError, ValueError, IndexError, NotImplementedError):
        return None
    shift = out[0]
    scale = out[1] - shift
    constant = scale == 0
    safe_scale = torch.where(constant, torch.ones_like(scale), scale)
    index = torch.round((out[2] - shift) / safe_scale - 1).to(torch.long)
    index = torch.where(constant, torch.zeros_like(index), index)
    if bool(((index < 0) | (index >= size)).any()):
        return None
    # the fourth probe must be reproduced by the map (rules out anything not pointwise affine)
    predicted = scale * probes[3][index] + shift
    if not torch.allclose(predicted, out[3], rtol=1e-9, atol=1e-9 * float(out[3].abs().max()) + 1e-12):
        return None
    return HeadMap(chain, index, scale, shift)


def chain_interval(graph: Graph, chain: list[int], head: Interval, root: list[Interval | None]) -> Interval:
    """IBP of the chain's last node from the head interval ``[n, *head_shape]``, each step intersected
    with the root bounds where there are any (``[n, *shape]`` out)."""
    local: list[Interval | None] = [None] * len(graph.nodes)
    local[chain[0]] = head
    for index in chain[1:]:
        step = interval_step(graph, index, local)
        if root[index] is not None:
            step = step.intersect(root[index])
        local[index] = step
    return local[chain[-1]]
