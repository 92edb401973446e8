"""CROWN: backward linear bound propagation on the general graph (design.md a.3).

Only lower bounds are ever computed: for coefficients ``A`` on a start node ``v`` the backward pass
returns ``lb`` with ``A . v >= lb`` for every input in the box. Upper bounds of ``c . v`` are
``-lb(-c . v)``; intermediate bounds stack ``[I; -I]`` as spec rows.

Intermediate bounds are computed node by node in topological order for exactly the nodes whose
bounds some operator's relaxation needs (``requires_input_bounds``), only at the elements where a
tighter bound can change the relaxation (``refinement_mask``), and are always intersected with IBP.
A needed node behind a chain of pointwise affine ops (reshape, slice, broadcast shift, ...) is
bounded by CROWN at the head of the chain and by exact IBP along it (``crown_targets``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import check_deadline
from ..graph.ir import Graph
from ..ops.base import AffineOperator, Interval, safe_product
from .ibp import interval_step

#: the most elements of coefficient tensors one backward pass may hold (memory guard, per chunk)
ROW_CHUNK_ELEMENTS = 2**25

#: hook called at each node during the backward pass (branch-and-bound adds beta terms there):
#: ``hook(node_index, A) -> (A, bias)``.
BackwardHook = Callable[[int, Tensor], tuple[Tensor, Tensor]]


@dataclass
class RelaxationParams:
    """Optimizable relaxation parameters (alpha), one tensor per (operator node, start node):
    ``[k, spec_of_start, batch, *shape]``. While ``create`` is True, missing entries are initialised
    from the operators' default relaxations; ``rows`` fixes which elements of each intermediate node
    are bounded, so parameter shapes stay constant across iterations."""

    values: dict[tuple[int, int], Tensor] = field(default_factory=dict)
    rows: dict[int, Tensor] = field(default_factory=dict)
    create: bool = True

    def lookup(self, node: int, start: int, op, input_bounds, spec: int) -> Tensor | None:
        key = (node, start)
        value = self.values.get(key)
        if value is None and self.create:
            init = op.init_params(input_bounds, spec)
            if init is not None:
                value = init.detach().clone().requires_grad_(True)
                self.values[key] = value
        return value


def max_with_gradient_to(primary: Tensor, other: Tensor) -> Tensor:
    """``max(primary, other)`` in value, with the gradient of ``primary`` (straight-through).

    Used where a CROWN bound is intersected with another bound (IBP, an earlier pass): alpha must
    keep improving the CROWN bound even where the other one wins for now. Where ``primary`` is not
    finite the plain max is returned (``-inf + inf`` would be NaN)."""
    best = torch.maximum(primary, other)
    # ``best + (p - p)`` is exactly ``best`` in value (``p + (best - p)`` is not: with p = -1e20 and
    # best = -3 it rounds to 0, an unsound lower bound)
    return torch.where(torch.isfinite(primary), best.detach() + (primary - primary.detach()), best)


def concretize(A: Tensor, box: Interval) -> Tensor:
    """``min_{x in box} A . x`` = ``A . mid - |A| . rad``; A ``[spec, batch, *in]`` -> ``[spec, batch]``."""
    spec, batch = A.shape[:2]
    flat = A.reshape(spec, batch, -1)
    mid = box.mid.reshape(1, batch, -1)
    rad = box.radius.reshape(1, batch, -1)
    return (flat * mid).sum(-1) - (flat.abs() * rad).sum(-1)


def backward_linear(
    graph: Graph,
    bounds: list[Interval | None],
    start: int,
    A: Tensor,
    params: RelaxationParams | None = None,
    hook: BackwardHook | None = None,
) -> tuple[Tensor, Tensor]:
    """The CROWN backward pass from ``start`` down to the input: ``(A_in, bias)`` with
    ``A . value(start) >= A_in . x + bias`` for every ``x`` in the box ``bounds[0]``;
    ``A_in: [spec, batch, *input_shape]``, ``bias: [spec, batch]``.

    ``bounds`` must hold the bounds of every node whose relaxation is needed on the way back.
    """
    spec, batch = A.shape[:2]
    pending: dict[int, Tensor] = {start: A}
    bias = torch.zeros(spec, batch, dtype=A.dtype, device=A.device)
    for index in range(start, 0, -1):
        coeff = pending.pop(index, None)
        if coeff is None:
            continue
        if hook is not None:
            coeff, extra = hook(index, coeff)
            bias = bias + extra
        node = graph.nodes[index]
        op = node.op
        input_shapes = [graph.nodes[i].shape for i in node.inputs]
        input_bounds = [
            bounds[i] if position in op.requires_input_bounds else None for position, i in enumerate(node.inputs)
        ]
        p = params.lookup(index, start, op, input_bounds, spec) if params is not None else None
        coeffs, contribution = op.backward(coeff, input_shapes, input_bounds, p)
        bias = bias + contribution
        for i, c in zip(node.inputs, coeffs):
            # an all-zero coefficient (a concat part no spec row reads) contributes exactly nothing
            if c is None or (len(node.inputs) > 1 and not bool(c.detach().any())):
                continue
            expected = (spec, batch, *graph.nodes[i].shape)
            if tuple(c.shape) != expected:
                raise AssertionError(
                    f"{op.kind} at node {node.name!r}: backward gave {tuple(c.shape)}, expected {expected}"
                )
            pending[i] = pending[i] + c if i in pending else c
    at_input = pending.get(0)
    if at_input is None:
        at_input = torch.zeros(spec, batch, *graph.input_shape, dtype=A.dtype, device=A.device)
    return at_input, bias


def backward_bound(
    graph: Graph,
    bounds: list[Interval | None],
    start: int,
    A: Tensor,
    params: RelaxationParams | None = None,
    hook: BackwardHook | None = None,
) -> Tensor:
    """Lower bound of ``A . value(start)`` over the input box ``bounds[0]``: ``[spec, batch]``
    (``backward_linear`` concretized on the box)."""
    at_input, bias = backward_linear(graph, bounds, start, A, params, hook)
    return torch.nan_to_num(bias + concretize(at_input, bounds[0]), nan=-torch.inf)


def nodes_needing_bounds(graph: Graph) -> set[int]:
    """Nodes whose intervals some consumer's relaxation needs."""
    needed = set()
    for node in graph.nodes[1:]:
        for position in node.op.requires_input_bounds:
            needed.add(node.inputs[position])
    return needed


