"""The whole pipeline with neuron branch-and-bound on small nets with each nonlinearity: a property
made violable (threshold just above the sampled minimum) comes back ``sat`` with a counterexample
replayed on onnxruntime; one well below the minimum never does."""

from __future__ import annotations

import pytest
import torch

import curvebound


class Net(torch.nn.Module):
    def __init__(self, act, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.first, self.second, self.act = torch.nn.Linear(3, 8), torch.nn.Linear(8, 1), act

    def forward(self, x):
        return self.second(self.act(self.first(x) * 1.5))


ACTS = {"sin": torch.sin, "cos": torch.cos, "gelu": torch.nn.functional.gelu, "silu": torch.nn.functional.silu,
        "softplus": torch.nn.functional.softplus, "exp": torch.exp, "atan": torch.atan, "tanh": torch.tanh,
        "elu": torch.nn.functional.elu}


def spec(rhs: float) -> str:
    box = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -0.5))\n(assert (<= X_{i} 0.5))\n" for i in range(3))
    return box + f"(declare-const Y_0 Real)\n(assert (<= Y_0 {rhs!r}))\n"


@pytest.mark.parametrize("name", list(ACTS))
def test_violable_property_is_found_and_a_safe_one_is_never_sat(name, tmp_path):
    net = Net(ACTS[name]).double()
    with torch.no_grad():
        y = net(torch.rand(20000, 3, dtype=torch.float64) - 0.5)[:, 0]
    low, span = float(y.min()), float(y.max() - y.min())
    violable, safe = tmp_path / "violable.vnnlib", tmp_path / "safe.vnnlib"
    violable.write_text(spec(low + 0.02 * span))
    safe.write_text(spec(low - 0.05 * span))
    found = curvebound.verify(net.float(), violable, timeout=20, input_split="never")
    assert found.verdict == "sat", (name, found.verdict, found.reason)
    assert found.counterexample is not None and found.counterexample.y[0] <= low + 0.02 * span
    proved = curvebound.verify(net.float(), safe, timeout=10, input_split="never")
    assert proved.verdict != "sat", name
