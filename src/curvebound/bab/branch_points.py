"""Pre-optimized branching points: a lookup table per "local architecture" (design.md c.4).

**Objective.** Splitting the input interval ``[l, u]`` of a nonlinearity at ``p`` gives two children
``[l, p]`` and ``[p, u]``, each relaxed by the operator's own default (non-alpha) lines. The
looseness of a child ``[a, b]`` is the area between its upper and lower line,

    loss(a, b) = int_a^b (upper(x) - lower(x)) dx
               = (a^U - a^L)(b^2 - a^2)/2 + (b^U - b^L)(b - a)
               = (b - a) * gap((a + b) / 2),                 gap(x) = upper(x) - lower(x),

(the gap is affine, so its integral is the width times its value at the centre). The table stores,
per grid interval, the point minimizing ``loss(l, p) + loss(p, u)``. For a two-input op ``z = g(x, y)``
split on ``x`` with ``y in [y_l, y_u]`` held fixed, the loss of a child box is its area times the
plane gap at the box centre (the integral over the 2-D box of the gap between the planes).

**Search** (exhaustive on a candidate grid, no per-cell relaxation loop). On a candidate grid
``g_0 < ... < g_{n-1}`` with step ``h`` the loss of *every* grid interval ``L[i, k] = loss(g_i, g_k)``
is computed once (``n(n-1)/2`` relaxations, batched); then for each table cell ``(i, k)`` (every
``stride``-th grid point) the best split among all grid points strictly inside is a min-plus product,

    j* = argmin_{i < j < k} T(j),    T(j) = L[i, j] + L[j, k],    T(i) = T(k) = L[i, k],

evaluated row by row as tensor ops. The point then moves to the vertex of the parabola through
``T(j* - 1), T(j*), T(j* + 1)`` (at most ``h / 2``) when one more evaluation confirms it is better.
1-D ops: cells on ``[-5, 5]`` step ``STEP`` (0.05: 201 points, 20,100 cells), candidates step
``CANDIDATE_STEP`` (0.025: 80,200 relaxations). Two-input ops: cells step ``MULTI_STEP`` (0.5) for
``(x_l, x_u, y_l, y_u)``, split candidates for ``x`` step ``MULTI_CANDIDATE_STEP`` (0.05).

**Storage.** The value is the ratio ``t = (p - g_i) / (g_k - g_i)`` in ``(0, 1)`` (NaN: no candidate
inside, or every candidate has an infinite loss), so a looked-up point can be placed in any interval
without leaving it. Domains: the grid is clipped to where ``op.interval`` accepts the input: ``[-5, 5]``
if it does, else ``[0, 5]`` / ``[0.05, 5]`` and ``[-5, 0]`` / ``[-5, -0.05]`` where accepted (Reciprocal:
both open halves; Log: ``[0.05, 5]``; Sqrt: ``[0, 5]``); each piece is a separate *segment*.

**Lookup.** For ``[l, u]`` inside a segment, the *nearest* table cell ``(round(l), round(u))`` on the
grid (endpoint error at most ``h / 2``) gives ``t``; the point is ``l + t (u - l)`` clamped into
``[l + 0.01 w, u - 0.01 w]`` (``w = u - l``): strictly inside ``(l, u)`` for every table hit (a hit
needs ``w > h / 2``, far above the float resolution on ``[-5, 5]``). (The reference takes the largest grid
cell *inside* ``[l, u]`` and returns its absolute point; storing ratios makes the nearest cell safe and
halves the endpoint error.) Everything else — an infinite, out-of-range or narrow (no candidate)
interval, an op without a table (``STRUCTURAL_KINDS``: ReLU-like kinks, comparisons) — falls back to
``op.branch_point``. Where a table applies it decides alone, also where ``op.branch_point`` has its
own rule (odd power or Mul operand crossing 0 -> 0): the table minimizes the looseness, that rule does
not. For ``Mul`` the McCormick looseness of a box is ``w_x^2 w_y^2 / 2`` whatever the plane mix ``r``
(each plane's gap integrates to ``w_x^2 w_y^2 / 4``), so the table is the midpoint, ratio 1/2, up to
rounding; the reference's "0 when crossing" is a different (non-looseness) choice.

**Keys and cache.** Key = op class name + the values of its constructor parameters (read from the
attributes of the same names, e.g. ``Gelu(approximate='tanh')``, ``Pow(exponent=3.0)``) + arity + split
input. Tables are built lazily the first time a key is met (logged at INFO; at most a few seconds on
two CPU cores), kept in memory per process, and cached as versioned files
``<user cache dir>/tables/branch_points_v{TABLE_VERSION}_<key>_<hash>.pt`` written atomically;
``curvebound warmup`` builds all common ones once per machine.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import torch
from torch import Tensor

from ..ops import s_shaped as _s_shaped
from ..ops.base import ElementwiseOperator, Interval, Operator, UnsupportedInput
from ..ops.bilinear import BivariateElementwise

logger = logging.getLogger(__name__)

TABLE_VERSION = 1
#: Table range before clipping to the operator's domain (design c.4).
RANGE = (-5.0, 5.0)
#: Grid step of the table cells of 1-D ops.
STEP = 0.05
#: Grid step of the split candidates of 1-D ops (a divisor of STEP).
CANDIDATE_STEP = 0.025
#: Grid step of the table cells of two-input ops, for both operands.
MULTI_STEP = 0.5
#: Grid step of the split candidates of two-input ops (a divisor of MULTI_STEP).
MULTI_CANDIDATE_STEP = 0.05
#: Distance from the domain edge for domains open at 0 (Reciprocal, Log).
DOMAIN_MARGIN = 0.05
#: Returned points keep this fraction of the width away from both ends.
EDGE_FRACTION = 0.01
#: Kinds whose split point is structural (a kink, a comparison): no table, always ``op.branch_point``.
STRUCTURAL_KINDS = frozenset({"Relu", "LeakyRelu", "PRelu", "Abs", "Clip", "Floor", "Sign", "Max", "Min", "MatMul",
                              "PiecewiseLinear"})
_CHUNK = 1 << 16  # relaxations per batched call while building

#: In-memory tables by key, and per-device copies by (key, device).
_TABLES: dict[str, BranchTable] = {}
_DEVICE_TABLES: dict[tuple[str, str], BranchTable] = {}
#: How many tables this process built, and how long the last build took (seconds).
BUILD_STATS: dict[str, float] = {"builds": 0, "last_build_seconds": 0.0}


@dataclass(frozen=True)
class BranchTable:
    """The table of one key: ``arity`` 1 (elementwise) or 2 (split input 0, input 1 held fixed); one
    grid ``start + i * step`` per domain segment with its float32 ratios (NaN = no entry):
    ``[n, n]`` for 1-D ops (``ratios[i, k]``: cell ``[g_i, g_k]``), ``[n, n, n, n]`` for two-input ops
    (``ratios[i, k, a, b]``: split ``x in [g_i, g_k]`` given ``y in [g_a, g_b]``)."""

    key: str
    arity: int
    step: float
    starts: tuple[float, ...]
    ratios: tuple[Tensor, ...]

    def to(self, device: torch.device | str) -> BranchTable:
        return BranchTable(self.key, self.arity, self.step, self.starts, tuple(r.to(device) for r in self.ratios))


# ---------------------------------------------------------------- keys
def table_key(op: Operator) -> str | None:
    """The "local architecture" key of ``op`` (see module doc), or None when no table applies: the op
    is not splittable, its split point is structural (``STRUCTURAL_KINDS``), or it is neither a unary
    elementwise op (with ``relax``) nor a two-input elementwise op (with ``planes``)."""
    if not op.splittable or op.kind in STRUCTURAL_KINDS:
        return None
    if isinstance(op, ElementwiseOperator):
        arity = 1
    elif isinstance(op, BivariateElementwise):
        arity = 2
    else:
        return None
    names = [
        name for name, p in inspect.signature(type(op).__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if any(not hasattr(op, name) for name in names):
        args = repr(op)  # parameters not stored under their names: the repr must name them
    else:
        args = f"{type(op).__name__}({', '.join(f'{name}={getattr(op, name)!r}' for name in names)})"
    return f"{args}|inputs={arity}|split=0"


def table_directory() -> Path:
    """Where the tables are cached (shared with the tangent tables of ``ops.s_shaped``)."""
    return _s_shaped.table_directory()


def table_path(key: str) -> Path:
    """Versioned file for ``key``: a readable slug plus a hash of the exact key."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", key.split("|")[0]).strip("_")[:60]
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return table_directory() / f"branch_points_v{TABLE_VERSION}_{slug}_{digest}.pt"


