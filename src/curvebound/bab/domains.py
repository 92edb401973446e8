"""The batched domain store of activation-space branch-and-bound.

A domain is the input box intersected with split constraints on intermediate nodes. It is stored as:

* per split node ``z``: the interval of ``z`` on the domain, ``lower[z], upper[z]: [n, z.size]`` (flat),
  always inside the root interval (a split only ever cuts it);
* the split constraints (``SplitHistory``, padded ``[n, H]``) and their multipliers ``beta: [n, spec, H]``
  (inherited by the children as a warm start; a new constraint starts at 0);
* ``lower_bound: [n, spec]``: the best certified lower bound of each spec row ``C_r y`` on the domain;
* ``alpha``: per relaxation node the optimized output parameters ``[n, k, spec, *shape]`` (float32),
  inherited by the children as their warm start (empty when too large to keep, see
  ``activation_split.ALPHA_ELEMENTS_PER_DOMAIN``: then every domain starts from the root's).

Everything is batched along the first dimension and lives on the graph's device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .beta import SplitHistory


def disjunct_margins(lower_bound: Tensor, rhs: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """``[n, n_groups]``: per domain and disjunct the best row margin ``max_{r in d} (lb_r - rhs_r)``
    (> 0: the disjunct is refuted on the domain)."""
    margins = lower_bound - rhs[None]
    out = torch.full((margins.shape[0], n_groups), -torch.inf, dtype=margins.dtype, device=margins.device)
    return out.scatter_reduce(1, groups[None].expand_as(margins), margins, "amax", include_self=True)


@dataclass
class DomainBatch:
    lower: dict[int, Tensor]  # split node -> [n, size]
    upper: dict[int, Tensor]  # split node -> [n, size]
    history: SplitHistory  # [n, H]
    beta: Tensor  # [n, spec, H]
    lower_bound: Tensor  # [n, spec]
    depth: Tensor  # [n] long, number of splits
    alpha: dict[int, Tensor] = field(default_factory=dict)  # node -> [n, k, spec, *shape]

    def __len__(self) -> int:
        return self.lower_bound.shape[0]

    def take(self, rows: Tensor) -> DomainBatch:
        return DomainBatch(
            {k: v[rows] for k, v in self.lower.items()},
            {k: v[rows] for k, v in self.upper.items()},
            self.history.take(rows),
            self.beta[rows],
            self.lower_bound[rows],
            self.depth[rows],
            {k: v[rows] for k, v in self.alpha.items()},
        )

    @staticmethod
    def cat(parts: list[DomainBatch]) -> DomainBatch:
        parts = [p for p in parts if len(p)] or parts[:1]
        width = max(p.history.width for p in parts)

        def pad_beta(b: Tensor) -> Tensor:
            extra = width - b.shape[2]
            return b if extra <= 0 else torch.cat([b, b.new_zeros(b.shape[0], b.shape[1], extra)], 2)

        return DomainBatch(
            {k: torch.cat([p.lower[k] for p in parts]) for k in parts[0].lower},
            {k: torch.cat([p.upper[k] for p in parts]) for k in parts[0].upper},
            SplitHistory.cat([p.history for p in parts]),
            torch.cat([pad_beta(p.beta) for p in parts]),
            torch.cat([p.lower_bound for p in parts]),
            torch.cat([p.depth for p in parts]),
            # a node's parameters are kept only when every part has them (else the root's are used)
            {k: torch.cat([p.alpha[k] for p in parts]) for k in parts[0].alpha if all(k in p.alpha for p in parts)},
        )


class DomainStore:
    """The open (not yet refuted) domains; ``pop_worst`` hands out those with the worst margins."""

    def __init__(self, rhs: Tensor, groups: Tensor):
        self.rhs = rhs
        self.groups = groups
        self.n_groups = int(groups.max()) + 1 if len(groups) else 0
        self.domains: DomainBatch | None = None

    def __len__(self) -> int:
        return 0 if self.domains is None else len(self.domains)

    def margins(self, batch: DomainBatch) -> Tensor:
        """``[n, n_groups]`` disjunct margins of the given domains."""
        return disjunct_margins(batch.lower_bound, self.rhs, self.groups, self.n_groups)

    def worst_margin(self, batch: DomainBatch) -> Tensor:
        """``[n]``: the smallest disjunct margin (the domain is refuted iff it is > 0)."""
        return self.margins(batch).amin(1)

    def push(self, batch: DomainBatch) -> None:
        if not len(batch):
            return
        empty = self.domains is None or not len(self.domains)
        self.domains = batch if empty else DomainBatch.cat([self.domains, batch])

    def pop_worst(self, k: int) -> DomainBatch:
        """Remove and return the ``k`` domains with the smallest worst margin."""
        assert self.domains is not None
        worst = self.worst_margin(self.domains)
        order = torch.argsort(worst)
        self.domains, taken = self.domains.take(order[k:]), self.domains.take(order[:k])
        return taken

    def global_worst(self) -> float:
        if not len(self):
            return float("inf")
        return float(self.worst_margin(self.domains).min())
