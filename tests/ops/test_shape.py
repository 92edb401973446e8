import torch

from curvebound.ops.shape import (
    Concat,
    Expand,
    Gather,
    Pad,
    ReduceSum,
    Reshape,
    Slice,
    Transpose,
    Upsample,
    Where,
)
from tests.ops.test_linear import check_affine


def test_reshape_transpose():
    check_affine(Reshape((3, 4)), [(2, 6)])
    check_affine(Transpose((2, 0, 1)), [(2, 3, 4)])


def test_concat_with_constants():
    const = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    op = Concat(1, [None, 1, None, 2], const)
    check_affine(op, [(2, 2), (2, 1)])
    y = op.forward(torch.zeros(1, 2, 2, dtype=torch.float64), torch.ones(1, 2, 1, dtype=torch.float64))
    assert y.shape == (1, 2, 6)
    assert y[0, :, 2].tolist() == [0.0, 3.0] and y[0, :, 3].tolist() == [1.0, 1.0]
    assert y[0, :, 4:].tolist() == [[1.0, 2.0], [4.0, 5.0]]


def test_slice_matches_numpy_semantics_including_negative_steps():
    x = torch.arange(2 * 7, dtype=torch.float64).reshape(1, 2, 7)
    cases = [
        ([0, 1], [2, 6], [0, 1], [1, 2], (slice(0, 2), slice(1, 6, 2))),
        ([-1], [-2**62], [1], [-1], (slice(None), slice(None, None, -1))),
        ([5], [0], [1], [-2], (slice(None), slice(5, 0, -2))),
        ([-3], [100], [-1], [1], (slice(None), slice(-3, None))),
        ([6], [-100], [1], [-3], (slice(None), slice(6, None, -3))),
    ]
    for starts, ends, axes, steps, ref_index in cases:
        op = Slice.from_onnx((2, 7), starts, ends, axes, steps)
        ref = x[0].numpy()[ref_index]
        assert op.forward(x)[0].numpy().tolist() == ref.tolist(), (starts, ends, steps)
        check_affine(op, [(2, 7)])  # the direct backward is the adjoint
    check_affine(Slice.from_onnx((3, 7), [6], [0], [1], [-2]), [(3, 7)])


def test_gather():
    idx = torch.tensor([[2, 0], [1, 1]])
    op = Gather(1, idx)
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    assert torch.equal(op.forward(x)[0], x[0][:, idx])
    check_affine(op, [(2, 3)])
    check_affine(Gather(0, torch.tensor(1)), [(3, 2)])  # scalar index drops the dim


def test_pad_expand_upsample():
    op = Pad([0, 1, 0, -1], value=2.5)
    y = op.forward(torch.zeros(1, 2, 3, dtype=torch.float64))
    assert y.shape == (1, 2, 3) and y[0, :, 0].tolist() == [2.5, 2.5]
    check_affine(op, [(2, 3)])
    check_affine(Expand((3, 2, 4)), [(2, 1)])
    up = Upsample((1, 1, 2, 3))
    x = torch.arange(4, dtype=torch.float64).reshape(1, 1, 1, 2, 2)
    assert up.forward(x)[0, 0, 0, 1].tolist() == [0, 0, 0, 1, 1, 1]
    check_affine(up, [(1, 1, 2, 2)])


def test_reductions():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    assert torch.allclose(ReduceSum([0, 2], keepdims=True).forward(x), x.sum(dim=(1, 3), keepdim=True))
    assert torch.allclose(ReduceSum([1], keepdims=False, mean=True).forward(x), x.mean(dim=2))
    check_affine(ReduceSum([1], keepdims=False), [(2, 3)])
    check_affine(ReduceSum([0, 1], keepdims=True, mean=True), [(2, 3)])


def test_where_constant_condition():
    cond = torch.tensor([True, False, True])
    op = Where(cond, None, torch.tensor([7.0, 8.0, 9.0], dtype=torch.float64), out_rank=2)
    x = torch.zeros(1, 2, 3, dtype=torch.float64)
    assert op.forward(x)[0].tolist() == [[0.0, 8.0, 0.0]] * 2
    check_affine(op, [(2, 3)])
    check_affine(Where(cond, None, None, out_rank=1), [(3,), (1,)])
