"""Replay a candidate counterexample on the original ONNX model in onnxruntime (design d.2, d.4).

A ``sat`` verdict is only reported after this check passes: the input, cast to the model's input dtype,
lies inside the box, and the onnxruntime outputs satisfy every row of some disjunct ``C y <= rhs``
exactly (no tolerance).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curvebound.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime

    from curvebound.spec import InputBox

__all__ = ["Replay", "replay_counterexample", "run_onnx"]

_ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}

_sessions: dict[tuple[str, int], onnxruntime.InferenceSession] = {}
_lock = threading.Lock()


@dataclass
class Replay:
    """Outcome of a replay. ``x`` is the input actually fed to the model (as float64, exactly the
    input-dtype value), ``y`` the flattened first output; ``disjunct`` the first disjunct satisfied."""

    ok: bool
    x: np.ndarray
    y: np.ndarray | None
    disjunct: int | None
    reason: str = ""


def _session(onnx_path: str | os.PathLike[str]) -> onnxruntime.InferenceSession:
    """One cached CPU session per (resolved path, modification time)."""
    import onnxruntime

    path = Path(onnx_path).resolve()
    key = (str(path), path.stat().st_mtime_ns)
    with _lock:
        sess = _sessions.get(key)
        if sess is None:
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            try:
                sess = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ModelError(f"{path}: onnxruntime cannot load the model: {exc}") from exc
            _sessions[key] = sess
    return sess


def _input_spec(sess: onnxruntime.InferenceSession, path: str | os.PathLike[str]
                ) -> tuple[str, list[int], Any]:
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected one model input, found {len(inputs)}")
    inp = inputs[0]
    dtype = _ORT_DTYPES.get(inp.type)
    if dtype is None:
        raise ModelError(f"{path}: unsupported input type {inp.type} for input {inp.name!r}")
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    return inp.name, shape, dtype


def run_onnx(onnx_path: str | os.PathLike[str], x: np.ndarray) -> np.ndarray:
    """Flattened first output (float64) of the ONNX model at flat input ``x``, cast to the input dtype."""
    sess = _session(onnx_path)
    name, shape, dtype = _input_spec(sess, onnx_path)
    feed = np.asarray(x).astype(dtype).reshape(shape)
    out = sess.run(None, {name: feed})[0]
    return np.asarray(out, dtype=np.float64).reshape(-1)


def _cast_into_box(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, dtype: Any) -> np.ndarray:
    """``x`` cast to ``dtype``, each value moved one representable step toward the box when rounding
    pushed it outside."""
    xc = x.astype(dtype)
    below = xc.astype(np.float64) < lower
    xc[below] = np.nextafter(xc[below], np.asarray(np.inf, dtype=dtype))
    above = xc.astype(np.float64) > upper
    xc[above] = np.nextafter(xc[above], np.asarray(-np.inf, dtype=dtype))
    return xc


def replay_counterexample(onnx_path: str | os.PathLike[str], x: np.ndarray, box: InputBox) -> Replay:
    """Check ``x`` against ``box`` on the original ONNX model.

    ``ok`` iff (1) ``x`` (float64) lies in ``[lower, upper]``; (2) its cast to the model's input dtype,
    nudged inward by ``nextafter`` where rounding left the box, still lies in the box; (3) the onnxruntime
    outputs ``y`` satisfy ``C_d y <= rhs_d`` on every row of some disjunct ``d``.
    """
    x64 = np.asarray(x, dtype=np.float64).reshape(-1)
    lower = np.asarray(box.lower, dtype=np.float64).reshape(-1)
    upper = np.asarray(box.upper, dtype=np.float64).reshape(-1)
    if x64.shape != lower.shape:
        return Replay(False, x64, None, None, f"input has {x64.size} values, the box has {lower.size}")
    outside = ~((x64 >= lower) & (x64 <= upper))  # NaN counts as outside
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        return Replay(False, x64, None, None,
                      f"X_{i} = {x64[i]!r} lies outside the box [{lower[i]!r}, {upper[i]!r}]")

    sess = _session(onnx_path)
    _, shape, dtype = _input_spec(sess, onnx_path)
    if int(np.prod(shape)) != x64.size:
        return Replay(False, x64, None, None,
                      f"model input shape {shape} holds {int(np.prod(shape))} values, not {x64.size}")
    xc = _cast_into_box(x64, lower, upper, dtype)
    used = xc.astype(np.float64)
    outside = ~((used >= lower) & (used <= upper))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        return Replay(False, used, None, None,
                      f"no {np.dtype(dtype).name} value of X_{i} lies inside [{lower[i]!r}, {upper[i]!r}]")

    y = run_onnx(onnx_path, xc)
    for d, disjunct in enumerate(box.disjuncts):
        C = np.asarray(disjunct.C, dtype=np.float64)
        rhs = np.asarray(disjunct.rhs, dtype=np.float64).reshape(-1)
        C = C.reshape(rhs.size, -1) if rhs.size else C.reshape(0, y.size)
        if C.shape[1] != y.size:
            return Replay(False, used, y, None,
                          f"the model has {y.size} outputs, the property refers to {C.shape[1]}")
        if bool(np.all(C @ y <= rhs)):
            return Replay(True, used, y, d)
    return Replay(False, used, y, None, "the model outputs lie in no unsafe disjunct")
