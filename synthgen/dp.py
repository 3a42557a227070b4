"""Differential privacy (DP mode: the `epsilon` setting): how the budget is split, and every
statistic taken from the rows outside DP-SGD, released with noise.

Neighbouring tables differ by one row, added or removed (the notion Opacus' Poisson sampling and
its accountant use). The parts of the budget add up (basic sequential composition):

- marginals (`MARGINALS_SHARE` of epsilon and of delta): one noisy histogram per modelled column.
  The encoders, the column ranges and the class shares the calibration targets are then fitted on
  a public stand-in table drawn from those histograms (`private_stand_in`), never on the rows;
- prior (`PRIOR_SHARE`, only when new rows draw z from a fitted Gaussian, the AE's default): the
  codes' mean and covariance through the Gaussian mechanism (`private_gaussian`);
- training: the rest, DP-SGD (Opacus: per-row clipping, Poisson sampling, RDP accountant).

What stays public, not paid for: the column names, kinds and formats (inferred from the rows,
or given as metadata: pass metadata to keep them out of the data's hands), the row count, and the
settings.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy import special

from synthgen.encoders.base import _as_float
from synthgen.encoders.datetime import datetimes_to_ns, resolution_ns
from synthgen.schema import ColumnSchema, Schema

log = logging.getLogger("synthgen")

MARGINALS_SHARE = 0.2
PRIOR_SHARE = 0.05
# A number's histogram bins: its sign, its power of ten and its leading DIGITS digits (2: 10-99, so
# each bin is 1% to 10% of its value wide), between 10^MIN_EXPONENT and 10^(MAX_EXPONENT + 1).
# The bins are fixed before the data is seen, so every bin gets noise and none is revealed by
# being present. Datetimes are seconds since 1970 with 3 digits (about 12 days wide in 2020).
DIGITS = {"numerical": 2, "datetime": 3}  # the fine bins; the coarse ones have a digit fewer
MIN_EXPONENT, MAX_EXPONENT = -12, 18
# A bin is kept when its noisy count passes the level that pure noise reaches in one of
# 1 / FALSE_BIN_ODDS histograms (so a made-up value far outside the data's range is that rare).
FALSE_BIN_ODDS = 0.001
# Bins between the lowest and the highest kept bin need only pass NEAR_LEVEL noise scales.
NEAR_LEVEL = 3.0
COARSE_SHARE = 0.3  # of a number's budget, on the coarse bins
# Below this many rows times a column's epsilon, the fine bins' counts would drown in their noise:
# the whole budget goes to the coarse bins
FINE_BINS_AT = 1000
CHILDREN_COVER = 0.7
SPECIAL_KEYS = ("missing", "-inf", "+inf", "zero")


@dataclass(frozen=True)
class Budget:
    """An (epsilon, delta) pair."""

    epsilon: float
    delta: float

    def scaled(self, share: float) -> Budget:
        return Budget(self.epsilon * share, self.delta * share)


def split_budget(epsilon: float, delta: float, *, fitted_prior: bool) -> dict[str, Budget]:
    """The parts of (epsilon, delta) each use spends; they add up to the whole."""
    total = Budget(epsilon, delta)
    parts = {"marginals": total.scaled(MARGINALS_SHARE)}
    if fitted_prior:
        parts["prior"] = total.scaled(PRIOR_SHARE)
    rest = 1.0 - sum(p.epsilon for p in parts.values()) / epsilon
    parts["training"] = total.scaled(rest)
    return parts


# --------------------------------------------------------------------------------------------------
# Marginals


def private_stand_in(
    df: pd.DataFrame, schema: Schema, budget: Budget, seed: int
) -> tuple[pd.DataFrame, Schema, dict[str, Any]]:
    """A public stand-in for `df`: as many rows, each modelled column drawn on its own from that
    column's noisy histogram (`budget` split evenly over the columns, since a row touches every
    one), and the schema with its ranges, missing shares and category counts taken from the
    stand-in. Returns the stand-in, its schema and an account per column."""
    rng = np.random.default_rng(seed)
    modelled = [c for c in schema.columns if c.modelled]
    per_column = Budget(budget.epsilon / len(modelled), budget.delta / len(modelled))
    columns, account = {}, {}
    for col in schema.columns:
        if not col.modelled:
            columns[col.name] = pd.Series([None] * len(df), dtype=object)
            continue
        if col.kind in DIGITS:
            values, note = _private_numbers(df[col.name], col, per_column, len(df), rng)
        else:
            values, note = _private_categories(df[col.name], col, per_column, len(df), rng)
        columns[col.name] = values
        account[col.name] = note
    stand_in = pd.DataFrame(columns)
    restated = [
        _restated(col, stand_in[col.name]) if col.modelled else _renumbered(col)
        for col in schema.columns
    ]
    return stand_in, replace(schema, columns=restated), account


def _private_numbers(
    s: pd.Series, col: ColumnSchema, budget: Budget, n: int, rng: np.random.Generator
) -> tuple[pd.Series, dict[str, Any]]:
    """A number's (or a datetime's) noisy histograms over fixed bins at two widths, pure
    epsilon-DP: Laplace noise on every bin of each. A coarse bin (one digit fewer) is split into
    its fine bins where those kept hold at least CHILDREN_COVER of it, else drawn uniformly: a
    dense stretch keeps its detail, a sparse one is not lost to the noise. Values are drawn
    uniformly within the bins."""
    fine_digits = DIGITS[col.kind]
    if col.kind == "datetime":
        ns, missing = datetimes_to_ns(s, col.datetime_format)
        x = np.where(missing, np.nan, ns / 1e9)
    else:
        x = _as_float(s)
    if n * budget.epsilon < FINE_BINS_AT:  # too few rows for this budget: the coarse bins only
        coarse = _noisy_bins(x, fine_digits - 1, budget.epsilon, rng)
        nothing = np.array([], dtype=np.int64)
        fine = _NoisyBins(np.zeros(_n_bins(fine_digits)), nothing, math.inf)
    else:
        coarse = _noisy_bins(x, fine_digits - 1, budget.epsilon * COARSE_SHARE, rng)
        fine = _noisy_bins(x, fine_digits, budget.epsilon * (1 - COARSE_SHARE), rng)
    parent = _bin_keys(_bin_middles(len(fine.noisy), fine_digits), fine_digits - 1)
    parent[: len(SPECIAL_KEYS)] = np.arange(len(SPECIAL_KEYS))
    bins, weights = [], []  # (digits, key) and noisy count of each bin drawn from
    fine_kept = fine.kept[fine.kept >= len(SPECIAL_KEYS)]
    for key in coarse.kept:
        children = fine_kept[parent[fine_kept] == key]
        cover = fine.noisy[children].sum()
        if key >= len(SPECIAL_KEYS) and cover >= CHILDREN_COVER * coarse.noisy[key]:
            bins += [(fine_digits, c) for c in children]
            weights += list(fine.noisy[children] * coarse.noisy[key] / cover)
        else:
            bins.append((fine_digits - 1, key))
            weights.append(coarse.noisy[key])
    orphans = fine_kept[~np.isin(parent[fine_kept], coarse.kept)]
    bins += [(fine_digits, c) for c in orphans]
    weights += list(fine.noisy[orphans])
    if not bins:  # nothing stood out from the noise at this budget: a public 0
        log.warning(
            "DP mode: no value of column %r stands out from the noise; 0 stands in", col.name
        )
        bins, weights = [(fine_digits, SPECIAL_KEYS.index("zero"))], [1.0]
    weights = np.maximum(np.asarray(weights), 1.0)
    bin_digits, bin_keys = (np.array(column, dtype=np.int64) for column in zip(*bins, strict=True))
    drawn = rng.choice(len(bins), size=n, p=weights / weights.sum())
    values = np.empty(n)
    for digits in (fine_digits - 1, fine_digits):
        at = np.flatnonzero(bin_digits[drawn] == digits)
        values[at] = _values_in_bins(bin_keys[drawn[at]], digits, rng)
    if col.kind == "datetime":  # the data's resolution (days, hours, ...) is its format: public
        step = resolution_ns(ns[~missing]) / 1e9
        values = np.trunc(values / step) * step
    elif col.decimals is not None:  # toward zero: a bin [40, 41) holds 40 of an integer column
        finite = np.isfinite(values)
        values[finite] = np.trunc(values[finite] * 10.0**col.decimals) / 10.0**col.decimals
    note = {
        "mechanism": "Laplace histograms over fixed bins, two widths",
        "bins_kept": int(len(bins)),
        "level": min(coarse.level, fine.level),
        "epsilon": budget.epsilon,
        "delta": 0.0,
    }
    return _as_column(values, col), note


def _n_bins(digits: int) -> int:
    return len(SPECIAL_KEYS) + 2 * (MAX_EXPONENT - MIN_EXPONENT + 1) * 9 * 10 ** (digits - 1)


@dataclass(frozen=True)
class _NoisyBins:
    noisy: np.ndarray  # every bin's noisy count
    kept: np.ndarray  # the keys of the bins kept
    level: float


def _noisy_bins(x: np.ndarray, digits: int, epsilon: float, rng: np.random.Generator) -> _NoisyBins:
    """Laplace(1 / epsilon) on the count of every bin (a row is in one bin: sensitivity 1). A bin
    is kept when it passes the false-bin level, or NEAR_LEVEL noise scales between the lowest and
    the highest bin that passed it (post-processing of the noisy counts: free)."""
    n_bins = _n_bins(digits)
    counts = np.bincount(_bin_keys(x, digits), minlength=n_bins).astype(np.float64)
    scale = 1.0 / epsilon
    noisy = counts + rng.laplace(0.0, scale, n_bins)
    level = scale * math.log(n_bins / FALSE_BIN_ODDS)
    strong = noisy > level
    if not strong.any():
        return _NoisyBins(noisy, np.array([], dtype=np.int64), level)
    middles = _bin_middles(n_bins, digits)
    inside = (middles >= middles[strong].min()) & (middles <= middles[strong].max())
    kept = np.flatnonzero(strong | (inside & (noisy > NEAR_LEVEL * scale)))
    return _NoisyBins(noisy, kept, level)


def _private_categories(
    s: pd.Series, col: ColumnSchema, budget: Budget, n: int, rng: np.random.Generator
) -> tuple[pd.Series, dict[str, Any]]:
    """A category's noisy histogram. Which categories exist is itself private, so only the ones the
    rows hold get noise, and one is kept when its noisy count passes 1 + ln(1 / (2 delta)) /
    epsilon: a category one row holds is then released with probability at most delta (the
    stability-based histogram; (epsilon, delta)-DP)."""
    values = s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s
    counts = values.value_counts(dropna=False)
    scale = 1.0 / budget.epsilon
    noisy = counts.to_numpy(np.float64) + rng.laplace(0.0, scale, len(counts))
    level = 1.0 + scale * math.log(1.0 / (2.0 * budget.delta))
    kept = np.flatnonzero(noisy > level)
    if not len(kept):
        kept = np.array([int(np.argmax(noisy))])
    weights = noisy[kept]
    chosen = counts.index[kept]
    drawn = chosen.take(rng.choice(len(kept), size=n, p=weights / weights.sum()))
    out = pd.Series(np.asarray(drawn, dtype=object))
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(chosen.dropna())
        out = out.astype(
            pd.CategoricalDtype([c for c in s.cat.categories if c in present], s.cat.ordered)
        )
    elif ptypes.is_bool_dtype(s.dtype) and not out.isna().any():
        out = out.astype(bool)
    elif ptypes.is_numeric_dtype(s.dtype) or ptypes.is_bool_dtype(s.dtype):
        out = out.astype(s.dtype if not out.isna().any() else "object")
    note = {
        "mechanism": "stability-based Laplace histogram",
        "categories": "released " + str(len(kept)),
        "level": level,
        "epsilon": budget.epsilon,
        "delta": budget.delta,
    }
    return out, note


def _bin_keys(x: np.ndarray, digits: int) -> np.ndarray:
    """Each value's bin: a special key, or (sign, power of ten, leading digits)."""
    keys = np.empty(len(x), dtype=np.int64)
    keys[np.isnan(x)] = 0
    keys[x == -np.inf] = 1
    keys[x == np.inf] = 2
    keys[x == 0] = 3
    regular = np.isfinite(x) & (x != 0)
    v = np.abs(x[regular])
    exponent = np.clip(np.floor(np.log10(v)), MIN_EXPONENT, MAX_EXPONENT)
    lead = np.floor(v / 10.0 ** (exponent - digits + 1))
    low, high = 10 ** (digits - 1), 10**digits - 1
    lead = np.clip(lead, low, high)  # rounding at a power of ten; values beyond the bins' range
    per_sign = (MAX_EXPONENT - MIN_EXPONENT + 1) * (high - low + 1)
    keys[regular] = (
        len(SPECIAL_KEYS)
        + (x[regular] > 0) * per_sign
        + (exponent - MIN_EXPONENT).astype(np.int64) * (high - low + 1)
        + (lead - low).astype(np.int64)
    )
    return keys


