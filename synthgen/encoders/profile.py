"""Columns that describe one hidden thing together: drawn as one profile, not column by column.

Some tables hold a group of columns that all follow from something the table does not show:
caravan's 43 columns that describe the customer's postcode area (shares of renters, of incomes,
of religions). Rows from one postcode share all of them, so the training rows hold far fewer
combinations than the columns' own spread allows (caravan: 1,734, over columns whose entropies add
up to 105 bits). Drawn column by column given z, nearly every row is a combination no area has,
and a classifier learns the combinations (C2ST AUC 0.94). `find_profiles` finds such a group, and
a `ProfileEncoder` adds one class per combination at least `rare_threshold` training rows hold (a
profile), and one for every other combination, to the matrix. A row drawn with a profile has its
group's columns written from it; a row drawn with the other class keeps their own draws, as rows
of rarer combinations did in training, so no rarer combination is copied and the drawn rows hold
profiles about as often as the training rows do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from synthgen.encoders.base import ColumnEncoder, Outputs, SoftmaxPart, _py, seeded_rows
from synthgen.encoders.lookup import _missing

KINDS = ("categorical", "numerical")
MAX_VALUES = 100  # distinct values of a column that may belong to a profile
MAX_MODE_SHARE = 0.9  # a column nearly constant says little about which group a row is in
SHARED_SHARE = 0.5  # the key drops columns until this share of rows share their combination
# a column the key determines: the key removes this share of the disagreement within groups that
# the column shuffled shows (caravan's area columns 0.97-1.0, its policy columns about 0)
EXPLAINED = 0.9
MIN_COLUMNS = 3
BATCH_DIVISOR = 16  # a key of over 32 columns drops len(key) // 16 at a time (a wide table)
MIN_KEPT_SHARE = 0.25  # rows whose own combination is kept as a profile, at least
MAX_PROFILES = 1000  # the most common combinations kept
SAMPLE_ROWS = 20_000  # rows the search reads


@dataclass
class Profile:
    """`columns` hold `values[i]` in profile i, the most common first."""

    columns: list[str]
    values: list[list[Any]]
    rows: int = 0  # training rows whose combination is a profile
    table_rows: int = 0

    @property
    def name(self) -> str:
        """The name of its class in the layout and the model's outputs."""
        return f"(profile of {self.columns[0]} and {len(self.columns) - 1} more)"

    def describe(self) -> str:
        shown = ", ".join(map(str, self.columns[:3]))
        share = self.rows / max(self.table_rows, 1)
        return (
            f"{shown}, ... ({len(self.columns)} columns) as one of {len(self.values)} profiles "
            f"({share:.0%} of the training rows)"
        )


def find_profiles(
    df: pd.DataFrame, schema: Any, encoders: Mapping[str, ColumnEncoder], k: int
) -> list[Profile]:
    """Groups of columns that a hidden key determines, with their profiles. A key starts as every
    column and drops, one at a time, the column whose loss lets most rows share their combination
    with another row, until most do (a column the others determine merges no combinations, so it
    stays); the group is every column of the key that the rest determines (EXPLAINED, on the rows
    in shared combinations), if the group's entropies add up to at least twice log2(rows):
    independent columns would then give nearly every row its own combination. Then the next
    group, over the columns left."""
    names = [
        c.name
        for c in schema.columns
        if c.kind in KINDS and encoders[c.name].modelled and encoders[c.name].width
    ]
    sample = seeded_rows(df, SAMPLE_ROWS)
    codes, bits = {}, {}
    for name in names:
        c = pd.factorize(sample[name], use_na_sentinel=False)[0].astype(np.int64)
        counts = np.bincount(c)
        if 2 <= len(counts) <= MAX_VALUES and counts.max() < MAX_MODE_SHARE * len(c):
            p = counts / len(c)
            codes[name], bits[name] = c, float(-(p * np.log2(p)).sum())
    found = []
    while len(codes) >= MIN_COLUMNS:
        group = _group(codes, sorted(codes, key=lambda n: -bits[n]))
        if len(group) < MIN_COLUMNS or sum(bits[n] for n in group) < 2 * math.log2(len(sample)):
            break
        profile = _profiles(df, [n for n in names if n in group], k)  # in the table's order
        if profile is not None:
            found.append(profile)
        codes = {n: c for n, c in codes.items() if n not in group}
    return found


