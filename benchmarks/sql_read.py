"""Reading a 300k-row table from a real PostgreSQL server on loopback: pandas.read_sql through
SQLAlchemy (psycopg 3) against synthgen's reader (ADBC, Arrow batches), side by side, median of
`--repeats` runs each, interleaved; connectorx and bare ADBC for reference. Then the peak resident
memory of a read that keeps all rows against one that keeps a `max_train_rows` sample, on the
table and on one `--scale` times larger.

    pip install -e ".[bench]"   # psycopg, connectorx
    python benchmarks/sql_read.py [--rows 300000] [--repeats 3] [--scale 5]

Starts its own server (PostgreSQL's binaries: Debian's postgresql package) in a temporary folder;
writes benchmarks/results/sql_read.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import pgserver  # noqa: E402

from synthgen.sql import read_sql, sql_source  # noqa: E402

SHARED = Path(os.environ.get("SYNTHGEN_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
PASSWORD = "bench"

# VmHWM, not getrusage's ru_maxrss: that one carries the parent's peak over fork and exec
PEAK_RSS = """
import sys, time
sys.path.insert(0, {root!r})
from synthgen.sql import read_sql, sql_source
t0 = time.perf_counter()
read = read_sql(sql_source({url!r}), sample_rows={sample})
df = read.to_pandas()
seconds = time.perf_counter() - t0
status = open("/proc/self/status").read()
peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
print(read.rows, len(df), seconds, peak / 1024)
"""


def load(url: str, table: str, df: pd.DataFrame, times: int = 1) -> None:
    import adbc_driver_postgresql.dbapi as adbc_pg

    data = pa.Table.from_pandas(df, preserve_index=False)
    with adbc_pg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        for k in range(times):
            cur.adbc_ingest(table, data, mode="create" if k == 0 else "append")
        conn.commit()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=int, default=5, help="the larger table: this many copies")
    ap.add_argument("--sample", type=int, default=20_000, help="max_train_rows of the RSS runs")
    args = ap.parse_args()

    flights = pd.read_parquet(SHARED / "flights.parquet").head(args.rows)
    server = pgserver.PostgresServer(PASSWORD).start()
    try:
        url = server.url(password=True)
        load(url, "flights", flights)
        load(url, "flights_large", flights, times=args.scale)

        import connectorx
        import sqlalchemy

        engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        query = "SELECT * FROM flights"

        def pandas_sqlalchemy():
            with engine.connect() as conn:
                return pd.read_sql(query, conn)

        def synthgen_reader():
            return read_sql(sql_source(url + "?table=flights")).to_pandas()

        def adbc_arrow():
            import adbc_driver_postgresql.dbapi as adbc_pg

            with adbc_pg.connect(url) as conn, conn.cursor() as cur:
                cur.execute(query)
                return cur.fetch_arrow_table()

        def connectorx_arrow():
            return connectorx.read_sql(url, query, return_type="arrow")

        def copy_bytes():  # the server's side alone: COPY's binary rows, not decoded
            import psycopg

            with psycopg.connect(url) as conn, conn.cursor() as cur:
                with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as copy:
                    return sum(len(data) for data in copy)

        readers = {
            "pandas.read_sql + SQLAlchemy (psycopg 3), to a DataFrame": pandas_sqlalchemy,
            "synthgen read_sql (ADBC batches, SHA-256, to a DataFrame)": synthgen_reader,
            "bare ADBC, to an Arrow table": adbc_arrow,
            "connectorx, to an Arrow table": connectorx_arrow,
            "COPY ... (FORMAT binary) bytes, not decoded (psycopg 3)": copy_bytes,
        }
        assert len(pandas_sqlalchemy()) == len(synthgen_reader()) == args.rows  # and warm up
        times: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(args.repeats):  # interleaved: a busy moment hits every reader alike
            for name, fn in readers.items():
                times[name].append(timed(fn))
        medians = {name: statistics.median(t) for name, t in times.items()}
        batches = adbc_arrow().to_batches()  # what the fingerprint costs: SHA-256 of every batch
        hashing = statistics.median(
            timed(lambda: [hashlib.sha256().update(b.serialize()) for b in batches])
            for _ in range(args.repeats)
        )
        baseline = medians["pandas.read_sql + SQLAlchemy (psycopg 3), to a DataFrame"]

        memory = []
        for table, rows in (("flights", args.rows), ("flights_large", args.rows * args.scale)):
            for sample in (None, args.sample):
                code = PEAK_RSS.format(root=str(ROOT), url=f"{url}?table={table}", sample=sample)
                out = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                ).stdout.split()
                memory.append(
                    {
                        "table_rows": rows,
                        "max_train_rows": sample,
                        "rows_kept": int(out[1]),
                        "seconds": round(float(out[2]), 2),
                        "peak_rss_mb": round(float(out[3])),
                    }
                )
    finally:
        server.stop()

    result = {
        "table": f"flights, first {args.rows:,} rows x {flights.shape[1]} columns",
        "server": "PostgreSQL on loopback, fresh initdb, fsync off",
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "speedup_over_pandas": {k: round(baseline / v, 2) for k, v in medians.items()},
        "sha256_of_all_batches_seconds": round(hashing, 3),
        "peak_rss": memory,
    }
    out_dir = ROOT / "benchmarks" / "results"
    (out_dir / "sql_read.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Reading from PostgreSQL: {result['table']}",
        "",
        f"{result['server']}, {result['cpus']} CPUs, median of {args.repeats} interleaved runs.",
        "",
        "| reader | median s | runs | vs pandas.read_sql |",
        "|---|---|---|---|",
    ]
    for name, median in medians.items():
        runs = ", ".join(f"{x:.2f}" for x in times[name])
        lines.append(f"| {name} | {median:.2f} | {runs} | {baseline / median:.1f}x |")
    lines += [
        "",
        f"SHA-256 over every batch (the fingerprint): {hashing:.2f} s.",
        "",
        "| table rows | max_train_rows | rows kept | seconds | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for m in memory:
        lines.append(
            f"| {m['table_rows']:,} | {m['max_train_rows'] or '-'} | {m['rows_kept']:,} | "
            f"{m['seconds']} | {m['peak_rss_mb']} |"
        )
    (out_dir / "sql_read.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
