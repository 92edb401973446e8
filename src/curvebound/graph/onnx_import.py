"""ONNX -> curvebound graph IR.

The import walks the ONNX nodes in order, keeping for each ONNX tensor name either a constant
(numpy array) or the index of the IR node computing it. A node whose inputs are all constant is
evaluated right away (``onnx.reference``), so shape arithmetic (``Shape -> Gather -> Concat ->
Reshape``) folds into constants; ``Shape`` of a perturbed tensor is its static ONNX shape (dynamic
dims fixed to 1). Every other node goes through the converter registered for its op type, which
appends IR nodes. Shapes are found by running each new operator on a batch-1 probe.

Conventions: IR values are ``[batch, *onnx_shape]``; ONNX axis ``a >= 0`` is torch dim ``a + 1``.
Unsupported operators are collected over the whole model and reported together.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import Tensor

from ..errors import ModelError, UnsupportedOperatorsError
from ..io.onnx_model import load_onnx
from ..ops.base import Operator
from ..ops.linear import Add2, Center, Conv, ConvTranspose, MatMulConst, PairwiseDifference, ScaleShift
from ..ops.shape import (
    Concat,
    Expand,
    Gather,
    Pad,
    ReduceSum,
    Reshape,
    Slice,
    Transpose,
    Upsample,
    Where,
)
from .fuse_lookup import fuse_lookup_tables
from .ir import Graph, Node, prune

logger = logging.getLogger(__name__)


class _Unknown:
    """Value of a tensor computed by an unsupported operator (import continues to find all of them)."""


UNKNOWN = _Unknown()
Value = Any  # np.ndarray (constant) | int (IR node index) | _Unknown


class _Unsupported(Exception):
    """Raised by a converter for an operand combination or attribute it cannot handle."""


#: how ONNX ``Softmax`` is imported: "pairwise" ``1 / sum_j exp(x_j - x_i)`` (default: exact
#: form, Reciprocal input >= 1, no Mul of two perturbed tensors) or "exp_sum" ``exp(x_i) * 1 / sum_j
#: exp(x_j)`` (the textbook decomposition; kept to measure the two against each other)
SOFTMAX_FORMS = ("pairwise", "exp_sum")


def load_graph(path: str | Path, softmax: str = "pairwise", fuse_lookup: bool = True) -> Graph:
    """Read an ``.onnx`` file and convert it to the IR (``ModelError`` on any problem). ``fuse_lookup``:
    rewrite ReLU lookup tables into ``PiecewiseLinear`` ops (``graph/fuse_lookup.py``)."""
    return graph_from_onnx(load_onnx(path), str(path), softmax=softmax, fuse_lookup=fuse_lookup)


def _is_perturbed(v: Value) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _static_shape(value_info: onnx.ValueInfoProto) -> tuple[int, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims)


def _tensor(arr: np.ndarray) -> Tensor:
    """Constant as a torch tensor: float64 for floating data, int64 for integers, bool kept."""
    arr = np.asarray(arr)
    if arr.dtype == np.bool_:
        return torch.from_numpy(arr.copy())
    if np.issubdtype(arr.dtype, np.floating):
        return torch.from_numpy(arr.astype(np.float64))
    return torch.from_numpy(arr.astype(np.int64))


class _NodeInfo:
    """One ONNX node during conversion: resolved inputs (None for empty optional ones) and attributes."""

    def __init__(self, proto: onnx.NodeProto, inputs: list[Value | None], opset: int):
        self.proto = proto
        self.op_type = proto.op_type
        self.name = proto.name or proto.output[0]
        self.inputs = inputs
        self.outputs = list(proto.output)
        self.opset = opset
        self.attrs: dict[str, Any] = {}
        for a in proto.attribute:
            v = helper.get_attribute_value(a)
            self.attrs[a.name] = v.decode() if isinstance(v, bytes) else v

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def input(self, i: int) -> Value | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def const_input(self, i: int, what: str) -> np.ndarray | None:
        """Input ``i`` as a constant (None if absent); a perturbed value is a ``ModelError``."""
        v = self.input(i)
        if v is None:
            return None
        if _is_perturbed(v):
            raise ModelError(f"node {self.name!r} ({self.op_type}): {what} depends on the network input; "
                             "only constant values are supported there")
        return np.asarray(v)


class _Builder:
    """Appends IR nodes, running each operator on a batch-1 probe to learn its output shape."""

    def __init__(self, input_name: str, input_shape: tuple[int, ...]):
        gen = torch.Generator().manual_seed(0)
        self.nodes: list[Node] = [Node(0, input_name, None, (), input_shape, "")]
        self.probes: list[Tensor] = [torch.rand((1, *input_shape), generator=gen, dtype=torch.float64) + 0.5]
        self.node: _NodeInfo | None = None
        self.softmax = "pairwise"  # the Softmax import form (SOFTMAX_FORMS)

    def shape(self, index: int) -> tuple[int, ...]:
        return self.nodes[index].shape

    def rank(self, v: Value) -> int:
        return len(self.shape(v)) if _is_perturbed(v) else np.ndim(v)

    def vshape(self, v: Value) -> tuple[int, ...]:
        return self.shape(v) if _is_perturbed(v) else tuple(np.shape(v))

    def add(self, op: Operator, inputs: Sequence[int], suffix: str = "", name: str | None = None) -> int:
        """Append ``op(inputs)``; named ``name`` or else ``<first onnx output>`` + ``suffix``."""
        assert self.node is not None
        with torch.no_grad():
            probe = op.forward(*(self.probes[i] for i in inputs))
        index = len(self.nodes)
        name = name if name is not None else self.node.outputs[0] + suffix
        self.nodes.append(Node(index, name, op, tuple(inputs), tuple(probe.shape[1:]), self.node.name))
        self.probes.append(probe)
        return index

    def reshape(self, x: int, shape: Sequence[int], suffix: str) -> int:
        if tuple(shape) == self.shape(x):
            return x
        return self.add(Reshape(shape), [x], suffix)

    def align_ranks(self, values: list[int], suffix: str) -> list[int]:
        """Give perturbed values a common ONNX rank (leading singleton dims, numpy broadcasting)."""
        rank = max(len(self.shape(v)) for v in values)
        out = []
        for k, v in enumerate(values):
            shape = self.shape(v)
            out.append(self.reshape(v, (1,) * (rank - len(shape)) + shape, f"{suffix}{k}"))
        return out


def _nonlinear(module: str, cls: str, *args: Any, **kwargs: Any) -> Operator:
    """Instantiate ``curvebound.ops.<module>.<cls>`` (imported lazily: written independently)."""
    try:
        mod = importlib.import_module(f"curvebound.ops.{module}")
        return getattr(mod, cls)(*args, **kwargs)
    except (ImportError, AttributeError) as exc:
        raise _Unsupported(f"curvebound.ops.{module}.{cls} is not available ({exc})") from exc


# --------------------------------------------------------------------------------------------
# converters: (builder, node) -> one value per ONNX output
# --------------------------------------------------------------------------------------------
Converter = Callable[[_Builder, _NodeInfo], list[Value]]
CONVERTERS: dict[str, Converter] = {}


def converter(*op_types: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for t in op_types:
            CONVERTERS[t] = fn
        return fn

    return register


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _scale_shift(b: _Builder, x: int, scale: np.ndarray | None, shift: np.ndarray | None,
                 suffix: str = "") -> int:
    shapes = [b.shape(x)] + [np.shape(c) for c in (scale, shift) if c is not None]
    out_rank = len(np.broadcast_shapes(*shapes))
    op = ScaleShift(None if scale is None else _tensor(scale), None if shift is None else _tensor(shift), out_rank)
    return b.add(op, [x], suffix)


@converter("Identity", "Dropout")
def _identity(b: _Builder, n: _NodeInfo) -> list[Value]:
    return [n.inputs[0]] + [UNKNOWN] * (len(n.outputs) - 1)


@converter("Cast")
def _cast(b: _Builder, n: _NodeInfo) -> list[Value]:
    to = n.attr("to")
    if to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                  onnx.TensorProto.BFLOAT16):
        raise _Unsupported("Cast of a perturbed value to a non-float type")
    return [n.inputs[0]]


@converter("Neg")
def _neg(b: _Builder, n: _NodeInfo) -> list[Value]:
    return [_scale_shift(b, n.inputs[0], np.array(-1.0), None)]


@converter("Add", "Sub", "Mul", "Div")
def _arith(b: _Builder, n: _NodeInfo) -> list[Value]:
    x, y = n.inputs[0], n.inputs[1]
    op = n.op_type
    if _is_perturbed(x) and _is_perturbed(y):
        if op in ("Add", "Sub"):
            out_rank = len(np.broadcast_shapes(b.shape(x), b.shape(y)))
            return [b.add(Add2(1.0 if op == "Add" else -1.0, out_rank), [x, y])]
        if op == "Mul" and x == y:  # x * x: the tight convex Square, not a McCormick product
            return [b.add(_nonlinear("convex", "Square"), [x])]
        if op == "Div":
            y = b.add(_nonlinear("convex", "Reciprocal"), [y], "/reciprocal")
        x, y = b.align_ranks([x, y], "/aligned")
        return [b.add(_nonlinear("bilinear", "Mul2"), [x, y])]
    if _is_perturbed(x):
        c = np.asarray(y, dtype=np.float64)
        if op == "Add":
            return [_scale_shift(b, x, None, c)]
        if op == "Sub":
            return [_scale_shift(b, x, None, -c)]
        if op == "Mul":
            return [_scale_shift(b, x, c, None)]
        return [_scale_shift(b, x, 1.0 / c, None)]
    c = np.asarray(x, dtype=np.float64)
    if op == "Add":
        return [_scale_shift(b, y, None, c)]
    if op == "Sub":
        return [_scale_shift(b, y, np.array(-1.0), c)]
    if op == "Mul":
        return [_scale_shift(b, y, c, None)]
    r = b.add(_nonlinear("convex", "Reciprocal"), [y], "/reciprocal")  # c / y is not affine
    return [_scale_shift(b, r, c, None)]


@converter("Gemm")
def _gemm(b: _Builder, n: _NodeInfo) -> list[Value]:
    a, w, c = n.inputs[0], n.inputs[1], n.input(2)
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    trans_a, trans_b = int(n.attr("transA", 0)), int(n.attr("transB", 0))
    bias = None if c is None else beta * np.asarray(c, dtype=np.float64)
    if _is_perturbed(c):
        raise _Unsupported("Gemm with a perturbed C")
    if _is_perturbed(a) and _is_perturbed(w):
        if trans_a:
            a = b.add(Transpose((1, 0)), [a], "/transA")
        if trans_b:
            w = b.add(Transpose((1, 0)), [w], "/transB")
        y = b.add(_nonlinear("bilinear", "MatMul2"), [a, w], "/matmul")
        return [_scale_shift(b, y, np.array(alpha), bias)]
    if _is_perturbed(a):
        if trans_a:
            a = b.add(Transpose((1, 0)), [a], "/transA")
        weight = np.asarray(w, dtype=np.float64)
        weight = alpha * (weight.T if trans_b else weight)
        return [b.add(MatMulConst(_tensor(weight), None if bias is None else _tensor(bias), "right", 2), [a])]
    if trans_b:
        w = b.add(Transpose((1, 0)), [w], "/transB")
    weight = np.asarray(a, dtype=np.float64)
    weight = alpha * (weight.T if trans_a else weight)
    return [b.add(MatMulConst(_tensor(weight), None if bias is None else _tensor(bias), "left", 2), [w])]


@converter("MatMul")
def _matmul(b: _Builder, n: _NodeInfo) -> list[Value]:
    x, y = n.inputs
    if _is_perturbed(x) and _is_perturbed(y):
        if b.rank(x) >= 2 and b.rank(y) >= 2:
            x, y = b.align_ranks([x, y], "/aligned")
        return [b.add(_nonlinear("bilinear", "MatMul2"), [x, y])]
    if _is_perturbed(x):
        return [b.add(MatMulConst(_tensor(np.asarray(y, dtype=np.float64)), None, "right", b.rank(x)), [x])]
    return [b.add(MatMulConst(_tensor(np.asarray(x, dtype=np.float64)), None, "left", b.rank(y)), [y])]


def _weight_input(n: _NodeInfo, i: int, what: str) -> np.ndarray | None:
    v = n.input(i)
    if v is None:
        return None
    if _is_perturbed(v):
        raise _Unsupported(f"{n.op_type} with a perturbed {what}")
    return np.asarray(v, dtype=np.float64)


@converter("Conv")
def _conv(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    weight = _weight_input(n, 1, "weight")
    bias = _weight_input(n, 2, "bias")
    if not _is_perturbed(x):
        raise _Unsupported("Conv with a constant input and perturbed weights")
    in_spatial = b.shape(x)[2:]
    k = len(in_spatial)
    if k not in (1, 2, 3):
        raise _Unsupported(f"{k}-D Conv")
    kernel = weight.shape[2:]
    strides = n.attr("strides", [1] * k)
    dilations = n.attr("dilations", [1] * k)
    pads = list(n.attr("pads", [0] * 2 * k))
    auto_pad = n.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * 2 * k
        for d in range(k):
            out = -(-in_spatial[d] // strides[d])
            total = max((out - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1 - in_spatial[d], 0)
            small = total // 2
            pads[d], pads[k + d] = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
    elif auto_pad == "VALID":
        pads = [0] * 2 * k
    op = Conv(_tensor(weight), None if bias is None else _tensor(bias), strides, pads, dilations,
              n.attr("group", 1))
    return [b.add(op, [x])]


@converter("ConvTranspose")
def _conv_transpose(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    weight = _weight_input(n, 1, "weight")
    bias = _weight_input(n, 2, "bias")
    if not _is_perturbed(x):
        raise _Unsupported("ConvTranspose with a constant input and perturbed weights")
    in_spatial = b.shape(x)[2:]
    k = len(in_spatial)
    if k not in (1, 2, 3):
        raise _Unsupported(f"{k}-D ConvTranspose")
    kernel = weight.shape[2:]
    strides = n.attr("strides", [1] * k)
    dilations = n.attr("dilations", [1] * k)
    output_padding = list(n.attr("output_padding", [0] * k))
    pads = list(n.attr("pads", [0] * 2 * k))
    auto_pad = n.attr("auto_pad", "NOTSET")
    output_shape = n.attr("output_shape")
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = list(output_shape)[-k:] if output_shape is not None else [i * s for i, s in zip(in_spatial, strides)]
        for d in range(k):
            full = strides[d] * (in_spatial[d] - 1) + output_padding[d] + (kernel[d] - 1) * dilations[d] + 1
            total = full - target[d]
            if total < 0:
                raise _Unsupported("ConvTranspose output_shape larger than the full output")
            small = total // 2
            pads[d], pads[k + d] = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
    elif auto_pad == "VALID":
        pads = [0] * 2 * k
    op = ConvTranspose(_tensor(weight), None if bias is None else _tensor(bias), strides, pads, dilations,
                       n.attr("group", 1), output_padding)
    return [b.add(op, [x])]


@converter("BatchNormalization")
def _batchnorm(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    if int(n.attr("training_mode", 0)):
        raise _Unsupported("BatchNormalization in training mode")
    gamma, beta, mean, var = (_weight_input(n, i, "parameter") for i in range(1, 5))
    eps = float(n.attr("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    trailing = (1,) * (b.rank(x) - 2)
    return [_scale_shift(b, x, scale.reshape(-1, *trailing), shift.reshape(-1, *trailing))]


@converter("Flatten")
def _flatten(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    shape = b.shape(x)
    axis = _axis(int(n.attr("axis", 1)), len(shape))
    return [b.reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])), "")]


@converter("Reshape")
def _reshape(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    target = [int(d) for d in n.const_input(1, "the target shape").reshape(-1)]
    shape = b.shape(x)
    allowzero = int(n.attr("allowzero", 0))
    resolved = [shape[i] if d == 0 and not allowzero else d for i, d in enumerate(target)]
    if -1 in resolved:
        known = math.prod(d for d in resolved if d != -1)
        resolved[resolved.index(-1)] = math.prod(shape) // max(known, 1)
    if math.prod(resolved) != math.prod(shape):
        raise ModelError(f"node {n.name!r} (Reshape): cannot reshape {shape} to {target}")
    return [b.reshape(x, resolved, "")]


def _axes_of(n: _NodeInfo, input_index: int) -> list[int] | None:
    """Axes from the attribute (older opsets) or the given input (newer)."""
    if "axes" in n.attrs:
        return [int(a) for a in n.attrs["axes"]]
    axes = n.const_input(input_index, "axes")
    return None if axes is None else [int(a) for a in axes.reshape(-1)]


@converter("Squeeze")
def _squeeze(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    shape = b.shape(x)
    axes = _axes_of(n, 1)
    drop = {i for i, d in enumerate(shape) if d == 1} if axes is None else {_axis(a, len(shape)) for a in axes}
    return [b.reshape(x, [d for i, d in enumerate(shape) if i not in drop], "")]


@converter("Unsqueeze")
def _unsqueeze(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    shape = list(b.shape(x))
    axes = _axes_of(n, 1) or []
    rank = len(shape) + len(axes)
    for a in sorted(_axis(a, rank) for a in axes):
        shape.insert(a, 1)
    return [b.reshape(x, shape, "")]


@converter("Transpose")
def _transpose(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    rank = b.rank(x)
    perm = n.attr("perm", list(reversed(range(rank))))
    if list(perm) == list(range(rank)):
        return [x]
    return [b.add(Transpose(perm), [x])]


@converter("Concat")
def _concat(b: _Builder, n: _NodeInfo) -> list[Value]:
    parts = [v for v in n.inputs if v is not None]
    rank = max(b.rank(v) for v in parts)
    axis = _axis(int(n.attr("axis")), rank)
    layout: list[int | None] = []
    constants: list[np.ndarray] = []
    inputs: list[int] = []
    for v in parts:
        if _is_perturbed(v):
            layout.append(None)
            inputs.append(v)
        else:
            arr = np.asarray(v, dtype=np.float64)
            if arr.shape[axis] == 0:
                continue
            layout.append(arr.shape[axis])
            constants.append(arr)
    if len(inputs) == 1 and not constants:
        return [inputs[0]]
    const = _tensor(np.concatenate(constants, axis=axis)) if constants else None
    return [b.add(Concat(axis, layout, const), inputs)]


@converter("Slice")
def _slice(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    shape = b.shape(x)
    if n.opset < 10:
        starts, ends = n.attr("starts"), n.attr("ends")
        axes = n.attr("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = [int(v) for v in n.const_input(1, "starts").reshape(-1)]
        ends = [int(v) for v in n.const_input(2, "ends").reshape(-1)]
        axes_arr = n.const_input(3, "axes")
        steps_arr = n.const_input(4, "steps")
        axes = list(range(len(starts))) if axes_arr is None else [int(v) for v in axes_arr.reshape(-1)]
        steps = [1] * len(starts) if steps_arr is None else [int(v) for v in steps_arr.reshape(-1)]
    op = Slice.from_onnx(shape, starts, ends, axes, steps)
    if all(s == (0, d, 1, False) for s, d in zip(op.slices, shape)):
        return [x]
    return [b.add(op, [x])]


@converter("Gather")
def _gather(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    indices = n.const_input(1, "the indices").astype(np.int64)
    shape = b.shape(x)
    axis = _axis(int(n.attr("axis", 0)), len(shape))
    indices = np.where(indices < 0, indices + shape[axis], indices)
    return [b.add(Gather(axis, _tensor(indices)), [x])]


@converter("Split")
def _split(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    shape = b.shape(x)
    axis = _axis(int(n.attr("axis", 0)), len(shape))
    count = len(n.outputs)
    if "split" in n.attrs:
        sizes = [int(s) for s in n.attrs["split"]]
    elif n.input(1) is not None:
        sizes = [int(s) for s in n.const_input(1, "split sizes").reshape(-1)]
    else:
        chunk = -(-shape[axis] // count)
        sizes = [min(chunk, shape[axis] - i * chunk) for i in range(count)]
    outputs: list[Value] = []
    start = 0
    for k, size in enumerate(sizes):
        op = Slice.from_onnx(shape, [start], [start + size], [axis], [1])
        outputs.append(b.add(op, [x], name=n.outputs[k]) if size != shape[axis] else x)
        start += size
    return outputs


@converter("Expand")
def _expand(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    target = [int(d) for d in n.const_input(1, "the target shape").reshape(-1)]
    shape = np.broadcast_shapes(b.shape(x), tuple(target))
    if tuple(shape) == b.shape(x):
        return [x]
    return [b.add(Expand(shape), [x])]


@converter("Pad")
def _pad(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    rank = b.rank(x)
    if n.attr("mode", "constant") != "constant":
        raise _Unsupported(f"Pad mode {n.attr('mode')!r}")
    if n.opset < 11:
        pads, value = list(n.attr("pads")), float(n.attr("value", 0.0))
    else:
        pads = [int(p) for p in n.const_input(1, "pads").reshape(-1)]
        v = n.const_input(2, "the pad value")
        value = 0.0 if v is None or v.size == 0 else float(v.reshape(-1)[0])
        axes_arr = n.const_input(3, "axes")
        if axes_arr is not None:
            axes = [_axis(int(a), rank) for a in axes_arr.reshape(-1)]
            full = [0] * 2 * rank
            for i, a in enumerate(axes):
                full[a], full[rank + a] = pads[i], pads[len(axes) + i]
            pads = full
    if not any(pads):
        return [x]
    return [b.add(Pad(pads, value), [x])]


def _nearest_is_repeat(size: int, scale: int, coordinate_mode: str, nearest_mode: str) -> bool:
    """Whether ONNX nearest resizing by the integer ``scale`` picks input ``o // scale`` for every output ``o``."""
    out = np.arange(size * scale, dtype=np.float64)
    if coordinate_mode in ("half_pixel", "pytorch_half_pixel"):
        orig = (out + 0.5) / scale - 0.5
    elif coordinate_mode == "asymmetric":
        orig = out / scale
    elif coordinate_mode == "tf_half_pixel_for_nn":
        orig = (out + 0.5) / scale
    elif coordinate_mode == "align_corners":
        orig = out * (size - 1) / max(size * scale - 1, 1)
    else:
        return False
    rounding = {
        "round_prefer_floor": lambda v: np.ceil(v - 0.5),
        "round_prefer_ceil": lambda v: np.floor(v + 0.5),
        "floor": np.floor,
        "ceil": np.ceil,
    }
    if nearest_mode not in rounding:
        return False
    picked = np.clip(rounding[nearest_mode](orig), 0, size - 1)
    return bool(np.array_equal(picked, out // scale))


@converter("Resize", "Upsample")
def _resize(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    shape = b.shape(x)
    if n.attr("mode", "nearest") != "nearest":
        raise _Unsupported(f"{n.op_type} mode {n.attr('mode')!r} (only nearest)")
    if n.op_type == "Upsample":
        scales = n.attr("scales") if "scales" in n.attrs else n.const_input(1, "scales").reshape(-1)
        coordinate_mode, nearest_mode = "asymmetric", "floor"
    else:
        if "axes" in n.attrs:
            raise _Unsupported("Resize with axes")
        coordinate_mode = n.attr("coordinate_transformation_mode", "half_pixel")
        nearest_mode = n.attr("nearest_mode", "round_prefer_floor")
        scales_index = 1 if n.opset < 11 else 2
        scales_arr = n.const_input(scales_index, "scales")
        sizes_arr = n.const_input(3, "sizes") if n.opset >= 11 else None
        if scales_arr is not None and scales_arr.size:
            scales = scales_arr.reshape(-1)
        elif sizes_arr is not None and sizes_arr.size:
            scales = sizes_arr.reshape(-1).astype(np.float64) / np.array(shape, dtype=np.float64)
        else:
            raise _Unsupported("Resize without scales or sizes")
    int_scales = [int(round(float(s))) for s in scales]
    if any(abs(float(s) - k) > 1e-9 or k < 1 for s, k in zip(scales, int_scales)):
        raise _Unsupported(f"{n.op_type} with non-integer scales {list(scales)}")
    for size, s in zip(shape, int_scales):
        if s > 1 and not _nearest_is_repeat(size, s, coordinate_mode, nearest_mode):
            raise _Unsupported(f"{n.op_type} nearest with {coordinate_mode}/{nearest_mode} is not a repeat")
    if all(s == 1 for s in int_scales):
        return [x]
    return [b.add(Upsample(int_scales), [x])]


@converter("ReduceSum", "ReduceMean")
def _reduce(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    rank = b.rank(x)
    axes = _axes_of(n, 1)
    keepdims = bool(n.attr("keepdims", 1))
    if not axes:
        if int(n.attr("noop_with_empty_axes", 0)):
            return [x]
        axes = list(range(rank))
    axes = sorted({_axis(a, rank) for a in axes})
    return [b.add(ReduceSum(axes, keepdims, mean=n.op_type == "ReduceMean"), [x])]


@converter("Where")
def _where(b: _Builder, n: _NodeInfo) -> list[Value]:
    cond = n.const_input(0, "the condition").astype(bool)
    a, c = n.inputs[1], n.inputs[2]
    out_rank = len(np.broadcast_shapes(cond.shape, b.vshape(a), b.vshape(c)))
    then_value = None if _is_perturbed(a) else _tensor(np.asarray(a, dtype=np.float64))
    else_value = None if _is_perturbed(c) else _tensor(np.asarray(c, dtype=np.float64))
    inputs = [v for v in (a, c) if _is_perturbed(v)]
    return [b.add(Where(_tensor(cond), then_value, else_value, out_rank), inputs)]


# ---- nonlinear ----------------------------------------------------------------------------

_UNARY: dict[str, tuple[str, str]] = {
    "Sigmoid": ("s_shaped", "Sigmoid"),
    "Tanh": ("s_shaped", "Tanh"),
    "Atan": ("s_shaped", "Atan"),
    "Erf": ("s_shaped", "Erf"),
    "Softsign": ("s_shaped", "Softsign"),
    "Sin": ("periodic", "Sin"),
    "Cos": ("periodic", "Cos"),
    "Exp": ("convex", "Exp"),
    "Log": ("convex", "Log"),
    "Reciprocal": ("convex", "Reciprocal"),
    "Sqrt": ("convex", "Sqrt"),
    "Abs": ("convex", "Abs"),
    "Softplus": ("convex", "Softplus"),
    "Floor": ("bilinear", "Floor"),
}


@converter(*_UNARY)
def _unary(b: _Builder, n: _NodeInfo) -> list[Value]:
    module, cls = _UNARY[n.op_type]
    return [b.add(_nonlinear(module, cls), [n.inputs[0]])]


@converter("Relu")
def _relu(b: _Builder, n: _NodeInfo) -> list[Value]:
    return [b.add(_nonlinear("relu", "Relu"), [n.inputs[0]])]


@converter("LeakyRelu")
def _leaky_relu(b: _Builder, n: _NodeInfo) -> list[Value]:
    return [b.add(_nonlinear("relu", "LeakyRelu", float(n.attr("alpha", 0.01))), [n.inputs[0]])]


@converter("Gelu")
def _gelu(b: _Builder, n: _NodeInfo) -> list[Value]:
    return [b.add(_nonlinear("gelu", "Gelu", approximate=n.attr("approximate", "none")), [n.inputs[0]])]


@converter("Elu")
def _elu(b: _Builder, n: _NodeInfo) -> list[Value]:
    return [b.add(_nonlinear("gelu", "Elu", float(n.attr("alpha", 1.0))), [n.inputs[0]])]


@converter("Selu")
def _selu(b: _Builder, n: _NodeInfo) -> list[Value]:
    alpha = float(n.attr("alpha", 1.67326319217681884765625))
    gamma = float(n.attr("gamma", 1.05070102214813232421875))
    return [b.add(_nonlinear("gelu", "Selu", alpha, gamma), [n.inputs[0]])]


@converter("Pow")
def _pow(b: _Builder, n: _NodeInfo) -> list[Value]:
    x, e = n.inputs
    if _is_perturbed(x) and not _is_perturbed(e):
        values = np.unique(np.asarray(e, dtype=np.float64))
        if values.size != 1:
            raise _Unsupported("Pow with a non-uniform exponent")
        c = float(values[0])
        if c == 1.0:
            return [x]
        op = _nonlinear("convex", "Square") if c == 2.0 else _nonlinear("convex", "Pow", c)
        return [b.add(op, [x])]
    if _is_perturbed(e) and not _is_perturbed(x):
        base = np.asarray(x, dtype=np.float64)
        if np.any(base <= 0):
            raise _Unsupported("Pow(c, x) with a non-positive base")
        scaled = _scale_shift(b, e, np.log(base), None, "/log_base")  # c^x = exp(x ln c)
        return [b.add(_nonlinear("convex", "Exp"), [scaled])]
    raise _Unsupported("Pow of two perturbed values")


@converter("Max", "Min")
def _max_min(b: _Builder, n: _NodeInfo) -> list[Value]:
    is_max = n.op_type == "Max"
    parts = [v for v in n.inputs if v is not None]
    perturbed = [v for v in parts if _is_perturbed(v)]
    consts = [np.asarray(v, dtype=np.float64) for v in parts if not _is_perturbed(v)]
    y = perturbed[0]
    for k, other in enumerate(perturbed[1:]):
        y, other = b.align_ranks([y, other], f"/aligned{k}_")
        last = k == len(perturbed) - 2 and not consts
        cls = "Max2" if is_max else "Min2"
        y = b.add(_nonlinear("bilinear", cls), [y, other], "" if last else f"/{cls.lower()}{k}")
    if consts:
        c = consts[0]
        for other in consts[1:]:
            c = np.maximum(c, other) if is_max else np.minimum(c, other)
        if is_max:  # max(y, c) = relu(y - c) + c
            d = _scale_shift(b, y, None, -c, "/minus_c")
            r = b.add(_nonlinear("relu", "Relu"), [d], "/relu")
            y = _scale_shift(b, r, None, c)
        else:  # min(y, c) = c - relu(c - y)
            d = _scale_shift(b, y, np.array(-1.0), c, "/c_minus")
            r = b.add(_nonlinear("relu", "Relu"), [d], "/relu")
            y = _scale_shift(b, r, np.array(-1.0), c)
    return [y]


@converter("Clip")
def _clip(b: _Builder, n: _NodeInfo) -> list[Value]:
    """``min(max(x, lo), hi)``; a missing bound is None (no clamp on that side)."""
    lo: float | None
    hi: float | None
    if n.opset < 11:
        lo, hi = n.attr("min"), n.attr("max")
        lo, hi = (None if lo is None else float(lo)), (None if hi is None else float(hi))
    else:
        lo_arr, hi_arr = n.const_input(1, "min"), n.const_input(2, "max")
        lo = None if lo_arr is None or lo_arr.size == 0 else float(lo_arr.reshape(-1)[0])
        hi = None if hi_arr is None or hi_arr.size == 0 else float(hi_arr.reshape(-1)[0])
    return [b.add(_nonlinear("bilinear", "Clip", lo, hi), [n.inputs[0]])]


@converter("Softmax")
def _softmax(b: _Builder, n: _NodeInfo) -> list[Value]:
    """``softmax_i = 1 / sum_j exp(x_j - x_i)``: PairwiseDifference, Exp, ReduceSum, Reciprocal; or,
    with ``softmax="exp_sum"``, ``exp(x_i) * 1 / sum_j exp(x_j)``: Exp, ReduceSum, Reciprocal, Mul2."""
    x = n.inputs[0]
    shape = b.shape(x)
    rank = len(shape)
    axis = _axis(int(n.attr("axis", 1 if n.opset < 13 else -1)), rank)
    original = None
    if n.opset < 13 and axis != rank - 1:  # old semantics: softmax over the flattened dims axis..end
        original = shape
        x = b.reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])), "/flat")
        axis, rank = 1, 2
    if b.softmax == "exp_sum":  # same layout as x: no move of the axis
        e = b.add(_nonlinear("convex", "Exp"), [x], "/exp")
        s = b.add(ReduceSum([axis], keepdims=True), [e], "/sum")
        r = b.add(_nonlinear("convex", "Reciprocal"), [s], "/reciprocal")
        y = b.add(_nonlinear("bilinear", "Mul2"), [e, r], "" if original is None else "/product")
        return [y] if original is None else [b.reshape(y, original, "")]
    last = original is None and axis == rank - 1
    d = b.add(PairwiseDifference(axis), [x], "/pairwise")
    e = b.add(_nonlinear("convex", "Exp"), [d], "/exp")
    s = b.add(ReduceSum([rank], keepdims=False), [e], "/sum")
    y = b.add(_nonlinear("convex", "Reciprocal"), [s], "" if last else "/reciprocal")
    if axis != rank - 1:
        perm = [p if p < axis else (rank - 1 if p == axis else p - 1) for p in range(rank)]
        y = b.add(Transpose(perm), [y], "" if original is None else "/moved")
    if original is not None:
        y = b.reshape(y, original, "")
    return [y]


