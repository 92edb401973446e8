"""ONNX import: each converter's forward matches onnxruntime; errors name files and nodes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from curvebound.errors import ModelError, UnsupportedOperatorsError
from curvebound.graph.onnx_import import graph_from_onnx, load_graph
from curvebound.ops.shape import Reshape

RNG = np.random.default_rng(0)
SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def _init(name: str, value) -> onnx.TensorProto:
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return numpy_helper.from_array(arr, name)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _model(nodes, input_shape, inits=(), opset: int = 13, out_shape=None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[_init(k, v) for k, v in dict(inits).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _check(model: onnx.ModelProto, n_points: int = 3, low: float = -1.0, high: float = 1.0, **import_options):
    """Forward of the imported graph equals onnxruntime's at random points (rtol 1e-5)."""
    graph = graph_from_onnx(model, "test.onnx", **import_options)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed_shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    for _ in range(n_points):
        x = RNG.uniform(low, high, size=feed_shape).astype(np.float32)
        ref = sess.run(None, {"x": x})[0]
        ours = graph.forward(torch.from_numpy(x).double().reshape(1, *graph.input_shape))[0].numpy()
        assert ours.shape == ref.shape, (ours.shape, ref.shape)
        scale = max(float(np.abs(ref).max()), 1e-6)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * scale)
    return graph


def _node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=f"{op}_node_{outputs[0]}", **attrs)


# ---------------------------------------------------------------- affine / structural converters


@pytest.mark.parametrize("trans_a,trans_b,alpha,beta", [(0, 0, 1.0, 1.0), (1, 1, 0.5, 2.0), (0, 1, 1.5, 0.0)])
def test_gemm_perturbed_a(trans_a, trans_b, alpha, beta):
    a_shape = (4, 2) if trans_a else (2, 4)
    b = _w(3, 4) if trans_b else _w(4, 3)
    node = _node("Gemm", ["x", "b", "c"], transA=trans_a, transB=trans_b, alpha=alpha, beta=beta)
    _check(_model([node], a_shape, {"b": b, "c": _w(3)}))


def test_gemm_perturbed_b_and_no_bias():
    node = _node("Gemm", ["a", "x"], transA=1, transB=1)
    g = _check(_model([node], (3, 4), {"a": _w(4, 2)}))
    assert g.output_shape == (2, 3)


def test_matmul_constant_on_either_side_with_broadcasting():
    _check(_model([_node("MatMul", ["x", "w"])], (2, 5, 4), {"w": _w(4, 3)}))
    _check(_model([_node("MatMul", ["x", "w"])], (5, 4), {"w": _w(2, 4, 3)}))
    _check(_model([_node("MatMul", ["w", "x"])], (4, 3), {"w": _w(2, 5, 4)}))
    _check(_model([_node("MatMul", ["x", "w"])], (4,), {"w": _w(4, 3)}))
    _check(_model([_node("MatMul", ["w", "x"])], (3, 4, 2), {"w": _w(4)}))


@pytest.mark.parametrize("attrs,shape,w_shape", [
    (dict(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2]), (1, 2, 7, 8), (4, 2, 3, 3)),
    (dict(group=2, strides=[2]), (1, 4, 9), (6, 2, 3)),
    (dict(auto_pad="SAME_UPPER", strides=[2, 2]), (1, 2, 7, 6), (3, 2, 3, 2)),
    (dict(auto_pad="SAME_LOWER"), (1, 2, 5, 5), (3, 2, 2, 2)),
])
def test_conv(attrs, shape, w_shape):
    node = _node("Conv", ["x", "w", "b"], **attrs)
    _check(_model([node], shape, {"w": _w(*w_shape), "b": _w(w_shape[0])}))


def test_conv_transpose_output_padding_and_pads():
    node = _node("ConvTranspose", ["x", "w", "b"], strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 1])
    _check(_model([node], (1, 2, 4, 3), {"w": _w(2, 3, 3, 3), "b": _w(3)}))
    node = _node("ConvTranspose", ["x", "w"], strides=[3], group=2, dilations=[2])
    _check(_model([node], (1, 4, 5), {"w": _w(4, 1, 2)}))


