"""Certified vs sampled local Lipschitz constants on the shared benchmark models.

For each (model, first VNN-LIB box of that model in instances.csv, norm, output): the certified upper
bound (CROWN on the Jacobian-augmented graph, with and without alpha), the sampled lower bound, their
ratio and the wall time. Prints a Markdown table.

    python scripts/lipschitz_bench.py [--all-outputs] [--norms inf,2] [--threads 1]

(--all-outputs only for models with at most 100 inputs.)
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from curvebound.io.vnnlib import parse_vnnlib
from curvebound.lipschitz import lipschitz_bound
from curvebound.ops.base import Interval

BENCHMARKS = Path("/work/shared/benchmarks")
MODELS = [
    ("eran_mnist_2021", "ffnnSIGMOID__Point_6x200.onnx"),
    ("lsnc_2024", "quadrotor2d_state.onnx"),
    ("lsnc_2024", "quadrotor2d_output.onnx"),
]


def first_box(benchmark: str, onnx_name: str) -> tuple[Path, Interval, str]:
    folder = BENCHMARKS / benchmark
    with open(folder / "instances.csv") as fh:
        for row in csv.reader(fh):
            if row and Path(row[0]).name == onnx_name:
                prop = parse_vnnlib(folder / row[1])
                lower = np.min([b.lower for b in prop.boxes], axis=0)
                upper = np.max([b.upper for b in prop.boxes], axis=0)
                return folder / row[0], Interval(torch.as_tensor(lower), torch.as_tensor(upper)), Path(row[1]).name
    raise FileNotFoundError(f"no instance for {onnx_name} in {benchmark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all-outputs", action="store_true", help="also bound all outputs at once")
    parser.add_argument("--norms", default="inf,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-budget", type=float, default=30.0, help="per run, for the alpha phases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | box | norm | output | alpha | certified upper | sampled lower | ratio | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for benchmark, onnx_name in MODELS:
        model, box, vnnlib = first_box(benchmark, onnx_name)
        for norm in args.norms.split(","):
            small = int(np.prod(box.lower.shape)) <= 100  # all outputs only where that is fast
            for output in [0, None] if args.all_outputs and small else [0]:
                for alpha in (False, True):
                    start = time.monotonic()
                    r = lipschitz_bound(str(model), box, norm=norm, output=output, alpha=alpha,
                                        time_budget=args.time_budget)
                    seconds = time.monotonic() - start
                    print(f"| {onnx_name} | {vnnlib} | {norm} | {'all' if output is None else output} | "
                          f"{'yes' if alpha else 'no'} | {r.upper:.5g} | {r.lower:.5g} | {r.ratio:.3f} | "
                          f"{seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
