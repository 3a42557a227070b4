"""Tables in SQL databases: read a table or a query as a stream of Arrow record batches, with the
database's own column types, an exact fingerprint and a bounded-memory sample; publish rows to a
table within one transaction.

PostgreSQL goes through ADBC's libpq driver (COPY in binary straight to Arrow, no row-by-row
Python), DuckDB through its own Arrow interface, SQLite through the standard library
(docs/design.md says why). Passwords come from the environment, a .pgpass file or a Prefect Secret
block and stay in memory: every URL written down goes through `redact`, every driver error through
`_scrub`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from synthgen.config import is_sql_url
from synthgen.errors import UserError
from synthgen.io import arrow_to_pandas, check_table

log = logging.getLogger("synthgen")

# URL scheme -> database
DIALECTS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "sqlite": "sqlite",
    "duckdb": "duckdb",
}
# URL parameters that are synthgen's, not the driver's
OWN_PARAMS = ("table", "query", "if_exists", "model")
BATCH_ROWS = 65_536  # rows per batch where the driver does not choose (DuckDB, SQLite)
IF_EXISTS = ("replace", "append", "fail")
# PostgreSQL types read as Arrow as they are (format_type's names); others are read as text
PG_NATIVE = {
    "boolean",
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "numeric",
    "text",
    "character varying",
    "character",
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
    "bytea",
}


# --------------------------------------------------------------------------------------------------
# Where a table is


@dataclass
class SqlSource:
    """A table (`table`) or a query (`query`) in a database named by `url` or reached through an
    open `connection` (ADBC, DuckDB, sqlite3, or a SQLAlchemy engine or connection).

    `?table=` and `?query=` in the URL fill `table` and `query`. The password comes from the URL
    (Python API only: run configs refuse it), `password_env` (an environment variable),
    `password_secret` (a Prefect Secret block), else libpq's own PGPASSWORD / PGPASSFILE.
    """

    url: str | None = None
    table: str | None = None
    query: str | None = None
    password_env: str | None = None
    password_secret: str | None = None
    connection: Any = field(default=None, repr=False)
    if_exists: str = "fail"  # publishing only

    def __post_init__(self) -> None:
        if self.connection is not None and self.url is None:
            self.url = _connection_url(self.connection)
        if not is_sql_url(self.url):
            raise UserError(
                f"{redact(str(self.url))}: not a database URL "
                "(postgresql://user@host/db, sqlite:///file.db or duckdb:///file.db)"
            )
        parts = urlsplit(self.url)
        given = parse_qs(parts.query, keep_blank_values=True)
        self.table = self.table or (given.get("table") or [None])[-1]
        self.query = self.query or (given.get("query") or [None])[-1]
        self.if_exists = (given.get("if_exists") or [self.if_exists])[-1]
        rest = {k: v[-1] for k, v in given.items() if k not in OWN_PARAMS}
        self.url = _with_query(self.url, rest)
        if self.if_exists not in IF_EXISTS:
            raise UserError(f"if_exists must be one of {', '.join(IF_EXISTS)}")

    @property
    def dialect(self) -> str:
        return DIALECTS[self.url.split("://", 1)[0].split("+", 1)[0].lower()]

    @property
    def where(self) -> str:
        """The source as logs and reports write it: URL without password, plus table or query."""
        what = f"table={self.table}" if self.table else f"query={_short(self.query or '')}"
        return f"{redact(self.url)}{'&' if '?' in redact(self.url) else '?'}{what}"

    def require_one(self) -> None:
        if bool(self.table) == bool(self.query):
            raise UserError(f"{redact(self.url)}: give either a table or a query")


def sql_source(
    data: Any, *, table: str | None = None, query: str | None = None
) -> SqlSource | None:
    """`data` as an SqlSource when it names a database: a URL, a config mapping, an SqlSource or
    an open connection; None for files and DataFrames."""
    if isinstance(data, SqlSource):
        src = replace(data, table=table or data.table, query=query or data.query)
    elif isinstance(data, str) and is_sql_url(data):
        src = SqlSource(url=data, table=table, query=query)
    elif hasattr(data, "model_dump") and hasattr(data, "password_env"):  # config's SqlInput
        src = sql_source(data.model_dump(), table=table, query=query)
    elif isinstance(data, dict) and "url" in data:
        known = {k: v for k, v in data.items() if k in SqlSource.__dataclass_fields__}
        src = SqlSource(**{**known, **_given(table=table, query=query)})
    elif _is_connection(data):
        src = SqlSource(connection=data, table=table, query=query)
    else:
        if table or query:
            raise UserError("table= and query= go with a database URL or connection")
        return None
    if not (isinstance(data, dict) and "if_exists" in data):  # a target names a table only
        src.require_one()
    return src


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _is_connection(data: Any) -> bool:
    module = type(data).__module__
    return (
        isinstance(data, sqlite3.Connection)
        or hasattr(data, "adbc_get_info")
        or module.startswith(("duckdb", "_duckdb", "sqlalchemy"))
    )


def _connection_url(conn: Any) -> str:
    """A URL naming an open connection's database (for the dialect and for reports)."""
    module = type(conn).__module__
    if module.startswith("sqlalchemy"):
        engine = getattr(conn, "engine", conn)
        return engine.url.render_as_string(hide_password=False)
    if isinstance(conn, sqlite3.Connection):
        return "sqlite:///(connection)"
    if module.startswith(("duckdb", "_duckdb")):
        return "duckdb:///(connection)"
    vendor = str(conn.adbc_get_info().get("vendor_name", "")).lower()
    if "postgres" in vendor:
        return "postgresql://(connection)"
    if "sqlite" in vendor:
        return "sqlite:///(connection)"
    raise UserError(f"connections to {vendor or 'this database'} are not supported")


