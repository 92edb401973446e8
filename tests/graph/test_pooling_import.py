"""ONNX import of PRelu, AveragePool, GlobalAveragePool, MaxPool, GlobalMaxPool and ReduceMax: forward
against onnxruntime, and whole-network IBP / CROWN bounds that contain sampled outputs."""

from __future__ import annotations

import collections
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.bounds.ibp import ibp
from curvebound.graph.onnx_import import graph_from_onnx
from curvebound.ops.base import Interval

RNG = np.random.default_rng(5)
F64 = torch.float64


def _w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.7).astype(np.float32)


def _model(nodes, input_shape, inits=(), opset: int = 13) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "pooling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f"
                                                        else np.int64), k) for k, v in dict(inits).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _kinds(graph) -> collections.Counter:
    return collections.Counter(node.op.kind for node in graph.nodes[1:])


def _check(model: onnx.ModelProto, n_points: int = 3):
    """Forward of the imported graph equals onnxruntime's at random points (rtol 1e-5)."""
    graph = graph_from_onnx(model, "test.onnx")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for _ in range(n_points):
        x = RNG.uniform(-2, 2, size=graph.input_shape).astype(np.float32)
        ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        ours = graph.forward(torch.from_numpy(x).double()[None])[0].numpy()
        assert ours.shape == ref.shape, (ours.shape, ref.shape)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * max(float(np.abs(ref).max()), 1e-6))
    return graph


def _node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"{op}_{outputs[0]}", **attrs)


# ---------------------------------------------------------------- single converters


@pytest.mark.parametrize("slope,kind", [
    (np.array([-0.5, 0.3, 2.0], dtype=np.float32).reshape(3, 1, 1), "PRelu"),
    (np.array([1.5], dtype=np.float32), "PRelu"),
    (np.array([0.25], dtype=np.float32), "LeakyRelu"),  # uniform slope in [0, 1)
    (np.full((4,), -0.2, dtype=np.float32), "PRelu"),  # per last-dim slope
])
def test_prelu(slope, kind):
    graph = _check(_model([_node("PRelu", ["x", "s"])], (1, 3, 2, 4), {"s": slope}))
    assert _kinds(graph)[kind] == 1


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1),
    dict(kernel_shape=[3, 2], strides=[2, 1], pads=[0, 1, 2, 0]),
    dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
])
def test_average_pool(attrs):
    graph = _check(_model([_node("AveragePool", ["x"], **attrs)], (1, 2, 5, 6)))
    assert _kinds(graph)["AveragePool"] == 1


def test_global_average_pool():
    graph = _check(_model([_node("GlobalAveragePool", ["x"])], (1, 3, 4, 5)))
    assert graph.output_shape == (1, 3, 1, 1)


@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[2, 3], strides=[1, 2], pads=[1, 0, 0, 1], dilations=[2, 1]),
    dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),  # 6x6: the same windows as ceil_mode=0
])
def test_max_pool(attrs):
    graph = _check(_model([_node("MaxPool", ["x"], **attrs)], (1, 2, 6, 6)))
    assert _kinds(graph)["MaxPool"] == 1


def test_max_pool_1d_and_global_max_pool():
    _check(_model([_node("MaxPool", ["x"], kernel_shape=[3], strides=[2], pads=[1, 1])], (1, 2, 9)))
    graph = _check(_model([_node("GlobalMaxPool", ["x"])], (1, 3, 4, 5)))
    assert graph.output_shape == (1, 3, 1, 1) and _kinds(graph)["ReduceMax"] == 1


@pytest.mark.parametrize("opset,keepdims,axes", [(13, 1, [2]), (13, 0, [1, -1]), (18, 0, [3]), (18, 1, [0, 2])])
def test_reduce_max(opset, keepdims, axes):
    if opset >= 18:
        node = _node("ReduceMax", ["x", "axes"], keepdims=keepdims)
        model = _model([node], (1, 3, 4, 5), {"axes": np.array(axes, dtype=np.int64)}, opset=opset)
    else:
        model = _model([_node("ReduceMax", ["x"], keepdims=keepdims, axes=axes)], (1, 3, 4, 5), opset=opset)
    graph = _check(model)
    assert _kinds(graph)["ReduceMax"] == 1


