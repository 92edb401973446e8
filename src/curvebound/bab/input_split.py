"""Input-space branch-and-bound for properties with few perturbed inputs (design.md d.1).

The property on the box ``X`` is violated iff some ``x in X`` and some disjunct ``d`` satisfy
``C_r f(x) <= rhs_r`` for every row ``r`` of ``d``. A sub-box is *done* when every disjunct is refuted
on it: some row has a certified ``lb_r > rhs_r`` with ``lb_r <= min_{x in box} C_r f(x)``.

Every round takes up to ``batch`` open boxes (worst margin first), splits each at the midpoint of one
dimension, bounds all children in one batched CROWN call and keeps the children that are not done.
Invariants:

* the open boxes (plus the "too small" ones) cover every violating point of the root box;
* each stored row bound is a lower bound of ``C_r f(x) - rhs_r`` on its box (a child keeps
  ``max(child, parent)``: the child box lies inside the parent);
* clipping (Clip-and-Verify) only removes points at which every open disjunct has a row whose
  linear lower bound ``a_r . x + c_r - rhs_r`` is ``> 0``, i.e. points that violate nothing.

The final CROWN pass is run here (``_linear_bound``) rather than through ``spec_lower_bound`` because
branching and clipping need the linear bound ``C_r f(x) >= a_r . x + c_r`` itself, not only its
minimum over the box.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..bounds.alpha import AlphaOptions, optimize_spec_bound
from ..bounds.crown import backward_linear, intermediate_bounds
from ..errors import TimeLimitReached
from ..graph.ir import Graph
from ..ops.base import Interval, UnsupportedInput, safe_product
from .result import BabOutcome

log = logging.getLogger("curvebound")

#: at most this many perturbed input dimensions make input splitting the method of choice
MAX_SPLIT_DIMS = 20
#: automatic batch: aim at this many floats of CROWN coefficients per round
COEFFICIENT_BUDGET = 2**22
#: a dimension narrower than this fraction of its root width is not split any more
MIN_RELATIVE_WIDTH = 1e-9
#: smart branching trusts the linear coefficients only where halving a dimension is estimated to
#: close at least this fraction of the box's gap to refutation
SB_MIN_GAIN = 0.25
#: boxes whose centres (and a few more points) are checked concretely in an attack round
ATTACK_BOXES = 256
ATTACK_RANDOM_POINTS = 4


@dataclass
class InputSplitOptions:
    batch: int = 0  # boxes split per round (2*batch children bounded); 0 = automatic from model size
    alpha_iterations: int = 0  # 0 = plain CROWN per round; >0 = that many alpha-CROWN steps on open children
    branching: str = "sb"  # "sb" (smart branching score, design d.1) or "naive" (widest dim)
    clip: bool = True  # shrink boxes with the linear bound (Clip-and-Verify)
    attack_every: int = 5  # rounds between concrete checks of the worst boxes


def input_split_suitable(graph: Graph, box: Interval) -> bool:
    """True when the box has between 1 and ``MAX_SPLIT_DIMS`` perturbed (non-zero-width) inputs."""
    perturbed = int(((box.upper - box.lower) > 0).sum())
    return 0 < perturbed <= MAX_SPLIT_DIMS


# ---------------------------------------------------------------------------------------------
# bounding
# ---------------------------------------------------------------------------------------------


def _linear_bound(graph: Graph, bounds: list[Interval | None], A: Tensor) -> tuple[Tensor, Tensor]:
    """CROWN from the output: ``A . f(x) >= coeff . x + bias`` on the box; ``coeff [spec, batch, n_in]`` (flat)."""
    at_input, bias = backward_linear(graph, bounds, graph.output, A)
    spec, batch = A.shape[:2]
    return at_input.reshape(spec, batch, -1), torch.nan_to_num(bias, nan=-torch.inf)


def _concretize(coeff: Tensor, bias: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``min_{l <= x <= u} coeff . x + bias``: coeff ``[spec, batch, n]``, l/u ``[batch, n]`` -> ``[spec, batch]``."""
    lo, hi = lower[None], upper[None]
    return bias + torch.minimum(safe_product(coeff, lo), safe_product(coeff, hi)).sum(-1)


