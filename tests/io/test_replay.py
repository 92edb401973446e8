"""Replay of counterexamples on the original ONNX model in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from curvebound.attack.pgd import pgd_attack
from curvebound.io import replay
from curvebound.io.replay import replay_counterexample, run_onnx
from curvebound.io.results import read_result, write_result
from curvebound.spec import Disjunct, InputBox

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(8, 3)).astype(np.float32)
B1 = RNG.normal(size=8).astype(np.float32)
W2 = RNG.normal(size=(2, 8)).astype(np.float32)
B2 = RNG.normal(size=2).astype(np.float32)
C_DIFF = np.array([[1.0, -1.0]])  # y0 - y1


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> Path:
    """Gemm -> Relu -> Gemm on input ``[N, 1, 3]`` (N dynamic), flattened before the first Gemm."""
    inits = [numpy_helper.from_array(a, n) for a, n in ((W1, "W1"), (B1, "B1"), (W2, "W2"), (B2, "B2"))]
    inits.append(numpy_helper.from_array(np.array([-1, 3], dtype=np.int64), "flat"))
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["x2"]),
        helper.make_node("Gemm", ["x2", "W1", "B1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "B2"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(model, path)
    return path


def _torch_model() -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(W1))
        net[0].bias.copy_(torch.from_numpy(B1))
        net[2].weight.copy_(torch.from_numpy(W2))
        net[2].bias.copy_(torch.from_numpy(B2))
    return net


def _box(rhs: float, lower=(-1.0, -1.0, -1.0), upper=(1.0, 1.0, 1.0)) -> InputBox:
    return InputBox(np.array(lower), np.array(upper), [Disjunct(C_DIFF.copy(), np.array([rhs]))])


def test_run_onnx_matches_numpy(onnx_path):
    x = np.array([0.25, -0.5, 0.75])
    y = run_onnx(onnx_path, x)
    xf = x.astype(np.float32)
    expected = W2 @ np.maximum(W1 @ xf + B1, 0) + B2
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert y.dtype == np.float64 and y.shape == (2,)


def test_true_counterexample_replays_ok(onnx_path):
    x = np.array([0.25, -0.5, 0.75])  # float32-exact
    y = run_onnx(onnx_path, x)
    res = replay_counterexample(onnx_path, x, _box(y[0] - y[1] + 1e-3))
    assert res.ok and res.disjunct == 0 and res.reason == ""
    np.testing.assert_array_equal(res.x, x)
    np.testing.assert_array_equal(res.y, y)
    # exactly on the boundary is still inside (C y <= rhs)
    assert replay_counterexample(onnx_path, x, _box(float((C_DIFF @ y)[0]))).ok


def test_fake_counterexample_is_rejected(onnx_path):
    x = np.array([0.25, -0.5, 0.75])
    y = run_onnx(onnx_path, x)
    res = replay_counterexample(onnx_path, x, _box(y[0] - y[1] - 1e-6))
    assert not res.ok and res.disjunct is None
    assert "no unsafe disjunct" in res.reason
    np.testing.assert_array_equal(res.y, y)


def test_second_disjunct_index(onnx_path):
    x = np.array([0.25, -0.5, 0.75])
    y = run_onnx(onnx_path, x)
    box = _box(y[0] - y[1] - 1.0)
    box.disjuncts.append(Disjunct(np.array([[0.0, 1.0], [-1.0, 0.0]]), np.array([y[1], -y[0]])))
    res = replay_counterexample(onnx_path, x, box)
    assert res.ok and res.disjunct == 1


def test_point_outside_box_is_rejected(onnx_path):
    x = np.array([0.25, -0.5, 1.5])
    y = run_onnx(onnx_path, x)
    res = replay_counterexample(onnx_path, x, _box(y[0] - y[1] + 1.0))  # outputs would violate
    assert not res.ok and "X_2" in res.reason and "outside" in res.reason
    res = replay_counterexample(onnx_path, np.array([0.25, np.nan, 0.5]), _box(1e9))
    assert not res.ok and "X_1" in res.reason


def test_float32_rounding_is_nudged_into_box(onnx_path):
    # float32(0.1) > 0.1, so with upper = 0.1 the cast leaves the box and must step down one ulp
    x = np.array([0.1, -0.5, 0.1])
    lower, upper = (-1.0, -1.0, -1.0), (0.1, 1.0, 1.0)
    below = np.nextafter(np.float32(0.1), np.float32(-1))
    nudged = np.array([below, -0.5, np.float32(0.1)], dtype=np.float32)
    y = run_onnx(onnx_path, nudged)
    res = replay_counterexample(onnx_path, x, _box(y[0] - y[1], lower, upper))
    assert res.ok
    assert res.x[0] < 0.1 and res.x[0] == float(nudged[0])
    assert res.x[2] == float(np.float32(0.1))  # inside: left as rounded
    np.testing.assert_array_equal(res.y, y)


def test_unrepresentable_point_dimension_is_rejected(onnx_path):
    x = np.array([0.1, 0.0, 0.0])
    res = replay_counterexample(onnx_path, x, _box(1e9, (0.1, -1.0, -1.0), (0.1, 1.0, 1.0)))
    assert not res.ok and "float32" in res.reason and "X_0" in res.reason


def test_session_is_cached(onnx_path):
    assert replay._session(onnx_path) is replay._session(str(onnx_path))


def test_pgd_write_read_replay_pipeline(onnx_path, tmp_path):
    """A PGD hit on the torch twin, written and read back, replays on the ONNX model."""
    pts = torch.rand(20000, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        diff = (_torch_model()(pts) @ torch.tensor([1.0, -1.0])).double()
    rhs = float(torch.quantile(diff, 0.01))
    box = _box(rhs)
    attack = pgd_attack(_torch_model(), box, restarts=10, steps=100, seed=0)
    assert attack.found
    res = replay_counterexample(onnx_path, attack.x, box)
    assert res.ok, res.reason
    out = tmp_path / "result.txt"
    write_result(out, "sat", res.x, res.y)
    verdict, x, y = read_result(out)
    assert verdict == "sat"
    np.testing.assert_array_equal(x, res.x)
    np.testing.assert_array_equal(y, res.y)
    again = replay_counterexample(onnx_path, x, box)
    assert again.ok
    np.testing.assert_array_equal(again.y, y)