def clear_table_cache() -> None:
    """Forget the in-memory tables (the next use reloads them from disk or rebuilds them)."""
    _TABLES.clear()
    _DEVICE_TABLES.clear()


# ---------------------------------------------------------------- building
def _accepts(op: Operator, lo: float, hi: float, arity: int) -> bool:
    """Whether ``op`` can bound inputs in ``[lo, hi]`` (its ``interval`` does not raise)."""
    box = Interval(torch.tensor([lo], dtype=torch.float64), torch.tensor([hi], dtype=torch.float64))
    try:
        op.interval(*([box] * arity))
    except (UnsupportedInput, ValueError, ArithmeticError):
        return False
    return True


def _segments(op: Operator, arity: int) -> list[tuple[float, float]]:
    """``RANGE`` clipped to the op's domain: the whole range, else each half (closed at 0 if accepted,
    else ``DOMAIN_MARGIN`` away from it) that the op accepts."""
    lo, hi = RANGE
    if _accepts(op, lo, hi, arity):
        return [(lo, hi)]
    out = []
    for left, right in ((lo, 0.0), (lo, -DOMAIN_MARGIN), (0.0, hi), (DOMAIN_MARGIN, hi)):
        if any(a == left or b == right for a, b in out):
            continue  # this half already has its (wider) segment
        if _accepts(op, left, right, arity):
            out.append((left, right))
    return out


