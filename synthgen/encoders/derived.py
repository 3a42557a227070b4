"""Columns that follow from others, learned as what the others leave unexplained.

A decoder draws every column independently given z, which blurs an amount that follows from other
columns (telco_churn's total charges = tenure x monthly charges; monthly charges = a price per
service; a diamond's carat from its length and depth), and a classifier two-sample test finds
exactly these columns. `find_relations` looks for two kinds of relation in the training rows:
- a product: log c = a0 + sum_i a_i log p_i over positive numbers (up to MAX_PARENTS of them),
  times a factor per class of some categories (a diamond's price from its carat, cut and colour);
- a sum of per-class amounts: c = a0 + sum_j amount_j[class of q_j] over categorical columns.
A derived column's `DerivedEncoder` keeps the column's own mode code (point masses, missing) and
models the residual of the relation in place of the value; decoding writes the value back from
the decoded parents and the drawn residual, through the column's own value protection, decimals
and range. Relations are kept in the order they decode: a column after the ones it follows from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd

from synthgen.encoders.base import ColumnEncoder, DecodeContext, Outputs, _as_float, seeded_rows
from synthgen.encoders.numerical import NumericalEncoder, _restore_numeric, written
from synthgen.schema import ColumnSchema

SAMPLE_ROWS = 20_000  # rows the search reads (a seeded sample of longer tables)
MIN_DISTINCT = 50  # a derived column has at least this many distinct values (not a coded class)
APPLICABLE = 0.99  # share of a column's present values the relation must be defined on
MAX_PARENTS, TOP_PARENTS = 3, 8  # a product's numbers, tried among the 8 most correlated
MAX_CLASS_PARENTS = 3  # categories a product may add (each cutting its residual by a fifth)
PRODUCT_SD, PRODUCT_GAIN = 0.15, 5.0  # residual sd of log c at most 0.15 and 1/5 of log c's
SUM_GAIN = 10.0  # a sum's residual sd, on held-out rows, at most 1/10 of the column's own
MAX_CLASSES, MAX_INDICATORS = 64, 512  # classes of a category a relation may read; all classes
MAX_NUMBERS = 200  # numerical columns searched (the first ones in the table's order)


@dataclass
class Relation:
    """How `column` follows from numbers (`parents`, with `coefficients`) and categories
    (`classes`, with an amount per class code): `kind` "product" is
    log c = intercept + sum a_i log p_i + sum amount_j[class_j]; "sum" is
    c = intercept + sum amount_j[class_j] (categories only)."""

    column: str
    kind: str
    parents: list[str]
    intercept: float
    coefficients: list[float] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    amounts: list[list[float]] = field(default_factory=list)

    @property
    def inputs(self) -> list[str]:
        """Every column the relation reads."""
        return [*self.parents, *self.classes]

    def predict(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The relation's value (log c for a product), NaN where a parent cannot give one.
        `inputs`: the numbers' values and the categories' class codes."""
        out = np.full(len(inputs[self.inputs[0]]), self.intercept)
        with np.errstate(divide="ignore", invalid="ignore"):
            for a, p in zip(self.coefficients, self.parents, strict=True):
                out += a * np.log(_positive(np.asarray(inputs[p], dtype=np.float64)))
        for amounts, p in zip(self.amounts, self.classes, strict=True):
            codes = np.asarray(inputs[p]).astype(np.intp)
            out += np.take(np.asarray(amounts), codes, mode="clip")
        return out

    def residual(self, x: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        if self.kind == "product":  # on the log scale
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log(_positive(x)) - predicted
        return x - predicted

    def combine(self, predicted: np.ndarray, residual: np.ndarray) -> np.ndarray:
        if self.kind == "product":
            with np.errstate(over="ignore"):
                return np.exp(predicted + residual)
        return predicted + residual

    def describe(self) -> str:
        classes = ", ".join(self.classes)
        if self.kind == "sum":
            return f"{self.column} ~ {self.intercept:.4g} + an amount per class of {classes}"
        terms = [f"{p}^{a:.3g}" for a, p in zip(self.coefficients, self.parents, strict=True)]
        factor = f" x a factor per class of {classes}" if classes else ""
        return f"{self.column} ~ {np.exp(self.intercept):.4g} x {' x '.join(terms)}{factor}"

    def state(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "parents": self.parents,
            "intercept": self.intercept,
            "coefficients": self.coefficients,
            "classes": self.classes,
            "amounts": self.amounts,
        }


def _positive(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.nan)


def _finite(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), x, np.nan)


