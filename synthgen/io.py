"""Reading tables (CSV, Parquet file or folder, JSON Lines, DataFrame) and writing Parquet
atomically.

Every reader goes through pyarrow (multi-threaded C++ parsers, no row-by-row Python). Every writer
writes to a temporary name beside the target and renames it at the end, so a failed or killed run
never leaves a half-written file where a finished one is expected.
"""

from __future__ import annotations

import codecs
import contextlib
import decimal
import gzip
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from synthgen.errors import UserError

log = logging.getLogger("synthgen")

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz")
SUPPORTED = CSV_SUFFIXES + PARQUET_SUFFIXES + JSONL_SUFFIXES

TableSource = str | os.PathLike | pd.DataFrame
# Text encodings tried in order when a CSV does not say (a BOM) and none is given: the first that
# decodes every byte wins. Windows-1252 leaves five bytes undefined, so a file using them falls
# through to Latin-1, which decodes anything.
DETECTED_ENCODINGS = ("utf-8", "cp1252", "latin-1")
BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def table_format(path: Path) -> str:
    """'csv', 'parquet' or 'jsonl', from the file name (a folder is a Parquet dataset of part
    files)."""
    if path.is_dir():
        return "parquet"
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise UserError(
        f"{path}: unknown file type (expected one of {', '.join(SUPPORTED)}, "
        "or a folder of Parquet files)"
    )


def read_table(
    source: TableSource, *, columns: list[str] | None = None, encoding: str | None = None
) -> pd.DataFrame:
    """Read a table from a path or take a DataFrame, and check that it is a table synthgen can
    learn.

    `encoding` is a CSV's text encoding; None detects UTF-8 (with or without a BOM), UTF-16 with a
    BOM, Windows-1252 and Latin-1. Raises UserError, with the file named, for a missing, unreadable
    or empty table, duplicate columns and column names that are not text.
    """
    if isinstance(source, pd.DataFrame):
        df = source if columns is None else source[columns]
        check_table(df, "the DataFrame")
        return df
    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    fmt = table_format(path)
    try:
        if fmt == "parquet":
            table = _read_parquet(path, columns)
        elif fmt == "csv":
            delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
            # empty cells (and NA, null, ...) are missing in text columns too, as pandas reads them;
            # quoted fields may hold line breaks
            table = pa_csv.read_csv(
                path,
                read_options=pa_csv.ReadOptions(encoding=text_encoding(path, encoding)),
                parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pa_csv.ConvertOptions(strings_can_be_null=True),
            )
        else:
            table = pa_json.read_json(path)
    except UserError:
        raise
    except (pa.ArrowException, OSError, ValueError, UnicodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            " (give its text encoding with --encoding or `encoding:`)"
            if isinstance(exc, UnicodeError)
            else ""
        )
        raise UserError(f"{path}: cannot read as {fmt}: {first_line}{hint}") from None
    _check_names(table.column_names, str(path))
    if columns is not None and fmt != "parquet":
        table = table.select(columns)
    df = arrow_to_pandas(table)
    check_table(df, str(path))
    return df


def text_encoding(path: Path, given: str | None = None) -> str:
    """The text encoding to read a CSV with: `given` (checked against the whole file), its BOM's, or
    the first of DETECTED_ENCODINGS that decodes the whole file."""
    if given:
        try:
            name = codecs.lookup(given).name
        except LookupError:
            raise UserError(
                f"unknown text encoding {given!r} (e.g. utf-8, cp1252, latin-1)"
            ) from None
        failed_at = _decode_error(path, name)
        if failed_at is not None:
            raise UserError(
                f"{path}: cannot read as csv: not valid {name} at byte {failed_at} "
                "(give its text encoding with --encoding or `encoding:`)"
            )
        return name
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(4)
    for bom, name in BOMS:
        if head.startswith(bom):
            return name
    for name in DETECTED_ENCODINGS:
        failed_at = _decode_error(path, name)
        if failed_at is None:
            if name != "utf-8":
                log.warning(
                    "%s is not valid UTF-8: read as %s (set --encoding / `encoding:` to choose)",
                    path,
                    name,
                )
            return name
        log.debug("%s is not %s (byte %d)", path, name, failed_at)
    return "latin-1"  # not reached: Latin-1 decodes every byte


