"""Tests for io/vnnlib.py: exact normal forms of hand-written snippets, SpecError locations, and every
shared benchmark file (sizes checked against its ONNX model, known facts about a few files)."""

from __future__ import annotations

import csv
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from curvebound.errors import SpecError
from curvebound.io.vnnlib import MAX_DNF_TERMS, parse_vnnlib, parse_vnnlib_text
from curvebound.spec import Property

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
BENCHMARKS = SHARED / "benchmarks"


def declare(n_in: int, n_out: int) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + "".join(
        f"(declare-const Y_{j} Real)\n" for j in range(n_out))


def unit_box(n_in: int) -> str:
    return "".join(f"(assert (<= X_{i} 1))\n(assert (>= X_{i} -1))\n" for i in range(n_in))


def rows_of(prop: Property, box: int = 0) -> list[tuple[list[list[float]], list[float]]]:
    return [(d.C.tolist(), d.rhs.tolist()) for d in prop.boxes[box].disjuncts]


# ---- hand-written snippets: exact normal forms ---------------------------------------------------------

def test_top_level_bounds_and_or_of_and_over_outputs() -> None:
    text = declare(2, 3) + """
    (assert (<= X_0 0.5))
    (assert (>= X_0 -0.5))
    (assert (<= 0.25 X_1))      ; constant on the left: a lower bound
    (assert (>= 0.75 X_1))
    (assert (or
        (and (<= Y_0 Y_1) (>= Y_2 3))
        (and (< Y_1 -2))
    ))
    """
    prop = parse_vnnlib_text(text, "snippet.vnnlib")
    assert (prop.n_inputs, prop.n_outputs, prop.source) == (2, 3, "snippet.vnnlib")
    assert len(prop.boxes) == 1
    box = prop.boxes[0]
    assert box.lower.tolist() == [-0.5, 0.25] and box.upper.tolist() == [0.5, 0.75]
    assert box.lower.dtype == np.float64 and box.disjuncts[0].C.dtype == np.float64
    assert rows_of(prop) == [
        ([[1.0, -1.0, 0.0], [0.0, 0.0, -1.0]], [0.0, -3.0]),  # Y0 - Y1 <= 0, -Y2 <= -3
        ([[0.0, 1.0, 0.0]], [-2.0]),  # strict < read as <=
    ]


def test_or_of_boxes_with_rows_groups_identical_boxes() -> None:
    text = declare(2, 2) + """
    (assert (or
        (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (>= Y_0 5))
        (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (<= Y_1 Y_0))
        (and (<= X_0 1) (>= X_0 0) (<= X_1 1) (>= X_1 0) (<= Y_0 -5))
    ))
    """
    prop = parse_vnnlib_text(text)
    assert [(b.lower.tolist(), b.upper.tolist()) for b in prop.boxes] == [([0, 0], [1, 1]), ([2, 0], [3, 1])]
    assert rows_of(prop, 0) == [([[-1.0, 0.0]], [-5.0]), ([[1.0, 0.0]], [-5.0])]
    assert rows_of(prop, 1) == [([[-1.0, 1.0]], [0.0])]  # Y_1 - Y_0 <= 0


def test_top_level_output_assert_joins_every_disjunct_in_assert_order() -> None:
    text = declare(1, 3) + unit_box(1) + """
    (assert (or (and (<= Y_0 -1e-06)) (and (>= Y_2 0.1))))
    (assert (<= Y_1 0.045))
    """
    prop = parse_vnnlib_text(text)
    assert rows_of(prop) == [
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [-1e-06, 0.045]),
        ([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], [-0.1, 0.045]),
    ]


def test_single_output_assert_gives_one_disjunct_with_one_row() -> None:
    prop = parse_vnnlib_text(declare(2, 2) + unit_box(2) + "(assert (>= Y_1 3.5))")
    assert rows_of(prop) == [([[0.0, -1.0]], [-3.5])]


