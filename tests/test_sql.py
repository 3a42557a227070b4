"""Databases as inputs and outputs: a real PostgreSQL server on loopback (started here, in a
temporary folder), SQLite and DuckDB files. Ingest -> train -> publish -> read back, the column
types, the atomic swap under a failure and under SIGKILL, and no password in anything a run
writes."""

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pgserver
import pyarrow as pa
import pytest
import yaml

from synthgen.config import load_run_config
from synthgen.errors import UserError
from synthgen.sql import SqlSource, publish_rows, read_sql, redact, sql_source

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "pw-" + secrets.token_hex(12)  # unique: finding it anywhere is a leak
PASSWORD_VAR = "SYNTHGEN_TEST_PG_PASSWORD"
FAST = {
    "models": ["vae"],
    "model": {"epochs": 1, "hidden": [16], "latent_dim": 4},
    "max_eval_rows": 300,
    "scored_variants": [],
}
CUSTOMERS = """
CREATE TYPE plan AS ENUM ('basic', 'plus', 'pro');
CREATE TABLE customers (
    id integer PRIMARY KEY,
    balance numeric(10,2) NOT NULL,
    tier plan NOT NULL,
    active boolean NOT NULL,
    signed_up timestamp with time zone,
    birthday date,
    visits integer,
    city varchar(40),
    score double precision
);
INSERT INTO customers
SELECT i,
       ((i * 7919) % 100000) / 100.0,
       (ARRAY['basic', 'plus', 'pro'])[1 + (i * i) % 3]::plan,
       i % 4 <> 0,
       timestamptz '2020-01-01 00:00+00' + ((i * 3571) % 1000) * interval '1 hour',
       date '1950-01-01' + (i * 7) % 20000,
       CASE WHEN i % 10 = 0 THEN NULL ELSE (i * 13) % 50 END,
       (ARRAY['Oslo', 'Lima', 'Pune', 'Kyiv', 'Kobe'])[1 + (i * 3) % 5],
       sin(i) * 10 + i % 7
FROM generate_series(1, 800) AS i
"""


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on a free loopback port whose user logs in with PASSWORD, holding the
    `customers` table; stopped and removed after this module."""
    if pgserver.binaries() is None:
        message = "PostgreSQL binaries (initdb, pg_ctl) not found: Debian package postgresql"
        if os.environ.get("SYNTHGEN_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = pgserver.PostgresServer(PASSWORD).start()
    try:
        execute(server.url(password=True), CUSTOMERS)
        yield server
    finally:
        server.stop()


def execute(url: str, script: str) -> list:
    """Run SQL statements (';'-separated) in one transaction; the last one's rows."""
    import adbc_driver_postgresql.dbapi as adbc_pg

    rows: list = []
    with adbc_pg.connect(url) as conn, conn.cursor() as cur:
        for statement in filter(str.strip, script.split(";\n")):
            cur.execute(statement)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
    return rows


def table_types(url: str, table: str) -> dict[str, tuple[str, bool]]:
    return {
        name: (sql_type, not_null)
        for name, sql_type, not_null in execute(
            url,
            "SELECT attname::text, format_type(atttypid, atttypmod)::text, attnotnull "
            f"FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 "
            "AND NOT attisdropped",
        )
    }


def leftovers(url: str) -> list:
    return execute(url, "SELECT relname::text FROM pg_class WHERE relname LIKE '%synthgen%'")


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")


