"""PGD attack: finds reachable violations, reports unreachable ones with a positive margin."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from curvebound.attack.pgd import AttackResult, disjunct_margins, pgd_attack
from curvebound.spec import Disjunct, InputBox


def _mlp(n_in: int, n_out: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(n_in, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
        torch.nn.Linear(16, n_out),
    ).to(dtype)


def _lipschitz(model: torch.nn.Sequential) -> float:
    """Upper bound on the l2 Lipschitz constant (ReLU and tanh are 1-Lipschitz)."""
    out = 1.0
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            out *= float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))
    return out


def _grid(lower: np.ndarray, upper: np.ndarray, n: int) -> torch.Tensor:
    """``[n^k, d]`` grid over the box, with ``k`` its non-degenerate dims."""
    axes = [torch.linspace(float(a), float(b), n if a < b else 1, dtype=torch.float64)
            for a, b in zip(lower, upper, strict=True)]
    return torch.cartesian_prod(*axes)


def _margin_at(model, x: np.ndarray, box: InputBox) -> float:
    with torch.no_grad():
        y = model(torch.as_tensor(x, dtype=torch.float64)[None])
    return float(disjunct_margins(y, box.disjuncts).min())


C_DIFF = np.array([[1.0, -1.0]])  # y0 - y1


@pytest.fixture(scope="module")
def net2():
    """A 2-input net and dense samples of y0 - y1 over [-1, 1]^2."""
    model = _mlp(2, 2, seed=3)
    lower, upper = -np.ones(2), np.ones(2)
    n = 301
    pts = _grid(lower, upper, n)
    with torch.no_grad():
        diff = (model(pts) @ torch.as_tensor(C_DIFF.T)).squeeze(1)
    return model, lower, upper, pts, diff, 2.0 / (n - 1)


def test_finds_small_reachable_region(net2):
    model, lower, upper, pts, diff, _ = net2
    lo, hi = float(diff.min()), float(diff.max())
    assert lo < hi
    # unsafe iff y0 - y1 <= rhs; only ~0.1% of the samples are unsafe
    rhs = float(torch.quantile(diff, 0.001))
    assert lo < rhs
    box = InputBox(lower, upper, [Disjunct(C_DIFF.copy(), np.array([rhs]))])
    res = pgd_attack(model, box, restarts=10, steps=100, seed=0)
    assert isinstance(res, AttackResult)
    assert res.found and res.margin <= 0 and res.disjunct == 0
    assert res.margin <= -1e-5 * (1 + abs(rhs))  # polished past the default slack
    assert res.x.dtype == np.float64 and res.x.shape == (2,)
    assert np.all(res.x >= lower) and np.all(res.x <= upper)
    assert _margin_at(model, res.x, box) == pytest.approx(res.margin, abs=1e-12)
    assert _margin_at(model, res.x, box) <= 0


def test_unreachable_reports_positive_margin_near_true_minimum(net2):
    model, lower, upper, pts, diff, h = net2
    sampled_min = float(diff.min())
    # every x is within h/sqrt(2) of a grid point and |c|_2 = sqrt(2), so min over the box of y0 - y1
    # is at least sampled_min - slack
    slack = _lipschitz(model) * np.linalg.norm(C_DIFF) * h / np.sqrt(2.0)
    rhs = sampled_min - slack - 0.05
    box = InputBox(lower, upper, [Disjunct(C_DIFF.copy(), np.array([rhs]))])
    res = pgd_attack(model, box, restarts=10, steps=100, seed=1)
    assert not res.found
    assert res.margin > 0
    # no better than what is possible, and about as good as the dense grid
    assert res.margin >= sampled_min - slack - rhs
    assert res.margin <= sampled_min - rhs + 1e-3
    assert np.all(res.x >= lower) and np.all(res.x <= upper)


@pytest.mark.parametrize("max_batch", [1024, 4])  # per-disjunct batch, and min-over-disjuncts batch
def test_picks_the_reachable_disjunct_of_several(net2, max_batch):
    model, lower, upper, pts, diff, _ = net2
    with torch.no_grad():
        y = model(pts)
    # disjunct 0 and 2 are unreachable (y0 below its sampled min - 10); disjunct 1 is a 2-row
    # conjunction reachable on a small set: y0 - y1 <= q and y1 >= median of y1 over those points
    unreachable = Disjunct(np.array([[1.0, 0.0]]), np.array([float(y[:, 0].min()) - 10.0]))
    q = float(torch.quantile(diff, 0.05))
    sel = y[diff <= q]
    t = float(sel[:, 1].median())
    reachable = Disjunct(np.array([[1.0, -1.0], [0.0, -1.0]]), np.array([q, -t]))
    box = InputBox(lower, upper, [unreachable, reachable, unreachable])
    res = pgd_attack(model, box, restarts=8, steps=100, seed=0, max_batch=max_batch)
    assert res.found and res.disjunct == 1
    with torch.no_grad():
        yx = model(torch.as_tensor(res.x)[None])[0].numpy()
    assert np.all(reachable.C @ yx <= reachable.rhs)


def test_zero_width_dims_stay_fixed():
    model = _mlp(4, 3, seed=5)
    lower = np.array([-1.0, 0.3, -0.5, 0.7])
    upper = np.array([1.0, 0.3, 0.5, 0.7])
    pts = _grid(lower, upper, 101)
    with torch.no_grad():
        y = model(pts)
    # unsafe iff y2 >= its 98th percentile over the (3-d) slice: -y2 <= -q
    q = float(torch.quantile(y[:, 2], 0.98))
    box = InputBox(lower, upper, [Disjunct(np.array([[0.0, 0.0, -1.0]]), np.array([-q]))])
    res = pgd_attack(model, box, restarts=6, steps=60, seed=0)
    assert res.found
    assert res.x[1] == 0.3 and res.x[3] == 0.7
    assert np.all(res.x >= lower) and np.all(res.x <= upper)


def test_float32_model_stays_inside_float64_box():
    model = _mlp(3, 2, seed=7, dtype=torch.float32)
    lower = np.array([0.1, -0.3, 0.2])  # none of these are float32 values
    upper = np.array([0.7, 0.1, 0.2000001])
    # unreachable: maximizes y0 - y1 hard against the box faces, exercising projection
    box = InputBox(lower, upper, [Disjunct(np.array([[-1.0, 1.0]]), np.array([-1e6]))])
    res = pgd_attack(model, box, restarts=5, steps=30, seed=0)
    assert not res.found and np.isfinite(res.margin)
    assert np.all(res.x >= lower) and np.all(res.x <= upper)
    assert np.all(res.x.astype(np.float32).astype(np.float64) == res.x)


def test_many_disjuncts_many_outputs_and_deadline():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2000)).double()
    rng = np.random.default_rng(0)
    lower, upper = -np.ones(5), np.ones(5)
    disjuncts = []
    for _ in range(300):  # sparse rows, like ml4acopf: y_i >= big (unreachable)
        idx = rng.choice(2000, size=int(rng.integers(1, 4)), replace=False)
        C = np.zeros((idx.size, 2000))
        C[np.arange(idx.size), idx] = -1.0
        disjuncts.append(Disjunct(C, np.full(idx.size, -1e3)))
    box = InputBox(lower, upper, disjuncts)
    start = time.monotonic()
    res = pgd_attack(model, box, restarts=30, steps=20, seed=0)
    assert not res.found and 0 < res.margin < 1e3 and 0 <= res.disjunct < 300
    assert res.steps_run == 20
    assert time.monotonic() - start < 30  # one [30, 5] batch per step, not [9000, 5]
    late = pgd_attack(model, box, restarts=30, steps=1000, seed=0, deadline=time.monotonic())
    assert late.steps_run == 0 and not late.found


def test_rejects_bad_boxes():
    model = _mlp(2, 2, seed=0)
    d = [Disjunct(C_DIFF.copy(), np.zeros(1))]
    with pytest.raises(ValueError):
        pgd_attack(model, InputBox(np.array([0.0, -np.inf]), np.ones(2), d))
    with pytest.raises(ValueError):
        pgd_attack(model, InputBox(np.ones(2), np.zeros(2), d))
