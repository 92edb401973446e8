"""Maxima over windows of one perturbed tensor: ``MaxPool`` (and ``GlobalMaxPool``) and ``ReduceMax``.

Both are ``y_g = max_{k < K} x[index[g, k]]``: a constant table ``index: [G, K]`` of flat input
positions, one row per output element ``g`` (pooling: the sliding windows, with the sentinel ``P``
(= number of input elements) for a pad position whose value is ``-inf``; ReduceMax: one row per kept
position, the reduced positions as columns). Only the table differs; the relaxation is shared.

Relaxation of ``y = max_k x_k`` on the box ``x_k in [l_k, u_k]`` (pad entries ``l = u = -inf``), with
``m = argmax_k u_k``, ``u_1 = u_m``, ``u_2 = max_{k != m} u_k`` and ``j = argmax_k l_k``
(a real, non-pad position in both cases; ties broken by the first):

* exact when ``l_m >= u_2``: every other input is below ``x_m``, so ``y = x_m``;
* lower: ``y >= x_j`` (``y`` is at least each of its inputs; one-hot on the largest lower bound,
  the design's default of the convex-combination family);
* upper: ``y <= max(x_m, u_2) = u_2 + relu(x_m - u_2) <= u_2 + s (x_m - l_m)`` with
  ``s = (u_1 - u_2) / (u_1 - l_m) in [0, 1]``: the ReLU chord of ``x_m - u_2`` on
  ``[l_m - u_2, u_1 - u_2]`` (``l_m < u_2 <= u_1`` when not exact). It equals ``u_1 = max_k u_k`` at
  ``x_m = u_1`` and is below that constant everywhere else on the box, so it is never looser than the
  constant ``max_k u_k`` of auto_LiRPA. Limits: ``u_1 = +inf`` -> ``s = 1``, intercept ``u_2 - l_m``;
  ``l_m = -inf`` -> ``s = 0``, the constant ``u_1``; ``u_1 = u_2`` -> ``s = 0``, the constant ``u_1``.
  The intercept is moved up by a few ulps of its magnitude (float rounding of ``s`` and ``s l_m``).

``backward`` puts ``A+`` on ``x_j`` and ``s A-`` on ``x_m`` of each window and sums the coefficients of
overlapping windows into the input positions (``scatter_add``); a pad position never receives one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Interval, Operator, safe_product, sum_node_dims


def _first_real(choice: Tensor, real: Tensor) -> Tensor:
    """``choice: [batch, G]`` window slots; where the slot is a pad, the first real slot instead
    (``real: [G, K]``, every row has one). Used for argmax ties among ``-inf`` entries."""
    first = real.to(torch.int64).argmax(-1).expand_as(choice)  # [batch, G]
    chosen_real = real.expand(choice.shape[0], *real.shape).gather(-1, choice.unsqueeze(-1)).squeeze(-1)
    return torch.where(chosen_real, choice, first)


def window_max_relaxation(lower: Tensor, upper: Tensor, real: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Relaxation of ``y_g = max_k x_{g,k}`` on ``lower, upper: [batch, G, K]`` (module doc); ``real:
    [G, K]`` marks non-pad slots. Returns ``(j, m, s, c)`` (each ``[batch, G]``) with

        x_{g, j}  <=  y_g  <=  s x_{g, m} + c      for every x in the box,

    ``s in [0, 1]`` (``s = 1``, ``c = 0``, ``j = m`` where the window is exact)."""
    m = _first_real(upper.argmax(-1), real)
    j = _first_real(lower.argmax(-1), real)
    u1 = upper.gather(-1, m.unsqueeze(-1)).squeeze(-1)
    l_m = lower.gather(-1, m.unsqueeze(-1)).squeeze(-1)
    others = upper.scatter(-1, m.unsqueeze(-1), -math.inf)
    u2 = others.amax(-1)  # -inf for a window of one real position
    exact = l_m >= u2

    zero, one = torch.zeros_like(u1), torch.ones_like(u1)
    u1_fin, l_fin = torch.isfinite(u1), torch.isfinite(l_m)
    usable = ~exact & u1_fin & l_fin
    width = torch.where(usable, u1 - l_m, one)  # > 0 where usable: l_m < u2 <= u1
    s = torch.where(usable, (torch.where(usable, u1 - u2, zero) / width).clamp(0, 1), zero)
    s = torch.where(~exact & ~u1_fin & l_fin, one, s)  # u_1 = +inf: slope 1, intercept u_2 - l_m
    l_safe = torch.where(l_fin, l_m, zero)
    c = torch.where(s > 0, u2 - s * l_safe, u1)  # s = 0 (incl. l_m = -inf, u_1 = u_2): the constant u_1
    magnitude = sum(torch.where(torch.isfinite(t), t, zero).abs() for t in (u1, u2, l_m))
    c = torch.where(s > 0, c + 8 * torch.finfo(c.dtype).eps * (1 + magnitude), c)

    s = torch.where(exact, one, s)
    c = torch.where(exact, zero, c)
    j = torch.where(exact, m, j)
    return j, m, s, c


