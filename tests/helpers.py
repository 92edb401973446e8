"""Shared test utilities: interval families and dense-sampling soundness checks for operators."""

from __future__ import annotations

import math

import torch

from curvebound.ops.base import ElementwiseOperator, Interval

INF = math.inf


def interval_cases(
    lo: float = -INF, hi: float = INF, seed: int = 0, n_random: int = 60
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of input intervals inside the domain ``[lo, hi]``: random, narrow, wide, one-sided,
    degenerate, huge and (where the domain allows) infinite ones. Returns ``lower, upper`` (float64, [n])."""
    g = torch.Generator().manual_seed(seed)
    pairs: list[tuple[float, float]] = []
    for scale in (0.1, 1.0, 3.0, 10.0, 100.0):
        pts = (torch.randn(n_random // 5, 2, generator=g, dtype=torch.float64) * scale).sort(dim=1).values
        pairs += [(float(a), float(b)) for a, b in pts]
    centers = torch.randn(10, generator=g, dtype=torch.float64) * 3
    pairs += [(float(c), float(c) + 1e-7) for c in centers]  # narrow
    pairs += [(float(c), float(c)) for c in centers]  # degenerate
    pairs += [(-50.0, 80.0), (-1e4, 1e4), (-1e8, 1e8), (0.0, 5.0), (-5.0, 0.0), (1e-6, 1e-3), (-1e-3, -1e-6)]
    pairs += [(0.5, 60.0), (-60.0, -0.5), (-0.01, 0.02), (-3.0, 1e3), (-1e3, 3.0)]
    pairs += [(-INF, 0.0), (-INF, 2.0), (-INF, -3.0), (1.0, INF), (-2.0, INF), (-INF, INF)]
    kept = []
    for a, b in pairs:
        a, b = max(a, lo), min(b, hi)
        if a <= b:
            kept.append((a, b))
    t = torch.tensor(kept, dtype=torch.float64)
    return t[:, 0].contiguous(), t[:, 1].contiguous()


def sample_points(lower: torch.Tensor, upper: torch.Tensor, n: int = 400, seed: int = 1) -> torch.Tensor:
    """``[n, k]`` points inside each interval: a dense grid, random points and both ends (infinite ends
    are replaced by far finite points, 1e6 and 1e12 beyond the finite end)."""
    g = torch.Generator().manual_seed(seed)
    far = torch.tensor([1e1, 1e3, 1e6], dtype=lower.dtype)
    lo = torch.where(torch.isinf(lower), torch.where(torch.isinf(upper), -far[-1], upper - far[-1]), lower)
    hi = torch.where(torch.isinf(upper), torch.where(torch.isinf(lower), far[-1], lower + far[-1]), upper)
    t = torch.cat([
        torch.linspace(0, 1, n // 2, dtype=lower.dtype),
        torch.rand(n // 2, generator=g, dtype=lower.dtype),
        torch.tensor([0.0, 1.0], dtype=lower.dtype),
    ])
    pts = (lo + t[:, None] * (hi - lo)).clamp(min=lo, max=hi)  # rounding must not leave [lo, hi]
    # log-spaced points near the ends pick up curvature near endpoints of huge intervals
    for d in (1e-6, 1e-3, 1e-1, 1.0, 10.0, 1e3):
        pts = torch.cat([pts, (lo + d).clamp(max=hi)[None], (hi - d).clamp(min=lo)[None]])
    return pts


def tolerance(*values: torch.Tensor) -> torch.Tensor:
    scale = sum(v.abs() for v in values)
    return 1e-9 * (1 + scale)


def assert_elementwise_sound(op: ElementwiseOperator, lower, upper, params=None, n: int = 400) -> None:
    """Dense-sampling check of ``interval`` and ``relax`` on every interval in the batch (float64).
    ``params`` (if given) is passed to ``relax`` as is."""
    x = sample_points(lower, upper, n)  # [n, k]
    fx = op.function(x)
    ok = torch.isfinite(fx)
    box = op.interval(Interval(lower, upper))
    tol = tolerance(fx.nan_to_num(0, 0, 0))
    assert torch.all(~ok | (fx >= box.lower - tol)), _worst(op, "interval lower", lower, upper, x, fx, box.lower, True)
    assert torch.all(~ok | (fx <= box.upper + tol)), _worst(op, "interval upper", lower, upper, x, fx, box.upper, False)
    r = op.relax(lower, upper, params)
    lo_line = r.lower_slope * x + r.lower_intercept
    up_line = r.upper_slope * x + r.upper_intercept
    lo_line = torch.where(r.lower_slope == 0, r.lower_intercept.expand_as(lo_line), lo_line)
    up_line = torch.where(r.upper_slope == 0, r.upper_intercept.expand_as(up_line), up_line)
    tol = tolerance(
        fx.nan_to_num(0, 0, 0), (r.lower_slope * x).nan_to_num(0, 0, 0), (r.upper_slope * x).nan_to_num(0, 0, 0)
    )
    assert not torch.isnan(lo_line[ok]).any(), f"{op.kind}: NaN lower line"
    assert not torch.isnan(up_line[ok]).any(), f"{op.kind}: NaN upper line"
    assert torch.all(~ok | (lo_line <= fx + tol)), _worst(op, "lower line", lower, upper, x, fx, lo_line, True)
    assert torch.all(~ok | (up_line >= fx - tol)), _worst(op, "upper line", lower, upper, x, fx, up_line, False)


def _worst(op, what, lower, upper, x, fx, bound, is_lower) -> str:
    bound = bound.expand_as(fx)
    gap = (bound - fx) if is_lower else (fx - bound)
    gap = gap.nan_to_num(-1.0)
    i = int(gap.argmax())
    row, col = divmod(i, gap.shape[1])
    return (f"{op.kind}: {what} violated on [{lower[col].item()}, {upper[col].item()}] at x={x[row, col].item()}: "
            f"f={fx[row, col].item()}, bound={bound[row, col].item()}")


def assert_sound_float32(op: ElementwiseOperator, lower, upper, params=None, n: int = 300) -> None:
    """float32 variant of ``assert_elementwise_sound``: the interval, the params and the lines' slopes and
    intercepts are float32, the points are float32 points of the float32 interval, and each must hold for
    the exact ``f`` (float64 at those points) up to 1e-12 relative. (A float32 ``f`` is no reference: torch's
    float32 erf-form GELU is off by 3e-3 relative near x = -3.92, and by a CPU-dependent amount.) Lines may
    carry a spec dimension (``[spec, k]``)."""
    l32, u32 = lower.float(), upper.float()
    x = sample_points(l32.double(), u32.double(), n).float()
    x = torch.minimum(torch.maximum(x, l32), u32).double()  # float32 grid points may round past the ends
    fx = op.function(x)  # [n, k]
    ok = torch.isfinite(fx)
    tol = 1e-12 * (1 + fx.nan_to_num(0, 0, 0).abs())
    box = op.interval(Interval(l32, u32))
    assert box.lower.dtype == torch.float32
    assert torch.all(~ok | (fx >= box.lower.double() - tol)), f"{op!r}: float32 interval lower"
    assert torch.all(~ok | (fx <= box.upper.double() + tol)), f"{op!r}: float32 interval upper"
    r = op.relax(l32, u32, None if params is None else params.float())
    assert r.lower_slope.dtype == r.upper_intercept.dtype == torch.float32
    spec = r.lower_slope.dim() == 2
    xs, fs, oks = (x[:, None, :], fx[:, None, :], ok[:, None, :]) if spec else (x, fx, ok)
    for slope, intercept, is_lower in ((r.lower_slope, r.lower_intercept, True),
                                       (r.upper_slope, r.upper_intercept, False)):
        slope, intercept = slope.double(), intercept.double()
        line = torch.where(slope == 0, intercept.expand_as(slope * xs), slope * xs + intercept)
        assert not torch.isnan(line[oks.expand_as(line)]).any(), f"{op!r}: NaN float32 line"
        tol = 1e-12 * (1 + fs.nan_to_num(0, 0, 0).abs() + (slope * xs).nan_to_num(0, 0, 0).abs())
        good = (line <= fs + tol) if is_lower else (line >= fs - tol)
        bad = oks & ~good
        if bad.any():
            where = bad.nonzero()[0]
            i = int(where[-1])
            raise AssertionError(f"{op!r}: float32 {'lower' if is_lower else 'upper'} line violated on "
                                 f"[{l32[i].item()}, {u32[i].item()}] at x={x[int(where[0]), i].item()}")
