"""Verdicts on real VNN-COMP instances never contradict the known answers (skipped without ../shared)."""

import csv
from pathlib import Path

import numpy as np
import pytest

import curvebound
from curvebound.io.replay import run_onnx
from curvebound.io.vnnlib import parse_vnnlib

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/benchmarks is absent")


def known_answers(bench: str) -> list[tuple[Path, Path, str]]:
    if not (SHARED / bench / "known_answers.csv").exists():
        return []
    rows = csv.DictReader(open(SHARED / bench / "known_answers.csv"))
    return [(SHARED / bench / r["onnx"], SHARED / bench / r["vnnlib"], r["answer"]) for r in rows]


def contradicts(verdict: str, answer: str) -> bool:
    return (verdict == "sat" and answer.startswith("unsat")) or (verdict == "unsat" and answer == "sat")


def acas_instances():
    return known_answers("acasxu_control")[:12]


@pytest.mark.parametrize("onnx_path,vnnlib_path,answer", acas_instances(),
                         ids=lambda v: v.stem if isinstance(v, Path) else v)
def test_acasxu_never_contradicts_known_answers(onnx_path, vnnlib_path, answer):
    result = curvebound.verify(onnx_path, vnnlib_path, timeout=15)
    assert not contradicts(result.verdict, answer), (result.verdict, answer, result.reason)
    if result.verdict == "sat":
        _assert_replayed(onnx_path, vnnlib_path, result)


def _assert_replayed(onnx_path, vnnlib_path, result):
    cex = result.counterexample
    prop = parse_vnnlib(vnnlib_path)
    box = prop.boxes[cex.box]
    y = run_onnx(onnx_path, cex.x)
    assert np.all(cex.x >= box.lower) and np.all(cex.x <= box.upper)
    assert any(np.all(d.C @ y <= d.rhs) for d in box.disjuncts)


def test_eran_sigmoid_known_sat_instance_is_found_with_replayed_counterexample():
    sat = [(o, v, a) for o, v, a in known_answers("eran_mnist_2021") if a == "sat"]
    assert len(sat) == 1
    onnx_path, vnnlib_path, _ = sat[0]
    result = curvebound.verify(onnx_path, vnnlib_path, timeout=120)
    assert result.verdict == "sat", result.reason
    _assert_replayed(onnx_path, vnnlib_path, result)


def test_eran_unsat_instances_are_never_reported_sat():
    sample = [row for row in known_answers("eran_mnist_2021") if row[2] == "unsat"][::12]
    for onnx_path, vnnlib_path, answer in sample:
        result = curvebound.verify(onnx_path, vnnlib_path, timeout=20, alpha=False)
        assert not contradicts(result.verdict, answer), (onnx_path.name, vnnlib_path.name, result.verdict)
