"""Reversible encoding of a table as a compact float32 matrix, and the layout the models read.

Matrix columns (one row per table row):
- categorical / text: one column holding the class code (the models one-hot it per batch, so a wide
  category costs one float per row here, not thousands);
- numerical / datetime: a *mode* code when the column has point masses or missing values, and a
  *continuous* value when some rows are not in a point mass;
- id / empty: nothing (regenerated / written back all-missing).

Numerical columns use a "mixed" encoding: every value that holds at least `point_mass_share` of the rows
(zeros, round amounts, caps) is its own class in a small softmax, missing values are another class, and
the remaining rows go through an empirical quantile-to-normal transform. Why this and not TVAE's
mode-specific normalization with Gaussian mixtures: the quantile map reproduces *any* marginal exactly
(skewed, multi-modal, heavy-tailed) with a single Gaussian output, it is a pair of `np.interp` calls
(fit + transform + inverse of the 336,776-row flights table take seconds, where fitting a Bayesian GMM per
column takes minutes), and a Gaussian mixture cannot put a point mass on 0 either. Measured on credit with
the same small VAE: quantile alone 0.937 Column Shapes, quantile + point masses 0.970
(../shared/docs/findings.md); rerun with `python benchmarks/roundtrip.py` and `benchmarks/compare.py`.

Privacy: categories seen fewer than `rare_threshold` times are never written out verbatim: they share one
class that decodes to `rare_placeholder` (for text-like columns; for number- or bool-valued categories, the
most frequent category). Categories past the `max_categories` most frequent ones (but not rare) share
an "other" class that decodes to one of them at its training frequency.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy import special

from synthgen.errors import UserError
from synthgen.schema import ID_CLASSES, ColumnSchema, Schema, parse_datetimes

log = logging.getLogger("synthgen")

DEFAULT_RARE_PLACEHOLDER = "(rare)"
Z_CLIP = 5.0  # quantile-normal values are kept within +-5 sd
# Decoded tables keep one pandas block per column: merging same-typed columns into 2-D blocks is a copy, about a
# third of decoding a block of rows on telco_churn. pandas warns about frames of over 100 blocks (a user's
# df[new] = ... on one), so wider tables are merged.
MAX_UNMERGED_COLUMNS = 100


@dataclass(frozen=True)
class DiscreteBlock:
    """A softmax block of the decoder output, read from one code column of the matrix."""

    column: str
    input_col: int  # matrix column holding the class code
    out_start: int  # first logit of the block in the decoder output
    n_classes: int
    role: str  # "category" or "mode" (point masses / missing / continuous of a numerical column)


@dataclass(frozen=True)
class ContinuousSlot:
    """A Gaussian output, read from one value column of the matrix."""

    column: str
    input_col: int
    out_index: int
    gate_col: int | None  # matrix column of the mode code that says whether this value is used
    gate_code: int | None  # the mode code meaning "continuous"


@dataclass(frozen=True)
class Layout:
    discrete: tuple[DiscreteBlock, ...]
    continuous: tuple[ContinuousSlot, ...]
    n_inputs: int  # matrix width

    @property
    def out_width(self) -> int:
        return sum(b.n_classes for b in self.discrete) + len(self.continuous)

    @property
    def onehot_width(self) -> int:
        """Width of the models' input: every discrete block one-hot, then the continuous values."""
        return self.out_width


