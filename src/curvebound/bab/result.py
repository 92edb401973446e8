"""What a branch-and-bound run reports back to the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BabOutcome:
    """``status``: "verified" (every domain refuted), "counterexample" (``x`` is a candidate that
    violates the property under curvebound's own forward pass; the pipeline replays it on
    onnxruntime), "unknown" (e.g. nothing left to split), or "timeout".

    ``history`` holds ``(seconds since start, domains left, worst lower-bound margin)`` samples for
    progress reports and plots."""

    status: str
    domains_explored: int = 0
    x: np.ndarray | None = None
    reason: str = ""
    history: list[tuple[float, int, float]] = field(default_factory=list)
