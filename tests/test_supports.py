"""``curvebound supports``: the operator list is the importer registry, nothing hard-coded."""

from __future__ import annotations

from click.testing import CliRunner

from curvebound.graph.onnx_import import CONVERTERS
from curvebound.supports import supports_command


def test_onnx_operators_are_the_registry():
    result = CliRunner().invoke(supports_command, ["--onnx-operators"])
    assert result.exit_code == 0
    listed = result.output.split()
    assert listed == sorted(CONVERTERS) and {"Relu", "Gemm", "Sigmoid"} <= set(listed)


def test_vnnlib_versions_and_usage():
    assert CliRunner().invoke(supports_command, ["--vnnlib-versions"]).output.split() == ["1.0", "2.0"]
    assert CliRunner().invoke(supports_command, []).exit_code == 2