@converter("LayerNormalization")
def _layer_norm(b: _Builder, n: _NodeInfo) -> list[Value]:
    """``(x - mean) * 1/sqrt(var + eps) * scale + bias`` over axes ``axis..end``."""
    x = n.inputs[0]
    rank = b.rank(x)
    axis = _axis(int(n.attr("axis", -1)), rank)
    eps = float(n.attr("epsilon", 1e-5))
    axes = list(range(axis, rank))
    scale = _weight_input(n, 1, "scale")
    bias = _weight_input(n, 2, "bias")
    centered = b.add(Center(axes), [x], "/centered")
    square = b.add(_nonlinear("convex", "Square"), [centered], "/square")
    var = b.add(ReduceSum(axes, keepdims=True, mean=True), [square], "/variance")
    var_eps = _scale_shift(b, var, None, np.array(eps), "/variance_eps")
    std = b.add(_nonlinear("convex", "Sqrt"), [var_eps], "/std")
    rstd = b.add(_nonlinear("convex", "Reciprocal"), [std], "/rstd")
    normalized = b.add(_nonlinear("bilinear", "Mul2"), [centered, rstd], "/normalized")
    return [_scale_shift(b, normalized, scale, bias)] + [UNKNOWN] * (len(n.outputs) - 1)


# ---- pooling and PRelu --------------------------------------------------------------------