# ----------------------------------------------------------------------------------------------------------
# Column encoders: fit on a Series, encode to matrix columns, decode back. State is plain JSON.


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class CategoricalEncoder:
    """Class codes for a categorical or text column: kept categories, then (rare), (other), (missing)."""

    def __init__(self, col: ColumnSchema, rare_threshold: int, max_categories: int | None,
                 placeholder: str) -> None:
        self.col = col
        self.rare_threshold = rare_threshold
        self.max_categories = max_categories
        self.placeholder = placeholder

    def fit(self, s: pd.Series) -> CategoricalEncoder:
        counts = s.value_counts(dropna=True, sort=True)
        counts = counts[counts > 0]  # unused pandas categories
        rare = counts[counts < self.rare_threshold] if self.rare_threshold > 1 else counts.iloc[:0]
        common = counts.drop(rare.index)
        cap = self.max_categories if self.max_categories else len(common)
        kept, overflow = common.iloc[:cap], common.iloc[cap:]
        if len(kept) == 0 and len(rare) and not len(overflow):
            log.warning("column %r: every value is rarer than %d rows; all are pooled", self.col.name, self.rare_threshold)
        self.categories = [_py(v) for v in kept.index]
        self.n_rare_values = int(len(rare))
        self.n_rare_rows = int(rare.sum())
        self.overflow_values = [_py(v) for v in overflow.index]
        self.overflow_p = (overflow / overflow.sum()).tolist() if len(overflow) else []
        self.has_missing = bool(s.isna().any())
        self.mode_value = self.categories[0] if self.categories else None
        # a pandas category dtype comes back with its categories in order, less the rare ones (privacy)
        rare_set = set(map(_py, rare.index))
        self.dtype_categories = ([_py(c) for c in s.cat.categories if _py(c) not in rare_set]
                                 if isinstance(s.dtype, pd.CategoricalDtype) else None)
        self.ordered = bool(s.cat.ordered) if isinstance(s.dtype, pd.CategoricalDtype) else False
        self._build()
        return self

    def output_categories(self) -> list:
        cats = list(self.dtype_categories or [])
        if self.rare_code is not None and self._text_like():
            cats.append(self.placeholder)
        return cats

    def _build(self) -> None:
        k = len(self.categories)
        self.rare_code = k if self.n_rare_values else None
        self.other_code = k + (self.rare_code is not None) if self.overflow_values else None
        self.missing_code = k + (self.rare_code is not None) + (self.other_code is not None) if self.has_missing else None
        self.n_classes = k + sum(c is not None for c in (self.rare_code, self.other_code, self.missing_code))
        self._overflow_set = pd.Index(self.overflow_values)

    @property
    def width(self) -> int:
        return 1

    def encode(self, s: pd.Series) -> np.ndarray:
        values = s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s
        codes = pd.Categorical(values, categories=pd.Index(self.categories, dtype=object) if self.categories else []).codes.astype(np.int64)
        unknown = (codes < 0) & s.notna().to_numpy()
        if unknown.any():
            in_overflow = unknown & pd.Index(values).isin(self._overflow_set) if self.other_code is not None else np.zeros_like(unknown)
            codes[in_overflow] = self.other_code if self.other_code is not None else -1
            rest = unknown & ~in_overflow
            if rest.any():
                # rare at fit time, or never seen: the rare class (or the most frequent one when nothing was rare)
                codes[rest] = self.rare_code if self.rare_code is not None else 0
        if self.has_missing:
            codes[s.isna().to_numpy()] = self.missing_code
        elif s.isna().any():
            codes[s.isna().to_numpy()] = 0
        return codes.astype(np.float32)[:, None]

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Return (values as an object array, missing mask)."""
        codes = codes[:, 0].astype(np.int64)
        table = np.empty(max(self.n_classes, 1), dtype=object)
        table[: len(self.categories)] = self.categories
        if self.rare_code is not None:
            table[self.rare_code] = self.placeholder if self._text_like() else self.mode_value
        if self._plain_numbers() and self.missing_code is None and None not in table:
            table = table.astype(self.col.dtype)  # numbers as numbers: no per-value object conversion later
        values = table[codes]
        if self.other_code is not None:
            at = np.flatnonzero(codes == self.other_code)
            if len(at):
                pick = rng.choice(len(self.overflow_values), size=len(at), p=self.overflow_p)
                values[at] = np.asarray(self.overflow_values, dtype=values.dtype)[pick]
        missing = codes == self.missing_code if self.missing_code is not None else np.zeros(len(codes), bool)
        return values, missing

    def _plain_numbers(self) -> bool:
        """Whether the column's dtype is a plain numpy number or bool (not nullable, not object)."""
        return self.col.dtype.startswith(("int", "uint", "float")) or self.col.dtype == "bool"

    def _text_like(self) -> bool:
        if self.dtype_categories is not None:
            return all(isinstance(c, str) for c in self.dtype_categories)
        return not (self.col.dtype.startswith(("int", "Int", "uint", "UInt", "float", "Float"))
                    or self.col.dtype in ("bool", "boolean"))

    def state(self) -> dict[str, Any]:
        return {"categories": self.categories, "n_rare_values": self.n_rare_values, "n_rare_rows": self.n_rare_rows,
                "overflow_values": self.overflow_values, "overflow_p": self.overflow_p,
                "has_missing": self.has_missing, "mode_value": self.mode_value,
                "dtype_categories": self.dtype_categories, "ordered": self.ordered}

    def load(self, state: dict[str, Any]) -> CategoricalEncoder:
        self.__dict__.update(state)
        self._build()
        return self


