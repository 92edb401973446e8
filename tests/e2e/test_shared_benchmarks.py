"""Verdicts on real VNN-COMP instances never contradict the known answers (skipped without ../shared)."""

import csv
from pathlib import Path

import numpy as np
import pytest

import curvebound
from curvebound.io.replay import run_onnx
from curvebound.io.vnnlib import parse_vnnlib

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/benchmarks is absent")


def known_answers(bench: str) -> list[tuple[Path, Path, str]]:
    if not (SHARED / bench / "known_answers.csv").exists():
        return []
    rows = csv.DictReader(open(SHARED / bench / "known_answers.csv"))
    return [(SHARED / bench / r["onnx"], SHARED / bench / r["vnnlib"], r["answer"]) for r in rows]


def contradicts(verdict: str, answer: str) -> bool:
    return (verdict == "sat" and answer.startswith("unsat")) or (verdict == "unsat" and answer == "sat")


def acas_instances():
    return known_answers("acasxu_control")[:12]


@pytest.mark.parametrize("onnx_path,vnnlib_path,answer", acas_instances(),
                         ids=lambda v: v.stem if isinstance(v, Path) else v)
def test_acasxu_never_contradicts_known_answers(onnx_path, vnnlib_path, answer):
    result = curvebound.verify(onnx_path, vnnlib_path, timeout=15)
    assert not contradicts(result.verdict, answer), (result.verdict, answer, result.reason)
    if result.verdict == "sat":
        _assert_replayed(onnx_path, vnnlib_path, result)


def _assert_replayed(onnx_path, vnnlib_path, result):
    cex = result.counterexample
    prop = parse_vnnlib(vnnlib_path)
    box = prop.boxes[cex.box]
    y = run_onnx(onnx_path, cex.x)
    assert np.all(cex.x >= box.lower) and np.all(cex.x <= box.upper)
    assert any(np.all(d.C @ y <= d.rhs) for d in box.disjuncts)


def test_eran_sigmoid_known_sat_instance_is_found_with_replayed_counterexample():
    sat = [(o, v, a) for o, v, a in known_answers("eran_mnist_2021") if a == "sat"]
    assert len(sat) == 1
    onnx_path, vnnlib_path, _ = sat[0]
    result = curvebound.verify(onnx_path, vnnlib_path, timeout=120)
    assert result.verdict == "sat", result.reason
    _assert_replayed(onnx_path, vnnlib_path, result)


def test_eran_unsat_instances_are_never_reported_sat():
    sample = [row for row in known_answers("eran_mnist_2021") if row[2] == "unsat"][::12]
    for onnx_path, vnnlib_path, answer in sample:
        result = curvebound.verify(onnx_path, vnnlib_path, timeout=20, alpha=False)
        assert not contradicts(result.verdict, answer), (onnx_path.name, vnnlib_path.name, result.verdict)


ML4ACOPF_LINEAR = ["14_ieee_ml4acopf-linear-residual", "14_ieee_ml4acopf-linear-nonresidual"]


@pytest.mark.parametrize("model", ML4ACOPF_LINEAR)
def test_ml4acopf_lookup_tables_are_fused_and_bounds_hold_for_sampled_outputs(model):
    """The ReLU lookup tables become PiecewiseLinear ops; the fused graph computes what onnxruntime
    computes, and its CROWN bounds on every output contain the outputs at sampled inputs of a
    property's box (corners included)."""
    import torch

    from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
    from curvebound.graph.onnx_import import load_graph
    from curvebound.ops.base import Interval

    bench = SHARED / "ml4acopf"
    if not bench.is_dir():
        pytest.skip("no ml4acopf")
    path = bench / "onnx" / f"{model}.onnx"
    graph = load_graph(path)
    assert sum(type(n.op).__name__ == "PiecewiseLinear" for n in graph.nodes) == 3
    box = parse_vnnlib(bench / "vnnlib" / "14_ieee_prop4.vnnlib").boxes[0]
    lower = torch.tensor(box.lower, dtype=torch.float64).reshape(1, *graph.input_shape)
    upper = torch.tensor(box.upper, dtype=torch.float64).reshape(1, *graph.input_shape)
    g = torch.Generator().manual_seed(0)
    t = torch.rand(3000, *graph.input_shape, generator=g, dtype=torch.float64)
    t[:500] = t[:500].round()  # corners
    xs = lower + t * (upper - lower)
    ys = graph.forward(xs).reshape(len(xs), -1)
    onnx_ys = np.stack([run_onnx(path, xs[i].numpy()).reshape(-1) for i in range(0, 3000, 300)])
    assert np.allclose(onnx_ys, ys[::300].numpy(), rtol=1e-4, atol=1e-4)
    bounds = intermediate_bounds(graph, Interval(lower, upper))
    n_out = graph.output_size
    C = torch.cat([torch.eye(n_out), -torch.eye(n_out)]).to(torch.float64)[:, None, :].reshape(
        2 * n_out, 1, *graph.output_shape)
    lb = spec_lower_bound(graph, bounds, C)[:, 0]
    low, high = lb[:n_out], -lb[n_out:]
    slack = 1e-9 * (1 + ys.abs())
    assert bool((ys >= low - slack).all()) and bool((ys <= high + slack).all())


def test_ml4acopf_known_answers_on_the_14_bus_lookup_models():
    rows = [r for r in known_answers("ml4acopf") if "14_ieee_ml4acopf-linear" in r[0].name]
    for onnx_path, vnnlib_path, answer in rows[::3]:
        result = curvebound.verify(onnx_path, vnnlib_path, timeout=20)
        assert not contradicts(result.verdict, answer), (onnx_path.name, vnnlib_path.name, result.verdict)
        if result.verdict == "sat":
            _assert_replayed(onnx_path, vnnlib_path, result)


def test_ml4acopf_bounds_never_refute_the_disjunct_a_counterexample_violates():
    """On the known-sat 14-bus lookup-table instances: the CROWN bound (with the fused
    PiecewiseLinear ops) of the disjunct that the replayed counterexample violates must not refute it."""
    import torch

    from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
    from curvebound.graph.onnx_import import load_graph
    from curvebound.ops.base import Interval

    rows = [r for r in known_answers("ml4acopf") if r[2] == "sat" and "14_ieee" in r[0].name]
    assert rows
    for onnx_path, vnnlib_path, _ in rows:
        found = curvebound.verify(onnx_path, vnnlib_path, timeout=30)
        assert found.verdict == "sat", (onnx_path.name, found.reason)
        _assert_replayed(onnx_path, vnnlib_path, found)
        graph = load_graph(onnx_path)
        box = parse_vnnlib(vnnlib_path).boxes[found.counterexample.box]
        region = Interval(torch.tensor(box.lower).reshape(1, *graph.input_shape),
                          torch.tensor(box.upper).reshape(1, *graph.input_shape))
        disjunct = box.disjuncts[found.counterexample.disjunct]
        C = torch.tensor(disjunct.C, dtype=torch.float64)[:, None, :].reshape(len(disjunct.rhs), 1, *graph.output_shape)
        lower = spec_lower_bound(graph, intermediate_bounds(graph, region), C)[:, 0]
        at_cex = torch.tensor(disjunct.C @ run_onnx(onnx_path, found.counterexample.x))  # float32 model
        assert bool((lower <= at_cex + 1e-4 * (1 + at_cex.abs())).all()), (onnx_path.name, lower, at_cex)
        assert bool((lower <= torch.tensor(disjunct.rhs)).all()), (onnx_path.name, lower, disjunct.rhs)
