"""HTML reports with matplotlib plots (optional extra: ``pip install 'curvebound[report]'``).

* :func:`write_bench_report` (``curvebound bench --report DIR``): a cactus plot per benchmark (number of
  instances solved, ``sat`` or ``unsat``, within a time limit, against that limit) and a stacked bar
  chart of verdicts per benchmark, plus the summary and per-instance tables.
* :func:`write_instance_report` (``curvebound verify --report DIR``): verdict, timings, per-box margins
  and, when branch-and-bound ran, its progress: worst lower-bound margin and domains left over time
  (``BabOutcome.history`` samples ``(seconds, domains left, worst margin)``).

Each page is self-contained (PNGs inlined as base64); the PNGs are also written beside it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_bench_report", "write_instance_report", "cactus_data"]

_COLORS = {"unsat": "#2e7d32", "sat": "#c62828", "unknown": "#9e9e9e", "timeout": "#f9a825", "error": "#6a1b9a"}
_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}"
          ".bad{color:#c62828;font-weight:bold}img{max-width:100%}")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("reports need matplotlib: pip install 'curvebound[report]'") from exc
    return plt


def _save(fig: Any, folder: Path, name: str) -> str:
    """Write ``fig`` to ``folder/name`` and return an ``<img>`` tag with the PNG inlined."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = buffer.getvalue()
    (folder / name).write_bytes(data)
    fig.clf()
    return f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], bad_column: int | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="bad"' if i == bad_column and str(cell) not in ("0", "") else ""
            cells.append(f"<td{cls}>{html.escape(str(cell))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def cactus_data(rows: Iterable[dict[str, Any]]) -> dict[str, list[float]]:
    """Per benchmark, the sorted run times of its solved (sat/unsat) instances: the k-th value is the
    time limit within which k+1 instances are solved."""
    data: dict[str, list[float]] = {}
    for row in rows:
        times = data.setdefault(row["benchmark"], [])
        if row["verdict"] in ("sat", "unsat"):
            times.append(float(row["time"]))
    return {name: sorted(times) for name, times in data.items()}


def write_bench_report(rows: Sequence[dict[str, Any]], folder: str | os.PathLike[str]) -> Path:
    """Write ``folder/index.html`` (+ ``cactus.png``, ``verdicts.png``) for bench result rows (dicts
    with the columns of :data:`curvebound.bench.COLUMNS`); returns the HTML path."""
    from .bench import VERDICTS, summarize, summary_table  # noqa: F401 - table helpers live with the runner

    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, times in cactus_data(rows).items():
        if times:
            ax.step([0.0, *times], list(range(len(times) + 1)), where="post", label=name, marker=".")
        else:
            ax.plot([0.0], [0], label=f"{name} (none solved)", marker="x")
    ax.set_xlabel("time limit per instance (s)")
    ax.set_ylabel("instances solved (sat + unsat)")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Cactus plot")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    cactus = _save(fig, folder, "cactus.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(summary) + 3), 4.5))
    names = list(summary)
    bottom = [0.0] * len(names)
    for verdict in VERDICTS:
        heights = [summary[n][verdict] for n in names]
        if any(heights):
            ax.bar(names, heights, bottom=bottom, label=verdict, color=_COLORS[verdict])
            bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_ylabel("instances")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Verdicts per benchmark")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=20)
    verdicts = _save(fig, folder, "verdicts.png")
    plt.close(fig)

    summary_rows = [[n, int(s["instances"]), int(s["unsat"]), int(s["sat"]), int(s["unknown"]), int(s["timeout"]),
                     int(s["error"]), int(s["solved"]), int(s["contradictions"]), f"{s['time']:.1f}"]
                    for n, s in summary.items()]
    instance_rows = [[r["benchmark"], r["onnx"], r["vnnlib"], r["verdict"], r["time"], r.get("margin", ""),
                      r.get("domains", ""), r.get("peak_mem_mb", ""), r.get("answer", ""), r.get("contradiction", ""),
                      r.get("reason", "")] for r in rows]
    body = "\n".join([
        "<h2>Summary</h2>",
        _table(["benchmark", "instances", "unsat", "sat", "unknown", "timeout", "error", "solved", "contradictions",
                "time (s)"], summary_rows, bad_column=8),
        "<h2>Plots</h2>", cactus, verdicts,
        "<h2>Instances</h2>",
        _table(["benchmark", "onnx", "vnnlib", "verdict", "time (s)", "margin", "domains", "peak MiB", "answer",
                "contradiction", "reason"], instance_rows, bad_column=9),
    ])
    path = folder / "index.html"
    path.write_text(_page("curvebound benchmark report", body))
    return path


def write_instance_report(result: Any, bab_history: Sequence[tuple[float, int, float]] | None,
                          folder: str | os.PathLike[str], title: str = "curvebound verification report") -> Path:
    """Write ``folder/report.html`` for one ``pipeline.Result``: verdict, reason, timings, per-box margins
    and, when ``bab_history`` (``[(seconds, domains left, worst margin)]``) is non-empty, a plot of the
    worst bound margin and of the domains left over time (``bab_progress.png``). Returns the HTML path."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = [f"<p>verdict: <b>{html.escape(result.verdict)}</b></p>"]
    if result.reason:
        parts.append(f"<p>reason: {html.escape(result.reason)}</p>")
    margin = result.margin
    if math.isfinite(margin):
        parts.append(f"<p>worst bound margin: {margin:.6g} (&gt; 0 proves the property)</p>")
    if result.timings:
        timing_rows = [[k, f"{v:.3f}"] for k, v in result.timings.items()]
        parts += ["<h2>Timings</h2>", _table(["stage", "seconds"], timing_rows)]

    if result.boxes:
        fig, ax = plt.subplots(figsize=(7, 4))
        methods = sorted({m for box in result.boxes for m in box.margins})
        for method in methods:
            values = [v for box in result.boxes for v in box.margins.get(method, [])]
            ax.plot(range(len(values)), values, marker="o", linestyle="", label=method)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("(box, disjunct)")
        ax.set_ylabel("lower-bound margin")
        ax.set_title("Bound margin per disjunct (> 0: refuted)")
        ax.legend(fontsize=8)
        parts += ["<h2>Bounds</h2>", _save(fig, folder, "margins.png")]
        plt.close(fig)

    if bab_history:
        t = [float(h[0]) for h in bab_history]
        left = [int(h[1]) for h in bab_history]
        worst = [float(h[2]) for h in bab_history]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(t, worst, color="#1565c0", marker=".", label="worst margin")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("worst lower-bound margin", color="#1565c0")
        twin = ax.twinx()
        twin.step(t, left, where="post", color="#ef6c00", label="domains left")
        twin.set_ylabel("domains left", color="#ef6c00")
        ax.set_title("Branch-and-bound progress")
        parts += ["<h2>Branch and bound</h2>", _save(fig, folder, "bab_progress.png"),
                  f"<p>{len(bab_history)} samples; final: {left[-1]} domains left, worst margin {worst[-1]:.6g}</p>"]
        plt.close(fig)

    path = folder / "report.html"
    path.write_text(_page(title, "\n".join(parts)))
    return path
