"""alpha-CROWN against auto_LiRPA's recorded bounds (``../shared/reference``; skipped without it).

ACAS Xu prop_1 is the case where the IBP spec bound (C folded onto the last hidden layer's CROWN
bounds) beats CROWN at the start; alpha-CROWN used to follow the IBP gradient there and stop at -986
against the reference's -655. prop_3 has four rows in one disjunct: pulling only the best row stalled
at -0.29 against -0.175."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from curvebound.bounds.alpha import optimize_spec_bound
from curvebound.bounds.crown import intermediate_bounds, spec_lower_bound
from curvebound.graph.onnx_import import load_graph
from curvebound.io.vnnlib import parse_vnnlib
from curvebound.ops.base import Interval

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
pytestmark = pytest.mark.skipif(not (SHARED / "reference" / "bounds").is_dir(), reason="../shared/reference is absent")


def reference_alpha(bench: str, onnx: str, vnnlib: str) -> list[float]:
    for record in json.loads((SHARED / "reference" / "bounds" / f"{bench}.json").read_text()):
        if record["onnx"] == onnx and record["vnnlib"] == vnnlib and record["method"] == "alpha-CROWN":
            return [row for d in record["disjuncts"] for row in d["lower"]]
    raise LookupError((onnx, vnnlib))


@pytest.mark.parametrize("onnx,vnnlib", [("onnx/ACASXU_run2a_1_3_batch_2000.onnx", "vnnlib/prop_1.vnnlib"),
                                         ("onnx/ACASXU_run2a_1_3_batch_2000.onnx", "vnnlib/prop_3.vnnlib")])
def test_alpha_crown_matches_the_reference_on_acasxu(onnx, vnnlib):
    folder = SHARED / "benchmarks" / "acasxu_control"
    graph = load_graph(folder / onnx)
    box = parse_vnnlib(folder / vnnlib).boxes[0]
    shape = (1, *graph.input_shape)
    region = Interval(torch.as_tensor(box.lower, dtype=torch.float64).reshape(shape),
                      torch.as_tensor(box.upper, dtype=torch.float64).reshape(shape))
    C = torch.as_tensor(np.concatenate([d.C for d in box.disjuncts]), dtype=torch.float64)[:, None, :]
    rhs = torch.as_tensor(np.concatenate([d.rhs for d in box.disjuncts]), dtype=torch.float64)
    with torch.no_grad():
        bounds = intermediate_bounds(graph, region)
        crown = spec_lower_bound(graph, bounds, C)
    result = optimize_spec_bound(graph, region, C, rhs, torch.zeros(len(rhs), dtype=torch.long), bounds, crown)
    ours = max((result.lower[:, 0] - rhs).tolist())  # one disjunct: refuted when its best row is
    ref = max(reference_alpha("acasxu_control", onnx, vnnlib))
    assert ours >= ref - 0.01 * abs(ref), (ours, ref)
