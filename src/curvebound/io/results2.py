"""VNN-LIB 2.0 result files (VNN-COMP 2026).

The first line is the verdict, one of ``sat``, ``unsat``, ``unknown``, ``timed-out`` (VNN-LIB 2.0,
"Command-line Interface"; VNN-COMP 2026 scoring reads ``unsat`` as *holds* and ``sat`` as *violated*).
For ``sat`` the satisfying assignment follows as one typed block per declared variable, in declaration
order (inputs, then outputs), each a header ``NAME TYPE [d0,d1,...]`` and then one value per line in
row-major order (the "textual assignment" that the 2026 scoring script ``counterexamples_v2.py``
parses)::

    sat
    X float32 [1,2]
    -1.9999999
    0.025
    Y float32 [1,3]
    0.1
    0.7
    -0.2

Values are written as the shortest decimal that reads back to the identical float64 (``repr``).
Curvebound's ``timeout`` is written ``timed-out`` and its ``error`` ``unknown``; the reader maps the
words back (and also accepts ``holds``/``violated``/``timeout``/``error``).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from curvebound.io.results import write_text_atomic
from curvebound.io.vnnlib2 import Variable

__all__ = ["VERDICTS2", "write_result2", "read_result2", "flat_counterexample", "default_variables"]

VERDICTS2 = ("sat", "unsat", "unknown", "timed-out")
_TO_V2 = {"sat": "sat", "unsat": "unsat", "unknown": "unknown", "timeout": "timed-out", "error": "unknown"}
_FROM_V2 = {"sat": "sat", "violated": "sat", "unsat": "unsat", "holds": "unsat", "unknown": "unknown",
            "timed-out": "timeout", "timeout": "timeout", "error": "error"}
_HEADER = re.compile(r"^(\S+)\s+(\S+)\s+\[([0-9,\s]*)\]$")


def default_variables(n_inputs: int, n_outputs: int) -> list[Variable]:
    """Variables ``X real [n_inputs]`` and ``Y real [n_outputs]``, for results of 1.0 queries."""
    return [Variable("X", "input", "real", (n_inputs,), "N"), Variable("Y", "output", "real", (n_outputs,), "N")]


def write_result2(path: str | os.PathLike[str], verdict: str, x: np.ndarray | None = None,
                  y: np.ndarray | None = None, variables: list[Variable] | None = None) -> None:
    """Write a 2.0 result file atomically. ``verdict`` is a curvebound verdict (``sat``, ``unsat``,
    ``unknown``, ``timeout``, ``error``) or a 2.0 word. For ``sat``, ``x``/``y`` are the flat input and
    output and ``variables`` the query's declarations (default: ``X``/``Y`` of type ``real``)."""
    word = _TO_V2.get(verdict, verdict)
    if word not in VERDICTS2:
        raise ValueError(f"verdict must be one of {tuple(_TO_V2)} or {VERDICTS2}, not {verdict!r}")
    lines = [word]
    if word == "sat":
        if x is None or y is None:
            raise ValueError("a sat result needs the counterexample input x and output y")
        xs = np.asarray(x, dtype=np.float64).reshape(-1)
        ys = np.asarray(y, dtype=np.float64).reshape(-1)
        variables = variables or default_variables(xs.size, ys.size)
        for var in variables:
            flat = xs if var.kind == "input" else ys
            values = flat[var.offset:var.offset + var.size]
            if values.size != var.size:
                raise ValueError(f"{var.name} {list(var.shape)} needs {var.size} values, the counterexample has "
                                 f"{flat.size - var.offset}")
            lines.append(f"{var.name} {var.element_type.lower()} [{','.join(str(d) for d in var.shape)}]")
            lines += [repr(float(v)) for v in values]
    text = "\n".join(lines) + "\n"
    write_text_atomic(path, text)


def read_result2(path: str | os.PathLike[str]) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """``(verdict, values, types)``: the curvebound verdict (``sat``/``unsat``/``unknown``/``timeout``/
    ``error``), each assigned variable's values as a float64 array of its declared shape, and its
    declared element type. Raises ValueError for a malformed file."""
    lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty result file")
    word = lines[0].lower()
    if word not in _FROM_V2:
        raise ValueError(f"{path}: unknown verdict {lines[0]!r}")
    values: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}
    k = 1
    while k < len(lines):
        match = _HEADER.match(lines[k])
        if not match:
            raise ValueError(f"{path}: line {k + 1}: expected 'NAME TYPE [shape]', got {lines[k]!r}")
        name, type_name, dims = match.groups()
        shape = tuple(int(d) for d in dims.replace(",", " ").split())
        n = math.prod(shape)
        if k + 1 + n > len(lines):
            raise ValueError(f"{path}: {name} {list(shape)} needs {n} values, the file ends first")
        if name in values:
            raise ValueError(f"{path}: {name} assigned twice")
        try:
            values[name] = np.array([float(v) for v in lines[k + 1:k + 1 + n]], dtype=np.float64).reshape(shape)
        except ValueError as exc:
            raise ValueError(f"{path}: bad value for {name}: {exc}") from exc
        types[name] = type_name
        k += 1 + n
    return _FROM_V2[word], values, types


def flat_counterexample(values: dict[str, np.ndarray], variables: list[Variable]) -> tuple[np.ndarray, np.ndarray]:
    """The flat input ``x`` and output ``y`` (float64) of an assignment read by :func:`read_result2`."""
    parts: dict[str, list[tuple[int, np.ndarray]]] = {"input": [], "output": []}
    for var in variables:
        if var.name not in values:
            raise ValueError(f"the assignment lacks {var.name}")
        parts[var.kind].append((var.offset, values[var.name].reshape(-1)))
    x = np.concatenate([v for _, v in sorted(parts["input"], key=lambda p: p[0])] or [np.zeros(0)])
    y = np.concatenate([v for _, v in sorted(parts["output"], key=lambda p: p[0])] or [np.zeros(0)])
    return x, y
