"""Affine operators with weights: matrix products, convolutions, elementwise scale/shift, sums and
differences of perturbed values.

Layout: every value is ``[batch, *onnx_shape]``; constants are stored with their ONNX shape and
broadcast against the ONNX part (numpy rules), never against ``batch``. When a constant has more
dimensions than an input, the input gets singleton dimensions inserted right after ``batch``
(``align``), which is what numpy broadcasting does to the ONNX value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import AffineOperator, reduce_to_shape, sum_node_dims


def align(x: Tensor, rank: int) -> Tensor:
    """Insert singleton dims after the batch dim so that ``x``'s ONNX rank is at least ``rank``."""
    missing = rank - (x.dim() - 1)
    if missing <= 0:
        return x
    return x.reshape(x.shape[0], *([1] * missing), *x.shape[1:])


class MatMulConst(AffineOperator):
    """``y = x @ W + bias`` (``side="right"``) or ``y = W @ x + bias`` (``side="left"``), numpy
    ``matmul`` semantics on the ONNX shapes (1-D operands promoted and demoted, batch dims
    broadcast). ``W`` and ``bias`` are constants; ``bias`` may be None."""

    kind = "MatMul"

    def __init__(self, weight: Tensor, bias: Tensor | None = None, side: str = "right", in_rank: int = 2):
        if side not in ("right", "left"):
            raise ValueError(f"side must be 'right' or 'left', not {side!r}")
        self.weight = weight
        self.bias = bias
        self.side = side
        self.in_rank = in_rank  # ONNX rank of x

    def _product(self, x: Tensor, weight: Tensor) -> Tensor:
        vector = self.in_rank == 1
        if self.side == "right":
            if vector:
                x = x.unsqueeze(-2)  # [batch, 1, K]
            x = align(x, weight.dim())
            y = torch.matmul(x, weight)
            return y.squeeze(-2) if vector else y
        if vector:
            x = x.unsqueeze(-1)  # [batch, K, 1]
        x = align(x, weight.dim())
        y = torch.matmul(weight, x)
        return y.squeeze(-1) if vector else y

    def forward(self, x: Tensor) -> Tensor:
        y = self._product(x, self.weight)
        return y if self.bias is None else y + self.bias

    def abs_linear(self, r: Tensor) -> Tensor:
        return self._product(r, self.weight.abs())

    def backward(self, A, input_shapes, input_bounds, params=None):
        """Direct formulas for a weight on the right, ``x @ W``: 2-D ``A_x = A W^T``, 1-D (a dot
        product over the last dim) ``A_x = A w``; bias ``A . bias``. Other layouts use the generic
        exact autograd step."""
        if self.side == "right" and self.weight.dim() == 1 and self.in_rank > 1:
            coeff = A.unsqueeze(-1) * self.weight
            bias = (torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device) if self.bias is None
                    else sum_node_dims(A * self.bias))
            return [coeff.reshape(*A.shape[:2], *input_shapes[0])], bias
        if self.side != "right" or self.weight.dim() != 2:
            return super().backward(A, input_shapes, input_bounds, params)
        n_out = self.weight.shape[1]
        coeff = torch.matmul(A.reshape(-1, n_out), self.weight.transpose(0, 1))
        coeff = coeff.reshape(*A.shape[:-1], self.weight.shape[0])
        if self.bias is None:
            bias = torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)
        else:
            bias = sum_node_dims(A * self.bias)
        return [coeff.reshape(*A.shape[:2], *input_shapes[0])], bias

    def __repr__(self) -> str:
        return f"MatMulConst({self.side}, weight={tuple(self.weight.shape)}, bias={self.bias is not None})"