@converter("PRelu")
def _prelu(b: _Builder, n: _NodeInfo) -> list[Value]:
    """``PRelu(x, slope)`` with a constant slope; a uniform slope in ``[0, 1)`` is a ``LeakyRelu``."""
    x = n.inputs[0]
    slope = _weight_input(n, 1, "slope")
    if slope.ndim > b.rank(x):
        raise _Unsupported(f"PRelu slope of rank {slope.ndim} above the input rank {b.rank(x)}")
    values = np.unique(slope)
    if values.size == 1 and 0.0 <= float(values[0]) < 1.0:
        return [b.add(_nonlinear("relu", "LeakyRelu", float(values[0])), [x])]
    return [b.add(_nonlinear("relu", "PRelu", _tensor(slope)), [x])]


def _pool_geometry(b: _Builder, n: _NodeInfo, x: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """``(kernel, strides, pads, dilations)`` of a MaxPool / AveragePool node, ``auto_pad`` resolved;
    ``ceil_mode = 1`` only where it gives the same output size as ``ceil_mode = 0``."""
    in_spatial = b.shape(x)[2:]
    kernel = [int(k) for k in n.attr("kernel_shape")]
    k = len(kernel)
    if k not in (1, 2, 3) or len(in_spatial) != k:
        raise _Unsupported(f"{k}-D {n.op_type} on an input of shape {b.shape(x)}")
    strides = [int(s) for s in n.attr("strides", [1] * k)]
    dilations = [int(d) for d in n.attr("dilations", [1] * k)]
    pads = [int(p) for p in n.attr("pads", [0] * 2 * k)]
    spans = [(kk - 1) * d + 1 for kk, d in zip(kernel, dilations)]
    auto_pad = n.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * 2 * k
        for d in range(k):
            out = -(-in_spatial[d] // strides[d])
            total = max((out - 1) * strides[d] + spans[d] - in_spatial[d], 0)
            small = total // 2
            pads[d], pads[k + d] = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
    elif auto_pad == "VALID":
        pads = [0] * 2 * k
    if int(n.attr("ceil_mode", 0)):
        for d in range(k):
            extent = in_spatial[d] + pads[d] + pads[k + d] - spans[d]
            if extent % strides[d]:
                raise _Unsupported(f"{n.op_type} with ceil_mode=1 adding a partial window")
    return kernel, strides, pads, dilations


@converter("AveragePool")
def _average_pool(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    kernel, strides, pads, dilations = _pool_geometry(b, n, x)
    if any(d != 1 for d in dilations):
        raise _Unsupported("AveragePool with dilations")
    op = _nonlinear("linear", "AveragePool", kernel, strides, pads, bool(n.attr("count_include_pad", 0)))
    return [b.add(op, [x])]


@converter("GlobalAveragePool")
def _global_average_pool(b: _Builder, n: _NodeInfo) -> list[Value]:
    return [b.add(_nonlinear("linear", "GlobalAveragePool"), [n.inputs[0]])]


@converter("MaxPool")
def _max_pool(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    kernel, strides, pads, dilations = _pool_geometry(b, n, x)
    op = _nonlinear("pooling", "MaxPool", kernel, strides, pads, dilations)
    return [b.add(op, [x])] + [UNKNOWN] * (len(n.outputs) - 1)  # the optional Indices output


@converter("GlobalMaxPool")
def _global_max_pool(b: _Builder, n: _NodeInfo) -> list[Value]:
    x = n.inputs[0]
    return [b.add(_nonlinear("pooling", "ReduceMax", list(range(2, b.rank(x))), True), [x])]


@converter("ReduceMax")
def _reduce_max(b: _Builder, n: _NodeInfo) -> list[Value]:
    """Axes from the attribute (opset < 18) or the second input (opset 18); ``keepdims`` default 1."""
    x = n.inputs[0]
    rank = b.rank(x)
    axes = _axes_of(n, 1)
    if not axes:
        if int(n.attr("noop_with_empty_axes", 0)):
            return [x]
        axes = list(range(rank))
    axes = sorted({_axis(a, rank) for a in axes})
    return [b.add(_nonlinear("pooling", "ReduceMax", axes, bool(n.attr("keepdims", 1))), [x])]


# --------------------------------------------------------------------------------------------
# pattern rewrites: decomposed activations -> one tight operator
# --------------------------------------------------------------------------------------------
_FUSED_SILU = "curvebound.Silu"  # internal op type of a fused x * sigmoid(x)


def _fuse_patterns(g: onnx.GraphProto) -> tuple[list[onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    """Rewrite ``x * Sigmoid(x)`` to one SiLU node and the erf GELU ``x * 0.5 * (1 + erf(x / sqrt 2))``
    (any order of the two products, ``/ sqrt 2`` or ``* (1/sqrt 2)``) to one ONNX ``Gelu`` node.

    A pattern is fused only when each of its intermediate tensors feeds exactly the next node of the
    pattern (no other consumer, not a graph output). Returns the new node list and, per fused node's
    output, the original nodes (used to constant-fold a fused node whose input is constant)."""
    nodes = list(g.node)
    consumers: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            if name:
                consumers[name] = consumers.get(name, 0) + 1
    for out in g.output:
        consumers[out.name] = consumers.get(out.name, 0) + 2  # a graph output is never private
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    constants = {init.name: numpy_helper.to_array(init) for init in g.initializer}
    for node in nodes:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def scalar(name: str) -> float | None:
        v = constants.get(name)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None

    def private(name: str) -> bool:
        return consumers.get(name, 0) == 1

    def made_by(name: str, op_type: str) -> int | None:
        i = producer.get(name)
        return i if i is not None and nodes[i].op_type == op_type else None

    def other(node: onnx.NodeProto, name: str) -> str | None:
        ins = list(node.input)
        if len(ins) != 2 or name not in ins:
            return None
        return ins[1] if ins[0] == name else ins[0]

    def near(v: float | None, target: float) -> bool:
        return v is not None and abs(v - target) <= 1e-6 * abs(target)

    removed: set[int] = set()
    replaced: dict[int, onnx.NodeProto] = {}
    expansions: dict[str, list[onnx.NodeProto]] = {}

    def fuse(last: int, parts: list[int], op_type: str, x: str, **attrs: Any) -> None:
        if any(p in removed or p in replaced for p in parts + [last]):
            return
        fused = helper.make_node(op_type, [x], [nodes[last].output[0]], name=nodes[last].name or None, **attrs)
        expansions[nodes[last].output[0]] = [nodes[i] for i in sorted(parts + [last])]
        removed.update(parts)
        replaced[last] = fused

    for i, node in enumerate(nodes):
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        for s_name in node.input:  # SiLU: Mul(x, Sigmoid(x))
            s = made_by(s_name, "Sigmoid")
            if s is not None and private(s_name) and other(node, s_name) == nodes[s].input[0]:
                fuse(i, [s], _FUSED_SILU, nodes[s].input[0])
                break
        if i in replaced:
            continue
        match = _match_gelu(nodes, i, made_by, private, other, scalar, near)
        if match is not None:
            x, parts = match
            fuse(i, parts, "Gelu", x)
    new_nodes = [replaced.get(i, node) for i, node in enumerate(nodes) if i not in removed]
    return new_nodes, expansions


def _match_gelu(nodes: list[onnx.NodeProto], last: int, made_by: Callable, private: Callable, other: Callable,
                scalar: Callable, near: Callable) -> tuple[str, list[int]] | None:
    """If ``nodes[last]`` (a Mul) ends an erf GELU, return ``(x, indices of the other pattern nodes)``.

    Accepted endings, with ``t = 1 + erf(x / sqrt 2)`` (Add in either order, a private chain):
    ``(x * t) * 0.5``, ``(x * 0.5) * t``, ``x * (t * 0.5)``."""

    def one_plus_erf(name: str) -> tuple[str, list[int]] | None:
        a = made_by(name, "Add")
        if a is None or not private(name):
            return None
        for erf_name in nodes[a].input:
            e = made_by(erf_name, "Erf")
            if e is None or not private(erf_name) or not near(scalar(other(nodes[a], erf_name) or ""), 1.0):
                continue
            scaled = nodes[e].input[0]
            if not private(scaled):
                continue
            d = made_by(scaled, "Div")
            if d is not None and near(scalar(nodes[d].input[1]), math.sqrt(2.0)):
                return nodes[d].input[0], [a, e, d]
            m = made_by(scaled, "Mul")
            if m is not None:
                for x in nodes[m].input:
                    if near(scalar(other(nodes[m], x) or ""), 1.0 / math.sqrt(2.0)):
                        return x, [a, e, m]
        return None

    node = nodes[last]
    for name in node.input:
        partner = other(node, name)
        if partner is None:
            return None
        # (x * t) * 0.5
        if near(scalar(partner), 0.5):
            m = made_by(name, "Mul")
            if m is not None and private(name):
                for t_name in nodes[m].input:
                    found = one_plus_erf(t_name)
                    if found is not None and other(nodes[m], t_name) == found[0]:
                        return found[0], found[1] + [m]
        # (x * 0.5) * t  and  x * (t * 0.5)
        found = one_plus_erf(name)
        if found is not None:
            h = made_by(partner, "Mul")
            if h is not None and private(partner) and found[0] in nodes[h].input and near(
                scalar(other(nodes[h], found[0]) or ""), 0.5
            ):
                return found[0], found[1] + [h]
        h = made_by(name, "Mul")
        if h is not None and private(name):
            for t_name in nodes[h].input:
                found = one_plus_erf(t_name)
                if found is not None and near(scalar(other(nodes[h], t_name) or ""), 0.5) and partner == found[0]:
                    return found[0], found[1] + [h]
    return None


@converter(_FUSED_SILU)
def _silu(b: _Builder, n: _NodeInfo) -> list[Value]:
    """``x * sigmoid(x)`` matched by :func:`_fuse_patterns`."""
    return [b.add(_nonlinear("gelu", "Silu"), [n.inputs[0]])]


# ---- recurrent layers (unrolled over the static sequence length) ---------------------------


class _Recurrent:
    """Shared unrolling of ONNX LSTM / GRU (layout 0, default activations, no clip).

    Values are ONNX ``X [seq, batch, in]``, ``W [dirs, gates*H, in]``, ``R [dirs, gates*H, H]``,
    ``B [dirs, 2*gates*H]``, states ``[dirs, batch, H]``; a state is a constant (numpy ``[batch, H]``)
    until the first step makes it perturbed (IR node ``[batch, H]``)."""

    def __init__(self, b: _Builder, n: _NodeInfo, gates: int, default_activations: list[str]):
        self.b, self.n = b, n
        x = n.inputs[0]
        if not _is_perturbed(x):
            raise _Unsupported(f"{n.op_type} with a constant input")
        if int(n.attr("layout", 0)) != 0:
            raise _Unsupported(f"{n.op_type} with layout=1")
        if n.attr("clip") is not None:
            raise _Unsupported(f"{n.op_type} with clip")
        if int(n.attr("input_forget", 0)):
            raise _Unsupported("LSTM with input_forget")
        self.direction = n.attr("direction", "forward")
        self.dirs = 2 if self.direction == "bidirectional" else 1
        activations = n.attr("activations")
        if activations is not None and [str(a).lower() for a in activations] != [
            a.lower() for a in default_activations * self.dirs
        ]:
            raise _Unsupported(f"{n.op_type} with activations {list(activations)}")
        if n.attr("activation_alpha") is not None or n.attr("activation_beta") is not None:
            raise _Unsupported(f"{n.op_type} with activation_alpha/beta")
        self.x = x
        self.seq, self.batch, _ = b.shape(x)
        self.W = _weight_input(n, 1, "W")
        self.R = _weight_input(n, 2, "R")
        self.hidden = int(self.R.shape[-1])
        bias = _weight_input(n, 3, "B")
        self.B = np.zeros((self.dirs, 2 * gates * self.hidden)) if bias is None else bias
        lens = n.const_input(4, "sequence_lens")
        if lens is not None and lens.size and np.any(lens.reshape(-1) != self.seq):
            raise _Unsupported(f"{n.op_type} with sequence_lens shorter than the sequence")

    def initial(self, i: int, d: int) -> np.ndarray:
        """Initial state input ``i`` of direction ``d`` as a constant ``[batch, H]`` (zeros if absent)."""
        v = self.n.input(i)
        if v is None:
            return np.zeros((self.batch, self.hidden))
        if _is_perturbed(v):
            raise _Unsupported(f"{self.n.op_type} with a perturbed initial state")
        return np.broadcast_to(np.asarray(v, dtype=np.float64), (self.dirs, self.batch, self.hidden))[d]

    def input_gates(self, d: int, extra_bias: np.ndarray) -> int:
        """``X W_d^T + Wb_d + extra_bias`` for all steps at once: ``[seq, batch, gates*H]``."""
        bias = self.B[d, : self.W.shape[1]] + extra_bias
        return self.b.add(MatMulConst(_tensor(self.W[d].T), _tensor(bias), "right", 3), [self.x], f"/d{d}/xw")

    def step_input(self, xw: int, t: int, tag: str) -> int:
        """Row ``t`` of ``[seq, batch, G]`` as ``[batch, G]``."""
        s = self.b.add(Slice.from_onnx(self.b.shape(xw), [t], [t + 1], [0], [1]), [xw], f"{tag}/x")
        return self.b.reshape(s, self.b.shape(s)[1:], f"{tag}/x2d")

    def gate(self, v: int, k: int, tag: str) -> int:
        """Gate ``k`` (columns ``k*H:(k+1)*H``) of ``[batch, G]``."""
        h = self.hidden
        return self.b.add(Slice.from_onnx(self.b.shape(v), [k * h], [(k + 1) * h], [1], [1]), [v], tag)

    def plus_state(self, xg: int, state: Value, weight: np.ndarray, bias: np.ndarray | None, tag: str) -> int:
        """``xg + state @ weight (+ bias)`` for a constant or perturbed state ``[batch, H]``."""
        if not _is_perturbed(state):
            shift = np.asarray(state) @ weight + (0.0 if bias is None else bias)
            return _scale_shift(self.b, xg, None, shift, tag)
        hw = self.b.add(MatMulConst(_tensor(weight), None if bias is None else _tensor(bias), "right", 2), [state],
                        f"{tag}/hr")
        return self.b.add(Add2(1.0, 2), [xg, hw], tag)

    def mul(self, gate: int, other: Value, tag: str) -> int:
        """``gate * other`` for a perturbed gate and a constant or perturbed ``other``."""
        if not _is_perturbed(other):
            return _scale_shift(self.b, gate, np.asarray(other), None, tag)
        return self.b.add(_nonlinear("bilinear", "Mul2"), [gate, other], tag)

    def act(self, v: int, cls: str, tag: str) -> int:
        return self.b.add(_nonlinear("s_shaped", cls), [v], tag)

    def steps(self, d: int) -> list[int]:
        reverse = self.direction == "reverse" or d == 1
        return list(range(self.seq - 1, -1, -1)) if reverse else list(range(self.seq))

    def stack(self, per_dir: list[dict[int, int]]) -> int:
        """``Y [seq, dirs, batch, H]`` from the hidden state of every (direction, step)."""
        b = self.b
        pieces = []
        for t in range(self.seq):
            dirs = [b.reshape(per_dir[d][t], (1, 1, self.batch, self.hidden), f"/Y/{t}_{d}") for d in range(self.dirs)]
            pieces.append(dirs[0] if len(dirs) == 1 else b.add(Concat(1, [None] * len(dirs)), dirs, f"/Y/{t}"))
        if len(pieces) == 1:
            return pieces[0]
        return b.add(Concat(0, [None] * len(pieces)), pieces, "", name=self.n.outputs[0])

    def final(self, states: list[int]) -> int:
        """``[dirs, batch, H]`` from the last state of each direction."""
        parts = [self.b.reshape(s, (1, self.batch, self.hidden), f"/last{d}") for d, s in enumerate(states)]
        if len(parts) == 1:
            return parts[0]
        return self.b.add(Concat(0, [None, None]), parts, "/last")


@converter("LSTM")
def _lstm(b: _Builder, n: _NodeInfo) -> list[Value]:
    """ONNX LSTM (gate order i, o, f, c): ``i, o, f = sigmoid(.)``, ``c~ = tanh(.)``,
    ``C_t = f C_{t-1} + i c~``, ``H_t = o tanh(C_t)``, unrolled into affine, S-shaped and Mul2 nodes."""
    if n.input(7) is not None:
        raise _Unsupported("LSTM with peepholes")
    r = _Recurrent(b, n, 4, ["Sigmoid", "Tanh", "Tanh"])
    hidden_states, cell_states, ys = [], [], []
    h4 = 4 * r.hidden
    for d in range(r.dirs):
        xw = r.input_gates(d, r.B[d, h4:])
        h: Value = r.initial(5, d)
        c: Value = r.initial(6, d)
        ys.append({})
        for t in r.steps(d):
            tag = f"/d{d}/t{t}"
            pre = r.plus_state(r.step_input(xw, t, tag), h, r.R[d].T, None, f"{tag}/gates")
            i = r.act(r.gate(pre, 0, f"{tag}/i_pre"), "Sigmoid", f"{tag}/i")
            o = r.act(r.gate(pre, 1, f"{tag}/o_pre"), "Sigmoid", f"{tag}/o")
            f = r.act(r.gate(pre, 2, f"{tag}/f_pre"), "Sigmoid", f"{tag}/f")
            cand = r.act(r.gate(pre, 3, f"{tag}/c_pre"), "Tanh", f"{tag}/c_cand")
            new_c = r.mul(i, cand, f"{tag}/ic")
            if _is_perturbed(c) or np.any(np.asarray(c) != 0):
                new_c = b.add(Add2(1.0, 2), [r.mul(f, c, f"{tag}/fc"), new_c], f"{tag}/c")
            c = new_c
            h = r.mul(o, r.act(c, "Tanh", f"{tag}/tanh_c"), f"{tag}/h")
            ys[d][t] = h
        hidden_states.append(h)
        cell_states.append(c)
    outputs: list[Value] = [r.stack(ys), r.final(hidden_states), r.final(cell_states)]
    return outputs[: len(n.outputs)]


@converter("GRU")
def _gru(b: _Builder, n: _NodeInfo) -> list[Value]:
    """ONNX GRU (gate order z, r, h): ``z, r = sigmoid(.)``; ``h~ = tanh(X W_h + r (H R_h + Rb_h) + Wb_h)``
    (linear_before_reset=1) or ``tanh(X W_h + (r H) R_h + Rb_h + Wb_h)`` (=0); ``H_t = h~ + z (H_{t-1} - h~)``."""
    r = _Recurrent(b, n, 3, ["Sigmoid", "Tanh"])
    before_reset = int(n.attr("linear_before_reset", 0))
    hid = r.hidden
    states, ys = [], []
    for d in range(r.dirs):
        rb = r.B[d, 3 * hid:]
        xw = r.input_gates(d, np.concatenate([rb[: 2 * hid], np.zeros(hid) if before_reset else rb[2 * hid:]]))
        R = r.R[d]
        h: Value = r.initial(5, d)
        ys.append({})
        for t in r.steps(d):
            tag = f"/d{d}/t{t}"
            xt = r.step_input(xw, t, tag)
            zr_x = b.add(Slice.from_onnx(b.shape(xt), [0], [2 * hid], [1], [1]), [xt], f"{tag}/zr_x")
            zr = r.plus_state(zr_x, h, R[: 2 * hid].T, None, f"{tag}/zr_pre")
            z = r.act(r.gate(zr, 0, f"{tag}/z_pre"), "Sigmoid", f"{tag}/z")
            reset = r.act(r.gate(zr, 1, f"{tag}/r_pre"), "Sigmoid", f"{tag}/r")
            h_x = r.gate(xt, 2, f"{tag}/h_x")
            if before_reset:
                if _is_perturbed(h):
                    hr = b.add(MatMulConst(_tensor(R[2 * hid:].T), _tensor(rb[2 * hid:]), "right", 2), [h], f"{tag}/hr")
                    gated = r.mul(reset, hr, f"{tag}/r_hr")
                else:
                    gated = r.mul(reset, np.asarray(h) @ R[2 * hid:].T + rb[2 * hid:], f"{tag}/r_hr")
                cand_pre = b.add(Add2(1.0, 2), [h_x, gated], f"{tag}/h_pre")
            else:
                if _is_perturbed(h):
                    rh = r.mul(reset, h, f"{tag}/rh")
                    cand_pre = r.plus_state(h_x, rh, R[2 * hid:].T, None, f"{tag}/h_pre")
                else:
                    rh = r.mul(reset, h, f"{tag}/rh")  # constant h: affine in r
                    hr = b.add(MatMulConst(_tensor(R[2 * hid:].T), None, "right", 2), [rh], f"{tag}/rh_r")
                    cand_pre = b.add(Add2(1.0, 2), [h_x, hr], f"{tag}/h_pre")
            cand = r.act(cand_pre, "Tanh", f"{tag}/h_cand")
            if _is_perturbed(h):
                diff = b.add(Add2(-1.0, 2), [h, cand], f"{tag}/h_minus_cand")
                h = b.add(Add2(1.0, 2), [cand, r.mul(z, diff, f"{tag}/z_diff")], f"{tag}/h")
            else:  # h_prev constant: z (h_prev - cand) needs Mul2 of z and (h_prev - cand)
                diff = _scale_shift(b, cand, np.array(-1.0), np.asarray(h), f"{tag}/h_minus_cand")
                h = b.add(Add2(1.0, 2), [cand, r.mul(z, diff, f"{tag}/z_diff")], f"{tag}/h")
            ys[d][t] = h
        states.append(h)
    outputs: list[Value] = [r.stack(ys), r.final(states)]
    return outputs[: len(n.outputs)]


# --------------------------------------------------------------------------------------------
# the import
# --------------------------------------------------------------------------------------------


def _fold(proto: onnx.NodeProto, inputs: list[Value | None], opsets: dict[str, int],
          expansion: list[onnx.NodeProto] | None = None, values: dict[str, Value] | None = None) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constant. A fused node (see :func:`_fuse_patterns`) is
    evaluated through its original nodes ``expansion``, reading their other inputs from ``values``."""
    from onnx.reference import ReferenceEvaluator

    feeds = {name: np.asarray(v) for name, v in zip(proto.input, inputs) if name}
    body = [proto]
    if expansion is not None and values is not None:
        body = expansion
        made = {name for node in expansion for name in node.output}
        for node in expansion:
            for name in node.input:
                if name and name not in made and name not in feeds:
                    feeds[name] = np.asarray(values[name])
    graph = helper.make_graph(
        body, "fold",
        [helper.make_empty_tensor_value_info(name) for name in feeds],
        [helper.make_empty_tensor_value_info(name) for name in proto.output if name],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    evaluator = ReferenceEvaluator(model)
    return [np.asarray(v) for v in evaluator.run(None, feeds)]


def graph_from_onnx(model: onnx.ModelProto, source: str, softmax: str = "pairwise", fuse_lookup: bool = True) -> Graph:
    """Convert a loaded ONNX model to the IR (see the module docstring); ``softmax``: SOFTMAX_FORMS."""
    if softmax not in SOFTMAX_FORMS:
        raise ValueError(f"softmax form {softmax!r}: use one of {SOFTMAX_FORMS}")
    g = model.graph
    opsets = {o.domain or "": o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 13))
    values: dict[str, Value] = {init.name: numpy_helper.to_array(init) for init in g.initializer}
    real_inputs = [i for i in g.input if i.name not in values]
    if len(real_inputs) != 1:
        names = [i.name for i in real_inputs]
        raise ModelError(f"{source}: expected exactly one (perturbed) graph input, found {len(names)}: {names}")
    if len(g.output) != 1:
        raise ModelError(f"{source}: expected exactly one graph output, found {len(g.output)}")
    inp = real_inputs[0]
    builder = _Builder(inp.name, _static_shape(inp))
    builder.softmax = softmax
    values[inp.name] = 0
    unsupported: list[tuple[str, str]] = []

    fused_nodes, expansions = _fuse_patterns(g)
    for proto in fused_nodes:
        name = proto.name or proto.output[0]
        try:
            inputs = [values[i] if i else None for i in proto.input]
        except KeyError as exc:
            raise ModelError(f"{source}: node {name!r} ({proto.op_type}) reads undefined tensor {exc}") from exc
        present = [v for v in inputs if v is not None]
        if any(v is UNKNOWN for v in present):
            if proto.op_type not in CONVERTERS and proto.op_type != "Shape":
                unsupported.append((proto.op_type, name))
            outputs: list[Value] = [UNKNOWN] * len(proto.output)
        elif not any(_is_perturbed(v) for v in present):
            try:
                outputs = list(_fold(proto, inputs, opsets, expansions.get(proto.output[0]), values))
            except Exception as exc:
                raise ModelError(f"{source}: cannot evaluate constant node {name!r} ({proto.op_type}): {exc}") from exc
        elif proto.op_type in ("Shape", "Size"):
            shape = builder.shape(inputs[0])
            if proto.op_type == "Size":
                outputs = [np.array(math.prod(shape), dtype=np.int64)]
            else:
                info = _NodeInfo(proto, inputs, opset)
                start, end = info.attr("start", 0), info.attr("end", len(shape))
                outputs = [np.array(shape[start:end], dtype=np.int64)]
        elif proto.op_type not in CONVERTERS:
            unsupported.append((proto.op_type, name))
            outputs = [UNKNOWN] * len(proto.output)
        else:
            info = _NodeInfo(proto, inputs, opset)
            builder.node = info
            try:
                outputs = CONVERTERS[proto.op_type](builder, info)
            except _Unsupported as exc:
                logger.info("%s: node %r (%s) unsupported: %s", source, name, proto.op_type, exc)
                unsupported.append((proto.op_type, name))
                outputs = [UNKNOWN] * len(proto.output)
            except ModelError as exc:
                raise ModelError(f"{source}: {exc}") from exc
        for out_name, v in zip(proto.output, outputs):
            if out_name:
                values[out_name] = v

    if unsupported:
        raise UnsupportedOperatorsError(source, unsupported)
    out_name = g.output[0].name
    if out_name not in values:
        raise ModelError(f"{source}: graph output {out_name!r} is never computed")
    output = values[out_name]
    if not _is_perturbed(output):
        raise ModelError(f"{source}: graph output {out_name!r} does not depend on the input {inp.name!r}")
    graph = prune(builder.nodes, output, inp.name, out_name, source)
    return fuse_lookup_tables(graph) if fuse_lookup else graph


