import torch

from curvebound.ops.relu import LeakyRelu, Relu
from tests.helpers import assert_elementwise_sound, interval_cases


def test_relu_default_relaxation_is_sound():
    lower, upper = interval_cases()
    assert_elementwise_sound(Relu(), lower, upper)


def test_leaky_relu_sound_for_any_feasible_slope():
    lower, upper = interval_cases(seed=3)
    op = LeakyRelu(0.1)
    assert_elementwise_sound(op, lower, upper)
    for slope in (0.1, 0.5, 1.0, 7.0, -3.0):  # infeasible values are clamped inside relax
        params = torch.full((1, *lower.shape), slope, dtype=torch.float64)
        assert_elementwise_sound(op, lower, upper, params)


def test_relu_relaxation_is_exact_when_stable():
    r = Relu().relax(torch.tensor([1.0, -3.0]), torch.tensor([2.0, -1.0]))
    assert r.lower_slope.tolist() == [1.0, 0.0] and r.upper_slope.tolist() == [1.0, 0.0]
    assert r.upper_intercept.tolist() == [0.0, 0.0]


def test_relu_chord_on_crossing_interval():
    r = Relu().relax(torch.tensor([-1.0]), torch.tensor([3.0]))
    assert torch.allclose(r.upper_slope, torch.tensor([0.75]))
    assert torch.allclose(r.upper_intercept, torch.tensor([0.75]))
    assert r.lower_slope.item() == 1.0  # adaptive: u > -l
