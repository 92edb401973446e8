"""VNN-COMP result files (design d.4).

Layout: the verdict on the first line; for ``sat`` the counterexample follows as an s-expression::

    sat
    (
    (X_0 0.25)
    ...
    (Y_0 -1.5)
    ...
    )

Values are written as the shortest decimal that reads back to the identical float64 (``repr``).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["VERDICTS", "write_result", "read_result"]

VERDICTS = ("sat", "unsat", "unknown", "timeout", "error")

_PAIR = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


def _format(v: float) -> str:
    return repr(float(v))


def write_result(path: str | os.PathLike[str], verdict: str, x: np.ndarray | None = None,
                 y: np.ndarray | None = None) -> None:
    """Write ``verdict`` (and for ``sat`` the flattened ``x`` and ``y``) to ``path``, atomically: the file
    either keeps its old content or holds the whole new result."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
    lines = [verdict]
    if verdict == "sat":
        if x is None or y is None:
            raise ValueError("a sat result needs the counterexample input x and output y")
        xs = np.asarray(x, dtype=np.float64).reshape(-1)
        ys = np.asarray(y, dtype=np.float64).reshape(-1)
        lines.append("(")
        lines += [f"(X_{i} {_format(v)})" for i, v in enumerate(xs)]
        lines += [f"(Y_{j} {_format(v)})" for j, v in enumerate(ys)]
        lines.append(")")
    text = "\n".join(lines) + "\n"
    write_text_atomic(path, text)


def _vector(values: dict[int, float], name: str, path: str | os.PathLike[str]) -> np.ndarray | None:
    if not values:
        return None
    n = max(values) + 1
    missing = sorted(set(range(n)) - set(values))
    if missing:
        raise ValueError(f"{path}: counterexample lacks {name}_{missing[0]}")
    return np.array([values[i] for i in range(n)], dtype=np.float64)


def read_result(path: str | os.PathLike[str]) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """``(verdict, x, y)`` from a result file; ``x``/``y`` are float64 arrays, or ``None`` when the file
    holds no counterexample. Accepts the counterexample on one line or many."""
    text = Path(path).read_text()
    lines = text.strip().splitlines()
    if not lines:
        raise ValueError(f"{path}: empty result file")
    verdict = lines[0].strip().lower()
    body = "\n".join(lines[1:])
    xs: dict[int, float] = {}
    ys: dict[int, float] = {}
    for kind, index, value in _PAIR.findall(body):
        table = xs if kind == "X" else ys
        i = int(index)
        if i in table:
            raise ValueError(f"{path}: {kind}_{i} given twice")
        table[i] = float(value)
    return verdict, _vector(xs, "X", path), _vector(ys, "Y", path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (readers never see half a file)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
