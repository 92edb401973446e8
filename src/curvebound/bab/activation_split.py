"""Activation-space branch-and-bound on general nonlinearities (GenBaB, design.md a.5 and c).

Loop: bound the root domain; then each round pops the ``batch`` open domains with the worst margins,
picks one split per domain (BBPS or BaBSR-like, ``branching.py``), makes two children per domain by
cutting the split node's interval at the branching point, bounds all children in one batched call and
keeps those not refuted. Stops with "verified" when no domain is left, "timeout" at the deadline, and
"unknown" when an open domain has no candidate neuron left.

Bounding a batch (intermediate bounds frozen, design a.4/f.3): every node keeps its root interval
except the split nodes, which get the domain's own intervals; then ``iterations`` steps of Adam
maximize ``sum_d min(max_{r in d} (lb_r - rhs_r), 0)`` over the relaxation parameters alpha (fresh
per round, initialised from the root's alpha-CROWN parameters projected onto the domain's intervals,
else from the default relaxations) and the beta
multipliers (inherited from the parent, new constraints start at 0, clamped to ``>= 0`` after each
step). Every iterate is a sound bound, so the best per spec row is kept; a child starts from its
parent's bound (a child is a subset of its parent).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..bounds.crown import RelaxationParams, spec_lower_bound
from ..errors import TimeLimitReached
from ..graph.ir import Graph
from ..ops.base import Interval, UnsupportedInput
from .beta import SplitHistory, beta_hook, chain_hooks
from .branching import (
    Decision,
    ScoreInputs,
    SplitNode,
    _objective,
    candidate_mask,
    compute_shortcuts,
    find_split_nodes,
    split_candidates,
)
from .domains import DomainBatch, DomainStore
from .result import BabOutcome

log = logging.getLogger(__name__)


@dataclass
class GenBabOptions:
    batch: int = 0  # domains per round; 0 = automatic from model size
    branching: str = "bbps"  # "bbps" | "babsr"
    branch_points: str = "optimized"  # "optimized" (lookup table, if available) | "midpoint"
    relu_only: bool = False  # only ReLU-like neurons are candidates (ablation)
    iterations: int = 20  # alpha/beta Adam steps per round
    lr_alpha: float = 0.01
    lr_beta: float = 0.05
    # > 1: bound the children of each domain's ``filter_top_k`` best candidates (one step each)
    # and split the one whose worse child is best (design.md c.3 "filtering"); 0/1: off
    filter_top_k: int = 0


#: stop a round's optimization after this many steps without improving the batch objective
PATIENCE = 5


def automatic_batch(graph: Graph, spec: int) -> int:
    """Domains per round: 64, fewer when ``spec * (sum of node sizes)`` is large (memory/time)."""
    total = sum(node.size for node in graph.nodes)
    return int(max(4, min(64, 2**22 // max(1, spec * total))))


class _Bounder:
    """Bounds batches of domains of one (graph, box, spec) with frozen root intermediate bounds."""

    def __init__(self, graph: Graph, box: Interval, C: Tensor, rhs: Tensor, groups: Tensor,
                 root_bounds: list[Interval | None], splits: list[SplitNode], options: GenBabOptions,
                 deadline: float | None, root_alpha: dict[int, Tensor] | None = None):
        self.graph, self.C, self.rhs, self.groups = graph, C, rhs, groups
        self.n_groups = int(groups.max()) + 1 if len(groups) else 0
        self.root = list(root_bounds)
        if self.root[0] is None:
            self.root[0] = box
        self.splits = splits
        self.options = options
        self.deadline = deadline
        self.consumers = {c for s in splits for c, _ in s.consumers}
        self.root_alpha = root_alpha or {}

    def warm_params(self, bounds: list[Interval | None], n: int) -> RelaxationParams:
        """Relaxation parameters for ``n`` domains: the root's optimized output parameters (alpha-CROWN's),
        projected onto each domain's intervals; parameters of other nodes start from the defaults."""
        params = RelaxationParams(create=True)
        for node, value in self.root_alpha.items():
            op = self.graph.nodes[node].op
            warm = value.expand(value.shape[0], value.shape[1], n, *value.shape[3:])
            warm = op.project_params(warm.clone(), [bounds[i] for i in self.graph.nodes[node].inputs])
            params.values[(node, self.graph.output)] = warm.detach().requires_grad_(True)
        return params

    def bounds_for(self, domains: DomainBatch) -> list[Interval | None]:
        """Root bounds expanded to the batch with each domain's split-node intervals substituted."""
        n = len(domains)
        out: list[Interval | None] = []
        for b in self.root:
            if b is None:
                out.append(None)
                continue
            shape = b.lower.shape[1:]
            out.append(Interval(b.lower.expand(n, *shape), b.upper.expand(n, *shape)))
        for split in self.splits:
            shape = self.root[split.index].lower.shape[1:]
            out[split.index] = Interval(domains.lower[split.index].reshape(n, *shape),
                                        domains.upper[split.index].reshape(n, *shape))
        return out

    def objective(self, lower: Tensor) -> Tensor:
        """``[n]``: ``sum_d min(margin_d, 0)`` for ``lower: [spec, n]``."""
        return _objective((lower - self.rhs[:, None]).T, self.groups, self.n_groups)

    @torch.no_grad()
    def record_lambda(self, domains: DomainBatch) -> dict[int, Tensor]:
        """Coefficients ``[spec, n, size]`` of the final bound on every consumer output (default alpha,
        the domains' beta): what BBPS reads."""
        n = len(domains)
        bounds = self.bounds_for(domains)
        recorded: dict[int, Tensor] = {}

        def record(node: int, A: Tensor) -> tuple[Tensor, Tensor]:
            if node in self.consumers:
                recorded[node] = A.detach().reshape(A.shape[0], n, -1)
            return A, torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)

        beta = domains.beta.permute(1, 0, 2)
        C = self.C[:, None, :].expand(-1, n, -1)
        spec_lower_bound(self.graph, bounds, C, None, hook=chain_hooks(record, beta_hook(domains.history, beta)))
        return recorded

    def bound(self, domains: DomainBatch, effort: int = 1, iterations: int | None = None) -> None:
        """Optimize alpha and beta for the batch; updates ``lower_bound`` and ``beta`` in place.
        ``effort > 1`` multiplies iterations, patience and learning rates (for domains that cannot be
        split further, where only a converged beta can still close the gap)."""
        opts = self.options
        n = len(domains)
        bounds = self.bounds_for(domains)
        # a domain whose intervals became empty somewhere is infeasible: nothing in it to violate
        empty = torch.zeros(n, dtype=torch.bool, device=self.C.device)
        for b in bounds:
            if b is not None:
                empty |= (b.lower > b.upper).reshape(n, -1).any(1)
        if bool(empty.any()):
            bounds = [None if b is None else Interval(torch.where(_rows(empty, b.lower), b.upper, b.lower), b.upper)
                      for b in bounds]  # keep the tensors well-formed; those domains are marked refuted below
        C = self.C[:, None, :].expand(-1, n, -1)
        params = self.warm_params(bounds, n)
        beta = domains.beta.permute(1, 0, 2).contiguous().clone()  # [spec, n, H]
        has_beta = beta.shape[2] > 0
        beta.requires_grad_(has_beta)
        best = domains.lower_bound.T.clone()  # [spec, n]
        best_objective = self.objective(best)
        best_beta = beta.detach().clone()
        optimizer = None
        stale, best_total = 0, -torch.inf
        for _ in range(max(1, (opts.iterations if iterations is None else iterations) * effort)):
            if self.deadline is not None and time.monotonic() > self.deadline:
                break
            with torch.enable_grad():
                lower = spec_lower_bound(self.graph, bounds, C, params, hook=beta_hook(domains.history, beta))
                objective = self.objective(lower)
            with torch.no_grad():
                best = torch.maximum(best, lower.detach())
                improved = objective.detach() > best_objective
                best_objective = torch.where(improved, objective.detach(), best_objective)
                best_beta = torch.where(improved[None, :, None], beta.detach(), best_beta)
                if bool((self.objective(best) >= 0).all()):
                    break
                total = float(best_objective.sum())
                stale = 0 if total > best_total + 1e-6 * (1 + abs(total)) else stale + 1
                best_total = max(best_total, total)
                if stale >= PATIENCE * effort:
                    break
            if optimizer is None:
                params.create = False
                groups = [{"params": list(params.values.values()), "lr": opts.lr_alpha * effort}]
                if has_beta:
                    groups.append({"params": [beta], "lr": opts.lr_beta * effort})
                if not objective.requires_grad or not any(g["params"] for g in groups):
                    break
                optimizer = torch.optim.Adam(groups)
            optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                (-objective.sum()).backward()
            optimizer.step()
            with torch.no_grad():
                for (node, _start), value in params.values.items():
                    op = self.graph.nodes[node].op
                    value.copy_(op.project_params(value, [bounds[i] for i in self.graph.nodes[node].inputs]))
                if has_beta:
                    beta.clamp_(min=0)
        best = torch.where(empty[None, :], torch.full_like(best, torch.inf), best)
        domains.lower_bound = best.T.contiguous()
        domains.beta = best_beta.permute(1, 0, 2).contiguous()


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """``mask [n]`` broadcast to ``like [n, *shape]``."""
    return mask.reshape(-1, *([1] * (like.dim() - 1))).expand_as(like)