def redact(url: str) -> str:
    """`url` without its password (user part and `password=` parameter)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a database URL)"
    if parts.password is not None:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        url = url.replace(userinfo + "@", userinfo.split(":", 1)[0] + "@", 1)
    given = parse_qs(parts.query, keep_blank_values=True)
    return _with_query(url, {k: v[-1] for k, v in given.items() if k != "password"})


def _with_query(url: str, params: dict[str, str]) -> str:
    # not urlunsplit: it turns sqlite:////abs/path into sqlite://abs/path
    base = url.split("?", 1)[0]
    return base + ("?" + urlencode(params, safe="/:,") if params else "")


def _short(text: str, most: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[: most - 3] + "..."


def quote_name(name: str) -> str:
    """A table name (`schema.table` allowed) as a quoted SQL identifier, spelled exactly."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def dataset_from(src: SqlSource) -> str:
    """A run's dataset name for a database source: the table's name, else "query"."""
    return src.table.split(".")[-1] if src.table else "query"


# --------------------------------------------------------------------------------------------------
# Secrets


def _password(src: SqlSource) -> str | None:
    """The password to connect with, or None to leave it to the driver (libpq reads PGPASSWORD,
    PGPASSFILE and ~/.pgpass itself)."""
    url_password = urlsplit(src.url).password
    if url_password:
        return url_password
    if src.password_env:
        value = os.environ.get(src.password_env)
        if not value:
            raise UserError(f"password_env: the environment variable {src.password_env} is not set")
        return value
    if src.password_secret:
        return _prefect_secret(src.password_secret)
    return None


