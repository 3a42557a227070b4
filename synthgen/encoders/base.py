"""The interface every column encoder implements, and the dtype helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd

from synthgen.schema import ColumnSchema


@dataclass(frozen=True)
class DecodeContext:
    """What decoding a block of rows needs besides the matrix."""

    n_rows: int
    rng: np.random.Generator  # draws within a pooled class ("other" categories)
    row_offset: int = 0  # global number of the first row: new ids stay unique across batches
    id_seed: int = 0
    exact: bool = True  # snap decoded values to the nearest knot within float32 resolution


@dataclass(frozen=True)
class SoftmaxPart:
    """A class code the models predict with a softmax; `col` is relative to the encoder's block."""

    col: int
    n_classes: int
    role: str  # "category" or "mode" (point masses / missing / continuous of a numerical column)


@dataclass(frozen=True)
class GaussianPart:
    """A continuous value the models predict with a Gaussian; positions relative to the block."""

    col: int
    gate_col: int | None  # the mode code that says whether this value is used
    gate_code: int | None  # the mode code meaning "continuous"


@dataclass(frozen=True)
class Outputs:
    """An encoder's matrix columns, as the layout describes them to the models."""

    softmax: tuple[SoftmaxPart, ...] = ()
    gaussian: tuple[GaussianPart, ...] = ()


class ColumnEncoder(ABC):
    """One column kind: fit on a Series, encode it to matrix columns, decode them back.

    State is plain JSON. Encoders with `modelled = False` read no data: they are rebuilt from the
    schema alone, have no matrix columns and save no state.
    """

    modelled: ClassVar[bool] = True

    def __init__(self, col: ColumnSchema) -> None:
        self.col = col

    @classmethod
    @abstractmethod
    def from_settings(cls, col: ColumnSchema, settings: Mapping[str, Any]) -> ColumnEncoder:
        """An unfitted encoder for `col` with the transformer's settings."""

    @abstractmethod
    def fit(self, s: pd.Series) -> ColumnEncoder:
        """Learn the encoding from the column's values."""

    @property
    @abstractmethod
    def width(self) -> int:
        """Number of matrix columns."""

    @abstractmethod
    def encode(self, s: pd.Series) -> np.ndarray:
        """The column as a float32 array of shape (len(s), width)."""

    @abstractmethod
    def decode(self, block: np.ndarray, ctx: DecodeContext) -> pd.Series | np.ndarray:
        """The column's values, in its dtype, from its (n_rows, width) block of the matrix."""

    @abstractmethod
    def outputs(self) -> Outputs:
        """The softmax and Gaussian parts of the encoder's block."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """What `load` needs to rebuild the fitted encoder, as plain JSON."""

    @abstractmethod
    def load(self, state: dict[str, Any]) -> ColumnEncoder:
        """Restore a fitted encoder from `state()`."""

    def surprise(self, s: pd.Series) -> np.ndarray:
        """Nats to add to each value's negative log-likelihood for what the encoding cannot show:
        a category never seen, a number past the training range, a missing value in a column that
        had none. Anomaly scores read it; 0 where the encoding is faithful."""
        return np.zeros(len(s))

    def pooling(self) -> dict[str, int] | None:
        """Values pooled for privacy or the category cap (None when the encoder pools nothing)."""
        return None

    def protection(self) -> dict[str, Any] | None:
        """Rare values at a number's or a date's ends that are never written out (None: none)."""
        return None


def unseen_nats(n_rows: int) -> float:
    """Surprise of a value none of `n_rows` training rows held: -log of 1 / (n_rows + 1), the rule
    of succession's estimate of its probability."""
    return float(np.log1p(n_rows))


class SchemaOnlyEncoder(ColumnEncoder):
    """A column no model learns: no matrix columns, no state; `decode` needs only the schema."""

    modelled: ClassVar[bool] = False

    @classmethod
    def from_settings(cls, col: ColumnSchema, settings: Mapping[str, Any]) -> SchemaOnlyEncoder:
        return cls(col)

    def fit(self, s: pd.Series) -> SchemaOnlyEncoder:
        return self

    @property
    def width(self) -> int:
        return 0

    def encode(self, s: pd.Series) -> np.ndarray:
        return np.zeros((len(s), 0), dtype=np.float32)

    def outputs(self) -> Outputs:
        return Outputs()

    def state(self) -> dict[str, Any]:
        return {}

    def load(self, state: dict[str, Any]) -> SchemaOnlyEncoder:
        return self


def _py(value: Any) -> Any:
    """A numpy scalar as the Python value (for JSON state)."""
    return value.item() if isinstance(value, np.generic) else value


def seeded_rows(df: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """At most `rows` of a table's rows, drawn with `seed`, in their order (the whole table when it
    has no more): what the searches for lookups, profiles and derived columns read."""
    if len(df) <= rows:
        return df
    return df.iloc[np.sort(np.random.default_rng(seed).choice(len(df), rows, replace=False))]


def _as_float(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _nullable(dtype: str) -> str:
    """The pandas dtype that holds the same values plus missing ones (int64 -> Int64,
    bool -> boolean)."""
    if dtype.startswith(("int", "uint")):
        return "UInt" + dtype[4:] if dtype.startswith("uint") else "Int" + dtype[3:]
    return {"bool": "boolean"}.get(dtype, dtype)


def _is_integer_dtype(dtype: str) -> bool:
    return dtype.startswith(("int", "Int", "uint", "UInt"))


def _restore_dtype(s: pd.Series, col: ColumnSchema, missing: np.ndarray | None = None) -> pd.Series:
    """`s` in the column's dtype; its nullable counterpart where `missing` marks missing values."""
    if missing is not None and missing.any():
        dtype = _nullable(col.dtype)
        if dtype != col.dtype or dtype[:1].isupper() or dtype == "boolean":
            return s.astype(object).mask(missing, None).astype(dtype)
    return s.astype(col.dtype)