class DerivedEncoder(ColumnEncoder):
    """A numerical column learned as its relation's residual: the column's own mode code (point
    masses, missing; when it has more than one class) then the residual's block (its missing class
    marks rows the relation does not cover). Its values depend on other columns, so it encodes
    and decodes with theirs (`encode_with`, `decode_with`), which `TableTransformer` passes."""

    def __init__(
        self, col: ColumnSchema, relation: Relation, own: NumericalEncoder, settings: Mapping
    ) -> None:
        super().__init__(col)
        self.relation, self.own = relation, own
        residual_col = replace(
            col, dtype="float64", integer=False, decimals=None, object_values=None, sql_type=None
        )
        self.residual = NumericalEncoder(
            residual_col,
            settings["point_mass_share"],
            settings["n_quantiles"],
            settings["rare_threshold"],
        )

    @classmethod
    def from_settings(cls, col: ColumnSchema, settings: Mapping[str, Any]) -> DerivedEncoder:
        raise TypeError("a DerivedEncoder is made from its relation (TableTransformer)")

    @property
    def parents(self) -> list[str]:
        return self.relation.inputs

    @property
    def n_rows(self) -> int:
        return self.own.n_rows

    def _residuals(self, x: np.ndarray, parents: Mapping[str, np.ndarray]) -> np.ndarray:
        """The residual of every row whose value is continuous (not a point mass, not missing)
        and that the relation covers; NaN elsewhere."""
        r = self.relation.residual(x, self.relation.predict(parents))
        r[~np.isfinite(r) | np.isin(x, self.own._modes)] = np.nan
        return r

    def fit_with(self, s: pd.Series, parents: Mapping[str, np.ndarray]) -> DerivedEncoder:
        self.residual.fit_values(self._residuals(self.own.values(s), parents))
        return self

    def fit(self, s: pd.Series) -> DerivedEncoder:
        raise TypeError("a derived column fits with its parents: fit_with")

    @property
    def width(self) -> int:
        return int(self.own.has_mode_block) + self.residual.width

    def outputs(self) -> Outputs:
        k = int(self.own.has_mode_block)
        inner = self.residual.outputs()
        softmax = tuple(replace(p, col=p.col + k) for p in inner.softmax)
        gaussian = tuple(
            replace(p, col=p.col + k, gate_col=None if p.gate_col is None else p.gate_col + k)
            for p in inner.gaussian
        )
        if k:
            softmax = (self.own.outputs().softmax[0], *softmax)
        return Outputs(softmax, gaussian)

    def encode(self, s: pd.Series) -> np.ndarray:
        raise TypeError("a derived column encodes with its parents: encode_with")

    def encode_with(self, s: pd.Series, parents: Mapping[str, np.ndarray]) -> np.ndarray:
        x = self.own.values(s)
        out = np.empty((len(x), self.width), dtype=np.float32)
        k = int(self.own.has_mode_block)
        if k:
            out[:, 0] = self.own.mode_codes(x)
        out[:, k:] = self.residual.encode_values(self._residuals(x, parents))
        return out

    def decode(self, block: np.ndarray, ctx: DecodeContext) -> pd.Series | np.ndarray:
        raise TypeError("a derived column decodes with its parents: decode_with")

    def decode_with(
        self, block: np.ndarray, parents: Mapping[str, np.ndarray], ctx: DecodeContext
    ) -> pd.Series | np.ndarray:
        x = self._values(block, parents, ctx.exact)
        return _restore_numeric(x, self.col, self.offset)  # within its range, at its decimals

    def values_with(
        self, block: np.ndarray, parents: Mapping[str, np.ndarray], exact: bool = True
    ) -> np.ndarray:
        """Float64 values as written, less `offset`: point masses and missing values from the
        column's own code; continuous values from the parents and the drawn residual, or, where
        the relation gives none, from the drawn normal score through the column's own quantile
        map."""
        return written(self._values(block, parents, exact), self.col, self.own.offset)

    def _values(
        self, block: np.ndarray, parents: Mapping[str, np.ndarray], exact: bool
    ) -> np.ndarray:
        own = self.own
        k = int(own.has_mode_block)
        x, cont = own.decode_modes(block)
        if own.has_continuous:
            value = self._reflected(
                self.relation.combine(
                    self.relation.predict({p: v[cont] for p, v in parents.items()}),
                    self.residual.decode_values(block[cont, k:], exact),
                )
            )
            fallback = ~np.isfinite(value)
            if fallback.any():
                if self.residual.has_continuous:
                    z = block[cont, -1][fallback].astype(np.float64)
                    value[fallback] = own._from_normal(z, False)
                else:
                    value[fallback] = np.interp(0.5, own._ku, own._kx)
            x[cont] = own._protect(value)
        return x

    def _reflected(self, value: np.ndarray) -> np.ndarray:
        """`value` with what passes the column's written range reflected back into it at the end
        it passes (in log scale for a product; what passes it by more than its width: that end).
        A relation extrapolates (a diamond's price from its size passes the table's top price),
        and writing every such value as the end value piles them on one value that gives the rows
        away."""
        if not len(self.own._kx):
            return value
        low, high = float(self.own._kx[0]), float(self.own._kx[-1])
        with np.errstate(all="ignore"):
            if self.relation.kind == "product" and low > 0:
                up, down = high * high / value, low * low / value
            else:
                up, down = 2 * high - value, 2 * low - value
            # past the whole range's width beyond an end: that end
            up, down = np.where(up < low, high, up), np.where(down > high, low, down)
            out = np.where(value > high, up, np.where(value < low, down, value))
        # no finite value (no prediction, an overflow): the fallback below writes it
        return np.where(np.isfinite(value), np.clip(out, low, high), value)

    # what conditions on a range of the column read: the column's own encoding
    offset = property(lambda self: self.own.offset)
    modes = property(lambda self: self.own.modes)
    knots_x = property(lambda self: self.own.knots_x)

    def values(self, s: pd.Series) -> np.ndarray:
        return self.own.values(s)

    def surprise(self, s: pd.Series) -> np.ndarray:
        return self.own.surprise(s)

    def protection(self) -> dict[str, Any] | None:
        return self.own.protection()

    def state(self) -> dict[str, Any]:
        return {
            "relation": self.relation.state(),
            "own": self.own.state(),
            "residual": self.residual.state(),
        }

    def load(self, state: dict[str, Any]) -> DerivedEncoder:
        self.residual.load(state["residual"])
        return self

    @classmethod
    def from_state(
        cls, col: ColumnSchema, state: dict[str, Any], settings: Mapping[str, Any]
    ) -> DerivedEncoder:
        own = NumericalEncoder.from_settings(col, settings).load(state["own"])
        return cls(col, Relation(**state["relation"]), own, settings).load(state)


