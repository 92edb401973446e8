"""Make harder variants of a benchmark's robustness instances by widening every input bound.

Every ``(assert (<= X_i v))`` becomes ``v + delta`` and every ``(assert (>= X_i v))`` becomes
``v - delta``, clipped to ``--clip LO HI`` (the data range, e.g. MNIST's [0, 1]); output
constraints are copied unchanged. The new VNN-LIB files and an ``instances.csv`` (absolute ONNX
paths) go to ``--out``, a folder that ``curvebound bench`` and ``scripts/ablation_bab.py`` accept.
The shared files are only read. Used to compare BaB against no BaB where the shared instances
are all solved without BaB (ERAN's Sigmoid net at eps 0.012):

    python scripts/widen_specs.py ../shared/benchmarks/eran_mnist_2021 --model SIGMOID --delta 0.006 \\
        --clip 0 1 --out out/eran_sigmoid_eps018
    python scripts/ablation_bab.py out/eran_sigmoid_eps018 --cap 60 --jobs 1 --out out/ablation_sigmoid

There are no known answers for the variants: every ``sat`` is replayed on onnxruntime as always,
and an ``unsat`` that a variant's narrower original contradicts cannot happen (widening keeps the
original box inside the new one, so a counterexample of the original stays one).
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

BOUND = re.compile(r"\(assert \((<=|>=) (X_\d+) ([-+0-9.eE]+)\)\)")


def widen(text: str, delta: float, lo: float, hi: float) -> str:
    """The VNN-LIB ``text`` with every single-variable input bound moved outward by ``delta``."""

    def move(match: re.Match[str]) -> str:
        op, name, value = match.group(1), match.group(2), float(match.group(3))
        value = min(value + delta, hi) if op == "<=" else max(value - delta, lo)
        return f"(assert ({op} {name} {value!r}))"

    return BOUND.sub(move, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path, help="a benchmark folder with instances.csv")
    parser.add_argument("--model", default="", help="only instances whose ONNX path contains this")
    parser.add_argument("--delta", type=float, required=True, help="how far each input bound moves outward")
    parser.add_argument("--clip", type=float, nargs=2, default=(-float("inf"), float("inf")), metavar=("LO", "HI"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    (args.out / "vnnlib").mkdir(parents=True, exist_ok=True)
    rows = []
    with open(args.benchmark / "instances.csv", newline="") as f:
        for onnx_path, vnnlib_path, timeout in (r for r in csv.reader(f) if r and r[0].strip() != "onnx"):
            if args.model not in onnx_path:
                continue
            source = args.benchmark / vnnlib_path.strip()
            target = args.out / "vnnlib" / f"{source.stem}_widened_{args.delta:g}.vnnlib"
            target.write_text(widen(source.read_text(), args.delta, *args.clip))
            rows.append((str((args.benchmark / onnx_path.strip()).resolve()), f"vnnlib/{target.name}", timeout))
    with open(args.out / "instances.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    print(f"{len(rows)} instances written to {args.out}")


if __name__ == "__main__":
    main()
