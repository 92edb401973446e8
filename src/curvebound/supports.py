"""``curvebound supports --onnx-operators | --vnnlib-versions``: capabilities in the VNN-LIB 2.0 CLI form.

VNN-LIB 2.0 ("Command-line Interface", the ``supports`` command) asks a verifier to print one item per
line. The operator list is read from the ONNX importer's converter registry
(:data:`curvebound.graph.onnx_import.CONVERTERS`), so it is exactly what ``load_graph`` accepts.
"""

from __future__ import annotations

import click

__all__ = ["supports_command", "onnx_operators", "VNNLIB_VERSIONS"]

VNNLIB_VERSIONS = ("1.0", "2.0")  # minimum and maximum VNN-LIB version read (io/vnnlib.py, io/vnnlib2.py)


def onnx_operators() -> list[str]:
    """The ONNX operator types the importer registry converts, sorted."""
    from .graph.onnx_import import CONVERTERS

    return sorted(CONVERTERS)


@click.command("supports")
@click.option("--onnx-operators", "what", flag_value="onnx-operators", help="ONNX operator types, one a line.")
@click.option("--vnnlib-versions", "what", flag_value="vnnlib-versions",
              help="Minimum and maximum VNN-LIB version, one a line.")
def supports_command(what: str | None) -> None:
    """Report what curvebound supports (VNN-LIB 2.0 'supports' command)."""
    if what == "onnx-operators":
        click.echo("\n".join(onnx_operators()))
    elif what == "vnnlib-versions":
        click.echo("\n".join(VNNLIB_VERSIONS))
    else:
        raise click.UsageError("choose one of --onnx-operators, --vnnlib-versions")
