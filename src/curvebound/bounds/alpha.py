"""alpha-CROWN (design.md a.4): optimize every relaxation parameter by projected Adam on the bound.

Intermediate layers are optimized jointly with the output: each iteration recomputes every
intermediate bound with its own parameters (one set per start node), then the spec bound. The
loss is the sum, over the disjuncts not yet refuted, of every row margin ``lb_r - rhs_r`` and of
the best one ``max_r (lb_r - rhs_r)``, each clipped at 0 (refuted rows and disjuncts stop pulling).
The best bound seen is kept per row, so the result is never looser than the first iterate
(= CROWN with the default relaxations).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import TimeLimitReached
from ..graph.ir import Graph
from ..ops.base import AffineOperator, Interval
from .crown import (
    RelaxationParams,
    crown_targets,
    exact_by_ibp,
    intermediate_bounds,
    nodes_needing_bounds,
    rows_to_refine,
    spec_lower_bound,
)


@dataclass
class AlphaOptions:
    iterations: int = 100
    lr: float = 0.1
    lr_decay: float = 0.98
    patience: int = 40  # stop after this many iterations without a new best loss
    # stop pulling a row (and stop altogether) once it is refuted; off only to measure tightness
    # against other tools, whose optimization knows no right-hand side
    until_refuted: bool = True
    # above this many intermediate parameters (elements; they scale with rows x layer size per start
    # node, ~1e8 on the 118-bus ml4acopf models), intermediate bounds stay frozen at CROWN's and
    # only the output's relaxations are optimized (one backward pass per iteration)
    max_intermediate_params: int = 10_000_000
    # past a soft deadline, go on only while the worst margin still gains at least this fraction of
    # its size over the last third of the time spent (see ``still_improving``)
    extend_min_gain: float = 0.25


@dataclass
class AlphaResult:
    lower: Tensor  # [spec, batch] best lower bound of C y per row
    iterations: int
    params: RelaxationParams
    bounds: list[Interval | None]
    # (seconds since the start, worst disjunct's best margin) after each iteration
    history: list[tuple[float, float]] = field(default_factory=list)


def disjunct_margins(lower: Tensor, rhs: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """Best row margin per disjunct: ``[n_groups, batch]`` with ``max_{r in d} (lower_r - rhs_r)``."""
    margins = lower - rhs[:, None]
    out = torch.full((n_groups, lower.shape[1]), -torch.inf, dtype=lower.dtype, device=lower.device)
    return out.scatter_reduce(0, groups[:, None].expand_as(margins), margins, "amax", include_self=True)


def still_improving(history: list[tuple[float, float]], min_gain: float) -> bool:
    """Whether the worst margin ``m`` (``history``: (seconds, m) per iteration, m < 0) gained at least
    ``min_gain * |m|`` over the last third of the time so far: m(t) - m(2t/3) >= min_gain |m(t)|.

    On the ERAN Sigmoid 6x200 net the root keeps gaining this way for 100 iterations (-0.15 at 40,
    -0.064 at 100 on a widened 7107, and branch-and-bound closes it in 2 s only from the latter); on
    the ReLU nets it flattens after ~50 (-0.757 at 50, -0.718 at 100 on ERAN 186)."""
    if len(history) < 3:
        return True
    now, margin = history[-1]
    if not math.isfinite(margin) or margin >= 0:
        return False
    earlier = next((m for t, m in reversed(history) if t <= now * 2 / 3), history[0][1])
    return margin - earlier >= min_gain * abs(margin)


def intermediate_param_elements(graph: Graph, reference: list[Interval | None]) -> int:
    """About how many relaxation parameters joint optimization of the intermediate bounds needs:
    per CROWN target ``t`` with ``r`` refined rows, ``2 r`` times the size of every nonlinear node
    before it (judged on the ``reference`` bounds)."""
    targets = crown_targets(graph, nodes_needing_bounds(graph))
    total = 0
    for t, chains in targets.items():
        if t == graph.output or exact_by_ibp(graph, t) or reference[t] is None:
            continue
        rows = len(rows_to_refine(graph, chains, reference[t], reference, reference))
        nonlinear = sum(graph.nodes[k].size for k in graph.ancestors(t)
                        if k > 0 and not isinstance(graph.nodes[k].op, AffineOperator))
        total += 2 * rows * nonlinear
    return total


def optimize_spec_bound(
    graph: Graph,
    box: Interval,
    C: Tensor,
    rhs: Tensor,
    groups: Tensor,
    reference: list[Interval | None],
    initial_lower: Tensor,
    options: AlphaOptions | None = None,
    deadline: float | None = None,
    soft_deadline: float | None = None,
) -> AlphaResult:
    """Maximize the lower bounds of ``C y`` (``C: [spec, batch, n_out]``) over the relaxation
    parameters; ``groups[r]`` is the disjunct of row r. ``reference`` are CROWN's intermediate bounds
    (kept as a floor); ``initial_lower`` CROWN's spec bound (kept as a floor too). Past
    ``soft_deadline`` the optimization goes on, up to ``deadline``, only while ``still_improving``."""
    options = options or AlphaOptions()
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    frozen = intermediate_param_elements(graph, reference) > options.max_intermediate_params
    params = RelaxationParams(create=True)
    best = initial_lower.detach().clone()
    best_bounds = reference
    optimizer = None
    scheduler = None
    best_loss = torch.inf
    stale = 0
    iterations_run = 0
    history: list[tuple[float, float]] = []
    start = time.monotonic()
    for iteration in range(1, options.iterations + 1):
        if deadline is not None and time.monotonic() > deadline:
            break
        if (soft_deadline is not None and time.monotonic() > soft_deadline
                and not still_improving(history, options.extend_min_gain)):
            break
        try:
            bounds = reference if frozen else intermediate_bounds(
                graph, box, params=params, reference=reference, deadline=deadline)
        except TimeLimitReached:
            break  # keep the best bound found so far
        lower = spec_lower_bound(graph, bounds, C, params)
        iterations_run = iteration
        if optimizer is None:
            params.create = False
            trainable = list(params.values.values())
            if not trainable:
                best = torch.maximum(best, lower.detach())
                break
            optimizer = torch.optim.Adam(trainable, lr=options.lr)
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, options.lr_decay)
        with torch.no_grad():
            improved = lower.detach() > best
            if improved.any():
                best = torch.where(improved, lower.detach(), best)
                best_bounds = [None if b is None else Interval(b.lower.detach(), b.upper.detach()) for b in bounds]
        margins = disjunct_margins(lower, rhs, groups, n_groups)
        best_margins = disjunct_margins(best, rhs, groups, n_groups)
        history.append((time.monotonic() - start, float(best_margins.min())))
        if options.until_refuted and bool((best_margins > 0).all()):
            break
        # every row of a disjunct still open pulls (its rows share the intermediate parameters; pulling
        # only the best row stalled ACAS 1_3 prop_3 at -0.29 against the reference's -0.175), and the
        # best row of each open disjunct pulls once more
        if options.until_refuted:
            open_rows = (disjunct_margins(best, rhs, groups, n_groups) <= 0)[groups]
            loss = -((lower - rhs[:, None]).clamp(max=0) * open_rows).sum() - margins.clamp(max=0).sum()
        else:
            loss = -(lower - rhs[:, None]).sum() - margins.sum()
        if not loss.requires_grad:
            break
        # (the first loss always counts: ``inf - 1e-9 * inf`` is NaN, which once made every run stop
        # after exactly ``patience`` iterations)
        if best_loss == torch.inf or loss.item() < best_loss - 1e-9 * (1 + abs(best_loss)):
            best_loss = loss.item()
            stale = 0
        else:
            stale += 1
            if stale >= options.patience:
                break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            for (node, _start), value in params.values.items():
                op = graph.nodes[node].op
                in_bounds = [reference[i] for i in graph.nodes[node].inputs]
                value.copy_(op.project_params(value, in_bounds))
    return AlphaResult(best, iterations_run, params, best_bounds, history)
