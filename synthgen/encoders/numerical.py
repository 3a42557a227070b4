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
)
from synthgen.schema import ColumnSchema

Z_CLIP = 5.0  # quantile-normal values are kept within +-5 sd


class NumericalEncoder(ColumnEncoder):
    """Mixed encoding: point masses, infinities and missing as classes, the rest quantile-to-normal.

    A point mass holds at least `point_mass_share` of the rows and at least `min_mass_rows` of them,
    so that a value only a few rows hold is never a class of its own that would be written out
    verbatim. Integers beyond 2**53 in magnitude are encoded relative to the column's minimum
    (`offset`), so that they stay exact.
    """

    def __init__(
        self, col: ColumnSchema, point_mass_share: float, n_quantiles: int, min_mass_rows: int = 1
    ) -> None:
        super().__init__(col)
        self.point_mass_share = point_mass_share
        self.n_quantiles = n_quantiles
        self.min_mass_rows = max(1, min_mass_rows)
        self.offset = 0

    @classmethod
    def from_settings(cls, col: ColumnSchema, settings: Mapping[str, Any]) -> NumericalEncoder:
        return cls(
            col, settings["point_mass_share"], settings["n_quantiles"], settings["rare_threshold"]
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
            self.knots_x, self.knots_u = _quantile_knots(rest_values, rest_counts, self.n_quantiles)
        else:
            self.knots_x, self.knots_u = [], []
        self._build()
        return self

    def _build(self) -> None:
        k = len(self.modes)
        self.continuous_code = k if self.has_continuous else None
        self.missing_code = k + self.has_continuous if self.has_missing else None
        self.n_classes = k + self.has_continuous + self.has_missing
        self.has_mode_block = self.n_classes > 1
        self._modes = np.asarray(self.modes, dtype=np.float64)
        self._kx = np.asarray(self.knots_x, dtype=np.float64)
        self._ku = np.asarray(self.knots_u, dtype=np.float64)

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
        missing = np.isnan(x)
        code = np.full(len(x), -1, dtype=np.int64)
        if len(self._modes):
            pos = np.clip(np.searchsorted(self._modes, x), 0, len(self._modes) - 1)
            hit = ~missing & (self._modes[pos] == x)
            code[hit] = pos[hit]
        if self.has_continuous:
            cont = (code < 0) & ~missing
            code[cont] = self.continuous_code
            out[cont, -1] = self._to_normal(x[cont])
        elif ((code < 0) & ~missing).any():  # unseen, no continuous part: the nearest point mass
            rest = (code < 0) & ~missing
            distance = np.nan_to_num(np.abs(x[rest, None] - self._modes[None, :]), nan=np.inf)
            code[rest] = distance.argmin(1)
        if self.has_missing:
            code[missing] = self.missing_code
        elif missing.any():
            code[missing] = 0 if len(self._modes) else -1
            out[missing & (code < 0), -1] = 0.0  # imputed at the median (z = 0)
        if self.has_mode_block:
            out[:, 0] = code
        return out

    def decode(self, block: np.ndarray, ctx: DecodeContext) -> pd.Series | np.ndarray:
        return _restore_numeric(self.decode_values(block, ctx.exact), self.col, self.offset)

    def decode_values(self, block: np.ndarray, exact: bool = True) -> np.ndarray:
        """Float64 values less `offset`, NaN where the missing class was drawn."""
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
        if self.has_continuous:
            cont = code == self.continuous_code
            x[cont] = self._from_normal(block[cont, -1].astype(np.float64), exact)
        return x

    def _to_normal(self, x: np.ndarray) -> np.ndarray:
        u = np.interp(x, self._kx, self._ku)
        return np.clip(special.ndtri(u), -Z_CLIP, Z_CLIP)

    def _from_normal(self, z: np.ndarray, exact: bool = True) -> np.ndarray:
        u = special.ndtr(z)
        x = np.interp(u, self._ku, self._kx)
        if not exact:
            return x
        # z passes through float32: a u within float32's resolution of a knot is that knot's value.
        # Without this, a heavy tail's wide gap turns the rounding of z into a wrong last digit.
        next_z = np.nextafter(np.abs(z).astype(np.float32), np.float32(np.inf)).astype(np.float64)
        resolution = special.ndtr(next_z) - special.ndtr(np.abs(z))
        nearest = np.clip(np.searchsorted(self._ku, u), 1, len(self._ku) - 1)
        nearest = np.where(u - self._ku[nearest - 1] < self._ku[nearest] - u, nearest - 1, nearest)
        snap = np.abs(u - self._ku[nearest]) <= 2 * np.abs(resolution)
        x[snap] = self._kx[nearest[snap]]
        return x

    def state(self) -> dict[str, Any]:
        return {
            "modes": self.modes,
            "has_continuous": self.has_continuous,
            "has_missing": self.has_missing,
            "knots_x": list(map(float, self.knots_x)),
            "knots_u": list(map(float, self.knots_u)),
            "offset": self.offset,
        }

    def load(self, state: dict[str, Any]) -> NumericalEncoder:
        self.__dict__.update(state)  # files saved before `offset` existed lack it: 0 from __init__
        self._build()
        return self


def _quantile_knots(
    values: np.ndarray, counts: np.ndarray, n_quantiles: int
) -> tuple[list[float], list[float]]:
    """Knots of the empirical CDF of sorted distinct `values`: (x, u) with u at each value's
    mid-rank.

    With at most `n_quantiles` distinct values every one is a knot. Otherwise knots sit at evenly
    spaced ranks, plus every distinct value in the outer 1/n_quantiles of each tail (at most
    n_quantiles per tail): heavy tails have wide gaps between values, and only knots there decode
    back to the exact value. u stays inside (0, 1), so z stays finite.
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
        values, mid_u = values[pick], mid_u[pick]
    if len(values) == 1:
        return [float(values[0])] * 2, [0.5 - 1e-9, 0.5 + 1e-9]
    return values.tolist(), mid_u.tolist()


def _restore_numeric(x: np.ndarray, col: ColumnSchema, offset: int = 0) -> pd.Series | np.ndarray:
    """Decoded values within the column's range and decimals, in its dtype."""
    missing = np.isnan(x)
    finite = np.isfinite(x)
    if col.min is not None:  # infinities are point masses of their own: kept
        x = np.where(finite, np.clip(x, col.min - offset, col.max - offset), x)
    if col.decimals is not None:
        x = np.round(x, col.decimals)
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