class NumericalEncoder:
    """Mixed encoding: point masses, infinities and missing as classes, the rest quantile-to-normal.

    A point mass holds at least `point_mass_share` of the rows and at least `min_mass_rows` of them, so that a
    value only a few rows hold is never a class of its own that would be written out verbatim. Integers beyond
    2**53 in magnitude are encoded relative to the column's minimum (`offset`), so that they stay exact.
    """

    def __init__(self, col: ColumnSchema, point_mass_share: float, n_quantiles: int, min_mass_rows: int = 1) -> None:
        self.col = col
        self.point_mass_share = point_mass_share
        self.n_quantiles = n_quantiles
        self.min_mass_rows = max(1, min_mass_rows)
        self.offset = 0

    def values(self, s: pd.Series) -> np.ndarray:
        """A column's values as float64 (NaN for missing), less `offset`."""
        if not self.offset:
            return _as_float(s)
        out = np.full(len(s), np.nan)
        present = s.notna().to_numpy()
        out[present] = [float(int(v) - self.offset) for v in s[present]]
        return out

    def fit_series(self, s: pd.Series) -> NumericalEncoder:
        lo, hi = self.col.min, self.col.max
        if self.col.integer and lo is not None and max(abs(lo), abs(hi)) > 2**53 and _is_integer_dtype(self.col.dtype):
            self.offset = int(lo)
        return self.fit(self.values(s))

    def fit(self, x: np.ndarray) -> NumericalEncoder:
        """`x`: float64 values, NaN for missing."""
        present = x[~np.isnan(x)]
        self.has_missing = bool(np.isnan(x).any())
        values, counts = np.unique(present, return_counts=True)
        common = counts >= max(self.point_mass_share * len(present), self.min_mass_rows)
        is_mass = common | np.isinf(values)
        if (~is_mass).sum() < 2 and is_mass.any():
            # too few values left for a distribution: the common ones become point masses too, and a lone rare one
            # is folded into the nearest point mass when encoded (never written out)
            is_mass |= counts >= self.min_mass_rows
        elif not is_mass.any() and len(values) < 2:
            is_mass[:] = True  # one value in the whole column: nothing else to write back
        self.modes = values[is_mass].tolist()
        rest_values, rest_counts = values[~is_mass], counts[~is_mass]
        self.has_continuous = len(rest_values) >= 2 or (len(rest_values) == 1 and not len(self.modes))
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

    def encode(self, x: np.ndarray) -> np.ndarray:
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
        elif ((code < 0) & ~missing).any():  # unseen value and no continuous part: the nearest point mass
            rest = (code < 0) & ~missing
            code[rest] = np.nan_to_num(np.abs(x[rest, None] - self._modes[None, :]), nan=np.inf).argmin(1)
        if self.has_missing:
            code[missing] = self.missing_code
        elif missing.any():
            code[missing] = 0 if len(self._modes) else -1
            out[missing & (code < 0), -1] = 0.0  # imputed at the median (z = 0)
        if self.has_mode_block:
            out[:, 0] = code
        return out

    def decode(self, block: np.ndarray, exact: bool = True) -> np.ndarray:
        if self.has_mode_block:
            code = block[:, 0].astype(np.int64)
        else:
            code = np.full(len(block), self.continuous_code if self.has_continuous else 0, dtype=np.int64)
        x = np.full(len(block), np.nan)
        if len(self._modes):
            is_mode = code < len(self._modes)
            x[is_mode] = self._modes[code[is_mode]]
        if self.has_continuous:
            cont = code == self.continuous_code
            x[cont] = self._from_normal(block[cont, -1].astype(np.float64), exact)
        return x  # NaN where the missing class was drawn

    def _to_normal(self, x: np.ndarray) -> np.ndarray:
        u = np.interp(x, self._kx, self._ku)
        return np.clip(special.ndtri(u), -Z_CLIP, Z_CLIP)

    def _from_normal(self, z: np.ndarray, exact: bool = True) -> np.ndarray:
        u = special.ndtr(z)
        x = np.interp(u, self._ku, self._kx)
        if not exact:
            return x
        # z passes through float32: a u within float32's resolution of a knot is that knot's value. Without
        # this, a heavy tail's wide gap turns the rounding of z into a wrong last digit of x.
        resolution = special.ndtr(np.nextafter(np.abs(z).astype(np.float32), np.float32(np.inf)).astype(np.float64)) - special.ndtr(np.abs(z))
        nearest = np.clip(np.searchsorted(self._ku, u), 1, len(self._ku) - 1)
        nearest = np.where(u - self._ku[nearest - 1] < self._ku[nearest] - u, nearest - 1, nearest)
        snap = np.abs(u - self._ku[nearest]) <= 2 * np.abs(resolution)
        x[snap] = self._kx[nearest[snap]]
        return x

    def state(self) -> dict[str, Any]:
        return {"modes": self.modes, "has_continuous": self.has_continuous, "has_missing": self.has_missing,
                "knots_x": list(map(float, self.knots_x)), "knots_u": list(map(float, self.knots_u)),
                "offset": self.offset}

    def load(self, state: dict[str, Any]) -> NumericalEncoder:
        self.__dict__.update(state)
        self._build()
        return self


