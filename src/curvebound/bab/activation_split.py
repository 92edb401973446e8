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
import os
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
    _relu_like,
    candidate_mask,
    compute_shortcuts,
    find_split_nodes,
    split_candidates,
)
from .chain_heads import HeadMap, chain_interval, head_map
from .domains import DomainBatch, DomainStore, disjunct_margins
from .result import BabOutcome

log = logging.getLogger(__name__)


@dataclass
class GenBabOptions:
    batch: int = 0  # domains per round; 0 = automatic from model size and free memory (automatic_batch)
    branching: str = "bbps"  # "bbps" | "babsr"
    branch_points: str = "optimized"  # "optimized" (lookup table, if available) | "midpoint"
    relu_only: bool = False  # only ReLU-like neurons are candidates (ablation)
    iterations: int = 20  # alpha/beta Adam steps per round
    lr_alpha: float = 0.01
    lr_beta: float = 0.05
    # > 1: bound the children of each domain's ``filter_top_k`` best candidates (``filter_iterations``
    # steps each) and split the one whose worse child is best (design.md c.3 "filtering"); 0/1: off.
    # On by default: per-neuron estimates can be far off (``split_candidates``), and 3 candidates x
    # 3 steps cost about 9/20 of a round
    filter_top_k: int = 3
    # optimization steps that bound a candidate's children when filtering: with 1 (the bound at the
    # parent's parameters, projected) a split whose gain needs the child's own relaxation slopes looks
    # like no split at all (ERAN Sigmoid 6x200, 4214 widened by 0.003: a last-layer cut scored -0.152
    # against the parent's -0.152 after 1 step, -0.117 after 20, the best of the three; 3 steps
    # prove it in 9 domains where 1 step timed out after 833)
    # (ReLU splits change the bound at once: a graph whose every split is a ReLU filters with 1 step)
    filter_iterations: int = 3


#: stop a round's optimization after this many steps without improving the batch objective
PATIENCE = 5
#: most alpha elements (k x spec x node size, summed over nodes) a domain keeps for its children
ALPHA_ELEMENTS_PER_DOMAIN = 2**18


#: most domains per round: on CPU a round's cost grows linearly with the batch (no throughput to gain,
#: only adaptivity to lose), so the batch also keeps ``spec x sum of node sizes x batch`` under
#: ``CPU_ROUND_ELEMENTS``; a GPU needs large batches to be busy
MAX_BATCH = {"cpu": 64, "cuda": 1024}
CPU_ROUND_ELEMENTS = 2**22
#: bytes per (spec row x node element) one domain's bounding holds at its peak (coefficients of a few
#: nodes at once, autograd's saved tensors, Adam's state), a measured-then-rounded-up factor
BYTES_PER_ELEMENT = 48