def exact_by_ibp(graph: Graph, index: int) -> bool:
    """IBP (centre/radius form) is exact for one affine op applied to the input box."""
    node = graph.nodes[index]
    return isinstance(node.op, AffineOperator) and all(i == 0 for i in node.inputs)


def _consumer_mask(graph: Graph, index: int, interval: Interval) -> Tensor:
    """Elements of node ``index`` where a tighter bound can change a consumer's relaxation."""
    mask = None
    for consumer in graph.consumers(index):
        op = graph.nodes[consumer].op
        if not any(graph.nodes[consumer].inputs[p] == index for p in op.requires_input_bounds):
            continue
        m = op.refinement_mask(interval)
        if m is None:
            return torch.ones_like(interval.lower, dtype=torch.bool)
        mask = m if mask is None else mask | m
    return torch.ones_like(interval.lower, dtype=torch.bool) if mask is None else mask


def _is_pointwise(graph: Graph, index: int) -> bool:
    node = graph.nodes[index]
    return index > 0 and len(node.inputs) == 1 and getattr(node.op, "pointwise", False)


def pointwise_chain(graph: Graph, index: int) -> list[int]:
    """``[t, ..., index]``: the longest chain of pointwise affine nodes ending at ``index``, led by
    the first node ``t`` that is not one (``t`` may be the input, node 0)."""
    chain = [index]
    while _is_pointwise(graph, chain[0]):
        chain.insert(0, graph.nodes[chain[0]].inputs[0])
    return chain


