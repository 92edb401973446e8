import math

import pytest
import torch

from curvebound.ops.base import Interval
from curvebound.ops.bilinear import Clip, Floor, MatMul2, Max2, Min2, Mul2
from tests.helpers import assert_elementwise_sound, interval_cases

INF = math.inf
F64 = torch.float64
FAR = (1e3, 1e6)  # how far beyond a finite end the samples go on an infinite side


def random_box(shape, seed, infinite=True):
    """``Interval`` of float64 ``[batch, *shape]`` mixing random, narrow, zero-width, wide, one-sided,
    touching-0, huge and (optionally) infinite element intervals."""
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    a = torch.randn(n, generator=g, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    kinds = torch.randint(0, 13 if infinite else 10, (n,), generator=g)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    c = a * 3
    cases = [
        (lo, hi),  # random
        (c, c + 1e-7),  # narrow
        (c, c),  # zero width
        (lo * 100, hi * 100),  # wide
        (lo.abs(), lo.abs() + hi.abs()),  # positive
        (-(lo.abs() + hi.abs()), -lo.abs()),  # negative
        (torch.zeros_like(a), hi.abs()),  # touches 0 from above
        (-hi.abs(), torch.zeros_like(a)),  # touches 0 from below
        (lo * 1e6, hi * 1e6),  # huge
        (lo, lo),  # zero width, maybe 0
        (torch.full_like(a, -INF), hi),
        (lo, torch.full_like(a, INF)),
        (torch.full_like(a, -INF), torch.full_like(a, INF)),
    ]
    lower = torch.stack([lo_ for lo_, _ in cases])[kinds, torch.arange(n)]
    upper = torch.stack([hi_ for _, hi_ in cases])[kinds, torch.arange(n)]
    return Interval(lower.reshape(1, *shape), upper.reshape(1, *shape))


def sample_box(box, n, seed):
    """``[n, *box_shape]`` points: uniform, corners (random per element), all-lower, all-upper; infinite
    sides replaced by points 1e3 / 1e6 beyond the finite end (or around 0)."""
    g = torch.Generator().manual_seed(seed)
    lower, upper = box.lower, box.upper
    pts = []
    for far in FAR:
        lo = torch.where(torch.isinf(lower), torch.where(torch.isinf(upper), -far, upper - far), lower)
        hi = torch.where(torch.isinf(upper), torch.where(torch.isinf(lower), far, lower + far), upper)
        t = torch.rand(n, *lower.shape, generator=g, dtype=lower.dtype)
        corner = (torch.rand(n, *lower.shape, generator=g) < 0.5).to(lower.dtype)
        pts += [lo + t * (hi - lo), lo + corner * (hi - lo), lo[None], hi[None]]
    return torch.cat(pts)


def check_backward_sound(op, x_box, y_box, params=None, spec=3, n=150, seed=0):
    """Sampled check of (*) ``A . op(x, y) >= A_x . x + A_y . y + bias`` and of IBP containment."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = tuple(x_box.lower.shape[1:]), tuple(y_box.lower.shape[1:])
    x = sample_box(x_box, n, seed + 1)  # [N, 1, *xs]
    y = sample_box(y_box, n, seed + 2)
    N = x.shape[0]
    z = op.forward(x.reshape(N, *xs), y.reshape(N, *ys))  # [N, *out]
    out_shape = tuple(z.shape[1:])
    A = torch.randn(spec, 1, *out_shape, generator=g, dtype=torch.float64)
    A = A * (torch.rand(A.shape, generator=g) > 0.2)  # some exact zeros
    if params is not None:
        params = params(out_shape, spec, g)
    (coeff_x, coeff_y), bias = op.backward(A, [xs, ys], [x_box, y_box], params)
    assert coeff_x.shape == (spec, 1, *xs) and coeff_y.shape == (spec, 1, *ys) and bias.shape == (spec, 1)
    assert not torch.isnan(coeff_x).any() and not torch.isnan(coeff_y).any() and not torch.isnan(bias).any()
    assert torch.isfinite(coeff_x).all() and torch.isfinite(coeff_y).all()
    assert not (bias == INF).any()

    lhs = (A[None, :, 0] * z[:, None]).reshape(N, spec, -1)  # [N, spec, out]
    tx = (coeff_x[None, :, 0] * x.reshape(N, 1, *xs)).reshape(N, spec, -1)
    ty = (coeff_y[None, :, 0] * y.reshape(N, 1, *ys)).reshape(N, spec, -1)
    rhs = tx.sum(-1) + ty.sum(-1) + bias[None, :, 0]
    scale = lhs.abs().sum(-1) + tx.abs().sum(-1) + ty.abs().sum(-1) + bias.abs().nan_to_num(0, 0, 0)[None, :, 0]
    tol = 1e-9 * (1 + scale)
    gap = lhs.sum(-1) - rhs + tol
    assert (gap >= 0).all(), f"{op.kind}: (*) violated by {-gap.min().item()}"

    box = op.interval(x_box, y_box)
    assert (z >= box.lower - 1e-9 * (1 + z.abs())).all(), f"{op.kind}: interval lower"
    assert (z <= box.upper + 1e-9 * (1 + z.abs())).all(), f"{op.kind}: interval upper"
    return coeff_x, coeff_y, bias


def noisy_params(k):
    def make(out_shape, spec, g):
        return 0.5 + 2 * torch.randn(k, spec, 1, *out_shape, generator=g, dtype=torch.float64)

    return make


MUL_SHAPES = [((6,), (6,)), ((2, 3), (3,)), ((1, 4), (5, 1)), ((4,), (2, 4)), ((3, 1, 2), (4, 1))]


@pytest.mark.parametrize("op_cls", [Mul2, Max2, Min2])
@pytest.mark.parametrize("shapes", MUL_SHAPES)
def test_two_input_elementwise_backward_is_sound(op_cls, shapes):
    xs, ys = shapes
    for seed in range(6):
        x_box, y_box = random_box(xs, 10 * seed), random_box(ys, 10 * seed + 5)
        check_backward_sound(op_cls(), x_box, y_box, seed=seed)
        check_backward_sound(op_cls(), x_box, y_box, params=noisy_params(2), seed=seed)


def test_mul_corner_params_are_sound():
    x_box, y_box = random_box((5, 4), 1), random_box((4,), 2)
    for value in (0.0, 1.0, 0.5):
        check_backward_sound(Mul2(), x_box, y_box, params=lambda s, spec, g, v=value: torch.full((2, spec, 1, *s), v))


def test_mul_zero_width_operand_gives_the_exact_linear_map():
    x_box = Interval(torch.tensor([[-2.0, 0.5, -INF]], dtype=F64), torch.tensor([[3.0, 4.0, INF]], dtype=F64))
    c = torch.tensor([[1.5, -0.25, 2.0]], dtype=F64)
    A = torch.tensor([[[1.0, -2.0, 0.5]], [[-1.0, 3.0, -4.0]]], dtype=F64)
    (coeff_x, coeff_y), bias = Mul2().backward(A, [(3,), (3,)], [x_box, Interval(c, c)])
    assert torch.equal(coeff_x, A * c) and torch.equal(coeff_y, torch.zeros_like(A))
    assert torch.equal(bias, torch.zeros(2, 1, dtype=F64))
    (coeff_x, coeff_y), bias = Mul2().backward(A, [(3,), (3,)], [Interval(c, c), x_box])
    assert torch.equal(coeff_y, A * c) and torch.equal(coeff_x, torch.zeros_like(A))


def test_mul_default_planes_reach_the_interval_bound():
    """Each default plane's extreme over the box equals the product's exact range (module doc)."""
    x_box, y_box = random_box((40,), 3, infinite=False), random_box((40,), 4, infinite=False)
    eye = torch.eye(40, dtype=torch.float64)[:, None]  # [spec, batch, 40]
    A = torch.cat([eye, -eye])
    (cx, cy), bias = Mul2().backward(A, [(40,), (40,)], [x_box, y_box])

    def concretize(coeff, box):
        return (coeff.clamp(min=0) * box.lower + coeff.clamp(max=0) * box.upper).sum(-1)

    bound = (concretize(cx, x_box) + concretize(cy, y_box) + bias)[:, 0]
    exact = Mul2().interval(x_box, y_box)
    scale = 1e-9 * (1 + exact.lower.abs() + exact.upper.abs())[0]
    assert (bound[:40] - exact.lower[0]).abs().le(scale).all()
    assert (-bound[40:] - exact.upper[0]).abs().le(scale).all()


@pytest.mark.parametrize("op_cls", [Mul2, Max2, Min2])
def test_init_params_reproduce_the_default(op_cls):
    x_box, y_box = random_box((2, 3), 7), random_box((3,), 8)
    A = torch.randn(4, 1, 2, 3, dtype=torch.float64)
    op = op_cls()
    params = op.init_params([x_box, y_box], spec=4)
    assert params.shape == (2, 4, 1, 2, 3)
    assert torch.equal(op.project_params(params, [x_box, y_box]), params)
    default = op.backward(A, [(2, 3), (3,)], [x_box, y_box])
    tuned = op.backward(A, [(2, 3), (3,)], [x_box, y_box], params)
    for a, b in zip([*default[0], default[1]], [*tuned[0], tuned[1]]):
        assert torch.equal(a, b)


def test_mul_infinite_operands():
    # x unbounded both ways, y finite and crossing 0: no plane, IBP constants (-inf lower, +inf upper)
    x_box = Interval(torch.tensor([[-INF, 1.0, 0.0]], dtype=F64), torch.tensor([[INF, INF, 0.0]], dtype=F64))
    y_box = Interval(torch.tensor([[-1.0, 2.0, -INF]], dtype=F64), torch.tensor([[2.0, 3.0, INF]], dtype=F64))
    A = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], [[0.0, -1.0, 0.0]], [[0.0, 0.0, -5.0]]], dtype=F64)
    (cx, cy), bias = Mul2().backward(A, [(3,), (3,)], [x_box, y_box])
    assert bias[0, 0] == -INF and cx[0].abs().sum() == 0 and cy[0].abs().sum() == 0
    # x in [1, inf], y in [2, 3]: lower plane 1 is finite: xy >= 2x + y - 2
    assert cx[1, 0].tolist() == [0.0, 2.0, 0.0] and cy[1, 0].tolist() == [0.0, 1.0, 0.0]
    assert abs(bias[1, 0].item() + 2) < 1e-12
    # upper side there needs x_u = inf in both planes... except plane 1 (x_l, y_u): xy <= 3x + y - 3
    assert cx[2, 0].tolist() == [0.0, -3.0, 0.0] and abs(bias[2, 0].item() - 3) < 1e-12
    # x == 0 exactly: the product is 0 whatever y is
    assert cx[3].abs().sum() == 0 and cy[3].abs().sum() == 0 and bias[3, 0] == 0
    box = Mul2().interval(x_box, y_box)
    assert box.lower.tolist() == [[-INF, 2.0, 0.0]] and box.upper.tolist() == [[INF, INF, 0.0]]


MATMUL_SHAPES = [((2, 3), (3, 4)), ((2, 2, 3), (2, 3, 2)), ((3, 2), (2, 2, 3)), ((2, 1, 2, 3), (3, 3, 1))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES)
def test_matmul_backward_is_sound(shapes):
    xs, ys = shapes
    for seed in range(4):
        x_box, y_box = random_box(xs, 10 * seed, infinite=seed != 0), random_box(ys, 10 * seed + 5, infinite=seed > 1)
        check_backward_sound(MatMul2(), x_box, y_box, seed=seed)
        check_backward_sound(MatMul2(), x_box, y_box, params=noisy_params(2), seed=seed)


def test_matmul_interval_is_the_exact_sum_of_product_ranges():
    x_box, y_box = random_box((2, 3, 4), 1, infinite=False), random_box((4, 5), 2, infinite=False)
    box = MatMul2().interval(x_box, y_box)
    x_col = Interval(x_box.lower[..., None], x_box.upper[..., None])  # [1, 2, 3, 4, 1]
    prod = Mul2().interval(x_col, y_box)  # [1, 2, 3, 4, 5]
    exact_lower, exact_upper = prod.lower.sum(-2), prod.upper.sum(-2)
    tol = 1e-12 * (1 + exact_lower.abs() + exact_upper.abs())
    assert ((box.lower - exact_lower).abs() <= tol * 1e3).all() and (box.lower <= exact_lower).all()
    assert ((box.upper - exact_upper).abs() <= tol * 1e3).all() and (box.upper >= exact_upper).all()


def test_matmul_matches_mul_planes_when_k_is_one():
    """With k = 1 the products are single Mul elements: same planes as Mul2 with the same r."""
    g = torch.Generator().manual_seed(5)
    x_box, y_box = (Interval(*torch.randn(2, 1, *s, generator=g, dtype=F64).sort(0).values) for s in ((3, 1), (1, 4)))
    A = torch.randn(2, 1, 3, 4, dtype=torch.float64)
    (mx, my), mb = MatMul2().backward(A, [(3, 1), (1, 4)], [x_box, y_box])
    (ex, ey), eb = Mul2().backward(A, [(3, 1), (1, 4)], [x_box, y_box])
    assert torch.allclose(mx, ex) and torch.allclose(my, ey)
    assert torch.allclose(mb, eb, rtol=1e-9, atol=1e-9)


def test_matmul_init_params_reproduce_the_default():
    x_box, y_box = random_box((2, 3), 7), random_box((3, 4), 8)
    A = torch.randn(3, 1, 2, 4, dtype=torch.float64)
    op = MatMul2()
    params = op.init_params([x_box, y_box], spec=3)
    assert params.shape == (2, 3, 1, 2, 4) and params.min() >= 0 and params.max() <= 1
    default = op.backward(A, [(2, 3), (3, 4)], [x_box, y_box])
    tuned = op.backward(A, [(2, 3), (3, 4)], [x_box, y_box], params)
    for a, b in zip([*default[0], default[1]], [*tuned[0], tuned[1]]):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_matmul_rejects_vectors():
    with pytest.raises(ValueError):
        MatMul2().forward(torch.zeros(1, 3), torch.zeros(1, 3, 2))


def test_max_min_exact_when_ordered():
    x_box = Interval(torch.tensor([[2.0, -5.0]], dtype=F64), torch.tensor([[3.0, -4.0]], dtype=F64))
    y_box = Interval(torch.tensor([[-1.0, 0.0]], dtype=F64), torch.tensor([[2.0, 1.0]], dtype=F64))
    A = torch.tensor([[[1.0, -1.0]], [[-2.0, 3.0]]], dtype=F64)
    (cx, cy), bias = Max2().backward(A, [(2,), (2,)], [x_box, y_box])
    assert torch.equal(cx, A * torch.tensor([1.0, 0.0], dtype=F64))
    assert torch.equal(cy, A * torch.tensor([0.0, 1.0], dtype=F64))
    assert torch.equal(bias, torch.zeros(2, 1, dtype=F64))
    (cx, cy), bias = Min2().backward(A, [(2,), (2,)], [x_box, y_box])
    assert torch.equal(cx, A * torch.tensor([0.0, 1.0], dtype=F64))
    assert torch.equal(cy, A * torch.tensor([1.0, 0.0], dtype=F64))


def test_max_upper_plane_is_the_chord():
    # x, y in [0, 1]: d = x - y in [-1, 1]; chord a = 1/2, intercept 1/2: max <= (x + y + 1) / 2
    box = Interval(torch.tensor([[0.0]], dtype=F64), torch.tensor([[1.0]], dtype=F64))
    minus, plus = -torch.ones(1, 1, 1, dtype=F64), torch.ones(1, 1, 1, dtype=F64)
    (cx, cy), bias = Max2().backward(minus, [(1,), (1,)], [box, box])
    assert cx.item() == -0.5 and cy.item() == -0.5 and abs(bias.item() + 0.5) < 1e-15
    (cx, cy), bias = Max2().backward(plus, [(1,), (1,)], [box, box])
    assert cx.item() == 1.0 and cy.item() == 0.0 and bias.item() == 0.0
    # x unbounded below: x - y in [-inf, 2], only slope 0 is finite: max <= y + 2
    low = Interval(torch.tensor([[-INF]], dtype=F64), torch.tensor([[2.0]], dtype=F64))
    (cx, cy), bias = Max2().backward(minus, [(1,), (1,)], [low, box])
    assert cx.item() == 0.0 and cy.item() == -1.0 and abs(bias.item() + 2.0) < 1e-14
    # both unbounded below: no plane, the constant max(x_u, y_u)
    (cx, cy), bias = Max2().backward(minus, [(1,), (1,)], [low, Interval(-box.upper / 0, box.upper)])
    assert cx.item() == 0.0 and cy.item() == 0.0 and bias.item() == -2.0


CLIPS = [Clip(-1.0, 2.0), Clip(None, 1.0), Clip(0.0, None), Clip(0.5, 0.5), Clip(None, None)]


@pytest.mark.parametrize("op", CLIPS, ids=repr)
def test_clip_relaxation_is_sound(op):
    check_elementwise_with_params(op, seed=11)


def check_elementwise_with_params(op, seed):
    """Default slopes, noisy slopes (clamped inside relax) and slopes at the ends 0 / 1 of the range."""
    lower, upper = interval_cases(seed=seed)
    assert_elementwise_sound(op, lower, upper)
    g = torch.Generator().manual_seed(seed)
    assert_elementwise_sound(op, lower, upper, 0.5 + torch.randn(2, *lower.shape, generator=g, dtype=F64))
    corners = (torch.rand(2, *lower.shape, generator=g) < 0.5).to(F64)
    assert_elementwise_sound(op, lower, upper, corners)


def test_clip_exact_on_pieces_and_chord_on_a_kink():
    op = Clip(-1.0, 2.0)
    r = op.relax(torch.tensor([-5.0, -0.5, 3.0, -3.0], dtype=F64), torch.tensor([-2.0, 1.5, 4.0, 1.0], dtype=F64))
    assert r.lower_slope[:3].tolist() == [0.0, 1.0, 0.0] and r.upper_slope[:3].tolist() == [0.0, 1.0, 0.0]
    assert r.lower_intercept[:3].tolist() == [-1.0, 0.0, 2.0] and r.upper_intercept[:3].tolist() == [-1.0, 0.0, 2.0]
    # [-3, 1] crosses -1 only: upper chord through (-3, -1), (1, 1); lower adaptive slope 0 (-1 - -3 >= 1 - -1)
    assert abs(r.upper_slope[3].item() - 0.5) < 1e-12 and abs(r.upper_intercept[3].item() - 0.5) < 1e-6
    assert r.lower_slope[3].item() == 0.0 and abs(r.lower_intercept[3].item() + 1) < 1e-6
    params = Clip(-1.0, 2.0).init_params([Interval(torch.tensor([[-3.0]]), torch.tensor([[1.0]]))], spec=2)
    assert params.shape == (2, 2, 1, 1)
    assert Clip(-1.0, 2.0).branch_point(torch.tensor([-3.0, 0.0]), torch.tensor([1.0, 5.0])).tolist() == [-1.0, 2.0]


def test_floor_relaxation_is_sound():
    check_elementwise_with_params(Floor(), seed=12)


def test_floor_exact_and_line_cases():
    r = Floor().relax(torch.tensor([1.2, -3.0, 0.5, -INF], dtype=F64), torch.tensor([1.9, 5.5, 1.5, 0.3], dtype=F64))
    assert r.lower_slope[0] == 0 and r.upper_slope[0] == 0 and r.lower_intercept[0] == 1 and r.upper_intercept[0] == 1
    # wide: lines x - 1 and x
    assert r.lower_slope[1] == 1 and r.upper_slope[1] == 1
    assert abs(r.lower_intercept[1] + 1) < 1e-6 and abs(r.upper_intercept[1]) < 1e-6
    # [0.5, 1.5]: constants floor(l) = 0 and floor(u) = 1 are tighter on average
    assert r.lower_slope[2] == 0 and r.upper_slope[2] == 0
    assert abs(r.lower_intercept[2]) < 1e-6 and abs(r.upper_intercept[2] - 1) < 1e-6
    # l = -inf: only x - 1 is finite
    assert r.lower_slope[3] == 1 and abs(r.lower_intercept[3] + 1) < 1e-6