def _bin_middles(n_bins: int, digits: int) -> np.ndarray:
    """Every bin's middle value, in key order (missing counts as zero: both may sit inside the
    data's range; the infinities sit outside it)."""
    return np.r_[0.0, -np.inf, np.inf, 0.0, _values_in_bins(np.arange(4, n_bins), digits, None)]


def _values_in_bins(keys: np.ndarray, digits: int, rng: np.random.Generator | None) -> np.ndarray:
    """A value drawn uniformly within each key's bin (the special keys' own values); without
    `rng`, each bin's middle."""
    special_values = np.array([np.nan, -np.inf, np.inf, 0.0])
    out = np.empty(len(keys))
    is_special = keys < len(SPECIAL_KEYS)
    out[is_special] = special_values[keys[is_special]]
    low, width = 10 ** (digits - 1), 9 * 10 ** (digits - 1)
    k = keys[~is_special] - len(SPECIAL_KEYS)
    per_sign = (MAX_EXPONENT - MIN_EXPONENT + 1) * width
    sign = np.where(k >= per_sign, 1.0, -1.0)
    k = k % per_sign
    exponent = k // width + MIN_EXPONENT
    lead = k % width + low
    unit = 10.0 ** (exponent - digits + 1)
    within = rng.random(len(k)) if rng is not None else 0.5
    out[~is_special] = sign * (lead + within) * unit
    return out


