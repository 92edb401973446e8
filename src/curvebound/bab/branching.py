"""Where to split a domain: split nodes, candidate neurons, branching points, and the BBPS and
BaBSR-like scores (design.md c.1-c.3).

*Split nodes* are the nodes that are input ``position`` of an op with ``op.splittable`` and ``position``
in ``op.requires_input_bounds`` (both operands of a product). Splitting neuron ``j`` of split node ``z``
at ``p`` gives the children ``z_j <= p`` and ``z_j >= p``.

**BBPS** (bound propagation with shortcuts). For a domain let ``Lam_c`` be the coefficient of the final
lower bound on the output of consumer ``c`` of ``z`` (recorded in the last backward pass). Relaxing
``c`` on the current intervals gives per element ``j`` the coefficients ``mu_{c,i,j}`` on each bounded
input ``i`` of ``c`` and an intercept ``t_{c,j}``. The *shortcuts* are root linear bounds of every split
node in the input, ``WL_j x + cL_j <= z_j <= WU_j x + cU_j`` (valid on every domain). Substituting them:
the layer's contribution to the bound is estimated by

    B0 = min_{x in box} A_tot . x + sum_j b_j,     A_tot = sum_{c,i,j} (mu+ WL + mu- WU)_{c,i,j},
    b_j = sum_c t_{c,j} + sum_{c,i} (mu+ cL + mu- cU)_{c,i,j},

and re-relaxing only neuron ``j`` on child ``k`` (coefficients ``mu'``, ``t'``) changes it to
``B_{jk} = min_x (A_tot + D_{jk}) . x + sum b - b_j + b'_{jk}``. The estimated change
``Delta_{jk} = B_{jk} - B0`` is added to each spec row's current margin; the score of ``j`` is the
worst child's estimated gain on the domain's worst disjunct ``min_d min(max_{r in d} margin_r, 0)``,
plus ``SUM_WEIGHT`` times its gain on the sum over disjuncts (``_split_score``).
ReLU and other neurons are thus scored on one scale. **BaBSR-like**: ``Delta_{jk} = sum_c t'_{c,jk} -
t_{c,j}`` (intercept change only, no shortcut).

Per-neuron estimates need per-element relaxations, so BBPS understands consumers that are
``ElementwiseOperator`` or ``BivariateElementwise`` (same-shape operands); other consumers (MatMul)
contribute no estimate, and their candidates are chosen only by the width tie-breaker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from ..bounds.crown import backward_linear, concretize
from ..errors import check_deadline
from ..graph.ir import Graph
from ..ops.base import ElementwiseOperator, Interval, Operator, safe_product
from ..ops.bilinear import BivariateElementwise, MatMul2, Mul2
from ..ops.piecewise_linear import PiecewiseLinear
from ..ops.relu import LeakyRelu, PRelu
from ..ops.s_shaped import SShaped
from .chain_heads import HeadMap

log = logging.getLogger(__name__)

#: S-shaped ops whose relaxation is already tight on intervals entirely outside [-10, 10]
SATURATING = ("Sigmoid", "Tanh", "Erf")
SATURATION = 10.0
MIN_WIDTH = 0.01
#: the largest ``[rows, batch, chunk, n_in]`` tensor one BBPS concretization builds
CHUNK_ELEMENTS = 2**22
#: split nodes with at most this many ``size * n_in`` elements keep a shortcut for every neuron
FULL_SHORTCUT_ELEMENTS = 2**23
#: per split node, BBPS scores only this many neurons (best BaBSR-like estimates) plus each domain's best
BBPS_COLUMNS = 16
#: most coefficient elements (rows x sizes of the nodes passed) one split node's shortcut pass may touch
SHORTCUT_WORK = 2**26


@dataclass
class SplitNode:
    index: int  # graph node
    consumers: list[tuple[int, int]]  # (consumer node, input position) pairs that bound this node
    size: int
    shape: tuple[int, ...]


def find_split_nodes(graph: Graph) -> list[SplitNode]:
    """Every node that is a bounded input of a splittable op, with its consumers, in graph order."""
    found: dict[int, list[tuple[int, int]]] = {}
    for node in graph.nodes[1:]:
        op = node.op
        if not op.splittable:
            continue
        for position in op.requires_input_bounds:
            found.setdefault(node.inputs[position], []).append((node.index, position))
    return [SplitNode(i, found[i], graph.nodes[i].size, graph.nodes[i].shape) for i in sorted(found)]


def _relu_like(op: Operator) -> bool:
    return isinstance(op, (LeakyRelu, PRelu))


def _product(op: Operator) -> bool:
    return isinstance(op, (Mul2, MatMul2))


def consumer_mask(op: Operator, lower: Tensor, upper: Tensor) -> Tensor:
    """Neurons worth splitting for one consumer: ReLU-like ``l < 0 < u``; products ``u > l``; S-shaped
    ``u - l >= 0.01`` and (Sigmoid/Tanh/Erf) not entirely outside ``[-10, 10]``; piecewise-linear
    ``u - l >= 0.01`` with a knot inside; others ``u - l >= 0.01``."""
    width = upper - lower
    if _relu_like(op):
        return (lower < 0) & (upper > 0)
    if _product(op):
        return width > 0
    mask = width >= MIN_WIDTH
    if isinstance(op, PiecewiseLinear):  # linear (its lines exact) unless a knot is inside
        mask = mask & op.refinement_mask(Interval(lower, upper))
    if isinstance(op, SShaped) and op.kind in SATURATING:
        mask = mask & (upper > -SATURATION) & (lower < SATURATION)
    return mask


def candidate_mask(graph: Graph, split: SplitNode, lower: Tensor, upper: Tensor, relu_only: bool = False) -> Tensor:
    """``[n, size]`` bool: union over the consumers (only ReLU-like ones when ``relu_only``)."""
    mask = torch.zeros_like(lower, dtype=torch.bool)
    for consumer, _position in split.consumers:
        op = graph.nodes[consumer].op
        if relu_only and not _relu_like(op):
            continue
        mask |= consumer_mask(op, lower, upper)
    return mask & torch.isfinite(lower) & torch.isfinite(upper)


_LOOKUP_STATE: dict[str, object] = {}


def _lookup():
    """``bab.branch_points.lookup_branch_points`` when that module exists, else None (logged once)."""
    if "fn" not in _LOOKUP_STATE:
        try:
            from .branch_points import lookup_branch_points  # noqa: PLC0415 (optional, written separately)

            _LOOKUP_STATE["fn"] = lookup_branch_points
        except ImportError:
            log.info("no branching-point table module: optimized branching points fall back to midpoints")
            _LOOKUP_STATE["fn"] = None
    return _LOOKUP_STATE["fn"]


def branch_points(graph: Graph, split: SplitNode, lower: Tensor, upper: Tensor, method: str = "optimized") -> Tensor:
    """Split points ``l <= p <= u`` for the given intervals (any shape, elementwise): 0 when a ReLU-like
    consumer or a product operand crosses 0; else the optimized table point of the first elementwise
    consumer (``method == "optimized"`` and the table module is there), else that op's ``branch_point``."""
    crossing = (lower < 0) & (upper > 0)
    ops = [graph.nodes[c].op for c, _ in split.consumers]
    zero_split = any(_relu_like(op) or _product(op) for op in ops)
    smooth = [op for op in ops if not _relu_like(op) and isinstance(op, ElementwiseOperator)]
    chosen = smooth[0] if smooth else ops[0]
    point = None
    lookup = _lookup() if method == "optimized" and smooth else None
    if lookup is not None:
        point = lookup(chosen, lower, upper)
    if point is None:
        point = chosen.branch_point(lower, upper)
    if zero_split:
        point = torch.where(crossing, torch.zeros_like(point), point)
    mid = (lower + upper) / 2
    inside = (point > lower) & (point < upper)
    point = torch.where(inside, point, mid)
    return torch.minimum(torch.maximum(point, lower), upper)