def _grid(start: float, end: float, step: float) -> Tensor:
    size = int(round((end - start) / step)) + 1
    return start + torch.arange(size, dtype=torch.float64) * step


def _child_loss(op: Operator, lo: Tensor, hi: Tensor, y_lo: Tensor | None = None,
                y_hi: Tensor | None = None) -> Tensor:
    """Looseness of the children ``[lo, hi]`` (1-D) or ``[lo, hi] x [y_lo, y_hi]`` (two-input ops), flat
    float64: width (times the ``y`` width) times the gap between the default lines (planes) at the
    centre; ``+inf`` where not finite. Evaluated in chunks of ``_CHUNK``."""
    out = torch.empty_like(lo)
    for s in range(0, lo.numel(), _CHUNK):
        a, b = lo[s:s + _CHUNK], hi[s:s + _CHUNK]
        if y_lo is None or y_hi is None:
            assert isinstance(op, ElementwiseOperator)
            r = op.relax(a, b)
            gap = (r.upper_slope - r.lower_slope) * ((a + b) / 2) + (r.upper_intercept - r.lower_intercept)
            out[s:s + _CHUNK] = (b - a) * gap
        else:
            assert isinstance(op, BivariateElementwise)
            c, d = y_lo[s:s + _CHUNK], y_hi[s:s + _CHUNK]
            p = op.planes(a, b, c, d, None)
            gap = ((p.upper_x - p.lower_x) * ((a + b) / 2) + (p.upper_y - p.lower_y) * ((c + d) / 2)
                   + (p.upper_c - p.lower_c))
            out[s:s + _CHUNK] = (b - a) * (d - c) * gap
    return torch.where(torch.isfinite(out), out, torch.full_like(out, math.inf))