def crown_targets(graph: Graph, needed: set[int]) -> dict[int, list[list[int]]]:
    """Where CROWN runs for the nodes whose bounds relaxations need: a needed node reached from an
    earlier node ``t`` through pointwise affine ops (reshapes, slices, broadcast shifts, ...) gets
    its bounds by IBP from CROWN bounds at ``t``, which is exact and avoids CROWN over the (often
    much larger) broadcast tensor. Returns ``t -> chains [t, ..., needed node]``; chains that
    start at the input box are left out (IBP is exact there)."""
    targets: dict[int, list[list[int]]] = {}
    for index in sorted(needed):
        chain = pointwise_chain(graph, index)
        if chain[0] != 0:
            targets.setdefault(chain[0], []).append(chain)
    return targets


def rows_to_refine(graph: Graph, chains: list[list[int]], interval: Interval,
                    bounds: list[Interval | None], reference: list[Interval | None] | None) -> Tensor:
    """Flat indices of the elements of the target node ``chains[k][0]`` worth a CROWN bound (union
    over the batch): those feeding an element of some chain's end where a consumer's relaxation can
    change, judged on the IBP image of ``interval`` along the chain."""
    target = chains[0][0]
    mask = torch.zeros_like(interval.lower, dtype=torch.bool)
    for chain in chains:
        local = list(bounds)
        local[target] = interval
        for index in chain[1:]:
            local[index] = interval_step(graph, index, local)
            if reference is not None and reference[index] is not None:
                local[index] = local[index].intersect(reference[index])
        wanted = _consumer_mask(graph, chain[-1], local[chain[-1]]).to(interval.lower.dtype).unsqueeze(0)
        for index in reversed(chain[1:]):  # pull the mask back through each op's exact backward
            node = graph.nodes[index]
            (wanted,), _ = node.op.backward(wanted, [graph.nodes[node.inputs[0]].shape], [None], None)
            wanted = (wanted != 0).to(interval.lower.dtype)
        mask |= wanted[0] != 0
    mask &= (interval.upper - interval.lower) > 0
    return mask.reshape(mask.shape[0], -1).any(0).nonzero().flatten()