class WindowMax(Operator):
    """``y_g = max_k x[index[g, k]]`` for the table of a subclass (``_index``, ``_out_shape``); see the
    module doc. Not splittable: a max is only relaxed (design c.2)."""

    requires_input_bounds = (0,)

    def __init__(self) -> None:
        self._tables: dict[tuple[tuple[int, ...], str], Tensor] = {}

    # ---- what a subclass defines ----
    def _index(self, in_shape: tuple[int, ...]) -> Tensor:
        """``[G, K]`` int64 flat input positions (``prod(in_shape)`` for a ``-inf`` pad)."""
        raise NotImplementedError

    def _out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError

    # ---- shared ----
    def _table(self, in_shape: tuple[int, ...], device: torch.device) -> Tensor:
        key = (tuple(in_shape), str(device))
        if key not in self._tables:
            self._tables[key] = self._index(tuple(in_shape)).to(device)
        return self._tables[key]

    def _windows(self, x: Tensor) -> Tensor:
        """``x: [batch, *in_shape] -> [batch, G, K]`` with ``-inf`` at pad slots."""
        in_shape = tuple(x.shape[1:])
        index = self._table(in_shape, x.device)
        flat = x.reshape(x.shape[0], -1)
        flat = torch.cat([flat, torch.full_like(flat[:, :1], -math.inf)], 1)  # slot P: the pad value
        return flat[:, index.reshape(-1)].reshape(x.shape[0], *index.shape)

    def forward(self, x: Tensor) -> Tensor:
        return self._windows(x).amax(-1).reshape(x.shape[0], *self._out_shape(tuple(x.shape[1:])))

    def interval(self, x: Interval) -> Interval:
        return Interval(self.forward(x.lower), self.forward(x.upper))  # max is nondecreasing

    def backward(self, A, input_shapes, input_bounds, params=None):
        bounds = input_bounds[0]
        assert bounds is not None, f"{self.kind} needs its input bounds"
        in_shape = tuple(input_shapes[0])
        spec, batch = A.shape[:2]
        index = self._table(in_shape, A.device)  # [G, K]
        size = math.prod(in_shape)
        real = index < size
        j, m, s, c = window_max_relaxation(self._windows(bounds.lower), self._windows(bounds.upper), real)
        G = index.shape[0]
        rows = torch.arange(G, device=A.device)
        pos_at, neg_at = index[rows, j], index[rows, m]  # [batch, G] flat input positions (never a pad)
        flat = A.reshape(spec, batch, G)
        pos, neg = flat.clamp(min=0), flat.clamp(max=0)
        coeff = torch.zeros(spec, batch, size + 1, dtype=A.dtype, device=A.device)
        coeff = coeff.scatter_add(2, pos_at.expand(spec, batch, G), pos)
        coeff = coeff.scatter_add(2, neg_at.expand(spec, batch, G), neg * s)
        bias = sum_node_dims(safe_product(neg, c))
        return [coeff[:, :, :size].reshape(spec, batch, *in_shape)], bias