def find_relations(
    df: pd.DataFrame, schema: Any, encoders: Mapping[str, ColumnEncoder], seed: int = 0
) -> list[Relation]:
    """Sums, then products, found on a seeded sample of the rows, in the order they decode."""
    df = seeded_rows(df, SAMPLE_ROWS, seed)
    numbers = {  # infinities are point masses of their own (NumericalEncoder): not searched
        c.name: _finite(_as_float(df[c.name]))
        for c in schema.columns
        if c.kind == "numerical"
        and isinstance(encoders.get(c.name), NumericalEncoder)
        and not encoders[c.name].offset
    }
    numbers = dict(list(numbers.items())[:MAX_NUMBERS])
    classes: dict[str, tuple[np.ndarray, int]] = {}  # categories: class codes, number of classes
    for col in schema.columns:
        enc = encoders.get(col.name)
        if col.kind != "categorical" or enc is None or not enc.width:
            continue
        n = enc.outputs().softmax[0].n_classes
        if 1 < n <= MAX_CLASSES and sum(k for _, k in classes.values()) + n <= MAX_INDICATORS:
            classes[col.name] = (enc.encode(df[col.name])[:, 0].astype(np.int64), n)
    sums = _sums(numbers, classes)
    products = _products(numbers, classes, skip={r.column for r in sums})
    return sums + _parents_first(products)  # a sum reads categories only: it follows none


