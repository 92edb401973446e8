"""Run curvebound over VNN-COMP benchmark folders and tabulate verdicts against known answers.

    python scripts/run_benchmarks.py [BENCH_DIR ...] [--cap 60] [--out out/bench] [--limit N]

Default BENCH_DIR: every folder of ../shared/benchmarks. For each benchmark it first checks that
every model loads and matches onnxruntime at the centre of a box, and that every VNN-LIB parses;
then it verifies every instance of ``instances.csv`` (timeout = min(instance timeout, --cap)) in a
child process that is killed if it overruns, and compares with ``known_answers.csv``. Writes
``results.csv`` and ``summary.md`` to --out and prints the summary.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"


def _worker(onnx_path: str, vnnlib_path: str, timeout: float, options: dict, queue) -> None:
    import torch

    torch.set_num_threads(options.pop("threads", 1))
    import curvebound

    try:
        result = curvebound.verify(onnx_path, vnnlib_path, timeout=timeout, **options)
        queue.put((result.verdict, result.margin, result.reason, result.timings))
    except Exception as exc:  # noqa: BLE001 - any failure is reported in the table
        queue.put(("error", float("nan"), f"{type(exc).__name__}: {exc}", {}))


def run_instance(onnx_path: Path, vnnlib_path: Path, timeout: float, options: dict) -> dict:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start = time.monotonic()
    proc = ctx.Process(target=_worker, args=(str(onnx_path), str(vnnlib_path), timeout, dict(options), queue))
    proc.start()
    proc.join(timeout + 30)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return {"verdict": "timeout", "margin": float("nan"), "reason": "killed after overrun",
                "time": time.monotonic() - start}
    try:
        verdict, margin, reason, timings = queue.get(timeout=5)
    except Exception:  # noqa: BLE001
        verdict, margin, reason = "error", float("nan"), f"worker exited with code {proc.exitcode}"
    return {"verdict": verdict, "margin": margin, "reason": reason, "time": time.monotonic() - start}


def check_models(bench: Path) -> tuple[int, int, int, int]:
    """(models loaded, models forward-matched, specs parsed, specs total)."""
    import onnxruntime as ort
    import torch

    from curvebound.graph.onnx_import import load_graph
    from curvebound.io.vnnlib import parse_vnnlib

    specs = sorted((bench / "vnnlib").glob("*.vnnlib"))
    parsed = {}
    for spec in specs:
        try:
            parsed[spec.name] = parse_vnnlib(spec)
        except Exception:  # noqa: BLE001
            pass
    loaded = matched = 0
    rows = list(csv.reader(open(bench / "instances.csv")))
    for model_path in sorted((bench / "onnx").glob("*.onnx")):
        try:
            graph = load_graph(model_path)
        except Exception:  # noqa: BLE001
            continue
        loaded += 1
        spec_name = next((Path(r[1]).name for r in rows if Path(r[0]).name == model_path.name), None)
        prop = parsed.get(spec_name)
        if prop is None:
            continue
        box = prop.boxes[0]
        centre = (box.lower + box.upper) / 2
        sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        dtype = np.float64 if "double" in inp.type else np.float32
        expected = sess.run(None, {inp.name: centre.reshape(shape).astype(dtype)})[0].astype(np.float64).ravel()
        x = torch.as_tensor(centre.astype(dtype).astype(np.float64)).reshape(1, *graph.input_shape)
        got = graph.forward(x).detach().numpy().ravel()
        err = np.abs(got - expected).max() / max(1.0, np.abs(expected).max())
        matched += int(err <= 1e-5)
    return loaded, matched, len(parsed), len(specs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmarks", nargs="*", type=Path)
    parser.add_argument("--cap", type=float, default=60.0, help="per-instance timeout cap (s)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    parser.add_argument("--limit", type=int, default=None, help="at most N instances per benchmark")
    parser.add_argument("--sample", type=int, default=None, help="N instances per benchmark, evenly spread")
    parser.add_argument("--no-alpha", action="store_true")
    parser.add_argument("--no-bab", action="store_true")
    parser.add_argument("--branching", choices=["bbps", "babsr"], default="bbps")
    parser.add_argument("--branch-points", choices=["optimized", "midpoint"], default="optimized")
    parser.add_argument("--skip-check", action="store_true", help="skip the load/forward/parse check")
    args = parser.parse_args()
    benches = args.benchmarks or sorted(p for p in SHARED.iterdir() if p.is_dir())
    args.out.mkdir(parents=True, exist_ok=True)
    options = {"alpha": not args.no_alpha, "bab": not args.no_bab, "branching": args.branching,
               "branch_points": args.branch_points, "threads": 1}
    results, summary = [], []
    for bench in benches:
        answers = {}
        known = bench / "known_answers.csv"
        if known.exists():
            for r in csv.DictReader(open(known)):
                answers[(r["onnx"], r["vnnlib"])] = r["answer"]
        check = (0, 0, 0, 0) if args.skip_check else check_models(bench)
        counts = {"sat": 0, "unsat": 0, "unknown": 0, "timeout": 0, "error": 0}
        contradictions = 0
        instances = list(csv.reader(open(bench / "instances.csv")))[: args.limit]
        if args.sample and len(instances) > args.sample:
            step = len(instances) / args.sample
            instances = [instances[int(i * step)] for i in range(args.sample)]
        for onnx_rel, vnnlib_rel, timeout in instances:
            t = min(float(timeout), args.cap)
            r = run_instance(bench / onnx_rel, bench / vnnlib_rel, t, options)
            answer = answers.get((onnx_rel, vnnlib_rel), "")
            bad = (r["verdict"] == "sat" and answer.startswith("unsat")) or (
                r["verdict"] == "unsat" and answer == "sat")
            contradictions += bad
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
            row = {"benchmark": bench.name, "onnx": onnx_rel, "vnnlib": vnnlib_rel, "answer": answer,
                   **r, "contradiction": bad}
            results.append(row)
            print(f"{bench.name:28s} {Path(onnx_rel).stem[:34]:34s} {Path(vnnlib_rel).stem[:40]:40s} "
                  f"{r['verdict']:8s} {r['time']:6.1f}s answer={answer} {'CONTRADICTION' if bad else ''}"
                  f"{' ' + r['reason'][:80] if r['verdict'] in ('error', 'unknown') and r['reason'] else ''}",
                  flush=True)
        summary.append((bench.name, len(instances), check, counts, contradictions))
    with open(args.out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0].keys()))
        writer.writeheader()
        writer.writerows(results)
    lines = ["| benchmark | instances | models loaded/matched | specs parsed | unsat | sat | unknown | timeout "
             "| error | contradictions |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, n, (loaded, matched, parsed, total), c, bad in summary:
        lines.append(f"| {name} | {n} | {loaded}/{matched} | {parsed}/{total} | {c['unsat']} | {c['sat']} | "
                     f"{c['unknown']} | {c['timeout']} | {c['error']} | {bad} |")
    text = "\n".join(lines)
    (args.out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