# ---------------------------------------------------------------- shortcuts
def input_linear_bounds(graph: Graph, bounds: list[Interval | None], start: int, A: Tensor) -> tuple[Tensor, Tensor]:
    """CROWN backward pass from ``start`` that stops at the input: ``(A_in, bias)`` with
    ``A . value(start) >= A_in . x + bias`` for every ``x`` in the box; ``A_in: [spec, batch, *input]``."""
    return backward_linear(graph, bounds, start, A)


@dataclass
class Shortcut:
    """Root linear bounds ``WL x + cL <= z[rows] <= WU x + cU`` of split node ``z`` (``W: [k, n_in]``);
    ``position[j]`` is the row of flat element ``j`` in ``rows`` (-1: no shortcut, use the interval)."""

    rows: Tensor
    position: Tensor
    WL: Tensor
    cL: Tensor
    WU: Tensor
    cU: Tensor
    root_lower: Tensor  # [size]
    root_upper: Tensor  # [size]

    def gather(self, flat: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Bounds of the elements ``flat`` (``[m]``): stored rows use the shortcut, others the constant
        root interval (``W = 0``)."""
        pos = self.position[flat]
        stored = (pos >= 0)[:, None]
        p = pos.clamp(min=0)
        zero = torch.zeros((), dtype=self.WL.dtype, device=self.WL.device)
        WL = torch.where(stored, self.WL[p], zero) if len(self.rows) else self.WL.new_zeros(len(flat), self.WL.shape[1])
        WU = torch.where(stored, self.WU[p], zero) if len(self.rows) else self.WU.new_zeros(len(flat), self.WU.shape[1])
        cL = torch.where(stored[:, 0], self.cL[p], self.root_lower[flat]) if len(self.rows) else self.root_lower[flat]
        cU = torch.where(stored[:, 0], self.cU[p], self.root_upper[flat]) if len(self.rows) else self.root_upper[flat]
        return WL, cL, WU, cU


@torch.no_grad()
def compute_shortcuts(graph: Graph, root_bounds: list[Interval | None], splits: list[SplitNode],
                      masks: dict[int, Tensor], deadline: float | None = None) -> dict[int, Shortcut]:
    """Root shortcuts of every split node: all neurons for small nodes, else the root candidates
    (``masks[z]: [size]``); computed once by a CROWN pass from the node with identity rows. A node
    whose pass would cost more than ``SHORTCUT_WORK`` coefficient elements gets none (its candidates
    are scored BaBSR-like).
    Raises ``TimeLimitReached`` past ``deadline`` (checked per chunk of rows)."""
    n_in = graph.input_size
    out: dict[int, Shortcut] = {}
    for split in splits:
        z = split.index
        bound = root_bounds[z]
        lo, hi = bound.lower.reshape(-1), bound.upper.reshape(-1)
        if split.size * n_in <= FULL_SHORTCUT_ELEMENTS:
            rows = torch.arange(split.size, device=lo.device)
        else:
            rows = masks[z].nonzero().flatten()
        work = 2 * len(rows) * sum(graph.nodes[i].size for i in graph.ancestors(z))
        if z != 0 and work > SHORTCUT_WORK:
            continue  # too costly a CROWN pass: this node's candidates get BaBSR-like estimates
        position = torch.full((split.size,), -1, dtype=torch.long, device=lo.device)
        position[rows] = torch.arange(len(rows), device=lo.device)
        if z == 0:
            eye = torch.eye(n_in, dtype=lo.dtype, device=lo.device)[rows]
            zero = torch.zeros(len(rows), dtype=lo.dtype, device=lo.device)
            out[z] = Shortcut(rows, position, eye, zero, eye.clone(), zero.clone(), lo, hi)
            continue
        WLs, cLs, WUs, cUs = [], [], [], []
        largest = max(graph.nodes[i].size for i in graph.ancestors(z))
        chunk = max(1, CHUNK_ELEMENTS // max(1, 2 * largest))
        for s in range(0, len(rows), chunk):
            check_deadline(deadline)
            part = rows[s:s + chunk]
            r = len(part)
            A = torch.zeros(2 * r, 1, split.size, dtype=lo.dtype, device=lo.device)
            ar = torch.arange(r, device=lo.device)
            A[ar, 0, part] = 1.0
            A[ar + r, 0, part] = -1.0
            A_in, bias = input_linear_bounds(graph, root_bounds, z, A.reshape(2 * r, 1, *split.shape))
            A_in = A_in.reshape(2 * r, n_in)
            WLs.append(A_in[:r])
            cLs.append(bias[:r, 0])
            WUs.append(-A_in[r:])
            cUs.append(-bias[r:, 0])
        empty = lo.new_zeros(0, n_in)
        WL = torch.cat(WLs) if WLs else empty
        WU = torch.cat(WUs) if WUs else empty
        cL = torch.cat(cLs) if cLs else lo.new_zeros(0)
        cU = torch.cat(cUs) if cUs else lo.new_zeros(0)
        out[z] = Shortcut(rows, position, WL, torch.nan_to_num(cL, nan=-torch.inf), WU,
                          torch.nan_to_num(cU, nan=torch.inf), lo, hi)
    return out


# ---------------------------------------------------------------- per-element relaxations of consumers
def _consumer_terms(op: Operator, position: int, intervals: list[tuple[Tensor, Tensor]], lam: Tensor
                    ) -> tuple[list[Tensor], Tensor] | None:
    """For ``Lam: [spec, n, m]`` on the consumer's output elements and the (flat, ``[n, m]``) intervals
    of its bounded inputs: per input the coefficient ``mu: [spec, n, m]`` and the per-element intercept
    ``t: [spec, n, m]`` of the lower-bound relaxation; None when the op gives no per-element lines."""
    pos, neg = lam.clamp(min=0), lam.clamp(max=0)
    if isinstance(op, ElementwiseOperator):
        (lower, upper), = intervals
        r = op.relax(lower, upper)
        mu = safe_product(pos, r.lower_slope) + safe_product(neg, r.upper_slope)
        t = safe_product(pos, r.lower_intercept) + safe_product(neg, r.upper_intercept)
        return [mu], t
    if isinstance(op, BivariateElementwise):
        (xl, xu), (yl, yu) = intervals
        p = op.planes(xl, xu, yl, yu, None)
        mu_x = safe_product(pos, p.lower_x) + safe_product(neg, p.upper_x)
        mu_y = safe_product(pos, p.lower_y) + safe_product(neg, p.upper_y)
        t = safe_product(pos, p.lower_c) + safe_product(neg, p.upper_c)
        return [mu_x, mu_y], t
    return None


@dataclass
class ScoreInputs:
    """What the heuristics see of a batch of ``n`` domains."""

    lower: dict[int, Tensor]  # split node -> [n, size]
    upper: dict[int, Tensor]
    lam: dict[int, Tensor]  # consumer node -> [spec, n, size_of_consumer_output]
    row_margin: Tensor  # [n, spec]: lb_r - rhs_r
    groups: Tensor  # [spec]
    n_groups: int
    box: Interval  # [n, n_in]: each domain's input box


def _open_margins(margin: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """``min(max_{r in d} margin_r, 0)`` per disjunct ``d``: rows (last dim) -> disjuncts (last dim)."""
    shape = margin.shape[:-1]
    flat = margin.reshape(-1, margin.shape[-1])
    out = torch.full((flat.shape[0], n_groups), -torch.inf, dtype=flat.dtype, device=flat.device)
    out = out.scatter_reduce(1, groups[None].expand_as(flat), flat, "amax", include_self=True)
    return out.clamp(max=0).reshape(*shape, n_groups)


def _objective(margin: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """``sum_d min(max_{r in d} margin_r, 0)`` over the last dim (rows) -> leading dims."""
    return _open_margins(margin, groups, n_groups).sum(-1)


#: weight of the summed objective next to the worst disjunct's margin in a split's score
SUM_WEIGHT = 0.1


def _child_gains(est: Tensor, inputs: ScoreInputs) -> Tensor:
    """``[n, size, 2]``: each child's estimated gain from the estimated row margins
    ``est: [spec, n, size, 2]``: its gain on the domain's worst disjunct, plus ``SUM_WEIGHT`` times
    its gain on the sum over disjuncts."""
    now = _open_margins(inputs.row_margin, inputs.groups, inputs.n_groups)  # [n, G]
    after = _open_margins(est.permute(1, 2, 3, 0), inputs.groups, inputs.n_groups)  # [n, size, 2, G]
    return (after.amin(-1) - now.amin(-1)[:, None, None]) + SUM_WEIGHT * (after.sum(-1) - now.sum(-1)[:, None, None])


def _split_score(est: Tensor, inputs: ScoreInputs) -> Tensor:
    """Score ``[n, size]`` of each candidate: the worse child's gain (``_child_gains``). Domains are
    popped worst disjunct first and children inherit their parent's bounds, so a split that helps
    only other disjuncts leaves the child just as far from closed; scoring by the sum alone split
    ml4acopf's worst domain on other voltages for 35 s while its own disjunct never moved."""
    return _child_gains(est, inputs).amin(-1)


def _node_estimates(graph: Graph, split: SplitNode, inputs: ScoreInputs, points: Tensor,
                    shortcuts: dict[int, Shortcut] | None, deadline: float | None = None,
                    columns: Tensor | None = None) -> Tensor:
    """``Delta: [spec, n, size, 2]``, the estimated change of each row's bound when each neuron of
    ``split`` is split at ``points: [n, size]`` (child 0: ``[l, p]``, child 1: ``[p, u]``).
    BBPS when ``shortcuts`` are given, else BaBSR-like. ``columns``: the only neurons BBPS scores
    (the others keep ``Delta = 0``: no estimated gain)."""
    z = split.index
    lower = inputs.lower[z]
    spec, n = inputs.row_margin.shape[1], lower.shape[0]
    size = split.size
    dtype, device = lower.dtype, lower.device
    delta = torch.zeros(spec, n, size, 2, dtype=dtype, device=device)
    flat = torch.arange(size, device=device)
    for consumer, position in split.consumers:
        node = graph.nodes[consumer]
        op = node.op
        lam = inputs.lam.get(consumer)
        bounded = [node.inputs[p] for p in op.requires_input_bounds]
        if lam is None or lam.shape[2] != size or any(graph.nodes[i].size != size for i in bounded):
            continue
        if not isinstance(op, (ElementwiseOperator, BivariateElementwise)):
            continue

        def intervals(child: int | None, op=op, bounded=bounded, position=position):
            out = []
            for p_i, i in zip(op.requires_input_bounds, bounded):
                lo, hi = inputs.lower[i], inputs.upper[i]
                if p_i == position and i == z and child is not None:
                    lo, hi = (lo, points) if child == 0 else (points, hi)
                out.append((lo, hi))
            return out

        before = _consumer_terms(op, position, intervals(None), lam)
        if before is None:
            continue
        children = [_consumer_terms(op, position, intervals(k), lam) for k in (0, 1)]
        mu0, t0 = before
        if shortcuts is None or any(i not in shortcuts for i in bounded):
            for k, (_mu, t) in enumerate(children):
                delta[..., k] += t - t0
            continue
        cuts = [shortcuts[i].gather(flat) for i in bounded]  # each (WL [size, n_in], cL, WU, cU)
        box = inputs.box
        # before: A_tot and per-element biases
        A_tot = sum(m.clamp(min=0) @ WL + m.clamp(max=0) @ WU for m, (WL, _, WU, _) in zip(mu0, cuts))
        b0 = t0 + sum(safe_product(m.clamp(min=0), cL) + safe_product(m.clamp(max=0), cU)
                      for m, (_, cL, _, cU) in zip(mu0, cuts))
        base = concretize(A_tot, box)  # [spec, n]
        n_in = A_tot.shape[-1]
        chunk = max(1, CHUNK_ELEMENTS // max(1, spec * n * n_in))
        wanted = flat if columns is None else columns
        for k, (mu1, t1) in enumerate(children):
            b1 = t1 + sum(safe_product(m.clamp(min=0), cL) + safe_product(m.clamp(max=0), cU)
                          for m, (_, cL, _, cU) in zip(mu1, cuts))
            dpos = [m1.clamp(min=0) - m0.clamp(min=0) for m0, m1 in zip(mu0, mu1)]
            dneg = [m1.clamp(max=0) - m0.clamp(max=0) for m0, m1 in zip(mu0, mu1)]
            for s in range(0, len(wanted), chunk):
                check_deadline(deadline)
                sl = wanted[s:s + chunk]
                D = A_tot[:, :, None, :] + sum(  # [spec, n, c, n_in]
                    dp[:, :, sl, None] * WL[sl] + dn[:, :, sl, None] * WU[sl]
                    for dp, dn, (WL, _, WU, _) in zip(dpos, dneg, cuts)
                )
                c = D.shape[2]
                new = concretize(D.reshape(spec, n * c, n_in), _expand_box(box, c)).reshape(spec, n, c)
                delta[:, :, sl, k] += new - base[:, :, None] + (b1 - b0)[:, :, sl]
    return torch.nan_to_num(delta, nan=-torch.inf, posinf=0.0)


def _sibling_gains(graph: Graph, split: SplitNode, inputs: ScoreInputs, points: Tensor, head: HeadMap,
                   columns: Tensor) -> Tensor:
    """``[spec, n, len(columns), 2]``: for a split node behind a pointwise chain (cut at its head,
    ``chain_heads.py``), the BaBSR-like gain (intercept change) of every *other* copy of the head
    element when candidate ``j`` is cut at ``points[:, j]``: the copy ``j'`` gets
    ``z_j' <= a_j' q + b_j'`` in one child and ``>=`` in the other (sides swapped for ``a_j' < 0``),
    with ``q = (p_j - b_j) / a_j`` the head's cut. The per-neuron estimates see only ``j`` itself,
    which for ml4acopf's 54 ReLU copies of one voltage missed nearly all of a cut's effect."""
    z = split.index
    spec, n = inputs.row_margin.shape[1], inputs.lower[z].shape[0]
    out = torch.zeros(spec, n, len(columns), 2, dtype=points.dtype, device=points.device)
    for consumer, position in split.consumers:
        node = graph.nodes[consumer]
        op = node.op
        lam = inputs.lam.get(consumer)
        bounded = [node.inputs[p] for p in op.requires_input_bounds]
        if lam is None or lam.shape[2] != split.size or any(graph.nodes[i].size != split.size for i in bounded):
            continue
        if not isinstance(op, (ElementwiseOperator, BivariateElementwise)):
            continue
        for c, j in enumerate(columns.tolist()):
            scale_j = head.scale[j]
            if scale_j == 0:
                continue
            sib = ((head.index == head.index[j]) & (head.scale != 0)).nonzero().flatten()
            sib = sib[sib != j]
            if not len(sib):
                continue
            q = (points[:, j] - head.shift[j]) / scale_j  # [n]
            image = head.scale[sib][None] * q[:, None] + head.shift[sib][None]  # [n, s]
            rising = (head.scale[sib] > 0)[None]

            def sides(child: int | None, sib=sib, image=image, rising=rising, op=op, bounded=bounded,
                      position=position):
                out_intervals = []
                for p_i, i in zip(op.requires_input_bounds, bounded):
                    lo, hi = inputs.lower[i][:, sib], inputs.upper[i][:, sib]
                    if p_i == position and i == z and child is not None:
                        cut = image.clamp(min=lo, max=hi)
                        # child 0 is the head's "<= q": the copies' upper bound where a > 0
                        upper_cut = rising if child == 0 else ~rising
                        lo, hi = torch.where(upper_cut, lo, cut), torch.where(upper_cut, cut, hi)
                    out_intervals.append((lo, hi))
                return out_intervals

            lam_sib = lam[:, :, sib]
            before = _consumer_terms(op, position, sides(None), lam_sib)
            if before is None:
                break
            for k in (0, 1):
                after = _consumer_terms(op, position, sides(k), lam_sib)
                out[:, :, c, k] += torch.nan_to_num(after[1] - before[1], nan=0.0, posinf=0.0, neginf=0.0).sum(-1)
    return out


def _best_columns(score: Tensor, mask: Tensor, heads: dict[int, HeadMap] | None, z: int) -> Tensor:
    """The neurons worth a costly estimate: the ``BBPS_COLUMNS`` best scores over the batch and each
    domain's best. Behind a chain head, a neuron ranks by the summed positive score of all copies of
    its head element (its own score breaks ties), since a cut there moves every copy."""
    score = torch.where(mask, torch.nan_to_num(score, nan=-torch.inf), -torch.inf)
    head = (heads or {}).get(z)
    if head is not None:
        gain = score.clamp(min=0)
        per_head = torch.zeros(score.shape[0], int(head.index.max()) + 1, dtype=score.dtype, device=score.device)
        per_head = per_head.index_add(1, head.index, gain)
        score = torch.where(mask, per_head[:, head.index] + 1e-3 * gain, -torch.inf)
    return torch.cat([score.amax(0).topk(min(BBPS_COLUMNS, score.shape[1])).indices, score.argmax(1)]).unique()


def _expand_box(box: Interval, c: int) -> Interval:
    """``[n, n_in]`` -> ``[n * c, n_in]`` (each domain's box repeated ``c`` times)."""
    return Interval(box.lower.repeat_interleave(c, 0), box.upper.repeat_interleave(c, 0))


@dataclass
class Decision:
    """One split per domain: ``node[i]`` (graph index), ``index[i]`` (flat element), ``point[i]``;
    ``valid[i]`` False where the domain has no candidate neuron left."""

    node: Tensor
    index: Tensor
    point: Tensor
    valid: Tensor


@torch.no_grad()
def choose_splits(graph: Graph, splits: list[SplitNode], inputs: ScoreInputs, *,
                  method: str = "bbps", point_method: str = "optimized", relu_only: bool = False,
                  shortcuts: dict[int, Shortcut] | None = None, deadline: float | None = None) -> Decision:
    """The best-scoring candidate neuron over all split nodes, per domain; where no estimate is
    positive, the candidate with the largest ``width * (1 + |Lam|)`` (a tie-breaker)."""
    return split_candidates(graph, splits, inputs, 1, method=method, point_method=point_method,
                            relu_only=relu_only, shortcuts=shortcuts, deadline=deadline)[0]


@torch.no_grad()
def split_candidates(graph: Graph, splits: list[SplitNode], inputs: ScoreInputs, k: int, *,
                     method: str = "bbps", point_method: str = "optimized", relu_only: bool = False,
                     shortcuts: dict[int, Shortcut] | None = None, deadline: float | None = None,
                     heads: dict[int, HeadMap] | None = None) -> list[Decision]:
    """The ``k`` best candidates per domain, best first (``choose_splits`` is the first). The first
    falls back to the tie-breaker where no estimate is positive; a later one is ``valid`` only where
    its own estimate is positive. ``heads``: split nodes cut at a chain head (their candidates also
    count the gain on the head element's other copies). Raises ``TimeLimitReached`` past ``deadline``.

    The later candidates (for ``_filter_candidates``, which bounds their children) come in turn from
    three rankings, each domain's best not yet taken: the worse child's gain (the main score), the
    better child's gain, and (under BBPS) the BaBSR-like worse child's gain. Per-neuron estimates can
    be far off. On the 118-bus ml4acopf thermal-limit property, BBPS scored the line-flow input of
    the Square at -2.8 (its shortcuts reach past the interval the children split), while bounding
    the children gave +17 and +2.3, more than any ReLU; the other two rankings put it first."""
    scores, alternatives, ties, offsets, nodes, all_points = [], [[], []], [], [], [], []
    offset = 0
    for split in splits:
        z = split.index
        lower, upper = inputs.lower[z], inputs.upper[z]
        mask = candidate_mask(graph, split, lower, upper, relu_only)
        points = branch_points(graph, split, lower, upper, point_method)
        check_deadline(deadline)
        columns = None
        cheap_score = None
        if method == "bbps" and shortcuts is not None and (split.size > BBPS_COLUMNS or k > 1):
            # BBPS only on the neurons the cheap BaBSR-like estimate ranks best (each domain's best,
            # and the best BBPS_COLUMNS over all domains): its concretizations cost O(n_in) per neuron
            cheap = _node_estimates(graph, split, inputs, points, None, deadline)
            cheap_score = _split_score(inputs.row_margin.T[:, :, None, None] + cheap, inputs)
            if split.size > BBPS_COLUMNS:
                columns = _best_columns(cheap_score, mask, heads, z)
        delta = _node_estimates(graph, split, inputs, points, shortcuts if method == "bbps" else None, deadline,
                                columns)
        head = (heads or {}).get(z)
        if head is not None:
            sib_columns = columns
            if sib_columns is None:
                own = _split_score(inputs.row_margin.T[:, :, None, None] + delta, inputs)
                sib_columns = _best_columns(own, mask, heads, z)
            check_deadline(deadline)
            delta[:, :, sib_columns] += _sibling_gains(graph, split, inputs, points, head, sib_columns)
        gains = _child_gains(inputs.row_margin.T[:, :, None, None] + delta, inputs)

        def masked(value: Tensor, mask=mask) -> Tensor:
            return torch.where(mask, torch.nan_to_num(value, nan=-torch.inf), torch.full_like(value, -torch.inf))

        score = masked(gains.amin(-1))
        if k > 1:
            alternatives[0].append(masked(gains.amax(-1)))
            nothing = torch.full_like(score, -torch.inf)
            alternatives[1].append(masked(cheap_score) if cheap_score is not None else nothing)
        lam_mass = torch.zeros_like(lower)
        for consumer, _ in split.consumers:
            lam = inputs.lam.get(consumer)
            if lam is not None and lam.shape[2] == split.size:
                lam_mass = lam_mass + lam.abs().sum(0)
        tie = torch.where(mask, (upper - lower).clamp(max=1e6) * (1 + lam_mass), torch.full_like(lower, -torch.inf))
        scores.append(score)
        ties.append(tie)
        all_points.append(points)
        offsets.append(offset)
        nodes.append(z)
        offset += split.size
    score = torch.cat(scores, 1)
    tie = torch.cat(ties, 1)
    points = torch.cat(all_points, 1)
    starts = torch.tensor(offsets, device=score.device)
    node_of = torch.tensor(nodes, device=score.device)

    def decision(chosen: Tensor, valid: Tensor) -> Decision:
        chosen = chosen.contiguous()
        which = torch.searchsorted(starts, chosen, right=True) - 1
        return Decision(node_of[which], chosen - starts[which], points.gather(1, chosen[:, None])[:, 0], valid)

    fallback = tie.argmax(1)
    top_score, top = score.max(1)
    first = torch.where(top_score > 1e-12, top, fallback)
    out = [decision(first, torch.isfinite(tie.gather(1, first[:, None])[:, 0]))]
    if k == 1:
        return out
    rankings = [score] + [torch.cat(a, 1) for a in alternatives]
    taken = first[:, None]
    turn = 1  # the main ranking's best is ``first``: the next pick comes from the second ranking
    while len(out) < k:
        left = [r.scatter(1, taken, -torch.inf) for r in rankings]
        live = [i for i, r in enumerate(left) if bool((r > 1e-12).any())]
        if not live:
            break
        i = next(j % len(left) for j in range(turn, turn + len(left)) if j % len(left) in live)
        value, chosen = left[i].max(1)
        out.append(decision(chosen, value > 1e-12))
        taken = torch.cat([taken, chosen[:, None]], 1)
        turn = i + 1
    return out
