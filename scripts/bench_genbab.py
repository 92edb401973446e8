"""Benchmark activation-space BaB (GenBaB) on the ERAN MNIST sigmoid instances.

For each instance: CROWN and alpha-CROWN at the root (the "no BaB" column), then activation BaB on the
disjuncts alpha-CROWN leaves open, once with BaBSR-like branching + midpoints and once with BBPS +
optimized branching points (the table when ``bab.branch_points`` exists, else midpoints). Each run is
capped at ``--timeout`` seconds including its root bounds.

    python scripts/bench_genbab.py --instances 5 --timeout 60
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from curvebound.bab.activation_split import GenBabOptions, activation_bab
from curvebound.bounds.alpha import AlphaOptions, optimize_spec_bound
from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.graph.onnx_import import load_graph
from curvebound.io.vnnlib import parse_vnnlib
from curvebound.ops.base import Interval

ROOT = Path("/work/shared/benchmarks/eran_mnist_2021")
CONFIGS = {
    "babsr+midpoint": GenBabOptions(branching="babsr", branch_points="midpoint"),
    "bbps+optimized": GenBabOptions(branching="bbps", branch_points="optimized"),
}


def run_instance(graph, vnnlib: Path, timeout: float) -> dict[str, tuple[str, float, int]]:
    prop = parse_vnnlib(vnnlib)
    (box,) = prop.boxes
    shape = graph.input_shape
    region = Interval(torch.as_tensor(box.lower).reshape(1, *shape), torch.as_tensor(box.upper).reshape(1, *shape))
    Cs = [torch.as_tensor(d.C) for d in box.disjuncts]
    rhss = [torch.as_tensor(d.rhs) for d in box.disjuncts]
    results: dict[str, tuple[str, float, int]] = {}
    start = time.monotonic()
    with torch.no_grad():
        bounds = intermediate_bounds(graph, region)
        C = torch.cat(Cs)
        rhs = torch.cat(rhss)
        groups = torch.cat([torch.full((len(r),), i) for i, r in enumerate(rhss)])
        crown = spec_lower_bound(graph, bounds, C[:, None, :])[:, 0]
    alpha = optimize_spec_bound(graph, region, C[:, None, :], rhs, groups, bounds, crown[:, None],
                                AlphaOptions(), deadline=start + timeout)
    lower = torch.maximum(crown, alpha.lower[:, 0])
    margins = torch.full((len(rhss),), -torch.inf, dtype=lower.dtype).scatter_reduce(0, groups, lower - rhs, "amax")
    open_ = (margins <= 0).nonzero().flatten().tolist()
    root_time = time.monotonic() - start
    results["alpha (no BaB)"] = ("verified" if not open_ else "unknown", root_time, 1)
    if not open_:
        for name in CONFIGS:
            results[name] = ("verified", root_time, 1)
        return results
    keep = torch.cat([(groups == d).nonzero().flatten() for d in open_])
    new_groups = torch.cat([torch.full(((groups == d).sum(),), j) for j, d in enumerate(open_)])
    root_bounds = [None if b is None else Interval(b.lower.detach(), b.upper.detach()) for b in alpha.bounds]
    for name, options in CONFIGS.items():
        t = time.monotonic()
        out = activation_bab(graph, region, C[keep], rhs[keep], new_groups, root_bounds=root_bounds,
                             deadline=t + max(0.0, timeout - root_time), options=options)
        results[name] = (out.status, root_time + time.monotonic() - t, out.domains_explored)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open(ROOT / "instances.csv") as fh:
        rows = [r for r in csv.reader(fh) if "SIGMOID" in r[0]][: args.instances]
    graph = load_graph(ROOT / rows[0][0]).to("cpu", torch.float64)
    table: dict[str, list[tuple[str, float, int]]] = {}
    for _onnx, vnnlib, _ in rows:
        res = run_instance(graph, ROOT / vnnlib, args.timeout)
        print(Path(vnnlib).name, {k: (s, round(t, 1), n) for k, (s, t, n) in res.items()}, flush=True)
        for k, v in res.items():
            table.setdefault(k, []).append(v)
    print(f"\n{'method':<18} {'verified':>8} {'mean time (s)':>14} {'domains':>8}")
    for k, vals in table.items():
        verified = sum(s == "verified" for s, _, _ in vals)
        print(f"{k:<18} {verified:>4}/{len(vals):<3} {np.mean([t for _, t, _ in vals]):>14.1f} "
              f"{sum(n for _, _, n in vals):>8}")


if __name__ == "__main__":
    main()