def _filter_candidates(bounder: _Bounder, parents: DomainBatch, candidates: list[Decision],
                       splits: list[SplitNode]) -> Decision:
    """Per domain, the candidate whose children, bounded with one optimization step, have the best
    worse-child objective (an invalid candidate never wins; the first is the default)."""
    n = len(parents)
    best = candidates[0]
    best_value = torch.full((n,), -torch.inf, dtype=parents.lower_bound.dtype, device=parents.lower_bound.device)
    for candidate in candidates:
        kids = _children(parents, candidate, splits)
        bounder.bound(kids, iterations=1)
        per_kid = bounder.objective(kids.lower_bound.T)  # [2n]
        value = torch.where(candidate.valid, torch.minimum(per_kid[:n], per_kid[n:]), -torch.inf)
        better = value > best_value
        best_value = torch.where(better, value, best_value)
        best = Decision(*(torch.where(better, new, old) for new, old in
                          ((candidate.node, best.node), (candidate.index, best.index),
                           (candidate.point, best.point), (candidate.valid, best.valid))))
    return best


def _children(parents: DomainBatch, decision: Decision, splits: list[SplitNode]) -> DomainBatch:
    """Two children per parent: first ``z_j <= p`` (upper cut), then ``z_j >= p`` (lower cut)."""
    B = len(parents)
    both = torch.cat([torch.arange(B), torch.arange(B)]).to(decision.node.device)
    kids = parents.take(both)
    for split in splits:
        rows = (decision.node == split.index).nonzero().flatten()
        if not len(rows):
            continue
        idx, point = decision.index[rows], decision.point[rows]
        up, lo = kids.upper[split.index], kids.lower[split.index]
        up[rows, idx] = torch.minimum(up[rows, idx], point)
        lo[rows + B, idx] = torch.maximum(lo[rows + B, idx], point)
    dtype = kids.lower_bound.dtype
    sign = torch.cat([-torch.ones(B, dtype=dtype), torch.ones(B, dtype=dtype)]).to(kids.lower_bound.device)
    kids.history = kids.history.append(decision.node[both], decision.index[both], sign, decision.point[both])
    kids.beta = torch.cat([kids.beta, kids.beta.new_zeros(2 * B, kids.beta.shape[1], 1)], 2)
    kids.depth = kids.depth + 1
    return kids


