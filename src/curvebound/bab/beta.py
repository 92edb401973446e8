"""beta-CROWN split constraints as a backward hook (design.md a.5).

A domain carries split constraints ``g_h = s_h (z_{n_h}[j_h] - p_h) >= 0`` (``s = +1``: ``z_j >= p``,
``s = -1``: ``z_j <= p``). When the backward pass reaches node ``z`` with coefficients ``A`` (so that
``spec >= A . z + c`` for every feasible input), then for any multipliers ``beta_h >= 0``

    spec >= A . z + c - sum_h beta_h g_h = (A - sum_h beta_h s_h e_{j_h}) . z + sum_h beta_h s_h p_h + c,

because every ``g_h >= 0`` on the domain. So the hook returns ``A - sum_h beta_h s_h e_{j_h}`` and the bias
``sum_h beta_h s_h p_h``: sound for every ``beta >= 0`` (the caller clamps after each optimizer step).

Constraints are stored padded: ``[batch, H]`` tensors of node, flat index, sign and point (node ``-1`` =
padding), and ``beta: [spec, batch, H]`` (one multiplier per spec row, domain and constraint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SplitHistory:
    """Padded split constraints of a batch of domains, each ``[batch, H]``."""

    node: Tensor  # long, graph node index of the split node, -1 for padding
    index: Tensor  # long, flat element index inside the node
    sign: Tensor  # float, +1 (z >= p) or -1 (z <= p); 0 for padding
    point: Tensor  # float, the split point p; 0 for padding

    @property
    def width(self) -> int:
        return self.node.shape[1]

    @staticmethod
    def empty(batch: int, dtype: torch.dtype, device: torch.device | str) -> SplitHistory:
        long0 = torch.zeros(batch, 0, dtype=torch.long, device=device)
        float0 = torch.zeros(batch, 0, dtype=dtype, device=device)
        return SplitHistory(long0, long0.clone(), float0, float0.clone())

    def take(self, rows: Tensor) -> SplitHistory:
        return SplitHistory(self.node[rows], self.index[rows], self.sign[rows], self.point[rows])

    def padded(self, width: int) -> SplitHistory:
        """The same constraints padded (node -1, sign 0) to ``width`` columns."""
        extra = width - self.width
        if extra <= 0:
            return self
        batch = self.node.shape[0]

        def pad(t: Tensor, value: float) -> Tensor:
            return torch.cat([t, torch.full((batch, extra), value, dtype=t.dtype, device=t.device)], 1)

        return SplitHistory(pad(self.node, -1), pad(self.index, 0), pad(self.sign, 0.0), pad(self.point, 0.0))

    def append(self, node: Tensor, index: Tensor, sign: Tensor, point: Tensor) -> SplitHistory:
        """One more constraint per domain (each argument ``[batch]``)."""
        return SplitHistory(
            torch.cat([self.node, node[:, None]], 1),
            torch.cat([self.index, index[:, None]], 1),
            torch.cat([self.sign, sign[:, None]], 1),
            torch.cat([self.point, point[:, None]], 1),
        )

    @staticmethod
    def cat(parts: list[SplitHistory]) -> SplitHistory:
        width = max(p.width for p in parts)
        parts = [p.padded(width) for p in parts]
        return SplitHistory(*(torch.cat([getattr(p, f) for p in parts], 0) for f in ("node", "index", "sign", "point")))


def beta_hook(history: SplitHistory, beta: Tensor) -> Callable[[int, Tensor], tuple[Tensor, Tensor]]:
    """The backward hook adding the beta terms of ``history`` with multipliers ``beta: [spec, batch, H]``
    (must be ``>= 0``). At node ``n`` with ``A: [spec, batch, *shape]`` it returns
    ``A - sum_{h: node_h = n} beta_h s_h e_{index_h}`` and the bias ``sum_h beta_h s_h p_h`` (``[spec, batch]``)."""
    nodes = set(history.node.unique().tolist()) - {-1}

    def hook(node: int, A: Tensor) -> tuple[Tensor, Tensor]:
        spec, batch = A.shape[:2]
        zero = torch.zeros(spec, batch, dtype=A.dtype, device=A.device)
        if node not in nodes:
            return A, zero
        mask = (history.node == node).to(A.dtype)  # [batch, H]
        weight = beta * (history.sign * mask)[None]  # [spec, batch, H]
        flat = A.reshape(spec, batch, -1)
        # entries of other nodes carry zero weight, but their indices may exceed this node's size
        index = torch.where(history.node == node, history.index, torch.zeros_like(history.index))
        index = index[None].expand(spec, -1, -1)
        flat = flat.scatter_add(2, index, -weight)
        bias = (weight * history.point[None]).sum(-1)
        return flat.reshape(A.shape), bias

    return hook


def chain_hooks(*hooks: Callable[[int, Tensor], tuple[Tensor, Tensor]] | None):
    """Compose backward hooks left to right (coefficients threaded through, biases summed)."""
    active = [h for h in hooks if h is not None]

    def hook(node: int, A: Tensor) -> tuple[Tensor, Tensor]:
        total = torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)
        for h in active:
            A, bias = h(node, A)
            total = total + bias
        return A, total

    return hook
