import math

import pytest
import torch
from click.testing import CliRunner

from curvebound.lipschitz import lipschitz_bound, lipschitz_command
from curvebound.lipschitz.certify import sampled_lower_bound
from curvebound.ops.base import Interval
from tests.lipschitz.nets import mlp, product_net

LSNC = "/work/shared/benchmarks/lsnc_2024"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def grid_gradient_norms(graph, box, k, norm, n=80):
    """Gradient norms of output k on an n x n grid over a 2-D input box (autograd)."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    a, b = torch.meshgrid(t, t, indexing="ij")
    x = box.lower + torch.stack([a.flatten(), b.flatten()], 1) * (box.upper - box.lower)
    x.requires_grad_(True)
    y = graph.forward(x)[:, k]
    J = torch.autograd.grad(y.sum(), x)[0]
    if norm == "inf":
        return J.abs().sum(1)
    if norm == "1":
        return J.abs().amax(1)
    return J.norm(dim=1)


def box_around(center, eps):
    c = torch.tensor([center], dtype=torch.float64)
    return Interval(c - eps, c + eps)


NETS = [("relu", 0), ("sigmoid", 1), ("tanh", 2), ("sin", 3), ("gelu", 4), ("leaky", 5)]


@pytest.mark.parametrize("norm", ["inf", "1", "2"])
@pytest.mark.parametrize("activation,seed", NETS)
def test_certified_bound_is_above_every_sampled_gradient(activation, seed, norm):
    for s in range(2 if norm == "inf" else 1):
        graph = mlp([2, 6, 6, 2], activation, 10 * seed + s)
        box = box_around([0.3 * s, -0.2], 0.4)
        result = lipschitz_bound(graph, box, norm=norm, output=None, alpha=False)
        for bound in result.per_output:
            dense = float(grid_gradient_norms(graph, box, bound.output, norm).max())
            assert bound.upper >= dense * (1 - 1e-9), (bound, dense)
            assert bound.upper >= bound.lower * (1 - 1e-9)
            assert bound.upper <= bound.upper_crown and bound.upper <= bound.upper_interval
        assert result.upper == max(b.upper for b in result.per_output)


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_products_and_alpha_stay_sound_and_alpha_does_not_loosen(norm):
    graph = product_net(2, 4, 1, 3)
    box = box_around([0.1, 0.2], 0.3)
    plain = lipschitz_bound(graph, box, norm=norm, output=0, alpha=False)
    tuned = lipschitz_bound(graph, box, norm=norm, output=0, alpha=True, time_budget=2.0)
    dense = float(grid_gradient_norms(graph, box, 0, norm).max())
    assert tuned.upper >= dense * (1 - 1e-9) and plain.upper >= dense * (1 - 1e-9)
    assert tuned.upper <= plain.upper * (1 + 1e-9)
    assert 0 < tuned.lower <= tuned.upper


def test_one_hidden_layer_relu_bound_against_exact_constant():
    """Exact L-inf Lipschitz constant of a 2-6-1 ReLU net on a box: max over the activation patterns
    seen on a fine grid (every region of the box wider than the grid step) of ||W2^T diag(s) W1||_1."""
    ratios = []
    for seed in range(4):
        graph = mlp([2, 6, 1], "relu", seed)
        box = box_around([0.0, 0.0], 0.25)
        exact = float(grid_gradient_norms(graph, box, 0, "inf", n=300).max())
        result = lipschitz_bound(graph, box, norm="inf", output=0, alpha=False)
        assert result.upper >= exact * (1 - 1e-9)
        assert result.lower <= exact * (1 + 1e-9)
        ratios.append(result.upper / exact)
    assert max(ratios) < 3.0, ratios


def test_a_linear_region_gives_the_exact_constant():
    """All ReLUs stable on a tiny box: the gradient is constant and the bound is exact."""
    graph = mlp([2, 5, 5, 1], "relu", 11)
    box = box_around([0.4, -0.3], 1e-6)
    result = lipschitz_bound(graph, box, norm="inf", output=0, alpha=False)
    assert result.upper == pytest.approx(result.lower, rel=1e-9)


def test_sampled_lower_bound_finds_the_maximum_of_a_smooth_net():
    graph = mlp([2, 4, 1], "tanh", 2)
    box = box_around([0.0, 0.0], 1.0)
    dense = float(grid_gradient_norms(graph, box, 0, "2", n=200).max())
    found, where = sampled_lower_bound(graph, box, 0, "2")
    assert found == pytest.approx(dense, rel=1e-3)
    assert ((where >= box.lower[0]) & (where <= box.upper[0])).all()


def test_cli_prints_certified_and_sampled_bounds():
    runner = CliRunner()
    model = f"{LSNC}/onnx/quadrotor2d_state.onnx"
    result = runner.invoke(lipschitz_command, [model, "--center", "0,0,0,0,0,0", "--eps", "0.05", "--output", "0",
                                               "--norm", "2", "--no-alpha"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(": ", 1) for line in result.output.splitlines() if line.startswith(("cert", "samp")))
    upper, lower = float(lines["certified upper"]), float(lines["sampled lower"])
    assert math.isfinite(upper) and 0 < lower <= upper
    bad = runner.invoke(lipschitz_command, [model, "--eps", "0.1"])
    assert bad.exit_code != 0


def test_input_splitting_tightens_and_stays_sound():
    graph = mlp([2, 6, 1], "relu", 1)
    box = box_around([0.0, 0.0], 0.5)
    exact = float(grid_gradient_norms(graph, box, 0, "inf", n=300).max())
    plain = lipschitz_bound(graph, box, norm="inf", output=0, alpha=False)
    split = lipschitz_bound(graph, box, norm="inf", output=0, alpha=False, split=True, max_leaves=16)
    assert exact * (1 - 1e-9) <= split.upper <= plain.upper
    assert split.upper < plain.upper or plain.upper <= exact * (1 + 1e-9)
