"""Structural affine operators: they move, copy, select or sum entries (plus constants).

Every value is ``[batch, *onnx_shape]``; the ONNX axis ``a >= 0`` is torch dim ``a + 1``. All
operators here except ``Where`` with perturbed operands on both sides are monotone (nondecreasing in
every input): they are permutations, selections, copies, sums and means of entries, plus constants.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import AffineOperator
from .linear import align


class Reshape(AffineOperator):
    """``y = x.reshape(batch, *shape)`` (also Flatten, Squeeze, Unsqueeze)."""

    kind = "Reshape"
    pointwise = True
    monotone = True

    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def backward(self, A, input_shapes, input_bounds, params=None):
        return [A.reshape(*A.shape[:2], *input_shapes[0])], torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)

    def __repr__(self) -> str:
        return f"Reshape({self.shape})"


class Transpose(AffineOperator):
    """``y = x.permute(0, *(p + 1 for p in perm))`` (ONNX ``perm`` on the ONNX dims)."""

    kind = "Transpose"
    pointwise = True
    monotone = True

    def __init__(self, perm: Sequence[int]):
        self.perm = tuple(int(p) for p in perm)

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, *(p + 1 for p in self.perm))

    def __repr__(self) -> str:
        return f"Transpose({self.perm})"


class Concat(AffineOperator):
    """Concatenation along ONNX ``axis`` of perturbed inputs and constants. ``layout`` lists the
    pieces in order: ``None`` for the next perturbed input, or the size (along ``axis``) of the next
    constant piece; the constant pieces are stored concatenated in ``constants``."""

    kind = "Concat"
    monotone = True

    def __init__(self, axis: int, layout: Sequence[int | None], constants: Tensor | None = None):
        self.axis = int(axis)
        self.layout = tuple(layout)
        self.constants = constants

    def forward(self, *inputs: Tensor) -> Tensor:
        batch = inputs[0].shape[0]
        dim = self.axis + 1
        sizes = [s for s in self.layout if s is not None]
        const_pieces = list(torch.split(self.constants, sizes, dim=self.axis)) if sizes else []
        pieces: list[Tensor] = []
        it_in, it_const = iter(inputs), iter(const_pieces)
        for slot in self.layout:
            if slot is None:
                pieces.append(next(it_in))
            else:
                c = next(it_const).to(inputs[0].dtype)
                pieces.append(c.unsqueeze(0).expand(batch, *c.shape))
        return torch.cat(pieces, dim=dim)

    def __repr__(self) -> str:
        return f"Concat(axis={self.axis}, layout={self.layout})"


class Slice(AffineOperator):
    """Strided selection. ``slices`` holds, per ONNX dim, ``(start, stop, step, flip)`` with
    ``step > 0``: the dim is reversed first when ``flip`` (negative ONNX steps)."""

    kind = "Slice"
    pointwise = True
    monotone = True

    def __init__(self, slices: Sequence[tuple[int, int, int, bool]]):
        self.slices = tuple(tuple(s) for s in slices)

    def forward(self, x: Tensor) -> Tensor:
        flips = [d + 1 for d, s in enumerate(self.slices) if s[3]]
        if flips:
            x = x.flip(flips)
        index = (slice(None),) + tuple(slice(a, b, c) for a, b, c, _ in self.slices)
        return x[index]

    def backward(self, A, input_shapes, input_bounds, params=None):
        """The adjoint: ``A`` scattered into zeros of the input shape (then un-flipped); no bias."""
        spec, batch = A.shape[:2]
        coeff = torch.zeros(spec, batch, *input_shapes[0], dtype=A.dtype, device=A.device)
        coeff[(slice(None), slice(None)) + tuple(slice(a, b, c) for a, b, c, _ in self.slices)] = A
        flips = [d + 2 for d, s in enumerate(self.slices) if s[3]]
        if flips:
            coeff = coeff.flip(flips)
        return [coeff], torch.zeros(spec, batch, dtype=A.dtype, device=A.device)

    @staticmethod
    def from_onnx(shape: Sequence[int], starts: Sequence[int], ends: Sequence[int],
                  axes: Sequence[int], steps: Sequence[int]) -> Slice:
        """Resolve ONNX Slice arguments (negative and out-of-range values clamped as ONNX does)."""
        slices = [(0, n, 1, False) for n in shape]
        for start, end, axis, step in zip(starts, ends, axes, steps):
            axis = axis + len(shape) if axis < 0 else axis
            n = shape[axis]
            start = start + n if start < 0 else start
            end = end + n if end < 0 else end
            if step > 0:
                start, end = min(max(start, 0), n), min(max(end, 0), n)
                slices[axis] = (start, max(end, start), step, False)
            elif step < 0:
                start, end = min(max(start, 0), n - 1), min(max(end, -1), n - 1)
                count = len(range(start, end, step))
                first = n - 1 - start  # index in the flipped dim
                slices[axis] = (first, first + max(count - 1, 0) * (-step) + (1 if count else 0), -step, True)
            else:
                raise ValueError("Slice step 0")
        return Slice(slices)

    def __repr__(self) -> str:
        return f"Slice({self.slices})"


class Gather(AffineOperator):
    """``y = take(x, indices, axis)`` with constant integer ``indices`` (ONNX ``Gather``):
    ``y.shape = x.shape[:axis] + indices.shape + x.shape[axis+1:]``."""

    kind = "Gather"
    pointwise = True
    monotone = True

    def __init__(self, axis: int, indices: Tensor):
        self.axis = int(axis)
        self.indices = indices.long()

    def forward(self, x: Tensor) -> Tensor:
        dim = self.axis + 1
        y = x.index_select(dim, self.indices.reshape(-1))
        return y.reshape(*x.shape[:dim], *self.indices.shape, *x.shape[dim + 1:])

    def __repr__(self) -> str:
        return f"Gather(axis={self.axis}, indices={tuple(self.indices.shape)})"


class Pad(AffineOperator):
    """Constant-mode padding: ``pads`` in ONNX order (all begins, then all ends, one per ONNX dim;
    negative values crop), filled with ``value``."""

    kind = "Pad"
    pointwise = True
    monotone = True

    def __init__(self, pads: Sequence[int], value: float = 0.0):
        self.pads = tuple(int(p) for p in pads)
        self.value = float(value)

    def forward(self, x: Tensor) -> Tensor:
        k = len(self.pads) // 2
        torch_pads: list[int] = []
        for d in reversed(range(k)):
            torch_pads += [self.pads[d], self.pads[k + d]]
        return F.pad(x, torch_pads, mode="constant", value=self.value)

    def __repr__(self) -> str:
        return f"Pad({self.pads}, value={self.value})"


class Expand(AffineOperator):
    """Broadcast to the ONNX shape ``shape`` (numpy rules; ONNX ``Expand``)."""

    kind = "Expand"
    pointwise = True
    monotone = True

    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: Tensor) -> Tensor:
        x = align(x, len(self.shape))
        return x.expand(x.shape[0], *self.shape)

    def __repr__(self) -> str:
        return f"Expand({self.shape})"


class Upsample(AffineOperator):
    """Nearest-neighbour upsampling by integer ``scales`` (one per ONNX dim): each entry is
    repeated ``scale`` times along its dim."""

    kind = "Upsample"
    pointwise = True
    monotone = True

    def __init__(self, scales: Sequence[int]):
        self.scales = tuple(int(s) for s in scales)

    def forward(self, x: Tensor) -> Tensor:
        for d, s in enumerate(self.scales):
            if s != 1:
                x = x.repeat_interleave(s, dim=d + 1)
        return x

    def __repr__(self) -> str:
        return f"Upsample({self.scales})"


class ReduceSum(AffineOperator):
    """``y = sum (or mean) of x over ONNX axes`` (keepdims as ONNX)."""

    kind = "ReduceSum"
    monotone = True

    def __init__(self, axes: Sequence[int], keepdims: bool = True, mean: bool = False):
        self.axes = tuple(int(a) for a in axes)
        self.keepdims = bool(keepdims)
        self.mean = bool(mean)
        if mean:
            self.kind = "ReduceMean"

    def forward(self, x: Tensor) -> Tensor:
        if not self.axes:
            return x
        dims = [a + 1 for a in self.axes]
        if self.mean:
            return x.mean(dim=dims, keepdim=self.keepdims)
        return x.sum(dim=dims, keepdim=self.keepdims)

    def __repr__(self) -> str:
        return f"{self.kind}(axes={self.axes}, keepdims={self.keepdims})"


class Where(AffineOperator):
    """``y = where(condition, a, b)`` with a constant boolean ``condition``; each of ``a``, ``b`` is
    either a constant (``then_value`` / ``else_value``) or the next perturbed input (value None).
    ``out_rank`` is the ONNX rank of ``y``."""

    kind = "Where"
    monotone = True

    def __init__(self, condition: Tensor, then_value: Tensor | None, else_value: Tensor | None, out_rank: int):
        self.condition = condition.bool()
        self.then_value = then_value
        self.else_value = else_value
        self.out_rank = out_rank

    def forward(self, *inputs: Tensor) -> Tensor:
        it = iter(inputs)
        a = align(next(it), self.out_rank) if self.then_value is None else self.then_value
        b = align(next(it), self.out_rank) if self.else_value is None else self.else_value
        dtype = inputs[0].dtype
        return torch.where(self.condition, a.to(dtype), b.to(dtype))

    def __repr__(self) -> str:
        return f"Where(condition={tuple(self.condition.shape)})"