def _grid_losses(op: Operator, grid: Tensor, y_lo: Tensor | None, y_hi: Tensor | None) -> Tensor:
    """``L[..., i, k]`` = looseness of ``[g_i, g_k]`` (times each ``y`` cell ``[y_lo[c], y_hi[c]]`` for
    two-input ops, leading dim ``c``); ``+inf`` where ``k <= i``. ``-> [n, n]`` or ``[cells, n, n]``."""
    n = grid.numel()
    i, k = torch.triu_indices(n, n, offset=1)
    if y_lo is None or y_hi is None:
        loss = torch.full((n, n), math.inf, dtype=torch.float64)
        loss[i, k] = _child_loss(op, grid[i], grid[k])
        return loss
    cells = y_lo.numel()
    flat = _child_loss(
        op, grid[i].repeat(cells), grid[k].repeat(cells),
        y_lo.repeat_interleave(i.numel()), y_hi.repeat_interleave(i.numel()),
    )
    loss = torch.full((cells, n, n), math.inf, dtype=torch.float64)
    loss[:, i, k] = flat.reshape(cells, -1)
    return loss


def _min_plus(loss: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """Best grid split per table cell. ``loss: [..., n, n]`` over the candidate grid (``+inf`` for
    ``k <= i``); table cells join every ``stride``-th grid point (``m = (n - 1) / stride + 1`` of them).
    For the cell ``(i, k) = (stride I, stride K)``, ``j* = argmin_{i < j < k} T(j)`` with
    ``T(j) = L[i, j] + L[j, k]`` and ``T(i) = T(k) = L[i, k]`` (a zero-width child is exact). Returns
    ``j*: [..., m, m]`` (long, 0 where ``K <= I``) and ``T(j* - 1), T(j*), T(j* + 1): [3, ..., m, m]``
    (``+inf`` where ``K <= I`` or no finite candidate), for the parabolic refinement."""
    n = loss.shape[-1]
    m = (n - 1) // stride + 1
    coarse = torch.arange(m) * stride
    best_j = torch.zeros((*loss.shape[:-2], m, m), dtype=torch.long)
    values = torch.full((3, *loss.shape[:-2], m, m), math.inf, dtype=torch.float64)
    for row in range(m - 1):
        i = row * stride
        ends = coarse[row + 1:]  # right ends k of this row's cells
        whole = loss[..., i, ends]  # L[i, k]: [..., K]
        inner = loss[..., i, i + 1:].unsqueeze(-1) + loss[..., i + 1:, :][..., ends]  # T(j): [..., j, K]
        # row 0 = T(i), so that j* - 1 can be gathered; rows j >= k are +inf inside `inner`
        total = torch.cat([whole.unsqueeze(-2), inner], dim=-2)  # rows j = i .. n - 1
        best, arg = inner.min(dim=-2)  # arg + 1 indexes `total`
        row_of = arg + 1
        at_k = (ends - i).expand_as(row_of)  # T(k) = L[i, k] (the padded rows beyond k hold +inf)
        prev = total.gather(-2, (row_of - 1).unsqueeze(-2)).squeeze(-2)
        nxt = total.gather(-2, (row_of + 1).unsqueeze(-2)).squeeze(-2)
        nxt = torch.where(row_of + 1 == at_k, whole, nxt)
        best_j[..., row, row + 1:] = arg + i + 1
        values[0, ..., row, row + 1:] = prev
        values[1, ..., row, row + 1:] = best
        values[2, ..., row, row + 1:] = nxt
    return best_j, values


def _refined_ratios(op: Operator, grid: Tensor, stride: int, loss: Tensor,
                    y_lo: Tensor | None = None, y_hi: Tensor | None = None) -> Tensor:
    """Ratios ``[..., m, m]`` (float32, NaN = no entry) of the best split per table cell: the min-plus
    grid point ``g_j*``, moved to the vertex of the parabola through ``T(j* - 1), T(j*), T(j* + 1)``
    (at most half a candidate step, so still strictly inside) when that evaluates strictly better."""
    best_j, (t_prev, t_best, t_next) = _min_plus(loss, stride)
    m = best_j.shape[-1]
    I, K = torch.triu_indices(m, m, offset=1)
    ok = torch.isfinite(t_best[..., I, K])  # [..., cells]
    lead = t_best.shape[:-2]
    lo = (grid[I * stride]).expand(*lead, -1)
    hi = (grid[K * stride]).expand(*lead, -1)
    point = grid[best_j[..., I, K]]
    f0, fm, fp = t_best[..., I, K], t_prev[..., I, K], t_next[..., I, K]
    step = float(grid[1] - grid[0])
    curvature = fm - 2 * f0 + fp
    shift = 0.5 * step * (fm - fp) / torch.where(curvature > 0, curvature, torch.ones_like(curvature))
    shift = torch.where(ok & (curvature > 0) & torch.isfinite(shift), shift, torch.zeros_like(shift))
    shift = shift.clamp(-0.5 * step, 0.5 * step)
    moved = shift != 0
    if bool(moved.any()):
        mp, ml, mh = point[moved], lo[moved], hi[moved]
        if y_lo is None or y_hi is None:
            trial = _child_loss(op, ml, mp + shift[moved]) + _child_loss(op, mp + shift[moved], mh)
        else:
            cy_lo = y_lo[:, None].expand(*lead, I.numel())[moved]
            cy_hi = y_hi[:, None].expand(*lead, I.numel())[moved]
            trial = (_child_loss(op, ml, mp + shift[moved], cy_lo, cy_hi)
                     + _child_loss(op, mp + shift[moved], mh, cy_lo, cy_hi))
        keep = torch.zeros_like(moved)
        keep[moved] = trial < f0[moved]
        point = torch.where(keep, point + shift, point)
    ratio = torch.where(ok, (point - lo) / (hi - lo), torch.full_like(point, math.nan)).float()
    out = torch.full((*lead, m, m), math.nan, dtype=torch.float32)
    out[..., I, K] = ratio
    return out


def build_table(op: Operator) -> BranchTable:
    """Build the table of ``op`` (module doc); raises ValueError when ``table_key(op)`` is None."""
    key = table_key(op)
    if key is None:
        raise ValueError(f"{op!r} has no branching-point table")
    arity = 2 if isinstance(op, BivariateElementwise) else 1
    step, candidate_step = (STEP, CANDIDATE_STEP) if arity == 1 else (MULTI_STEP, MULTI_CANDIDATE_STEP)
    stride = int(round(step / candidate_step))
    starts, ratios = [], []
    with torch.no_grad():
        for lo, hi in _segments(op, arity):
            grid = _grid(lo, hi, candidate_step)
            if arity == 1:
                table = _refined_ratios(op, grid, stride, _grid_losses(op, grid, None, None))
            else:
                coarse = grid[::stride]
                m = coarse.numel()
                a, b = torch.triu_indices(m, m, offset=1)
                y_lo, y_hi = coarse[a], coarse[b]
                part = _refined_ratios(op, grid, stride, _grid_losses(op, grid, y_lo, y_hi), y_lo, y_hi)
                table = torch.full((m, m, m, m), math.nan, dtype=torch.float32)
                table[:, :, a, b] = part.permute(1, 2, 0)  # [cells, m, m] -> [m, m, cells]
            starts.append(lo)
            ratios.append(table.contiguous())
    return BranchTable(key, arity, step, tuple(starts), tuple(ratios))


def _validated(data: object, key: str) -> BranchTable | None:
    """The stored table if its header matches this build's settings and its values are ratios."""
    if not isinstance(data, dict):
        return None
    arity = data.get("arity")
    step = STEP if arity == 1 else MULTI_STEP
    header = (data.get("version"), data.get("key"), data.get("step"), data.get("range"))
    if header != (TABLE_VERSION, key, step, list(RANGE)) or arity not in (1, 2):
        return None
    starts, ratios = data.get("starts"), data.get("ratios")
    if not isinstance(starts, list) or not isinstance(ratios, list) or len(starts) != len(ratios):
        return None
    for start, r in zip(starts, ratios):
        if not isinstance(start, float) or not isinstance(r, Tensor) or r.dtype != torch.float32:
            return None
        if r.dim() != 2 * arity or len(set(r.shape)) != 1:
            return None
        finite = r[~torch.isnan(r)]
        if not bool(((finite > 0) & (finite < 1)).all()):
            return None
    return BranchTable(key, arity, step, tuple(starts), tuple(r.contiguous() for r in ratios))


def _load_or_build(op: Operator, key: str) -> BranchTable:
    path = table_path(key)
    if path.is_file():
        try:
            table = _validated(torch.load(path, map_location="cpu", weights_only=True), key)
        except Exception as err:  # a corrupt cache file of any kind: rebuild it
            logger.warning("ignoring unreadable branching-point table %s (%s)", path, err)
            table = None
        if table is not None:
            return table
        logger.warning("branching-point table %s is stale or invalid; rebuilding it", path)
    logger.info("building the branching-point table for %s (once per machine; `curvebound warmup` builds "
                "all common ones)", key)
    start = time.perf_counter()
    table = build_table(op)
    BUILD_STATS["builds"] += 1
    BUILD_STATS["last_build_seconds"] = time.perf_counter() - start
    logger.info("built the branching-point table for %s in %.2f s", key, BUILD_STATS["last_build_seconds"])
    data = {"version": TABLE_VERSION, "key": key, "arity": table.arity, "step": table.step, "range": list(RANGE),
            "starts": list(table.starts), "ratios": list(table.ratios)}
    try:
        _s_shaped._atomic_save(data, path)
    except OSError as err:
        logger.info("cannot write branching-point table %s (%s); keeping it in memory", path, err)
    return table


def get_table(op: Operator, device: torch.device | str = "cpu") -> BranchTable | None:
    """The table of ``op`` on ``device``: from memory, else the disk cache, else built (and cached);
    None when ``table_key(op)`` is None."""
    key = table_key(op)
    if key is None:
        return None
    cached = _DEVICE_TABLES.get((key, str(device)))
    if cached is not None:
        return cached
    table = _TABLES.get(key)
    if table is None:
        table = _load_or_build(op, key)
        _TABLES[key] = table
    _DEVICE_TABLES[(key, str(device))] = table.to(device)
    return _DEVICE_TABLES[(key, str(device))]


# ---------------------------------------------------------------- lookup
def _cell(value: Tensor, start: float, step: float, size: int) -> tuple[Tensor, Tensor]:
    """Nearest grid index of ``value`` (float64) and whether it lies on the grid's span."""
    inside = (value >= start) & (value <= start + (size - 1) * step)
    index = torch.round((torch.where(inside, value, torch.full_like(value, start)) - start) / step).long()
    return index.clamp(0, size - 1), inside


def _table_ratios(table: BranchTable, lower: Tensor, upper: Tensor, other: Interval | None) -> Tensor:
    """Ratio per element (float64), NaN where the table has no entry for it."""
    ratio = torch.full(lower.shape, math.nan, dtype=torch.float64, device=lower.device)
    lo, up = lower.double(), upper.double()
    if table.arity == 2:
        if other is None:
            return ratio
        ylo, yup = (t.double().broadcast_to(lower.shape) for t in (other.lower, other.upper))
    for start, entries in zip(table.starts, table.ratios):
        size = entries.shape[0]
        i, ok_l = _cell(lo, start, table.step, size)
        k, ok_u = _cell(up, start, table.step, size)
        ok = ok_l & ok_u
        if table.arity == 1:
            found = entries[i, k].double()
        else:
            a, ok_a = _cell(ylo, start, table.step, size)
            b, ok_b = _cell(yup, start, table.step, size)
            ok = ok & ok_a & ok_b
            found = entries[i, k, a, b].double()
        ratio = torch.where(ok, found, ratio)
    return ratio


def _inside(point: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``point`` where it is strictly inside ``(lower, upper)``; else (e.g. the base midpoint rule gives
    the end ``1`` for ``[1, inf]``) ``l + 1``, ``u - 1`` or ``0`` for half/fully infinite intervals, or the
    midpoint; unchanged where none of these is strictly inside (empty or adjacent-float intervals)."""
    finite_l, finite_u = torch.isfinite(lower), torch.isfinite(upper)
    other = torch.where(~finite_l & finite_u, upper - 1, lower / 2 + upper / 2)
    other = torch.where(finite_l & ~finite_u, lower + 1, other)
    other = torch.where(~finite_l & ~finite_u, torch.zeros_like(other), other)
    ok, other_ok = (point > lower) & (point < upper), (other > lower) & (other < upper)
    return torch.where(ok | ~other_ok, point, other)


@torch.no_grad()
def lookup_branch_points(op: Operator, lower: Tensor, upper: Tensor, other: Interval | None = None) -> Tensor:
    """Where to split each ``[lower, upper]`` (any shape, ``lower < upper``): the table's point (module
    doc), strictly inside ``(lower, upper)`` at least ``EDGE_FRACTION`` of the width from both ends.

    Falls back to ``op.branch_point(lower, upper)`` where no table applies: an op without a table
    (``STRUCTURAL_KINDS``, e.g. ReLU-like ops -> 0), an infinite interval, one outside the table range
    or domain, one narrower than half a grid step, a two-input op without ``other``.
    ``other``: the other operand's interval for two-input ops (broadcast to ``lower``'s shape),
    ignored otherwise. Same dtype and device as ``lower``.
    """
    fallback = _inside(op.branch_point(lower, upper), lower, upper)
    table = get_table(op, lower.device)
    if table is None or lower.numel() == 0:
        return fallback
    ratio = _table_ratios(table, lower, upper, other if table.arity == 2 else None).to(lower.dtype)
    width = upper - lower
    point = torch.minimum(torch.maximum(lower + ratio * width, lower + EDGE_FRACTION * width),
                          upper - EDGE_FRACTION * width)
    use = ~torch.isnan(ratio) & (point > lower) & (point < upper)
    return torch.where(use, point, fallback)


# ---------------------------------------------------------------- warm-up
def default_ops() -> list[Operator]:
    """The common operators whose tables ``warmup`` builds (Exp, Log, Softplus are never split, design c.2)."""
    from ..ops.bilinear import Mul2
    from ..ops.convex import Pow, Reciprocal, Sqrt, Square
    from ..ops.gelu import Elu, Gelu, Selu, Silu
    from ..ops.periodic import Cos, Sin
    from ..ops.s_shaped import Atan, Erf, Sigmoid, Softsign, Tanh

    return [
        Sigmoid(), Tanh(), Atan(), Erf(), Softsign(), Sin(), Cos(), Gelu(), Gelu("tanh"), Silu(), Elu(), Selu(),
        Sqrt(), Square(), Pow(3.0), Reciprocal(), Mul2(),
    ]


def warmup(ops: Sequence[Operator] | None = None, progress: bool = True) -> list[tuple[str, float]]:
    """Build (or load) the table of every op in ``ops`` (default ``default_ops()``) into this process
    and the disk cache. Returns ``(table key, seconds)`` per op that has a table, in order."""
    from tqdm import tqdm

    results: list[tuple[str, float]] = []
    todo = list(default_ops() if ops is None else ops)
    bar = tqdm(todo, desc="branching-point tables", unit="table", disable=not progress)
    for op in bar:
        key = table_key(op)
        if key is None:
            logger.info("%r has no branching-point table (its split point is structural)", op)
            continue
        bar.set_postfix_str(key.split("|")[0])
        start = time.perf_counter()
        get_table(op)
        results.append((key, time.perf_counter() - start))
    return results


def _echo_results(results: list[tuple[str, float]], echo: Callable[[str], None]) -> None:
    for key, seconds in results:
        echo(f"{seconds:7.2f} s  {key}")


@click.command("warmup")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def warmup_command(no_progress: bool) -> None:
    """Build the branching-point tables of all common nonlinearities once for this machine."""
    start = time.perf_counter()
    results = warmup(progress=not no_progress)
    _echo_results(results, click.echo)
    click.echo(f"{len(results)} tables ready in {table_directory()} ({time.perf_counter() - start:.1f} s)")
