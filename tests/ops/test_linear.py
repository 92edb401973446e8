import torch

from curvebound.ops.base import Interval
from curvebound.ops.linear import Add2, Center, Conv, ConvTranspose, MatMulConst, PairwiseDifference, ScaleShift

torch.manual_seed(0)


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64)


def check_affine(op, input_shapes, batch: int = 2, spec: int = 3, n_samples: int = 200) -> None:
    """IBP contains sampled outputs; ``backward`` equals the exact Jacobian product and (*) holds
    with equality. ``input_shapes`` are ONNX shapes (without the batch dim)."""
    # --- IBP ---
    lowers = [_rand(batch, *s) for s in input_shapes]
    uppers = [lo + torch.rand(batch, *s, dtype=torch.float64) * 2 for lo, s in zip(lowers, input_shapes)]
    box = op.interval(*(Interval(lo, up) for lo, up in zip(lowers, uppers)))
    for _ in range(n_samples // 10):
        xs = [lo + torch.rand(10, *lo.shape, dtype=torch.float64) * (up - lo) for lo, up in zip(lowers, uppers)]
        ys = torch.stack([op.forward(*(x[k] for x in xs)) for k in range(10)])
        assert torch.all(ys >= box.lower - 1e-9) and torch.all(ys <= box.upper + 1e-9), op
    # corner points are attained by the interval (tightness of |L| r for affine maps)
    mid = op.forward(*(Interval(lo, up).mid for lo, up in zip(lowers, uppers)))
    assert torch.allclose(box.lower + box.upper, 2 * mid)

    # --- backward vs Jacobian ---
    out_shape = op.forward(*(torch.zeros(1, *s, dtype=torch.float64) for s in input_shapes)).shape[1:]
    A = _rand(spec, batch, *out_shape)
    coeffs, bias = op.backward(A, [tuple(s) for s in input_shapes], [None] * len(input_shapes))
    point = [_rand(batch, *s) for s in input_shapes]
    jac = torch.autograd.functional.jacobian(lambda *xs: op.forward(*xs), tuple(point), vectorize=True)
    for i, shape in enumerate(input_shapes):
        j = jac[i].reshape(batch * out_shape.numel(), batch * torch.Size(shape).numel())
        expected = (A.reshape(spec, -1) @ j).reshape(spec, batch, *shape)
        got = coeffs[i] if coeffs[i] is not None else torch.zeros_like(expected)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-10), f"{op}: coefficient {i}"
    lhs = (A * op.forward(*point)).reshape(spec, batch, -1).sum(-1)
    rhs = bias + sum((c * x).reshape(spec, batch, -1).sum(-1) for c, x in zip(coeffs, point) if c is not None)
    assert torch.allclose(lhs, rhs, atol=1e-9)


def test_matmul_const_right_2d_uses_direct_formula():
    op = MatMulConst(_rand(4, 3), _rand(3), "right", 2)
    check_affine(op, [(2, 4)])
    check_affine(MatMulConst(_rand(4, 3), None, "right", 1), [(4,)])


def test_matmul_const_broadcasting_layouts():
    check_affine(MatMulConst(_rand(2, 4, 3), None, "right", 2), [(5, 4)])  # weight has more dims
    check_affine(MatMulConst(_rand(4), None, "right", 3), [(2, 5, 4)])  # 1-D weight
    check_affine(MatMulConst(_rand(3, 4), _rand(3, 1), "left", 2), [(4, 2)])
    check_affine(MatMulConst(_rand(2, 3, 4), None, "left", 1), [(4,)])


def test_matmul_const_forward_matches_numpy_semantics():
    w = _rand(2, 4, 3)
    x = _rand(5, 4)
    y = MatMulConst(w, None, "right", 2).forward(x.unsqueeze(0))
    assert y.shape == (1, 2, 5, 3)
    assert torch.allclose(y[0], x @ w)


def test_conv_and_conv_transpose():
    check_affine(Conv(_rand(4, 2, 3, 3), _rand(4), (1, 2), (1, 0, 2, 1), (1, 1), 1), [(1, 2, 5, 6)])
    check_affine(Conv(_rand(4, 1, 3), None, (1,), (1, 1), (2,), 2), [(1, 2, 7)])
    op = ConvTranspose(_rand(2, 3, 3, 3), _rand(3), (2, 2), (1, 0, 0, 1), (1, 1), 1, (1, 1))
    check_affine(op, [(1, 2, 3, 3)])


def test_conv_transpose_matches_torch():
    w, b = _rand(2, 3, 4, 4), _rand(3)
    x = _rand(1, 2, 5, 5)
    y = ConvTranspose(w, b, (2, 2), (1, 1, 1, 1), (1, 1), 1, (0, 0)).forward(x.unsqueeze(0))
    ref = torch.nn.functional.conv_transpose2d(x, w, b, stride=2, padding=1)
    assert torch.allclose(y[0], ref)


def test_scale_shift_signs_and_broadcast():
    op = ScaleShift(_rand(3, 1), _rand(3, 4), out_rank=2)
    assert not op.monotone or bool((op.scale >= 0).all())
    check_affine(op, [(4,)])  # input rank below output rank
    pos = ScaleShift(torch.rand(4, dtype=torch.float64), None, out_rank=1)
    assert pos.monotone
    check_affine(pos, [(4,)])


def test_add2_and_sub2_with_broadcast():
    check_affine(Add2(1.0, out_rank=2), [(3, 4), (4,)])
    check_affine(Add2(-1.0, out_rank=2), [(3, 1), (3, 4)])


def test_pairwise_difference():
    op = PairwiseDifference(axis=0)
    x = torch.tensor([[[1.0, 5.0], [2.0, 7.0], [4.0, 11.0]]], dtype=torch.float64)  # [1, 3, 2]
    y = op.forward(x)  # [1, 2, 3, 3]
    assert y.shape == (1, 2, 3, 3)
    assert y[0, 0, 0, 2] == 4.0 - 1.0 and y[0, 1, 2, 0] == 5.0 - 11.0
    check_affine(op, [(3, 2)])
    check_affine(PairwiseDifference(axis=1), [(2, 4)])


def test_center():
    check_affine(Center([1]), [(2, 5)])
    check_affine(Center([0, 1]), [(2, 3)])
