"""The public Python API: ``verify(model, spec, ...) -> Result``."""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import torch

from .errors import UnsupportedOperatorsError
from .graph.onnx_import import load_graph
from .io.vnnlib2 import parse_query
from .ops.base import UnsupportedInput
from .pipeline import Options, Result, Verifier
from .spec import Property

__all__ = ["verify", "Options", "Result"]


def _export_module(module: torch.nn.Module, input_shape: tuple[int, ...], folder: str) -> str:
    """Export a PyTorch module to ONNX so that the same graph import and onnxruntime replay apply."""
    path = os.path.join(folder, "model.onnx")
    module = module.eval().to("cpu", torch.float32)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (torch.zeros(*input_shape),), path, dynamo=False, opset_version=17)
    return path


def verify(
    model: str | os.PathLike | torch.nn.Module,
    spec: str | os.PathLike | Property,
    timeout: float | None = None,
    device: str = "cpu",
    input_shape: tuple[int, ...] | None = None,
    **options,
) -> Result:
    """Verify a VNN-LIB property of a model.

    ``model``: an ONNX file, or a ``torch.nn.Module`` (exported to ONNX first; give ``input_shape``,
    default ``(1, n_inputs)``). ``spec``: a VNN-LIB file (1.0 or 2.0, detected) or a parsed ``Property``. Extra keyword
    arguments set fields of ``pipeline.Options``. Returns a ``Result`` whose ``verdict`` is
    ``sat`` (with a counterexample replayed on onnxruntime), ``unsat`` (proved), ``unknown`` or
    ``timeout``. Raises ``CurveboundError`` subclasses for unreadable files.
    """
    started = time.monotonic()
    prop = spec if isinstance(spec, Property) else parse_query(spec)
    opts = Options(timeout=timeout, device=device, **options)
    with tempfile.TemporaryDirectory(prefix="curvebound-") as folder:
        if isinstance(model, torch.nn.Module):
            path = _export_module(model, input_shape or (1, prop.n_inputs), folder)
        else:
            path = str(Path(model))
        try:
            graph = load_graph(path)
        except UnsupportedOperatorsError as exc:
            return Result("unknown", reason=str(exc))
        if timeout is not None:  # loading and parsing count against the limit; keep a reserve for a
            # branch-and-bound round in flight when the deadline passes (5%, at most 3 s, + 0.5 s)
            reserve = min(3.0, 0.05 * timeout) + 0.5
            opts.timeout = max(0.0, timeout - (time.monotonic() - started) - reserve)
        try:
            return Verifier(graph, prop, path, opts).run()
        except UnsupportedInput as exc:
            return Result("unknown", reason=f"cannot bound soundly: {exc}")