def free_memory(device: torch.device | str) -> int | None:
    """Bytes free for tensors on ``device``: CUDA's own count, else the system's available physical
    memory (Linux ``sysconf``); None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def automatic_batch(graph: Graph, spec: int, device: torch.device | str = "cpu") -> int:
    """Domains per round: a quarter of the free memory over one domain's peak need
    (``spec x sum of node sizes x BYTES_PER_ELEMENT``), between 4 and ``MAX_BATCH`` of the device
    (on CPU also at most ``CPU_ROUND_ELEMENTS / (spec x sum of node sizes)``)."""
    total = sum(node.size for node in graph.nodes)
    per_domain = max(1, spec * total)
    kind = torch.device(device).type
    cap = MAX_BATCH.get(kind, MAX_BATCH["cpu"])
    if kind != "cuda":
        cap = min(cap, CPU_ROUND_ELEMENTS // per_domain)
    free = free_memory(device)
    if free is not None:
        cap = min(cap, free // 4 // (per_domain * BYTES_PER_ELEMENT))
    return int(max(4, cap))


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
        self.relu_splits_only = all(_relu_like(graph.nodes[c].op) for c in self.consumers)
        self.root_alpha = root_alpha or {}
        # split nodes behind a pointwise affine chain are cut at its head (chain_heads.py)
        self.heads: dict[int, HeadMap] = {}
        for split in splits:
            found = head_map(graph, split.index, box.lower.dtype, box.lower.device)
            if found is not None and self.root[found.head] is not None:
                self.heads[split.index] = found

    def tracked(self) -> list[int]:
        """Nodes whose interval each domain carries: the split nodes and the chain heads."""
        return sorted({s.index for s in self.splits} | {m.head for m in self.heads.values()})

    def root_domain(self, spec: int) -> DomainBatch:
        dtype, device = self.C.dtype, self.C.device
        return DomainBatch(
            {k: self.root[k].lower.reshape(1, -1).clone() for k in self.tracked()},
            {k: self.root[k].upper.reshape(1, -1).clone() for k in self.tracked()},
            SplitHistory.empty(1, dtype, device),
            torch.zeros(1, spec, 0, dtype=dtype, device=device),
            torch.full((1, spec), -torch.inf, dtype=dtype, device=device),
            torch.zeros(1, dtype=torch.long, device=device),
        )

    def open_rows(self, domains: DomainBatch) -> Tensor:
        """The spec rows of the disjuncts not refuted in at least one of the domains."""
        margins = disjunct_margins(domains.lower_bound, self.rhs, self.groups, self.n_groups)  # [n, groups]
        return (margins <= 0).any(0)[self.groups].nonzero().flatten()

    def warm_params(self, bounds: list[Interval | None], n: int, rows: Tensor | None = None,
                    domains: DomainBatch | None = None) -> RelaxationParams:
        """Relaxation parameters for ``n`` domains (spec ``rows``, default all): each domain's own
        (inherited from its parent), else the root's optimized output parameters (alpha-CROWN's),
        projected onto each domain's intervals; parameters of other nodes start from the defaults."""
        params = RelaxationParams(create=True)
        dtype = self.C.dtype
        for node, stored in ({} if domains is None else domains.alpha).items():  # [n, k, spec, *shape]
            value = stored if rows is None else stored[:, :, rows]
            value = value.movedim(0, 2).to(dtype)  # [k, spec, n, *shape]
            op = self.graph.nodes[node].op
            value = op.project_params(value.contiguous(), [bounds[i] for i in self.graph.nodes[node].inputs])
            params.values[(node, self.graph.output)] = value.detach().requires_grad_(True)
        for node, value in self.root_alpha.items():
            if (node, self.graph.output) in params.values:
                continue
            if rows is not None:
                value = value[:, rows]
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
        for index in self.tracked():
            shape = self.root[index].lower.shape[1:]
            out[index] = Interval(domains.lower[index].reshape(n, *shape), domains.upper[index].reshape(n, *shape))
        return out

    def _fresh_head_cuts(self, domains: DomainBatch) -> tuple[Tensor, Tensor] | None:
        """``(node, index)`` of each domain's newest constraint when it is a cut on a chain head that
        is not itself a split node (node -1 elsewhere), or None when there is none."""
        split_nodes = {s.index for s in self.splits}
        heads = {m.head for m in self.heads.values()} - split_nodes
        if not heads or domains.history.width == 0:
            return None
        node = domains.history.node[:, -1].clone()
        on_head = torch.zeros_like(node, dtype=torch.bool)
        for h in heads:
            on_head |= node == h
        if not bool(on_head.any()):
            return None
        node[~on_head] = -1
        return node, domains.history.index[:, -1]

    @staticmethod
    @torch.no_grad()
    def _init_head_beta(beta: Tensor, history: SplitHistory, cut: tuple[Tensor, Tensor],
                        recorded: dict[int, Tensor]) -> None:
        """Warm start for the multipliers of a freshly cut head element ``h_i``: the coefficient ``A_i``
        that ``h_i`` still has in the bound (after the inherited beta) is moved onto the tightest cut
        on the side that binds (``A_i > 0``: the largest ``h_i >= q``; ``A_i < 0``: the smallest
        ``h_i <= q``), whose multiplier grows by ``|A_i|``. The bound then uses the domain's interval
        of ``h_i`` exactly, where Adam from 0 took many steps to get there (the bound is piecewise
        linear in beta). Any ``beta >= 0`` is sound; this is only a starting point."""
        node, index = cut
        for h, A in recorded.items():
            rows = (node == h).nonzero().flatten()
            if not len(rows):
                continue
            coeff = A[:, rows, index[rows]]  # [spec, m]: residual coefficient of the cut element
            same = (history.node[rows] == h) & (history.index[rows] == index[rows, None])  # [m, H]
            sign, point = history.sign[rows], history.point[rows]
            for side in (-1.0, 1.0):
                # tightest cut of this side: smallest point of the "<=" cuts, largest of the ">=" cuts
                key = torch.where(same & (sign == side), side * point, -torch.inf)
                value, column = key.max(1)
                usable = torch.isfinite(value)
                amount = (side * coeff).clamp(min=0) * usable[None]  # [spec, m]
                beta[:, rows, column] += amount
    def children(self, parents: DomainBatch, decision: Decision) -> DomainBatch:
        """Two children per parent: first ``z_j <= p`` (upper cut), then ``z_j >= p`` (lower cut). A split
        node behind a pointwise chain is cut at the head element it copies (``chain_heads.py``), and
        every split node behind a cut head gets its interval again from the head's."""
        B = len(parents)
        device = decision.node.device
        both = torch.cat([torch.arange(B), torch.arange(B)]).to(device)
        kids = parents.take(both)
        node, index, point = decision.node.clone(), decision.index.clone(), decision.point.clone()
        dtype = point.dtype
        first_sign = -torch.ones(B, dtype=dtype, device=device)  # the first child is "<= p"
        for split, found in self.heads.items():
            rows = (decision.node == split).nonzero().flatten()
            if not len(rows):
                continue
            j = decision.index[rows]
            scale = found.scale[j]
            head_point = (decision.point[rows] - found.shift[j]) / torch.where(scale != 0, scale, 1.0)
            at = found.index[j]
            # a cut that does not fall strictly inside the head's interval would leave one child equal
            # to the parent (rounding can leave z_j = -1e-17 after an earlier cut at the same point):
            # those rows, and constants (scale 0), cut the split node itself
            inside = (scale != 0) & (head_point > parents.lower[found.head][rows, at]) & \
                (head_point < parents.upper[found.head][rows, at])
            rows, at, head_point, scale = rows[inside], at[inside], head_point[inside], scale[inside]
            node[rows] = found.head
            index[rows] = at
            point[rows] = head_point
            first_sign[rows] = torch.where(scale < 0, 1.0, -1.0).to(dtype)
        sign = torch.cat([first_sign, -first_sign])
        node, index, point = node[both], index[both], point[both]
        cut = set(node.unique().tolist())
        for target in cut:
            for side in (-1.0, 1.0):
                rows = ((node == target) & (sign == side)).nonzero().flatten()
                if not len(rows):
                    continue
                bound = kids.upper[target] if side < 0 else kids.lower[target]
                tighter = torch.minimum if side < 0 else torch.maximum
                bound[rows, index[rows]] = tighter(bound[rows, index[rows]], point[rows])
        for split, found in self.heads.items():
            if found.head not in cut:
                continue
            shape = self.root[found.head].lower.shape[1:]
            head = Interval(kids.lower[found.head].reshape(2 * B, *shape),
                            kids.upper[found.head].reshape(2 * B, *shape))
            image = chain_interval(self.graph, found.chain, head, self.root)
            kids.lower[split] = torch.maximum(kids.lower[split], image.lower.reshape(2 * B, -1))
            kids.upper[split] = torch.minimum(kids.upper[split], image.upper.reshape(2 * B, -1))
        kids.history = kids.history.append(node, index, sign, point)
        kids.beta = torch.cat([kids.beta, kids.beta.new_zeros(2 * B, kids.beta.shape[1], 1)], 2)
        kids.depth = kids.depth + 1
        return kids

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
        beta = domains.beta.permute(1, 0, 2)
        C = self.C[:, None, :].expand(-1, n, -1)
        record = _recorder(self.consumers, recorded)
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
        # only the rows of disjuncts still open in some domain of the batch are bounded (the others
        # are refuted in every one of them, and a child keeps its parent's bounds)
        rows = self.open_rows(domains)
        if not len(rows):
            return
        C = self.C[rows][:, None, :].expand(-1, n, -1)
        rhs = self.rhs[rows]
        row_groups = torch.unique(self.groups[rows], return_inverse=True)[1]
        n_groups = int(row_groups.max()) + 1

        def objective_of(lower: Tensor) -> Tensor:
            return _objective((lower - rhs[:, None]).T, row_groups, n_groups)

        params = self.warm_params(bounds, n, rows, domains)
        best_alpha: dict[int, Tensor] = {}  # node -> [k, rows, n, *shape], per row from its best bound
        beta = domains.beta[:, rows].permute(1, 0, 2).contiguous().clone()  # [rows, n, H]
        has_beta = beta.shape[2] > 0
        beta.requires_grad_(has_beta)
        best = domains.lower_bound[:, rows].T.clone()  # [rows, n]
        best_objective = objective_of(best)
        best_beta = beta.detach().clone()
        optimizer = None
        stale, best_total = 0, -torch.inf
        fresh_head_cut = self._fresh_head_cuts(domains) if has_beta else None
        for step in range(max(1, (opts.iterations if iterations is None else iterations) * effort)):
            if self.deadline is not None and time.monotonic() > self.deadline:
                break
            recorded: dict[int, Tensor] = {}
            hook = beta_hook(domains.history, beta)
            if step == 0 and fresh_head_cut is not None:
                hook = chain_hooks(hook, _recorder(set(fresh_head_cut[0].unique().tolist()), recorded))
            with torch.enable_grad():
                lower = spec_lower_bound(self.graph, bounds, C, params, hook=hook)
                objective = objective_of(lower)
            with torch.no_grad():
                # beta of row r enters only row r's bound: keep, per row, the beta of its best bound
                # (choosing by the domain's total objective kept the parent's beta whenever one row
                # lagged behind its inherited best, and lost every new multiplier)
                row_improved = lower.detach() > best
                best_beta = torch.where(row_improved[:, :, None], beta.detach(), best_beta)
                for (node, _start), value in params.values.items():
                    kept = best_alpha.get(node)
                    mask = row_improved.reshape(1, *row_improved.shape, *([1] * (value.dim() - 3)))
                    value = value.detach()
                    best_alpha[node] = value.clone() if kept is None else torch.where(mask, value, kept)
                best = torch.maximum(best, lower.detach())
                improved = objective.detach() > best_objective
                best_objective = torch.where(improved, objective.detach(), best_objective)
            if recorded:  # (step 0) rows whose bound did not improve keep the new start as their beta
                self._init_head_beta(beta, domains.history, fresh_head_cut, recorded)
                best_beta = torch.where(row_improved[:, :, None], best_beta, beta.detach())
            with torch.no_grad():
                if bool((objective_of(best) >= 0).all()):
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
            if recorded:
                continue  # bound once with the warm-started beta before Adam moves it (its first step is lr)
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
        lower_bound, all_beta = domains.lower_bound.clone(), domains.beta.clone()
        lower_bound[:, rows] = best.T
        all_beta[:, rows] = best_beta.permute(1, 0, 2)
        domains.lower_bound = torch.where(empty[:, None], torch.inf, lower_bound)
        domains.beta = all_beta
        domains.alpha = self._kept_alpha(domains, best_alpha, rows)

    def _kept_alpha(self, domains: DomainBatch, best: dict[int, Tensor], rows: Tensor) -> dict[int, Tensor]:
        """Each domain's parameters for its children: the best rows' values just found, the rest as
        they were (rows refuted in the whole batch stay refuted in every descendant, so their values
        hardly matter). Nothing is kept above ``ALPHA_ELEMENTS_PER_DOMAIN`` elements per domain."""
        spec = self.C.shape[0]
        per_domain = sum(v.shape[0] * spec * v[0, 0, 0].numel() for v in best.values())
        if not best or per_domain > ALPHA_ELEMENTS_PER_DOMAIN:
            return {}
        out = {}
        for node, value in best.items():  # [k, R, n, *shape]
            k, n, shape = value.shape[0], value.shape[2], value.shape[3:]
            kept = domains.alpha.get(node)
            if kept is None or kept.shape[1] != k:
                kept = torch.zeros(n, k, spec, *shape, dtype=torch.float32, device=value.device)
            kept = kept.clone()
            kept[:, :, rows] = value.movedim(2, 0).float()
            out[node] = kept
        return out