def _prefect_secret(name: str) -> str:
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name, _sync=True).get()
    except ValueError:
        raise UserError(
            f"password_secret: no Prefect Secret block named {name!r} on this Prefect API "
            "(create it with prefect.blocks.system.Secret(value=...).save(name))"
        ) from None
    except Exception as exc:  # the API is down or refuses: say so in one line
        raise UserError(
            f"password_secret: cannot load the Prefect Secret block {name!r} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    return str(value)


def _scrub(message: str, secret: str | None) -> str:
    """A driver's error message with the password and any URL's password removed."""
    if secret:
        message = message.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return re.sub(r"(\w+://[^:/@\s]+):[^@\s]+@", r"\1@", message)


# --------------------------------------------------------------------------------------------------
# Catalogue


@dataclass
class SqlColumn:
    """One column as the database's catalogue describes it."""

    name: str
    sql_type: str  # as the catalogue writes it: numeric(10,2), timestamp with time zone, mood
    nullable: bool = True
    labels: list[str] | None = None  # an enum's labels, in their order
    primary_key: bool = False

    @property
    def decimal(self) -> tuple[int, int] | None:
        """(precision, scale) of a fixed-point column that Arrow's decimal128 holds."""
        match = re.fullmatch(r"(?:numeric|decimal)\((\d+),\s*(\d+)\)", self.sql_type.lower())
        if match and int(match[1]) <= 38:
            return int(match[1]), int(match[2])
        return None

    def sdtype(self) -> str | None:
        """What the type says a column is, where values alone may not tell: None leaves it to
        inference (integers, text)."""
        t = self.sql_type.lower()
        if self.primary_key:
            return "id"
        if self.labels is not None:
            return "categorical"
        if t in ("boolean", "bool"):
            return "boolean"
        if t.startswith(("numeric", "decimal", "real", "double", "float")):
            return "numerical"
        if t.startswith(("timestamp", "date")) and t != "datetime":
            return "datetime"
        return None


def catalogue_metadata(columns: list[SqlColumn]) -> dict[str, Any]:
    """SDV-style metadata from the catalogue: kinds the types decide, plus each column's SQL type
    and nullability (the schema records them; publishing recreates them)."""
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        spec: dict[str, Any] = {"sql_type": col.sql_type, "not_null": not col.nullable}
        kind = col.sdtype()
        if kind is not None:
            spec.update(sdtype=kind, from_database=True)
        out[col.name] = spec
    return {"columns": out}


def merge_metadata(database: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    """The user's metadata over the catalogue's, column by column (types stay recorded)."""
    if not user:
        return database
    user = user.get("metadata", user) if isinstance(user.get("metadata"), dict) else user
    columns = {k: dict(v) for k, v in database["columns"].items()}
    for name, spec in (user.get("columns") or {}).items():
        # the user's sdtype decides; the column's SQL type stays recorded
        columns[name] = {**columns.get(name, {}), **spec, "from_database": False}
    return {**user, "columns": columns}


# --------------------------------------------------------------------------------------------------
# Connections, one class per database


class _Database:
    dialect = ""
    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, src: SqlSource, write: bool = False) -> None:
        self.src = src
        self.secret = _password(src)
        self.own = src.connection is None or type(src.connection).__module__.startswith(
            "sqlalchemy"
        )
        with self.failing("cannot connect"):
            self.conn = self._connect(write) if self.own else src.connection

    @contextlib.contextmanager
    def failing(self, what: str) -> Iterator[None]:
        """A driver's error as one UserError line naming the database, the password removed."""
        try:
            yield
        except self.errors as exc:
            first = next(
                (line for line in str(exc).splitlines() if line.strip()), type(exc).__name__
            )
            raise UserError(
                f"{redact(self.src.url)}: {what}: {_scrub(first, self.secret)}"
            ) from None

    def close(self) -> None:
        if self.own:
            with contextlib.suppress(Exception):
                self.conn.close()

    def _connect(self, write: bool) -> Any:
        raise NotImplementedError

    # statements
    def execute(self, sql: str) -> None:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
        finally:
            cur.close()

    def rows(self, sql: str) -> list[tuple]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.rollback()

    # catalogue and rows
    def exists(self, table: str) -> bool:
        raise NotImplementedError

    def columns(self, src: SqlSource) -> list[SqlColumn]:
        raise NotImplementedError

    def select(self, src: SqlSource, columns: list[SqlColumn]) -> str:
        body = quote_name(src.table) if src.table else f"({_strip(src.query)}) AS synthgen_query"
        return f"SELECT {', '.join(self.expression(c) for c in columns)} FROM {body}"

    def expression(self, col: SqlColumn) -> str:
        return quote_name(col.name)

    def stream(self, sql: str, columns: list[SqlColumn]) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    # writing
    def type_exists(self, sql_type: str) -> bool:
        return True

    def type_of(self, t: pa.DataType) -> str:
        raise NotImplementedError

    def insert(self, table: str, columns: list[tuple[str, str]], batches: Iterable) -> int:
        """Rows into an existing table, each cast to the column's type; returns the count."""
        raise NotImplementedError

    def rename(self, staging: str, target: str) -> None:
        self.execute(f"ALTER TABLE {quote_name(staging)} RENAME TO {quote_name(_bare(target))}")


def _strip(query: str | None) -> str:
    return (query or "").strip().rstrip(";").strip()


def _bare(table: str) -> str:
    return table.split(".")[-1]


def _in_schema(table: str, name: str) -> str:
    """`name` in the same schema as `table`."""
    return ".".join([*table.split(".")[:-1], name])


class _Postgres(_Database):
    dialect = "postgresql"

    def __init__(self, src: SqlSource, write: bool = False) -> None:
        import adbc_driver_manager

        self.errors = (adbc_driver_manager.Error,)
        super().__init__(src, write)

    def _connect(self, write: bool) -> Any:
        import adbc_driver_postgresql.dbapi as adbc_pg

        parts = urlsplit(self.src.url)
        netloc = parts.netloc
        if self.secret and parts.password is None:
            user, host = netloc.rsplit("@", 1) if "@" in netloc else ("", netloc)
            netloc = f"{user}:{quote(self.secret, safe='')}@{host}"
        return adbc_pg.connect(parts._replace(scheme="postgresql", netloc=netloc).geturl())

    def begin(self) -> None:
        pass  # ADBC is in a transaction whenever autocommit is off

    def exists(self, table: str) -> bool:
        with self.failing("cannot read the catalogue"):
            return self.rows(f"SELECT to_regclass({_literal(quote_name(table))}) IS NOT NULL")[0][0]

    def columns(self, src: SqlSource) -> list[SqlColumn]:
        if src.table:
            if not self.exists(src.table):
                raise UserError(f"{redact(src.url)}: no table {src.table!r}")
            with self.failing("cannot read the catalogue"):
                return self._columns(quote_name(src.table))
        # a query's column types: those of a temporary view over it
        view = f"synthgen_query_{secrets.token_hex(4)}"
        with self.failing("cannot run the query"):
            self.execute(f"CREATE TEMPORARY VIEW {view} AS {_strip(src.query)}")
            columns = self._columns(view)
            self.execute(f"DROP VIEW {view}")
        return columns

    def _columns(self, relation: str) -> list[SqlColumn]:
        rows = self.rows(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)::text, t.typname::text,"
            " t.typtype::text, NOT a.attnotnull,"
            " ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = a.atttypid"
            " ORDER BY e.enumsortorder),"
            " EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary"
            " AND i.indnatts = 1 AND a.attnum = i.indkey[0])"
            " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            f" WHERE a.attrelid = to_regclass({_literal(relation)}) AND a.attnum > 0"
            " AND NOT a.attisdropped ORDER BY a.attnum"
        )
        return [
            SqlColumn(
                name=name,
                sql_type=formatted,
                nullable=bool(nullable),
                labels=list(labels) if typtype == "e" else None,
                primary_key=bool(pk),
            )
            for name, formatted, _typname, typtype, nullable, labels, pk in rows
        ]

    def expression(self, col: SqlColumn) -> str:
        base = re.sub(r"\(.*\)|\[\]", "", col.sql_type).strip()
        native = base in PG_NATIVE
        if native and "[]" not in col.sql_type and col.labels is None:
            return quote_name(col.name)
        return f"{quote_name(col.name)}::text AS {quote_name(col.name)}"

    def stream(self, sql: str, columns: list[SqlColumn]) -> Iterator[pa.RecordBatch]:
        cur = self.conn.cursor()
        try:
            with self.failing("cannot read"):
                if self.own:  # rows in the table's order every time: the fingerprint hashes them
                    cur.execute("SET max_parallel_workers_per_gather = 0")
                    cur.execute("SET synchronize_seqscans = off")
                cur.execute(sql)
                reader = cur.fetch_record_batch()
            while True:
                with self.failing("reading stopped"):
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        return
                yield _normalised(batch, columns)
        finally:
            cur.close()

    def type_exists(self, sql_type: str) -> bool:
        with self.failing("cannot read the catalogue"):
            return bool(self.rows(f"SELECT to_regtype({_literal(sql_type)}) IS NOT NULL")[0][0])

    def type_of(self, t: pa.DataType) -> str:
        return _arrow_sql_type(t, "postgresql")

    def insert(self, table: str, columns: list[tuple[str, str]], batches: Iterable) -> int:
        # COPY in binary wants exact types: rows land in a temporary table of their Arrow types,
        # then one INSERT casts them to the target's (text to an enum, bigint to integer, ...)
        raw = f"synthgen_rows_{secrets.token_hex(4)}"
        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            return 0
        first = _writable(first)
        failed: list[BaseException] = []

        def rest() -> Iterator[pa.RecordBatch]:
            try:
                yield from (_writable(b) for b in batches)
            except BaseException as exc:  # the driver would wrap it: raise it as it was
                failed.append(exc)
                raise

        reader = pa.RecordBatchReader.from_batches(first.schema, _chain(first, rest()))
        cur = self.conn.cursor()
        try:
            try:
                cur.adbc_ingest(raw, reader, mode="create", temporary=True)
            except self.errors:
                if failed:
                    raise failed[0] from None
                raise
            names = ", ".join(quote_name(n) for n, _ in columns)
            casts = ", ".join(f"{quote_name(n)}::{t}" for n, t in columns)
            cur.execute(f"INSERT INTO {quote_name(table)} ({names}) SELECT {casts} FROM {raw}")
            count = cur.rowcount
            cur.execute(f"DROP TABLE {raw}")
        finally:
            cur.close()
        return count


