"""VNN-COMP result files: layout and exact float64 round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from curvebound.io.results import read_result, write_result


def test_sat_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=20) * 10.0 ** rng.integers(-30, 30, size=20),
                        [0.0, -0.0, 1 / 3, 5e-324, -1.7976931348623157e308, 0.1, 1e-7, 1.0]])
    y = rng.normal(size=7)
    path = tmp_path / "res.txt"
    write_result(path, "sat", x, y)
    verdict, x2, y2 = read_result(path)
    assert verdict == "sat"
    assert x2.dtype == np.float64 and y2.dtype == np.float64
    assert np.array_equal(x2.view(np.uint64), x.view(np.uint64))  # identical bits, -0.0 included
    assert np.array_equal(y2.view(np.uint64), y.view(np.uint64))


def test_sat_layout(tmp_path):
    path = tmp_path / "res.txt"
    write_result(path, "sat", np.array([0.5, -1.0]), np.array([[2.25]]))
    assert path.read_text() == "sat\n(\n(X_0 0.5)\n(X_1 -1.0)\n(Y_0 2.25)\n)\n"


@pytest.mark.parametrize("verdict", ["unsat", "unknown", "timeout"])
def test_other_verdicts_have_no_counterexample(tmp_path, verdict):
    path = tmp_path / "res.txt"
    write_result(path, verdict)
    assert path.read_text() == f"{verdict}\n"
    assert read_result(path) == (verdict, None, None)


def test_overwrites_existing_file(tmp_path):
    path = tmp_path / "res.txt"
    write_result(path, "sat", np.array([1.0]), np.array([2.0]))
    write_result(path, "unsat")
    assert path.read_text() == "unsat\n"
    assert [p.name for p in tmp_path.iterdir()] == ["res.txt"]  # no temporary files left


def test_reads_one_line_counterexample(tmp_path):
    path = tmp_path / "res.txt"
    path.write_text("sat\n((X_1 2e-3) (X_0 -1) (Y_0 3.5))\n")
    verdict, x, y = read_result(path)
    assert verdict == "sat"
    np.testing.assert_array_equal(x, [-1.0, 0.002])
    np.testing.assert_array_equal(y, [3.5])


def test_errors(tmp_path):
    path = tmp_path / "res.txt"
    with pytest.raises(ValueError):
        write_result(path, "safe")
    with pytest.raises(ValueError):
        write_result(path, "sat", np.zeros(2))
    path.write_text("sat\n((X_0 1.0) (X_2 2.0) (Y_0 0.0))\n")
    with pytest.raises(ValueError, match="X_1"):
        read_result(path)
    path.write_text("")
    with pytest.raises(ValueError):
        read_result(path)
