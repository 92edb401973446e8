"""S-shaped activations: Sigmoid, Tanh, Atan, Erf, Softsign.

Every function here is increasing, convex on ``x < 0``, concave on ``x > 0`` (inflection at 0) and
point-symmetric about ``(0, c)`` with ``c = f(0)``: ``f(-x) = 2c - f(x)``. The base class uses the
symmetry to build the upper line on ``[l, u]`` by reflecting the lower line on ``[-u, -l]``:
``a y + b <= f(y)`` on ``[-u, -l]``  implies  ``f(x) <= a x + (2c - b)`` on ``[l, u]``.

Lower line on ``[l, u]`` (design.md b.1):

* ``u <= 0`` (convex part): tangent at ``t in [l, u]`` (default the midpoint; ``t = -inf`` gives
  the asymptote ``f(-inf)``, a valid constant line).
* ``l >= 0`` (concave part): the chord (``u = +inf``: the constant ``f(l)``).
* ``l < 0 < u``: the chord when its slope ``k <= f'(l)``. Proof: ``g = f - chord`` has
  ``g(l) = g(u) = 0``; ``g`` is convex on ``[l, 0]`` with ``g'(l) >= 0``, so ``g >= 0`` there, and
  concave on ``[0, u]`` with nonnegative ends, so ``g >= 0`` there too. Otherwise a tangent at
  ``t in [l, D(u)]``, where ``D(u) <= d*(u)`` and ``d*(u) <= 0`` is the largest tangent point whose
  tangent lies below ``f`` at ``u``: ``h(d, u) = f(u) - f(d) - f'(d)(u - d) >= 0`` (on ``[l, 0]``
  any tangent at ``d <= 0`` is below ``f`` by convexity; on ``[0, u]`` ``f - T`` is concave and
  nonnegative at both ends). ``h`` decreases in ``d`` (``dh/dd = -f''(d)(u - d) < 0``), so the
  admissible tangent points are exactly ``d <= d*(u)``. When the chord is invalid the tangent at
  ``l`` is admissible (``h(l, u) = (u - l)(k - f'(l)) > 0``), so the range ``[l, max(l, D(u))]``
  is never empty. Default: ``min(midpoint, max(l, D(u)))`` ("smoothness": the midpoint tangent
  whenever it is admissible).

``D`` comes from a per-function table of ``d*`` on the grid ``u_i = i * 0.01``, ``i = 0..10000``
(``u <= 100``), built once by vectorized bisection on the admissible side and cached on disk.
Lookup uses the grid point *above* ``u``: a line valid on ``[l, u_i]`` is valid on the smaller
``[l, u]``, hence ``d*`` is non-increasing in ``u`` and ``D(u_i) <= d*(u_i) <= d*(u)``. Finite
``u > 100`` are solved by the same bisection on the fly; ``u = +inf`` gives ``-inf`` (asymptote).

Optimizable parameters (alpha-CROWN), ``[4, spec, batch, *shape]``: tangent points of
0: the lower line on the convex side (``u <= 0``), range ``[l, u]``;
1: the upper line on the concave side (``l >= 0``), range ``[l, u]``;
2: the lower line when crossing with an invalid chord, range ``[l, max(l, D(u))]``;
3: the upper line when crossing with an invalid chord, range ``[min(u, -D(-l)), u]``.
``relax`` clamps every parameter into its range (NaN -> the default), so any value is sound.

Lines are computed in float64 and rounded to the input dtype, then padded outward (``pad_outward``)
to cover the rounding of the coefficients and of ``f`` itself.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from pathlib import Path

import platformdirs
import torch
from torch import Tensor

from .base import ElementwiseOperator, Interval, LinearRelaxation, UnsupportedInput, pad_outward

logger = logging.getLogger(__name__)

TABLE_VERSION = 1
TABLE_STEP = 0.01
TABLE_SIZE = 10001  # grid u_i = i * TABLE_STEP, i = 0..10000 (u <= 100)
_MAX_DOUBLINGS = 1100  # 2**1100 overflows float64: the search always terminates
_BISECTION_STEPS = 80

#: In-memory tables (float64, CPU) keyed by table name; per-device copies keyed by (name, device).
_TABLES: dict[str, Tensor] = {}
_DEVICE_TABLES: dict[tuple[str, str], Tensor] = {}
#: How many tables this process built and how long the last build took (seconds).
BUILD_STATS: dict[str, float] = {"builds": 0, "last_build_seconds": 0.0}


def table_directory() -> Path:
    """Where the tangent tables are cached: ``<user cache dir>/tables``."""
    return Path(platformdirs.user_cache_dir("curvebound")) / "tables"


def clear_table_cache() -> None:
    """Forget the in-memory tables (the next use reloads them from disk or rebuilds them)."""
    _TABLES.clear()
    _DEVICE_TABLES.clear()


def _grid(device: torch.device | str = "cpu") -> Tensor:
    return torch.arange(TABLE_SIZE, dtype=torch.float64, device=device) * TABLE_STEP


def _atomic_save(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, then ``os.replace`` (readers never see a
    partial file). Raises OSError when the directory cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SShaped(ElementwiseOperator):
    """Base of the S-shaped family; see the module docstring for the math.

    Subclasses give ``function`` (f), ``derivative`` (f', finite everywhere, 0 at +-inf; ``function``
    must be finite at +-inf) and ``center = f(0)``. Invariant: ``relax(l, u, params)`` returns
    ``a_l x + b_l <= f(x) <= a_u x + b_u`` for every real ``x`` in ``[l, u]`` and every ``params``.
    """

    splittable = True
    center: float = 0.0

    @property
    def table_name(self) -> str:
        return self.kind.lower()

    def derivative(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    # ---------------------------------------------------------------- IBP
    def interval(self, x: Interval) -> Interval:
        """``[f(l), f(u)]`` (f is increasing), evaluated in float64 and widened by a few ulps of the
        input dtype so that rounding never cuts off the true range."""
        dtype = x.lower.dtype
        lo = self.function(x.lower.double()).to(dtype)
        hi = self.function(x.upper.double()).to(dtype)
        info = torch.finfo(dtype)
        widen_lo, widen_hi = 4 * info.eps * lo.abs() + info.tiny, 4 * info.eps * hi.abs() + info.tiny
        return Interval(lo - widen_lo, hi + widen_hi)

    # ---------------------------------------------------------------- tangent-limit table
    def _admissible(self, d: Tensor, u: Tensor, f_u: Tensor) -> Tensor:
        """True where the tangent at ``d <= 0`` lies below f at ``u`` (``f_u = f(u)``) with a float64
        margin: ``h(d, u) = f(u) - f(d) - f'(d)(u - d) >= 8 eps (1 + |f(u)| + |f(d)| + f'(d)(u - d))``."""
        f_d = self.function(d)
        rise = self.derivative(d) * (u - d)
        margin = 8 * torch.finfo(torch.float64).eps * (1 + f_u.abs() + f_d.abs() + rise.abs())
        return f_u - f_d - rise >= margin  # NaN (d = -inf) -> False

    @torch.no_grad()
    def solve_tangent_limit(self, u: Tensor) -> Tensor:
        """For finite ``u >= 0`` (float64), a tangent point ``d <= 0`` with ``h(d, u) >= 0``, within a
        few ulps of the largest one ``d*(u)``: doubling search for an admissible start, then bisection
        keeping the admissible end. Entries whose search overflows are ``-inf`` (asymptote)."""
        f_u = self.function(u)
        lo = -torch.ones_like(u)
        bad = ~self._admissible(lo, u, f_u)
        for _ in range(_MAX_DOUBLINGS):
            if not bool(bad.any()):
                break
            lo = torch.where(bad, 2 * lo, lo)
            bad = ~self._admissible(lo, u, f_u)
        lo = torch.where(bad, torch.full_like(lo, -math.inf), lo)
        # the last rejected point (lo / 2) or 0 closes the bracket
        hi = torch.where(lo < -1, lo / 2, torch.zeros_like(lo))
        for _ in range(_BISECTION_STEPS):
            mid = lo / 2 + hi / 2
            if not bool(((mid != lo) & (mid != hi)).any()):
                break  # every bracket is down to adjacent floats
            ok = self._admissible(mid, u, f_u)
            lo = torch.where(ok, mid, lo)
            hi = torch.where(ok, hi, mid)
        return torch.where(u <= 0, torch.zeros_like(lo), lo)

    def build_table(self) -> Tensor:
        """``D[i] <= d*(u_i)`` on the grid ``u_i = i * TABLE_STEP`` (float64, ``[TABLE_SIZE]``)."""
        return self.solve_tangent_limit(_grid())

    def _validated_table(self, data: object) -> Tensor | None:
        """The stored table if it has the expected header and every entry is admissible, else None."""
        if not isinstance(data, dict):
            return None
        table = data.get("d_lower")
        header = (data.get("version"), data.get("name"), data.get("step"), data.get("size"))
        if header != (TABLE_VERSION, self.table_name, TABLE_STEP, TABLE_SIZE):
            return None
        if not isinstance(table, Tensor):
            return None
        if table.dtype != torch.float64 or table.shape != (TABLE_SIZE,) or not bool((table <= 0).all()):
            return None
        grid = _grid()
        finite = torch.isfinite(table)
        h = self.function(grid) - self.function(table) - self.derivative(table) * (grid - table)
        if not bool((~finite | (h >= 0)).all()) or bool(torch.isnan(table).any()):
            return None
        return table.contiguous()

    def table(self, device: torch.device | str = "cpu") -> Tensor:
        """The tangent-limit table, from memory, else the disk cache, else built (and cached when the
        cache directory is writable)."""
        key = (self.table_name, str(device))
        if key in _DEVICE_TABLES:
            return _DEVICE_TABLES[key]
        table = _TABLES.get(self.table_name)
        if table is None:
            table = self._load_or_build()
            _TABLES[self.table_name] = table
        _DEVICE_TABLES[key] = table.to(device)
        return _DEVICE_TABLES[key]

    def _load_or_build(self) -> Tensor:
        path = table_directory() / f"s_shaped_v{TABLE_VERSION}_{self.table_name}.pt"
        if path.is_file():
            try:
                table = self._validated_table(torch.load(path, map_location="cpu", weights_only=True))
            except Exception as err:  # a corrupt cache file of any kind: rebuild it
                logger.warning("ignoring unreadable table cache %s (%s)", path, err)
                table = None
            if table is not None:
                return table
            logger.warning("table cache %s is stale or invalid; rebuilding it", path)
        start = time.perf_counter()
        table = self.build_table()
        BUILD_STATS["builds"] += 1
        BUILD_STATS["last_build_seconds"] = time.perf_counter() - start
        logger.debug("built %s tangent table in %.3f s", self.table_name, BUILD_STATS["last_build_seconds"])
        data = {"version": TABLE_VERSION, "name": self.table_name, "step": TABLE_STEP, "size": TABLE_SIZE,
                "d_lower": table}
        try:
            _atomic_save(data, path)
        except OSError as err:
            logger.info("cannot write table cache %s (%s); keeping it in memory", path, err)
        return table

    def tangent_limit(self, upper: Tensor) -> Tensor:
        """``D(u) <= d*(u)`` for float64 ``u`` of any shape: 0 for ``u <= 0``, the table entry at the
        grid point at or above ``u`` for ``u <= 100``, bisection beyond, ``-inf`` for ``u = +inf``."""
        u = upper.detach()
        table = self.table(u.device)
        grid_max = (TABLE_SIZE - 1) * TABLE_STEP
        in_range = u <= grid_max
        uq = torch.where(in_range, u, torch.zeros_like(u)).clamp(min=0)
        idx = torch.ceil(uq / TABLE_STEP).long().clamp(0, TABLE_SIZE - 1)
        below = (idx.to(torch.float64) * TABLE_STEP) < uq  # rounding in u / step: move one point up
        idx = (idx + below.long()).clamp(max=TABLE_SIZE - 1)
        limit = table[idx]
        far = ~in_range & torch.isfinite(u)
        if bool(far.any()):
            limit = limit.clone()
            limit[far] = self.solve_tangent_limit(u[far])
        return torch.where(u == math.inf, torch.full_like(limit, -math.inf), limit)

    # ---------------------------------------------------------------- relaxation
    @staticmethod
    def _point_inside(t: Tensor, lower: Tensor, upper: Tensor, dtype: torch.dtype) -> Tensor:
        """``t`` (float64), clamped into ``[lower, upper]`` and rounded to a ``dtype`` value that stays
        inside (one exists when ``lower`` or ``upper`` is a ``dtype`` value); returned as float64.
        Default points exact in ``dtype`` let ``init_params`` reproduce the default relaxation exactly."""
        t = torch.minimum(torch.maximum(t, lower), upper)
        r = t.to(dtype)
        r = torch.where(r.double() > upper, torch.nextafter(r, torch.full_like(r, -math.inf)), r)
        r = torch.where(r.double() < lower, torch.nextafter(r, torch.full_like(r, math.inf)), r)
        return r.double()

    def _lower_ranges(self, lower: Tensor, upper: Tensor, dtype: torch.dtype) -> dict[str, Tensor]:
        """Everything the lower line on ``[lower, upper]`` (float64) needs: case masks, the chord, the
        admissible tangent range ``[lower, t_max]`` and the default tangent points (midpoint for the
        one-sided parameter, ``min(mid, t_max)`` for the active one)."""
        convex = upper <= 0
        concave = (lower >= 0) & ~convex
        crossing = ~convex & ~concave
        chord_slope, chord_intercept = self._chord(lower, upper)
        chord_ok = concave | (crossing & torch.isfinite(lower) & (chord_slope <= self.derivative(lower)))
        t_max = torch.where(convex, upper, torch.maximum(lower, self.tangent_limit(upper)))
        mid = lower / 2 + upper / 2
        mid = torch.where(torch.isnan(mid), torch.zeros_like(mid), mid)  # (-inf, +inf) -> 0
        return {
            "convex": convex, "chord_ok": chord_ok,
            "chord_slope": chord_slope, "chord_intercept": chord_intercept,
            "t_max": t_max, "default": self._point_inside(mid, lower, t_max, dtype),
            "mid": self._point_inside(mid, lower, upper, dtype),
        }

    def _chord(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """Secant through ``(l, f(l))`` and ``(u, f(u))`` as (slope, intercept); slope 0 when an end
        is infinite or the width overflows, ``f'(l)`` when ``l = u``. Only used where ``l`` is finite."""
        f_lower, f_upper = self.function(lower), self.function(upper)
        width = upper - lower
        finite = torch.isfinite(lower) & torch.isfinite(upper)
        proper = finite & (width > 0)
        safe_width = torch.where(proper, width, torch.ones_like(width))
        slope = torch.where(proper, (f_upper - f_lower) / safe_width, torch.zeros_like(width))
        slope = torch.where(finite & (width == 0), self.derivative(lower), slope)
        safe_lower = torch.where(torch.isfinite(lower), lower, torch.zeros_like(lower))
        return slope, f_lower - slope * safe_lower

    def _tangent(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Tangent at ``t`` as (slope, intercept); at ``t = -inf`` the asymptote ``y = f(-inf)``."""
        finite = torch.isfinite(t)
        safe_t = torch.where(finite, t, torch.zeros_like(t))
        slope = self.derivative(safe_t)
        intercept = self.function(safe_t) - slope * safe_t
        asymptote = self.function(torch.full_like(t, -math.inf))
        return torch.where(finite, slope, torch.zeros_like(slope)), torch.where(finite, intercept, asymptote)

    def _lower_line(
        self, lower: Tensor, upper: Tensor, dtype: torch.dtype,
        param_convex: Tensor | None, param_crossing: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Float64 lower line on ``[lower, upper]``; params (if given) broadcast as
        ``[spec, batch, *shape]`` and are clamped into the admissible tangent range."""
        r = self._lower_ranges(lower, upper, dtype)
        if param_convex is None or param_crossing is None:
            t = r["default"]
        else:
            t = torch.where(r["convex"], param_convex, param_crossing)
            t = torch.where(torch.isnan(t), r["default"], t)
            t = torch.minimum(torch.maximum(t, lower), r["t_max"])
        tangent_slope, tangent_intercept = self._tangent(t)
        slope = torch.where(r["chord_ok"], r["chord_slope"], tangent_slope)
        intercept = torch.where(r["chord_ok"], r["chord_intercept"], tangent_intercept)
        return slope, intercept

    def relax(self, lower: Tensor, upper: Tensor, params: Tensor | None = None) -> LinearRelaxation:
        """Lines with ``a_l x + b_l <= f(x) <= a_u x + b_u`` on ``[lower, upper]`` (see module doc).
        ``lower, upper: [batch, *shape]``; ``params: [4, spec, batch, *shape]`` or None; the lines are
        ``[batch, *shape]`` resp. ``[spec, batch, *shape]``."""
        if bool(torch.isnan(lower).any() | torch.isnan(upper).any()):
            raise UnsupportedInput(f"{self.kind}: NaN input bounds")
        dtype = lower.dtype
        l, u = lower.double(), upper.double()  # noqa: E741
        p: list[Tensor | None] = [None] * 4
        if params is not None:
            p = list(params.double().unbind(0))
            p[1], p[3] = -p[1], -p[3]  # upper tangent points, mirrored to the lower problem on [-u, -l]
        lower_slope, lower_intercept = self._lower_line(l, u, dtype, p[0], p[2])
        upper_slope, mirrored_intercept = self._lower_line(-u, -l, dtype, p[1], p[3])
        upper_intercept = 2 * self.center - mirrored_intercept
        # magnitude of everything whose rounding can move a line: f at the ends, slope * x, intercepts
        l, u = l.detach(), u.detach()  # noqa: E741 (the padding needs no gradient)
        reach = torch.maximum(l.abs(), u.abs()).nan_to_num(posinf=0.0)
        reach = torch.where(torch.isinf(l) & torch.isinf(u), torch.zeros_like(reach), reach)
        reach = torch.where(torch.isinf(l) ^ torch.isinf(u), torch.minimum(l.abs(), u.abs()), reach)
        magnitude = (self.function(l).abs() + self.function(u).abs() + lower_intercept.detach().abs()
                     + upper_intercept.detach().abs() + (lower_slope + upper_slope).detach() * reach)
        cast = LinearRelaxation(lower_slope.to(dtype), lower_intercept.to(dtype),
                                upper_slope.to(dtype), upper_intercept.to(dtype))
        return pad_outward(cast, magnitude.to(dtype))

    # ---------------------------------------------------------------- alpha-CROWN parameters
    def _points(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Float64 ``(defaults, lows, highs)``, each ``[4, batch, *shape]``: default tangent points and
        their admissible ranges, in the parameter order of the module docstring."""
        dtype = lower.dtype
        l, u = lower.double(), upper.double()  # noqa: E741
        down = self._lower_ranges(l, u, dtype)
        up = self._lower_ranges(-u, -l, dtype)  # mirrored: upper tangent point t <-> -t
        defaults = torch.stack([down["mid"], -up["mid"], down["default"], -up["default"]])
        lows = torch.stack([l, l, l, -up["t_max"]])
        highs = torch.stack([u, u, down["t_max"], u])
        return defaults, lows, highs

    def init_params(self, input_bounds, spec):
        """The default tangent points ``[4, spec, batch, *shape]``: ``relax`` with them reproduces the
        default relaxation exactly."""
        b = input_bounds[0]
        defaults = self._points(b.lower, b.upper)[0].to(b.lower.dtype)
        return defaults.unsqueeze(1).expand(4, spec, *defaults.shape[1:]).clone()

    def project_params(self, params, input_bounds):
        """Clamp each tangent point into its admissible range (NaN -> the default point)."""
        b = input_bounds[0]
        defaults, lows, highs = self._points(b.lower, b.upper)
        p = params.double()
        p = torch.where(torch.isnan(p), defaults.unsqueeze(1), p)
        # each range has an endpoint (l or u) exact in params.dtype, so rounding inside is possible
        return self._point_inside(p, lows.unsqueeze(1), highs.unsqueeze(1), params.dtype).to(params.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sigmoid(SShaped):
    """``1 / (1 + exp(-x))``; ``f' = sigmoid(x) sigmoid(-x)``; center 1/2."""

    kind = "Sigmoid"
    center = 0.5

    def function(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x) * torch.sigmoid(-x)


class Tanh(SShaped):
    """``tanh(x)``; ``f' = 1 / cosh(x)^2`` (accurate where ``1 - tanh^2`` cancels)."""

    kind = "Tanh"

    def function(self, x: Tensor) -> Tensor:
        return torch.tanh(x)

    def derivative(self, x: Tensor) -> Tensor:
        # f' underflows to 0 beyond |x| = 373 already; the clamp keeps cosh finite so autograd gives 0,
        # not inf * 0 = NaN
        return torch.cosh(x.clamp(-700.0, 700.0)).pow(-2)


class Atan(SShaped):
    """``atan(x)``; ``f' = 1 / (1 + x^2)``."""

    kind = "Atan"

    def function(self, x: Tensor) -> Tensor:
        return torch.atan(x)

    def derivative(self, x: Tensor) -> Tensor:
        x = x.clamp(-1e200, 1e200)  # same value (f' underflows to 0); keeps autograd finite at +-inf
        return 1 / (1 + x * x)


class Erf(SShaped):
    """``erf(x)``; ``f' = 2 / sqrt(pi) exp(-x^2)``."""

    kind = "Erf"

    def function(self, x: Tensor) -> Tensor:
        return torch.erf(x)

    def derivative(self, x: Tensor) -> Tensor:
        # exp(-x^2) underflows to 0 beyond |x| = 27.3; the clamp keeps x^2 finite for autograd
        x = x.clamp(-40.0, 40.0)
        return (2 / math.sqrt(math.pi)) * torch.exp(-x * x)


class Softsign(SShaped):
    """``x / (1 + |x|)`` (``+-1`` at ``+-inf``); ``f' = 1 / (1 + |x|)^2``."""

    kind = "Softsign"

    def function(self, x: Tensor) -> Tensor:
        finite = torch.isfinite(x)
        safe = torch.where(finite, x, torch.zeros_like(x))  # no inf / inf, in values or gradients
        return torch.where(finite, safe / (1 + safe.abs()), torch.sign(x))

    def derivative(self, x: Tensor) -> Tensor:
        x = x.clamp(-1e200, 1e200)  # same value (f' underflows to 0); keeps autograd finite at +-inf
        return (1 + x.abs()).pow(-2)
