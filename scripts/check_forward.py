"""Import every shared benchmark model and compare its forward pass with onnxruntime.

Prints one row per model: whether it loaded, the max relative error (max |ours - ORT| / max |ORT|)
over the centre and 3 random points of the first VNN-LIB box of the model's first instance, and
the import time. Usage: ``python scripts/check_forward.py [benchmarks_dir]``.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from curvebound.graph.onnx_import import load_graph
from curvebound.io.vnnlib import parse_vnnlib

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


def first_vnnlib(model: Path) -> Path | None:
    bench = model.parent.parent
    with open(bench / "instances.csv") as f:
        for row in csv.reader(f):
            if row and Path(row[0]).name == model.name:
                return bench / row[1].strip()
    return None


def check(model: Path) -> tuple[str, str, str]:
    start = time.perf_counter()
    try:
        graph = load_graph(model)
    except Exception as exc:  # report every failure in the table
        return "no", f"{type(exc).__name__}: {exc}"[:90], f"{time.perf_counter() - start:.2f}s"
    elapsed = f"{time.perf_counter() - start:.2f}s"
    vnnlib = first_vnnlib(model)
    if vnnlib is None:
        return "yes", "no instance", elapsed
    box = parse_vnnlib(vnnlib).boxes[0]
    lower = np.asarray(box.lower, dtype=np.float64).reshape(-1)
    upper = np.asarray(box.upper, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(0)
    points = [(lower + upper) / 2] + [lower + rng.uniform(size=lower.shape) * (upper - lower) for _ in range(3)]
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed_shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    worst = 0.0
    try:
        for p in points:
            x32 = p.astype(np.float32)
            ref = sess.run(None, {inp.name: x32.reshape(feed_shape)})[0].reshape(-1)
            ours = graph.forward(torch.from_numpy(x32.astype(np.float64)).reshape(1, *graph.input_shape))
            err = float(np.abs(ours.detach().numpy().reshape(-1) - ref).max()) / max(float(np.abs(ref).max()), 1e-12)
            worst = max(worst, err)
    except Exception as exc:
        return "yes", f"forward failed: {type(exc).__name__}: {exc}"[:90], elapsed
    return "yes", f"{worst:.2e}", elapsed


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    models = sorted(root.glob("*/onnx/*.onnx"))
    print(f"{'benchmark':28} {'model':48} {'loaded':6} {'max rel err':12} import")
    for model in models:
        loaded, err, elapsed = check(model)
        print(f"{model.parent.parent.name:28} {model.name:48} {loaded:6} {err:12} {elapsed}")


if __name__ == "__main__":
    main()
