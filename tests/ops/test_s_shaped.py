import math

import pytest
import torch

from curvebound.ops import s_shaped
from curvebound.ops.base import Interval, UnsupportedInput
from curvebound.ops.s_shaped import Atan, Erf, Sigmoid, Softsign, Tanh
from tests.helpers import assert_elementwise_sound, interval_cases, sample_points

INF = math.inf
OPS = [Sigmoid, Tanh, Atan, Erf, Softsign]
DTYPES = [torch.float64, torch.float32]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """These tensors are small (<= 1e6 elements); intra-op threads only add contention on a busy
    machine (measured 4x slower with 2 threads under load), so run this module single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_sound_in_dtype(op, lower, upper, params=None, dtype=torch.float64, n=400):
    """Strict variant of ``assert_elementwise_sound``: bounds and params are cast to ``dtype``, the
    relaxation is computed in ``dtype``, and the lines (coefficients as returned) are checked in
    float64 against float64 ``f`` with no tolerance. Lines may carry a spec dimension."""
    lo, hi = lower.to(dtype), upper.to(dtype)
    assert not torch.any(torch.isinf(lo) & (lo == hi)), "[inf, inf] holds no real number"
    x = sample_points(lo.double(), hi.double(), n)  # [n, k]
    x = torch.where(torch.isnan(x), lo.double(), x)  # lo + t * (hi - lo) is NaN when the width overflows
    x = torch.minimum(torch.maximum(x, lo.double()), hi.double())  # ... and may round past hi
    fx = op.function(x)
    box = op.interval(Interval(lo, hi))
    assert box.lower.dtype == dtype
    assert torch.all(fx >= box.lower.double()), f"{op.kind} {dtype}: interval lower"
    assert torch.all(fx <= box.upper.double()), f"{op.kind} {dtype}: interval upper"
    r = op.relax(lo, hi, None if params is None else params.to(dtype))
    lines = {}
    for side in ("lower", "upper"):
        slope, intercept = getattr(r, f"{side}_slope"), getattr(r, f"{side}_intercept")
        assert slope.dtype == dtype and intercept.dtype == dtype
        line = slope.double().unsqueeze(-2) * x + intercept.double().unsqueeze(-2)  # [(spec,) n, k]
        assert not torch.isnan(line).any(), f"{op.kind} {dtype}: NaN {side} line"
        lines[side] = line
    bad_lower = lines["lower"] > fx
    bad_upper = lines["upper"] < fx
    for side, bad in (("lower", bad_lower), ("upper", bad_upper)):
        if bad.any():
            k = bad.nonzero()[0, -1]
            raise AssertionError(f"{op.kind} {dtype}: {side} line violated on [{lo[k].item()}, {hi[k].item()}]")


def edge_intervals() -> tuple[torch.Tensor, torch.Tensor]:
    """Crossing intervals whose far end sits on, just above/below or beyond the table grid, mirrored
    so both tables' lookups (lower line: far end u; upper line: far end -l) are exercised."""
    g = torch.Generator().manual_seed(5)
    grid_points = torch.cat([torch.tensor([1, 2, 7, 100, 101, 1234, 5000, 9999, 10000]),
                             torch.randint(1, 10001, (20,), generator=g)]).double() * 0.01
    ulp = torch.nextafter(grid_points, torch.full_like(grid_points, INF)) - grid_points
    far = torch.cat([grid_points, grid_points + ulp, grid_points - ulp, grid_points + 1e-9,
                     grid_points - 1e-9, grid_points + 0.005,
                     torch.tensor([100.0 + 1e-12, 100.004, 100.01, 150.0, 1e3, 1e5, 1e8, 1e300])])
    near = torch.tensor([-1e-6, -1e-3, -0.3, -1.0, -3.0, -10.0, -100.0, -1e4], dtype=torch.float64)
    u = far.repeat(len(near))
    l = near.repeat_interleave(len(far))  # noqa: E741
    return torch.cat([l, -u]), torch.cat([u, -l])


