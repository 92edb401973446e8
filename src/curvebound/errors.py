"""Errors the user sees. Each names the file (and node, or line and column) and what is wrong;
the CLI prints the message alone, never a stack trace."""

from __future__ import annotations


class CurveboundError(Exception):
    """Base of every error curvebound reports to the user."""


class ModelError(CurveboundError):
    """The model file cannot be read or contains something curvebound cannot handle."""


class UnsupportedOperatorsError(ModelError):
    """The model uses ONNX operators curvebound has no sound relaxation for. ``unsupported`` lists
    ``(op_type, node_name)`` pairs; the verdict for such a model is ``unknown``."""

    def __init__(self, path: str, unsupported: list[tuple[str, str]]):
        self.path = path
        self.unsupported = unsupported
        listing = ", ".join(f"{op} (node {name!r})" for op, name in unsupported)
        super().__init__(f"{path}: unsupported ONNX operators: {listing}")


class SpecError(CurveboundError):
    """A VNN-LIB file is malformed; the message names file, line and column."""

    def __init__(self, path: str, line: int, column: int, message: str):
        self.path, self.line, self.column = path, line, column
        super().__init__(f"{path}:{line}:{column}: {message}")


class TimeLimitReached(Exception):
    """Raised inside long computations when the wall-clock deadline has passed; the pipeline turns
    it into the verdict ``timeout``. Not a user error."""


def check_deadline(deadline: float | None) -> None:
    """Raise ``TimeLimitReached`` if ``deadline`` (a ``time.monotonic()`` value) has passed."""
    import time

    if deadline is not None and time.monotonic() > deadline:
        raise TimeLimitReached()