class _DuckDB(_Database):
    dialect = "duckdb"

    def __init__(self, src: SqlSource, write: bool = False) -> None:
        import duckdb

        self.errors = (duckdb.Error,)
        super().__init__(src, write)

    def _connect(self, write: bool) -> Any:
        import duckdb

        path = _file_path(self.src.url)
        if not write and not Path(path).is_file():
            raise UserError(f"{redact(self.src.url)}: no such database file {path}")
        return duckdb.connect(path, read_only=not write)

    def execute(self, sql: str) -> None:
        self.conn.execute(sql)

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.conn.execute(sql).fetchall()]

    def exists(self, table: str) -> bool:
        parts = table.split(".")
        where = f"table_name = {_literal(parts[-1])}" + (
            f" AND table_schema = {_literal(parts[-2])}" if len(parts) > 1 else ""
        )
        with self.failing("cannot read the catalogue"):
            return bool(
                self.rows(f"SELECT count(*) FROM information_schema.tables WHERE {where}")[0][0]
            )

    def columns(self, src: SqlSource) -> list[SqlColumn]:
        if src.table and not self.exists(src.table):
            raise UserError(f"{redact(src.url)}: no table {src.table!r}")
        what = quote_name(src.table) if src.table else _strip(src.query)
        with self.failing("cannot run the query" if src.query else "cannot read the catalogue"):
            rows = self.rows(f"DESCRIBE {what}")
        out = []
        for name, sql_type, null, key, *_ in rows:
            labels = (
                re.findall(r"'((?:[^']|'')*)'", sql_type) if sql_type.startswith("ENUM(") else None
            )
            out.append(
                SqlColumn(
                    name=name,
                    sql_type=sql_type,
                    nullable=null != "NO",
                    labels=[lab.replace("''", "'") for lab in labels]
                    if labels is not None
                    else None,
                    primary_key=key == "PRI",
                )
            )
        return out

    def stream(self, sql: str, columns: list[SqlColumn]) -> Iterator[pa.RecordBatch]:
        with self.failing("cannot read"):
            relation = self.conn.sql(sql)
            # DuckDB 1.4 renamed record_batch to_arrow_reader
            reader = getattr(relation, "to_arrow_reader", None) or relation.record_batch
            reader = reader(BATCH_ROWS)
        for batch in reader:
            yield _normalised(batch, columns)

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.execute("ROLLBACK")

    def type_of(self, t: pa.DataType) -> str:
        return _arrow_sql_type(t, "duckdb")

    def insert(self, table: str, columns: list[tuple[str, str]], batches: Iterable) -> int:
        names = ", ".join(quote_name(n) for n, _ in columns)
        casts = ", ".join(f"CAST({quote_name(n)} AS {t})" for n, t in columns)
        count = 0
        for batch in batches:
            view = f"synthgen_rows_{secrets.token_hex(4)}"
            self.conn.register(view, pa.Table.from_batches([_writable(batch)]))
            self.conn.execute(
                f"INSERT INTO {quote_name(table)} ({names}) SELECT {casts} FROM {view}"
            )
            self.conn.unregister(view)
            count += batch.num_rows
        return count


