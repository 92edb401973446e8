"""Certified local Lipschitz constants: ``lipschitz_bound(model, region, norm, output) -> LipschitzResult``.

For an input region ``B`` (a box) and output ``k``, the local Lipschitz constant w.r.t. the input
norm ``||.||_p`` is ``L_k = sup_{x in B} ||grad f_k(x)||_q`` with ``q`` the dual norm (for ReLU networks
the sup runs over the points of differentiability; the Clarke relaxation covers all of them):

* ``norm="inf"`` (L-inf perturbations): ``||J_k||_1 = sum_i |J_ki|``;
* ``norm="1"``: ``||J_k||_inf = max_i |J_ki|``;
* ``norm="2"``: ``||J_k||_2 = sqrt(sum_i J_ki^2)``.

Certified upper bound, per output (design e):

1. bounds of every forward node on ``B`` (CROWN; with ``alpha`` also a short alpha-CROWN run on the
   output bounds, intersecting the intermediate bounds of every iterate — each is sound);
2. the graph augmented with the Jacobian row ``J_k`` (``jacobian_graph``) and the norm nodes
   (``Abs`` + ``ReduceSum`` for "inf", ``Square`` + ``ReduceSum`` for "2"); bounds of the new nodes by
   IBP and CROWN node by node, the forward bounds held fixed;
3. the norm: "inf": ``min(CROWN upper of sum |J|, sum_i max(|l_i|, |u_i|))``; "2": the square root of
   ``min(CROWN upper of sum J^2, sum_i max(l_i^2, u_i^2))``; "1": ``max_i max(|l_i|, |u_i|)`` with
   CROWN bounds ``[l_i, u_i]`` of ``J_ki``. With ``alpha``, the relaxation parameters of the final
   backward pass (intermediate bounds frozen) are optimized as well; the best bound is kept.

The sampled lower bound is the largest gradient norm found at random points, box corners and by
projected sign-gradient ascent on the norm (torch autograd on ``graph.forward``); ``lower <= L_k <= upper``.
For ``output=None`` the result is ``max_k`` of the per-output bounds (Lipschitz constant w.r.t. the
L-inf norm on the outputs).
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import time
from dataclasses import dataclass, field

import click
import numpy as np
import torch
from torch import Tensor

from ..bounds.crown import RelaxationParams, backward_bound, crown_node_bounds, intermediate_bounds, spec_lower_bound
from ..bounds.ibp import interval_step
from ..graph.ir import Graph, Node
from ..graph.onnx_import import load_graph
from ..io.vnnlib import parse_vnnlib
from ..ops.base import ElementwiseOperator, Interval
from ..ops.convex import Abs, Square
from ..ops.shape import ReduceSum
from .gradient_ops import ConstantValue
from .jacobian_graph import jacobian_graph

logger = logging.getLogger(__name__)

NORMS = ("inf", "1", "2")
DTYPE = torch.float64


@dataclass
class OutputBound:
    """Bounds for one output ``k``: ``lower <= L_k <= upper <= min(upper_crown, upper_interval)`` (the
    two bounds on the whole region; ``upper`` is smaller after input splitting)."""

    output: int
    upper: float
    lower: float
    upper_crown: float
    upper_interval: float


@dataclass
class LipschitzResult:
    upper: float  # certified: max over the requested outputs
    lower: float  # sampled: max over the requested outputs
    per_output: list[OutputBound] = field(default_factory=list)
    norm: str = "inf"
    seconds: float = 0.0

    @property
    def ratio(self) -> float:
        """``upper / lower`` (inf when the sampled lower bound is 0)."""
        return self.upper / self.lower if self.lower > 0 else math.inf


# ---------------------------------------------------------------- regions and models
def _as_graph(model: str | os.PathLike | Graph) -> Graph:
    # lookup tables stay ReLUs here: the gradient graph has rules for ReLU, none for PiecewiseLinear
    graph = model if isinstance(model, Graph) else load_graph(model, fuse_lookup=False)
    return graph.to("cpu", DTYPE)


def region_box(graph: Graph, region: Interval | tuple) -> Interval:
    """The region as an ``Interval`` ``[1, *input_shape]`` (float64): an ``Interval`` (any shape with the
    input's number of elements) or ``(center, eps)`` for the L-inf ball ``[center - eps, center + eps]``."""
    if isinstance(region, Interval):
        lower, upper = region.lower, region.upper
    else:
        center, eps = region
        c = torch.as_tensor(np.asarray(center, dtype=np.float64))
        lower, upper = c - float(eps), c + float(eps)
    lower = torch.as_tensor(lower, dtype=DTYPE).reshape(1, *graph.input_shape)
    upper = torch.as_tensor(upper, dtype=DTYPE).reshape(1, *graph.input_shape)
    if not bool((lower <= upper).all()) or not bool(torch.isfinite(lower).all() & torch.isfinite(upper).all()):
        raise ValueError("the region must be a finite box with lower <= upper")
    return Interval(lower, upper)


# ---------------------------------------------------------------- bounds
def forward_bounds(graph: Graph, box: Interval, alpha: bool, deadline: float | None,
                   iterations: int = 10) -> list[Interval | None]:
    """Bounds of every forward node: CROWN, then (``alpha``) alpha-CROWN on all output bounds, keeping
    the intersection of the intermediate bounds of all iterates (each iterate's bounds are sound)."""
    bounds = intermediate_bounds(graph, box)
    if not alpha:
        return bounds
    n = graph.output_size
    eye = torch.eye(n, dtype=DTYPE).unsqueeze(1)
    C = torch.cat([eye, -eye])  # [2n, 1, n]
    params = RelaxationParams(create=True)
    optimizer = None
    for _ in range(iterations):
        if deadline is not None and time.monotonic() > deadline:
            break
        current = intermediate_bounds(graph, box, params=params, reference=bounds)
        lower = spec_lower_bound(graph, current, C, params)
        bounds = [b if b is None or c is None else Interval(
            torch.maximum(b.lower, c.lower.detach()), torch.minimum(b.upper, c.upper.detach()))
            for b, c in zip(bounds, current)]
        if optimizer is None:
            params.create = False
            if not params.values:
                break
            optimizer = torch.optim.Adam(list(params.values.values()), lr=0.1)
        finite = torch.isfinite(lower)
        loss = -lower[finite].sum()
        if not loss.requires_grad:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for (node, _start), value in params.values.items():
                in_bounds = [bounds[i] for i in graph.nodes[node].inputs]
                value.copy_(graph.nodes[node].op.project_params(value, in_bounds))
    return bounds


def _crown_worthwhile(graph: Graph, node: Node, n_fixed: int) -> bool:
    """CROWN cannot beat IBP on a unary op of a node with fixed bounds (IBP is its exact image), nor on
    a constant."""
    if isinstance(node.op, ConstantValue):
        return False
    return not (len(node.inputs) == 1 and node.inputs[0] < n_fixed
                and (isinstance(node.op, ElementwiseOperator) or node.inputs[0] == 0))


def _rows_worth_refining(graph: Graph, index: int, interval: Interval) -> Tensor:
    """Flat elements of node ``index`` where some consumer's relaxation can use a tighter bound."""
    mask = None
    for consumer in graph.consumers(index):
        node = graph.nodes[consumer]
        if not any(node.inputs[p] == index for p in node.op.requires_input_bounds):
            continue
        m = node.op.refinement_mask(interval)
        m = torch.ones_like(interval.lower, dtype=torch.bool) if m is None else m
        mask = m if mask is None else mask | m
    if mask is None:
        return torch.zeros(0, dtype=torch.long)
    mask = mask & ((interval.upper - interval.lower) > 0)
    return mask.reshape(mask.shape[0], -1).any(0).nonzero().flatten()


def augmented_bounds(graph: Graph, fixed: list[Interval | None], n_fixed: int) -> list[Interval | None]:
    """Bounds of the nodes ``>= n_fixed`` of ``graph`` (IBP everywhere, CROWN where a relaxation needs
    them), the first ``n_fixed`` nodes taking the ``fixed`` bounds."""
    bounds: list[Interval | None] = list(fixed[:n_fixed]) + [None] * (len(graph.nodes) - n_fixed)
    wanted = graph.ancestors(graph.output)
    needed = {node.inputs[p] for node in graph.nodes[1:] for p in node.op.requires_input_bounds}
    for node in graph.nodes[n_fixed:]:
        index = node.index
        if index not in wanted:
            continue
        interval = interval_step(graph, index, bounds)
        if index in needed and index != graph.output and _crown_worthwhile(graph, node, n_fixed):
            rows = _rows_worth_refining(graph, index, interval)
            if len(rows):
                lb, ub = crown_node_bounds(graph, bounds, index, rows)
                batch = interval.lower.shape[0]
                lower = interval.lower.reshape(batch, -1).clone()
                upper = interval.upper.reshape(batch, -1).clone()
                lower[:, rows] = torch.maximum(lower[:, rows], lb)
                upper[:, rows] = torch.minimum(upper[:, rows], ub)
                interval = Interval(lower.reshape(interval.lower.shape), upper.reshape(interval.upper.shape))
        bounds[index] = interval
    return bounds


def _with_norm(jac: Graph, norm: str) -> Graph:
    """``jac`` with its output replaced by ``sum |J|`` ("inf") or ``sum J^2`` ("2"), shape ``[1, .., 1]``."""
    nodes = list(jac.nodes)
    rank = len(jac.output_shape)
    elementwise = Abs() if norm == "inf" else Square()
    j = jac.output
    nodes.append(Node(len(nodes), f"{elementwise.kind}(J)", elementwise, (j,), jac.output_shape, "norm"))
    nodes.append(Node(len(nodes), "norm", ReduceSum(tuple(range(rank)), keepdims=True), (len(nodes) - 1,),
                      (1,) * rank, "norm"))
    return Graph(nodes, len(nodes) - 1, jac.input_name, "norm", jac.source)


def _final_alpha(graph: Graph, bounds: list[Interval | None], initial: Tensor, deadline: float | None,
                 iterations: int = 15) -> Tensor:
    """Best lower bound of ``-norm`` over the relaxation parameters of the final backward pass
    (intermediate bounds frozen), starting from CROWN's ``initial`` ``[1, 1]``."""
    A = -torch.ones(1, 1, *graph.output_shape, dtype=DTYPE)
    params = RelaxationParams(create=True)
    best = initial.detach().clone()
    optimizer = None
    for _ in range(iterations):
        if deadline is not None and time.monotonic() > deadline:
            break
        lower = backward_bound(graph, bounds, graph.output, A, params)
        best = torch.maximum(best, lower.detach())
        if optimizer is None:
            params.create = False
            if not params.values:
                break
            optimizer = torch.optim.Adam(list(params.values.values()), lr=0.1)
        if not lower.requires_grad or not bool(torch.isfinite(lower).all()):
            break
        optimizer.zero_grad(set_to_none=True)
        (-lower.sum()).backward()
        optimizer.step()
        with torch.no_grad():
            for (node, _start), value in params.values.items():
                in_bounds = [bounds[i] for i in graph.nodes[node].inputs]
                value.copy_(graph.nodes[node].op.project_params(value, in_bounds))
    return best


def certify_output(graph: Graph, fixed: list[Interval | None], k: int, norm: str, alpha: bool,
                   deadline: float | None, jac: Graph | None = None) -> tuple[float, float]:
    """``(upper_crown, upper_interval)`` for output ``k`` given the forward bounds ``fixed``
    (``jac``: ``jacobian_graph(graph, k)`` if already built)."""
    jac = jacobian_graph(graph, k) if jac is None else jac
    n_fixed = len(graph.nodes)
    if norm == "1":
        bounds = augmented_bounds(jac, fixed, n_fixed)
        j = bounds[jac.output]
        rows = torch.arange(jac.output_size)
        if jac.output >= n_fixed and _crown_worthwhile(jac, jac.nodes[jac.output], n_fixed):
            lb, ub = crown_node_bounds(jac, bounds, jac.output, rows)
        else:
            lb, ub = j.lower.reshape(1, -1), j.upper.reshape(1, -1)
        crown = float(torch.maximum(lb.abs(), ub.abs()).max())
        interval = float(torch.maximum(j.lower.abs(), j.upper.abs()).max())
        return crown, interval
    full = _with_norm(jac, norm)
    bounds = augmented_bounds(full, fixed, n_fixed)
    j = bounds[jac.output]
    top = torch.maximum(j.lower.abs(), j.upper.abs())
    interval = float(top.sum() if norm == "inf" else (top * top).sum())
    A = -torch.ones(1, 1, *full.output_shape, dtype=DTYPE)
    lower = backward_bound(full, bounds, full.output, A)
    if alpha:
        lower = _final_alpha(full, bounds, lower, deadline)
    crown = -float(lower.max())
    if norm == "2":
        return math.sqrt(max(crown, 0.0)), math.sqrt(interval)
    return crown, interval


def split_bound(graph: Graph, box: Interval, k: int, norm: str, root_upper: float, target: float,
                deadline: float | None, max_leaves: int = 64) -> tuple[float, int]:
    """Input-split branch and bound: the box is a union of leaves, so ``L_k <= max_leaf upper(leaf)``.
    Repeatedly bisects the leaf with the largest bound along its widest input dimension and bounds
    both halves (CROWN; a child keeps ``min(child bound, parent bound)``, as the parent's bound holds on
    it too), until the deadline, ``max_leaves`` leaves, or the largest bound is within 1e-9 of
    ``target`` (the sampled lower bound). Returns ``(bound, number of leaves)``."""
    jac = jacobian_graph(graph, k)
    heap: list[tuple[float, int, Interval]] = [(-root_upper, 0, box)]
    count = 1
    while len(heap) < max_leaves and (deadline is None or time.monotonic() < deadline):
        neg_upper, _, leaf = heapq.heappop(heap)
        if -neg_upper <= target * (1 + 1e-9):
            heapq.heappush(heap, (neg_upper, 0, leaf))
            break
        width = (leaf.upper - leaf.lower).reshape(-1)
        dim = int(width.argmax())
        mid = float(leaf.mid.reshape(-1)[dim])
        for half in (0, 1):
            lower, upper = leaf.lower.clone().reshape(-1), leaf.upper.clone().reshape(-1)
            if half == 0:
                upper[dim] = mid
            else:
                lower[dim] = mid
            child = Interval(lower.reshape(leaf.lower.shape), upper.reshape(leaf.upper.shape))
            fixed = forward_bounds(graph, child, False, None)
            crown, interval = certify_output(graph, fixed, k, norm, False, None, jac)
            heapq.heappush(heap, (-min(crown, interval, -neg_upper), count, child))
            count += 1
    return -min(n for n, _, _ in heap), len(heap)


# ---------------------------------------------------------------- sampling
def _gradient_norm(J: Tensor, norm: str) -> Tensor:
    flat = J.reshape(J.shape[0], -1)
    if norm == "inf":
        return flat.abs().sum(-1)
    if norm == "1":
        return flat.abs().amax(-1)
    return flat.norm(dim=-1)


def sampled_lower_bound(graph: Graph, box: Interval, k: int, norm: str, samples: int = 256, steps: int = 30,
                        seed: int = 0, deadline: float | None = None) -> tuple[float, Tensor]:
    """Largest ``||grad f_k(x)||_q`` found over random points, random corners and projected sign-gradient
    ascent from them, and the point where it was found ``[*input_shape]``."""
    g = torch.Generator().manual_seed(seed)
    lower, upper = box.lower, box.upper
    shape = (samples, *lower.shape[1:])
    t = torch.rand(shape, generator=g, dtype=DTYPE)
    t[samples // 2:] = (t[samples // 2:] > 0.5).to(DTYPE)  # half on corners
    x = lower + t * (upper - lower)
    x[0] = box.mid[0]
    step = (upper - lower) / 20
    best, best_x = -1.0, x[0].clone()
    for i in range(steps + 1):
        x = x.detach().requires_grad_(True)
        y = graph.forward(x).reshape(samples, -1)[:, k]
        (J,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        value = _gradient_norm(J, norm)
        top = int(value.detach().argmax())
        if float(value[top].detach()) > best:
            best, best_x = float(value[top].detach()), x[top].detach().clone()
        if i == steps or (deadline is not None and time.monotonic() > deadline):
            break
        if not value.requires_grad:
            break
        (direction,) = torch.autograd.grad(value.sum(), x)
        decay = 1.0 - i / (steps + 1)
        x = torch.minimum(torch.maximum(x + decay * step * direction.sign(), lower), upper)
    return best, best_x


# ---------------------------------------------------------------- API
def lipschitz_bound(
    model: str | os.PathLike | Graph,
    region: Interval | tuple,
    norm: str = "inf",
    output: int | None = None,
    alpha: bool = True,
    time_budget: float | None = None,
    split: bool = False,
    max_leaves: int = 64,
) -> LipschitzResult:
    """Certified upper and sampled lower bounds of the local Lipschitz constant of ``model`` (an ONNX file
    or a ``Graph``, moved to float64 in place) on ``region`` (an ``Interval`` box or ``(center, eps)``),
    for input norm ``norm`` in ("inf", "1", "2") and one output ``k`` or all (None); see the module doc.
    ``time_budget`` (seconds) bounds the optional alpha-CROWN, ascent and splitting phases, never the
    first CROWN bound. ``split``: refine each output's bound by input splitting (``split_bound``) until
    the time budget or ``max_leaves`` leaves."""
    norm = str(norm)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    start = time.monotonic()
    deadline = None if time_budget is None else start + time_budget
    graph = _as_graph(model)
    box = region_box(graph, region)
    outputs = list(range(graph.output_size)) if output is None else [int(output)]
    # sampling first: it is cheap, and the optional phases below may use up the time budget
    sampled_by_output = {k: sampled_lower_bound(graph, box, k, norm, deadline=deadline)[0] for k in outputs}
    fixed = forward_bounds(graph, box, alpha, deadline)
    per_output = []
    for k in outputs:
        crown, interval = certify_output(graph, fixed, k, norm, alpha, deadline)
        sampled = sampled_by_output[k]
        upper = min(crown, interval)
        if split:
            upper, leaves = split_bound(graph, box, k, norm, upper, sampled, deadline, max_leaves)
            logger.debug("output %d: input splitting into %d leaves gave %.6g", k, leaves, upper)
        per_output.append(OutputBound(k, upper, sampled, crown, interval))
        logger.debug("output %d: upper %.6g (crown %.6g, interval %.6g), sampled %.6g", k,
                     per_output[-1].upper, crown, interval, sampled)
    return LipschitzResult(
        upper=max(b.upper for b in per_output), lower=max(b.lower for b in per_output),
        per_output=per_output, norm=norm, seconds=time.monotonic() - start,
    )


# ---------------------------------------------------------------- CLI
def _read_center(text: str) -> np.ndarray:
    if text.endswith(".npy") and os.path.isfile(text):
        return np.load(text).astype(np.float64).reshape(-1)
    try:
        return np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated numbers or a .npy file: {exc}") from exc


@click.command("lipschitz")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--box", "box_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="VNN-LIB file whose input box is the region (the hull of its boxes).")
@click.option("--center", default=None, help="Centre: comma-separated values or a .npy file.")
@click.option("--eps", type=float, default=None, help="L-inf radius around --center.")
@click.option("--norm", type=click.Choice(NORMS), default="inf", show_default=True,
              help="Input perturbation norm (the gradient is measured in its dual norm).")
@click.option("--output", type=int, default=None, help="Output index (default: all, max over them).")
@click.option("--no-alpha", is_flag=True, help="CROWN only (no alpha-CROWN phases).")
@click.option("--time-budget", type=float, default=None, help="Seconds for the optional phases.")
@click.option("--split", is_flag=True, help="Refine by input splitting (within --time-budget, <= 64 leaves).")
def lipschitz_command(model, box_file, center, eps, norm, output, no_alpha, time_budget, split) -> None:
    """Certified local Lipschitz constant of MODEL on a box (--box) or an L-inf ball (--center, --eps)."""
    if (box_file is None) == (center is None):
        raise click.UsageError("give exactly one of --box or --center/--eps")
    if box_file is not None:
        prop = parse_vnnlib(box_file)
        lower = np.min([b.lower for b in prop.boxes], axis=0)
        upper = np.max([b.upper for b in prop.boxes], axis=0)
        region: Interval | tuple = Interval(torch.as_tensor(lower), torch.as_tensor(upper))
    else:
        if eps is None:
            raise click.UsageError("--center needs --eps")
        region = (_read_center(center), eps)
    result = lipschitz_bound(model, region, norm=norm, output=output, alpha=not no_alpha, time_budget=time_budget,
                             split=split)
    for b in result.per_output:
        ratio = b.upper / b.lower if b.lower > 0 else math.inf
        click.echo(f"output {b.output}: certified upper {b.upper:.6g}  sampled lower {b.lower:.6g}  "
                   f"ratio {ratio:.3f}")
    click.echo(f"certified upper: {result.upper:.6g}")
    click.echo(f"sampled lower: {result.lower:.6g}")
    click.echo(f"ratio: {result.ratio:.4g}")
    click.echo(f"time: {result.seconds:.2f} s")
