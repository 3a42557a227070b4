"""Reversible encoding of a table as a compact float32 matrix, and the layout the models read.

Each column kind has an encoder in `synthgen.encoders` (registered in `ENCODERS`); this module
places their matrix columns side by side and describes them to the models:
- categorical / text: one column holding the class code (the models one-hot it per batch);
- numerical / datetime: a *mode* code when the column has point masses or missing values, and a
  *continuous* value when some rows are not in a point mass;
- id / empty / unsupported: nothing (regenerated / written back all-missing);
- a number that follows from other columns (`derive=True`, `encoders.derived`): its mode code and
  the residual of its relation; it is encoded and decoded after the columns it follows from;
- a column another one determines (`lookups=True`, `encoders.lookup`): nothing; it is written
  from that column's decoded value, last;
- a group of columns a hidden key determines (`profiles=True`, `encoders.profile`): its columns
  as usual, and one more code column, named for the profile, holding the group's combination (its
  profile, or "none"); profile rows decode the group from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from pandas.api import types as ptypes

from synthgen.encoders import DEFAULT_RARE_PLACEHOLDER, ColumnEncoder, DecodeContext, make_encoder
from synthgen.encoders.base import _as_float
from synthgen.encoders.derived import DerivedEncoder, find_relations
from synthgen.encoders.lookup import LookupEncoder, find_lookups
from synthgen.encoders.numerical import NumericalEncoder, written
from synthgen.encoders.profile import Profile, ProfileEncoder, find_profiles
from synthgen.errors import UserError
from synthgen.runtime import in_order
from synthgen.schema import Schema

# Decoded tables keep one pandas block per column: merging same-typed columns into 2-D blocks is a
# copy that costs a large share of decoding. pandas warns about frames of over 100 blocks (a user's
# df[new] = ... on one), so wider tables are merged.
MAX_UNMERGED_COLUMNS = 100
PARALLEL_ROWS = 50_000  # tables at least this long are encoded by several threads


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
        """Width of the models' input: every discrete block one-hot but a profile's class (its
        columns say it), then the continuous values."""
        return self.out_width - sum(b.n_classes for b in self.discrete if b.role == "profile")


class TableTransformer:
    """The table's column encoders side by side: `fit(df, schema)`, `transform(df)` -> float32
    matrix, `inverse_transform(matrix)` -> df, and the `layout` the models read."""

    def __init__(
        self,
        *,
        rare_threshold: int = 5,
        max_categories: int | None = 150,
        point_mass_share: float = 0.02,
        heap_share: float = 0.0,
        n_quantiles: int = 1000,
        rare_placeholder: str = DEFAULT_RARE_PLACEHOLDER,
        derive: bool = False,
        lookups: bool = False,
        profiles: bool = False,
    ) -> None:
        if rare_threshold < 0 or (max_categories is not None and max_categories < 1):
            raise UserError("rare_threshold must be >= 0 and max_categories >= 1")
        if not 0 < point_mass_share <= 1:
            raise UserError("point_mass_share must be in (0, 1]")
        self.settings = {
            "rare_threshold": rare_threshold,
            "max_categories": max_categories,
            "point_mass_share": point_mass_share,
            "heap_share": heap_share,
            "n_quantiles": n_quantiles,
            "rare_placeholder": rare_placeholder,
            "derive": derive,
            "lookups": lookups,
            "profiles": profiles,
        }
        self.schema: Schema | None = None
        self.encoders: dict[str, ColumnEncoder] = {}  # every column, in the schema's order
        self.derived: list[str] = []  # derived columns, in the order they decode
        self.lookups: list[str] = []  # columns written from the column that determines them
        self.profiles: dict[str, ProfileEncoder] = {}  # by name: code columns after the table's

    def fit(self, df: pd.DataFrame, schema: Schema) -> TableTransformer:
        self.schema = schema
        self.encoders = {}
        for col in schema.columns:
            enc = make_encoder(col, self.settings)
            if enc.modelled:
                enc.fit(df[col.name])
            self.encoders[col.name] = enc
        self.lookups = []
        if self.settings["lookups"]:
            for lookup in find_lookups(df, schema, self.encoders):
                name, k = lookup.column, self.settings["rare_threshold"]
                own, parent = self.encoders[name], df[lookup.parent]
                enc = LookupEncoder.fitted(schema[name], own, lookup, parent, df[name], k)
                if len(enc.lookup.keys) >= 2:  # else too few parent values are kept as keys
                    self.encoders[name] = enc
                    self.lookups.append(name)
        self.profiles = {}
        if self.settings["profiles"]:
            k = self.settings["rare_threshold"]
            for profile in find_profiles(df, schema, self.encoders, k):
                members = [self.encoders[n] for n in profile.columns]
                self.profiles[profile.name] = ProfileEncoder(profile, members)
        self.derived = []
        if self.settings["derive"]:
            grouped = {n for p in self.profiles.values() for n in p.profile.columns}
            drawn = {n: e for n, e in self.encoders.items() if n not in grouped}
            for relation in find_relations(df, schema, drawn):
                name = relation.column
                enc = DerivedEncoder(schema[name], relation, self.encoders[name], self.settings)
                self.encoders[name] = enc.fit_with(df[name], self._raw_parents(df, enc))
                self.derived.append(name)
        self._build_layout()
        return self

    def profile_of(self, name: str) -> str | None:
        """The name of the profile a column belongs to (None: none)."""
        return next((p for p, e in self.profiles.items() if name in e.profile.columns), None)

    def profile_groups(self) -> list[str]:
        """The profiles, in words."""
        return [enc.profile.describe() for enc in self.profiles.values()]

    def relations(self) -> list[str]:
        """The derived columns' relations, in words."""
        return [self.encoders[name].relation.describe() for name in self.derived]

    def lookup_maps(self) -> list[str]:
        """The columns written from the column that determines them, in words."""
        return [self.encoders[name].lookup.describe() for name in self.lookups]

    def ancestors(self, name: str) -> set[str]:
        """The columns a derived or lookup column follows from, directly or through others."""
        enc = self.encoders.get(name)  # None: a profile's class, which follows from nothing
        if isinstance(enc, LookupEncoder):
            return {enc.parent} | self.ancestors(enc.parent)
        out = set()
        for p in enc.parents if isinstance(enc, DerivedEncoder) else ():
            out |= {p} | self.ancestors(p)
        return out

    def span(self, name: str) -> np.ndarray:
        """The matrix columns a column's values are decoded from: its own, and for a derived
        column those of the columns it follows from."""
        cols = set(range(self.layout.n_inputs)[self._slices[name]])
        for p in self.ancestors(name):
            cols |= set(range(self.layout.n_inputs)[self._slices[p]])
        return np.array(sorted(cols), dtype=np.int64)

    def column_values(self, name: str, matrix: np.ndarray) -> np.ndarray:
        """A numerical column's values (less its offset) as `inverse_transform(matrix,
        exact=False)` writes them, without decoding the rest of the table."""
        enc = self.encoders[name]
        block = matrix[:, self._slices[name]]
        if isinstance(enc, DerivedEncoder):
            numbers = {p: self.column_values(p, matrix) for p in enc.relation.parents}
            inputs = self._matrix_parents(enc, matrix, numbers)
            return enc.values_with(block, inputs, exact=False)
        assert isinstance(enc, NumericalEncoder), f"{name} is not a number"
        return written(enc.decode_values(block, False), enc.col, enc.offset)

    def _raw_parents(self, df: pd.DataFrame, enc: DerivedEncoder) -> dict[str, np.ndarray]:
        """What a derived column's relation reads: its numbers' values, its categories' class
        codes."""
        inputs = {p: self.encoders[p].encode(df[p])[:, 0] for p in enc.relation.classes}
        inputs.update({p: _as_float(df[p]) for p in enc.relation.parents})
        return inputs

    def _matrix_parents(
        self, enc: DerivedEncoder, matrix: np.ndarray, values: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        """The same from a matrix (class codes) and the columns decoded so far (values)."""
        inputs = {p: matrix[:, self._slices[p].start] for p in enc.relation.classes}
        inputs.update({p: _numbers(values[p]) for p in enc.relation.parents})
        return inputs

    def _build_layout(self) -> None:
        """Place the encoders' blocks side by side: every softmax block, then every Gaussian."""
        discrete, continuous = [], []
        self._slices: dict[str, slice] = {}
        col_i = 0
        for name, enc in [*self.encoders.items(), *self.profiles.items()]:
            self._slices[name] = slice(col_i, col_i + enc.width)
            parts = enc.outputs()
            discrete += [(name, col_i + p.col, p.n_classes, p.role) for p in parts.softmax]
            continuous += [
                (
                    name,
                    col_i + p.col,
                    None if p.gate_col is None else col_i + p.gate_col,
                    p.gate_code,
                )
                for p in parts.gaussian
            ]
            col_i += enc.width
        out = 0
        blocks = []
        for name, input_col, n, role in discrete:
            blocks.append(DiscreteBlock(name, input_col, out, n, role))
            out += n
        slots = [
            ContinuousSlot(name, input_col, out + i, gate_col, gate_code)
            for i, (name, input_col, gate_col, gate_code) in enumerate(continuous)
        ]
        self.layout = Layout(tuple(blocks), tuple(slots), col_i)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        assert self.schema is not None, "fit first"
        modelled = [name for name, enc in self.encoders.items() if enc.modelled]
        missing = [c for c in modelled if c not in df.columns]
        if missing:
            raise UserError(
                f"table lacks columns the model was trained on: {', '.join(map(str, missing))}"
            )
        out = np.empty((len(df), self.layout.n_inputs), dtype=np.float32)
        columns = {name: df[name] for name in modelled}  # pandas' column cache: one thread

        def encode(name: str) -> None:
            out[:, self._slices[name]] = self.encoders[name].encode(columns[name])

        # columns are independent, and NumPy's work releases the GIL: a large table's columns
        # are encoded by as many threads as torch may use
        plain = [n for n in modelled if n not in self.derived and n not in self.lookups]
        threads = min(torch.get_num_threads(), len(plain)) if len(df) >= PARALLEL_ROWS else 1
        for _ in in_order(encode, plain, threads):
            pass
        for name, profile in self.profiles.items():  # from every column of the profile
            out[:, self._slices[name].start] = profile.classes(columns)
        for name in self.derived:  # their parents' codes are in `out` now
            enc = self.encoders[name]
            parents = self._matrix_parents(enc, out, columns)
            out[:, self._slices[name]] = enc.encode_with(columns[name], parents)
        return out

    def inverse_transform(
        self,
        matrix: np.ndarray,
        *,
        rng: np.random.Generator | None = None,
        row_offset: int = 0,
        id_seed: int = 0,
        exact: bool = True,
    ) -> pd.DataFrame:
        """Decode a matrix (from `transform` or from a model) to a table with the input's columns
        and dtypes.

        `row_offset` numbers the rows for new ids, so batches decoded apart still get unique ids.
        `exact=False` skips snapping values to the knot within float32 resolution (needed to give
        back encoded data exactly, not for drawn values): faster sampling.
        """
        assert self.schema is not None, "fit first"
        ctx = DecodeContext(
            n_rows=len(matrix),
            rng=rng or np.random.default_rng(0),
            row_offset=row_offset,
            id_seed=id_seed,
            exact=exact,
        )
        for name, profile in self.profiles.items():  # a profile's columns from its class
            matrix = profile.write(matrix, self._slices, self._slices[name].start)
        later = {*self.derived, *self.lookups}
        data = {
            name: enc.decode(matrix[:, self._slices[name]], ctx)
            for name, enc in self.encoders.items()
            if name not in later
        }
        for name in self.derived:  # after their parents
            enc = self.encoders[name]
            parents = self._matrix_parents(enc, matrix, data)
            data[name] = enc.decode_with(matrix[:, self._slices[name]], parents, ctx)
        for name in self.lookups:  # from the decoded column that determines them
            data[name] = self.encoders[name].decode_from(data[self.encoders[name].parent], ctx)
        return pd.DataFrame(data, columns=self.schema.names, copy=len(data) > MAX_UNMERGED_COLUMNS)

    # -- persistence: plain JSON, no pickles
    def state(self) -> dict[str, Any]:
        assert self.schema is not None
        return {
            "settings": self.settings,
            "schema": self.schema.to_dict(),
            "encoders": {name: enc.state() for name, enc in self.encoders.items() if enc.modelled},
            "derived": self.derived,
            "lookups": self.lookups,
            "profiles": [enc.state() for enc in self.profiles.values()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TableTransformer:
        tt = cls(**state["settings"])
        tt.schema = Schema.from_dict(state["schema"])
        tt.derived = list(state.get("derived", []))  # saved before derived columns: none
        tt.lookups = list(state.get("lookups", []))  # saved before lookups: none
        for col in tt.schema.columns:
            saved = state["encoders"].get(col.name)
            if col.name in tt.lookups:
                own = make_encoder(col, tt.settings)
                tt.encoders[col.name] = LookupEncoder.from_state(col, saved, own)
                continue
            if col.name in tt.derived:
                tt.encoders[col.name] = DerivedEncoder.from_state(col, saved, tt.settings)
                continue
            enc = make_encoder(col, tt.settings)
            tt.encoders[col.name] = enc.load(saved) if enc.modelled else enc
        for saved in state.get("profiles", []):  # saved before profiles: none
            profile = Profile(**saved)
            members = [tt.encoders[n] for n in profile.columns]
            tt.profiles[profile.name] = ProfileEncoder(profile, members)
        tt._build_layout()
        return tt

    def arrow_types(self) -> dict[str, Any]:
        """Arrow types of the columns whose values do not tell them: decimals, wide enough for the
        column's range at its scale (a batch of rows that happens to hold only small values would
        make them too narrow)."""
        import pyarrow as pa

        types = {}
        for col in self.schema.columns:
            if col.object_values == "decimal" and col.min is not None:
                scale = col.decimals or 0
                digits = len(str(int(max(abs(col.min), abs(col.max))))) + scale
                types[col.name] = pa.decimal128(min(max(digits, scale + 1), 38), scale)
        return types

    def protection_summary(self) -> dict[str, dict[str, Any]]:
        """Per column: what value protection keeps from the output (rare categories pooled, rare
        values at a number's ends replaced), for the report."""
        out: dict[str, dict[str, Any]] = {}
        for name, enc in self.encoders.items():
            pooled, ends = enc.pooling(), enc.protection()
            if pooled and pooled["rare_values"]:
                out[name] = {"rare_categories": pooled["rare_values"], "rows": pooled["rare_rows"]}
            elif ends:
                out[name] = {
                    "rare_end_values": ends["values"],
                    "rows": ends["rows"],
                    "lowest_written": ends["lowest_written"],
                    "highest_written": ends["highest_written"],
                }
        return out

    def heap_summary(self) -> dict[str, dict[str, float]]:
        """Per number with heaps: how many values, and the share of its continuous values held."""
        out = {}
        for name, enc in self.encoders.items():
            heaps = getattr(enc, "heaps", None)
            if heaps:
                rows = sum(high - low for _, low, high in heaps)
                out[name] = {"values": len(heaps), "share": round(rows, 4)}
        return out

    def pooling_summary(self) -> dict[str, dict[str, int]]:
        """Per categorical column: values and rows pooled as rare, values pooled as overflow."""
        pooled = {name: enc.pooling() for name, enc in self.encoders.items()}
        return {name: summary for name, summary in pooled.items() if summary}


def _numbers(values: Any) -> np.ndarray:
    """A decoded numerical column as float64 (NaN for missing)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    return _as_float(pd.Series(values))


def column_differences(
    original: pd.DataFrame, decoded: pd.DataFrame, schema: Schema
) -> dict[str, str]:
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
            x = a.to_numpy(np.float64, na_value=np.nan)[~na_a]
            y = b.to_numpy(np.float64, na_value=np.nan)[~na_a]
            tol = 0.5 * 10.0**-col.decimals if col.decimals is not None else 0.0
            bad = ~np.isclose(x, y, rtol=1e-12, atol=tol)
        else:
            bad = a[~na_a].to_numpy() != b[~na_a].to_numpy()
        if np.any(bad):
            first = int(np.argmax(bad))
            problems[col.name] = (
                f"{int(np.sum(bad))} values differ, e.g. "
                f"{a[~na_a].iloc[first]!r} -> {b[~na_a].iloc[first]!r}"
            )
    return problems


def changed_cells(original: pd.DataFrame, decoded: pd.DataFrame, schema: Schema) -> int:
    """How many cells (ids excluded) differ: what rare-category pooling and the category cap
    change."""
    total = 0
    for col in schema.columns:
        if col.kind in ("id", "empty"):
            continue
        a = original[col.name].reset_index(drop=True).astype(object)
        b = decoded[col.name].reset_index(drop=True).astype(object)
        same = (a == b) | (a.isna() & b.isna())
        total += int((~same).sum())
    return total