def test_batchnorm():
    var = RNG.uniform(0.5, 2.0, 3).astype(np.float32)
    node = _node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)
    _check(_model([node], (1, 3, 4, 4), {"s": _w(3), "b": _w(3), "m": _w(3), "v": var}))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_arithmetic_with_constant(op):
    c = RNG.uniform(0.5, 2.0, (3, 1, 4)).astype(np.float32)
    _check(_model([_node(op, ["x", "c"])], (2, 4), {"c": c}))
    if op != "Div":  # Div(c, x) is not affine (see test_div_constant_by_perturbed)
        _check(_model([_node(op, ["c", "x"])], (2, 4), {"c": c}))


def test_add_sub_two_perturbed_and_neg():
    nodes = [
        _node("Neg", ["x"], ["n"]),
        _node("Slice", ["x", "s0", "e0", "ax"], ["row"]),
        _node("Add", ["x", "row"], ["a"]),
        _node("Sub", ["n", "a"], ["y"]),
    ]
    inits = {"s0": np.array([0]), "e0": np.array([1]), "ax": np.array([0])}
    g = _check(_model(nodes, (3, 4), inits))
    assert [n.op.kind for n in g.nodes[1:]] == ["ScaleShift", "Slice", "Add", "Sub"]


def test_batch_dimension_reshape_flatten_transpose():
    nodes = [
        _node("Reshape", ["x", "s"], ["r"]),  # [1, 1, 1, 12] -> [1, 12] -> ... moves the "batch" dim
        _node("Transpose", ["r"], ["t"], perm=[1, 0, 2]),
        _node("Flatten", ["t"], ["y"], axis=2),
    ]
    g = _check(_model(nodes, (1, 1, 1, 12), {"s": np.array([3, 0, -1])}))
    assert g.output_shape == (3, 4)


def test_concat_slice_gather_squeeze_unsqueeze_opset13():
    nodes = [
        _node("Concat", ["c0", "x", "c1", "x"], ["cat"], axis=-1),  # [2, 10]
        _node("Slice", ["cat", "st", "en", "ax", "sp"], ["sl"]),  # reverse with step -2
        _node("Gather", ["sl", "idx"], ["ga"], axis=1),  # [2, 2, 2]
        _node("Unsqueeze", ["ga", "uax"], ["un"]),  # [1, 2, 2, 1, 2]
        _node("Squeeze", ["un", "sax"], ["y"]),
    ]
    inits = {"c0": _w(2, 1), "c1": _w(2, 5), "st": np.array([-1]), "en": np.array([-100]),
             "ax": np.array([1]), "sp": np.array([-2]), "idx": np.array([[0, -1], [2, 1]]),
             "uax": np.array([0, -2]), "sax": np.array([0])}
    g = _check(_model(nodes, (2, 2), inits))
    assert g.output_shape == (2, 2, 1, 2)


def test_old_opset_attribute_forms():
    nodes = [
        _node("Unsqueeze", ["x"], ["u"], axes=[0]),
        _node("Slice", ["u"], ["s"], starts=[1], ends=[3], axes=[2]),
        _node("Split", ["s"], ["a", "b"], axis=1, split=[1, 2]),
        _node("Squeeze", ["a"], ["sq"], axes=[1]),
        _node("ReduceSum", ["b"], ["rs"], axes=[1], keepdims=0),
        _node("Add", ["sq", "rs"], ["y"]),
    ]
    _check(_model(nodes, (3, 4), opset=9))


def test_identity_dropout_cast_pad_expand():
    nodes = [
        _node("Identity", ["x"], ["i"]),
        _node("Dropout", ["i"], ["d"]),
        _node("Cast", ["d"], ["c"], to=TensorProto.FLOAT),
        _node("Pad", ["c", "pads", "v"], ["p"]),
        _node("Expand", ["p", "shape"], ["y"]),
    ]
    inits = {"pads": np.array([0, 1, 0, 2, 0, -1]), "v": np.array(1.5, dtype=np.float32),
             "shape": np.array([2, 1, 1, 1])}
    g = _check(_model(nodes, (1, 3, 4), inits))
    assert g.output_shape == (2, 3, 4, 3)


def test_split_equal_and_sizes_input():
    nodes = [_node("Split", ["x", "sizes"], ["a", "b", "c"], axis=1), _node("Sub", ["c", "a"], ["y"])]
    _check(_model(nodes, (2, 6), {"sizes": np.array([2, 2, 2])}))
    nodes = [_node("Split", ["x"], ["a", "b"], axis=0), _node("Mul", ["b", "k"], ["m"]),
             _node("Add", ["a", "m"], ["y"])]
    _check(_model(nodes, (4, 3), {"k": _w(1)}))