def test_linear_terms_are_normalised() -> None:
    text = declare(2, 3) + """
    (assert (<= (* 2 X_0) 1))            ; X_0 <= 0.5
    (assert (>= (- X_0) 1))              ; X_0 <= -1 (tighter)
    (assert (<= (/ (- X_0 3) 2) -4))     ; X_0 <= -5 (tightest)
    (assert (>= (+ X_0 (* -1 4)) -10))   ; X_0 >= -6
    (assert (<= -1 X_1 (- 2 1)))         ; chained: -1 <= X_1 <= 1
    (assert (<= (+ Y_0 (* 2 Y_1) (- Y_2) 1) (* 0.5 (- Y_0 4))))
    """
    prop = parse_vnnlib_text(text)
    box = prop.boxes[0]
    assert box.lower.tolist() == [-6.0, -1.0] and box.upper.tolist() == [-5.0, 1.0]
    # Y0 + 2 Y1 - Y2 + 1 <= 0.5 Y0 - 2   <=>   0.5 Y0 + 2 Y1 - Y2 <= -3
    assert rows_of(prop) == [([[0.5, 2.0, -1.0]], [-3.0])]


def test_conjunction_of_ors_expands_to_cross_product() -> None:
    text = declare(1, 2) + unit_box(1) + """
    (assert (or (<= Y_0 1) (<= Y_0 2)))
    (assert (or (>= Y_1 3) (>= Y_1 4)))
    """
    prop = parse_vnnlib_text(text)
    assert [rhs for _, rhs in rows_of(prop)] == [[1.0, -3.0], [1.0, -4.0], [2.0, -3.0], [2.0, -4.0]]


def test_nested_or_inside_and_and_constant_atoms() -> None:
    text = declare(1, 1) + """
    (assert (and (<= X_0 1) (>= X_0 0) (or (<= Y_0 1) (and (<= 2 1) (<= Y_0 7)) (and true (>= Y_0 9)))))
    (assert (<= 0 1))
    """
    prop = parse_vnnlib_text(text)
    assert rows_of(prop) == [([[1.0]], [1.0]), ([[-1.0]], [-9.0])]  # the (<= 2 1) branch is dropped


def test_unsatisfiable_and_empty_boxes_give_no_boxes() -> None:
    assert parse_vnnlib_text(declare(1, 1) + unit_box(1) + "(assert (<= 3 2))").boxes == []
    text = declare(1, 1) + "(assert (or (and (>= X_0 2) (<= X_0 1) (<= Y_0 0)) (and (>= X_0 0) (<= X_0 1))))"
    prop = parse_vnnlib_text(text)
    assert len(prop.boxes) == 1 and prop.boxes[0].lower.tolist() == [0.0]
    assert rows_of(prop) == [([], [])]  # no output rows: every input in the box violates


def test_deep_nesting_does_not_recurse() -> None:
    depth = 5000
    formula = "(and " * depth + "(<= Y_0 1)" + ")" * depth
    term = "(+ " * depth + "Y_0" + ")" * depth
    prop = parse_vnnlib_text(declare(1, 1) + unit_box(1) + f"(assert {formula})\n(assert (<= {term} 2))")
    assert rows_of(prop) == [([[1.0], [1.0]], [1.0, 2.0])]
    ors = "(or (<= Y_0 0) " * depth + "(<= Y_0 0)" + ")" * depth
    assert parse_vnnlib_text(declare(1, 1) + unit_box(1) + f"(assert {ors})").n_disjuncts == depth + 1


def test_dnf_blow_up_is_refused() -> None:
    factor = "(assert (or " + " ".join(f"(<= Y_0 {i})" for i in range(10)) + "))\n"
    text = declare(1, 1) + unit_box(1) + factor * 6  # 10**6 terms
    with pytest.raises(SpecError, match=f"more than {MAX_DNF_TERMS}") as info:
        parse_vnnlib_text(text, "big.vnnlib")
    assert info.value.line == 4 + 6  # 2 declarations + 2 bound lines, then the sixth factor (10**6 terms)


# ---- errors name file, line and column -----------------------------------------------------------------

