"""Input-space branch-and-bound on every acasxu_control instance: status, time, domains per instance,
totals, and a check against known_answers.csv (an 'unsat' claim must never meet a 'sat' answer).

    python scripts/bench_input_split.py [--cap 60] [--dtype float64|float32] [--branching sb|naive] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from curvebound.bab.input_split import InputSplitOptions, input_split_bab
from curvebound.graph.onnx_import import load_graph
from curvebound.io.vnnlib import parse_vnnlib
from curvebound.ops.base import Interval

BENCH = Path("/work/shared/benchmarks/acasxu_control")


def rows_of(box, dtype):
    """``C [rows, n_out]``, ``rhs [rows]``, ``groups [rows]`` of every disjunct (as pipeline._stack_rows)."""
    Cs, rhss, groups = [], [], []
    for g, d in enumerate(box.disjuncts):
        Cs.append(np.asarray(d.C, dtype=np.float64))
        rhss.append(np.asarray(d.rhs, dtype=np.float64))
        groups.append(np.full(len(d.rhs), g))
    return (torch.as_tensor(np.concatenate(Cs), dtype=dtype), torch.as_tensor(np.concatenate(rhss), dtype=dtype),
            torch.as_tensor(np.concatenate(groups)))


def run_instance(onnx: Path, vnnlib: Path, cap: float, dtype, options: InputSplitOptions):
    graph = load_graph(onnx).to("cpu", dtype)
    prop = parse_vnnlib(vnnlib)
    start = time.monotonic()
    deadline = start + cap
    status, domains = "unsat", 0
    for box in prop.boxes:  # the property holds iff every box is verified
        C, rhs, groups = rows_of(box, dtype)
        shape = graph.input_shape
        region = Interval(torch.as_tensor(box.lower, dtype=dtype).reshape(1, *shape),
                          torch.as_tensor(box.upper, dtype=dtype).reshape(1, *shape))
        out = input_split_bab(graph, region, C, rhs, groups, deadline=deadline, options=options)
        domains += out.domains_explored
        if out.status == "counterexample":
            y = graph.forward(torch.as_tensor(out.x, dtype=dtype).reshape(1, *shape)).reshape(-1).double().numpy()
            ok = box.contains(out.x, atol=1e-9) and any(d.satisfied_by(y, atol=1e-9) for d in box.disjuncts)
            status = "sat" if ok else "bad-cex"
            break
        if out.status != "verified":
            status = out.status
            break
    return status, time.monotonic() - start, domains


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap", type=float, default=60.0)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--branching", default="sb", choices=["sb", "naive"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="", help="substring filter on 'onnx vnnlib'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    options = InputSplitOptions(branching=args.branching)
    with open(BENCH / "known_answers.csv") as f:
        known = list(csv.DictReader(f))
    totals: dict[str, int] = {}
    total_time, wrong = 0.0, 0
    print(f"{'onnx':34s} {'vnnlib':15s} {'status':9s} {'known':6s} {'time':>7s} {'domains':>8s}")
    for row in known:
        if args.only and args.only not in f"{row['onnx']} {row['vnnlib']}":
            continue
        status, seconds, domains = run_instance(BENCH / row["onnx"], BENCH / row["vnnlib"], args.cap, dtype, options)
        answer = row["answer"]
        clash = {status, answer} == {"sat", "unsat"} or status == "bad-cex"
        wrong += clash
        totals[status] = totals.get(status, 0) + 1
        total_time += seconds
        print(f"{Path(row['onnx']).name:34s} {Path(row['vnnlib']).name:15s} {status:9s} {answer:6s} {seconds:7.2f} "
              f"{domains:8d}{'  WRONG' if clash else ''}", flush=True)
    print(f"totals: {totals}; time {total_time:.1f} s; wrong {wrong}")


if __name__ == "__main__":
    main()
