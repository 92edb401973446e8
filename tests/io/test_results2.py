"""VNN-LIB 2.0 result files: writer/reader round trip, and replay of a real counterexample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import curvebound
from curvebound.io.replay import replay_counterexample
from curvebound.io.results2 import flat_counterexample, read_result2, write_result2
from curvebound.io.vnnlib2 import declared_variables, parse_query_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ATTACKABLE_V2 = """(vnnlib-version <2.0>)
(declare-network toy (declare-input X float32 [1,2]) (declare-output Y float32 [1,3]))
{asserts}
"""


def _attackable_v2() -> str:
    """examples/toy_attackable.vnnlib in 2.0 syntax (X_i -> X[0,i], Y_j -> Y[0,j])."""
    import re

    body = (EXAMPLES / "toy_attackable.vnnlib").read_text()
    asserts = "\n".join(line for line in body.splitlines() if line.startswith("(assert"))
    asserts = re.sub(r"\b([XY])_(\d+)\b", r"\1[0,\2]", asserts)
    return ATTACKABLE_V2.format(asserts=asserts)


@pytest.mark.parametrize("verdict, word", [("unsat", "unsat"), ("unknown", "unknown"), ("timeout", "timed-out")])
def test_verdict_words(tmp_path, verdict, word):
    path = tmp_path / "r.txt"
    write_result2(path, verdict)
    assert path.read_text() == f"{word}\n"
    assert read_result2(path) == (verdict, {}, {})


def test_round_trip_keeps_every_bit(tmp_path):
    text = ATTACKABLE_V2.format(asserts="(assert (<= -1 X[0,0] 1)) (assert (<= -1 X[0,1] 1))")
    variables = declared_variables(text)
    x = np.array([0.1, -1 / 3])
    y = np.array([np.pi, -1e-300, 2.5e17])
    path = tmp_path / "r.txt"
    write_result2(path, "sat", x, y, variables)
    lines = path.read_text().splitlines()
    assert lines[0] == "sat" and lines[1] == "X float32 [1,2]" and lines[4] == "Y float32 [1,3]"
    verdict, values, types = read_result2(path)
    assert verdict == "sat" and types == {"X": "float32", "Y": "float32"}
    assert values["X"].shape == (1, 2) and values["Y"].shape == (1, 3)
    x2, y2 = flat_counterexample(values, variables)
    assert x2.tobytes() == x.tobytes() and y2.tobytes() == y.tobytes()


def test_malformed_files_are_rejected(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("sat\nX float32 [1,2]\n0.5\n")
    with pytest.raises(ValueError, match="needs 2 values"):
        read_result2(path)
    path.write_text("maybe\n")
    with pytest.raises(ValueError, match="unknown verdict"):
        read_result2(path)


def test_counterexample_of_a_2_0_query_replays_on_onnxruntime(tmp_path):
    text = _attackable_v2()
    prop = parse_query_text(text, "attackable2.vnnlib")
    result = curvebound.verify(EXAMPLES / "toy.onnx", prop, timeout=60)
    assert result.verdict == "sat"
    path = tmp_path / "result.txt"
    cex = result.counterexample
    write_result2(path, result.verdict, cex.x, cex.y, declared_variables(text))
    verdict, values, _ = read_result2(path)
    x, y = flat_counterexample(values, declared_variables(text))
    assert verdict == "sat"
    replay = replay_counterexample(EXAMPLES / "toy.onnx", x, prop.boxes[cex.box])
    assert replay.ok, replay.reason
    np.testing.assert_allclose(replay.y, y, rtol=1e-6, atol=1e-6)