def cli(args, tmp_path, env=None, **kwargs):
    """The CLI in a fresh process writing under tmp_path (outputs, logs) and prefect_home() (the
    temporary API's database: a fresh one would cost its migrations, ~10 s)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PGPASSWORD")}
    environ.update(
        SYNTHGEN_LOG_DIR=str(tmp_path / "logs"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        **(env or {}),
    )
    argv = [sys.executable, "-m", "synthgen.cli", *map(str, args)]
    return argv, {"env": environ, "cwd": tmp_path, **kwargs}


def run_config(tmp_path, postgres, publish_table: str, **extra) -> Path:
    url = postgres.url()
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "input": {"url": url, "table": "customers", "password_env": PASSWORD_VAR},
                "publish": {
                    "url": url,
                    "table": publish_table,
                    "if_exists": "replace",
                    "password_env": PASSWORD_VAR,
                },
                "out": str(tmp_path / "out"),
                **FAST,
                **extra,
            }
        )
    )
    return config


# --------------------------------------------------------------------------------------------------
# PostgreSQL


@pytest.mark.postgres
@pytest.mark.slow
def test_a_postgres_run_publishes_with_the_source_types_and_writes_no_password(postgres, tmp_path):
    config = run_config(tmp_path, postgres, "customers_synthetic", rows=500, max_train_rows=300)
    argv, kwargs = cli(["generate", "--config", config], tmp_path, {PASSWORD_VAR: PASSWORD})
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stderr[-3000:]

    url = postgres.url(password=True)
    source, published = table_types(url, "customers"), table_types(url, "customers_synthetic")
    assert {k: v[0] for k, v in published.items()} == {k: v[0] for k, v in source.items()}
    for column in ("balance", "tier", "active"):  # NOT NULL kept
        assert published[column][1], column
    rows = read_sql(sql_source(url + "?table=customers_synthetic")).to_pandas()
    assert len(rows) == 500
    assert set(rows["tier"].dropna()) <= {"basic", "plus", "pro"}
    assert rows["active"].dtype == bool
    assert str(rows["signed_up"].dtype).endswith("UTC]")
    assert rows["id"].is_unique
    assert not leftovers(url)

    # the report names the source without a password; nothing the run wrote holds it
    report = next((tmp_path / "out" / "reports").glob("customers/*/report.json")).read_text()
    read = json.loads(report)["input"]  # 800 rows streamed, a sample of 375 kept: 300 to train
    assert (read["rows"], read["rows_read"], read["train_rows"]) == (800, 375, 300)
    assert read["path"] == postgres.url() + "?table=customers"
    assert "postgresql://synthgen@127.0.0.1" in report
    assert "numeric(10,2)" in report  # the column's database type, in the schema
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != config]
    assert any(p.suffix == ".log" for p in written)
    assert any(p.name == "manifest.json" for p in written)
    written += [p for p in prefect_home().rglob("*") if p.is_file()]  # its database of runs
    assert any(p.name.startswith("prefect.db") for p in written)
    leaks = [p for p in written if PASSWORD.encode() in p.read_bytes()]
    assert not leaks, leaks
    assert PASSWORD not in done.stdout + done.stderr


PAUSE_BEFORE_COMMIT = """
import os, time
import synthgen.sql as sql
def paused(self):  # rows copied, old table dropped, staging renamed: all but the commit
    open(os.environ["SYNTHGEN_TEST_MARK"], "w").close()
    time.sleep(600)