def _quantile_knots(values: np.ndarray, counts: np.ndarray, n_quantiles: int) -> tuple[list[float], list[float]]:
    """Knots of the empirical CDF of sorted distinct `values`: (x, u) with u at each value's mid-rank.

    With at most `n_quantiles` distinct values every one is a knot. Otherwise knots sit at evenly spaced
    ranks, plus every distinct value in the outer 1/n_quantiles of each tail (at most n_quantiles per tail):
    heavy tails have wide gaps between values, and only knots there decode back to the exact value.
    u stays inside (0, 1), so z stays finite.
    """
    cum = np.cumsum(counts)
    n = cum[-1]
    mid_u = (cum - counts / 2) / n
    if len(values) > n_quantiles:
        even = np.searchsorted(mid_u, np.linspace(0, 1, n_quantiles)).clip(0, len(values) - 1)
        low = np.arange(min(n_quantiles, int(np.searchsorted(mid_u, 1 / n_quantiles))))
        high = len(values) - 1 - np.arange(min(n_quantiles, len(values) - int(np.searchsorted(mid_u, 1 - 1 / n_quantiles))))
        pick = np.unique(np.concatenate([[0, len(values) - 1], even, low, high]))
        values, mid_u = values[pick], mid_u[pick]
    if len(values) == 1:
        return [float(values[0])] * 2, [0.5 - 1e-9, 0.5 + 1e-9]
    return values.tolist(), mid_u.tolist()