def _as_column(values: np.ndarray, col: ColumnSchema) -> pd.Series:
    """Drawn numbers in the column's own form: its integer or float dtype, or datetimes."""
    missing = np.isnan(values)
    if col.kind == "datetime":
        finite = np.where(np.isfinite(values), values, 0.0)
        out = pd.Series(pd.to_datetime(np.round(finite * 1e9).astype(np.int64), unit="ns"))
        out[missing] = pd.NaT
        return out
    if col.integer and not np.isinf(values).any():
        out = pd.Series(np.round(np.where(missing, 0, values)).astype(np.int64))
        return out.astype("Int64").mask(missing) if missing.any() else out
    return pd.Series(values)


def _renumbered(col: ColumnSchema) -> ColumnSchema:
    """An integer id column's new ids start at 1, not at the rows' smallest id."""
    if col.kind == "id" and col.id_format and col.id_format.get("type") == "integer":
        return replace(col, id_format={**col.id_format, "start": 1})
    return col


def _restated(col: ColumnSchema, s: pd.Series) -> ColumnSchema:
    """`col` with every statistic read from the stand-in column `s`; its kind, dtype and format
    kept."""
    present = s.dropna()
    stats: dict[str, Any] = {"missing_share": float(s.isna().mean())}
    if col.kind == "numerical":
        finite = pd.to_numeric(present).to_numpy(np.float64)
        finite = finite[np.isfinite(finite)]
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (None, None)
        if col.integer and low is not None:
            low, high = int(low), int(high)
        stats.update(min=low, max=high)
    elif col.kind == "datetime":
        stats.update(
            min=float(present.min().timestamp()) if len(present) else None,
            max=float(present.max().timestamp()) if len(present) else None,
        )
    else:
        stats["n_categories"] = int(present.nunique())
    return replace(col, **stats)