sql._Postgres.commit = paused
"""


@pytest.mark.postgres
@pytest.mark.slow
def test_a_run_killed_before_its_publish_commits_leaves_the_previous_table(postgres, tmp_path):
    url = postgres.url(password=True)
    execute(url, "CREATE TABLE customers_previous AS SELECT * FROM customers WHERE id <= 25")
    before = read_sql(sql_source(url + "?table=customers_previous"))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_BEFORE_COMMIT)
    mark = tmp_path / "publishing"
    config = run_config(
        tmp_path, postgres, "customers_previous", rows=400, holdout_fraction=0, max_eval_rows=100
    )
    env = {
        PASSWORD_VAR: PASSWORD,
        "SYNTHGEN_TEST_MARK": str(mark),
        "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
    }
    argv, kwargs = cli(["generate", "--config", config], tmp_path, env)
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kwargs
    )
    try:
        deadline = time.monotonic() + 600
        while not mark.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run did not reach publishing"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and Prefect's server with it
        proc.communicate()
    after = read_sql(sql_source(url + "?table=customers_previous"))
    assert after.sha256 == before.sha256 and after.rows == 25
    assert not leftovers(url)  # the staging table went with the transaction
    assert not (tmp_path / "out" / "data").exists()


class Failing(Exception):
    pass


def batches_then_failure(table: pa.Table, rows: int = 10):
    yield from table.slice(0, rows).to_batches()
    raise Failing("the disk went away")


@pytest.mark.postgres
def test_a_failed_publish_rolls_back_and_the_modes_do_what_they_say(postgres):
    url = postgres.url(password=True)
    source = read_sql(sql_source(url + "?table=customers"))
    types = {c.name: c.sql_type for c in source.columns}
    target = SqlSource(url=url, table="public.customers_modes", if_exists="replace")
    publish_rows(target, source.table.slice(0, 30).to_batches(), column_types=types,
                 source_dialect="postgresql")  # fmt: skip
    first = read_sql(sql_source(url + "?table=customers_modes"))
    with pytest.raises(Failing):
        publish_rows(target, batches_then_failure(source.table), column_types=types,
                     source_dialect="postgresql")  # fmt: skip
    assert read_sql(sql_source(url + "?table=customers_modes")).sha256 == first.sha256
    assert not leftovers(url)

    with pytest.raises(UserError, match="already exists"):
        publish_rows(SqlSource(url=url, table="customers_modes"), source.table.to_batches())
    appended = publish_rows(
        SqlSource(url=url, table="customers_modes", if_exists="append"),
        source.table.slice(0, 5).to_batches(),
    )
    assert appended["rows"] == 5 and appended["action"] == "appended to"
    assert read_sql(sql_source(url + "?table=customers_modes")).rows == 35
    with pytest.raises(UserError, match="no column 'extra'"):
        publish_rows(
            SqlSource(url=url, table="customers_modes", if_exists="append"),
            pa.table({"extra": [1]}).to_batches(),
        )


@pytest.mark.postgres
def test_the_catalogue_decides_types_and_the_fingerprint_follows_the_rows(postgres):
    url = postgres.url(password=True)
    read = read_sql(sql_source(url + "?table=customers"))
    by_name = {c.name: c for c in read.columns}
    assert by_name["tier"].labels == ["basic", "plus", "pro"]
    assert by_name["id"].primary_key and not by_name["balance"].nullable
    assert read.table.schema.field("balance").type == pa.decimal128(10, 2)
    df = read.to_pandas()
    assert list(df["tier"].cat.categories) == ["basic", "plus", "pro"]
    from synthgen.schema import infer_schema

    schema = infer_schema(df, read.metadata())
    assert schema["id"].kind == "id" and schema["tier"].kind == "categorical"
    assert schema["balance"].decimals == 2 and schema["balance"].sql_type == "numeric(10,2)"
    assert schema["signed_up"].timezone == "UTC" and schema["birthday"].kind == "datetime"
    assert schema["balance"].not_null and not schema["visits"].not_null

    import adbc_driver_postgresql.dbapi as adbc_pg

    with adbc_pg.connect(url) as conn:  # an open connection
        assert read_sql(sql_source(conn, table="customers")).sha256 == read.sha256

    # a query: its columns' types come from the catalogue too
    query = read_sql(sql_source(url, query="SELECT tier, balance FROM customers WHERE active"))
    assert [c.sql_type for c in query.columns] == ["plan", "numeric(10,2)"]
    assert query.columns[0].labels == ["basic", "plus", "pro"]

    # the fingerprint: the same rows give the same one, any changed row another
    execute(url, "CREATE TABLE fingerprinted AS SELECT * FROM customers")
    fingerprint = read_sql(sql_source(url + "?table=fingerprinted")).sha256
    assert read_sql(sql_source(url + "?table=fingerprinted")).sha256 == fingerprint
    execute(url, "UPDATE fingerprinted SET balance = balance + 0.01 WHERE id = 400")
    assert read_sql(sql_source(url + "?table=fingerprinted")).sha256 != fingerprint


@pytest.mark.postgres
def test_a_sample_is_drawn_while_streaming_with_the_whole_tables_fingerprint(postgres):
    url = postgres.url(password=True) + "?table=customers"
    whole = read_sql(sql_source(url))
    sample = read_sql(sql_source(url), sample_rows=100, seed=3)
    assert (sample.rows, sample.table.num_rows, sample.sha256) == (800, 100, whole.sha256)
    ids = sample.table.column("id").to_pylist()
    assert ids == sorted(ids)  # in the table's order
    assert read_sql(sql_source(url), sample_rows=100, seed=3).table.equals(sample.table)
    assert read_sql(sql_source(url), sample_rows=100, seed=4).table.column("id").to_pylist() != ids


@pytest.mark.postgres
def test_credentials_come_from_the_environment_a_pgpass_file_or_a_secret_block(
    postgres, tmp_path, monkeypatch, prefect_harness
):
    url = postgres.url()  # no password
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(UserError) as failed:
        read_sql(sql_source(url + "?table=customers"))
    assert str(failed.value).startswith(f"{url}: cannot connect")

    monkeypatch.setenv(PASSWORD_VAR, PASSWORD)
    src = SqlSource(url=url, table="customers", password_env=PASSWORD_VAR)
    assert read_sql(src).rows == 800
    with pytest.raises(UserError, match="NOT_SET is not set"):
        read_sql(SqlSource(url=url, table="customers", password_env="NOT_SET"))

    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres.port}:*:{pgserver.USER}:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))  # libpq reads it
    assert read_sql(sql_source(url + "?table=customers")).rows == 800
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))

    from prefect.blocks.system import Secret

    Secret(value=PASSWORD).save("synthgen-test-pg", overwrite=True)
    assert read_sql(SqlSource(url=url, table="customers", password_secret="synthgen-test-pg")).rows
    with pytest.raises(UserError, match="no Prefect Secret block named 'missing'"):
        read_sql(SqlSource(url=url, table="customers", password_secret="missing"))

    # a wrong password: one line naming the server, never the password
    bad = postgres.url().replace("synthgen@", "synthgen:not-it@")
    with pytest.raises(UserError) as failed:
        read_sql(sql_source(bad + "?table=customers"))
    assert "not-it" not in str(failed.value) and "password authentication failed" in str(
        failed.value
    )


@pytest.mark.postgres
def test_a_missing_table_is_one_error_line_and_exit_2(postgres, tmp_path):
    env = {"PGPASSWORD": PASSWORD}  # libpq's own variable
    argv, kwargs = cli(["generate", postgres.url() + "?table=nope"], tmp_path, env)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {postgres.url()}: no table 'nope'"], (
        done.stderr
    )


# --------------------------------------------------------------------------------------------------
# Without a server


def test_a_password_in_a_config_url_is_refused_and_urls_are_redacted():
    for settings in (
        {"input": "postgresql://me:hunter2@db/sales?table=t"},
        {"input": {"url": "postgresql://me@db/sales?password=hunter2", "table": "t"}},
        {"input": "x.csv", "publish": {"url": "postgresql://me:hunter2@db/s", "table": "t"}},
    ):
        with pytest.raises(UserError) as refused:
            load_run_config(None, **settings)
        assert "hunter2" not in str(refused.value) and "password_env" in str(refused.value)
    assert redact("postgresql://me:hunter2@db:5432/s?sslmode=require&password=x") == (
        "postgresql://me@db:5432/s?sslmode=require"
    )
    cfg = load_run_config(
        None,
        input="postgresql://me@db/s?table=t",
        publish="sqlite:///o.db?table=t&if_exists=append",
    )
    assert (cfg.publish.table, cfg.publish.if_exists) == ("t", "append")
    with pytest.raises(UserError, match="either a table or a query"):
        load_run_config(None, input="postgresql://me@db/s")


@pytest.fixture
def sales(tmp_path, demo_df) -> pd.DataFrame:
    return demo_df.sample(n=400, random_state=0).reset_index(drop=True)


def test_sqlite_fits_samples_and_publishes_atomically(tmp_path, sales):
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, price DECIMAL(8,2) NOT NULL, "
            "paid BOOLEAN, placed DATE, region TEXT)"
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
            [
                (
                    i,
                    round(10 + (i * 37 % 500) / 3, 2),
                    i % 3 == 0,
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                    ["n", "s", "e"][i % 3],
                )
                for i in range(300)
            ],  # fmt: skip
        )
    from synthgen.synthesizer import Synthesizer

    url = f"sqlite:///{path}"
    fast = {"epochs": 1, "hidden": [16], "latent_dim": 4}
    synth = Synthesizer("vae", **fast).fit(url, table="orders")
    assert synth.schema["price"].decimals == 2 and synth.schema["id"].kind == "id"
    assert synth.schema["placed"].kind == "datetime"
    # max_train_rows: a sample drawn while streaming; the fingerprint is the whole table's
    sampler = Synthesizer("vae", max_train_rows=100, **fast)
    assert len(sampler.preprocess(url, table="orders")) == 100
    assert sampler.info["rows"] == 300
    assert sampler.info["input_sha256"] == synth.info["input_sha256"]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE orders SET region = 'w' WHERE id = 7")
    changed = Synthesizer("vae", **fast)
    changed.preprocess(url, table="orders")
    assert changed.info["input_sha256"] != synth.info["input_sha256"]  # the model cache's key
    rows = synth.sample(100, seed=0)
    read = read_sql(sql_source(url + "?table=orders"))
    types = {c.name: c.sql_type for c in read.columns}
    target = SqlSource(url=url, table="orders_synthetic", if_exists="replace")
    table = pa.Table.from_pandas(rows, preserve_index=False)
    publish_rows(target, table.to_batches(), column_types=types, source_dialect="sqlite")
    with sqlite3.connect(path) as conn:
        declared = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(orders_synthetic)")}
    assert declared == types
    back = read_sql(sql_source(url + "?table=orders_synthetic")).to_pandas()
    assert len(back) == 100 and back["paid"].dtype == bool
    assert str(back["price"].iloc[0].as_tuple().exponent) == "-2"

    before = read_sql(sql_source(url + "?table=orders_synthetic")).sha256
    with pytest.raises(Failing):
        publish_rows(target, batches_then_failure(table), column_types=types)
    assert read_sql(sql_source(url + "?table=orders_synthetic")).sha256 == before
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    assert not [n for n in names if "synthgen" in n]
    with pytest.raises(UserError, match="no table 'nope'"):
        read_sql(sql_source(url + "?table=nope"))
    # open connections: sqlite3's, and a SQLAlchemy engine's URL
    import sqlalchemy

    with sqlite3.connect(path) as conn:
        assert read_sql(sql_source(conn, table="orders")).sha256 == read.sha256
    engine = sqlalchemy.create_engine(url)
    assert read_sql(sql_source(engine, query="SELECT * FROM orders")).rows == 300
    with pytest.raises(UserError, match="no such database file"):
        read_sql(sql_source(f"sqlite:///{tmp_path / 'absent.db'}?table=t"))


def test_duckdb_reads_a_query_and_a_connection_and_keeps_its_types(tmp_path):
    import duckdb

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        conn.execute(
            "CREATE TABLE visits AS SELECT i AS n, CAST((i % 97) / 7 AS DECIMAL(10,3)) AS amount, "
            "CAST(['sad', 'ok', 'happy'][1 + i % 3] AS mood) AS mood, "
            "TIMESTAMPTZ '2024-01-01 00:00+00' + i * INTERVAL 1 HOUR AS seen, i % 2 = 0 AS flag "
            "FROM range(500) t(i)"
        )
    url = f"duckdb:///{path}"
    read = read_sql(sql_source(url, query="SELECT amount, mood, seen, flag FROM visits"))
    assert read.table.schema.field("amount").type == pa.decimal128(10, 3)
    assert read.columns[1].labels == ["sad", "ok", "happy"]
    assert read.table.schema.field("seen").type.tz is not None
    target = SqlSource(url=url, table="visits_copy", if_exists="replace")
    types = {c.name: c.sql_type for c in read.columns}
    publish_rows(target, read.table.to_batches(), column_types=types, source_dialect="duckdb")
    with pytest.raises(Failing):
        publish_rows(target, batches_then_failure(read.table), column_types=types)
    with duckdb.connect(str(path), read_only=True) as conn:
        copied = sql_source(conn, table="visits_copy")
        again = read_sql(copied)
    assert again.sha256 == read.sha256  # same rows, same types: nothing half-written
    assert [c.sql_type for c in again.columns] == [c.sql_type for c in read.columns]
