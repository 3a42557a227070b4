"""Decide what every column is (and say why), in a form that reads and writes SDV's single-table
metadata.

Kinds:
- numerical: numbers to model as a distribution (min/max, integer flag and decimal places recorded).
- categorical: strings, booleans, pandas categories and low-cardinality integers such as 0/1 flags.
- datetime: datetime dtypes, and text that parses as dates (the text format is kept to write them
  back).
- id: unique per row; never learned, regenerated in the same format.
- text: high-cardinality free text (names, titles); only values common enough to be safe are
  learned.
- empty: every cell missing; not learned, written back as an all-missing column of the same dtype.
- unsupported: values synthgen cannot model (lists, structs, maps, bytes); not learned, written back
  all-missing, with a warning.

Numbers: infinities are point masses of their own (see transform.NumericalEncoder); min, max and
decimal places describe the finite values. Decimal objects (Parquet decimal columns) are numbers
written back as Decimals with the same scale.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from synthgen.errors import UserError

log = logging.getLogger("synthgen")

KINDS = ("numerical", "categorical", "datetime", "id", "text", "empty", "unsupported")
# kinds no model learns: regenerated, or written back all-missing
NOT_MODELLED = ("id", "empty", "unsupported")
NESTED_TYPES = (list, tuple, dict, set, np.ndarray, bytes, bytearray)
# sdtype (SDV metadata) -> synthgen kind. `text` and `unknown` are accepted for free-text columns.
SDTYPE_TO_KIND = {
    "numerical": "numerical",
    "categorical": "categorical",
    "boolean": "categorical",
    "datetime": "datetime",
    "id": "id",
    "text": "text",
    "unknown": "text",
}
METADATA_SPEC_VERSION = "SINGLE_TABLE_V1"

# integer columns with at most this many values are categories (0/1 flags, 1-5 codes)
FLAG_MAX_LEVELS = 5
# string columns where over half the rows hold distinct values are free text
TEXT_UNIQUE_SHARE = 0.5
ID_NAME = re.compile(r"(^|[_\W])(id|key|uuid|guid)$|^id[_\W]|Id$|ID$", re.IGNORECASE)
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


@dataclass
class ColumnSchema:
    name: str
    kind: str
    dtype: str
    reason: str
    missing_share: float = 0.0
    source: str = "inferred"  # or "metadata" when the user's metadata file decided
    sdtype: str | None = None
    # numerical / datetime
    integer: bool = False
    # decimal places the data was written with (None: full float precision)
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    # categorical / text
    n_categories: int | None = None
    # datetime
    datetime_format: str | None = None  # strftime format when the column is text
    timezone: str | None = None
    # id
    id_format: dict[str, Any] | None = None
    # what the values of an object column are when not text:
    # "decimal" (decimal.Decimal), "date" (datetime.date)
    object_values: str | None = None
    # read from a database: the catalogue's type (numeric(10,2), a mood enum) and NOT NULL
    sql_type: str | None = None
    not_null: bool | None = None

    def __post_init__(self) -> None:
        if self.sdtype is None:
            self.sdtype = _kind_to_sdtype(self.kind, self.dtype)

    @property
    def nullable(self) -> bool:
        return self.missing_share > 0

    @property
    def modelled(self) -> bool:
        return self.kind not in NOT_MODELLED


@dataclass
class Schema:
    columns: list[ColumnSchema]
    primary_key: str | None = None
    n_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> ColumnSchema:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [asdict(c) for c in self.columns],
            "primary_key": self.primary_key,
            "n_rows": self.n_rows,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        return cls(
            columns=[ColumnSchema(**c) for c in data["columns"]],
            primary_key=data.get("primary_key"),
            n_rows=data.get("n_rows", 0),
            notes=list(data.get("notes", [])),
        )

    def to_metadata(self) -> dict[str, Any]:
        """SDV single-table metadata (also what SDMetrics takes)."""
        columns: dict[str, dict[str, Any]] = {}
        for col in self.columns:
            if col.kind in ("empty", "unsupported"):
                continue
            entry: dict[str, Any] = {"sdtype": col.sdtype}
            if col.kind == "datetime" and col.datetime_format:
                entry["datetime_format"] = col.datetime_format
            if col.kind == "id" and col.id_format and col.id_format.get("regex"):
                entry["regex_format"] = col.id_format["regex"]
            columns[col.name] = entry
        meta: dict[str, Any] = {"METADATA_SPEC_VERSION": METADATA_SPEC_VERSION, "columns": columns}
        if self.primary_key:
            meta["primary_key"] = self.primary_key
        return meta

    def describe(self) -> dict[str, Any]:
        """What `synthgen schema` prints: SDV metadata (usable as --metadata) and every decision in
        full."""
        return {
            "metadata": self.to_metadata(),
            "rows": self.n_rows,
            "primary_key": self.primary_key,
            "columns": {
                c.name: {k: v for k, v in asdict(c).items() if k != "name" and v is not None}
                for c in self.columns
            },
        }

    def summary(self, most: int = 12) -> str:
        """One line for logs: the count of each kind, and the columns of each kind when there are
        few."""
        by_kind: dict[str, list[str]] = {}
        for c in self.columns:
            by_kind.setdefault(c.kind, []).append(c.name)
        parts = []
        for kind, names in by_kind.items():
            shown = ", ".join(map(str, names[:most])) + (
                f", ... ({len(names) - most} more)" if len(names) > most else ""
            )
            parts.append(f"{len(names)} {kind} ({shown})")
        return f"{len(self.columns)} columns: " + "; ".join(parts)

    def explain(self) -> list[dict[str, Any]]:
        """One row per column for people: kind, dtype, missing share, details and the reason."""
        rows = []
        for c in self.columns:
            details = ""
            if c.kind == "numerical":
                number = (
                    "integer"
                    if c.integer
                    else f"{c.decimals} decimals"
                    if c.decimals is not None
                    else "float"
                )
                details = f"{number}, [{_fmt(c.min)}, {_fmt(c.max)}]"
            elif c.kind in ("categorical", "text"):
                details = f"{c.n_categories} values"
            elif c.kind == "datetime":
                details = (
                    f"format {c.datetime_format}" if c.datetime_format else (c.timezone or "naive")
                )
            elif c.kind == "id" and c.id_format:
                details = c.id_format.get("regex") or c.id_format["type"]
            rows.append(
                {
                    "column": c.name,
                    "kind": c.kind,
                    "sdtype": c.sdtype,
                    "dtype": c.dtype,
                    "missing": round(c.missing_share, 4),
                    "details": details,
                    "reason": c.reason,
                }
            )
        return rows


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def _kind_to_sdtype(kind: str, dtype: str) -> str:
    if kind == "categorical" and dtype in ("bool", "boolean"):
        return "boolean"
    return {"empty": "unknown", "unsupported": "unknown"}.get(kind, kind)


# --------------------------------------------------------------------------------------------------
# Inference


def infer_schema(df: pd.DataFrame, metadata: dict[str, Any] | None = None) -> Schema:
    """Infer a kind for every column; `metadata` (SDV single-table format) overrides column by
    column."""
    overrides, primary_key = _parse_metadata(metadata, df) if metadata else ({}, None)
    columns = []
    for name in df.columns:
        series = df[name]
        spec = overrides.get(name, {})
        if spec.get("from_database"):
            col = _from_database(series, spec)
        elif spec.get("sdtype"):
            col = _from_sdtype(series, spec)
        elif name == primary_key:
            col = _from_sdtype(series, {"sdtype": "id"})
        else:
            col = _infer_column(series)
        if "sql_type" in spec:
            col.sql_type, col.not_null = spec["sql_type"], spec.get("not_null")
        columns.append(col)
        if col.kind == "empty":
            log.warning("column %r is entirely empty: not learned, written back all-missing", name)
        elif col.kind == "unsupported":
            log.warning(
                "column %r holds %s: not learned, written back all-missing", name, col.reason
            )
    if primary_key is None:
        primary_key = next((c.name for c in columns if c.kind == "id"), None)
    schema = Schema(columns=columns, primary_key=primary_key, n_rows=len(df))
    if not any(c.modelled for c in columns):
        raise UserError(
            "nothing to learn: every column is an id, entirely empty or of values "
            "synthgen cannot model"
        )
    return schema


def _base(series: pd.Series, kind: str, reason: str, **extra: Any) -> ColumnSchema:
    return ColumnSchema(
        name=series.name,
        kind=kind,
        dtype=str(series.dtype),
        reason=reason,
        missing_share=float(series.isna().mean()),
        **extra,
    )


def _infer_column(s: pd.Series) -> ColumnSchema:
    values = s.dropna()
    n = len(values)
    if n == 0:
        return _base(s, "empty", "every value is missing")
    value_types = set(values.map(type)) if s.dtype == object else set()
    nested = sorted(t.__name__ for t in value_types if issubclass(t, NESTED_TYPES))
    if nested:
        return _base(s, "unsupported", f"nested or binary values ({', '.join(nested)})")
    try:
        unique = values.nunique()
    except TypeError:  # values that cannot be hashed, so neither counted nor compared
        return _base(
            s,
            "unsupported",
            "values that cannot be compared "
            f"({', '.join(sorted(t.__name__ for t in value_types))})",
        )
    if ptypes.is_bool_dtype(s.dtype):
        return _categorical(s, "boolean values")
    if ptypes.is_datetime64_any_dtype(s.dtype):
        return _datetime(s, f"{s.dtype} dtype")
    if isinstance(s.dtype, pd.CategoricalDtype):
        return _categorical(s, "pandas category dtype")
    if ptypes.is_numeric_dtype(s.dtype):
        integral = ptypes.is_integer_dtype(s.dtype) or _integral(values.to_numpy(float))
        if (
            ptypes.is_integer_dtype(s.dtype)
            and unique == len(s)
            and len(s) >= 20
            and (ID_NAME.search(str(s.name)) or _is_consecutive(values))
        ):
            return _id(
                s,
                "unique integer per row"
                + (" named like a key" if ID_NAME.search(str(s.name)) else ", consecutive"),
            )
        if integral and unique <= FLAG_MAX_LEVELS:
            return _categorical(s, f"integer with only {unique} distinct values")
        return _numerical(s, f"{'integer' if integral else 'float'} values, {unique} distinct")
    # object columns of numbers or dates that pandas keeps as Python objects
    if value_types == {decimal.Decimal}:
        col = _numerical(s, f"decimal values, {unique} distinct")
        col.object_values = "decimal"
        return col
    if value_types == {dt.date}:
        return _datetime(s, "date values", object_values="date")
    # text-like (object / string dtype)
    strings = values.astype(str)
    fmt = _datetime_text_format(strings)
    if fmt is not None:
        return _datetime(s, f"text that parses as dates with format {fmt}", fmt)
    if (
        unique == len(s)
        and len(s) >= 20
        and not strings.str.contains(r"\s").any()
        and strings.str.len().max() <= 64
    ):
        return _id(s, "unique per row, no spaces")
    if unique > 20 and unique > TEXT_UNIQUE_SHARE * n:
        return _base(
            s, "text", f"free text: {unique} distinct values in {n} rows", n_categories=int(unique)
        )
    return _categorical(s, f"text with {unique} distinct values")


def _is_consecutive(values: pd.Series) -> bool:
    v = np.sort(values.to_numpy())
    return bool(len(v) > 1 and np.all(np.diff(v) == 1))


def _categorical(s: pd.Series, reason: str) -> ColumnSchema:
    return _base(s, "categorical", reason, n_categories=int(s.nunique(dropna=True)))


def _integral(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return len(finite) > 0 and bool(np.all(np.mod(finite, 1) == 0))


def _numerical(s: pd.Series, reason: str) -> ColumnSchema:
    present = s.dropna()
    if len(present) and isinstance(present.iloc[0], decimal.Decimal):
        values = np.asarray([float(v) for v in present], dtype=np.float64)
        scale = max((-v.as_tuple().exponent for v in present if v.is_finite()), default=0)
        decimals = max(int(scale), 0)
    else:
        values = pd.to_numeric(present).to_numpy(np.float64)
        decimals = None
    finite = values[np.isfinite(values)]
    integral = ptypes.is_integer_dtype(s.dtype) or _integral(values)
    if decimals is None:
        decimals = 0 if integral else decimal_places(finite)
    # exact: int64 values near its limits are not floats
    if ptypes.is_integer_dtype(s.dtype) and len(present):
        lo, hi = int(present.min()), int(present.max())
    else:
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (None, None)
    return _base(s, "numerical", reason, integer=integral, decimals=decimals, min=lo, max=hi)


def decimal_places(values: np.ndarray, most: int = 9) -> int | None:
    """The fewest decimal places that write every value exactly (None: more than `most`)."""
    values = values[np.isfinite(values)]
    for d in range(most + 1):
        scaled = values * 10.0**d
        if np.all(
            np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled)) * 1e-3
        ):
            return d
    return None


def _datetime(
    s: pd.Series, reason: str, fmt: str | None = None, object_values: str | None = None
) -> ColumnSchema:
    parsed = parse_datetimes(s, fmt)
    tz = str(parsed.dt.tz) if parsed.dt.tz is not None else None
    valid = parsed.dropna()
    return _base(
        s,
        "datetime",
        reason,
        datetime_format=fmt,
        timezone=tz,
        object_values=object_values,
        min=float(valid.min().timestamp()) if len(valid) else None,
        max=float(valid.max().timestamp()) if len(valid) else None,
    )


def parse_datetimes(s: pd.Series, fmt: str | None) -> pd.Series:
    """Parse text (or date objects) to datetimes with `fmt` (or pandas' inference); what does not
    parse becomes NaT. Text with differing UTC offsets is read as UTC instants."""
    if ptypes.is_datetime64_any_dtype(s.dtype):
        return s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(s, format=fmt, errors="coerce")
        except (ValueError, TypeError, OverflowError):
            parsed = None  # mixed offsets or time zones, with this pandas
        # mixed offsets: object dtype
        if parsed is None or not ptypes.is_datetime64_any_dtype(parsed.dtype):
            parsed = pd.to_datetime(s, format=fmt, errors="coerce", utc=True)
    return parsed


def _datetime_text_format(strings: pd.Series, sample: int = 2000) -> str | None:
    """The strftime format that reads *and writes back* every value, or None if the text is not
    dates."""
    head = strings.iloc[: min(sample, len(strings))]
    first = head.iloc[0]
    if (
        not re.search(r"\d", first)
        or len(first) < 6
        or not re.fullmatch(r"[\d\s:/.,TZ+\-A-Za-z]+", first)
    ):
        return None
    from pandas.tseries.api import guess_datetime_format

    # 01/02/2024 reads either way: keep the one every value agrees with
    for dayfirst in (False, True):
        fmt = guess_datetime_format(first, dayfirst=dayfirst)
        if fmt is None:
            continue
        if "%z" in fmt and first.endswith("Z"):
            fmt = fmt.replace("%z", "Z")  # a literal Z writes back as Z, where %z would write +0000
        # cheap check first
        if all(_reads_and_writes_back(chunk, fmt) for chunk in (head, strings)):
            return fmt
        if "%z" in fmt and not parse_datetimes(strings, fmt).isna().any():
            return fmt  # differing UTC offsets: read as UTC instants, written back with +0000
    return None


def _reads_and_writes_back(strings: pd.Series, fmt: str) -> bool:
    parsed = parse_datetimes(strings, fmt)
    return not parsed.isna().any() and bool((parsed.dt.strftime(fmt) == strings).all())


def _id(s: pd.Series, reason: str) -> ColumnSchema:
    return _base(s, "id", reason, id_format=id_template(s.dropna()))


def id_template(values: pd.Series) -> dict[str, Any]:
    """A format that new unique ids are written in: integers, UUIDs, or fixed character classes by
    position."""
    if ptypes.is_integer_dtype(values.dtype) or ptypes.is_float_dtype(values.dtype):
        return {"type": "integer", "start": int(values.min()), "regex": r"\d+"}
    strings = values.astype(str)
    if strings.map(lambda v: bool(UUID_RE.match(v))).all():
        return {
            "type": "uuid",
            "regex": "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        }
    lengths = strings.str.len()
    if lengths.nunique() == 1:
        chars = np.array([list(v) for v in strings.iloc[:100_000]])  # (rows, length)
        seen_at = [set(chars[:, pos]) for pos in range(chars.shape[1])]
        # A run of digit positions is one number: its constant leading zeros are digits too
        # (C00012, C00197).
        is_digit = [all(ch.isdigit() for ch in seen) for seen in seen_at]
        varies = [False] * len(seen_at)
        start = 0
        for pos in range(len(seen_at) + 1):
            if pos == len(seen_at) or not is_digit[pos]:
                if any(len(seen_at[p]) > 1 for p in range(start, pos)):
                    varies[start:pos] = [True] * (pos - start)
                start = pos + 1
        segments: list[list[Any]] = []
        for pos, seen in enumerate(seen_at):
            literal = len(seen) == 1 and not varies[pos]
            cls = next(iter(seen)) if literal else ("digit" if varies[pos] else _char_class(seen))
            if segments and not literal and segments[-1][0] == "class" and segments[-1][1] == cls:
                segments[-1][2] += 1
            elif segments and literal and segments[-1][0] == "literal":
                segments[-1][1] += cls
            else:
                segments.append(["literal", cls] if literal else ["class", cls, 1])
        regex = "".join(
            re.escape(seg[1]) if seg[0] == "literal" else f"{ID_CLASSES[seg[1]][1]}{{{seg[2]}}}"
            for seg in segments
        )
        return {"type": "template", "segments": segments, "regex": regex}
    prefix = _common_prefix(strings)
    return {"type": "prefixed", "prefix": prefix, "regex": re.escape(prefix) + "[0-9]+"}


# class name -> (alphabet, regex)
ID_CLASSES = {
    "digit": ("0123456789", "[0-9]"),
    "hex": ("0123456789abcdef", "[0-9a-f]"),
    "HEX": ("0123456789ABCDEF", "[0-9A-F]"),
    "upper": ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "[A-Z]"),
    "lower": ("abcdefghijklmnopqrstuvwxyz", "[a-z]"),
    "alnum": ("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "[0-9A-Za-z]"),
}


def _char_class(chars: set[str]) -> str:
    for name in ("digit", "hex", "HEX", "upper", "lower", "alnum"):
        if chars <= set(ID_CLASSES[name][0]):
            return name
    return "alnum"


def _common_prefix(strings: pd.Series) -> str:
    lo, hi = strings.min(), strings.max()
    i = 0
    while i < min(len(lo), len(hi)) and lo[i] == hi[i]:
        i += 1
    return lo[:i]


# --------------------------------------------------------------------------------------------------
# User metadata (SDV single-table format)


def _parse_metadata(
    metadata: dict[str, Any], df: pd.DataFrame
) -> tuple[dict[str, dict[str, Any]], str | None]:
    if isinstance(metadata, dict) and isinstance(metadata.get("metadata"), dict):
        metadata = metadata["metadata"]  # the whole output of `synthgen schema`
    if not isinstance(metadata, dict) or not isinstance(metadata.get("columns", {}), dict):
        raise UserError(
            'metadata must be a JSON object like {"columns": {"col": {"sdtype": "numerical"}}}'
        )
    if "tables" in metadata:  # SDV's multi-table wrapper holding a single table: unwrap it
        tables = metadata["tables"]
        if len(tables) != 1:
            raise UserError(f"metadata describes {len(tables)} tables; synthgen learns one table")
        metadata = next(iter(tables.values()))
    columns = metadata.get("columns", {})
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(
            f"metadata names columns that are not in the table: {', '.join(map(str, missing))}"
        )
    for name, spec in columns.items():
        sdtype = spec.get("sdtype") if isinstance(spec, dict) else None
        if sdtype is None and isinstance(spec, dict) and "sql_type" in spec:
            continue  # a database column's type only: its kind is inferred
        if sdtype not in SDTYPE_TO_KIND:
            raise UserError(
                f"metadata column {name!r}: unknown sdtype {sdtype!r} "
                f"(known: {', '.join(SDTYPE_TO_KIND)})"
            )
    primary_key = metadata.get("primary_key")
    if primary_key is not None and primary_key not in df.columns:
        raise UserError(f"metadata primary_key {primary_key!r} is not a column of the table")
    return columns, primary_key


def _from_database(s: pd.Series, spec: dict[str, Any]) -> ColumnSchema:
    """A column whose database type says its kind: inferred when the values agree (they tell
    more: decimals, formats), else the type's kind (a numeric(10,2) of three values is still a
    number; a primary key an id)."""
    col = _infer_column(s)
    why = f"database type {spec['sql_type']}"
    if col.kind == SDTYPE_TO_KIND[spec["sdtype"]] or col.kind == "empty":
        col.reason = f"{col.reason} ({why})"
        return col
    col = _from_sdtype(s, spec)
    col.reason, col.source = why, "database"
    return col


def _from_sdtype(s: pd.Series, spec: dict[str, Any]) -> ColumnSchema:
    sdtype = spec["sdtype"]
    kind = SDTYPE_TO_KIND[sdtype]
    reason = f"metadata says sdtype {sdtype}"
    if s.notna().sum() == 0:
        col = _base(s, "empty", "every value is missing")
    elif kind == "numerical" and set(s.dropna().map(type)) == {decimal.Decimal}:
        col = _numerical(s, reason)
        col.object_values = "decimal"
    elif kind == "numerical":
        if not ptypes.is_numeric_dtype(s.dtype) or ptypes.is_bool_dtype(s.dtype):
            converted = pd.to_numeric(s, errors="coerce")
            if converted.notna().sum() < s.notna().sum():
                raise UserError(
                    f"column {s.name!r}: metadata says numerical but it holds non-numeric values"
                )
        col = _numerical(
            s if ptypes.is_numeric_dtype(s.dtype) else pd.to_numeric(s).rename(s.name), reason
        )
        col.dtype = str(s.dtype)
    elif kind == "datetime" and set(s.dropna().map(type)) == {dt.date}:
        col = _datetime(s, reason, object_values="date")
    elif kind == "datetime":
        fmt = spec.get("datetime_format")
        if not ptypes.is_datetime64_any_dtype(s.dtype):
            parsed = parse_datetimes(s.dropna().astype(str), fmt)
            if parsed.isna().any():
                raise UserError(
                    f"column {s.name!r}: metadata says datetime but some values do not parse"
                    + (f" with format {fmt}" if fmt else "")
                )
            fmt = fmt or _datetime_text_format(s.dropna().astype(str))
        col = _datetime(s, reason, fmt if not ptypes.is_datetime64_any_dtype(s.dtype) else None)
    elif kind == "id":
        if s.dropna().duplicated().any():
            log.warning("column %r: metadata says id but values repeat; new ids are unique", s.name)
        col = _id(s, reason)
    elif kind == "text":
        col = _base(s, "text", reason, n_categories=int(s.nunique()))
    else:
        col = _categorical(s, reason)
    col.source = "metadata"
    col.sdtype = sdtype if col.kind != "empty" else "unknown"
    return col


def load_metadata(path: str | None) -> dict[str, Any] | None:
    """Read a metadata JSON file (SDV single-table format, or the output of `synthgen schema`)."""
    if path is None:
        return None
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such metadata file")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not valid JSON ({exc})") from None