MALFORMED = [
    # (text, line, column, message fragment)
    ("(declare-const X_0 Real)\n(assert (<= X_0 1)\n", 2, 1, "never closed"),
    ("(declare-const X_0 Real))\n", 1, 25, "without a matching"),
    ("(declare-const X_0 Real)\n(assert (foo X_0 1))", 2, 10, "unknown operator 'foo'"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1))\n  (assert (>= X_7 0))", 3, 15, "undeclared variable X_7"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 1.2.3))", 2, 17, "malformed number '1.2.3'"),
    ("(declare-const X_0 Real)\n(assert (<= X_0 inf))", 2, 17, "unknown token 'inf'"),
    ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(assert (<= (* X_0 X_1) 1))", 3, 20, "non-linear"),
    ("(declare-const X_0 Real)\n(assert (<= (/ 1 X_0) 1))", 2, 18, "division by a variable"),
    ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(assert (<= X_0 X_1))", 3, 9, "several inputs"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (or (<= X_0 Y_0) (<= Y_0 1)))", 3, 13,
     "input and output variables"),
    ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))", 1, 16, "no finite lower bound"),
    ("(declare-const X_0 Real)\n(declare-const X_2 Real)\n", 2, 16, "X_1 is not declared"),
    ("(declare-const X_0 Int)\n", 1, 20, "unsupported sort 'Int'"),
    ("(declare-const Z_0 Real)\n", 1, 16, "unsupported variable name 'Z_0'"),
    ("(declare-const X_0 Real)\n(declare-const X_0 Real)\n", 2, 16, "declared twice"),
    ("(declare-const X_0 Real)\n(assert (not (<= X_0 1)))", 2, 10, "unsupported operator 'not'"),
    ("(declare-const X_0 Real)\n; comment (\n(frobnicate X_0)", 3, 2, "unknown command 'frobnicate'"),
    ("(declare-const X_0 Real)\n\t(assert (<= X_0 1) (>= X_0 0))", 2, 2, "exactly one formula"),
]


