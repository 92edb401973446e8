"""The tiny operator-family models of scripts/make_test_models.py: import (with the SiLU / GELU
rewrites and the unrolled LSTM / GRU), forward against onnxruntime, and whole-network soundness of
IBP, CROWN and alpha-CROWN over each model's VNN-LIB box."""

from __future__ import annotations

import collections
import importlib.util
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from curvebound.bounds.alpha import AlphaOptions, optimize_spec_bound
from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.bounds.ibp import ibp
from curvebound.graph.onnx_import import graph_from_onnx, load_graph
from curvebound.io.vnnlib import parse_vnnlib
from curvebound.ops.base import Interval

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_test_models.py"
_spec = importlib.util.spec_from_file_location("make_test_models", _SCRIPT)
make_test_models = importlib.util.module_from_spec(_spec)
sys.modules["make_test_models"] = make_test_models
_spec.loader.exec_module(make_test_models)

NAMES = list(make_test_models.MODELS)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    torch.manual_seed(0)
    return make_test_models.build_all(tmp_path_factory.mktemp("models"))


def _kinds(graph) -> collections.Counter:
    return collections.Counter(type(node.op).__name__ for node in graph.nodes[1:])


def _ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: xi.astype(np.float32)})[0] for xi in x])


@pytest.mark.parametrize("name", NAMES)
def test_import_kinds_and_forward_match_onnxruntime(built, name):
    onnx_path, _ = built[name]
    spec = make_test_models.MODELS[name]
    graph = load_graph(onnx_path)
    kinds = _kinds(graph)
    for kind in spec.expect_kinds:
        assert kinds[kind] > 0, (name, kind, kinds)
    for kind in spec.forbid_kinds:
        assert kinds[kind] == 0, (name, kind, kinds)
    x = np.random.default_rng(0).normal(size=(6, *spec.input_shape)).astype(np.float32)
    expected = _ort_outputs(onnx_path, x)  # [6, *output_shape]
    ours = graph.forward(torch.as_tensor(x, dtype=torch.float64)).numpy()
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    assert onnx_path.stat().st_size < 16_000  # tiny models only


def test_gelu_and_silu_fuse_to_one_node_per_activation(built):
    for name, count in (("gelu_erf", 2), ("gelu_op", 2), ("silu", 2)):
        kinds = _kinds(load_graph(built[name][0]))
        assert kinds["Gelu" if "gelu" in name else "Silu"] == count
        assert sum(kinds.values()) == count + 3  # three linear layers, nothing else


