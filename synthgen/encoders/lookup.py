"""Columns that another column determines: written from it, never drawn.

Some columns are a function of another one in every training row: adult's education-num of its
education, caravan's customer main type of its subtype, attrition's performance rating of its salary
rise. The decoder draws every column independently given z, so it breaks such a map now and then
(3.9% of the default VAE's adult rows, 18% of caravan's), and a classifier spots those rows at once.
`find_lookups` finds these maps (exact on every row, and the determining column has at least
MIN_ROWS_PER_KEY rows per value), and a `LookupEncoder` writes the column from the decoded value
of the column that determines it: the column has no block in the matrix and no output in the
models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from synthgen.encoders.base import (
    ColumnEncoder,
    DecodeContext,
    Outputs,
    _py,
    seeded_rows,
    unseen_nats,
)
from synthgen.schema import ColumnSchema

KINDS = ("categorical", "numerical")  # columns that may determine or be determined
MAX_KEYS = 1000  # distinct values of a determining column
MIN_ROWS_PER_KEY = 20  # rows per distinct value of a determining column, on average
SAMPLE_ROWS = 20_000  # rows a map is first tried on (every row confirms it)


@dataclass
class Lookup:
    """`column` is `values[i]` wherever `parent` is `keys[i]`."""

    column: str
    parent: str
    keys: list[Any]
    values: list[Any]

    def describe(self) -> str:
        return f"{self.column} follows from {self.parent} ({len(self.keys)} values)"


def find_lookups(
    df: pd.DataFrame, schema: Any, encoders: Mapping[str, ColumnEncoder]
) -> list[Lookup]:
    """The columns another column determines on every training row. Each column is determined
    by at most one other, which is itself drawn (no chains); categorical parents come first, then
    those with the fewest values, so that a one-to-one pair keeps its category drawn."""
    names = [
        c.name
        for c in schema.columns
        if c.kind in KINDS and encoders[c.name].modelled and encoders[c.name].width
    ]
    if len(df) < 2 * MIN_ROWS_PER_KEY or len(names) < 2:
        return []
    sample = seeded_rows(df, SAMPLE_ROWS)
    codes = {name: _codes(sample[name]) for name in names}
    sizes = {name: int(c.max()) + 1 for name, c in codes.items()}
    limit = min(MAX_KEYS, len(df) // MIN_ROWS_PER_KEY)
    pairs = []
    for parent in names:
        if not 2 <= sizes[parent] <= limit:
            continue
        for child in names:
            if child == parent or not 2 <= sizes[child] <= sizes[parent]:
                continue
            if _determines(codes[parent], codes[child]) and (
                sample is df or _determines(_codes(df[parent]), _codes(df[child]))
            ):  # the sample's map, confirmed on every row
                categorical = schema[parent].kind == "categorical"
                pairs.append((not categorical, sizes[parent], names.index(child), parent, child))
    found: list[Lookup] = []
    parents: set[str] = set()
    children: set[str] = set()
    for *_, parent, child in sorted(pairs):
        if child in children or child in parents or parent in children:
            continue
        groups = df.groupby(df[parent], dropna=False, sort=True)[child].first()
        keys = [None if _missing(k) else _py(k) for k in groups.index]
        values = [None if _missing(v) else _py(v) for v in groups.to_numpy()]
        found.append(Lookup(child, parent, keys, values))
        parents.add(parent)
        children.add(child)
    return found


def _codes(s: pd.Series) -> np.ndarray:
    """Value codes 0..k-1, a missing value counting as a value."""
    return pd.factorize(s, use_na_sentinel=False)[0].astype(np.int64)


def _determines(parent: np.ndarray, child: np.ndarray) -> bool:
    """Do `parent`'s codes determine `child`'s on every row: as many (parent, child) pairs as
    parent values?"""
    pairs = parent * (int(child.max()) + 1) + child
    return len(np.unique(pairs)) == int(parent.max()) + 1


def _missing(v: Any) -> bool:
    return v is None or (not isinstance(v, str) and bool(pd.isna(v)))


class LookupEncoder(ColumnEncoder):
    """A column written from the decoded value of the column that determines it (`parent`).
    `own` is the column's own fitted encoder: the lookup decodes through it (dtype, pooling,
    range), from each key's encoded row. A parent value held by fewer than `min_rows` training
    rows is not kept as a key (it would be one person's value); it, and any value the map does
    not know, gives the column's most common value."""

    def __init__(
        self, col: ColumnSchema, own: ColumnEncoder, lookup: Lookup, fallback: Any = None
    ) -> None:
        super().__init__(col)
        self.own, self.lookup, self.fallback = own, lookup, fallback
        self._build()

    @classmethod
    def from_settings(cls, col: ColumnSchema, settings: Mapping[str, Any]) -> LookupEncoder:
        raise TypeError("a LookupEncoder is made from its lookup (TableTransformer)")

    @classmethod
    def fitted(
        cls,
        col: ColumnSchema,
        own: ColumnEncoder,
        lookup: Lookup,
        parent: pd.Series,
        column: pd.Series,
        k: int,
    ) -> LookupEncoder:
        """Keep the keys at least `k` training rows hold; the fallback is the column's most
        common value."""
        counts = parent.value_counts(dropna=False)
        held = {None if _missing(v) else _py(v): int(c) for v, c in counts.items()}
        kept = [i for i, key in enumerate(lookup.keys) if held.get(key, 0) >= max(k, 1)]
        values = [lookup.values[i] for i in kept]
        common = column.value_counts(dropna=False).index[0]
        lookup = Lookup(lookup.column, lookup.parent, [lookup.keys[i] for i in kept], values)
        return cls(col, own, lookup, None if _missing(common) else _py(common))

    @property
    def parent(self) -> str:
        return self.lookup.parent

    def _build(self) -> None:
        table = pd.Series(self._table_values())
        if self.col.kind == "numerical":  # what its own encoder reads: float, NaN for missing
            table = table.astype(np.float64)
        self._rows = self.own.encode(table)  # (keys + 1, width): each key's row, the fallback's
        self._at = {key: i for i, key in enumerate(self.lookup.keys)}

    def _positions(self, parent: Any) -> np.ndarray:
        """Each parent value's row in the map; unknown values get the fallback's. Only the
        distinct values are looked up (a million rows hold a few dozen)."""
        codes, uniques = pd.factorize(pd.Series(parent, copy=False), use_na_sentinel=True)
        fallback = len(self.lookup.keys)
        at = np.array([self._at.get(_py(u), fallback) for u in uniques] + [fallback], np.int64)
        at[-1] = self._at.get(None, fallback)  # code -1: missing
        return at[codes]

    def fit(self, s: pd.Series) -> LookupEncoder:
        raise TypeError("a lookup column is fitted from its parent (LookupEncoder.fitted)")

    @property
    def width(self) -> int:
        return 0

    def outputs(self) -> Outputs:
        return Outputs()

    def encode(self, s: pd.Series) -> np.ndarray:
        return np.zeros((len(s), 0), dtype=np.float32)

    def decode(self, block: np.ndarray, ctx: DecodeContext) -> pd.Series | np.ndarray:
        raise TypeError("a lookup column decodes from its parent: decode_from")

    def decode_from(self, parent: Any, ctx: DecodeContext) -> pd.Series | np.ndarray:
        """The column's values from its parent's decoded values."""
        return self.own.decode(self._rows[self._positions(parent)], ctx)

    def surprise_with(self, s: pd.Series, parent: pd.Series) -> np.ndarray:
        """Nats for a value the map does not give for its parent's value (none elsewhere)."""
        expected = pd.Series(self._table_values()[self._positions(parent)], index=s.index)
        same = (s.astype(object) == expected) | (s.isna() & expected.isna())
        return np.where(same.to_numpy(), 0.0, unseen_nats(getattr(self.own, "n_rows", 0)))

    def _table_values(self) -> np.ndarray:
        return np.asarray([*self.lookup.values, self.fallback], dtype=object)

    def keys_for(self, wanted: Any) -> list[Any]:
        """The parent values whose rows hold a value `wanted(value)` accepts."""
        return [k for k, v in zip(self.lookup.keys, self.lookup.values, strict=True) if wanted(v)]

    def pooling(self) -> dict[str, int] | None:
        return self.own.pooling()

    def protection(self) -> dict[str, Any] | None:
        return self.own.protection()

    def state(self) -> dict[str, Any]:
        return {"lookup": asdict(self.lookup), "fallback": self.fallback, "own": self.own.state()}

    def load(self, state: dict[str, Any]) -> LookupEncoder:
        self.own.load(state["own"])
        self.lookup, self.fallback = Lookup(**state["lookup"]), state["fallback"]
        self._build()
        return self

    @classmethod
    def from_state(
        cls, col: ColumnSchema, state: dict[str, Any], own: ColumnEncoder
    ) -> LookupEncoder:
        return cls(col, own.load(state["own"]), Lookup(**state["lookup"]), state["fallback"])