def _products(
    numbers: Mapping[str, np.ndarray],
    classes: Mapping[str, tuple[np.ndarray, int]],
    skip: set[str],
) -> list[Relation]:
    """Log-linear relations on numbers, with a factor per class of up to MAX_CLASS_PARENTS
    categories. The column with the most distinct values is derived first: a coarser one (a
    count, sizes that cluster on round values) keeps its own distribution, as a parent. A derived
    column may be another's parent (a chain: y from x, x from carat and depth), never its own
    ancestor."""
    logs = {}
    for name, x in numbers.items():
        present = x[~np.isnan(x)]
        if len(present) and (present > 0).mean() >= APPLICABLE and len(np.unique(present)) > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                logs[name] = np.log(_positive(x))
    if len(logs) < 2:
        return []
    corr = pd.DataFrame(logs).corr(min_periods=30).abs().fillna(0.0)
    distinct = {c: len(np.unique(numbers[c][~np.isnan(numbers[c])])) for c in logs}
    relations: dict[str, Relation] = {}

    def depends(a: str, b: str) -> bool:  # does a follow from b, directly or through others?
        return a in relations and any(p == b or depends(p, b) for p in relations[a].parents)

    tried: dict[tuple[str, ...], Relation | None] = {}  # a column's fit with each pool
    while True:
        best = None
        for c in sorted(logs, key=lambda c: -distinct[c]):  # the finest-grained first
            if c in relations or c in skip or distinct[c] < MIN_DISTINCT:
                continue
            ranked = corr[c].drop(c).sort_values(ascending=False).index
            pool = (c, *[p for p in ranked if not depends(p, c)][:TOP_PARENTS])
            if pool not in tried:
                tried[pool] = _product_fit(logs, c, list(pool[1:]), classes)
            best = tried[pool]
            if best is not None:
                break
        if best is None:
            return list(relations.values())
        relations[best.column] = best


def _product_fit(
    logs: Mapping[str, np.ndarray],
    column: str,
    pool: list[str],
    classes: Mapping[str, tuple[np.ndarray, int]],
) -> Relation | None:
    """log `column` on up to MAX_PARENTS numbers of `pool`, each added while it cuts the residual
    sd by 30%, then on categories, each added while it cuts it by a fifth; the relation when its
    residual sd on held-out rows passes PRODUCT_SD and PRODUCT_GAIN."""
    y, parents, best = logs[column], [], None
    present = ~np.isnan(y)
    for _ in range(MAX_PARENTS):
        trial = None
        for p in pool:
            if p in parents:
                continue
            x = np.column_stack([np.ones(len(y))] + [logs[q] for q in [*parents, p]])
            ok = np.isfinite(x).all(1) & present
            if ok.sum() < APPLICABLE * present.sum():
                continue
            coef = np.linalg.lstsq(x[ok], y[ok], rcond=None)[0]
            sd = float(np.std(y[ok] - x[ok] @ coef))
            if trial is None or sd < trial[0]:
                trial = (sd, [*parents, p], x[ok], ok)
        if trial is None or (best is not None and trial[0] > 0.7 * best[0]):
            break
        best, parents = trial, trial[1]
    if best is None:
        return None
    spread = float(np.nanstd(y))
    _, _, x, ok = best
    chosen: list[str] = []
    for _ in range(MAX_CLASS_PARENTS):
        r = y[ok] - x @ np.linalg.lstsq(x, y[ok], rcond=None)[0]
        trial = None
        for name, (codes, n) in classes.items():
            if name in chosen:
                continue
            # the sd left once each class's mean residual is taken out
            k = codes[ok]
            means = np.bincount(k, r, n) / np.maximum(np.bincount(k, None, n), 1)
            left = float(np.std(r - means[k]))
            if trial is None or left < trial[0]:
                trial = (left, name)
        if trial is None or trial[0] > 0.8 * float(np.std(r)):
            break
        chosen.append(trial[1])
        x = np.column_stack([x, _indicators(classes[trial[1]], ok)])
    fit = _held_out_fit(x, y[ok], [classes[c][1] for c in chosen])
    if fit is None:
        return None
    sd, coef, amounts = fit
    if sd >= PRODUCT_SD or sd * PRODUCT_GAIN >= spread:
        return None
    n = len(parents)
    return Relation(
        column, "product", parents, float(coef[0]), list(coef[1 : n + 1]), chosen, amounts
    )


def _indicators(category: tuple[np.ndarray, int], rows: np.ndarray) -> np.ndarray:
    codes, n = category
    return np.eye(n)[codes[rows]]


def _held_out_fit(
    x: np.ndarray, y: np.ndarray, class_sizes: list[int]
) -> tuple[float, list[float], list[list[float]]] | None:
    """Least squares of y on x, whose last columns are the indicators of categories with
    `class_sizes` classes: (residual sd on the odd rows of a fit on the even ones, the
    coefficients before the indicators from a fit on all rows, each category's amounts)."""
    fits = _held_out_fits(x, y[:, None], class_sizes)
    return None if fits is None else fits[0]


