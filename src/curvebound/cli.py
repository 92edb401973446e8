"""Command line: ``curvebound verify MODEL.onnx SPEC.vnnlib``.

The verdict is the first line on stdout; timestamped progress goes to stderr; errors are one
clear line on stderr (exit code 2), never a stack trace.
"""

from __future__ import annotations

import logging
import sys
import time

import click

from . import __version__

_START = time.monotonic()


class _Elapsed(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"[{time.monotonic() - _START:7.2f}s] {record.getMessage()}"


def _setup_logging(verbose: int, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Elapsed())
    logger = logging.getLogger("curvebound")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO))


@click.group()
@click.version_option(__version__, prog_name="curvebound")
def main() -> None:
    """curvebound: prove properties of neural networks with general nonlinearities."""


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--timeout", type=float, default=None, help="Wall-clock limit in seconds (default: none).")
@click.option("--result", "result_file", type=click.Path(dir_okay=False), default=None,
              help="Write the VNN-COMP result file here (verdict, and the counterexample for sat).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Precision of the bound computation.")
@click.option("--no-alpha", is_flag=True, help="Skip alpha-CROWN (CROWN only).")
@click.option("--no-bab", is_flag=True, help="Skip branch-and-bound (ablation).")
@click.option("--input-split", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Branch on input dimensions instead of neurons (auto: when few input dims are perturbed).")
@click.option("--branching", type=click.Choice(["bbps", "babsr"]), default="bbps", show_default=True,
              help="Neuron-branching heuristic (ablation).")
@click.option("--branch-points", type=click.Choice(["optimized", "midpoint"]), default="optimized",
              show_default=True, help="Where non-ReLU neurons are split (ablation).")
@click.option("--relu-only", is_flag=True, help="Branch only on ReLU-like neurons (ablation).")
@click.option("-v", "--verbose", count=True, help="More progress output.")
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict (and warnings).")
def verify(model, spec, timeout, result_file, device, dtype, no_alpha, no_bab, input_split, branching, branch_points,
           relu_only, verbose, quiet) -> None:
    """Verify the VNN-LIB property SPEC of the ONNX network MODEL."""
    _setup_logging(verbose, quiet)
    log = logging.getLogger("curvebound")
    from .errors import CurveboundError

    try:
        import torch

        from .api import verify as run_verify
        from .io.results import write_result

        if device == "cuda" and not torch.cuda.is_available():
            raise click.UsageError("--device cuda requested but no CUDA device is available")
        log.info("loading %s and %s", model, spec)
        result = run_verify(
            model, spec, timeout=timeout, device=device,
            dtype=torch.float64 if dtype == "float64" else torch.float32, alpha=not no_alpha, bab=not no_bab,
            input_split=input_split, branching=branching, branch_points=branch_points, relu_only=relu_only,
        )
    except CurveboundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(result.verdict)
    if result.reason:
        log.warning("%s: %s", result.verdict, result.reason)
    log.info("done in %.2fs (%s)", result.timings.get("total", 0.0),
             ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items() if k != "total"))
    if result_file:
        cex = result.counterexample
        write_result(result_file, result.verdict, None if cex is None else cex.x, None if cex is None else cex.y)


if __name__ == "__main__":
    main()
