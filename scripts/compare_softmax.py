"""Which Softmax import form gives tighter bounds: ``pairwise`` (``1 / sum_j exp(x_j - x_i)``, the
default) or ``exp_sum`` (``exp(x_i) * 1 / sum_j exp(x_j)``)?

For the first instances of a benchmark (default vit_2023, model pgd_2_3_16) this prints, per form,
the IBP and CROWN instance values ``min_d max_r (lb_r - rhs_r)`` (higher is tighter; > 0 verified)
and the CROWN time.

    python scripts/compare_softmax.py --limit 4
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.bounds.ibp import ibp
from curvebound.graph.onnx_import import SOFTMAX_FORMS, load_graph
from curvebound.io.vnnlib import parse_vnnlib
from curvebound.ops.base import Interval, UnsupportedInput

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


def instance_value(graph, prop, method: str) -> float:
    values = []
    for box in prop.boxes:
        shape = (1, *graph.input_shape)
        region = Interval(torch.as_tensor(box.lower, dtype=torch.float64).reshape(shape),
                          torch.as_tensor(box.upper, dtype=torch.float64).reshape(shape))
        C = torch.as_tensor(np.concatenate([d.C for d in box.disjuncts]), dtype=torch.float64)[:, None, :]
        rhs = np.concatenate([d.rhs for d in box.disjuncts])
        with torch.no_grad():
            bounds = ibp(graph, region) if method == "IBP" else intermediate_bounds(graph, region)
            lower = spec_lower_bound(graph, bounds, C, method="ibp" if method == "IBP" else "crown")
        margins = lower[:, 0].numpy() - rhs
        pos = 0
        for d in box.disjuncts:
            values.append(float(margins[pos:pos + d.n_rows].max()))
            pos += d.n_rows
    return min(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="vit_2023")
    parser.add_argument("--model", default="pgd_2_3_16", help="only instances whose ONNX name contains this")
    parser.add_argument("--limit", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = SHARED / args.bench
    rows = [r for r in csv.reader(open(folder / "instances.csv")) if len(r) == 3 and args.model in r[0]]
    graphs = {form: load_graph(folder / rows[0][0], softmax=form) for form in SOFTMAX_FORMS}
    header = ["instance"] + [f"{form} {m}" for form in SOFTMAX_FORMS for m in ("IBP", "CROWN", "CROWN s")]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for _, vnnlib_rel, _ in rows[: args.limit]:
        prop = parse_vnnlib(folder / vnnlib_rel)
        cells = [Path(vnnlib_rel).stem]
        for form in SOFTMAX_FORMS:
            for method in ("IBP", "CROWN"):
                start = time.monotonic()
                try:
                    cells.append(f"{instance_value(graphs[form], prop, method):.4g}")
                except UnsupportedInput as exc:  # e.g. exp underflows to 0 and 1/sum touches 0
                    cells.append(f"unbounded: {exc}")
            cells.append(f"{time.monotonic() - start:.1f}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
