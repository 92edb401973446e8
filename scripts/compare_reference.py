"""Compare curvebound's IBP, CROWN and alpha-CROWN bounds with auto_LiRPA's reference bounds.

For every instance recorded in ``shared/reference/bounds/<bench>.json`` (see
``shared/reference/README.md`` sections 1-2) this computes our lower bound of every disjunct row
``C_d[r] . f(x) - rhs_d[r]`` over the instance's input box with each method, and prints one
markdown table per benchmark: the *instance value* ``min_d max_r lower[r]`` of the reference and
of ours, per method, then a summary of how often ours is within 1% of the reference or tighter.

"Within 1%" means ``ours >= ref - 0.01 * max(|ref|, 1e-6)`` (our value is a lower bound, so higher
is tighter). A failure (``UnsupportedInput``, an import error, a time cap) is printed in the row.

Usage::

    python scripts/compare_reference.py --bench acasxu_control --bench lsnc_2024 --limit 3
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from curvebound.bounds.alpha import AlphaOptions, optimize_spec_bound
from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.bounds.ibp import ibp
from curvebound.graph.ir import Graph
from curvebound.graph.onnx_import import load_graph
from curvebound.io.vnnlib import parse_vnnlib
from curvebound.ops.base import Interval

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
METHODS = ("IBP", "CROWN", "alpha-CROWN")
DEFAULT_BENCHES = ("acasxu_control", "eran_mnist_2021", "lsnc_2024", "nln2020_mnist_sigmoid_tanh")


class _TimeCap(Exception):
    """A method ran past ``--time-cap`` (checked between stages; alpha-CROWN stops at the deadline)."""


@dataclass
class Row:
    """One instance: per method the reference and our instance value (or a failure reason)."""

    onnx: str
    vnnlib: str
    reference: dict[str, float | str] = field(default_factory=dict)
    ours: dict[str, float | str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def instance_value(lowers: list[list[float]]) -> float:
    """``min_d max_r lower[d][r]`` (a disjunct without rows can never be refuted: -inf)."""
    return min((max(rows) if rows else -math.inf) for rows in lowers)


def load_reference(bench: str) -> dict[tuple[str, str], dict[str, dict]]:
    """Records of one benchmark keyed by (onnx, vnnlib), then by method."""
    records = json.loads((SHARED / "reference" / "bounds" / f"{bench}.json").read_text())
    out: dict[tuple[str, str], dict[str, dict]] = {}
    for record in records:
        out.setdefault((record["onnx"], record["vnnlib"]), {})[record["method"]] = record
    return out


def reference_value(record: dict | None) -> float | str:
    if record is None:
        return "missing"
    if "disjuncts" not in record:
        return str(record.get("error") or record.get("skipped") or "no bounds")[:60]
    return instance_value([d["lower"] for d in record["disjuncts"]])


def _alpha_options(patience: int | None) -> AlphaOptions:
    # the reference optimizes without a right-hand side: no stop at refutation, for a fair comparison
    options = AlphaOptions(iterations=100, lr=0.1, until_refuted=False)
    if patience is not None:
        options.patience = patience
    return options


def our_bounds(graph: Graph, prop, method: str, cap: float, patience: int | None = None) -> list[list[float]]:
    """Per (box, disjunct) in file order, our lower bound of every row ``C y - rhs``."""
    shape = graph.input_shape
    start = time.monotonic()
    deadline = start + cap
    out: list[list[float]] = []
    for box in prop.boxes:
        region = Interval(torch.as_tensor(box.lower, dtype=torch.float64).reshape(1, *shape),
                          torch.as_tensor(box.upper, dtype=torch.float64).reshape(1, *shape))
        counts = [d.n_rows for d in box.disjuncts]
        C = torch.as_tensor(np.concatenate([d.C for d in box.disjuncts]), dtype=torch.float64)
        rhs = torch.as_tensor(np.concatenate([d.rhs for d in box.disjuncts]), dtype=torch.float64)
        groups = torch.as_tensor(np.repeat(np.arange(len(counts)), counts))
        if method == "IBP":
            with torch.no_grad():
                lower = spec_lower_bound(graph, ibp(graph, region), C[:, None, :], method="ibp")
        else:
            with torch.no_grad():
                bounds = intermediate_bounds(graph, region)
                lower = spec_lower_bound(graph, bounds, C[:, None, :])
            if time.monotonic() > deadline:
                raise _TimeCap(f"CROWN took {time.monotonic() - start:.1f}s > cap")
            if method == "alpha-CROWN":
                result = optimize_spec_bound(graph, region, C[:, None, :], rhs, groups, bounds, lower,
                                             _alpha_options(patience), deadline=deadline)
                lower = result.lower
        margins = (lower[:, 0] - rhs).tolist()
        pos = 0
        for n in counts:
            out.append(margins[pos:pos + n])
            pos += n
    return out


def compare_instance(bench: str, onnx_rel: str, vnnlib_rel: str, records: dict[str, dict], cap: float,
                     patience: int | None = None) -> Row:
    row = Row(onnx_rel, vnnlib_rel)
    for method in METHODS:
        row.reference[method] = reference_value(records.get(method))
    folder = SHARED / "benchmarks" / bench
    try:
        graph = load_graph(folder / onnx_rel)
        prop = parse_vnnlib(folder / vnnlib_rel)
    except Exception as exc:  # every failure goes into the table
        for method in METHODS:
            row.ours[method] = f"{type(exc).__name__}: {exc}"[:80]
        return row
    expected = [d["C_rows"] for d in (records.get("CROWN") or {}).get("disjuncts", [])]
    got = [d.n_rows for box in prop.boxes for d in box.disjuncts]
    if expected and expected != got:
        for method in METHODS:
            row.ours[method] = f"row layout differs from the reference ({got} vs {expected})"
        return row
    for method in METHODS:
        t = time.monotonic()
        try:
            row.ours[method] = instance_value(our_bounds(graph, prop, method, cap, patience))
        except Exception as exc:  # UnsupportedInput, _TimeCap, ...
            row.ours[method] = f"{type(exc).__name__}: {exc}"[:80]
        row.seconds[method] = time.monotonic() - t
    return row


def within(ours: float | str, ref: float | str, rel: float = 0.01) -> bool | None:
    """Ours within ``rel`` of the reference or tighter (None when either side has no number)."""
    if isinstance(ours, str) or isinstance(ref, str):
        return None
    if math.isinf(ref) and ref < 0:
        return True
    return ours >= ref - rel * max(abs(ref), 1e-6)


def fmt(v: float | str) -> str:
    return v if isinstance(v, str) else f"{v:.5g}"


def print_bench(bench: str, rows: list[Row]) -> None:
    print(f"\n### {bench}\n")
    header = ["instance"] + [f"{m} ref / ours" for m in METHODS] + ["our s (IBP/CROWN/alpha)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [f"{Path(r.onnx).stem} {Path(r.vnnlib).stem}"]
        for m in METHODS:
            mark = within(r.ours.get(m, "n/a"), r.reference[m])
            flag = "" if mark is None or mark else " **looser**"
            cells.append(f"{fmt(r.reference[m])} / {fmt(r.ours.get(m, 'n/a'))}{flag}")
        cells.append("/".join(f"{r.seconds.get(m, 0.0):.1f}" for m in METHODS))
        print("| " + " | ".join(cells) + " |")
    print()
    for m in METHODS:
        marks = [within(r.ours.get(m, "n/a"), r.reference[m]) for r in rows]
        comparable = [k for k in marks if k is not None]
        print(f"- {m}: ours within 1% or tighter on {sum(comparable)}/{len(comparable)} comparable instances"
              f" ({len(marks) - len(comparable)} without a number on one side)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="append", help="benchmark (repeatable); default: four ReLU/S-shaped ones")
    parser.add_argument("--limit", type=int, default=None, help="at most N instances per benchmark")
    parser.add_argument("--time-cap", type=float, default=120.0, help="seconds per method per instance")
    parser.add_argument("--patience", type=int, default=None, help="alpha-CROWN early-stop patience (default: ours)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for bench in args.bench or DEFAULT_BENCHES:
        reference = load_reference(bench)
        keys = list(reference)[: args.limit] if args.limit else list(reference)
        rows = []
        for onnx_rel, vnnlib_rel in keys:
            records = reference[(onnx_rel, vnnlib_rel)]
            rows.append(compare_instance(bench, onnx_rel, vnnlib_rel, records, args.time_cap, args.patience))
        print_bench(bench, rows)


if __name__ == "__main__":
    main()
