"""scripts/widen_specs.py: harder variants of robustness instances, for BaB-vs-no-BaB comparisons."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from curvebound.io.vnnlib2 import parse_query

ROOT = Path(__file__).resolve().parents[1]


def test_input_bounds_move_outward_and_are_clipped(tmp_path):
    bench = tmp_path / "bench"
    (bench / "vnnlib").mkdir(parents=True)
    (bench / "vnnlib" / "p.vnnlib").write_text((ROOT / "examples" / "toy_robust.vnnlib").read_text())
    (bench / "instances.csv").write_text(f"{ROOT / 'examples' / 'toy.onnx'},vnnlib/p.vnnlib,30\n")
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "widen_specs.py"), str(bench), "--delta", "0.1",
                    "--clip", "-2.1", "1", "--out", str(out)], check=True, capture_output=True, timeout=60)
    (row,) = [line.split(",") for line in (out / "instances.csv").read_text().splitlines()]
    assert Path(row[0]) == (ROOT / "examples" / "toy.onnx").resolve() and row[2] == "30"
    before, after = parse_query(bench / "vnnlib" / "p.vnnlib"), parse_query(out / row[1])
    (old,), (new,) = before.boxes, after.boxes
    assert new.lower.tolist() == pytest.approx([-2.1, -0.15])  # -2.15 clipped to -2.1
    assert new.upper.tolist() == pytest.approx([-1.85, 0.15])
    assert len(new.disjuncts) == len(old.disjuncts) == 2
    for a, b in zip(old.disjuncts, new.disjuncts):
        assert a.C.tolist() == b.C.tolist() and a.rhs.tolist() == b.rhs.tolist()
