"""Print VNN-LIB parse times of the largest file of each shared benchmark.

Usage: python scripts/time_vnnlib.py [benchmarks_dir] [--repeat N]
Reports the best of N runs, both wall-clock and process CPU time (the CPU figure is steadier on a
shared machine)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from curvebound.io.vnnlib import parse_vnnlib


def main() -> None:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("benchmarks", nargs="?", type=Path, default=default)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'benchmark':30s} {'file':58s} {'KB':>7s} {'wall ms':>8s} {'cpu ms':>8s}  boxes disj in/out")
    for folder in sorted(p for p in args.benchmarks.iterdir() if (p / "vnnlib").is_dir()):
        files = sorted((folder / "vnnlib").glob("*.vnnlib*"), key=lambda p: p.stat().st_size)
        if not files:
            continue
        largest = files[-1]
        wall = cpu = float("inf")
        for _ in range(args.repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            prop = parse_vnnlib(largest)
            wall = min(wall, time.perf_counter() - w0)
            cpu = min(cpu, time.process_time() - c0)
        print(f"{folder.name:30s} {largest.name[:58]:58s} {largest.stat().st_size / 1024:7.0f} "
              f"{wall * 1e3:8.1f} {cpu * 1e3:8.1f}  {len(prop.boxes):5d} {prop.n_disjuncts:4d} "
              f"{prop.n_inputs}/{prop.n_outputs}")


if __name__ == "__main__":
    main()
