"""The property normal form every stage of curvebound works with.

A property over a network f: R^n_inputs -> R^n_outputs is a finite disjunction of unsafe regions:

    violated  <=>  exists box B, x in B, disjunct D of B with  D.C @ f(x) <= D.rhs  (all rows)

Boxes are axis-aligned with finite bounds, lower <= upper elementwise. Strict inequalities of the source
file are represented as non-strict ones (the closure of the unsafe set), which is sound for verification.
``io/vnnlib.py`` produces this form; nothing downstream reads VNN-LIB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class Disjunct:
    """One unsafe output region ``{y : C @ y <= rhs}`` (all rows hold at once).

    ``C`` is ``[rows, n_outputs]`` float64, ``rhs`` is ``[rows]`` float64; zero rows means "any output"."""

    C: np.ndarray
    rhs: np.ndarray

    def __post_init__(self) -> None:
        self.C = np.asarray(self.C, dtype=np.float64)
        self.rhs = np.asarray(self.rhs, dtype=np.float64)
        if self.C.ndim != 2 or self.rhs.ndim != 1 or self.C.shape[0] != self.rhs.shape[0]:
            raise ValueError(f"Disjunct needs C [rows, n_outputs] and rhs [rows]; got {self.C.shape}, "
                             f"{self.rhs.shape}")

    @property
    def n_rows(self) -> int:
        return int(self.C.shape[0])

    def satisfied_by(self, y: np.ndarray, atol: float = 0.0) -> bool:
        """True iff ``C @ y <= rhs + atol`` in every row, i.e. output ``y`` lies in this unsafe region."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        return bool(np.all(self.C @ y <= self.rhs + atol))


@dataclass(eq=False)
class InputBox:
    """An input box ``lower <= x <= upper`` (``[n_inputs]`` float64 each, finite) and the unsafe output
    regions that apply to it: the property is violated iff some x in the box makes some disjunct hold."""

    lower: np.ndarray
    upper: np.ndarray
    disjuncts: list[Disjunct] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lower = np.asarray(self.lower, dtype=np.float64)
        self.upper = np.asarray(self.upper, dtype=np.float64)
        if self.lower.ndim != 1 or self.lower.shape != self.upper.shape:
            raise ValueError(f"InputBox needs lower and upper of equal shape [n_inputs]; got "
                             f"{self.lower.shape}, {self.upper.shape}")

    def contains(self, x: np.ndarray, atol: float = 0.0) -> bool:
        """True iff ``lower - atol <= x <= upper + atol`` elementwise (x flattened)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return bool(np.all(x >= self.lower - atol) and np.all(x <= self.upper + atol))


@dataclass(eq=False)
class Property:
    """A whole specification: violated iff some box has an input whose output satisfies one of that box's
    disjuncts. An empty ``boxes`` list means the property can never be violated. ``source`` is the file."""

    boxes: list[InputBox]
    n_inputs: int
    n_outputs: int
    source: str = ""

    def __post_init__(self) -> None:
        for box in self.boxes:
            if box.lower.shape != (self.n_inputs,):
                raise ValueError(f"box has {box.lower.shape[0]} inputs, property has {self.n_inputs}")
            for disjunct in box.disjuncts:
                if disjunct.C.shape[1] != self.n_outputs:
                    raise ValueError(f"disjunct has {disjunct.C.shape[1]} outputs, "
                                     f"property has {self.n_outputs}")

    @property
    def n_disjuncts(self) -> int:
        """Total number of (box, disjunct) pairs."""
        return sum(len(box.disjuncts) for box in self.boxes)

    def is_counterexample(self, x: np.ndarray, y: np.ndarray, atol: float = 0.0) -> bool:
        """True iff input ``x`` lies in some box and output ``y`` satisfies one of that box's disjuncts."""
        return any(box.contains(x, atol) and any(d.satisfied_by(y, atol) for d in box.disjuncts)
                   for box in self.boxes)