def crown_node_bounds(
    graph: Graph,
    bounds: list[Interval | None],
    index: int,
    rows: Tensor,
    params: RelaxationParams | None = None,
    deadline: float | None = None,
) -> tuple[Tensor, Tensor]:
    """CROWN lower and upper bounds ``[batch, len(rows)]`` of the given flat elements of a node."""
    node = graph.nodes[index]
    batch = bounds[0].lower.shape[0]
    size = node.size
    dtype, device = bounds[0].lower.dtype, bounds[0].lower.device
    largest = max(graph.nodes[i].size for i in graph.ancestors(index))
    chunk = max(1, ROW_CHUNK_ELEMENTS // max(1, 2 * batch * largest))
    if params is not None:
        chunk = len(rows)  # parameter shapes are tied to the full row set
    lowers, uppers = [], []
    for s in range(0, len(rows), max(1, chunk)):
        check_deadline(deadline)
        part = rows[s : s + chunk]
        r = len(part)
        A = torch.zeros(2 * r, batch, size, dtype=dtype, device=device)
        ar = torch.arange(r, device=device)
        A[ar, :, part] = 1.0
        A[ar + r, :, part] = -1.0
        lb = backward_bound(graph, bounds, index, A.reshape(2 * r, batch, *node.shape), params)
        lowers.append(lb[:r].T)
        uppers.append(-lb[r:].T)
    return torch.cat(lowers, 1), torch.cat(uppers, 1)


def intermediate_bounds(
    graph: Graph,
    box: Interval,
    params: RelaxationParams | None = None,
    reference: list[Interval | None] | None = None,
    method: str = "crown",
    upto: int | None = None,
    deadline: float | None = None,
) -> list[Interval | None]:
    """Bounds of every node up to ``upto`` (default: the output), IBP everywhere and CROWN at the
    nodes whose bounds relaxations need. ``reference`` bounds (e.g. from an earlier pass or from
    branch-and-bound splits) are intersected in."""
    last = graph.output if upto is None else upto
    wanted = graph.ancestors(last)
    targets = crown_targets(graph, nodes_needing_bounds(graph)) if method == "crown" else {}
    bounds: list[Interval | None] = [None] * len(graph.nodes)
    bounds[0] = box
    for node in graph.nodes[1:]:
        index = node.index
        if index not in wanted:
            continue
        interval = interval_step(graph, index, bounds)
        if reference is not None and reference[index] is not None:
            interval = interval.intersect(reference[index])
        if index in targets and index != last and not exact_by_ibp(graph, index):
            if params is not None and index in params.rows:
                rows = params.rows[index]
            else:
                rows = rows_to_refine(graph, targets[index], interval, bounds, reference)
                if params is not None:
                    params.rows[index] = rows
            if len(rows):
                lb, ub = crown_node_bounds(graph, bounds, index, rows, params, deadline)
                batch = interval.lower.shape[0]
                lower = interval.lower.reshape(batch, -1).clone()
                upper = interval.upper.reshape(batch, -1).clone()
                # straight-through: the value is the intersection, the gradient always reaches the
                # CROWN bound (else alpha stops improving a neuron once IBP/reference wins there)
                lower[:, rows] = max_with_gradient_to(lb, lower[:, rows])
                upper[:, rows] = -max_with_gradient_to(-ub, -upper[:, rows])
                interval = Interval(lower.reshape(interval.lower.shape), upper.reshape(interval.upper.shape))
        bounds[index] = interval
    return bounds


def ibp_spec_lower_bound(graph: Graph, bounds: list[Interval | None], C: Tensor) -> Tensor:
    """IBP bound of ``C y`` with C folded into the trailing affine operators (as auto_LiRPA does):
    the spec is pushed back exactly through single-input affine nodes at the end of the graph and
    concretized on the interval of the first node that is not one. ``[spec, batch]``."""
    spec, batch = C.shape[:2]
    index = graph.output
    A = C.reshape(spec, batch, *graph.output_shape)
    bias = torch.zeros(spec, batch, dtype=C.dtype, device=C.device)
    while index > 0:
        node = graph.nodes[index]
        if not isinstance(node.op, AffineOperator) or len(node.inputs) != 1 or len(graph.consumers(index)) > 1:
            break
        if node.inputs[0] == 0 or bounds[node.inputs[0]] is None:
            break
        (A_in,), extra = node.op.backward(A, [graph.nodes[node.inputs[0]].shape], [None], None)
        A, bias, index = A_in, bias + extra, node.inputs[0]
    b = bounds[index]
    lo = b.lower.reshape(1, batch, -1)
    hi = b.upper.reshape(1, batch, -1)
    flat = A.reshape(spec, batch, -1)
    lower = bias + (safe_product(flat.clamp(min=0), lo) + safe_product(flat.clamp(max=0), hi)).sum(-1)
    return torch.nan_to_num(lower, nan=-torch.inf)


def spec_lower_bound(
    graph: Graph,
    bounds: list[Interval | None],
    C: Tensor,
    params: RelaxationParams | None = None,
    method: str = "crown",
    hook: BackwardHook | None = None,
) -> Tensor:
    """Lower bound of ``C y`` for ``C: [spec, batch, n_outputs]`` -> ``[spec, batch]``: the better of
    CROWN (with the spec fused into the backward pass) and IBP (with C folded into the last affine ops);
    gradients flow to the CROWN bound only."""
    spec, batch = C.shape[:2]
    ibp_lower = ibp_spec_lower_bound(graph, bounds, C)
    if method == "ibp":
        return ibp_lower
    A = C.reshape(spec, batch, *graph.output_shape)
    crown = backward_bound(graph, bounds, graph.output, A, params, hook)
    # straight-through: the value is the better of the two, the gradient always reaches CROWN. Where
    # the IBP bound wins at the start (e.g. ACAS Xu prop_1, where it sits on the CROWN bounds of the
    # last hidden layer), a plain max sends no gradient to the output's relaxation parameters and
    # alpha-CROWN settles on a far looser optimum (-986 instead of -655 on ACAS 1_3 prop_1).
    return max_with_gradient_to(crown, ibp_lower)