def _held_out_fits(
    x: np.ndarray, ys: np.ndarray, class_sizes: list[int]
) -> list[tuple[float, list[float], list[list[float]]]] | None:
    """`_held_out_fit` of each column of `ys` (n, m) at once."""
    if len(ys) < 4 * x.shape[1]:
        return None
    even, odd = slice(0, None, 2), slice(1, None, 2)
    sds = np.std(ys[odd] - x[odd] @ _solve(x[even], ys[even]), axis=0)
    coef = _solve(x, ys)
    plain = x.shape[1] - sum(class_sizes)
    out = []
    for j, sd in enumerate(sds):
        amounts, start = [], plain
        for n in class_sizes:
            amounts.append([float(v) for v in coef[start : start + n, j]])
            start += n
        out.append((float(sd), [float(v) for v in coef[:plain, j]], amounts))
    return out


def _solve(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Least squares by the normal equations (x is tall and at most a few hundred columns
    wide); the directions the indicators' sums make collinear are cut, leaving the shortest
    solution."""
    return np.linalg.lstsq(x.T @ x, x.T @ ys, rcond=1e-10)[0]


def _parents_first(relations: list[Relation]) -> list[Relation]:
    """The relations ordered so that a derived parent comes before the columns it is part of."""
    out: list[Relation] = []
    pending = list(relations)
    while pending:
        done = {r.column for r in out}
        waiting = {q.column for q in pending}
        ready = [r for r in pending if not (set(r.parents) & waiting) - done]
        out += ready
        pending = [r for r in pending if r not in ready]
    return out


def _sums(
    numbers: Mapping[str, np.ndarray], classes: Mapping[str, tuple[np.ndarray, int]]
) -> list[Relation]:
    """Numbers that are nearly a sum of per-class amounts of the table's categories (a price
    list), by least squares on the classes' indicators: fitted on half the sample and accepted
    when the residual's sd on the other half is at most 1/SUM_GAIN of the column's own;
    categories whose amounts vary less than that residual are dropped."""
    candidates = [
        c
        for c, y in numbers.items()
        if len(np.unique(y[~np.isnan(y)])) >= MIN_DISTINCT and np.nanstd(y) > 0
    ]
    if not classes or not candidates:
        return []
    everywhere = [c for c in candidates if not np.isnan(numbers[c]).any()]
    fits = {}
    if everywhere:  # one fit for every column no row lacks
        rows = np.ones(len(numbers[everywhere[0]]), dtype=bool)
        x, sizes = _sum_design(rows, classes, list(classes))
        found = _held_out_fits(x, np.column_stack([numbers[c] for c in everywhere]), sizes)
        fits = dict(zip(everywhere, found or [None] * len(everywhere), strict=True))
    out = []
    for c in candidates:
        y = numbers[c]
        present = ~np.isnan(y)
        spread = float(np.std(y[present]))
        chosen = list(classes)
        fit = fits[c] if c in fits else _sum_fit(y, present, classes, chosen)
        if fit is None or fit[0] * SUM_GAIN > spread:
            continue
        kept = [p for p, a in zip(chosen, fit[2], strict=True) if max(a) - min(a) >= fit[0]]
        if kept and kept != chosen:
            smaller = _sum_fit(y, present, classes, kept)
            if smaller is not None and smaller[0] * SUM_GAIN <= spread:
                chosen, fit = kept, smaller
        out.append(Relation(c, "sum", [], fit[1][0], [], chosen, fit[2]))
    return out


def _sum_design(
    rows: np.ndarray, classes: Mapping[str, tuple[np.ndarray, int]], chosen: list[str]
) -> tuple[np.ndarray, list[int]]:
    """An intercept and the chosen categories' class indicators, for `rows`."""
    x = np.column_stack(
        [np.ones(int(rows.sum()))] + [_indicators(classes[c], rows) for c in chosen]
    )
    return x, [classes[c][1] for c in chosen]


def _sum_fit(
    y: np.ndarray,
    present: np.ndarray,
    classes: Mapping[str, tuple[np.ndarray, int]],
    chosen: list[str],
) -> tuple[float, list[float], list[list[float]]] | None:
    x, sizes = _sum_design(present, classes, chosen)
    return _held_out_fit(x, y[present], sizes)