class MaxPool(WindowMax):
    """ONNX ``MaxPool`` (1-, 2- or 3-D, ``ceil_mode = 0``) on ``[batch, N, C, *spatial]``: windows of
    ``kernel`` positions spaced by ``dilations``, moved by ``strides`` over the input padded with
    ``-inf`` (``pads``: ONNX order, begins then ends, each smaller than the kernel extent)."""

    kind = "MaxPool"

    def __init__(self, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int],
                 dilations: Sequence[int] | None = None):
        super().__init__()
        self.kernel = tuple(int(k) for k in kernel)
        k = len(self.kernel)
        self.strides = tuple(int(s) for s in strides)
        self.pads = tuple(int(p) for p in pads)
        self.dilations = tuple(int(d) for d in dilations) if dilations is not None else (1,) * k
        spans = [(kk - 1) * d + 1 for kk, d in zip(self.kernel, self.dilations)]
        if any(p >= span for p, span in zip(self.pads, spans + spans)):
            raise ValueError(f"MaxPool pads {self.pads} must be smaller than the kernel extent {spans}")

    def _spans(self) -> list[int]:
        return [(k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations)]

    def _out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        k = len(self.kernel)
        spatial = in_shape[-k:]
        out = [
            (size + self.pads[d] + self.pads[k + d] - span) // self.strides[d] + 1
            for d, (size, span) in enumerate(zip(spatial, self._spans()))
        ]
        return (*in_shape[:-k], *out)

    def _index(self, in_shape: tuple[int, ...]) -> Tensor:
        k = len(self.kernel)
        lead, spatial = in_shape[:-k], in_shape[-k:]
        size = math.prod(in_shape)
        positions = torch.arange(size).reshape(math.prod(lead), *spatial)
        padded_shape = [s + self.pads[d] + self.pads[k + d] for d, s in enumerate(spatial)]
        padded = torch.full((math.prod(lead), *padded_shape), size, dtype=torch.int64)
        inner = tuple(slice(self.pads[d], self.pads[d] + s) for d, s in enumerate(spatial))
        padded[(slice(None), *inner)] = positions
        windows = padded
        for d, span in enumerate(self._spans()):
            windows = windows.unfold(1 + d, span, self.strides[d])  # appends the window dim
        # [lead, *out_spatial, *spans] -> keep every dilation-th position of each span
        dilate = tuple(slice(None, None, dil) for dil in self.dilations)
        windows = windows[(Ellipsis, *dilate)]
        return windows.reshape(-1, math.prod(self.kernel))

    def __repr__(self) -> str:
        return f"MaxPool(kernel={self.kernel}, strides={self.strides}, pads={self.pads}, dilations={self.dilations})"


class ReduceMax(WindowMax):
    """ONNX ``ReduceMax`` of a perturbed tensor over ONNX ``axes`` (non-negative, sorted), ``keepdims``
    as ONNX; also ``GlobalMaxPool`` (axes ``2..rank-1``, keepdims). One window per kept position."""

    kind = "ReduceMax"

    def __init__(self, axes: Sequence[int], keepdims: bool = True):
        super().__init__()
        self.axes = tuple(sorted(int(a) for a in axes))
        self.keepdims = bool(keepdims)

    def _out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.keepdims:
            return tuple(1 if a in self.axes else d for a, d in enumerate(in_shape))
        return tuple(d for a, d in enumerate(in_shape) if a not in self.axes)

    def _index(self, in_shape: tuple[int, ...]) -> Tensor:
        kept = [a for a in range(len(in_shape)) if a not in self.axes]
        positions = torch.arange(math.prod(in_shape)).reshape(in_shape).permute(*kept, *self.axes)
        return positions.reshape(math.prod(in_shape[a] for a in kept), -1)

    def __repr__(self) -> str:
        return f"{self.kind}(axes={self.axes}, keepdims={self.keepdims})"
