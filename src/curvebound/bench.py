"""Run whole benchmark suites: ``curvebound bench PATH... [--jobs N | --ray ADDRESS]``.

A PATH is a VNN-COMP benchmark folder holding ``instances.csv`` (rows ``onnx,vnnlib,timeout`` relative
to the folder) or that ``instances.csv`` itself. Every instance runs in its own child process with
timeout ``min(instance timeout, --timeout-cap)``; a child still alive ``--slack`` seconds after its
timeout is killed and recorded as ``timeout``. Children are forked from a ``forkserver`` that has
already imported curvebound (fast start, and safe although the parent runs threads); ``--jobs N`` runs
N children at once from a thread pool (each thread owns and can kill its child), ``--ray ADDRESS`` makes
every instance a Ray task (which again runs the killable child) on the cluster at ADDRESS (``auto``:
the running cluster; ``local``: a fresh local Ray instance).

If ``known_answers.csv`` (columns ``onnx,vnnlib,timeout,answer``) lies beside ``instances.csv``, each
verdict is checked: ``sat`` against an ``unsat``/``unsat?`` answer, or ``unsat`` against ``sat``, is a
*contradiction*, printed in red and counted.

Output in ``--out``: ``results.csv`` (one row per instance, appended as instances finish, so an
interrupted run resumes: rows already there are skipped) and ``summary.md``; ``--report DIR`` adds an
HTML page with plots (:mod:`curvebound.report`).
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import math
import multiprocessing as mp
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .method_flags import method_flags, method_options

__all__ = ["bench_command", "Instance", "load_instances", "run_instance", "run_bench", "summarize",
           "summary_table", "is_contradiction", "COLUMNS", "VERDICTS"]

COLUMNS = ["benchmark", "onnx", "vnnlib", "verdict", "time", "margin", "domains", "peak_mem_mb", "answer",
           "contradiction", "reason"]
VERDICTS = ("unsat", "sat", "unknown", "timeout", "error")
RESULTS_NAME = "results.csv"
SUMMARY_NAME = "summary.md"


@dataclass(frozen=True)
class Instance:
    """One row of ``instances.csv``: paths relative to ``folder``, the benchmark's own timeout and the
    known answer (empty when none is known)."""

    benchmark: str
    folder: Path
    onnx: str
    vnnlib: str
    timeout: float
    answer: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.benchmark, self.onnx, self.vnnlib


def is_contradiction(verdict: str, answer: str) -> bool:
    """True iff ``verdict`` contradicts a known ``answer``: sat vs unsat/unsat?, or unsat vs sat."""
    answer = answer.strip().lower()
    return (verdict == "sat" and answer.startswith("unsat")) or (verdict == "unsat" and answer == "sat")


def load_instances(path: str | os.PathLike[str], limit: int | None = None, sample: int | None = None) -> list[Instance]:
    """The instances of a benchmark folder (or of an ``instances.csv``), with known answers attached;
    the first ``limit`` of them, or ``sample`` of them spread evenly over the file."""
    path = Path(path)
    csv_path = path / "instances.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise click.ClickException(f"{path}: no instances.csv there")
    folder = csv_path.parent
    answers: dict[tuple[str, str], str] = {}
    known = folder / "known_answers.csv"
    if known.is_file():
        with open(known, newline="") as f:
            for row in csv.DictReader(f):
                answers[(row["onnx"].strip(), row["vnnlib"].strip())] = row.get("answer", "").strip()
    instances = []
    with open(csv_path, newline="") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise click.ClickException(f"{csv_path}:{n}: expected onnx,vnnlib,timeout; got {row}")
            onnx, vnnlib, timeout = (c.strip() for c in row)
            try:
                seconds = float(timeout)
            except ValueError:
                if n == 1:
                    continue  # a header line
                raise click.ClickException(f"{csv_path}:{n}: timeout {timeout!r} is not a number") from None
            instances.append(Instance(folder.resolve().name, folder, onnx, vnnlib, seconds,
                                      answers.get((onnx, vnnlib), "")))
    if sample and len(instances) > sample:
        step = len(instances) / sample
        instances = [instances[int(i * step)] for i in range(sample)]
    return instances[:limit] if limit else instances


# ------------------------------------------------------------------------------------------------
# one instance in a killable child process
# ------------------------------------------------------------------------------------------------
def _child(onnx: str, vnnlib: str, timeout: float, threads: int, conn: Any,
           options: dict[str, Any] | None = None) -> None:
    """Child process body: verify, then send a payload dict (with the child's own peak RSS) back."""
    payload: dict[str, Any]
    try:
        import torch

        torch.set_num_threads(max(1, threads))
        from curvebound.api import verify
        from curvebound.io.vnnlib2 import parse_query

        result = verify(onnx, parse_query(vnnlib), timeout=timeout, **(options or {}))
        payload = {"verdict": result.verdict, "margin": float(result.margin), "reason": result.reason,
                   "domains": int(getattr(result, "domains_explored", 0) or 0)}
    except Exception as exc:  # noqa: BLE001 - every failure becomes an 'error' row, never a crash of the run
        payload = {"verdict": "error", "margin": math.nan, "reason": f"{type(exc).__name__}: {exc}", "domains": 0}
    payload["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    conn.send(payload)
    conn.close()


def _noop() -> None:
    """Nothing: a first child that makes the forkserver start (and import curvebound) up front."""


_ctx_lock = threading.Lock()
_ctx: Any = None


def _context() -> Any:
    """A forkserver context that preloads curvebound (spawn where forkserver does not exist)."""
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            if "forkserver" in mp.get_all_start_methods():
                _ctx = mp.get_context("forkserver")
                _ctx.set_forkserver_preload(["curvebound.api", "curvebound.io.vnnlib2"])
                warm = _ctx.Process(target=_noop)  # start the server now: its imports are not an instance's time
                warm.start()
                warm.join()
            else:
                _ctx = mp.get_context("spawn")
        return _ctx


def run_instance(onnx: str, vnnlib: str, timeout: float, slack: float = 15.0, threads: int = 1,
                 options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Verify one instance in a child process; kill it ``slack`` seconds after ``timeout``.
    ``options`` are keyword arguments of ``curvebound.verify`` (fields of ``pipeline.Options``).

    Returns ``verdict``, ``time`` (wall seconds seen by the parent, start-up included), ``margin``,
    ``domains`` (branch-and-bound domains explored, 0 when unknown), ``peak_mem_mb`` (the child's
    maximum resident set size, NaN when it was killed) and ``reason``."""
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(onnx, vnnlib, timeout, threads, sender, options), daemon=True)
    start = time.monotonic()
    proc.start()
    sender.close()
    try:
        if receiver.poll(timeout + slack):
            try:
                payload = receiver.recv()
            except EOFError:
                proc.join(5)
                payload = {"verdict": "error", "margin": math.nan, "domains": 0, "peak_mem_mb": math.nan,
                           "reason": f"the child exited with code {proc.exitcode} before reporting"}
        else:
            payload = {"verdict": "timeout", "margin": math.nan, "domains": 0, "peak_mem_mb": math.nan,
                       "reason": f"killed {slack:g}s after its {timeout:g}s timeout"}
    finally:
        elapsed = time.monotonic() - start
        receiver.close()
        proc.join(2)
        if proc.is_alive():
            proc.kill()
            proc.join()
    payload["time"] = elapsed
    return payload


def _ray_task(onnx: str, vnnlib: str, timeout: float, slack: float, threads: int,
              options: dict[str, Any] | None = None) -> dict[str, Any]:
    return run_instance(onnx, vnnlib, timeout, slack, threads, options)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise click.ClickException(
            "--ray needs Ray, an optional extra: pip install 'curvebound[ray]' (or pip install ray)") from None
    return ray


# ------------------------------------------------------------------------------------------------
# results files, summary
# ------------------------------------------------------------------------------------------------
def _read_results(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("verdict")]


def _format_row(inst: Instance, payload: dict[str, Any], timeout_used: float) -> dict[str, str]:
    verdict = payload["verdict"]
    margin = payload.get("margin", math.nan)
    mem = payload.get("peak_mem_mb", math.nan)
    return {
        "benchmark": inst.benchmark, "onnx": inst.onnx, "vnnlib": inst.vnnlib, "verdict": verdict,
        "time": f"{payload['time']:.3f}",
        "margin": "" if margin is None or not math.isfinite(margin) else repr(float(margin)),
        "domains": str(int(payload.get("domains", 0) or 0)),
        "peak_mem_mb": "" if mem is None or not math.isfinite(mem) else f"{mem:.1f}",
        "answer": inst.answer, "contradiction": str(int(is_contradiction(verdict, inst.answer))),
        "reason": " ".join(str(payload.get("reason", "")).split())[:300],
    }


def summarize(rows: Iterable[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Per benchmark: instance count, count of each verdict, solved, contradictions, total time."""
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        s = table.setdefault(row["benchmark"], {"instances": 0, **{v: 0 for v in VERDICTS}, "solved": 0,
                                                "contradictions": 0, "time": 0.0})
        s["instances"] += 1
        verdict = row["verdict"] if row["verdict"] in VERDICTS else "error"
        s[verdict] += 1
        s["solved"] += verdict in ("sat", "unsat")
        s["contradictions"] += int(row.get("contradiction") or 0)
        s["time"] += float(row.get("time") or 0.0)
    return table


def summary_table(summary: dict[str, dict[str, float]], color: bool = False) -> str:
    """A markdown table of :func:`summarize`; ``color`` paints non-zero contradictions red (terminal)."""
    lines = ["| benchmark | instances | unsat | sat | unknown | timeout | error | solved | contradictions "
             "| time (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        bad = str(int(s["contradictions"]))
        if color and s["contradictions"]:
            bad = click.style(bad, fg="red", bold=True)
        lines.append(f"| {name} | {int(s['instances'])} | {int(s['unsat'])} | {int(s['sat'])} | "
                     f"{int(s['unknown'])} | {int(s['timeout'])} | {int(s['error'])} | {int(s['solved'])} | "
                     f"{bad} | {s['time']:.1f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the whole run
# ------------------------------------------------------------------------------------------------
def run_bench(paths: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str], timeout_cap: float | None = None,
              jobs: int = 1, ray_address: str | None = None, limit: int | None = None, slack: float = 15.0,
              threads: int | None = None, progress: bool = True,
              on_contradiction: Callable[[str], None] | None = None, sample: int | None = None,
              options: dict[str, Any] | None = None,
              keep: Callable[[Instance], bool] | None = None) -> list[dict[str, str]]:
    """Run every unfinished instance of the benchmarks at ``paths``; returns the rows of those benchmarks
    (resumed and new). Rows are appended to ``out/results.csv`` as they finish. ``options`` go to
    ``curvebound.verify`` for every instance (e.g. ``{"bab": False}``); ``keep`` selects instances."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_NAME
    instances = [inst for p in paths for inst in load_instances(p, limit, sample) if keep is None or keep(inst)]
    previous = _read_results(results_path)
    done = {(r["benchmark"], r["onnx"], r["vnnlib"]) for r in previous}
    todo = [inst for inst in instances if inst.key not in done]
    wanted = {inst.key for inst in instances}
    rows = [r for r in previous if (r["benchmark"], r["onnx"], r["vnnlib"]) in wanted]
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // max(1, jobs))

    counts = {v: 0 for v in VERDICTS}
    for r in rows:
        counts[r["verdict"] if r["verdict"] in VERDICTS else "error"] += 1
    bar = tqdm(total=len(todo), desc="bench", unit="inst", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in counts.items()))
    new_file = not results_path.is_file() or results_path.stat().st_size == 0
    with open(results_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new_file:
            writer.writeheader()
            f.flush()

        def record(inst: Instance, payload: dict[str, Any], timeout_used: float) -> None:
            row = _format_row(inst, payload, timeout_used)
            writer.writerow(row)
            f.flush()
            rows.append(row)
            counts[row["verdict"] if row["verdict"] in VERDICTS else "error"] += 1
            if row["contradiction"] == "1":
                message = (f"CONTRADICTION {inst.benchmark} {inst.onnx} {inst.vnnlib}: verdict {row['verdict']}, "
                           f"known answer {inst.answer}")
                styled = click.style(message, fg="red", bold=True) if sys.stderr.isatty() else message
                bar.write(styled, file=sys.stderr)
                if on_contradiction:
                    on_contradiction(message)
            bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in counts.items()))
            bar.update(1)

        def timeout_of(inst: Instance) -> float:
            return min(inst.timeout, timeout_cap) if timeout_cap else inst.timeout

        def paths_of(inst: Instance) -> tuple[str, str]:
            return str((inst.folder / inst.onnx).resolve()), str((inst.folder / inst.vnnlib).resolve())

        if ray_address:
            ray = _import_ray()
            local = ray_address == "local"
            started = False
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
                if local:
                    kwargs["num_cpus"] = jobs
                else:
                    kwargs["address"] = ray_address
                ray.init(**kwargs)
                started = True
            try:
                task = ray.remote(num_cpus=1)(_ray_task)
                pending = {task.remote(*paths_of(inst), timeout_of(inst), slack, threads, options): inst
                           for inst in todo}
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        inst = pending.pop(ref)
                        record(inst, ray.get(ref), timeout_of(inst))
            finally:
                if started and local:
                    ray.shutdown()
        else:
            with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(run_instance, *paths_of(inst), timeout_of(inst), slack, threads, options): inst
                           for inst in todo}
                for future in cf.as_completed(futures):
                    inst = futures[future]
                    record(inst, future.result(), timeout_of(inst))
    bar.close()
    order = {key: i for i, key in enumerate(inst.key for inst in instances)}
    rows.sort(key=lambda r: order.get((r["benchmark"], r["onnx"], r["vnnlib"]), len(order)))
    return rows


@click.command("bench")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--timeout-cap", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Cap every instance's timeout at S seconds.", metavar="S")
@click.option("--out", type=click.Path(file_okay=False), default="out/bench", show_default=True,
              help="Folder for results.csv (resumed when present) and summary.md.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Also write an HTML report with plots to DIR (needs curvebound[report]).", metavar="DIR")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Instances run at once (each in its own killable process).")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS|auto|local",
              help="Run every instance as a Ray task on this cluster (needs curvebound[ray]).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N instances per benchmark.")
@click.option("--slack", type=click.FloatRange(min=0), default=15.0, show_default=True,
              help="Seconds past its timeout before a child is killed.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads per instance (default: cores / jobs).")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="N instances per benchmark, spread evenly over its instances.csv.")
@method_flags
def bench_command(paths: tuple[str, ...], timeout_cap: float | None, out: str, report_dir: str | None, jobs: int,
                  ray_address: str | None, limit: int | None, slack: float, threads: int | None, sample: int | None,
                  **flags: Any) -> None:
    """Run every instance of the benchmark folders (or instances.csv files) PATH...

    The method flags (--no-bab, --branching, ...) apply to every instance, for ablations."""
    start = time.monotonic()
    rows = run_bench(paths, out, timeout_cap=timeout_cap, jobs=jobs, ray_address=ray_address, limit=limit,
                     slack=slack, threads=threads, sample=sample, options=method_options(**flags))
    summary = summarize(rows)
    Path(out, SUMMARY_NAME).write_text(summary_table(summary) + "\n")
    click.echo(summary_table(summary, color=True))
    bad = sum(int(s["contradictions"]) for s in summary.values())
    if bad:
        click.secho(f"{bad} contradiction(s) with known answers", fg="red", bold=True)
    click.echo(f"results: {Path(out, RESULTS_NAME)}  ({time.monotonic() - start:.1f}s wall)")
    if report_dir:
        from .report import write_bench_report

        click.echo(f"report: {write_bench_report(rows, report_dir)}")