def _decode_error(path: Path, encoding: str) -> int | None:
    """Where the file first fails to decode as `encoding`, or None when all of it decodes."""
    decoder = codecs.getincrementaldecoder(encoding)()
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    done = 0
    with opener(path, "rb") as fh:
        try:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                decoder.decode(chunk)
                done += len(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            return done + exc.start
    return None


def _read_parquet(path: Path, columns: list[str] | None) -> pa.Table:
    if path.is_dir():
        parts = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES
        )
        if not parts:
            raise UserError(f"{path}: folder holds no .parquet files")
    return pq.read_table(path, columns=columns)


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame, as every reader converts it."""
    # Arrow integers with nulls would become float64 in pandas; keep them integers (nullable Int64).
    nullable_ints = {
        f.name: pd.Int64Dtype()
        for f, col in zip(table.schema, table.columns, strict=False)
        if pa.types.is_integer(f.type) and col.null_count > 0
    }
    df = table.to_pandas()
    return df.astype(nullable_ints) if nullable_ints else df


def _check_names(names: list, where: str) -> None:
    not_text = [n for n in names if not isinstance(n, str)]
    if not_text:
        raise UserError(
            f"{where}: column names must be text, "
            f"got {not_text[0]!r} ({type(not_text[0]).__name__}); "
            "rename them, e.g. df.columns = df.columns.astype(str)"
        )
    seen: set[str] = set()
    duplicated = sorted({n for n in names if n in seen or seen.add(n)})
    if duplicated:
        raise UserError(f"{where}: duplicate column names: {', '.join(map(str, duplicated))}")


def check_table(df: pd.DataFrame, where: str) -> None:
    """UserError for a table synthgen cannot learn: names not text or repeated, no rows or
    columns."""
    _check_names(list(df.columns), where)
    if df.shape[1] == 0:
        raise UserError(f"{where}: table has no columns")
    if df.shape[0] == 0:
        raise UserError(f"{where}: table has no rows")


def source_fingerprint(source: TableSource) -> str:
    """SHA-256 of a table's content: the file's bytes, a folder's part files in order, or a
    DataFrame's rows."""
    h = hashlib.sha256()
    if isinstance(source, pd.DataFrame):
        h.update(",".join(map(str, source.columns)).encode())
        # column by column: cells that cannot be hashed (lists, dicts) by their repr
        for name in source.columns:
            column = source[name]
            try:
                hashed = pd.util.hash_pandas_object(column, index=False)
            except TypeError:
                hashed = pd.util.hash_pandas_object(column.map(repr), index=False)
            h.update(hashed.to_numpy().tobytes())
        return h.hexdigest()
    path = Path(source)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Atomic writing


def _temp_sibling(target: Path, is_dir: bool = False) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".synthgen-tmp-{target.name}-"
    umask = os.umask(0)
    os.umask(umask)
    if is_dir:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        # mkdtemp makes it private; the published folder follows the umask
        path.chmod(0o777 & ~umask)
        return path
    fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def _replace(tmp: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        # os.replace cannot put a folder over a non-empty folder: move the old one aside first.
        old = target.with_name(f".synthgen-old-{target.name}-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, on error it is
    removed."""
    target = Path(target)
    tmp = _temp_sibling(target, is_dir=is_dir)
    try:
        yield tmp
        _replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_parquet(
    df: pd.DataFrame, path: str | os.PathLike, *, row_group_rows: int = 1_000_000
) -> Path:
    """Write one DataFrame to Parquet atomically."""
    with ParquetStreamWriter(path, row_group_rows=row_group_rows) as writer:
        writer.write(df)
    return Path(path)


class ParquetStreamWriter:
    """Append DataFrames batch by batch as row groups of one Parquet file, renamed into place on
    close.

    Memory stays at one batch however many rows are written. The Arrow schema is fixed by the first
    batch (or given), and later batches are cast to it, so a column that happens to be all-missing
    in one batch keeps its type.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        schema: pa.Schema | None = None,
        row_group_rows: int = 1_000_000,
        compression: str = "zstd",
        field_types: dict[str, pa.DataType] | None = None,
    ) -> None:
        self.path = Path(path)
        self.schema = schema
        # types that the first batch cannot tell (a decimal's precision)
        self.field_types = field_types or {}
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.rows = 0
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetStreamWriter:
        self._tmp = _temp_sibling(self.path)
        return self

    def write(self, df: pd.DataFrame) -> None:
        if self._tmp is None:
            raise RuntimeError("use ParquetStreamWriter as a context manager")
        if self.schema is None:
            inferred = _concrete_schema(pa.Schema.from_pandas(df, preserve_index=False))
            self.schema = pa.schema(
                [f.with_type(self.field_types.get(f.name, f.type)) for f in inferred],
                metadata=inferred.metadata,
            )
        table = pa.Table.from_pandas(df, schema=self.schema, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression=self.compression)
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        self.rows += len(df)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._tmp is not None
        try:
            if self._writer is not None:
                self._writer.close()
            elif exc_type is None and self.schema is not None:
                pq.write_table(self.schema.empty_table(), self._tmp)
        finally:
            if exc_type is None:
                os.replace(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)


def iter_parquet_batches(
    path: str | os.PathLike, batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """The rows of a Parquet file or folder of part files, batch by batch (flat memory)."""
    import pyarrow.dataset as ds

    yield from ds.dataset(str(path), format="parquet").to_batches(batch_size=batch_rows)


def _concrete_schema(schema: pa.Schema) -> pa.Schema:
    # An object column that is all-missing in the first batch comes out as Arrow's null type: make
    # it text.
    fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def json_default(value: Any) -> Any:
    """What json.dumps cannot write itself: numpy scalars, timestamps and paths."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (Path, decimal.Decimal)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write JSON atomically."""
    import json

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return Path(path)