# --------------------------------------------------------------------------------------------------
# Prior


def gaussian_noise_scale(epsilon: float, delta: float, sensitivity: float) -> float:
    """The smallest sigma for which adding N(0, sigma^2) to a value of L2 `sensitivity` is
    (epsilon, delta)-DP: the analytic Gaussian mechanism (Balle and Wang 2018), by bisection."""

    def delta_at(sigma: float) -> float:
        a, b = sensitivity / (2 * sigma), epsilon * sigma / sensitivity
        return float(special.ndtr(a - b) - math.exp(epsilon) * special.ndtr(-a - b))

    low, high = 1e-6 * sensitivity, sensitivity
    while delta_at(high) > delta:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if delta_at(mid) > delta else (low, mid)
    return high


def private_gaussian(
    codes: np.ndarray, budget: Budget, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Mean and covariance of the codes (N, d), (epsilon, delta)-DP. Half the budget finds a clip
    radius (a noisy histogram of the codes' norms, powers of two); the other half is the
    Gaussian mechanism on the sums of the clipped codes and of their outer products, whose L2
    sensitivity is sqrt(R^2 + R^4). The row count is public."""
    rng = np.random.default_rng(seed)
    n, d = codes.shape
    norms = np.linalg.norm(codes, axis=1)
    # radius: the smallest power of two that a noisy 99% of the norms stay under
    powers = np.arange(-10, 31)
    bins = np.clip(np.ceil(np.log2(np.maximum(norms, 2.0**-10))), -10, 30).astype(int) + 10
    noisy = np.bincount(bins, minlength=len(powers)) + rng.laplace(
        0.0, 2.0 / budget.epsilon, len(powers)
    )
    # only bins that stand out from the noise count (as for the marginals), else the noise spread
    # over the empty bins would carry the quantile far out
    kept = np.where(noisy > 2.0 / budget.epsilon * math.log(len(powers) / FALSE_BIN_ODDS), noisy, 0)
    share = np.cumsum(kept) / kept.sum() if kept.any() else np.ones(len(powers))
    radius = float(2.0 ** powers[min(int(np.searchsorted(share, 0.99)), len(powers) - 1)])
    clipped = codes * np.minimum(1.0, radius / np.maximum(norms, 1e-12))[:, None]
    sigma = gaussian_noise_scale(budget.epsilon / 2, budget.delta, math.sqrt(radius**2 + radius**4))
    total = clipped.sum(0) + rng.normal(0.0, sigma, d)
    outer = clipped.T @ clipped + np.triu(rng.normal(0.0, sigma, (d, d)))
    outer = np.triu(outer) + np.triu(outer, 1).T  # one noise draw per entry, symmetric
    mean = total / n
    cov = outer / n - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)
    floor = max(float(values.max()), 1e-6) * 1e-4
    cov = (vectors * np.maximum(values, floor)) @ vectors.T  # the nearest valid covariance
    note = {
        "mechanism": "Gaussian (analytic) on clipped sums; clip radius from a Laplace histogram",
        "clip_radius": radius,
        "noise_sigma": sigma,
        "epsilon": budget.epsilon,
        "delta": budget.delta,
    }
    return mean, cov, note


# --------------------------------------------------------------------------------------------------
# The account a report and a saved model carry

PUBLIC = (
    "column names, kinds, dtypes and formats (datetime formats and resolution, decimal places, "
    "id formats): inferred from the rows or given as metadata, not paid for",
    "the row count (it sets the sampling rate and the stand-in's size)",
    "the settings",
)
FROM_BUDGET = (
    "each column's value range, quantile knots, point masses, missing share and protected tails; "
    "category lists and counts; the class shares the marginal calibration targets: all fitted on "
    "a stand-in table drawn from per-column noisy histograms (marginals)",
    "the network's weights: DP-SGD (training)",
    "the fitted prior's mean and covariance, when z is drawn from it (prior)",
)


def privacy_account(
    epsilon: float,
    delta: float,
    budget: dict[str, Budget],
    marginals: dict[str, dict[str, Any]],
    training: dict[str, Any] | None,
) -> dict[str, Any]:
    """What DP mode spent, part by part, and what was public: for the report and the saved model."""
    training = training or {}
    spent = {"marginals": budget["marginals"].epsilon, "training": training.get("epsilon", 0.0)}
    deltas = {"marginals": budget["marginals"].delta, "training": training.get("delta", 0.0)}
    if "prior" in training:
        spent["prior"], deltas["prior"] = training["prior"]["epsilon"], training["prior"]["delta"]
    return {
        "epsilon": epsilon,
        "delta": delta,
        "epsilon_spent": float(sum(spent.values())),
        "delta_spent": float(sum(deltas.values())),
        "accountant": f"{training.get('accountant', 'RDP')} (Opacus) for DP-SGD; "
        "basic sequential composition across the parts",
        "neighbouring": "one row added or removed",
        "parts": {k: {"epsilon": spent[k], "delta": deltas[k]} for k in spent},
        "training": {k: v for k, v in training.items() if k != "prior"},
        "prior": training.get("prior"),
        "marginals": marginals,
        "public": list(PUBLIC),
        "from_budget": list(FROM_BUDGET),
        "not_covered": "the quality report's scores are computed on the real rows: share the "
        "synthetic rows and the model, not the report",
    }