class Conv(AffineOperator):
    """N-D convolution (ONNX ``Conv``, cross-correlation) on ``[batch, N, C, *spatial]``:
    ``y = conv(pad(x), W) + b`` with explicit (possibly asymmetric) pads."""

    kind = "Conv"

    def __init__(self, weight: Tensor, bias: Tensor | None, strides: Sequence[int], pads: Sequence[int],
                 dilations: Sequence[int], group: int):
        self.weight = weight
        self.bias = bias
        self.strides = tuple(int(s) for s in strides)
        self.pads = tuple(int(p) for p in pads)  # ONNX order: begins then ends
        self.dilations = tuple(int(d) for d in dilations)
        self.group = int(group)

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        b, n = x.shape[:2]
        x = x.reshape(b * n, *x.shape[2:])
        k = len(self.strides)
        begins, ends = self.pads[:k], self.pads[k:]
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[k]
        if begins == ends:
            y = fn(x, weight, bias, self.strides, begins, self.dilations, self.group)
        else:
            torch_pads: list[int] = []
            for lo, hi in zip(reversed(begins), reversed(ends)):
                torch_pads += [lo, hi]
            y = fn(F.pad(x, torch_pads), weight, bias, self.strides, 0, self.dilations, self.group)
        return y.reshape(b, n, *y.shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        return self._conv(x, self.weight, self.bias)

    def abs_linear(self, r: Tensor) -> Tensor:
        return self._conv(r, self.weight.abs(), None)

    def __repr__(self) -> str:
        return f"Conv(weight={tuple(self.weight.shape)}, strides={self.strides}, pads={self.pads})"


class ConvTranspose(AffineOperator):
    """N-D transposed convolution (ONNX ``ConvTranspose``) on ``[batch, N, C, *spatial]``; ``pads``
    crop the full output (begins, ends), ``output_padding`` extends its end."""

    kind = "ConvTranspose"

    def __init__(self, weight: Tensor, bias: Tensor | None, strides: Sequence[int], pads: Sequence[int],
                 dilations: Sequence[int], group: int, output_padding: Sequence[int]):
        self.weight = weight
        self.bias = bias
        self.strides = tuple(int(s) for s in strides)
        self.pads = tuple(int(p) for p in pads)
        self.dilations = tuple(int(d) for d in dilations)
        self.group = int(group)
        self.output_padding = tuple(int(p) for p in output_padding)

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        b, n = x.shape[:2]
        x = x.reshape(b * n, *x.shape[2:])
        k = len(self.strides)
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[k]
        y = fn(x, weight, None, self.strides, 0, 0, self.group, self.dilations)
        # full output, then output_padding (zeros at the end) and crop by pads
        extra: list[int] = []
        for p in reversed(self.output_padding):
            extra += [0, p]
        if any(extra):
            y = F.pad(y, extra)
        index = [slice(None), slice(None)]
        for d in range(k):
            size = y.shape[2 + d]
            index.append(slice(self.pads[d], size - self.pads[k + d]))
        y = y[tuple(index)]
        if bias is not None:
            y = y + bias.reshape(1, -1, *([1] * k))
        return y.reshape(b, n, *y.shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        return self._conv(x, self.weight, self.bias)

    def abs_linear(self, r: Tensor) -> Tensor:
        return self._conv(r, self.weight.abs(), None)

    def __repr__(self) -> str:
        return f"ConvTranspose(weight={tuple(self.weight.shape)}, strides={self.strides}, pads={self.pads})"


class ScaleShift(AffineOperator):
    """Elementwise ``y = x * scale + shift`` with constant, broadcastable ``scale`` and ``shift``
    (either may be None). Covers Add/Sub/Mul/Div by a constant, Neg and inference BatchNorm.
    ``out_rank`` is the ONNX rank of ``y``. Monotone when ``scale >= 0``."""

    kind = "ScaleShift"
    pointwise = True

    def __init__(self, scale: Tensor | None = None, shift: Tensor | None = None, out_rank: int = 0):
        self.scale = scale
        self.shift = shift
        self.out_rank = out_rank
        self.monotone = scale is None or bool((scale >= 0).all())

    def forward(self, x: Tensor) -> Tensor:
        x = align(x, self.out_rank)
        if self.scale is not None:
            x = x * self.scale
        if self.shift is not None:
            x = x + self.shift
        return x

    def abs_linear(self, r: Tensor) -> Tensor:
        r = align(r, self.out_rank)
        return r if self.scale is None else r * self.scale.abs()

    def backward(self, A, input_shapes, input_bounds, params=None):
        """``A_x = A * scale`` summed back over broadcast dims; bias ``A . shift``."""
        coeff = A if self.scale is None else A * self.scale
        coeff = reduce_to_shape(coeff, input_shapes[0])
        if self.shift is None:
            bias = torch.zeros(A.shape[:2], dtype=A.dtype, device=A.device)
        else:
            bias = sum_node_dims(A * self.shift)
        return [coeff], bias

    def __repr__(self) -> str:
        scale = None if self.scale is None else tuple(self.scale.shape)
        shift = None if self.shift is None else tuple(self.shift.shape)
        return f"ScaleShift(scale={scale}, shift={shift})"


class Add2(AffineOperator):
    """``y = x + sign * z`` for two perturbed values (numpy broadcasting on ONNX shapes);
    ``sign = +1`` (Add) or ``-1`` (Sub)."""

    kind = "Add"

    def __init__(self, sign: float = 1.0, out_rank: int = 0):
        self.sign = float(sign)
        self.out_rank = out_rank
        self.monotone = self.sign >= 0
        if self.sign < 0:
            self.kind = "Sub"

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return align(x, self.out_rank) + self.sign * align(z, self.out_rank)

    def abs_linear(self, rx: Tensor, rz: Tensor) -> Tensor:
        return align(rx, self.out_rank) + abs(self.sign) * align(rz, self.out_rank)

    def __repr__(self) -> str:
        return f"Add2(sign={self.sign})"


class PairwiseDifference(AffineOperator):
    """``y[..., i, j] = x[..., j] - x[..., i]`` along ONNX ``axis``, which is moved to the end
    (``i`` indexes the second-to-last, ``j`` the last dim of ``y``). Used by the Softmax
    decomposition ``softmax_i = 1 / sum_j exp(x_j - x_i)``."""

    kind = "PairwiseDifference"

    def __init__(self, axis: int):
        self.axis = int(axis)  # ONNX axis (>= 0)

    def forward(self, x: Tensor) -> Tensor:
        x = x.movedim(self.axis + 1, -1)
        return x.unsqueeze(-2) - x.unsqueeze(-1)

    def abs_linear(self, r: Tensor) -> Tensor:
        r = r.movedim(self.axis + 1, -1)
        out = r.unsqueeze(-2) + r.unsqueeze(-1)
        n = r.shape[-1]
        off_diagonal = 1 - torch.eye(n, dtype=r.dtype, device=r.device)  # x_i - x_i == 0 exactly
        return out * off_diagonal

    def __repr__(self) -> str:
        return f"PairwiseDifference(axis={self.axis})"


class Center(AffineOperator):
    """``y = x - mean(x over ONNX axes, keepdims)`` (LayerNormalization's centring);
    ``|L| r = |1 - 1/n| r + (1/n) (sum r - r)``."""

    kind = "Center"

    def __init__(self, axes: Sequence[int]):
        self.axes = tuple(int(a) for a in axes)

    def forward(self, x: Tensor) -> Tensor:
        dims = [a + 1 for a in self.axes]
        return x - x.mean(dim=dims, keepdim=True)

    def abs_linear(self, r: Tensor) -> Tensor:
        dims = [a + 1 for a in self.axes]
        n = 1
        for d in dims:
            n *= r.shape[d]
        total = r.sum(dim=dims, keepdim=True)
        return (1 - 1 / n) * r + (total - r) / n

    def __repr__(self) -> str:
        return f"Center(axes={self.axes})"


class AveragePool(AffineOperator):
    """ONNX ``AveragePool`` (1-, 2- or 3-D, ``ceil_mode = 0``, no dilation) on ``[batch, N, C, *spatial]``:
    ``y_o = sum_{i in window(o)} x_i / d_o`` with the zero-padded window (explicit, possibly
    asymmetric ``pads``, ONNX order begins then ends) and divisor ``d_o`` = the kernel size when
    ``count_include_pad`` else the number of non-pad positions in the window. Nonnegative weights:
    monotone, so IBP is the forward of the bounds and the generic backward is exact."""

    kind = "AveragePool"
    monotone = True

    def __init__(self, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int],
                 count_include_pad: bool = False):
        self.kernel = tuple(int(k) for k in kernel)
        self.strides = tuple(int(s) for s in strides)
        self.pads = tuple(int(p) for p in pads)
        self.count_include_pad = bool(count_include_pad)
        if len(self.kernel) not in (1, 2, 3):
            raise ValueError(f"{len(self.kernel)}-D AveragePool is not supported")

    def _padded(self, x: Tensor) -> Tensor:
        k = len(self.kernel)
        torch_pads: list[int] = []
        for lo, hi in zip(reversed(self.pads[:k]), reversed(self.pads[k:])):
            torch_pads += [lo, hi]
        return F.pad(x, torch_pads) if any(torch_pads) else x

    def forward(self, x: Tensor) -> Tensor:
        b, n = x.shape[:2]
        flat = x.reshape(b * n, *x.shape[2:])  # [batch * N, C, *spatial]
        fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(self.kernel)]
        y = fn(self._padded(flat), self.kernel, self.strides)  # mean over the kernel, pads counted
        if not self.count_include_pad and any(self.pads):
            ones = torch.ones((1, 1, *flat.shape[2:]), dtype=x.dtype, device=x.device)
            y = y / fn(self._padded(ones), self.kernel, self.strides)  # fraction of real positions
        return y.reshape(b, n, *y.shape[1:])

    def __repr__(self) -> str:
        return (f"AveragePool(kernel={self.kernel}, strides={self.strides}, pads={self.pads}, "
                f"count_include_pad={self.count_include_pad})")


class GlobalAveragePool(AffineOperator):
    """ONNX ``GlobalAveragePool`` on ``[batch, N, C, *spatial]``: the mean over all spatial dims, kept
    as size-1 dims. Monotone (IBP = forward of the bounds); exact generic backward."""

    kind = "GlobalAveragePool"
    monotone = True

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=tuple(range(3, x.dim())), keepdim=True)

    def __repr__(self) -> str:
        return "GlobalAveragePool()"