def _group(codes: dict[str, np.ndarray], order: list[str]) -> list[str]:
    # a combination of columns as a sum of hashed codes: dropping a column is one subtraction
    rng = np.random.default_rng(0)
    terms = {
        n: codes[n].astype(np.uint64) * np.uint64(rng.integers(1, 1 << 62) * 2 + 1) for n in order
    }
    key, total = list(order), sum(terms.values())
    while key and _shared(total).mean() < SHARED_SHARE:
        shared = {n: _shared(total - terms[n]).mean() for n in key}
        # ties (no row shares yet): the column of most entropy first; a wide table drops 1/16
        drop = sorted(key, key=lambda n: -shared[n])[: max(1, len(key) // BATCH_DIVISOR)]
        key = [n for n in key if n not in drop]
        total = total - sum(terms[n] for n in drop)
    group = [n for n in key if _determined(codes, terms, key, n)]
    while True:  # each column follows from the rest of the group, not from a key column left out
        kept = [n for n in group if _determined(codes, terms, group, n)]
        if kept == group:
            return group
        group = kept


def _determined(
    codes: dict[str, np.ndarray], terms: dict[str, np.ndarray], names: list[str], name: str
) -> bool:
    """Whether the other columns of `names` determine `name` on the rows whose combination of
    them other rows share (at least half of SHARED_SHARE of the rows)."""
    rest = [terms[n] for n in names if n != name]
    if not rest:
        return False
    combination = pd.factorize(sum(rest))[0]
    shared = _shared(combination)
    return shared.mean() >= SHARED_SHARE / 2 and _explained(
        combination[shared], codes[name][shared]
    )


def _shared(combination: np.ndarray) -> np.ndarray:
    """Whether another row holds each row's combination."""
    return pd.Series(combination, copy=False).duplicated(keep=False).to_numpy()


def _explained(groups: np.ndarray, values: np.ndarray) -> bool:
    """Whether the groups remove EXPLAINED of the disagreement the values shuffled show."""
    chance = _agreement(groups, values[np.random.default_rng(0).permutation(len(values))])
    return chance < 1 and (_agreement(groups, values) - chance) / (1 - chance) >= EXPLAINED


def _combinations(columns: list[np.ndarray]) -> np.ndarray:
    """Each row's combination of the columns' (non-negative) codes, as one code."""
    key = np.zeros(len(columns[0]), np.int64)
    for c in columns:
        key = pd.factorize(key * (int(c.max()) + 1) + c)[0].astype(np.int64)
    return key


def _agreement(group: np.ndarray, values: np.ndarray) -> float:
    """Share of rows holding their group's most common value."""
    pair = pd.factorize(group * (int(values.max()) + 1) + values)[0]
    first = np.unique(pair, return_index=True)[1]
    held = pd.Series(np.bincount(pair)[pair[first]]).groupby(group[first]).max()
    return float(held.sum() / len(group))


def _profiles(df: pd.DataFrame, columns: list[str], k: int) -> Profile | None:
    """The combinations at least k rows hold (the MAX_PROFILES most common), or None when they
    hold fewer than MIN_KEPT_SHARE of the rows or are fewer than 2."""
    counts = df[columns].value_counts(dropna=False)
    kept = counts[counts >= max(k, 1)].iloc[:MAX_PROFILES]
    if len(kept) < 2 or kept.sum() < MIN_KEPT_SHARE * len(df):
        return None
    values = [[None if _missing(v) else _py(v) for v in row] for row in kept.index]
    return Profile(list(columns), values, int(kept.sum()), len(df))


class ProfileEncoder:
    """A profile's class in the matrix: one code column, a softmax over the profiles and "none"
    (the last class). `members` are the group's own fitted encoders, which still encode and draw
    each column; a row with a profile has their codes replaced by the profile's before decoding."""

    def __init__(self, profile: Profile, members: list[ColumnEncoder]) -> None:
        self.profile, self.members = profile, members
        self.none = len(profile.values)
        self.width = 1
        self._rows, self._index, codes = [], [], []
        for at, enc in enumerate(members):
            values = pd.Series([row[at] for row in profile.values], dtype=object)
            self._rows.append(enc.encode(values))  # (profiles, width): each profile's codes
            keys = _keys(enc, values)
            index = keys.unique()  # the column's values across the profiles
            self._index.append(index)
            codes.append(index.get_indexer(keys).astype(np.int32))
        self._kept = np.stack(codes, axis=1)  # (profiles, columns)

    def outputs(self) -> Outputs:
        return Outputs(softmax=(SoftmaxPart(0, self.none + 1, "profile"),))

    def classes(self, frame: Mapping[str, pd.Series]) -> np.ndarray:
        """Each row's profile, `none` where its combination is not one."""
        rows = [
            index.get_indexer(_keys(enc, frame[enc.col.name])).astype(np.int32)
            for enc, index in zip(self.members, self._index, strict=True)
        ]
        both = np.concatenate([self._kept, np.stack(rows, axis=1)])
        combination = _combinations(list((both + 1).T))  # -1: a value no profile holds
        at = np.full(int(combination.max()) + 1, self.none, np.int64)
        at[combination[: self.none]] = np.arange(self.none)
        return at[combination[self.none :]]

    def write(self, matrix: np.ndarray, slices: Mapping[str, slice], column: int) -> np.ndarray:
        """`matrix` with each profile row's group codes set from its profile (a copy, if any)."""
        classes = matrix[:, column].astype(np.int64)
        rows = np.flatnonzero(classes < self.none)
        if not len(rows):
            return matrix
        matrix = matrix.copy()
        for enc, encoded in zip(self.members, self._rows, strict=True):
            matrix[rows, slices[enc.col.name]] = encoded[classes[rows]]
        return matrix

    def state(self) -> dict[str, Any]:
        return asdict(self.profile)


def _keys(enc: ColumnEncoder, s: pd.Series) -> pd.Index:
    """A column's values as a profile compares them: a number as its encoder reads it (float, less
    its offset, NaN for missing or unreadable), any other value as an object, None for missing."""
    if enc.col.kind == "numerical":
        return pd.Index(enc.values(s))  # type: ignore[attr-defined]
    values = s.astype(object)
    return pd.Index(values.where(values.notna(), None), dtype=object)