@dataclass
class _Bounded:
    """Result of bounding a batch of boxes: row margins ``lb_r - rhs_r`` ``[rows, batch]`` and the
    linear bound ``C_r f(x) >= coeff_r . x + bias_r`` (``coeff [rows, batch, n]``) valid on each box."""

    margin: Tensor
    coeff: Tensor
    bias: Tensor


def _bound_boxes(
    graph: Graph, lower: Tensor, upper: Tensor, C: Tensor, rhs: Tensor, groups: Tensor,
    options: InputSplitOptions, deadline: float | None,
) -> _Bounded:
    """CROWN (optionally alpha-CROWN) bounds of every row on every box ``[lower, upper]`` (``[batch, n]``)."""
    batch = lower.shape[0]
    shape = graph.input_shape
    box = Interval(lower.reshape(batch, *shape), upper.reshape(batch, *shape))
    bounds = intermediate_bounds(graph, box, deadline=deadline)
    rows = C.shape[0]
    A = C[:, None, :].expand(rows, batch, C.shape[1]).contiguous()
    coeff, bias = _linear_bound(graph, bounds, A.reshape(rows, batch, *graph.output_shape))
    lb = _concretize(coeff, bias, lower, upper)
    out = bounds[graph.output]
    y_lo = out.lower.reshape(1, batch, -1)
    y_hi = out.upper.reshape(1, batch, -1)
    ibp = (safe_product(A.clamp(min=0), y_lo) + safe_product(A.clamp(max=0), y_hi)).sum(-1)
    lb = torch.maximum(lb, torch.nan_to_num(ibp, nan=-torch.inf))
    margin = lb - rhs[:, None]
    if options.alpha_iterations > 0:
        margin = _alpha_refine(graph, box, bounds, A, rhs, groups, margin, options, deadline)
    return _Bounded(margin, coeff, bias)


def _alpha_refine(
    graph: Graph, box: Interval, bounds: list[Interval | None], A: Tensor, rhs: Tensor, groups: Tensor,
    margin: Tensor, options: InputSplitOptions, deadline: float | None,
) -> Tensor:
    """A few alpha-CROWN steps on the boxes CROWN leaves open; returns the (never worse) margins."""
    n_groups = int(groups.max()) + 1
    dm = _disjunct_margins(margin, groups, n_groups)
    open_boxes = (dm <= 0).any(0).nonzero().flatten()
    if len(open_boxes) == 0:
        return margin
    sub_box = box[open_boxes]
    reference = [None if b is None else b[open_boxes] for b in bounds]
    lb = margin[:, open_boxes] + rhs[:, None]
    with torch.enable_grad():
        result = optimize_spec_bound(
            graph, sub_box, A[:, open_boxes], rhs, groups, reference, lb,
            AlphaOptions(iterations=options.alpha_iterations), deadline,
        )
    margin = margin.clone()
    margin[:, open_boxes] = torch.maximum(margin[:, open_boxes], result.lower.detach() - rhs[:, None])
    return margin


