"""VNN-LIB 2.0 reader: same normal form as 1.0, the DNF cross product, translation of ==/!=, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from curvebound.errors import SpecError
from curvebound.io.vnnlib import parse_vnnlib, parse_vnnlib_text
from curvebound.io.vnnlib2 import declared_variables, is_vnnlib2, parse_query, parse_query_text, parse_vnnlib2_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ROBUST_V2 = """; the same property as examples/toy_robust.vnnlib
(vnnlib-version <2.0>)
(declare-network toy
    (declare-input  X float32 [1,2] "input")
    (declare-output Y float32 [1,3]))
(assert (>= X[0,0] -2.05))
(assert (<= X[0,0] -1.95))
(assert (and (>= X[0,1] -0.05) (<= X [0,1] 0.05)))
(assert (or (>= Y[0,1] Y[0,0]) (>= Y[0,2] Y[0,0])))
"""


def normal_form(prop) -> list:
    """A comparable form: per box (lower, upper, sorted (C, rhs) of its disjuncts)."""
    boxes = []
    for box in prop.boxes:
        disjuncts = sorted((d.C.tobytes(), d.rhs.tobytes()) for d in box.disjuncts)
        boxes.append((box.lower.tobytes(), box.upper.tobytes(), disjuncts))
    return sorted(boxes)


def test_same_property_in_both_versions_gives_the_same_normal_form():
    v1 = parse_vnnlib(EXAMPLES / "toy_robust.vnnlib")
    v2 = parse_vnnlib2_text(ROBUST_V2, "robust2.vnnlib")
    assert (v2.n_inputs, v2.n_outputs) == (v1.n_inputs, v1.n_outputs) == (2, 3)
    assert normal_form(v2) == normal_form(v1)
    assert v2.source == "robust2.vnnlib"


def test_separate_input_disjunction_and_output_asserts_give_the_cross_product():
    # Two input regions (one assert) times two unsafe output regions (another assert): every input region
    # must carry both output disjuncts (the PyPI 'vnnlib' package's DNF gets this case wrong).
    v2 = """(vnnlib-version <2.0>)
    (declare-network f (declare-input X real [2]) (declare-output Y real [2]))
    (assert (<= -1 X[1] 1))
    (assert (or (and (>= X[0] 0) (<= X[0] 1)) (and (>= X[0] 2) (<= X[0] 3))))
    (assert (or (<= Y[0] 0) (>= Y[1] 5)))
    """
    prop = parse_query_text(v2)
    assert len(prop.boxes) == 2
    assert sorted(box.lower[0] for box in prop.boxes) == [0.0, 2.0]
    for box in prop.boxes:
        assert box.lower[1] == -1 and box.upper[1] == 1
        rows = sorted((tuple(d.C[0]), d.rhs[0]) for d in box.disjuncts)
        assert rows == [((0.0, -1.0), -5.0), ((1.0, 0.0), 0.0)]
    assert prop.n_disjuncts == 4
    # and the 1.0 spelling of the same query agrees
    v1 = """(declare-const X_0 Real) (declare-const X_1 Real) (declare-const Y_0 Real) (declare-const Y_1 Real)
    (assert (<= -1 X_1 1))
    (assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 2) (<= X_0 3))))
    (assert (or (<= Y_0 0) (>= Y_1 5)))
    """
    assert normal_form(parse_vnnlib_text(v1)) == normal_form(prop)
    # a point of the second region whose output meets the second disjunct is a counterexample
    assert prop.is_counterexample(np.array([2.5, 0.0]), np.array([1.0, 6.0]))
    assert not prop.is_counterexample(np.array([1.5, 0.0]), np.array([-1.0, 6.0]))


def test_equality_inequality_flat_index_and_scalar_variables():
    v2 = """(declare-network f (declare-input X Real [2,2]) (declare-output Y Real []))
    (assert (== X[0,0] 0.5))
    (assert (and (>= X[3] 0) (<= X[1,1] 1) (>= X[0,1] 0) (<= X[0,1] 1) (>= X[1,0] 0) (<= X[1,0] 2)))
    (assert (!= Y 1.0))
    """
    prop = parse_query_text(v2)
    assert (prop.n_inputs, prop.n_outputs) == (4, 1)
    (box,) = prop.boxes
    np.testing.assert_array_equal(box.lower, [0.5, 0, 0, 0])
    np.testing.assert_array_equal(box.upper, [0.5, 1, 2, 1])
    rows = sorted((d.C[0, 0], d.rhs[0]) for d in box.disjuncts)
    assert rows == [(-1.0, -1.0), (1.0, 1.0)]  # Y <= 1 (closure of Y < 1) or -Y <= -1


def test_detection_and_files(tmp_path):
    assert is_vnnlib2(ROBUST_V2)
    assert not is_vnnlib2((EXAMPLES / "toy_robust.vnnlib").read_text())
    gz = tmp_path / "q.vnnlib.gz"
    gz.write_bytes(gzip.compress(ROBUST_V2.encode()))
    assert normal_form(parse_query(gz)) == normal_form(parse_query(EXAMPLES / "toy_robust.vnnlib"))
    names = [(v.name, v.kind, v.element_type, v.shape, v.onnx_name) for v in declared_variables(ROBUST_V2)]
    assert names == [("X", "input", "float32", (1, 2), "input"), ("Y", "output", "float32", (1, 3), None)]


@pytest.mark.parametrize("text, line, words", [
    ("(declare-network f (declare-input X Real [2]) (declare-output Y Real [1]))\n(assert (<= Z[0] 1))",
     2, "unknown variable 'Z'"),
    ("(declare-network f (declare-input X Real [2])\n (declare-hidden H Real [3] \"h\") (declare-output Y Real [1]))",
     2, "declare-hidden"),
    ("(declare-network f (declare-input X Real [2]) (declare-output Y Real [1]))\n\n(assert (<= X[2] 1))",
     3, "outside"),
    ("(declare-network f (declare-input X Real [1,2]) (declare-output Y Real [1]))\n(assert (<= X[0,0,0] 1))",
     2, "indexed with 3"),
    ("(declare-network f (declare-input X Real [1]) (declare-output Y Real [1]))\n"
     "(declare-network g (isomorphic-to f))", 2, "one network"),
    ("(declare-network f (declare-input X Real [1]) (declare-output Y Real [1]))\n(assert (<= X[0] 1))\n"
     "(assert (<= (* X[0] X[0]) 1))", 3, "non-linear"),
])
def test_errors_name_the_line(text, line, words):
    with pytest.raises(SpecError) as info:
        parse_query_text(text, "bad.vnnlib")
    message = str(info.value)
    assert words in message
    assert f"bad.vnnlib:{line}:" in message