def _recorder(nodes: set[int], into: dict[int, Tensor]):
    """A backward hook that leaves ``A`` alone and keeps it (flat, detached) at the given nodes."""

    def hook(node: int, A: Tensor) -> tuple[Tensor, Tensor]:
        if node in nodes:
            into[node] = A.detach().reshape(A.shape[0], A.shape[1], -1)
        return A, torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)

    return hook


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """``mask [n]`` broadcast to ``like [n, *shape]``."""
    return mask.reshape(-1, *([1] * (like.dim() - 1))).expand_as(like)


def _filter_candidates(bounder: _Bounder, parents: DomainBatch, candidates: list[Decision]) -> Decision:
    """Per domain, the candidate whose children, bounded with ``filter_iterations`` optimization steps
    (1 where every split is a ReLU), have the best worse-child objective (an invalid candidate never
    wins; the first is the default)."""
    n = len(parents)
    best = candidates[0]
    best_value = torch.full((n,), -torch.inf, dtype=parents.lower_bound.dtype, device=parents.lower_bound.device)
    for candidate in candidates:
        if not bool(candidate.valid.any()):
            continue
        kids = bounder.children(parents, candidate)
        bounder.bound(kids, iterations=1 if bounder.relu_splits_only else bounder.options.filter_iterations)
        per_kid = bounder.objective(kids.lower_bound.T)  # [2n]
        value = torch.where(candidate.valid, torch.minimum(per_kid[:n], per_kid[n:]), -torch.inf)
        better = value > best_value
        best_value = torch.where(better, value, best_value)
        best = Decision(*(torch.where(better, new, old) for new, old in
                          ((candidate.node, best.node), (candidate.index, best.index),
                           (candidate.point, best.point), (candidate.valid, best.valid))))
    return best


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
    bounder = _Bounder(graph, box, C, rhs, groups, root_bounds, splits, options, deadline, root_alpha)
    store = DomainStore(rhs, groups)
    root = bounder.root_domain(spec)
    batch = options.batch or automatic_batch(graph, spec, box.lower.device)

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
                                          relu_only=options.relu_only, shortcuts=shortcuts, deadline=deadline,
                                          heads=bounder.heads)
            decision = candidates[0]
            if len(candidates) > 1 and bool(decision.valid.all()):
                decision = _filter_candidates(bounder, parents, candidates)
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
            kids = bounder.children(parents, decision)
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