def _sample(box: Interval, n: int = 3000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = box.lower.shape[1:]
    t = torch.cat([torch.rand(n, *shape, generator=g, dtype=torch.float64),
                   torch.randint(0, 2, (n // 3, *shape), generator=g).to(torch.float64)])
    return box.lower + t * (box.upper - box.lower)


@pytest.mark.parametrize("name", NAMES)
def test_ibp_crown_alpha_contain_sampled_outputs(built, name):
    onnx_path, vnnlib_path = built[name]
    graph = load_graph(onnx_path)
    prop = parse_vnnlib(vnnlib_path)
    box_spec = prop.boxes[0]
    shape = graph.input_shape
    box = Interval(torch.as_tensor(box_spec.lower).reshape(1, *shape),
                   torch.as_tensor(box_spec.upper).reshape(1, *shape))
    y = graph.forward(_sample(box)).reshape(-1, graph.output_size)
    n_out = graph.output_size
    eye = torch.eye(n_out, dtype=torch.float64)
    C = torch.cat([eye, -eye])[:, None, :]  # lower and upper bound of every output
    sampled_min = (y @ C[:, 0, :].T).min(0).values
    tol = 1e-9 * (1 + sampled_min.abs())

    ibp_lower = spec_lower_bound(graph, ibp(graph, box), C, method="ibp")[:, 0]
    assert torch.all(ibp_lower <= sampled_min + tol), (name, ibp_lower, sampled_min)
    bounds = intermediate_bounds(graph, box)
    crown = spec_lower_bound(graph, bounds, C)
    assert torch.all(crown[:, 0] <= sampled_min + tol), (name, crown[:, 0], sampled_min)
    assert torch.all(crown[:, 0] >= ibp_lower - 1e-9)
    values = graph.forward_all(_sample(box, 500, seed=1))
    for node, b in zip(graph.nodes, bounds):  # every intermediate bound contains its samples
        if b is not None and values[node.index] is not None:
            v = values[node.index]
            assert torch.all(v >= b.lower - 1e-9 * (1 + v.abs())), (name, node)
            assert torch.all(v <= b.upper + 1e-9 * (1 + v.abs())), (name, node)
    groups = torch.arange(2 * n_out)
    rhs = sampled_min + 1.0  # never reached: every row keeps being optimized
    result = optimize_spec_bound(graph, box, C, rhs, groups, bounds, crown, AlphaOptions(iterations=3))
    assert torch.all(result.lower[:, 0] <= sampled_min + tol), (name, result.lower[:, 0], sampled_min)
    assert torch.all(result.lower >= crown - 1e-12)


# ---- rewrites and recurrent layers on hand-built / extra exports --------------------------------


def _model(nodes, inits, n_in: int = 3, n_out: int = 3, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check_forward(model: onnx.ModelProto, n_in: int = 3) -> collections.Counter:
    graph = graph_from_onnx(model, "test")
    x = np.random.default_rng(1).normal(size=(4, 1, n_in)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.stack([session.run(None, {"x": xi})[0] for xi in x])
    ours = graph.forward(torch.as_tensor(x, dtype=torch.float64)).numpy()
    assert np.abs(ours - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    return _kinds(graph)


@pytest.mark.parametrize("order", ["x_t_then_half", "half_x_then_t", "x_times_half_t", "mul_inv_sqrt2"])
def test_gelu_rewrite_variants(order):
    consts = {"s2": np.sqrt(2.0), "is2": 1 / np.sqrt(2.0), "one": 1.0, "half": 0.5}
    nodes = [helper.make_node("Mul", ["x", "is2"], ["d"]) if order == "mul_inv_sqrt2"
             else helper.make_node("Div", ["x", "s2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["one", "e"], ["t"])]
    if order in ("x_t_then_half", "mul_inv_sqrt2"):
        nodes += [helper.make_node("Mul", ["x", "t"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    elif order == "half_x_then_t":
        nodes += [helper.make_node("Mul", ["half", "x"], ["h"]), helper.make_node("Mul", ["h", "t"], ["y"])]
    else:
        nodes += [helper.make_node("Mul", ["t", "half"], ["h"]), helper.make_node("Mul", ["x", "h"], ["y"])]
    kinds = _check_forward(_model(nodes, consts))
    assert kinds == {"Gelu": 1}


def test_rewrites_skip_shared_intermediates():
    # the Sigmoid output and the erf output each have a second consumer: nothing may be fused
    consts = {"s2": np.sqrt(2.0), "one": 1.0, "half": 0.5}
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["silu"]),
        helper.make_node("Div", ["x", "s2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["t"]), helper.make_node("Mul", ["x", "t"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["g"]),
        helper.make_node("Add", ["silu", "s"], ["a"]), helper.make_node("Add", ["g", "e"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    kinds = _check_forward(_model(nodes, consts))
    assert kinds["Silu"] == 0 and kinds["Gelu"] == 0 and kinds["Sigmoid"] == 1 and kinds["Erf"] == 1


def test_silu_rewrite_either_order_and_constant_folding():
    # Sigmoid(c) * c on a constant c folds through the original nodes; x * Sigmoid(x) fuses
    nodes = [helper.make_node("Sigmoid", ["c"], ["sc"]), helper.make_node("Mul", ["sc", "c"], ["k"]),
             helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["s", "x"], ["z"]),
             helper.make_node("Add", ["z", "k"], ["y"])]
    kinds = _check_forward(_model(nodes, {"c": [0.5, -1.0, 2.0]}))
    assert kinds == {"Silu": 1, "ScaleShift": 1}


def _export(module: torch.nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])
    return onnx.load_from_string(buffer.getvalue())


class _Recurrent(torch.nn.Module):
    def __init__(self, cell: type, output: str, **kwargs):
        super().__init__()
        self.rnn = cell(3, 4, batch_first=True, **kwargs)
        self.output = output

    def forward(self, x):
        h0 = torch.full((2 if self.rnn.bidirectional else 1, 1, 4), 0.3)
        if isinstance(self.rnn, torch.nn.LSTM):
            y, (h, c) = self.rnn(x, (h0, -h0))
        else:
            y, h = self.rnn(x, h0)
            c = h
        return {"Y": y, "Y_h": h, "Y_c": c}[self.output]


@pytest.mark.parametrize("cell", [torch.nn.LSTM, torch.nn.GRU])
@pytest.mark.parametrize("output", ["Y", "Y_h", "Y_c"])
def test_recurrent_outputs_bidirectional_and_initial_states(cell, output):
    torch.manual_seed(3)
    x = torch.randn(1, 3, 3)
    model = _export(_Recurrent(cell, output, bidirectional=True), x)
    assert any(n.op_type in ("LSTM", "GRU") for n in model.graph.node)
    graph = graph_from_onnx(model, "rnn")
    xs = np.random.default_rng(2).normal(size=(4, 1, 3, 3)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.stack([session.run(None, {"x": xi})[0] for xi in xs])
    ours = graph.forward(torch.as_tensor(xs, dtype=torch.float64)).numpy()
    assert np.abs(ours - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