def test_resize_and_upsample_nearest():
    node = _node("Resize", ["x", "", "scales"], mode="nearest")
    _check(_model([node], (1, 2, 3, 4), {"scales": np.array([1, 1, 2, 3], dtype=np.float32)}))
    node = _node("Resize", ["x", "", "", "sizes"], mode="nearest", coordinate_transformation_mode="asymmetric",
                 nearest_mode="floor")
    _check(_model([node], (1, 2, 3, 4), {"sizes": np.array([1, 2, 9, 8])}))
    node = _node("Upsample", ["x", "scales"], mode="nearest")
    g = _check(_model([node], (1, 2, 3, 3), {"scales": np.array([1, 1, 2, 2], dtype=np.float32)}, opset=9))
    assert g.output_shape == (1, 2, 6, 6)


def test_reduce_mean_and_sum_forms():
    _check(_model([_node("ReduceMean", ["x"], axes=[-1, 1], keepdims=1)], (2, 3, 4), opset=13))
    _check(_model([_node("ReduceSum", ["x", "ax"], keepdims=0)], (2, 3, 4), {"ax": np.array([0, 2])}))
    _check(_model([_node("ReduceSum", ["x"])], (2, 3)))  # all axes


def test_where_with_constant_condition():
    cond = RNG.uniform(size=(2, 3)) > 0.5
    node = _node("Where", ["cond", "x", "c"])
    _check(_model([node], (3,), {"cond": cond, "c": _w(2, 1)}))