@torch.no_grad()
def activation_bab(graph: Graph, box: Interval, C: Tensor, rhs: Tensor, groups: Tensor, *,
                   root_bounds: list[Interval | None], deadline: float | None,
                   options: GenBabOptions | None = None, root_alpha: dict[int, Tensor] | None = None) -> BabOutcome:
    """Prove ``C y > rhs`` for some row of every disjunct (``groups[r]``) on all of ``box``
    (``[1, *input_shape]``), or report why not. ``root_bounds``: the root intermediate bounds (frozen);
    ``root_alpha``: optimized output relaxation parameters per node (``[k, spec, 1, *shape]``, e.g.
    alpha-CROWN's), the warm start of every domain's alpha."""
    options = options or GenBabOptions()
    start = time.monotonic()
    outcome = BabOutcome("unknown")
    splits = find_split_nodes(graph)
    spec = len(rhs)
    dtype, device = box.lower.dtype, box.lower.device
    bounder = _Bounder(graph, box, C, rhs, groups, root_bounds, splits, options, deadline, root_alpha)
    store = DomainStore(rhs, groups)
    root = DomainBatch(
        {s.index: bounder.root[s.index].lower.reshape(1, -1).clone() for s in splits},
        {s.index: bounder.root[s.index].upper.reshape(1, -1).clone() for s in splits},
        SplitHistory.empty(1, dtype, device),
        torch.zeros(1, spec, 0, dtype=dtype, device=device),
        torch.full((1, spec), -torch.inf, dtype=dtype, device=device),
        torch.zeros(1, dtype=torch.long, device=device),
    )
    batch = options.batch or automatic_batch(graph, spec)

    def finish(status: str, reason: str = "") -> BabOutcome:
        outcome.status, outcome.reason = status, reason
        log.info("activation BaB: %s after %d domains (%s)", status, outcome.domains_explored, reason)
        return outcome

    def note() -> None:
        outcome.history.append((time.monotonic() - start, len(store), store.global_worst()))

    try:
        bounder.bound(root)
        outcome.domains_explored = 1
        if bool((store.worst_margin(root) <= 0).all()):
            store.push(root)
        note()
        if not splits and len(store):
            return finish("unknown", "no splittable node in the graph")
        shortcuts = None
        if options.branching == "bbps" and len(store):
            masks = {s.index: candidate_mask(graph, s, root.lower[s.index], root.upper[s.index])[0] for s in splits}
            shortcuts = compute_shortcuts(graph, bounder.root, splits, masks, deadline)
        elif options.branching not in ("bbps", "babsr"):
            raise ValueError(f"unknown branching heuristic {options.branching!r} (use 'bbps' or 'babsr')")
        while len(store):
            if deadline is not None and time.monotonic() > deadline:
                return finish("timeout", f"{len(store)} domains open at the deadline")
            parents = store.pop_worst(batch)
            lam = bounder.record_lambda(parents)
            n = len(parents)
            in_box = bounder.bounds_for(parents)[0]
            inputs = ScoreInputs(
                parents.lower, parents.upper, lam, parents.lower_bound - rhs[None], groups, store.n_groups,
                Interval(in_box.lower.reshape(n, -1), in_box.upper.reshape(n, -1)),
            )
            candidates = split_candidates(graph, splits, inputs, max(1, options.filter_top_k),
                                          method=options.branching, point_method=options.branch_points,
                                          relu_only=options.relu_only, shortcuts=shortcuts, deadline=deadline)
            decision = candidates[0]
            if len(candidates) > 1 and bool(decision.valid.all()):
                decision = _filter_candidates(bounder, parents, candidates, splits)
            if not bool(decision.valid.all()):
                # nothing left to split there: only a converged beta (the Lagrangian of the leaf LP)
                # can still refute those domains; if it cannot, the answer is unknown anyway
                stuck = parents.take((~decision.valid).nonzero().flatten())
                bounder.bound(stuck, effort=10)
                open_stuck = stuck.take((store.worst_margin(stuck) <= 0).nonzero().flatten())
                rest = parents.take(decision.valid.nonzero().flatten())
                store.push(rest)
                if len(open_stuck):
                    store.push(open_stuck)
                    return finish("unknown", "an open domain has no candidate neuron left to split")
                note()
                continue
            kids = _children(parents, decision, splits)
            bounder.bound(kids)
            outcome.domains_explored += len(kids)
            store.push(kids.take((store.worst_margin(kids) <= 0).nonzero().flatten()))
            note()
    except UnsupportedInput as exc:
        return finish("unknown", f"cannot bound soundly: {exc}")
    except TimeLimitReached:
        return finish("timeout", f"{len(store)} domains open at the deadline")
    if deadline is not None and time.monotonic() > deadline and len(store):
        return finish("timeout", f"{len(store)} domains open at the deadline")
    return finish("verified", "every domain refuted")