class _SQLite(_Database):
    dialect = "sqlite"
    errors = (sqlite3.Error,)

    def _connect(self, write: bool) -> Any:
        path = _file_path(self.src.url)
        if not write and not Path(path).is_file():
            raise UserError(f"{redact(self.src.url)}: no such database file {path}")
        uri = f"file:{quote(path)}?mode={'rwc' if write else 'ro'}"
        # transactions are begun and ended here, not by the module
        return sqlite3.connect(uri, uri=True, isolation_level=None)

    def exists(self, table: str) -> bool:
        with self.failing("cannot read the catalogue"):
            return bool(
                self.rows(
                    "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND "
                    f"name = {_literal(_bare(table))}"
                )[0][0]
            )

    def columns(self, src: SqlSource) -> list[SqlColumn]:
        if src.table:
            if not self.exists(src.table):
                raise UserError(f"{redact(src.url)}: no table {src.table!r}")
            relation = quote_name(src.table)
            with self.failing("cannot read the catalogue"):
                rows = self.rows(f"PRAGMA table_info({relation})")
        else:  # a view keeps the declared types of the columns a query selects as they are
            view = f"synthgen_query_{secrets.token_hex(4)}"
            with self.failing("cannot run the query"):
                self.execute(f"CREATE TEMPORARY VIEW {view} AS {_strip(src.query)}")
                try:
                    rows = self.rows(f"PRAGMA table_info({view})")
                finally:
                    self.execute(f"DROP VIEW {view}")
        pks = [r for r in rows if r[5]]
        return [
            SqlColumn(
                name=name,
                sql_type=declared or "",
                nullable=not notnull,
                primary_key=bool(pk) and len(pks) == 1,
            )
            for _, name, declared, notnull, _default, pk in rows
        ]

    def stream(self, sql: str, columns: list[SqlColumn]) -> Iterator[pa.RecordBatch]:
        types = [_sqlite_arrow_type(c.sql_type) for c in columns]
        cur = self.conn.cursor()
        with self.failing("cannot read"):
            cur.execute(sql)
        schema = None
        try:
            while True:
                with self.failing("reading stopped"):
                    rows = cur.fetchmany(BATCH_ROWS)
                if not rows:
                    return
                arrays = []
                for col, values, t in zip(columns, zip(*rows, strict=True), types, strict=True):
                    arrays.append(_sqlite_array(col, list(values), t, schema))
                batch = pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])
                schema = schema or batch.schema
                yield _normalised(batch, columns)
        finally:
            cur.close()

    def type_of(self, t: pa.DataType) -> str:
        return _arrow_sql_type(t, "sqlite")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.execute("ROLLBACK")

    def insert(self, table: str, columns: list[tuple[str, str]], batches: Iterable) -> int:
        names = ", ".join(quote_name(n) for n, _ in columns)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {quote_name(table)} ({names}) VALUES ({marks})"
        count = 0
        for batch in batches:
            values = [_sqlite_values(batch.column(i)) for i in range(batch.num_columns)]
            self.conn.executemany(sql, zip(*values, strict=True))
            count += batch.num_rows
        return count


