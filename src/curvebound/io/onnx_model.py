"""Reading ONNX model files: a checked ``onnx.ModelProto`` or a ``ModelError`` naming the file."""

from __future__ import annotations

from pathlib import Path

import onnx

from ..errors import ModelError


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and check an ``.onnx`` file; any failure (missing, unreadable, not ONNX, fails
    ``onnx.checker``) is reported as ``ModelError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several unrelated types
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if len(model.graph.node) == 0 and len(model.graph.output) == 0:
        raise ModelError(f"{path}: not a readable ONNX model (empty graph)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"{path}: invalid ONNX model: {exc}") from exc
    return model
