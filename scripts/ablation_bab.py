"""Three-way branch-and-bound ablation on VNN-COMP benchmark folders, each instance capped at --cap s:

  (a) no BaB (attack, CROWN, alpha-CROWN)      -- curvebound verify --no-bab
  (b) BaB with the BaBSR-like heuristic and midpoint branching points
                                                -- --branching babsr --branch-points midpoint
  (c) full GenBaB: BBPS and optimized branching points (the default)

(a) runs on every selected instance. (b) and (c) run only on the instances (a) left open: both run
(a)'s pipeline first, so what (a) solves is carried over (the table says how many). Input-space BaB
(chosen for ACAS Xu and lsnc: few perturbed inputs) has no heuristic or branching-point choice, so
(b) and (c) differ only where neurons are split.

    python scripts/ablation_bab.py ../shared/benchmarks/eran_mnist_2021 ../shared/benchmarks/ml4acopf \\
        --sample nln2020_mnist_sigmoid_tanh=6 --cap 60 --jobs 2 --out out/ablation

Writes one results folder per configuration under --out (resumable, as ``curvebound bench``) and
prints a markdown table: per benchmark and configuration, unsat / sat / open and contradictions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from curvebound.bench import run_bench
from curvebound.method_flags import method_options

CONFIGS = {
    "a": ("no BaB", method_options(no_bab=True)),
    "b": ("BaBSR + midpoint", method_options(branching="babsr", branch_points="midpoint")),
    "c": ("GenBaB (BBPS + optimized)", method_options()),
}
SOLVED = ("unsat", "sat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="*", type=Path, help="benchmark folders, run in full")
    parser.add_argument("--sample", action="append", default=[], metavar="FOLDER=N",
                        help="a benchmark folder run on N instances spread over its instances.csv (repeatable)")
    parser.add_argument("--cap", type=float, default=60.0, help="per-instance timeout cap (s)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("out/ablation"))
    args = parser.parse_args()
    selection: list[tuple[Path, int | None]] = [(p, None) for p in args.benchmarks]
    for item in args.sample:
        folder, n = item.rsplit("=", 1)
        selection.append((Path(folder), int(n)))

    def run(config: str, keep=None) -> list[dict[str, str]]:
        rows = []
        for folder, sample in selection:
            rows += run_bench([folder], args.out / config, timeout_cap=args.cap, jobs=args.jobs, sample=sample,
                              options=CONFIGS[config][1], keep=keep, threads=1)
        return rows

    rows = {"a": run("a")}
    still_open = {(r["benchmark"], r["onnx"], r["vnnlib"]) for r in rows["a"] if r["verdict"] not in SOLVED}
    for config in ("b", "c"):
        rows[config] = run(config, keep=lambda inst: inst.key in still_open)

    print(f"\n| benchmark | instances | {' | '.join(f'({k}) {CONFIGS[k][0]} unsat/sat/open' for k in CONFIGS)} "
          f"| contradictions |")
    print("|---|---:|" + "---:|" * len(CONFIGS) + "---:|")
    for bench in dict.fromkeys(r["benchmark"] for r in rows["a"]):
        base = [r for r in rows["a"] if r["benchmark"] == bench]
        carried = {v: sum(r["verdict"] == v for r in base) for v in SOLVED}
        cells, bad = [], 0
        for config in CONFIGS:
            mine = [r for r in rows[config] if r["benchmark"] == bench]
            bad += sum(r["contradiction"] == "1" for r in mine)
            counts = dict(carried) if config != "a" else {v: 0 for v in SOLVED}
            for r in mine:
                if r["verdict"] in SOLVED:
                    counts[r["verdict"]] += 1
            cells.append(f"{counts['unsat']} / {counts['sat']} / {len(base) - counts['unsat'] - counts['sat']}")
        print(f"| {bench} | {len(base)} | {' | '.join(cells)} | {bad} |")
    print(f"\n(b) and (c) ran on the {len(still_open)} instances (a) left open; the rest is carried over from (a).")


if __name__ == "__main__":
    main()