@pytest.mark.parametrize(("text", "line", "column", "fragment"), MALFORMED)
def test_malformed_input_reports_location(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_vnnlib_text(text, "bad.vnnlib")
    err = info.value
    assert (err.path, err.line, err.column) == ("bad.vnnlib", line, column), str(err)
    assert str(err).startswith(f"bad.vnnlib:{line}:{column}: ")
    assert fragment in str(err)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read file"):
        parse_vnnlib(tmp_path / "absent.vnnlib")


def test_file_and_text_agree(tmp_path: Path) -> None:
    text = declare(1, 2) + unit_box(1) + "(assert (or (and (>= Y_0 Y_1))))"
    path = tmp_path / "p.vnnlib"
    path.write_text(text)
    prop = parse_vnnlib(path)
    assert prop.source == str(path) and rows_of(prop) == rows_of(parse_vnnlib_text(text))


# ---- every shared benchmark file -----------------------------------------------------------------------

def _benchmark_dirs() -> list[str]:
    return sorted(p.name for p in BENCHMARKS.glob("*") if (p / "vnnlib").is_dir()) if BENCHMARKS.is_dir() else []


@cache
def _parsed(path: str) -> Property:
    return parse_vnnlib(path)


@cache
def _onnx_sizes(path: str) -> tuple[int, int]:
    """(number of inputs, number of outputs) of an ONNX model: product of its fixed dimensions."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(path, load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}

    def size(value) -> int:
        return math.prod(d.dim_value for d in value.type.tensor_type.shape.dim if d.HasField("dim_value"))

    inputs = [v for v in model.graph.input if v.name not in initializers]
    return size(inputs[0]), size(model.graph.output[0])


def _require_shared() -> None:
    if not BENCHMARKS.is_dir():
        pytest.skip(f"shared benchmarks not found at {BENCHMARKS}")


@pytest.mark.parametrize("benchmark_name", _benchmark_dirs() or ["<none>"])
def test_shared_files_parse_and_match_their_models(benchmark_name: str) -> None:
    _require_shared()
    folder = BENCHMARKS / benchmark_name
    files = sorted((folder / "vnnlib").glob("*.vnnlib"))
    assert files
    for path in files:
        prop = _parsed(str(path))
        assert prop.boxes, path
        for box in prop.boxes:
            assert np.all(np.isfinite(box.lower)) and np.all(np.isfinite(box.upper))
            assert np.all(box.lower <= box.upper)
            assert box.disjuncts
            for d in box.disjuncts:
                assert d.C.shape == (d.rhs.shape[0], prop.n_outputs)
    with open(folder / "instances.csv", newline="") as f:
        for onnx_rel, vnnlib_rel, *_ in csv.reader(f):
            prop = _parsed(str(folder / vnnlib_rel))
            assert (prop.n_inputs, prop.n_outputs) == _onnx_sizes(str(folder / onnx_rel)), vnnlib_rel


def _shared_file(relative: str) -> Property:
    _require_shared()
    path = BENCHMARKS / relative
    if not path.is_file():
        pytest.skip(f"{relative} not in the shared set")
    return _parsed(str(path))


def test_acasxu_prop_1() -> None:
    prop = _shared_file("acasxu_control/vnnlib/prop_1.vnnlib")
    assert (prop.n_inputs, prop.n_outputs, len(prop.boxes), prop.n_disjuncts) == (5, 5, 1, 1)
    box = prop.boxes[0]
    assert box.lower.tolist() == [0.6, -0.5, -0.5, 0.45, -0.5]
    assert box.upper.tolist() == [0.679857769, 0.5, 0.5, 0.5, -0.45]
    assert rows_of(prop) == [([[-1.0, 0.0, 0.0, 0.0, 0.0]], [-3.991125645861615])]  # Y_0 >= 3.99...


def test_acasxu_prop_7_two_disjuncts_of_three_rows() -> None:
    prop = _shared_file("acasxu_control/vnnlib/prop_7.vnnlib")
    (first_C, first_rhs), (second_C, second_rhs) = rows_of(prop)
    assert first_C == [[-1, 0, 0, 1, 0], [0, -1, 0, 1, 0], [0, 0, -1, 1, 0]] and first_rhs == [0, 0, 0]
    assert second_C == [[-1, 0, 0, 0, 1], [0, -1, 0, 0, 1], [0, 0, -1, 0, 1]] and second_rhs == [0, 0, 0]


def test_eran_file_has_nine_one_row_disjuncts_against_the_label() -> None:
    prop = _shared_file("eran_mnist_2021/vnnlib/mnist_spec_idx_1013_eps_0.01500.vnnlib")
    assert (prop.n_inputs, prop.n_outputs, len(prop.boxes), prop.n_disjuncts) == (784, 10, 1, 9)
    assert prop.boxes[0].upper[783] == 0.015 and prop.boxes[0].lower[783] == 0.0
    for other, d in zip(range(9), prop.boxes[0].disjuncts, strict=True):  # Y_other >= Y_9
        expected = np.zeros(10)
        expected[9], expected[other] = 1.0, -1.0
        assert d.C.tolist() == [expected.tolist()] and d.rhs.tolist() == [0.0]


def test_nn4sys_file_has_240_boxes() -> None:
    prop = _shared_file("nn4sys_mscn_subset/vnnlib/cardinality_1_240_128_dual.vnnlib")
    assert (prop.n_inputs, prop.n_outputs, len(prop.boxes), prop.n_disjuncts) == (308, 1, 240, 240)
    rows = [rows_of(prop, b)[0] for b in range(240)]
    assert rows.count(([[1.0]], [-1e-5])) == 218 and rows.count(([[-1.0]], [-1e-5])) == 22
    assert prop.boxes[0].lower[5] == prop.boxes[0].upper[5] == 1.0  # (>= X_5 1.0) (<= X_5 1.0)


def test_lsnc_outside_row_in_every_disjunct() -> None:
    prop = _shared_file("lsnc_2024/vnnlib/quadrotor2d_output_1.vnnlib")
    assert (prop.n_inputs, prop.n_outputs, len(prop.boxes), prop.n_disjuncts) == (8, 10, 1, 17)
    for d in prop.boxes[0].disjuncts:
        assert d.n_rows == 2
        assert d.C[1].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0] and d.rhs[1] == 0.045
    assert rows_of(prop)[0][0][0] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0] and rows_of(prop)[0][1][0] == -1e-06


def test_cgan_two_sided_output_tolerance() -> None:
    prop = _shared_file(
        "cgan_2023_nonlinear/vnnlib/cGAN_imgSz32_nCh_3_nonlinear_activations_prop_0_input_eps_0.010_output_eps_0.015.vnnlib")
    assert rows_of(prop) == [([[-1.0]], [-0.3502965569496155]), ([[1.0]], [0.3202965557575226])]
    assert prop.boxes[0].lower[1] == prop.boxes[0].upper[1] == 0.054607685655355453
