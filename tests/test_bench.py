"""``curvebound bench``: contradictions with known answers, resume, process pool, kill on overrun, Ray."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from curvebound import bench
from curvebound.bench import bench_command, is_contradiction, load_instances, run_bench, run_instance

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_suite(root: Path, wrong_answer: bool = True) -> Path:
    """A 3-instance benchmark: toy.onnx with the robust (unsat) and attackable (sat) properties, and the
    robust property again in VNN-LIB 2.0. known_answers.csv says 'sat' for the robust one (wrong)."""
    folder = root / "toy_suite"
    (folder / "onnx").mkdir(parents=True)
    (folder / "vnnlib").mkdir()
    shutil.copy(EXAMPLES / "toy.onnx", folder / "onnx" / "toy.onnx")
    for name in ("toy_robust.vnnlib", "toy_attackable.vnnlib"):
        shutil.copy(EXAMPLES / name, folder / "vnnlib" / name)
    from tests.io.test_vnnlib2 import ROBUST_V2

    (folder / "vnnlib" / "robust_v2.vnnlib").write_text(ROBUST_V2)
    instances = [("onnx/toy.onnx", "vnnlib/toy_robust.vnnlib"), ("onnx/toy.onnx", "vnnlib/toy_attackable.vnnlib"),
                 ("onnx/toy.onnx", "vnnlib/robust_v2.vnnlib")]
    answers = ["sat" if wrong_answer else "unsat", "sat", "unsat?"]
    (folder / "instances.csv").write_text("".join(f"{o},{v},60\n" for o, v in instances))
    (folder / "known_answers.csv").write_text(
        "onnx,vnnlib,timeout,answer\n" + "".join(f"{o},{v},60,{a}\n" for (o, v), a in zip(instances, answers)))
    return folder


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_contradictions_and_answers():
    assert is_contradiction("sat", "unsat") and is_contradiction("sat", "unsat?") and is_contradiction("unsat", "sat")
    assert not is_contradiction("unsat", "unsat?") and not is_contradiction("unknown", "sat")
    assert not is_contradiction("timeout", "unsat") and not is_contradiction("sat", "")


def test_load_instances_reads_folder_or_csv(tmp_path):
    folder = make_suite(tmp_path)
    a = load_instances(folder)
    b = load_instances(folder / "instances.csv", limit=2)
    assert [i.key for i in a[:2]] == [i.key for i in b]
    assert [i.answer for i in a] == ["sat", "sat", "unsat?"]
    assert a[0].benchmark == "toy_suite" and a[0].timeout == 60.0
    with pytest.raises(click.ClickException, match="no instances.csv"):
        load_instances(tmp_path)


def test_bench_pool_counts_the_contradiction_then_resumes(tmp_path, monkeypatch):
    folder = make_suite(tmp_path)
    out = tmp_path / "out"
    report = tmp_path / "report"
    result = CliRunner().invoke(bench_command, [str(folder), "--out", str(out), "--jobs", "2", "--timeout-cap", "30",
                                                "--report", str(report), "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = read_rows(out / "results.csv")
    verdicts = {r["vnnlib"]: r["verdict"] for r in rows}
    assert verdicts == {"vnnlib/toy_robust.vnnlib": "unsat", "vnnlib/toy_attackable.vnnlib": "sat",
                        "vnnlib/robust_v2.vnnlib": "unsat"}
    bad = [r["vnnlib"] for r in rows if r["contradiction"] == "1"]
    assert bad == ["vnnlib/toy_robust.vnnlib"]
    assert "1 contradiction(s)" in result.output
    assert "| toy_suite | 3 | 2 | 1 | 0 | 0 | 0 | 3 | 1 |" in (out / "summary.md").read_text()
    assert all(float(r["peak_mem_mb"]) > 10 for r in rows)  # the child's own max RSS, in MiB
    assert float(next(r for r in rows if r["verdict"] == "unsat")["margin"]) > 0
    page = (report / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and (report / "cactus.png").stat().st_size > 1000

    # resume: nothing left to run
    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished instance was run again")

    monkeypatch.setattr(bench, "run_instance", must_not_run)
    again = run_bench([folder], out, progress=False)
    assert len(again) == 3 and len(read_rows(out / "results.csv")) == 3

    # drop one finished row: only that instance runs again
    kept = [r for r in rows if r["vnnlib"] != "vnnlib/toy_attackable.vnnlib"]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=bench.COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
    calls = []

    def fake(onnx, vnnlib, timeout, slack, threads, options):
        calls.append(Path(vnnlib).name)
        return {"verdict": "sat", "time": 0.5, "margin": float("nan"), "domains": 0, "peak_mem_mb": 1.0}

    monkeypatch.setattr(bench, "run_instance", fake)
    final = run_bench([folder], out, progress=False, jobs=2)
    assert calls == ["toy_attackable.vnnlib"]
    assert [r["vnnlib"] for r in final] == [i.vnnlib for i in load_instances(folder)]  # instance order
    assert len(read_rows(out / "results.csv")) == 3


def test_bench_passes_method_flags_and_samples_evenly(tmp_path, monkeypatch):
    folder = make_suite(tmp_path)
    seen = []

    def fake(onnx, vnnlib, timeout, slack, threads, options):
        seen.append((Path(vnnlib).name, options))
        return {"verdict": "unknown", "time": 0.1, "margin": float("nan"), "domains": 0, "peak_mem_mb": 1.0}

    monkeypatch.setattr(bench, "run_instance", fake)
    result = CliRunner().invoke(bench_command, [str(folder), "--out", str(tmp_path / "out"), "--sample", "2",
                                                "--no-bab", "--branching", "babsr", "--branch-points", "midpoint"])
    assert result.exit_code == 0, result.output
    assert sorted(name for name, _ in seen) == ["toy_attackable.vnnlib", "toy_robust.vnnlib"]  # spread: 1st, 2nd of 3
    assert all(opts["bab"] is False and opts["branching"] == "babsr" and opts["branch_points"] == "midpoint"
               and opts["alpha"] is True for _, opts in seen)


def test_overrunning_child_is_killed():
    payload = run_instance(str(EXAMPLES / "toy.onnx"), str(EXAMPLES / "toy_robust.vnnlib"), timeout=0.01, slack=0.0)
    assert payload["verdict"] == "timeout" and "killed" in payload["reason"]
    assert payload["time"] < 5


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(click.ClickException, match=r"pip install 'curvebound\[ray\]'"):
        bench._import_ray()


def test_ray_local_mode(tmp_path):
    pytest.importorskip("ray")
    folder = make_suite(tmp_path)
    rows = run_bench([folder], tmp_path / "out", ray_address="local", limit=2, jobs=1, threads=1, progress=False,
                     timeout_cap=30)
    assert [r["verdict"] for r in rows] == ["unsat", "sat"]
    assert [r["contradiction"] for r in rows] == ["1", "0"]