class DatetimeEncoder:
    """Datetimes as integer steps of the data's own resolution (days, hours, ..., ns), then as numbers."""

    STEPS_NS = [86_400 * 10**9, 3_600 * 10**9, 60 * 10**9, 10**9, 10**6, 10**3, 1]

    def __init__(self, col: ColumnSchema, numeric: NumericalEncoder) -> None:
        self.col = col
        self.numeric = numeric

    def to_ns(self, s: pd.Series) -> np.ndarray:
        parsed = parse_datetimes(s, self.col.datetime_format) if not ptypes.is_datetime64_any_dtype(s.dtype) else s
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        ns = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return np.where(parsed.isna().to_numpy(), np.iinfo(np.int64).min, ns)

    def fit(self, s: pd.Series) -> DatetimeEncoder:
        ns = self.to_ns(s)
        valid = ns[ns != np.iinfo(np.int64).min]
        self.step_ns = next(st for st in self.STEPS_NS if np.all(valid % st == 0))
        self.numeric.fit(self._steps(ns))
        return self

    def _steps(self, ns: np.ndarray) -> np.ndarray:
        return np.where(ns == np.iinfo(np.int64).min, np.nan, (ns // self.step_ns).astype(np.float64))

    @property
    def width(self) -> int:
        return self.numeric.width

    def encode(self, s: pd.Series) -> np.ndarray:
        return self.numeric.encode(self._steps(self.to_ns(s)))

    def decode(self, block: np.ndarray, exact: bool = True) -> pd.Series:
        steps = self.numeric.decode(block, exact)
        lo, hi = self.col.min, self.col.max
        missing = np.isnan(steps)
        steps = np.clip(np.round(steps), lo * 1e9 // self.step_ns, hi * 1e9 // self.step_ns)
        ns = np.where(missing, 0, steps * self.step_ns).astype(np.int64)
        out = pd.Series(ns.view("datetime64[ns]"))
        out[missing] = pd.NaT
        if self.col.timezone:
            out = out.dt.tz_localize("UTC").dt.tz_convert(self.col.timezone)
        if self.col.datetime_format:
            return _format_datetimes(out, self.col.datetime_format)
        if self.col.object_values == "date":  # datetime.date objects, as pandas reads a Parquet date column
            dates = out.dt.date.to_numpy(dtype=object)
            dates[missing] = None
            return pd.Series(dates, dtype=object)
        return out

    def state(self) -> dict[str, Any]:
        return {"step_ns": self.step_ns, "numeric": self.numeric.state()}

    def load(self, state: dict[str, Any]) -> DatetimeEncoder:
        self.step_ns = state["step_ns"]
        self.numeric.load(state["numeric"])
        return self


def _format_datetimes(values: pd.Series, fmt: str) -> pd.Series:
    # Values sit on a grid of the data's resolution, so many repeat: format each distinct one once.
    uniq, inverse = np.unique(values.to_numpy(), return_inverse=True)
    texts = pd.Series(pd.DatetimeIndex(uniq).strftime(fmt).to_numpy(dtype=object))
    out = texts.to_numpy(dtype=object)[inverse]
    out[pd.isna(values).to_numpy()] = None
    return pd.Series(out, dtype=object)


def render_ids(fmt: dict[str, Any], index: np.ndarray, seed: int = 0) -> np.ndarray:
    """Unique ids for global row numbers `index`, written in the learned format.

    An id depends only on its row number (and the seed), so rows drawn in any batches or shards get the
    same, unique ids.
    """
    index = np.asarray(index, dtype=np.int64)
    kind = fmt["type"]
    if kind == "integer":
        return fmt["start"] + index
    if kind == "uuid":
        raw = np.empty((len(index), 16), dtype=np.uint8)
        raw[:, :8] = _splitmix64(index.astype(np.uint64) ^ np.uint64(seed)).astype(">u8").view(np.uint8).reshape(-1, 8)
        raw[:, 8:] = index.astype(">u8").view(np.uint8).reshape(-1, 8)  # the row number: unique by construction
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant (the top bits of a row number < 2**62)
        hex_chars = np.frombuffer(b"0123456789abcdef", np.uint8)
        digits = np.stack([hex_chars[raw >> 4], hex_chars[raw & 15]], axis=2).reshape(len(index), 32)
        dash = np.full((len(index), 1), ord("-"), np.uint8)
        matrix = np.concatenate([digits[:, :8], dash, digits[:, 8:12], dash, digits[:, 12:16], dash,
                                 digits[:, 16:20], dash, digits[:, 20:]], axis=1)
        return _bytes_rows_to_str(matrix)
    if kind == "template":
        segments = [list(seg) for seg in fmt["segments"]]
        classes = [seg for seg in segments if seg[0] == "class"]
        capacity = int(np.prod([float(len(ID_CLASSES[seg[1]][0])) ** seg[2] for seg in classes]))
        while classes and len(index) and int(index.max()) >= capacity:
            classes[0][2] += 1  # more rows than the format can number: widen its first field
            capacity *= len(ID_CLASSES[classes[0][1]][0])
        if not classes:
            raise UserError(f"cannot write unique ids in the format {fmt['regex']}")
        parts = []
        rest = index.copy()
        for seg in reversed(segments):  # the last character varies fastest
            if seg[0] == "literal":
                parts.append(np.broadcast_to(np.frombuffer(seg[1].encode(), np.uint8), (len(index), len(seg[1].encode()))))
                continue
            alphabet = np.frombuffer(ID_CLASSES[seg[1]][0].encode(), np.uint8)
            chars = np.empty((len(index), seg[2]), dtype=np.uint8)
            for pos in range(seg[2] - 1, -1, -1):
                chars[:, pos] = alphabet[rest % len(alphabet)]
                rest //= len(alphabet)
            parts.append(chars)
        return _bytes_rows_to_str(np.concatenate(parts[::-1], axis=1))
    # "prefixed": the common prefix, then the row number
    return np.char.add(fmt["prefix"], index.astype(str)).astype(object)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _bytes_rows_to_str(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.uint8)
    return matrix.view(f"S{matrix.shape[1]}")[:, 0].astype(str).astype(object)


# ----------------------------------------------------------------------------------------------------------
# The table transformer


class TableTransformer:
    """`fit(df, schema)`, `transform(df) -> float32 matrix`, `inverse_transform(matrix) -> df`, `layout`."""

    def __init__(self, *, rare_threshold: int = 5, max_categories: int | None = 150,
                 point_mass_share: float = 0.02, n_quantiles: int = 1000,
                 rare_placeholder: str = DEFAULT_RARE_PLACEHOLDER) -> None:
        if rare_threshold < 0 or (max_categories is not None and max_categories < 1):
            raise UserError("rare_threshold must be >= 0 and max_categories >= 1")
        if not 0 < point_mass_share <= 1:
            raise UserError("point_mass_share must be in (0, 1]")
        self.settings = {"rare_threshold": rare_threshold, "max_categories": max_categories,
                         "point_mass_share": point_mass_share, "n_quantiles": n_quantiles,
                         "rare_placeholder": rare_placeholder}
        self.schema: Schema | None = None
        self.encoders: dict[str, Any] = {}

    def _make_encoder(self, col: ColumnSchema):
        st = self.settings
        if col.kind in ("categorical", "text"):
            return CategoricalEncoder(col, st["rare_threshold"], st["max_categories"], st["rare_placeholder"])
        if col.kind == "numerical":
            return NumericalEncoder(col, st["point_mass_share"], st["n_quantiles"], st["rare_threshold"])
        if col.kind == "datetime":
            return DatetimeEncoder(col, NumericalEncoder(col, st["point_mass_share"], st["n_quantiles"],
                                                         st["rare_threshold"]))
        return None  # id, empty, unsupported

    def fit(self, df: pd.DataFrame, schema: Schema) -> TableTransformer:
        self.schema = schema
        self.encoders = {}
        for col in schema.columns:
            enc = self._make_encoder(col)
            if enc is None:
                continue
            if isinstance(enc, NumericalEncoder):
                enc.fit_series(df[col.name])
            else:
                enc.fit(df[col.name])
            self.encoders[col.name] = enc
        self._build_layout()
        return self

    def _build_layout(self) -> None:
        discrete, continuous = [], []
        self._slices: dict[str, slice] = {}
        col_i = 0
        for name, enc in self.encoders.items():
            self._slices[name] = slice(col_i, col_i + enc.width)
            numeric = enc.numeric if isinstance(enc, DatetimeEncoder) else enc
            if isinstance(numeric, CategoricalEncoder):
                discrete.append((name, col_i, numeric.n_classes, "category"))
            else:
                if numeric.has_mode_block:
                    discrete.append((name, col_i, numeric.n_classes, "mode"))
                if numeric.has_continuous:
                    gate = (col_i, numeric.continuous_code) if numeric.has_mode_block else (None, None)
                    continuous.append((name, col_i + enc.width - 1, *gate))
            col_i += enc.width
        out = 0
        blocks = []
        for name, input_col, n, role in discrete:
            blocks.append(DiscreteBlock(name, input_col, out, n, role))
            out += n
        slots = [ContinuousSlot(name, input_col, out + i, gate_col, gate_code)
                 for i, (name, input_col, gate_col, gate_code) in enumerate(continuous)]
        self.layout = Layout(tuple(blocks), tuple(slots), col_i)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        assert self.schema is not None, "fit first"
        missing = [c for c in self.encoders if c not in df.columns]
        if missing:
            raise UserError(f"table lacks columns the model was trained on: {', '.join(map(str, missing))}")
        out = np.empty((len(df), self.layout.n_inputs), dtype=np.float32)
        for name, enc in self.encoders.items():
            s = df[name]
            out[:, self._slices[name]] = enc.encode(enc.values(s)) if isinstance(enc, NumericalEncoder) else enc.encode(s)
        return out

    def inverse_transform(self, matrix: np.ndarray, *, rng: np.random.Generator | None = None,
                          row_offset: int = 0, id_seed: int = 0, exact: bool = True) -> pd.DataFrame:
        """Decode a matrix (from `transform` or from a model) to a table with the input's columns and dtypes.

        `row_offset` numbers the rows for new ids, so batches decoded apart still get unique ids.
        `exact=False` skips snapping values to the knot within float32 resolution (needed to give back
        encoded data exactly, not for drawn values): faster sampling.
        """
        assert self.schema is not None, "fit first"
        rng = rng or np.random.default_rng(0)
        n = len(matrix)
        data = {}
        for col in self.schema.columns:
            enc = self.encoders.get(col.name)
            if col.kind == "id":
                data[col.name] = _restore_dtype(pd.Series(render_ids(col.id_format, np.arange(row_offset, row_offset + n), id_seed)), col)
            elif col.kind in ("empty", "unsupported"):
                data[col.name] = _empty_column(n, col)
            elif isinstance(enc, CategoricalEncoder):
                values, missing = enc.decode(matrix[:, self._slices[col.name]], rng)
                data[col.name] = _restore_categorical(values, missing, col, enc)
            elif isinstance(enc, DatetimeEncoder):
                data[col.name] = _restore_dtype(enc.decode(matrix[:, self._slices[col.name]], exact), col)
            else:
                data[col.name] = _restore_numeric(enc.decode(matrix[:, self._slices[col.name]], exact), col, enc.offset)
        return pd.DataFrame(data, columns=self.schema.names, copy=len(data) > MAX_UNMERGED_COLUMNS)

    # -- persistence: plain JSON, no pickles
    def state(self) -> dict[str, Any]:
        assert self.schema is not None
        return {"settings": self.settings, "schema": self.schema.to_dict(),
                "encoders": {name: enc.state() for name, enc in self.encoders.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TableTransformer:
        tt = cls(**state["settings"])
        tt.schema = Schema.from_dict(state["schema"])
        for col in tt.schema.columns:
            if col.name in state["encoders"]:
                tt.encoders[col.name] = tt._make_encoder(col).load(state["encoders"][col.name])
        tt._build_layout()
        return tt

    def arrow_types(self) -> dict[str, Any]:
        """Arrow types of the columns whose values do not tell them: decimals, wide enough for the column's range
        at its scale (a batch of rows that happens to hold only small values would make them too narrow)."""
        import pyarrow as pa

        types = {}
        for col in self.schema.columns:
            if col.object_values == "decimal" and col.min is not None:
                scale = col.decimals or 0
                digits = len(str(int(max(abs(col.min), abs(col.max))))) + scale
                types[col.name] = pa.decimal128(min(max(digits, scale + 1), 38), scale)
        return types

    def pooling_summary(self) -> dict[str, dict[str, int]]:
        """Per categorical column: values and rows pooled as rare, values pooled as overflow."""
        out = {}
        for name, enc in self.encoders.items():
            if isinstance(enc, CategoricalEncoder) and (enc.n_rare_values or enc.overflow_values):
                out[name] = {"rare_values": enc.n_rare_values, "rare_rows": enc.n_rare_rows,
                             "overflow_values": len(enc.overflow_values)}
        return out


def _as_float(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _nullable(dtype: str) -> str:
    """The pandas dtype that holds the same values plus missing ones (int64 -> Int64, bool -> boolean)."""
    if dtype.startswith(("int", "uint")):
        return "UInt" + dtype[4:] if dtype.startswith("uint") else "Int" + dtype[3:]
    return {"bool": "boolean"}.get(dtype, dtype)


def _is_integer_dtype(dtype: str) -> bool:
    return dtype.startswith(("int", "Int", "uint", "UInt"))


def _restore_numeric(x: np.ndarray, col: ColumnSchema, offset: int = 0) -> pd.Series:
    missing = np.isnan(x)
    finite = np.isfinite(x)
    if col.min is not None:  # infinities are point masses of their own: kept
        x = np.where(finite, np.clip(x, col.min - offset, col.max - offset), x)
    if col.decimals is not None:
        x = np.round(x, col.decimals)
    if offset:  # integers beyond 2**53: offset + value in exact integer arithmetic, kept within [min, max]
        ints = [None if m else min(max(offset + int(v), int(col.min)), int(col.max)) for v, m in zip(x, missing)]
        return _restore_dtype(pd.Series(ints, dtype=object), col, missing)
    if _is_integer_dtype(col.dtype) and col.min is not None:
        # the float bounds of an int64 column near its limits round outwards: cast, then clamp as integers
        info = np.iinfo(np.dtype(col.dtype.lower()))
        x = np.where(finite, np.clip(x, float(info.min), np.nextafter(float(info.max), 0)), 0)
    if col.object_values == "decimal":
        return _decimals(x, missing, col.decimals or 0)
    plain = _PLAIN_DTYPES.get(col.dtype)
    if plain is not None and not missing.any():  # the common case, without a Series per column
        return x.astype(plain, copy=False)
    return _restore_dtype(pd.Series(x), col, missing)


_PLAIN_DTYPES = {name: np.dtype(name) for name in ("float64", "float32", "int64", "int32", "int16", "int8",
                                                   "uint64", "uint32", "uint16", "uint8")}


def _decimals(x: np.ndarray, missing: np.ndarray, scale: int) -> pd.Series:
    """Numbers as decimal.Decimal objects with `scale` decimal places (Parquet decimal columns)."""
    import decimal

    quantum = decimal.Decimal(1).scaleb(-scale)
    out = np.empty(len(x), dtype=object)
    with decimal.localcontext(prec=80):
        out[:] = [None if m else decimal.Decimal(repr(float(v))).quantize(quantum) if np.isfinite(v)
                  else decimal.Decimal(str(v)) for v, m in zip(x, missing)]
    return pd.Series(out, dtype=object)


def _restore_dtype(s: pd.Series, col: ColumnSchema, missing: np.ndarray | None = None) -> pd.Series:
    if missing is not None and missing.any():
        dtype = _nullable(col.dtype)
        if dtype != col.dtype or dtype[:1].isupper() or dtype == "boolean":
            return s.astype(object).mask(missing, None).astype(dtype)
    return s.astype(col.dtype)


def _restore_categorical(values: np.ndarray, missing: np.ndarray, col: ColumnSchema,
                         enc: CategoricalEncoder) -> pd.Series:
    if values.dtype != object:  # plain numbers, nothing missing (CategoricalEncoder.decode)
        return pd.Series(values)
    if missing.any():
        values = values.copy()
        values[missing] = None
    if col.dtype == "category":
        return pd.Series(pd.Categorical(values, categories=enc.output_categories(), ordered=enc.ordered))
    s = pd.Series(values, dtype=object)
    dtype = _nullable(col.dtype) if missing.any() else col.dtype
    return s if dtype == "object" else s.astype(dtype)


def _empty_column(n: int, col: ColumnSchema) -> pd.Series:
    if col.dtype == "category":  # as pandas reads an all-missing category column: no categories, float-typed
        return pd.Series(pd.Categorical([np.nan] * n))
    try:
        return pd.Series([None] * n, dtype=object).astype(_nullable(col.dtype))
    except (TypeError, ValueError):
        return pd.Series([None] * n, dtype=object)


def column_differences(original: pd.DataFrame, decoded: pd.DataFrame, schema: Schema) -> dict[str, str]:
    """Columns where `decoded` differs from `original` (ids excluded), each with the reason.

    Floats count as equal when they agree to the decimal places the data was written with.
    """
    problems: dict[str, str] = {}
    for col in schema.columns:
        if col.kind == "id":
            continue
        a, b = original[col.name].reset_index(drop=True), decoded[col.name].reset_index(drop=True)
        if str(a.dtype) != str(b.dtype):
            problems[col.name] = f"dtype {a.dtype} came back as {b.dtype}"
            continue
        na_a, na_b = a.isna().to_numpy(), b.isna().to_numpy()
        if (na_a != na_b).any():
            problems[col.name] = f"{int((na_a != na_b).sum())} cells changed missingness"
            continue
        if ptypes.is_float_dtype(a.dtype):
            x, y = a.to_numpy(np.float64, na_value=np.nan)[~na_a], b.to_numpy(np.float64, na_value=np.nan)[~na_a]
            tol = 0.5 * 10.0 ** -col.decimals if col.decimals is not None else 0.0
            bad = ~np.isclose(x, y, rtol=1e-12, atol=tol)
        else:
            bad = (a[~na_a].to_numpy() != b[~na_a].to_numpy())
        if np.any(bad):
            problems[col.name] = f"{int(np.sum(bad))} values differ, e.g. {a[~na_a].iloc[int(np.argmax(bad))]!r} -> {b[~na_a].iloc[int(np.argmax(bad))]!r}"
    return problems


def changed_cells(original: pd.DataFrame, decoded: pd.DataFrame, schema: Schema) -> int:
    """How many cells (ids excluded) differ: what rare-category pooling and the category cap change."""
    total = 0
    for col in schema.columns:
        if col.kind in ("id", "empty"):
            continue
        a = original[col.name].reset_index(drop=True).astype(object)
        b = decoded[col.name].reset_index(drop=True).astype(object)
        same = (a == b) | (a.isna() & b.isna())
        total += int((~same).sum())
    return total