def test_torch_exported_prelu_and_pools():
    """``torch.onnx.export(dynamo=False)`` of PReLU (per channel and shared), MaxPool2d, AvgPool2d."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.PReLU(3), torch.nn.MaxPool2d(3, 1, 1),
        torch.nn.AvgPool2d(2, 2), torch.nn.PReLU(), torch.nn.MaxPool2d(2, 2),
        torch.nn.Flatten(), torch.nn.Linear(3, 2),
    ).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([-0.5, 0.1, 1.7]))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.float(), torch.zeros(1, 2, 4, 4), buf, dynamo=False, input_names=["x"])
    model = onnx.load_from_string(buf.getvalue())
    assert {"PRelu", "MaxPool", "AveragePool"} <= {n.op_type for n in model.graph.node}
    graph = _check(model)
    assert _kinds(graph)["PRelu"] == 1 and _kinds(graph)["LeakyRelu"] == 1 and _kinds(graph)["MaxPool"] == 2


# ---------------------------------------------------------------- whole-network bounds


def _conv_pool_net() -> onnx.ModelProto:
    """Conv -> PRelu (slopes -0.5, 0.3, 2) -> MaxPool 3x3/1 pad 1 -> Conv -> MaxPool 2x2/2 ->
    AveragePool 2x2/1 pad 1 -> Flatten -> Gemm: input [1, 2, 6, 6], output [1, 4]."""
    nodes = [
        _node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        _node("PRelu", ["c1", "s1"], ["p1"]),
        _node("MaxPool", ["p1"], ["m1"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        _node("Conv", ["m1", "w2", "b2"], ["c2"]),
        _node("MaxPool", ["c2"], ["m2"], kernel_shape=[2, 2], strides=[2, 2]),
        _node("AveragePool", ["m2"], ["a2"], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 1, 1]),
        _node("Flatten", ["a2"], ["f"]),
        _node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    inits = {"w1": _w(3, 2, 3, 3), "b1": _w(3), "s1": np.array([-0.5, 0.3, 2.0]).reshape(3, 1, 1),
             "w2": _w(4, 3, 3, 3), "b2": _w(4), "w3": _w(4, 4 * 3 * 3), "b3": _w(4)}
    return _model(nodes, (1, 2, 6, 6), inits)


def _global_net() -> onnx.ModelProto:
    """Conv -> PRelu (2.5, -1, 0.1) -> {GlobalMaxPool, GlobalAveragePool, ReduceMax over H} -> Concat -> Gemm."""
    nodes = [
        _node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        _node("PRelu", ["c1", "s1"], ["p1"]),
        _node("GlobalMaxPool", ["p1"], ["g1"]),
        _node("Flatten", ["g1"], ["f1"]),
        _node("GlobalAveragePool", ["p1"], ["g2"]),
        _node("Flatten", ["g2"], ["f2"]),
        _node("ReduceMax", ["p1"], ["r3"], axes=[2], keepdims=0),
        _node("Flatten", ["r3"], ["f3"]),
        _node("Concat", ["f1", "f2", "f3"], ["cat"], axis=1),
        _node("Gemm", ["cat", "w2", "b2"], ["y"], transB=1),
    ]
    inits = {"w1": _w(3, 2, 3, 3), "b1": _w(3), "s1": np.array([2.5, -1.0, 0.1]).reshape(3, 1, 1),
             "w2": _w(3, 3 + 3 + 3 * 4), "b2": _w(3)}
    return _model(nodes, (1, 2, 5, 4), inits)


def _sample(box: Interval, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = box.lower.shape[1:]
    t = torch.cat([torch.rand(n, *shape, generator=g, dtype=F64),
                   torch.randint(0, 2, (n // 3, *shape), generator=g).to(F64)])  # box corners
    return box.lower + t * (box.upper - box.lower)


@pytest.mark.parametrize("make", [_conv_pool_net, _global_net])
@pytest.mark.parametrize("eps", [0.05, 0.5])
def test_crown_bounds_contain_sampled_outputs(make, eps):
    graph = _check(make(), n_points=2)
    center = torch.from_numpy(RNG.uniform(-1, 1, size=graph.input_shape)).to(F64)[None]
    box = Interval(center - eps, center + eps)
    y = graph.forward(_sample(box, 1500, 0)).reshape(-1, graph.output_size)
    eye = torch.eye(graph.output_size, dtype=F64)
    C = torch.cat([eye, -eye])[:, None, :]  # lower and upper bound of every output
    sampled_min = (y @ C[:, 0, :].T).min(0).values
    tol = 1e-9 * (1 + sampled_min.abs())

    ibp_lower = spec_lower_bound(graph, ibp(graph, box), C, method="ibp")[:, 0]
    assert torch.all(ibp_lower <= sampled_min + tol), (ibp_lower, sampled_min)
    bounds = intermediate_bounds(graph, box)
    crown = spec_lower_bound(graph, bounds, C)[:, 0]
    assert torch.all(crown <= sampled_min + tol), (crown, sampled_min)
    assert torch.all(torch.isfinite(crown))
    values = graph.forward_all(_sample(box, 400, 1))
    for node, b in zip(graph.nodes, bounds):  # every intermediate bound contains its samples
        if b is not None and values[node.index] is not None:
            v = values[node.index]
            assert torch.all(v >= b.lower - 1e-9 * (1 + v.abs())), node
            assert torch.all(v <= b.upper + 1e-9 * (1 + v.abs())), node