_BACKENDS = {"postgresql": _Postgres, "duckdb": _DuckDB, "sqlite": _SQLite}


def _open(src: SqlSource, write: bool = False) -> _Database:
    try:
        backend = _BACKENDS[src.dialect]
        return backend(src, write)
    except ImportError as exc:
        raise UserError(
            f"{src.dialect} needs the Python package {exc.name} (a dependency of synthgen): "
            f"pip install {exc.name}"
        ) from None


def _file_path(url: str) -> str:
    """sqlite:///relative.db, sqlite:////absolute.db (SQLAlchemy's spelling)."""
    path = url.split("://", 1)[1].split("?", 1)[0]
    return path[1:] if path.startswith("/") else path


def _chain(first: Any, rest: Iterable) -> Iterator:
    yield first
    yield from rest


# --------------------------------------------------------------------------------------------------
# Arrow types


def _normalised(batch: pa.RecordBatch, columns: list[SqlColumn]) -> pa.RecordBatch:
    """A batch with the catalogue's types: fixed-point numbers as decimal128 (ADBC hands numeric
    over as text), driver extension types as their storage, enums and dictionaries as text, no
    field metadata (it would make equal batches hash differently)."""
    arrays, fields = [], []
    for col, arr in zip(columns, batch.columns, strict=True):
        if isinstance(arr.type, pa.BaseExtensionType):
            arr = arr.storage
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        if pa.types.is_binary(arr.type) and col.labels is not None:
            arr = arr.cast(pa.string())
        decimal = col.decimal
        if decimal and pa.types.is_string(arr.type):
            # numeric's NaN has no decimal: it is read as missing
            arr = pc.if_else(pc.equal(arr, "NaN"), pa.scalar(None, pa.string()), arr)
            arr = arr.cast(pa.decimal128(*decimal))
        elif pa.types.is_string(arr.type) and col.sql_type.lower().startswith("numeric"):
            arr = arr.cast(pa.float64())  # numeric without a scale: a float
        arrays.append(arr)
        fields.append(pa.field(col.name, arr.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _sqlite_arrow_type(declared: str) -> pa.DataType | None:
    """The Arrow type of a declared SQLite column type, by SQLite's affinity rules (None: the
    values decide)."""
    t = declared.upper()
    fixed = re.fullmatch(r"(?:NUMERIC|DECIMAL)\s*\((\d+),\s*(\d+)\)", t)
    if fixed and int(fixed[1]) <= 38:
        return pa.decimal128(int(fixed[1]), int(fixed[2]))
    if "BOOL" in t:
        return pa.bool_()
    if "INT" in t:
        return pa.int64()
    if any(s in t for s in ("CHAR", "CLOB", "TEXT", "DATE", "TIME")):
        return pa.string()  # SQLite keeps dates as text: the schema reads their format
    if any(s in t for s in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return pa.float64()
    return None


def _sqlite_array(
    col: SqlColumn, values: list, t: pa.DataType | None, schema: pa.Schema | None
) -> pa.Array:
    if schema is not None:  # later batches keep the first batch's types
        t = schema.field(col.name).type
    try:
        if t is not None and pa.types.is_decimal(t):
            floats = pa.array(values, pa.float64())
            return pc.round(floats, t.scale).cast(pa.decimal128(38, t.scale)).cast(t)
        if t is not None and pa.types.is_boolean(t):  # SQLite stores booleans as 0 and 1
            values = [v if v is None or isinstance(v, str) else bool(v) for v in values]
        return pa.array(values, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        raise UserError(
            f"column {col.name!r} is declared {col.sql_type or 'without a type'} but holds values "
            f"of another type ({', '.join(sorted({type(v).__name__ for v in values}))})"
        ) from None


def _sqlite_values(arr: pa.Array) -> list:
    """Python values SQLite can bind: decimals as floats, times as ISO text."""
    t = arr.type
    if pa.types.is_decimal(t):
        return arr.cast(pa.float64()).to_pylist()
    if pa.types.is_timestamp(t):
        return [None if v is None else v.isoformat(sep=" ") for v in arr.to_pylist()]
    if pa.types.is_date(t):
        return [None if v is None else v.isoformat() for v in arr.to_pylist()]
    return arr.to_pylist()


def _writable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch every driver writes: dictionaries as their values, decimals as text for COPY."""
    arrays = []
    for arr in batch.columns:
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        if pa.types.is_large_string(arr.type):
            arr = arr.cast(pa.string())
        if pa.types.is_null(arr.type):
            arr = arr.cast(pa.string())
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _arrow_sql_type(t: pa.DataType, dialect: str) -> str:
    """A column type for Arrow type `t` in `dialect`, for rows whose source was no such table."""
    pg = dialect == "postgresql"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "SMALLINT"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "INTEGER"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_float32(t):
        return "REAL"
    if pa.types.is_floating(t):
        return "DOUBLE PRECISION" if pg else "DOUBLE" if dialect == "duckdb" else "REAL"
    if pa.types.is_decimal(t):
        return f"NUMERIC({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE" if t.tz and dialect != "sqlite" else "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BYTEA" if pg else "BLOB"
    if pa.types.is_dictionary(t):
        return _arrow_sql_type(t.value_type, dialect)
    return "TEXT"


# --------------------------------------------------------------------------------------------------
# Reading


@dataclass
class SqlRead:
    """What `read_sql` read: the rows (all, or a seeded sample), the fingerprint of all of them,
    and the catalogue's columns."""

    table: pa.Table
    sha256: str
    rows: int  # rows of the source, however many were kept
    columns: list[SqlColumn]
    dialect: str
    where: str

    def to_pandas(self) -> pd.DataFrame:
        """The rows as a DataFrame: enums as categoricals with every label, in order."""
        df = arrow_to_pandas(self.table)
        for col in self.columns:
            if col.labels is not None:
                df[col.name] = pd.Categorical(df[col.name], categories=col.labels)
        check_table(df, self.where)
        return df

    def metadata(self, user: dict[str, Any] | None = None) -> dict[str, Any]:
        """The catalogue's metadata with the user's over it."""
        return merge_metadata(catalogue_metadata(self.columns), user)


class _Sample:
    """A seeded uniform sample of at most `rows` rows over a stream of batches, in their order:
    each row gets a random key and the smallest keys stay (bottom-k), so memory holds at most twice
    `rows` rows plus one batch however long the stream is."""

    def __init__(self, rows: int | None, seed: int) -> None:
        self.k = rows
        self.rng = np.random.default_rng(seed)
        self.batches: list[pa.RecordBatch] = []
        self.keys: list[np.ndarray] = []
        self.held = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)
        self.held += batch.num_rows
        if self.k is not None:
            self.keys.append(self.rng.random(batch.num_rows))
            if self.held > 2 * self.k:
                self._shrink()

    def _shrink(self) -> None:
        keys = np.concatenate(self.keys)
        keep = np.sort(np.argpartition(keys, self.k - 1)[: self.k])
        table = pa.Table.from_batches(self.batches).take(keep).combine_chunks()
        self.batches, self.keys, self.held = table.to_batches(), [keys[keep]], len(keep)

    def table(self, schema: pa.Schema) -> pa.Table:
        if self.k is not None and self.held > self.k:
            self._shrink()
        return pa.Table.from_batches(self.batches, schema=schema)


def read_sql(source: SqlSource, *, sample_rows: int | None = None, seed: int = 0) -> SqlRead:
    """Stream a table or a query's rows as Arrow batches: hash every row (the fingerprint that
    keys the model cache) and keep all of them, or a seeded sample of `sample_rows` (memory stays
    bounded however large the table)."""
    source.require_one()
    db = _open(source)
    try:
        columns = db.columns(source)
        if not columns:
            raise UserError(f"{source.where}: no columns")
        h = hashlib.sha256()
        sample = _Sample(sample_rows, seed)
        schema, rows = None, 0
        for batch in db.stream(db.select(source, columns), columns):
            if schema is None:
                schema = batch.schema
                h.update(str(schema).encode())
            elif batch.schema != schema:
                batch = batch.cast(schema)
            h.update(batch.serialize())
            rows += batch.num_rows
            sample.add(batch)
        if db.own:
            db.rollback()  # end the reading transaction (a caller's connection keeps its own)
    finally:
        db.close()
    if schema is None:  # no batch at all: an empty result
        raise UserError(f"{source.where}: table has no rows")
    h.update(str(rows).encode())
    read = SqlRead(sample.table(schema), h.hexdigest(), rows, columns, db.dialect, source.where)
    kept = read.table.num_rows
    log.info(
        "read %d rows x %d columns from %s%s",
        rows,
        len(columns),
        source.where,
        f", kept a seeded sample of {kept}" if kept < rows else "",
    )
    return read


# --------------------------------------------------------------------------------------------------
# Publishing


def publish_rows(
    target: SqlSource,
    batches: Iterable[pa.RecordBatch],
    *,
    column_types: dict[str, str] | None = None,
    not_null: Iterable[str] = (),
    source_dialect: str | None = None,
) -> dict[str, Any]:
    """Write rows to `target.table` within one transaction: into a staging table first, then
    swapped in (replace), added (append) or refused when the table exists (fail). A failed or
    killed writer leaves the table as it was: the database rolls the transaction back.

    `column_types` (the source table's SQL types) are used when the source was the same kind of
    database and the type exists there; other columns get types mapped from Arrow's.
    """
    if not target.table:
        raise UserError(f"{redact(target.url)}: give the table to publish to")
    db = _open(target, write=True)
    try:
        exists = db.exists(target.table)
        if exists and target.if_exists == "fail":
            raise UserError(f"{target.where} already exists (set if_exists: replace or append)")
        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            raise UserError("no rows to publish")
        names = first.schema.names
        appending = exists and target.if_exists == "append"
        with db.failing("cannot publish"):
            if appending:
                existing = {c.name: c.sql_type for c in db.columns(replace(target, query=None))}
                missing = [n for n in names if n not in existing]
                if missing:
                    raise UserError(
                        f"{target.where} has no column {missing[0]!r}: cannot append these rows"
                    )
                columns = [(n, existing[n]) for n in names]
            else:
                columns = _column_types(db, first.schema, column_types, source_dialect)
            staging = _in_schema(
                target.table, f"{_bare(target.table)}__synthgen_{secrets.token_hex(4)}"
            )
            keep = set(not_null)
            try:
                db.begin()
                if not appending:
                    spec = ", ".join(
                        f"{quote_name(n)} {t}{' NOT NULL' if n in keep else ''}" for n, t in columns
                    )
                    db.execute(f"CREATE TABLE {quote_name(staging)} ({spec})")
                count = db.insert(
                    target.table if appending else staging, columns, _chain(first, batches)
                )
                if not appending:  # the swap comes last: it locks out readers only briefly
                    if exists:
                        db.execute(f"DROP TABLE {quote_name(target.table)}")
                    db.rename(staging, target.table)
                db.commit()
            except BaseException:
                db.rollback()
                raise
    finally:
        db.close()
    action = "appended to" if appending else "replaced" if exists else "created"
    log.info("published %d rows to %s (%s)", count, target.where, action)
    return {"url": redact(target.url), "table": target.table, "rows": count, "action": action}


def check_target(target: Any) -> None:
    """Before any work: the database a run publishes to answers, and with if_exists: fail holds
    no such table yet."""
    src = sql_source(target)
    if src.dialect != "postgresql" and not Path(_file_path(src.url)).is_file():
        return  # created when the rows are published
    db = _open(src, write=True)
    try:
        if src.if_exists == "fail" and db.exists(src.table):
            raise UserError(f"{src.where} already exists (set if_exists: replace or append)")
        db.rollback()
    finally:
        db.close()


def _column_types(
    db: _Database,
    schema: pa.Schema,
    column_types: dict[str, str] | None,
    source_dialect: str | None,
) -> list[tuple[str, str]]:
    out = []
    for f in schema:
        given = (column_types or {}).get(f.name) if source_dialect == db.dialect else None
        out.append((f.name, given if given and db.type_exists(given) else db.type_of(f.type)))
    return out
