"""Categorical and text columns: one matrix column holding the class code.

The models one-hot the code per batch, so a wide category costs one float per row here.

Privacy: categories seen fewer than `rare_threshold` times are never written out verbatim: they
share one class that decodes to `rare_placeholder` (for text-like columns; for number- or
bool-valued categories, the most frequent category). Categories past the `max_categories` most
frequent ones (but not rare) share an "other" class that decodes to one of them at its training
frequency.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd

from synthgen.encoders.base import (
    ColumnEncoder,
    DecodeContext,
    Outputs,
    SoftmaxPart,
    _nullable,
    _py,
    unseen_nats,
)
from synthgen.schema import ColumnSchema

log = logging.getLogger("synthgen")

DEFAULT_RARE_PLACEHOLDER = "(rare)"
IDENTITY_SAMPLE = 4096  # values read to decide whether a text column repeats its Python objects


class CategoricalEncoder(ColumnEncoder):
    """Class codes for a categorical or text column: kept categories, then (rare), (other),
    (missing)."""

    def __init__(
        self, col: ColumnSchema, rare_threshold: int, max_categories: int | None, placeholder: str
    ) -> None:
        super().__init__(col)
        self.rare_threshold = rare_threshold
        self.max_categories = max_categories
        self.placeholder = placeholder

    @classmethod
    def from_settings(cls, col: ColumnSchema, settings: Mapping[str, Any]) -> CategoricalEncoder:
        return cls(
            col,
            settings["rare_threshold"],
            settings["max_categories"],
            settings["rare_placeholder"],
        )

    def fit(self, s: pd.Series) -> CategoricalEncoder:
        counts = s.value_counts(dropna=True, sort=True)
        counts = counts[counts > 0]  # unused pandas categories
        rare = counts[counts < self.rare_threshold] if self.rare_threshold > 1 else counts.iloc[:0]
        common = counts.drop(rare.index)
        cap = self.max_categories if self.max_categories else len(common)
        kept, overflow = common.iloc[:cap], common.iloc[cap:]
        if len(kept) == 0 and len(rare) and not len(overflow):
            log.warning(
                "column %r: every value is rarer than %d rows; all are pooled",
                self.col.name,
                self.rare_threshold,
            )
        self.categories = [_py(v) for v in kept.index]
        self.n_rare_values = int(len(rare))
        self.n_rare_rows = int(rare.sum())
        self.overflow_values = [_py(v) for v in overflow.index]
        self.overflow_p = (overflow / overflow.sum()).tolist() if len(overflow) else []
        self.has_missing = bool(s.isna().any())
        self.n_rows = len(s)
        self.mode_value = self.categories[0] if self.categories else None
        # a pandas category dtype comes back with its categories in order, less the rare ones
        # (privacy)
        is_category = isinstance(s.dtype, pd.CategoricalDtype)
        rare_set = set(map(_py, rare.index))
        self.dtype_categories = (
            [_py(c) for c in s.cat.categories if _py(c) not in rare_set] if is_category else None
        )
        self.ordered = bool(s.cat.ordered) if is_category else False
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
        self.missing_code = (
            k + (self.rare_code is not None) + (self.other_code is not None)
            if self.has_missing
            else None
        )
        self.n_classes = k + sum(
            c is not None for c in (self.rare_code, self.other_code, self.missing_code)
        )
        self._overflow_set = pd.Index(self.overflow_values)
        self._kept = pd.Index(self.categories, dtype=object)

    @property
    def width(self) -> int:
        return 1

    def outputs(self) -> Outputs:
        return Outputs(softmax=(SoftmaxPart(0, self.n_classes, "category"),))

    def encode(self, s: pd.Series) -> np.ndarray:
        codes = self._kept_codes(s)
        # missing, rare, overflow or never seen: usually few rows, so only they are looked at again
        negative = np.flatnonzero(codes < 0)
        if len(negative):
            rest = s.iloc[negative]
            missing = rest.isna().to_numpy()
            codes[negative[missing]] = self.missing_code if self.has_missing else 0
            unknown = negative[~missing]
            if len(unknown):
                in_overflow = np.zeros(len(unknown), dtype=bool)
                if self.other_code is not None:
                    in_overflow = pd.Index(rest[~missing].astype(object)).isin(self._overflow_set)
                # rare at fit time, or never seen: the rare class (or the most frequent one when
                # nothing was rare)
                rare = self.rare_code if self.rare_code is not None else 0
                codes[unknown] = np.where(in_overflow, self.other_code or 0, rare)
        return codes.astype(np.float32)[:, None]

    def _kept_codes(self, s: pd.Series) -> np.ndarray:
        """Each value's code among the kept categories, -1 for any other value or a missing one.
        A pandas category column is mapped through its categories, not value by value."""
        if isinstance(s.dtype, pd.CategoricalDtype):
            lookup = self._kept.get_indexer(s.cat.categories.astype(object))
            return np.append(lookup, -1)[s.cat.codes.to_numpy()].astype(np.int64)
        if s.dtype == object:
            return _codes_by_identity(s.to_numpy(), self._kept)
        return self._kept.get_indexer(s).astype(np.int64, copy=False)  # pd.Categorical's lookup

    def surprise(self, s: pd.Series) -> np.ndarray:
        values = pd.Index(s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s)
        present = s.notna().to_numpy()
        known = values.isin(pd.Index(self.categories, dtype=object)) | values.isin(
            self._overflow_set
        )
        unseen = present & ~known
        out = np.zeros(len(s))
        n_rows = getattr(self, "n_rows", 0)  # saved before it was kept: no surprise
        # the rare class holds the unseen value: its probability is shared with the rare values
        out[unseen] = (
            np.log1p(self.n_rare_values) if self.rare_code is not None else unseen_nats(n_rows)
        )
        if not self.has_missing:
            out[~present] = unseen_nats(n_rows)
        return out

    def decode(self, block: np.ndarray, ctx: DecodeContext) -> pd.Series:
        values, missing = self.decode_values(block, ctx.rng)
        if values.dtype != object:  # plain numbers, nothing missing
            return pd.Series(values)
        if missing.any():
            values = values.copy()
            values[missing] = None
        if self.col.dtype == "category":
            return pd.Series(
                pd.Categorical(values, categories=self.output_categories(), ordered=self.ordered)
            )
        s = pd.Series(values, dtype=object)
        dtype = _nullable(self.col.dtype) if missing.any() else self.col.dtype
        return s if dtype == "object" else s.astype(dtype)

    def decode_values(
        self, block: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (values as an object array, or plain numbers when none can be missing;
        missing mask)."""
        codes = block[:, 0].astype(np.int64)
        table = np.empty(max(self.n_classes, 1), dtype=object)
        table[: len(self.categories)] = self.categories
        if self.rare_code is not None:
            table[self.rare_code] = self.placeholder if self._text_like() else self.mode_value
        if self._plain_numbers() and self.missing_code is None and None not in table:
            # numbers as numbers: no per-value object conversion later
            table = table.astype(self.col.dtype)
        values = table[codes]
        if self.other_code is not None:
            at = np.flatnonzero(codes == self.other_code)
            if len(at):
                pick = rng.choice(len(self.overflow_values), size=len(at), p=self.overflow_p)
                values[at] = np.asarray(self.overflow_values, dtype=values.dtype)[pick]
        if self.missing_code is not None:
            missing = codes == self.missing_code
        else:
            missing = np.zeros(len(codes), bool)
        return values, missing

    def _plain_numbers(self) -> bool:
        """Whether the column's dtype is a plain numpy number or bool (not nullable, not object)."""
        return self.col.dtype.startswith(("int", "uint", "float")) or self.col.dtype == "bool"

    def _text_like(self) -> bool:
        if self.dtype_categories is not None:
            return all(isinstance(c, str) for c in self.dtype_categories)
        return not (
            self.col.dtype.startswith(("int", "Int", "uint", "UInt", "float", "Float"))
            or self.col.dtype in ("bool", "boolean")
        )

    def pooling(self) -> dict[str, int] | None:
        if not (self.n_rare_values or self.overflow_values):
            return None
        return {
            "rare_values": self.n_rare_values,
            "rare_rows": self.n_rare_rows,
            "overflow_values": len(self.overflow_values),
        }

    def state(self) -> dict[str, Any]:
        return {
            "categories": self.categories,
            "n_rare_values": self.n_rare_values,
            "n_rare_rows": self.n_rare_rows,
            "overflow_values": self.overflow_values,
            "overflow_p": self.overflow_p,
            "has_missing": self.has_missing,
            "n_rows": self.n_rows,
            "mode_value": self.mode_value,
            "dtype_categories": self.dtype_categories,
            "ordered": self.ordered,
        }

    def load(self, state: dict[str, Any]) -> CategoricalEncoder:
        self.__dict__.update(state)
        self._build()
        return self


def _codes_by_identity(values: np.ndarray, kept: pd.Index) -> np.ndarray:
    """`kept.get_indexer(values)` of an object array. Where its values repeat a few Python objects
    (as pandas' readers and concatenations give), their addresses are factorized as integers and
    one value per address is looked up: 2-4x faster, and mostly outside the GIL. The same address
    is the same object, since `values` holds every one of them while this runs."""
    values = np.ascontiguousarray(values)
    addresses = np.frombuffer(values, dtype=np.intp)
    if len(np.unique(addresses[:IDENTITY_SAMPLE])) * 16 > min(len(values), IDENTITY_SAMPLE):
        return kept.get_indexer(values).astype(np.int64, copy=False)
    codes, uniques = pd.factorize(addresses)
    if len(uniques) * 16 > len(values):
        return kept.get_indexer(values).astype(np.int64, copy=False)
    first = np.empty(len(uniques), dtype=np.intp)  # each address's first row
    first[codes[::-1]] = np.arange(len(values) - 1, -1, -1)
    return kept.get_indexer(values[first]).astype(np.int64)[codes]