def test_shape_arithmetic_folds_with_dynamic_batch():
    nodes = [
        _node("Shape", ["x"], ["sh"]),
        _node("Gather", ["sh", "zero"], ["n"], axis=0),
        _node("Unsqueeze", ["n", "zero1"], ["n1"]),
        _node("Concat", ["n1", "minus1"], ["target"], axis=0),
        _node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {"zero": np.array(0), "zero1": np.array([0]), "minus1": np.array([-1])}
    model = _model(nodes, ("batch_size", 2, 3), inits)
    g = _check(model)
    assert [type(n.op) for n in g.nodes[1:]] == [Reshape]
    assert g.input_shape == (1, 2, 3) and g.output_shape == (1, 6)


def test_max_min_with_constant_use_relu():
    c = _w(4)
    nodes = [_node("Max", ["x", "c"], ["m"]), _node("Min", ["m", "d"], ["y"])]
    g = _check(_model(nodes, (3, 4), {"c": c, "d": c + 1.0}))
    assert [n.op.kind for n in g.nodes[1:]].count("Relu") == 2


def test_relu_leaky_relu_nodes():
    nodes = [_node("Relu", ["x"], ["r"]), _node("LeakyRelu", ["x"], ["l"], alpha=0.2),
             _node("Add", ["r", "l"], ["y"])]
    g = _check(_model(nodes, (5,)))
    assert g.nodes[2].op.negative_slope == pytest.approx(0.2)
    assert g.nodes[1].name == "r" and g.nodes[1].onnx_node == "Relu_node_r"


# ---------------------------------------------------------------- nonlinear decompositions


def test_div_constant_by_perturbed():
    pytest.importorskip("curvebound.ops.convex")
    g = _check(_model([_node("Div", ["c", "x"])], (2, 4), {"c": _w(4)}), low=0.5, high=2.0)
    assert [n.op.kind for n in g.nodes[1:]][-1] == "ScaleShift"


def test_softmax_decomposition():
    pytest.importorskip("curvebound.ops.convex")
    g = _check(_model([_node("Softmax", ["x"], axis=1)], (2, 4, 3)))
    assert "PairwiseDifference" in [n.op.kind for n in g.nodes[1:]]
    _check(_model([_node("Softmax", ["x"], axis=1)], (2, 3, 2), opset=11))  # flattened semantics
    _check(_model([_node("Softmax", ["x"])], (1, 10), opset=8))


def test_softmax_exp_sum_form_matches_onnxruntime_and_bounds_contain_samples():
    from curvebound.bounds.crown import intermediate_bounds
    from curvebound.ops.base import Interval

    g = _check(_model([_node("Softmax", ["x"], axis=1)], (2, 4, 3)), softmax="exp_sum")
    assert [n.op.kind for n in g.nodes[1:]] == ["Exp", "ReduceSum", "Reciprocal", "Mul"]
    _check(_model([_node("Softmax", ["x"], axis=1)], (2, 3, 2), opset=11), softmax="exp_sum")
    _check(_model([_node("Softmax", ["x"])], (1, 10), opset=8), softmax="exp_sum")
    centre = torch.from_numpy(RNG.uniform(-1, 1, size=(1, 2, 4, 3)))
    box = Interval(centre - 0.3, centre + 0.3)
    for form in ("pairwise", "exp_sum"):
        graph = graph_from_onnx(_model([_node("Softmax", ["x"], axis=1)], (2, 4, 3)), "t.onnx", softmax=form)
        out = intermediate_bounds(graph, box)[graph.output]
        y = graph.forward(box.lower + torch.rand(2000, 2, 4, 3, dtype=torch.float64) * 0.6)
        assert torch.all(y >= out.lower - 1e-9) and torch.all(y <= out.upper + 1e-9), form
    with pytest.raises(ValueError, match="softmax form"):
        graph_from_onnx(_model([_node("Softmax", ["x"])], (1, 10)), "t.onnx", softmax="nope")


def test_layer_normalization_decomposition():
    pytest.importorskip("curvebound.ops.convex")
    pytest.importorskip("curvebound.ops.bilinear")
    node = _node("LayerNormalization", ["x", "s", "b"], axis=-1, epsilon=1e-4)
    _check(_model([node], (2, 3, 5), {"s": _w(5), "b": _w(5)}, opset=17))


def test_nonlinear_unary_and_bivariate_converters():
    for mod in ("s_shaped", "periodic", "convex", "bilinear", "gelu"):
        pytest.importorskip(f"curvebound.ops.{mod}")
    nodes = [
        _node("Sigmoid", ["x"], ["a"]), _node("Tanh", ["x"], ["b"]), _node("Sin", ["x"], ["c"]),
        _node("Exp", ["x"], ["d"]), _node("Pow", ["x", "two"], ["e"]), _node("Pow", ["x", "three"], ["f"]),
        _node("Clip", ["x", "lo"], ["g"]), _node("Elu", ["x"], ["h"], alpha=0.5),
        _node("Pow", ["base", "x"], ["i"]),
        _node("Mul", ["a", "b"], ["ab"]), _node("Div", ["c", "d"], ["cd"]), _node("Max", ["e", "f"], ["ef"]),
        _node("Min", ["g", "h", "i"], ["ghi"]),
        _node("Add", ["ab", "cd"], ["s1"]),
        _node("Add", ["ef", "ghi"], ["s2"]),
        _node("Transpose", ["s2"], ["s2t"]),
        _node("MatMul", ["s1", "s2t"], ["y"]),
    ]
    inits = {"two": np.array(2.0, dtype=np.float32), "three": np.array(3.0, dtype=np.float32),
             "lo": np.array(-0.3, dtype=np.float32), "base": np.array(1.5, dtype=np.float32)}
    g = _check(_model(nodes, (2, 3), inits))
    kinds = [type(n.op).__name__ for n in g.nodes[1:]]
    for name in ("Sigmoid", "Tanh", "Sin", "Exp", "Square", "Pow", "Clip", "Elu", "Mul2", "Reciprocal",
                 "Max2", "Min2", "MatMul2"):
        assert name in kinds, name
    gelu = _model([_node("Gelu", ["x"], approximate="tanh")], (4,), opset=20)
    assert type(_check(gelu).nodes[1].op).__name__ == "Gelu"


# ---------------------------------------------------------------- errors


def test_unsupported_operators_reported_together():
    nodes = [
        helper.make_node("Hardmax", ["x"], ["h"], name="first_bad"),
        helper.make_node("Relu", ["h"], ["r"], name="fine_after_bad"),
        helper.make_node("Mod", ["k", "k"], ["kk"], name="folded_const", fmod=1),  # constant: folded
        helper.make_node("Add", ["r", "kk"], ["a"], name="add"),
        helper.make_node("TopK", ["a", "kint"], ["y", "idx"], name="second_bad"),
    ]
    model = _model(nodes, (2, 3), {"k": np.array([3.0], dtype=np.float32), "kint": np.array([1])})
    with pytest.raises(UnsupportedOperatorsError) as info:
        graph_from_onnx(model, "bad.onnx")
    assert info.value.unsupported == [("Hardmax", "first_bad"), ("TopK", "second_bad")]
    assert "bad.onnx" in str(info.value) and "second_bad" in str(info.value)


def test_perturbed_shape_operand_is_a_model_error():
    nodes = [_node("Cast", ["x"], ["c"], to=TensorProto.INT64), _node("Reshape", ["x", "c"])]
    model = _model(nodes, (2,))
    with pytest.raises(UnsupportedOperatorsError):  # Cast to int of the input: unsupported
        graph_from_onnx(model, "m.onnx")
    nodes = [_node("Gather", ["c", "x"])]
    model = _model(nodes, (2,), {"c": _w(3)})
    with pytest.raises(ModelError, match="Gather_node.*indices"):
        graph_from_onnx(model, "m.onnx")


def test_two_real_inputs_and_unreadable_files(tmp_path):
    graph = helper.make_graph(
        [_node("Add", ["x", "z"])], "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("x", "z")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(ModelError, match="exactly one"):
        graph_from_onnx(helper.make_model(graph), "two.onnx")
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
    with pytest.raises(ModelError, match="garbage.onnx"):
        load_graph(bad)
    with pytest.raises(ModelError, match="not found"):
        load_graph(tmp_path / "missing.onnx")


def test_load_graph_from_file_and_move(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model([_node("MatMul", ["x", "w"])], (2, 3), {"w": _w(3, 2)}, out_shape=[2, 2]), path)
    g = load_graph(path)
    assert g.source == str(path) and g.output_shape == (2, 2)
    g.to("cpu", torch.float32)
    assert g.nodes[1].op.weight.dtype == torch.float32
    assert g.forward(torch.zeros(4, 2, 3)).shape == (4, 2, 2)


# ---------------------------------------------------------------- shared benchmark models


def _first_box(vnnlib: Path, n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from curvebound.io.vnnlib import parse_vnnlib

        box = parse_vnnlib(vnnlib).boxes[0]
        return np.asarray(box.lower, dtype=np.float64).reshape(-1), np.asarray(box.upper, dtype=np.float64).reshape(-1)
    except ImportError:
        pass
    lower = np.full(n_inputs, -np.inf)
    upper = np.full(n_inputs, np.inf)
    text = vnnlib.read_text()
    num = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    for m in re.finditer(rf"\(\s*(<=|>=)\s+X_(\d+)\s+{num}\s*\)", text):
        op, i, v = m.group(1), int(m.group(2)), float(m.group(3))
        if i >= n_inputs:
            continue
        if op == "<=":
            upper[i] = min(upper[i], v)
        else:
            lower[i] = max(lower[i], v)
    return lower, upper


def _shared_models() -> list[Path]:
    return sorted(SHARED.glob("benchmarks/*/onnx/*.onnx")) if SHARED.is_dir() else []


def _vnnlib_for(model: Path) -> Path | None:
    import csv

    bench = model.parent.parent
    with open(bench / "instances.csv") as f:
        for row in csv.reader(f):
            if row and Path(row[0]).name == model.name:
                return bench / row[1].strip()
    files = sorted((bench / "vnnlib").glob("*.vnnlib"))
    return files[0] if files else None


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared benchmarks not present")
@pytest.mark.parametrize("model_path", _shared_models(), ids=lambda p: p.name)
def test_shared_model_forward_matches_onnxruntime(model_path: Path):
    graph = load_graph(model_path)
    vnnlib = _vnnlib_for(model_path)
    assert vnnlib is not None and vnnlib.is_file()
    lower, upper = _first_box(vnnlib, graph.input_size)
    assert np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))
    rng = np.random.default_rng(0)
    points = [(lower + upper) / 2] + [lower + rng.uniform(size=lower.shape) * (upper - lower) for _ in range(3)]
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed_shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    for p in points:
        ref = sess.run(None, {inp.name: p.astype(np.float32).reshape(feed_shape)})[0].reshape(-1)
        x = torch.from_numpy(p.astype(np.float32).astype(np.float64)).reshape(1, *graph.input_shape)
        ours = graph.forward(x)[0].numpy().reshape(-1)
        scale = max(float(np.abs(ref).max()), 1e-12)
        assert float(np.abs(ours - ref).max()) / scale <= 1e-5
