"""Numerical columns: a *mode* code for point masses and missing values, and a *continuous* value.

Every value that holds at least `point_mass_share` of the rows (zeros, round amounts, caps) is its
own class in a small softmax, missing values are another class, and the remaining rows go through an
empirical quantile-to-normal transform. Why not mode-specific normalization with Gaussian mixtures
(TVAE): the quantile map reproduces any marginal exactly with one Gaussian output, costs a pair of
`np.interp` calls, and a mixture cannot put a point mass on 0.
"""

from __future__ import annotations

import decimal
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import special

from synthgen.encoders.base import (
    ColumnEncoder,
    DecodeContext,
    GaussianPart,
    Outputs,
    SoftmaxPart,
    _as_float,
    _is_integer_dtype,
    _restore_dtype,
    unseen_nats,
)
from synthgen.schema import ColumnSchema

Z_CLIP = 5.0  # quantile-normal values are kept within +-5 sd
# distinct values at each end of a column whose rare ones (held by fewer than rare_threshold rows)
# are never written out: the most identifying values are a column's extremes
PROTECTED_TAIL = 20
MAX_GRID_TRIES = 64  # grid steps searched for a representative that no training row holds


class NumericalEncoder(ColumnEncoder):
    """Mixed encoding: point masses, infinities and missing as classes, the rest quantile-to-normal.

    A point mass holds at least `point_mass_share` of the rows and at least `min_mass_rows` of them,
    so that a value only a few rows hold is never a class of its own that would be written out
    verbatim. Integers beyond 2**53 in magnitude are encoded relative to the column's minimum
    (`offset`), so that they stay exact.

    Value protection (`min_mass_rows` > 1): in each tail's PROTECTED_TAIL most extreme distinct
    values, those held by fewer than `min_mass_rows` rows are never written out. The tail's values
    are replaced, in training and in every decoded value, by the nearest of its representatives:
    a value that enough rows hold, or the mean of a run of at least `min_mass_rows` rare values
    (rounded to the column's decimals, and only where no training row holds it). Every quantile
    knot held by fewer rows is the mean of the `min_mass_rows` rows around its rank.
    """

    def __init__(
        self,
        col: ColumnSchema,
        point_mass_share: float,
        n_quantiles: int,
        min_mass_rows: int = 1,
        heap_share: float = 0.0,
    ) -> None:
        super().__init__(col)
        self.point_mass_share = point_mass_share
        self.heap_share = heap_share
        self.heaps: list[list[float]] = []  # [value, u_low, u_high]: flat steps of the inverse CDF
        self.n_quantiles = n_quantiles
        self.min_mass_rows = max(1, min_mass_rows)
        self.offset = 0
        self.decimals = col.decimals  # the grid values are written on (0 for datetime steps)
        # value protection: values at or below `tail_low` (at or above `tail_high`) become the
        # nearest of `low_values` (`high_values`)
        self.tail_low, self.tail_high = -np.inf, np.inf
        self.low_values: list[float] = []
        self.high_values: list[float] = []
        self.protected = {"values": 0, "rows": 0}  # rare values at the ends, and their rows

    @classmethod
    def from_settings(cls, col: ColumnSchema, settings: Mapping[str, Any]) -> NumericalEncoder:
        return cls(
            col,
            settings["point_mass_share"],
            settings["n_quantiles"],
            settings["rare_threshold"],
            settings.get("heap_share", 0.0),
        )

    def values(self, s: pd.Series) -> np.ndarray:
        """A column's values as float64 (NaN for missing), less `offset`."""
        if not self.offset:
            return _as_float(s)
        out = np.full(len(s), np.nan)
        present = s.notna().to_numpy()
        out[present] = [float(int(v) - self.offset) for v in s[present]]
        return out

    def fit(self, s: pd.Series) -> NumericalEncoder:
        lo, hi = self.col.min, self.col.max
        if (
            self.col.integer
            and lo is not None
            and max(abs(lo), abs(hi)) > 2**53
            and _is_integer_dtype(self.col.dtype)
        ):
            self.offset = int(lo)
        return self.fit_values(self.values(s))

    def fit_values(self, x: np.ndarray) -> NumericalEncoder:
        """Fit on float64 values `x`, NaN for missing."""
        present = x[~np.isnan(x)]
        self.has_missing = bool(np.isnan(x).any())
        self.n_rows = len(x)
        values, counts = np.unique(present, return_counts=True)
        common = counts >= max(self.point_mass_share * len(present), self.min_mass_rows)
        is_mass = common | np.isinf(values)
        if (~is_mass).sum() < 2 and is_mass.any():
            # too few values left for a distribution: the common ones become point masses too, and a
            # lone rare one is folded into the nearest point mass when encoded (never written out)
            is_mass |= counts >= self.min_mass_rows
        elif not is_mass.any() and len(values) < 2:
            is_mass[:] = True  # one value in the whole column: nothing else to write back
        self.modes = values[is_mass].tolist()
        rest_values, rest_counts = values[~is_mass], counts[~is_mass]
        self.has_continuous = len(rest_values) >= 2 or (
            len(rest_values) == 1 and not len(self.modes)
        )
        if self.has_continuous:
            self._fit_protection(rest_values, rest_counts)
            mapped = self._protect(rest_values)
            if not np.array_equal(mapped, rest_values):
                rest_values, inverse = np.unique(mapped, return_inverse=True)
                rest_counts = np.bincount(inverse, weights=rest_counts).astype(np.int64)
            self.knots_x, self.knots_u = _quantile_knots(
                rest_values, rest_counts, self.n_quantiles, self.min_mass_rows
            )
            if self.heap_share > 0:
                least = max(self.heap_share * len(present), self.min_mass_rows, 2)
                self.heaps = _heaps(rest_values, rest_counts, least)
        else:
            self.knots_x, self.knots_u = [], []
        self._build()
        return self

    def _fit_protection(self, values: np.ndarray, counts: np.ndarray) -> None:
        """Representatives for the rare values among each tail's PROTECTED_TAIL most extreme
        distinct values (`values` sorted, finite, not point masses)."""
        k = self.min_mass_rows
        finite = np.isfinite(values)
        values, counts = values[finite], counts[finite]
        n = len(values)
        if k <= 1 or n == 0 or (counts >= k).all():
            return
        decimals = self.decimals
        if n <= 2 * PROTECTED_TAIL:  # the tails meet: the whole column is protected
            self.low_values = _tail_representatives(values, counts, k, decimals, None)
            self.tail_low = np.inf
            rare = counts < k
        else:
            t = PROTECTED_TAIL
            lows, highs = slice(0, t), slice(n - t, n)
            self.low_values = _tail_representatives(
                values[lows], counts[lows], k, decimals, values[t]
            )
            self.high_values = _tail_representatives(
                values[highs][::-1], counts[highs][::-1], k, decimals, values[n - t - 1]
            )
            self.tail_low = float((values[t - 1] + values[t]) / 2)
            self.tail_high = float((values[n - t - 1] + values[n - t]) / 2)
            rare = (counts < k) & ((np.arange(n) < t) | (np.arange(n) >= n - t))
        self.protected = {"values": int(rare.sum()), "rows": int(counts[rare].sum())}

    def _protect(self, x: np.ndarray) -> np.ndarray:
        """`x` with every value in a protected tail replaced by the tail's nearest
        representative."""
        if not (self.low_values or self.high_values):
            return x
        x = x.copy()
        for cut, reps, beyond in (
            (self.tail_low, self.low_values, np.less_equal),
            (self.tail_high, self.high_values, np.greater_equal),
        ):
            if reps:
                hit = beyond(x, cut)
                x[hit] = _nearest(np.asarray(reps, dtype=np.float64), x[hit])
        return x

    def protection(self) -> dict[str, Any] | None:
        """Rare values at the column's ends that are never written out (None when there are
        none)."""
        if not self.protected["values"]:
            return None
        return {
            **self.protected,
            "lowest_written": self._written(min),
            "highest_written": self._written(max),
        }

    def _written(self, pick: Any) -> float | None:
        """The lowest or highest value this column can write out (point masses aside)."""
        if not len(self._kx):
            return None
        return float(pick(self._protect(self._kx[[0, -1]]))) + self.offset

    def _build(self) -> None:
        k = len(self.modes)
        self.continuous_code = k if self.has_continuous else None
        self.missing_code = k + self.has_continuous if self.has_missing else None
        self.n_classes = k + self.has_continuous + self.has_missing
        self.has_mode_block = self.n_classes > 1
        self._modes = np.asarray(self.modes, dtype=np.float64)
        self._kx = np.asarray(self.knots_x, dtype=np.float64)
        self._ku = np.asarray(self.knots_u, dtype=np.float64)
        heaps = np.asarray(self.heaps, dtype=np.float64).reshape(-1, 3)
        self._heap_x, self._heap_u = heaps[:, 0], heaps[:, 1:].mean(1)
        self._dkx, self._dku = _stepped(self._kx, self._ku, heaps)

    @property
    def width(self) -> int:
        return int(self.has_mode_block) + int(self.has_continuous)

    def outputs(self) -> Outputs:
        """The mode code first (when there is more than one class), the continuous value last."""
        softmax = (SoftmaxPart(0, self.n_classes, "mode"),) if self.has_mode_block else ()
        gaussian = ()
        if self.has_continuous:
            gate = (0, self.continuous_code) if self.has_mode_block else (None, None)
            gaussian = (GaussianPart(self.width - 1, *gate),)
        return Outputs(softmax, gaussian)

    def encode(self, s: pd.Series) -> np.ndarray:
        return self.encode_values(self.values(s))

    def encode_values(self, x: np.ndarray) -> np.ndarray:
        """Encode float64 values `x` (NaN for missing)."""
        out = np.zeros((len(x), self.width), dtype=np.float32)
        code = self.mode_codes(x)
        if self.has_continuous:
            cont = code == self.continuous_code
            out[cont, -1] = self._to_normal(self._protect(x[cont]))
        # a value missing where training had none and no point mass: z = 0, the median
        if self.has_mode_block:
            out[:, 0] = code
        return out

    def mode_codes(self, x: np.ndarray) -> np.ndarray:
        """Each value's mode code: its point mass, the continuous class or the missing class; a
        value missing where training had none gets the first point mass (-1 without one)."""
        missing = np.isnan(x)
        code = np.full(len(x), -1, dtype=np.int64)
        if len(self._modes):
            pos = np.clip(np.searchsorted(self._modes, x), 0, len(self._modes) - 1)
            hit = ~missing & (self._modes[pos] == x)
            code[hit] = pos[hit]
        rest = (code < 0) & ~missing
        if self.has_continuous:
            code[rest] = self.continuous_code
        elif rest.any():  # unseen, no continuous part: the nearest point mass
            distance = np.nan_to_num(np.abs(x[rest, None] - self._modes[None, :]), nan=np.inf)
            code[rest] = distance.argmin(1)
        if self.has_missing:
            code[missing] = self.missing_code
        elif missing.any():
            code[missing] = 0 if len(self._modes) else -1
        return code

    def surprise(self, s: pd.Series) -> np.ndarray:
        return self.surprise_values(self.values(s))

    def surprise_values(self, x: np.ndarray) -> np.ndarray:
        """`surprise` of float64 values `x` (NaN for missing). A number past the continuous part's
        range continues the normal score's tail: d robust standard deviations past a knot at normal
        score z_end cost z_end * d + d^2 / 2 nats more than the knot itself."""
        out = np.zeros(len(x))
        missing = np.isnan(x)
        n_rows = getattr(self, "n_rows", 0)  # saved before it was kept: no surprise
        is_mode = np.isin(x, self._modes)
        if self.has_continuous and len(self._kx) >= 2:
            lo, hi = self._kx[0], self._kx[-1]
            q1, q3 = np.interp([0.25, 0.75], self._ku, self._kx)
            scale = (q3 - q1) / 1.349 or (hi - lo) / 4 or 1.0
            with np.errstate(invalid="ignore"):
                past = np.fmax(lo - x, x - hi) / scale
            d = np.where(missing | is_mode, 0.0, np.clip(np.nan_to_num(past), 0.0, 1e3))
            z_end = min(float(special.ndtri(self._ku[-1])), Z_CLIP)
            out += z_end * d + 0.5 * d * d
        elif len(self._modes):  # point masses only: any other value is unseen
            out[~missing & ~is_mode] = unseen_nats(n_rows)
        if not self.has_missing:
            out[missing] = unseen_nats(n_rows)
        return out

    def decode(self, block: np.ndarray, ctx: DecodeContext) -> pd.Series | np.ndarray:
        return _restore_numeric(self.decode_values(block, ctx.exact), self.col, self.offset)

    def decode_values(self, block: np.ndarray, exact: bool = True) -> np.ndarray:
        """Float64 values less `offset`, NaN where the missing class was drawn."""
        x, cont = self.decode_modes(block)
        if self.has_continuous:
            x[cont] = self._protect(self._from_normal(block[cont, -1].astype(np.float64), exact))
        return x

    def decode_modes(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """From the mode code in the block's first column: the point masses' values (NaN
        elsewhere), and which rows drew the continuous class."""
        if self.has_mode_block:
            code = block[:, 0].astype(np.int64)
        else:
            code = np.full(
                len(block), self.continuous_code if self.has_continuous else 0, dtype=np.int64
            )
        x = np.full(len(block), np.nan)
        if len(self._modes):
            is_mode = code < len(self._modes)
            x[is_mode] = self._modes[code[is_mode]]
        return x, code == self.continuous_code

    def _to_normal(self, x: np.ndarray) -> np.ndarray:
        # the decoding knots, so that only a heap's own value encodes into its step
        u = np.interp(x, self._dkx, self._dku)
        if len(self._heap_x):
            at = np.clip(np.searchsorted(self._heap_x, x), 0, len(self._heap_x) - 1)
            on_heap = self._heap_x[at] == x
            u[on_heap] = self._heap_u[at[on_heap]]  # the middle of its step: its mid-rank
        return np.clip(special.ndtri(u), -Z_CLIP, Z_CLIP)

    def _from_normal(self, z: np.ndarray, exact: bool = True) -> np.ndarray:
        u = special.ndtr(z)
        kx, ku = self._dkx, self._dku  # with the heaps' flat steps
        x = np.interp(u, ku, kx)
        if not exact:
            return x
        # z passes through float32: a u within float32's resolution of a knot is that knot's value.
        # Without this, a heavy tail's wide gap turns the rounding of z into a wrong last digit.
        next_z = np.nextafter(np.abs(z).astype(np.float32), np.float32(np.inf)).astype(np.float64)
        resolution = special.ndtr(next_z) - special.ndtr(np.abs(z))
        nearest = np.clip(np.searchsorted(ku, u), 1, len(ku) - 1)
        nearest = np.where(u - ku[nearest - 1] < ku[nearest] - u, nearest - 1, nearest)
        snap = np.abs(u - ku[nearest]) <= 2 * np.abs(resolution)
        x[snap] = kx[nearest[snap]]
        return x

    def state(self) -> dict[str, Any]:
        return {
            "modes": self.modes,
            "has_continuous": self.has_continuous,
            "has_missing": self.has_missing,
            "knots_x": list(map(float, self.knots_x)),
            "knots_u": list(map(float, self.knots_u)),
            "heaps": self.heaps,
            "offset": self.offset,
            "tail_low": float(self.tail_low),
            "tail_high": float(self.tail_high),
            "low_values": list(map(float, self.low_values)),
            "high_values": list(map(float, self.high_values)),
            "protected": self.protected,
            "n_rows": self.n_rows,
        }

    def load(self, state: dict[str, Any]) -> NumericalEncoder:
        self.__dict__.update(state)  # files saved before `offset` existed lack it: 0 from __init__
        self._build()
        return self


def _tail_representatives(
    values: np.ndarray,
    counts: np.ndarray,
    k: int,
    decimals: int | None,
    beyond: float | None,
) -> list[float]:
    """The values a tail may write out, walking from the extreme (`values[0]`) inward: each value
    at least `k` rows hold, and the mean of each run of rare values that holds `k` rows (a run
    whose mean would round onto one of its own values grows until it does not). `beyond`: the
    first value past the tail, the fallback when no representative is found."""
    reps: list[float] = []
    run_values: list[float] = []
    run_counts: list[int] = []
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        if count >= k:
            reps.append(value)
            run_values, run_counts = [], []  # the run's rows go to the nearest representative
            continue
        run_values.append(value)
        run_counts.append(count)
        if sum(run_counts) >= k:
            rep = _representative(np.asarray(run_values), np.asarray(run_counts), decimals)
            if rep is not None:
                reps.append(rep)
                run_values, run_counts = [], []
    if not reps:
        if beyond is not None:
            reps = [float(beyond)]
        else:  # the whole column is one rare run: its mean, whatever it rounds to
            mean = _mean(values, counts)
            reps = [round(mean, decimals) if decimals is not None else mean]
    return sorted(reps)


def _representative(values: np.ndarray, counts: np.ndarray, decimals: int | None) -> float | None:
    """The rows' mean, or the nearest value on the column's decimal grid within their range, that
    none of `values` is (None when every grid value in range is one of them)."""
    mean = _mean(values, counts)
    if decimals is None:
        return None if (values == mean).any() else mean
    step = 10.0**-decimals
    taken = set(np.round(values, decimals).tolist())
    lo, hi = values.min(), values.max()
    start = round(mean, decimals)
    for i in range(MAX_GRID_TRIES):
        for candidate in {round(start + i * step, decimals), round(start - i * step, decimals)}:
            if lo <= candidate <= hi and candidate not in taken:
                return candidate
    return None


def _mean(values: np.ndarray, counts: np.ndarray) -> float:
    """The mean of `values` weighted by `counts`, without overflow near float64's limits."""
    scale = max(1.0, float(np.abs(values).max()))
    return float(np.average(values / scale, weights=counts)) * scale


def _nearest(reps: np.ndarray, x: np.ndarray) -> np.ndarray:
    """For each of `x`, the nearest of the sorted `reps`."""
    i = np.clip(np.searchsorted(reps, x), 1, max(len(reps) - 1, 1))
    if len(reps) == 1:
        return np.full(len(x), reps[0])
    left, right = reps[i - 1], reps[i]
    return np.where(np.abs(x - left) <= np.abs(right - x), left, right)


def _quantile_knots(
    values: np.ndarray, counts: np.ndarray, n_quantiles: int, k: int = 1
) -> tuple[list[float], list[float]]:
    """Knots of the empirical CDF of sorted distinct `values`: (x, u) with u at each value's
    mid-rank.

    With at most `n_quantiles` distinct values every one is a knot. Otherwise knots sit at evenly
    spaced ranks, plus every distinct value in the outer 1/n_quantiles of each tail (at most
    n_quantiles per tail): heavy tails have wide gaps between values, and only knots there decode
    back to the exact value. u stays inside (0, 1), so z stays finite. A knot's value held by
    fewer than `k` rows is replaced by the mean of the `k` rows around its rank, so that no knot
    is one person's value.
    """
    cum = np.cumsum(counts)
    n = cum[-1]
    mid_u = (cum - counts / 2) / n
    if len(values) > n_quantiles:
        last = len(values) - 1
        even = np.searchsorted(mid_u, np.linspace(0, 1, n_quantiles)).clip(0, last)
        n_low = min(n_quantiles, int(np.searchsorted(mid_u, 1 / n_quantiles)))
        n_high = min(n_quantiles, len(values) - int(np.searchsorted(mid_u, 1 - 1 / n_quantiles)))
        low, high = np.arange(n_low), last - np.arange(n_high)
        pick = np.unique(np.concatenate([[0, last], even, low, high]))
    else:
        pick = np.arange(len(values))
    knots = values[pick]
    if k > 1 and (counts[pick] < k).any():
        rare = counts[pick] < k
        knots = knots.copy()
        knots[rare] = _window_means(values, counts, mid_u[pick][rare] * n, k)
        knots = np.maximum.accumulate(knots)
        _, keep = np.unique(knots, return_index=True)  # averaged knots may coincide
        pick, knots = pick[keep], knots[keep]
    values, mid_u = knots, mid_u[pick]
    if len(values) == 1:
        return [float(values[0])] * 2, [0.5 - 1e-9, 0.5 + 1e-9]
    return values.tolist(), mid_u.tolist()


def _heaps(values: np.ndarray, counts: np.ndarray, least: float) -> list[list[float]]:
    """The heaps among sorted distinct `values`: each value at least `least` rows hold, with the
    span of the empirical CDF its rows take, [value, u_low, u_high]."""
    cum = np.cumsum(counts)
    n = cum[-1]
    heap = (counts >= least) & np.isfinite(values)
    low, high = (cum - counts)[heap] / n, cum[heap] / n
    return [[float(v), float(a), float(b)] for v, a, b in zip(values[heap], low, high, strict=True)]


def _stepped(kx: np.ndarray, ku: np.ndarray, heaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decoding knots: (kx, ku) with a flat step over each heap's span of the CDF, so that a
    heap holding 1% of the rows decodes from 1% of the normal scores, exactly to its value, rather
    than being smoothed into its neighbours. Ranks are kept: the map stays monotone."""
    if not len(heaps):
        return kx, ku
    hx, low, high = heaps.T
    margin = np.minimum(1e-9, (high - low) / 4)
    after = np.searchsorted(high, ku)  # the first heap ending at or after each knot
    inside = (after < len(high)) & (ku > low[np.minimum(after, len(high) - 1)])
    u = np.concatenate([ku[~inside], low + margin, high - margin])
    x = np.concatenate([kx[~inside], hx, hx])
    order = np.argsort(u, kind="stable")
    return np.maximum.accumulate(x[order]), u[order]


def _window_means(values: np.ndarray, counts: np.ndarray, ranks: np.ndarray, k: int) -> np.ndarray:
    """The mean of the `k` sorted rows centred on each rank (rows as `values` repeated
    `counts` times)."""
    scale = max(1.0, float(np.abs(values).max()))  # sums stay finite near float64's limits
    values = values / scale
    cum = np.cumsum(counts)
    n = int(cum[-1])
    cum_sum = np.cumsum(counts * values)
    width = min(k, n)
    start = np.clip(np.round(ranks - width / 2), 0, n - width)

    def head_sum(r: np.ndarray) -> np.ndarray:  # the sum of the first r rows
        j = np.searchsorted(cum, r, side="left").clip(0, len(values) - 1)
        before = np.where(j > 0, cum[j - 1], 0)
        return np.where(j > 0, cum_sum[j - 1], 0.0) + (r - before) * values[j]

    return (head_sum(start + width) - head_sum(start)) / width * scale


def written(x: np.ndarray, col: ColumnSchema, offset: int = 0) -> np.ndarray:
    """Decoded float values (less `offset`) as the column writes them: within its range, at its
    decimals."""
    if col.min is not None:  # infinities are point masses of their own: kept
        x = np.where(np.isfinite(x), np.clip(x, col.min - offset, col.max - offset), x)
    if col.decimals is not None:
        x = np.round(x, col.decimals)
    return x


def _restore_numeric(x: np.ndarray, col: ColumnSchema, offset: int = 0) -> pd.Series | np.ndarray:
    """Decoded values within the column's range and decimals, in its dtype."""
    missing = np.isnan(x)
    finite = np.isfinite(x)
    x = written(x, col, offset)
    if offset:  # integers beyond 2**53: offset + value in exact integers, kept within [min, max]
        ints = [
            None if m else min(max(offset + int(v), int(col.min)), int(col.max))
            for v, m in zip(x, missing, strict=False)
        ]
        return _restore_dtype(pd.Series(ints, dtype=object), col, missing)
    if _is_integer_dtype(col.dtype) and col.min is not None:
        # the float bounds of an int64 column near its limits round outwards: cast, then clamp
        info = np.iinfo(np.dtype(col.dtype.lower()))
        x = np.where(finite, np.clip(x, float(info.min), np.nextafter(float(info.max), 0)), 0)
    if col.object_values == "decimal":
        return _decimals(x, missing, col.decimals or 0)
    plain = _PLAIN_DTYPES.get(col.dtype)
    if plain is not None and not missing.any():  # the common case, without a Series per column
        return x.astype(plain, copy=False)
    return _restore_dtype(pd.Series(x), col, missing)


_PLAIN_DTYPES = {
    name: np.dtype(name)
    for name in (
        "float64",
        "float32",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint64",
        "uint32",
        "uint16",
        "uint8",
    )
}


def _decimals(x: np.ndarray, missing: np.ndarray, scale: int) -> pd.Series:
    """Numbers as decimal.Decimal objects with `scale` decimal places (Parquet decimal columns)."""
    quantum = decimal.Decimal(1).scaleb(-scale)
    out = np.empty(len(x), dtype=object)
    with decimal.localcontext(prec=80):
        out[:] = [
            None
            if m
            else decimal.Decimal(repr(float(v))).quantize(quantum)
            if np.isfinite(v)
            else decimal.Decimal(str(v))
            for v, m in zip(x, missing, strict=False)
        ]
    return pd.Series(out, dtype=object)
