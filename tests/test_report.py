"""HTML reports: the bench page and the per-instance page with the branch-and-bound progress plot."""

from __future__ import annotations

import pytest

from curvebound.pipeline import BoxReport, Result
from curvebound.report import cactus_data, write_bench_report, write_instance_report

pytest.importorskip("matplotlib")


def test_cactus_data_sorts_solved_times():
    rows = [{"benchmark": "a", "verdict": "unsat", "time": "3.0"},
            {"benchmark": "a", "verdict": "timeout", "time": "9"},
            {"benchmark": "a", "verdict": "sat", "time": "1.5"},
            {"benchmark": "b", "verdict": "unknown", "time": "2"}]
    assert cactus_data(rows) == {"a": [1.5, 3.0], "b": []}


def test_bench_report(tmp_path):
    rows = [{"benchmark": "a", "onnx": "m.onnx", "vnnlib": "p.vnnlib", "verdict": v, "time": t, "margin": "",
             "domains": "0", "peak_mem_mb": "100", "answer": "", "contradiction": c, "reason": ""}
            for v, t, c in [("unsat", "1.0", "0"), ("sat", "2.0", "1"), ("timeout", "5.0", "0")]]
    page = write_bench_report(rows, tmp_path / "r").read_text()
    assert page.count("<img") == 2 and 'class="bad">1<' in page
    assert (tmp_path / "r" / "verdicts.png").read_bytes()[:4] == b"\x89PNG"


def test_instance_report_with_bab_history(tmp_path):
    result = Result("unsat", boxes=[BoxReport(margins={"crown": [-0.5, 0.2], "alpha-crown": [0.1, 0.3]},
                                              refuted=[True, True])], timings={"crown": 0.1, "total": 2.0})
    history = [(0.0, 1, -0.5), (0.5, 4, -0.2), (1.0, 2, -0.05), (1.5, 0, 0.1)]
    path = write_instance_report(result, history, tmp_path / "inst")
    page = path.read_text()
    assert "unsat" in page and "Branch and bound" in page and "0 domains left" in page
    assert page.count("data:image/png;base64,") == 2
    assert (tmp_path / "inst" / "bab_progress.png").stat().st_size > 1000
    # without a history: no BaB section
    page2 = write_instance_report(Result("unknown", reason="r"), [], tmp_path / "inst2").read_text()
    assert "Branch and bound" not in page2 and "reason: r" in page2