def random_params(k: int, spec: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(4, spec, k, generator=g, dtype=torch.float64) * scale
    special = torch.tensor([INF, -INF, math.nan, 0.0], dtype=torch.float64)
    mask = torch.rand(4, spec, k, generator=g) < 0.1
    picks = special[torch.randint(0, 4, (4, spec, k), generator=g)]
    return torch.where(mask, picks, p)


@pytest.mark.parametrize("cls", OPS)
def test_kinds_and_functions(cls):
    op = cls()
    assert op.kind == {"Sigmoid": "Sigmoid", "Tanh": "Tanh", "Atan": "Atan", "Erf": "Erf",
                       "Softsign": "Softsign"}[cls.__name__]
    x = torch.tensor([-INF, -1e300, -3.0, 0.0, 0.5, 1e300, INF], dtype=torch.float64)
    reference = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Atan": torch.atan, "Erf": torch.erf,
                 "Softsign": lambda t: t / (1 + t.abs())}[op.kind]
    assert torch.allclose(op.function(x[1:-1]), reference(x[1:-1]), rtol=1e-15, atol=0)
    top = op.function(torch.tensor([INF], dtype=torch.float64)).item()
    assert op.function(x[:1]).item() == 2 * op.center - top and math.isfinite(top)
    # f' matches a central difference and vanishes at the ends
    z = torch.linspace(-4, 4, 33, dtype=torch.float64)
    numeric = (op.function(z + 1e-6) - op.function(z - 1e-6)) / 2e-6
    assert torch.allclose(op.derivative(z), numeric, rtol=1e-6, atol=1e-9)
    assert op.derivative(x[[0, -1]]).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("cls", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_default_relaxation_is_sound(cls, dtype):
    lower, upper = interval_cases()
    op = cls()
    if dtype == torch.float64:
        assert_elementwise_sound(op, lower, upper)
    assert_sound_in_dtype(op, lower, upper, dtype=dtype)


@pytest.mark.parametrize("cls", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sound_for_any_params(cls, dtype):
    lower, upper = interval_cases(seed=2)
    op = cls()
    for i, scale in enumerate((0.3, 3.0, 100.0, 1e6)):
        params = random_params(len(lower), 2, scale, seed=i)
        assert_sound_in_dtype(op, lower, upper, params, dtype=dtype)
        if dtype == torch.float64:
            assert_elementwise_sound(op, lower, upper, params[:, :1])
    # the two ends of every admissible range (the table values themselves at one end)
    ones = torch.ones(1, 1, len(lower), dtype=torch.float64)
    for sign in (1.0, -1.0):
        extreme = torch.cat([sign * ones, -sign * ones, sign * ones, -sign * ones]) * INF
        assert_sound_in_dtype(op, lower, upper, extreme, dtype=dtype)


@pytest.mark.parametrize("cls", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sound_near_table_edges(cls, dtype):
    lower, upper = edge_intervals()
    op = cls()
    assert_sound_in_dtype(op, lower, upper, dtype=dtype)
    ones = torch.ones(1, 1, len(lower), dtype=torch.float64)
    tightest = torch.cat([ones, -ones, ones, -ones]) * INF  # tangent points exactly at the table limits
    assert_sound_in_dtype(op, lower, upper, tightest, dtype=dtype)
    # (not assert_elementwise_sound here: its sampler's lo + 1 * (hi - lo) overshoots hi by more than
    # its 1e-9 tolerance on [-1e8, 1e-3]; the local check clamps the samples into the interval)


@pytest.mark.parametrize("cls", OPS)
def test_table_lookup_is_conservative_and_tight(cls):
    op = cls()
    g = torch.Generator().manual_seed(7)
    u = torch.cat([torch.rand(300, generator=g, dtype=torch.float64) * 100,
                   torch.tensor([1e-9, 0.01, 99.999, 100.0, 100.5, 1e4, 1e8], dtype=torch.float64)])
    d = op.tangent_limit(u)
    # admissible: the tangent at d stays below f at u (hence on all of [d, u])
    h = op.function(u) - op.function(d) - op.derivative(d) * (u - d)
    assert torch.all(h >= 0) and torch.all(d <= 0)
    # tight: no worse than the exact limit one grid step further out (d* decreases with u)
    exact_here = op.solve_tangent_limit(u)
    exact_next = op.solve_tangent_limit(u + s_shaped.TABLE_STEP)
    assert torch.all(d <= exact_here) and torch.all(d >= exact_next - 1e-12)
    assert op.tangent_limit(torch.tensor([INF, 0.0, -2.0], dtype=torch.float64)).tolist() == [-INF, 0.0, 0.0]


@pytest.mark.parametrize("cls", OPS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_init_params_reproduce_default(cls, dtype):
    op = cls()
    lower, upper = interval_cases(seed=4)
    lower, upper = lower.to(dtype)[:96].reshape(-1, 3), upper.to(dtype)[:96].reshape(-1, 3)  # [batch, 3]
    bounds = [Interval(lower, upper)]
    params = op.init_params(bounds, spec=2)
    assert params.shape == (4, 2, *lower.shape) and params.dtype == dtype
    default, tuned = op.relax(lower, upper), op.relax(lower, upper, params)
    for field in ("lower_slope", "lower_intercept", "upper_slope", "upper_intercept"):
        a, b = getattr(default, field), getattr(tuned, field)
        assert b.shape == (2, *lower.shape)
        assert torch.equal(a.expand_as(b), b), field
    assert torch.equal(op.project_params(params, bounds), params)


@pytest.mark.parametrize("cls", [Sigmoid, Atan])
@pytest.mark.parametrize("dtype", DTYPES)
def test_project_params_clamps_like_relax(cls, dtype):
    op = cls()
    lower, upper = interval_cases(seed=6)
    bounds = [Interval(lower.to(dtype), upper.to(dtype))]
    params = random_params(len(lower), 3, 10.0, seed=9).to(dtype)
    projected = op.project_params(params, bounds)
    assert not torch.isnan(projected).any()
    assert torch.equal(op.project_params(projected, bounds), projected)
    assert torch.all(projected >= bounds[0].lower) and torch.all(projected <= bounds[0].upper)
    assert_sound_in_dtype(op, lower, upper, projected, dtype=dtype)
    if dtype == torch.float64:  # float64: clamping inside relax is the same projection
        a, b = op.relax(lower, upper, params), op.relax(lower, upper, projected)
        assert torch.equal(a.lower_intercept, b.lower_intercept) and torch.equal(a.upper_slope, b.upper_slope)


@pytest.mark.parametrize("cls", OPS)
def test_gradients_are_finite(cls):
    """alpha-CROWN differentiates the lines w.r.t. params and (jointly optimized) bounds: no NaN/inf
    gradients, even for huge params and infinite interval ends."""
    op = cls()
    lower, upper = interval_cases(seed=8)
    lower, upper = lower.clone().requires_grad_(True), upper.clone().requires_grad_(True)
    params = random_params(len(lower), 2, 3.0, seed=1).nan_to_num(0.0).requires_grad_(True)
    r = op.relax(lower, upper, params)
    total = sum(t.nan_to_num(0.0, 0.0, 0.0).sum() for t in (r.lower_slope, r.lower_intercept,
                                                           r.upper_slope, r.upper_intercept))
    total.backward()
    assert torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0
    assert torch.isfinite(lower.grad).all() and torch.isfinite(upper.grad).all()


def _f64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_relaxation_cases_on_sigmoid():
    op = Sigmoid()

    def f(x: float) -> float:
        return op.function(_f64(x)).item()

    def line(r, side, x):
        return (getattr(r, f"{side}_slope") * x + getattr(r, f"{side}_intercept")).item()

    # convex side [-4, -1]: upper = chord, lower = tangent at the midpoint -2.5
    r = op.relax(_f64(-4.0), _f64(-1.0))
    assert line(r, "upper", -4.0) == pytest.approx(f(-4.0), abs=1e-12)
    assert line(r, "upper", -1.0) == pytest.approx(f(-1.0), abs=1e-12)
    assert line(r, "lower", -2.5) == pytest.approx(f(-2.5), abs=1e-12)
    assert r.lower_slope.item() == pytest.approx(op.derivative(_f64(-2.5)).item(), rel=1e-12)
    # concave side mirrors it: lower = chord, upper = tangent at the midpoint
    r = op.relax(_f64(1.0), _f64(4.0))
    assert line(r, "lower", 1.0) == pytest.approx(f(1.0), abs=1e-12)
    assert line(r, "upper", 2.5) == pytest.approx(f(2.5), abs=1e-12)
    # crossing with a valid chord ([-0.5, 5]: chord slope 0.112 < f'(-0.5) = 0.235): lower = chord
    r = op.relax(_f64(-0.5), _f64(5.0))
    assert line(r, "lower", -0.5) == pytest.approx(f(-0.5), abs=1e-12)
    assert line(r, "lower", 5.0) == pytest.approx(f(5.0), abs=1e-12)
    # infinite ends: constant lines at the interval's value range
    r = op.relax(_f64(-INF, -2.0), _f64(INF, INF))
    assert r.lower_slope.tolist() == [0.0, 0.0] and r.upper_slope.tolist() == [0.0, 0.0]
    assert r.lower_intercept[0].item() <= 0.0 and r.upper_intercept[0].item() >= 1.0
    assert r.lower_intercept[1].item() == pytest.approx(f(-2.0), abs=1e-12)


def test_crossing_tightness_on_sigmoid():
    """On [-1, 1] the chord (slope 0.231) is steeper than f'(-1) = 0.197, so the lower line is the
    tangent at the table limit d*(1) = -0.488 and the upper line its mirror image. The best admissible
    tangent point on a grid of step 5e-4 (checked on 2001 points) bounds the achievable gap at 0 up to
    the grid step (gap changes by |f''(d) d| <= 0.05 per unit of d, so by < 3e-5): ours must match it
    (0.00925), far below the IBP width 0.462 and the tangent-at-l gap 0.069."""
    op = Sigmoid()
    r = op.relax(_f64(-1.0), _f64(1.0))
    gap_at_zero = (r.upper_intercept - r.lower_intercept).item()
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    d = torch.linspace(-1, 0, 2001, dtype=torch.float64)[:, None]
    valid = (op.function(d) + op.derivative(d) * (x - d) <= op.function(x)).all(dim=1)
    best = d[valid].max()
    best_gap = 2 * (0.5 - (op.function(best) - op.derivative(best) * best)).item()
    assert best_gap == pytest.approx(0.00925, abs=1e-4)
    assert best_gap - 3e-5 <= gap_at_zero <= best_gap + 1e-12
    assert r.lower_slope.item() == pytest.approx(r.upper_slope.item(), rel=1e-12)


def test_smoothness_uses_midpoint_when_admissible():
    op = Tanh()
    # [-3, 0.01]: the table limit d*(0.01) = -0.005 lies beyond the midpoint -1.495, which is admissible
    r = op.relax(_f64(-3.0), _f64(0.01))
    assert r.lower_slope.item() == pytest.approx(op.derivative(_f64(-1.495)).item(), rel=1e-12)
    # [-2, 5]: chord slope 0.28 > f'(-2) = 0.07; the midpoint 1.5 is not admissible: the table limit d*(5)
    r = op.relax(_f64(-2.0), _f64(5.0))
    assert r.lower_slope.item() == pytest.approx(op.derivative(op.tangent_limit(_f64(5.0))).item(), rel=1e-12)


def test_nan_bounds_are_rejected():
    with pytest.raises(UnsupportedInput):
        Sigmoid().relax(torch.tensor([math.nan]), torch.tensor([1.0]))


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    directory = tmp_path / "tables"
    monkeypatch.setattr(s_shaped, "table_directory", lambda: directory)
    s_shaped.clear_table_cache()
    yield directory
    s_shaped.clear_table_cache()


def test_table_is_built_once_and_cached_on_disk(fresh_cache):
    op = Sigmoid()
    builds = s_shaped.BUILD_STATS["builds"]
    table = op.table()
    path = fresh_cache / "s_shaped_v1_sigmoid.pt"
    assert s_shaped.BUILD_STATS["builds"] == builds + 1 and path.is_file()
    assert s_shaped.BUILD_STATS["last_build_seconds"] < 5.0
    assert not list(fresh_cache.glob("*.tmp"))  # the temporary file was renamed into place
    mtime = path.stat().st_mtime_ns
    assert op.table() is table  # in-memory cache
    s_shaped.clear_table_cache()
    reloaded = op.table()  # from disk
    assert s_shaped.BUILD_STATS["builds"] == builds + 1 and path.stat().st_mtime_ns == mtime
    assert torch.equal(reloaded, table)


def test_invalid_cache_files_are_rebuilt(fresh_cache):
    op = Sigmoid()
    good = op.table().clone()
    path = fresh_cache / "s_shaped_v1_sigmoid.pt"
    builds = s_shaped.BUILD_STATS["builds"]
    path.write_bytes(b"not a torch file")
    s_shaped.clear_table_cache()
    assert torch.equal(op.table(), good) and s_shaped.BUILD_STATS["builds"] == builds + 1
    # a well-formed file with inadmissible entries (every tangent point at 0) is refused too
    torch.save({"version": 1, "name": "sigmoid", "step": 0.01, "size": s_shaped.TABLE_SIZE,
                "d_lower": torch.zeros(s_shaped.TABLE_SIZE, dtype=torch.float64)}, path)
    s_shaped.clear_table_cache()
    assert torch.equal(op.table(), good) and s_shaped.BUILD_STATS["builds"] == builds + 2


def test_unwritable_cache_keeps_table_in_memory(monkeypatch, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setattr(s_shaped, "table_directory", lambda: blocker / "tables")  # mkdir must fail
    s_shaped.clear_table_cache()
    try:
        op = Softsign()
        builds = s_shaped.BUILD_STATS["builds"]
        table = op.table()
        assert table.shape == (s_shaped.TABLE_SIZE,) and s_shaped.BUILD_STATS["builds"] == builds + 1
        assert op.table() is table
        assert_sound_in_dtype(op, *edge_intervals())
    finally:
        s_shaped.clear_table_cache()
