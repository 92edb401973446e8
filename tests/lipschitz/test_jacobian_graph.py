import pytest
import torch

from curvebound.graph.onnx_import import load_graph
from curvebound.lipschitz import UnsupportedGradient, jacobian_graph
from curvebound.ops.bilinear import Max2
from tests.lipschitz.nets import mlp, product_net

LSNC = "/work/shared/benchmarks/lsnc_2024/onnx"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def autograd_jacobian(graph, x):
    x = x.clone().requires_grad_(True)
    y = graph.forward(x).reshape(x.shape[0], -1)
    rows = [torch.autograd.grad(y[:, k].sum(), x, retain_graph=True)[0].reshape(x.shape[0], -1)
            for k in range(y.shape[1])]
    return torch.stack(rows, 1)  # [batch, n_out, n_in]


GRAPHS = [mlp([3, 8, 8, 2], a, seed) for seed, a in enumerate(["relu", "sigmoid", "tanh", "sin", "cos", "gelu",
                                                               "leaky"])]
GRAPHS += [product_net(3, 5, 2, 7)]


@pytest.mark.parametrize("graph", GRAPHS, ids=lambda g: type(g.nodes[2].op).__name__)
def test_jacobian_graph_matches_autograd(graph):
    x = torch.randn(16, *graph.input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = autograd_jacobian(graph, x)
    for k in range(graph.output_size):
        jac = jacobian_graph(graph, k)
        assert jac.output_shape == graph.input_shape
        assert len(jac.nodes) > len(graph.nodes) and jac.nodes[: len(graph.nodes)][-1].op is graph.nodes[-1].op
        torch.testing.assert_close(jac.forward(x).reshape(16, -1), expected[:, k], rtol=1e-12, atol=1e-12)
    full = jacobian_graph(graph, None)
    assert full.output_shape == (graph.output_size, graph.input_size)
    torch.testing.assert_close(full.forward(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["quadrotor2d_state", "quadrotor2d_output"])
def test_jacobian_of_benchmark_models_with_div_sin_cos_matmul(name):
    graph = load_graph(f"{LSNC}/{name}.onnx")
    x = 0.3 * torch.randn(8, *graph.input_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = autograd_jacobian(graph, x)
    full = jacobian_graph(graph, None).forward(x)
    torch.testing.assert_close(full, expected, rtol=1e-10, atol=1e-10)


def test_unsupported_operator_is_named():
    graph = mlp([2, 3, 1], "relu", 0)
    graph.nodes[2].op = Max2()
    graph.nodes[2].inputs = (1, 1)
    with pytest.raises(UnsupportedGradient, match="Max"):
        jacobian_graph(graph, 0)
