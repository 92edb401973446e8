"""vnncomp_scripts/*.sh on the bundled example: the VNN-COMP calling convention end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "vnncomp_scripts"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CURVEBOUND_CMD"] = f"{sys.executable} -m curvebound.cli"  # this interpreter, installed or not
    env["CURVEBOUND_PID_FILE"] = str(tmp_path / "run.pid")
    return env


def test_prepare_then_run_writes_unsat(tmp_path):
    env = _env(tmp_path)
    onnx, spec = str(ROOT / "examples" / "toy.onnx"), str(ROOT / "examples" / "toy_robust.vnnlib")
    prep = subprocess.run(["bash", str(SCRIPTS / "prepare_instance.sh"), "v1", "test", onnx, spec], env=env,
                          capture_output=True, text=True, timeout=120)
    assert prep.returncode == 0, prep.stderr
    result = tmp_path / "out" / "result.txt"
    result.parent.mkdir()
    run = subprocess.run(["bash", str(SCRIPTS / "run_instance.sh"), "v1", "test", onnx, spec, str(result), "60"],
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    assert result.read_text().splitlines()[0] == "unsat"
    assert not (tmp_path / "run.pid").exists()


def test_prepare_ends_only_the_recorded_leftover_run(tmp_path):
    env = _env(tmp_path)
    leftover = subprocess.Popen(["setsid", "sleep", "60"])  # a stand-in for a verifier left running
    try:
        (tmp_path / "run.pid").write_text(f"{leftover.pid}\n")
        onnx, spec = str(ROOT / "examples" / "toy.onnx"), str(ROOT / "examples" / "toy_robust.vnnlib")
        prep = subprocess.run(["bash", str(SCRIPTS / "prepare_instance.sh"), "v1", "c", onnx, spec], env=env,
                              capture_output=True, text=True, timeout=120)
        assert prep.returncode == 0, prep.stderr
        assert leftover.wait(timeout=10) != 0
        assert not (tmp_path / "run.pid").exists()
    finally:
        if leftover.poll() is None:
            leftover.kill()


def test_scripts_check_the_version_argument(tmp_path):
    for script in ("install_tool.sh", "prepare_instance.sh", "run_instance.sh"):
        proc = subprocess.run(["bash", str(SCRIPTS / script), "v0"], env=_env(tmp_path), capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 1 and "v1" in proc.stderr
