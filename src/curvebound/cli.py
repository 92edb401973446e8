"""Command line: ``curvebound verify MODEL.onnx SPEC.vnnlib``.

The verdict is the first line on stdout; timestamped progress goes to stderr; errors are one
clear line on stderr (exit code 2), never a stack trace.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import click

from . import __version__
from .method_flags import method_flags, method_options

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


class _LazyGroup(click.Group):
    """Subcommands that live beside the code they drive, imported only when used (so `--help` and
    `verify` do not pay for importing every module)."""

    lazy = {
        "bench": ("curvebound.bench", "bench_command", "Run whole benchmark suites, with reports."),
        "warmup": ("curvebound.bab.branch_points", "warmup_command", "Prebuild the branching-point tables."),
        "lipschitz": ("curvebound.lipschitz.certify", "lipschitz_command", "Certify local Lipschitz constants."),
        "supports": ("curvebound.supports", "supports_command", "List supported ONNX operators / VNN-LIB versions."),
    }

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx, name):
        if name in self.lazy:
            import importlib

            module, attr, _ = self.lazy[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = [(name, self.commands[name].get_short_help_str()) for name in self.commands]
        rows += [(name, help_text) for name, (_, _, help_text) in self.lazy.items()]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="curvebound")
def main() -> None:
    """curvebound: prove properties of neural networks with general nonlinearities."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--network", "networks", multiple=True, metavar="NAME=MODEL.onnx",
              help="VNN-LIB 2.0 form: `verify QUERY.vnnlib --network NAME=net.onnx` (one network).")
@click.option("--timeout", type=float, default=None, help="Wall-clock limit in seconds (default: none).")
@click.option("--result", "result_file", type=click.Path(dir_okay=False), default=None,
              help="Write the VNN-COMP result file here (verdict, and the counterexample for sat).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write an HTML report with plots of the bound margins and branch-and-bound progress.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Precision of the bound computation.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="CPU threads for torch (small networks run fastest on one).")
@method_flags
@click.option("-v", "--verbose", count=True, help="More progress output.")
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict (and warnings).")
def verify(paths, networks, timeout, result_file, report_dir, device, dtype, threads, verbose, quiet, **flags) -> None:
    """Verify a property: `verify MODEL.onnx SPEC.vnnlib` (VNN-LIB 1.0 or 2.0), or the VNN-LIB 2.0
    solver form `verify QUERY.vnnlib --network NAME=MODEL.onnx`."""
    _setup_logging(verbose, quiet)
    log = logging.getLogger("curvebound")
    if networks:
        if len(paths) != 1 or len(networks) != 1 or "=" not in networks[0]:
            raise click.UsageError("the 2.0 form takes one QUERY and one --network NAME=MODEL.onnx")
        model, spec = networks[0].split("=", 1)[1], paths[0]
        if not os.path.isfile(model):
            raise click.UsageError(f"--network: {model} is not a file")
    elif len(paths) == 2:
        model, spec = paths
    else:
        raise click.UsageError("give MODEL.onnx SPEC.vnnlib, or QUERY.vnnlib --network NAME=MODEL.onnx")
    from .errors import CurveboundError

    try:
        import torch

        from .api import verify as run_verify
        from .io.results import write_result
        from .io.results2 import write_result2
        from .io.vnnlib2 import declared_variables, is_vnnlib2

        torch.set_num_threads(max(1, threads))
        if device == "cuda" and not torch.cuda.is_available():
            raise click.UsageError("--device cuda requested but no CUDA device is available")
        log.info("loading %s and %s", model, spec)
        if timeout is not None:  # start-up (imports) counts against the time limit too
            timeout = max(0.0, timeout - (time.monotonic() - _START))
        result = run_verify(
            model, spec, timeout=timeout, device=device,
            dtype=torch.float64 if dtype == "float64" else torch.float32, **method_options(**flags),
        )
        click.echo(result.verdict)
        if result.reason:
            log.warning("%s: %s", result.verdict, result.reason)
        log.info("done in %.2fs (%s)", result.timings.get("total", 0.0),
                 ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items() if k != "total"))
        cex = result.counterexample
        x, y = (None, None) if cex is None else (cex.x, cex.y)
        if result_file:
            text = open(spec, errors="replace").read() if not spec.endswith(".gz") else ""
            if text and is_vnnlib2(text):
                write_result2(result_file, result.verdict, x, y, declared_variables(text, spec))
            else:
                write_result(result_file, result.verdict, x, y)
        if report_dir:
            from .report import write_instance_report

            log.info("report: %s", write_instance_report(result, result.bab_history, report_dir))
        # everything is written: skip the interpreter's ~1 s teardown of torch, it counts against
        # the caller's wall-clock budget
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    except CurveboundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - an internal error is reported in one line, not a traceback
        click.echo(f"error: internal error ({type(exc).__name__}: {exc}); run with -vv and report it", err=True)
        if verbose > 1:
            raise
        if result_file:
            from .io.results import write_result

            write_result(result_file, "unknown")
        sys.exit(3)


if __name__ == "__main__":
    main()
