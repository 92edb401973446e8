"""alpha-CROWN's margin trace reaches the result (``BoxReport.alpha_history``) and
``scripts/alpha_trace.py`` prints it."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import curvebound
from curvebound.bounds.alpha import AlphaOptions

from .test_bab_verdicts import Net, spec

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "alpha_trace.py"


def _open_property(tmp_path: Path) -> tuple[Net, Path]:
    net = Net(torch.tanh, seed=0).double()
    with torch.no_grad():
        y = net(torch.rand(20000, 3, dtype=torch.float64) - 0.5)[:, 0]
    path = tmp_path / "p.vnnlib"
    low, span = float(y.min()), float(y.max() - y.min())
    path.write_text(spec(low - 0.03 * span))  # CROWN -0.036, 15 alpha iterations -0.020: still open
    return net.float(), path


def test_alpha_history_is_the_best_margin_per_iteration(tmp_path):
    net, path = _open_property(tmp_path)
    result = curvebound.verify(net, path, bab=False, alpha_options=AlphaOptions(iterations=15, patience=15))
    history = result.boxes[0].alpha_history
    assert result.verdict == "unknown" and len(history) == 15
    margins = [m for _, m in history]
    assert margins == sorted(margins) and margins[-1] < 0  # a running best, still open
    assert margins[0] < margins[-1] == pytest.approx(result.boxes[0].margins["alpha-crown"][0])


def test_alpha_trace_script_prints_the_trace(tmp_path):
    net, path = _open_property(tmp_path)
    model = tmp_path / "m.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.zeros(1, 3),), model, dynamo=False)
    out = subprocess.run([sys.executable, str(SCRIPT), str(model), str(path), "--iterations", "12"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "box 0 (unknown)" in out.stdout and "1it/" in out.stdout and "12it/" in out.stdout
