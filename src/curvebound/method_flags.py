"""The method flags shared by ``curvebound verify`` and ``curvebound bench`` (ablations, off the
default path), and their translation into ``curvebound.verify`` keyword arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

_FLAGS = [
    click.option("--no-alpha", is_flag=True, help="Skip alpha-CROWN (CROWN only)."),
    click.option("--no-bab", is_flag=True, help="Skip branch-and-bound (ablation)."),
    click.option("--input-split", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
                 help="Branch on input dimensions instead of neurons (auto: when few input dims are perturbed)."),
    click.option("--branching", type=click.Choice(["bbps", "babsr"]), default="bbps", show_default=True,
                 help="Neuron-branching heuristic (ablation)."),
    click.option("--branch-points", type=click.Choice(["optimized", "midpoint"]), default="optimized",
                 show_default=True, help="Where non-ReLU neurons are split (ablation)."),
    click.option("--relu-only", is_flag=True, help="Branch only on ReLU-like neurons (ablation)."),
    click.option("--filter-top-k", type=click.IntRange(min=0), default=3, show_default=True,
                 help="Choose each neuron split among K candidates by bounding their children (0 or 1: off)."),
]

def method_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the method flags to a click command (its function receives them as keyword arguments)."""
    for flag in reversed(_FLAGS):
        command = flag(command)
    return command


def method_options(no_alpha: bool = False, no_bab: bool = False, input_split: str = "auto", branching: str = "bbps",
                   branch_points: str = "optimized", relu_only: bool = False, filter_top_k: int = 3) -> dict[str, Any]:
    """The ``pipeline.Options`` fields the flags set."""
    return {"alpha": not no_alpha, "bab": not no_bab, "input_split": input_split, "branching": branching,
            "branch_points": branch_points, "relu_only": relu_only, "filter_top_k": filter_top_k}