def _disjunct_margins(margin: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """``[n_groups, batch]``: best row margin ``max_{r in d} margin_r`` per disjunct (> 0: refuted)."""
    out = torch.full((n_groups, margin.shape[1]), -torch.inf, dtype=margin.dtype, device=margin.device)
    return out.scatter_reduce(0, groups[:, None].expand_as(margin), margin, "amax", include_self=True)


# ---------------------------------------------------------------------------------------------
# clipping and branching
# ---------------------------------------------------------------------------------------------


def clip_boxes(
    lower: Tensor, upper: Tensor, coeff: Tensor, bias: Tensor, rhs: Tensor, groups: Tensor, open_: Tensor
) -> tuple[Tensor, Tensor]:
    """Smallest box containing every point of ``[lower, upper]`` that may violate an open disjunct.

    A point violating disjunct ``d`` satisfies ``coeff_r . x + bias_r <= C_r f(x) <= rhs_r`` for every row
    ``r`` of ``d``. Per row and dimension ``i`` (exact interval reasoning, with ``m_j = min`` of
    ``coeff_j x_j`` over the box): ``coeff_i x_i <= rhs - bias - sum_{j != i} m_j``, which bounds ``x_i`` on one
    side. Rows of a disjunct are intersected, open disjuncts (``open_ [groups, batch]``) are joined by
    their hull; a box with no feasible open disjunct comes back empty (``lower > upper`` somewhere).
    Rounding: the slack is widened by a multiple of the rounding error of the sums, and the new end by
    a few ulps, so float arithmetic cannot cut off a feasible point.
    """
    rows, batch, n = coeff.shape
    eps = torch.finfo(coeff.dtype).eps
    lo, hi = lower[None], upper[None]  # [1, batch, n]
    m = torch.minimum(safe_product(coeff, lo), safe_product(coeff, hi))  # [rows, batch, n]
    total = m.sum(-1, keepdim=True)
    b = (rhs[:, None] - bias)[..., None]  # [rows, batch, 1]
    scale = b.abs() + m.abs().sum(-1, keepdim=True) + torch.maximum(safe_product(coeff, lo), safe_product(coeff, hi)
                                                                    ).abs().sum(-1, keepdim=True)
    slack = b - (total - m) + 4 * (n + 4) * eps * scale  # coeff_i x_i <= slack_i
    safe = torch.where(coeff == 0, torch.ones_like(coeff), coeff)
    edge = slack / safe
    edge = edge + 4 * eps * edge.abs() * torch.sign(coeff)  # outward by a few ulps
    edge = torch.nan_to_num(edge, nan=0.0)
    row_hi = torch.where(coeff > 0, torch.minimum(hi, edge), hi.expand_as(coeff))
    row_lo = torch.where(coeff < 0, torch.maximum(lo, edge), lo.expand_as(coeff))
    row_hi = torch.where(torch.isnan(slack).expand_as(coeff), hi.expand_as(coeff), row_hi)
    row_lo = torch.where(torch.isnan(slack).expand_as(coeff), lo.expand_as(coeff), row_lo)
    n_groups = open_.shape[0]
    index = groups[:, None, None].expand(rows, batch, n)
    d_lo = lo.expand(n_groups, batch, n).scatter_reduce(0, index, row_lo, "amax", include_self=True)
    d_hi = hi.expand(n_groups, batch, n).scatter_reduce(0, index, row_hi, "amin", include_self=True)
    live = open_ & (d_lo <= d_hi).all(-1)  # [groups, batch]
    inf = torch.tensor(torch.inf, dtype=lower.dtype, device=lower.device)
    new_lo = torch.where(live[..., None], d_lo, inf).amin(0)
    new_hi = torch.where(live[..., None], d_hi, -inf).amax(0)
    dead = ~live.any(0)
    new_lo = torch.where(dead[:, None], upper, torch.maximum(new_lo, lower))
    new_hi = torch.where(dead[:, None], lower, torch.minimum(new_hi, upper))
    # a dead box is returned with lower/upper swapped in every non-degenerate dimension -> empty
    return new_lo, new_hi


def _bisect(lower: Tensor, upper: Tensor, dims: Tensor) -> tuple[Tensor, Tensor]:
    """Both halves of each box ``[k, n]`` split at the midpoint of ``dims [k]``: ``[2k, n]``, left halves first."""
    ar = torch.arange(lower.shape[0], device=lower.device)
    mid = (lower[ar, dims] + upper[ar, dims]) / 2
    left_hi = upper.clone()
    left_hi[ar, dims] = mid
    right_lo = lower.clone()
    right_lo[ar, dims] = mid
    return torch.cat([lower, right_lo]), torch.cat([left_hi, upper])


def _split_dims(
    lower: Tensor, upper: Tensor, root_width: Tensor, bounded: _Bounded | None, groups: Tensor,
    open_: Tensor | None, rule: str
) -> Tensor:
    """The dimension to split next for each box ``[batch]`` (-1: every dimension is too small).

    ``naive``: the (absolutely) widest dimension. ``sb``: for dimension ``i`` the estimated worst
    open-disjunct margin after halving it, ``min_d max_{r in d} (margin_r + |a_ri| w_i / 4)`` (halving
    ``x_i`` halves the concretization term ``|a_ri| w_i / 2`` of the linear bound), maximized over ``i``.
    That estimate ignores the relaxation error, which shrinks with the box diameter: where the best
    estimated gain closes less than ``SB_MIN_GAIN`` of the gap to 0, the widest dimension is taken."""
    width = upper - lower
    relative = width / torch.where(root_width > 0, root_width, torch.ones_like(root_width))
    splittable = (width > 0) & (relative >= MIN_RELATIVE_WIDTH)
    score = width
    if rule == "sb":
        assert bounded is not None and open_ is not None
        rows, batch, n = bounded.coeff.shape
        est = bounded.margin[..., None] + bounded.coeff.abs() * (width / 4)[None]  # [rows, batch, n]
        index = groups[:, None, None].expand(rows, batch, n)
        per_d = torch.full((open_.shape[0], batch, n), -torch.inf, dtype=est.dtype, device=est.device)
        per_d = per_d.scatter_reduce(0, index, est, "amax", include_self=True)
        estimate = torch.where(open_[..., None], per_d, torch.inf).amin(0)  # [batch, n]
        estimate = torch.where(splittable, estimate, -torch.inf)
        current = _disjunct_margins(bounded.margin, groups, open_.shape[0])
        current = torch.where(open_, current, torch.inf).amin(0)  # [batch] worst open margin (<= 0)
        best = estimate.amax(-1)
        informative = (best - current) >= SB_MIN_GAIN * current.abs()
        score = torch.where(informative[:, None], estimate, width)
    elif rule != "naive":
        raise ValueError(f"unknown input-split branching rule {rule!r} (use 'sb' or 'naive')")
    score = torch.where(splittable, score, -torch.inf)
    dims = score.argmax(-1)
    return torch.where(splittable.any(-1), dims, -1)


# ---------------------------------------------------------------------------------------------
# concrete checks
# ---------------------------------------------------------------------------------------------


def _find_violation(graph: Graph, points: Tensor, C: Tensor, rhs: Tensor, groups: Tensor, n_groups: int
                    ) -> Tensor | None:
    """The first point ``[n]`` of ``points [k, n]`` where some disjunct holds (all rows ``<= 0``), or None."""
    if points.shape[0] == 0:
        return None
    y = graph.forward(points.reshape(points.shape[0], *graph.input_shape)).reshape(points.shape[0], -1)
    values = (y @ C.T - rhs).T  # [rows, k]
    dm = _disjunct_margins(values, groups, n_groups)
    hit = (dm <= 0).any(0).nonzero().flatten()
    return points[hit[0]] if len(hit) else None


def _candidate_points(lower: Tensor, upper: Tensor, gen: torch.Generator) -> Tensor:
    """Centres and ``ATTACK_RANDOM_POINTS`` random points of each box ``[k, n]`` -> ``[k * (1 + R), n]``."""
    centre = (lower + upper) / 2
    t = torch.rand(ATTACK_RANDOM_POINTS, *lower.shape, generator=gen, dtype=torch.float64).to(lower)
    random = (lower + t * (upper - lower)).reshape(-1, lower.shape[1])
    return torch.cat([centre, random])


def _pgd_points(graph: Graph, points: Tensor, lower: Tensor, upper: Tensor, C: Tensor, rhs: Tensor, groups: Tensor,
                n_groups: int, steps: int = 12) -> Tensor:
    """A few projected signed-gradient steps from ``points [k, n]``, each kept inside its own box
    ``[lower, upper] [k, n]``, descending the smallest disjunct margin (a violation has margin <= 0).
    Only proposes candidates: ``_find_violation`` (then onnxruntime) decides."""
    x = points.clone()
    step = (upper - lower) / 8
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            y = graph.forward(x.reshape(x.shape[0], *graph.input_shape)).reshape(x.shape[0], -1)
            dm = _disjunct_margins((y @ C.T - rhs).T, groups, n_groups)  # [groups, k]
            loss = dm.amin(0).sum()
            (grad,) = torch.autograd.grad(loss, x)
        x = torch.minimum(torch.maximum(x.detach() - step * grad.sign(), lower), upper)
        step = step * 0.7
    return x


def _probe_vertices(lower: Tensor, upper: Tensor, coeff: Tensor, margin: Tensor, groups: Tensor, n_groups: int
                    ) -> Tensor:
    """Per box ``[batch, n]``: the vertex minimizing the summed linear lower bounds of the rows of its worst
    disjunct (where a violation is most likely if the bound is nearly tight)."""
    dm = _disjunct_margins(margin, groups, n_groups)  # [groups, batch]
    worst = dm.argmin(0)  # [batch]
    in_worst = (groups[:, None] == worst[None]).to(coeff.dtype)  # [rows, batch]
    direction = (coeff * in_worst[..., None]).sum(0)  # [batch, n]
    return torch.where(direction > 0, lower, upper)


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------


def _auto_batch(graph: Graph) -> int:
    """Boxes split per round: CROWN for a node of size ``s`` holds ``2 s`` rows of coefficients on
    ``s_max``-sized nodes per child, two children per split box."""
    largest = max(node.size for node in graph.nodes)
    per_box = 2 * 2 * largest * largest
    return max(1, min(COEFFICIENT_BUDGET // per_box, 4096))


def input_split_bab(
    graph: Graph,
    box: Interval,
    C: Tensor,
    rhs: Tensor,
    groups: Tensor,
    *,
    deadline: float | None,
    options: InputSplitOptions | None = None,
) -> BabOutcome:
    """Branch and bound on the input box (``[1, *graph.input_shape]``) for the property
    "violated iff some disjunct ``g`` has ``C_r f(x) <= rhs_r`` for all rows ``r`` with ``groups[r] == g``".

    Returns "verified" when every sub-box is refuted, "counterexample" with a violating ``x`` (float64,
    flat) found by a concrete check, "timeout" past ``deadline`` (``time.monotonic()`` seconds), or
    "unknown" when only boxes too small to split remain (or the bounds cannot be computed)."""
    options = options or InputSplitOptions()
    start = time.monotonic()
    dtype, device = box.lower.dtype, box.lower.device
    C = C.to(dtype=dtype, device=device)
    rhs = rhs.to(dtype=dtype, device=device)
    groups = groups.to(device=device, dtype=torch.long)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    history: list[tuple[float, int, float]] = []
    if n_groups == 0:
        return BabOutcome("verified", reason="no unsafe region")
    if deadline is not None and time.monotonic() > deadline:
        return BabOutcome("timeout", reason="deadline passed before branch-and-bound started")
    batch = options.batch if options.batch > 0 else _auto_batch(graph)
    gen = torch.Generator().manual_seed(0)
    root_lo = box.lower.reshape(1, -1)
    root_hi = box.upper.reshape(1, -1)
    root_width = root_hi - root_lo
    explored = 0

    def outcome(status: str, **kw) -> BabOutcome:
        return BabOutcome(status, domains_explored=explored, history=history, **kw)

    def counterexample(x: Tensor) -> BabOutcome:
        x = torch.minimum(torch.maximum(x, root_lo[0]), root_hi[0])
        return outcome("counterexample", x=x.detach().to(torch.float64).cpu().numpy().reshape(-1))

    try:
        with torch.no_grad():
            hit = _find_violation(graph, (root_lo + root_hi) / 2, C, rhs, groups, n_groups)
            if hit is not None:
                return counterexample(hit)
            # open boxes: lower/upper [N, n], row margins [rows, N] (floors), next split dimension [N]
            lower, upper, margin, dims, probes = _process_children(
                graph, root_lo, root_hi, None, root_width, C, rhs, groups, n_groups, options, deadline
            )
            explored = 1
            hit = _find_violation(graph, probes, C, rhs, groups, n_groups)
            if hit is not None:
                return counterexample(hit)
            stuck_count = probes.shape[0] - 2 * lower.shape[0]
            round_index = 0
            while lower.shape[0]:
                box_margin = _disjunct_margins(margin, groups, n_groups).amin(0)  # [N]
                history.append((time.monotonic() - start, int(lower.shape[0]), float(box_margin.min())))
                if deadline is not None and time.monotonic() > deadline:
                    return outcome("timeout", reason=f"{lower.shape[0]} boxes still open at the deadline")
                if options.attack_every > 0 and round_index % options.attack_every == 0:
                    k = min(ATTACK_BOXES, lower.shape[0])
                    worst = torch.topk(-box_margin, k).indices
                    points = _candidate_points(lower[worst], upper[worst], gen)
                    hit = _find_violation(graph, points, C, rhs, groups, n_groups)
                    if hit is None:
                        reps = points.shape[0] // k
                        b_lo, b_hi = lower[worst].repeat(reps, 1), upper[worst].repeat(reps, 1)
                        points = _pgd_points(graph, points, b_lo, b_hi, C, rhs, groups, n_groups)
                        hit = _find_violation(graph, points, C, rhs, groups, n_groups)
                    if hit is not None:
                        return counterexample(hit)
                round_index += 1
                k = min(batch, lower.shape[0])
                if k < lower.shape[0]:
                    chosen = torch.topk(-box_margin, k).indices
                    keep = torch.ones(lower.shape[0], dtype=torch.bool, device=device)
                    keep[chosen] = False
                else:
                    chosen = torch.arange(k, device=device)
                    keep = torch.zeros(lower.shape[0], dtype=torch.bool, device=device)
                p_lo, p_hi, p_margin, p_dims = lower[chosen], upper[chosen], margin[:, chosen], dims[chosen]
                lower, upper, margin, dims = lower[keep], upper[keep], margin[:, keep], dims[keep]
                # while few boxes are open, split each into 2**levels parts (first on its chosen dimension,
                # then on the widest ones) so a round still fills the batch
                levels = max(1, int(math.log2(max(1.0, 2 * batch / k))))
                c_lo, c_hi = _bisect(p_lo, p_hi, p_dims)
                floor = torch.cat([p_margin, p_margin], 1)
                for _ in range(levels - 1):
                    more = _split_dims(c_lo, c_hi, root_width, None, groups, None, "naive")
                    if bool((more < 0).any()):
                        break
                    c_lo, c_hi = _bisect(c_lo, c_hi, more)
                    floor = torch.cat([floor, floor], 1)
                explored += c_lo.shape[0]
                c_lo, c_hi, c_margin, c_dims, probes = _process_children(
                    graph, c_lo, c_hi, floor, root_width, C, rhs, groups, n_groups, options, deadline
                )
                hit = _find_violation(graph, probes, C, rhs, groups, n_groups)
                if hit is not None:
                    return counterexample(hit)
                stuck_count += probes.shape[0] - 2 * c_lo.shape[0]
                lower = torch.cat([lower, c_lo])
                upper = torch.cat([upper, c_hi])
                margin = torch.cat([margin, c_margin], 1)
                dims = torch.cat([dims, c_dims])
    except UnsupportedInput as exc:
        return outcome("unknown", reason=f"cannot bound soundly: {exc}")
    except TimeLimitReached:  # inside a round's bounds: the domains explored so far still count
        return outcome("timeout", reason="the deadline passed while bounding a round of boxes")
    history.append((time.monotonic() - start, 0, math.inf))
    if stuck_count:
        return outcome("unknown", reason=f"{stuck_count} boxes too small to split are not refuted")
    return outcome("verified")


def _process_children(
    graph: Graph, lower: Tensor, upper: Tensor, floor: Tensor | None, root_width: Tensor,
    C: Tensor, rhs: Tensor, groups: Tensor, n_groups: int, options: InputSplitOptions, deadline: float | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Bound new boxes, clip them, drop the refuted ones, choose their split dimensions.

    Returns the open boxes ``lower, upper [M, n]``, their row margins ``[rows, M]``, split dims ``[M]``,
    and points worth a concrete check ``[S + 2 M, n]``: first the centres of the ``S`` unrefuted boxes too
    small to split (dropped from the open list), then the centres and probe vertices of the open boxes."""
    bounded = _bound_boxes(graph, lower, upper, C, rhs, groups, options, deadline)
    margin = bounded.margin if floor is None else torch.maximum(bounded.margin, floor)
    dm = _disjunct_margins(margin, groups, n_groups)
    open_ = dm <= 0
    if options.clip:
        lower, upper = clip_boxes(lower, upper, bounded.coeff, bounded.bias, rhs, groups, open_)
        empty = (lower > upper).any(-1)
        # the linear bound holds on the old box, so also on the clipped one: re-concretize there
        lb = _concretize(bounded.coeff, bounded.bias, lower, upper) - rhs[:, None]
        margin = torch.where(empty[None], torch.full_like(margin, torch.inf), torch.maximum(margin, lb))
        dm = _disjunct_margins(margin, groups, n_groups)
        open_ = dm <= 0
    alive = open_.any(0)
    idx = alive.nonzero().flatten()
    lower, upper, margin, open_ = lower[idx], upper[idx], margin[:, idx], open_[:, idx]
    bounded = _Bounded(margin, bounded.coeff[:, idx], bounded.bias[:, idx])
    dims = _split_dims(lower, upper, root_width, bounded, groups, open_, options.branching)
    small = dims < 0
    vertices = _probe_vertices(lower, upper, bounded.coeff, margin, groups, n_groups)
    keep = ~small
    centres = (lower + upper) / 2
    probes = torch.cat([centres[small], centres[keep], vertices[keep]])
    return lower[keep], upper[keep], margin[:, keep], dims[keep], probes
