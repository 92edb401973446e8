"""End to end through the CLI and the API on the bundled examples and hand-made bad inputs."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import curvebound
from curvebound.io.replay import run_onnx
from curvebound.io.results import read_result
from curvebound.io.vnnlib import parse_vnnlib, parse_vnnlib_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curvebound.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_example_robust_property_is_proved(tmp_path):
    out = run_cli("verify", str(EXAMPLES / "toy.onnx"), str(EXAMPLES / "toy_robust.vnnlib"),
                  "--result", str(tmp_path / "r.txt"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "unsat"
    assert read_result(tmp_path / "r.txt")[0] == "unsat"


def test_example_attackable_property_gives_replayed_counterexample(tmp_path):
    out = run_cli("verify", str(EXAMPLES / "toy.onnx"), str(EXAMPLES / "toy_attackable.vnnlib"),
                  "--result", str(tmp_path / "r.txt"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "sat"
    verdict, x, y = read_result(tmp_path / "r.txt")
    assert verdict == "sat"
    # the written counterexample really violates the property on onnxruntime
    y_ort = run_onnx(EXAMPLES / "toy.onnx", x)
    assert np.array_equal(y_ort, y)
    prop = parse_vnnlib(EXAMPLES / "toy_attackable.vnnlib")
    box = prop.boxes[0]
    assert np.all(x >= box.lower) and np.all(x <= box.upper)
    assert any(np.all(d.C @ y <= d.rhs) for d in box.disjuncts)


def test_malformed_spec_gives_file_line_column_and_exit_2(tmp_path):
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 0.5)\n")
    out = run_cli("verify", str(EXAMPLES / "toy.onnx"), str(bad))
    assert out.returncode == 2
    assert "bad.vnnlib:" in out.stderr and "Traceback" not in out.stderr


def test_unsupported_operators_are_all_listed_and_verdict_is_unknown(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    nodes = [helper.make_node("Hardmax", ["x"], ["h"], name="first_bad"),
             helper.make_node("Round", ["h"], ["y"], name="second_bad")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    spec = tmp_path / "p.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                    "(declare-const Y_1 Real)\n(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n"
                    "(assert (>= X_1 0))\n(assert (<= Y_0 -1))\n")
    out = run_cli("verify", str(path), str(spec))
    assert out.returncode == 0
    assert out.stdout.splitlines()[0] == "unknown"
    assert "Hardmax" in out.stderr and "first_bad" in out.stderr
    assert "Round" in out.stderr and "second_bad" in out.stderr


def test_python_api_accepts_a_torch_module():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    with torch.no_grad():
        y0 = model(torch.zeros(1, 2))[0]
    # y0 - y1 stays within 1 of its centre value over a tiny box: provable
    d = float(y0[0] - y0[1])
    text = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
            "(assert (<= X_0 0.001))\n(assert (>= X_0 -0.001))\n(assert (<= X_1 0.001))\n(assert (>= X_1 -0.001))\n"
            f"(assert (<= (- Y_0 Y_1) {d - 1.0!r}))\n")
    prop = parse_vnnlib_text(text)
    result = curvebound.verify(model, prop, input_shape=(1, 2))
    assert result.verdict == "unsat"
    assert result.margin > 0
