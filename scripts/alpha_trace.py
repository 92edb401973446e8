"""How alpha-CROWN's worst margin grows with its iterations, per instance (no BaB, no time limit).

    python scripts/alpha_trace.py MODEL.onnx SPEC.vnnlib [SPEC2.vnnlib ...] --iterations 150

Shows whether a root keeps gaining (ERAN's Sigmoid net: -0.154 after 40 iterations, -0.064 after
100 on a widened 7107) or flattens (its ReLU net: -0.757 after 50, -0.718 after 100 on 186), which
is what the pipeline's adaptive alpha share before branch-and-bound judges.
"""

from __future__ import annotations

import argparse

import torch

from curvebound.api import verify
from curvebound.bounds.alpha import AlphaOptions

SHOWN = (1, 5, 10, 20, 30, 40, 50, 70, 100, 150, 200, 300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = AlphaOptions(iterations=args.iterations, patience=args.iterations)
    for spec in args.specs:
        result = verify(args.model, spec, bab=False, alpha_options=options)
        if not result.boxes:
            print(f"{spec}: {result.verdict} before any bound ({result.reason or 'attack'})")
        for index, box in enumerate(result.boxes):
            history = box.alpha_history
            if not history:
                print(f"{spec} box {index}: no alpha-CROWN run ({result.verdict})")
                continue
            points = [n for n in SHOWN if n <= len(history)] + [len(history)]
            trace = "  ".join(f"{n}it/{history[n - 1][0]:.0f}s: {history[n - 1][1]:.4f}"
                              for n in sorted(set(points)))
            print(f"{spec} box {index} ({result.verdict}): {trace}", flush=True)


if __name__ == "__main__":
    main()
