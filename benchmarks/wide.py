"""Wide tables end to end: `synthgen generate` on a 50 x 3,000 float table and a 2,000 x 1,200
mixed table, with the peak memory of the whole process tree (the issue's bar: under 3 GB each).

    python benchmarks/wide.py                 # both tables, results/wide-<date>.json
    python benchmarks/wide.py --only mixed    # one of them
    python benchmarks/wide.py --write-only /tmp/wide   # just write the tables

The tables are synthetic and seeded: the floats are a few latent factors plus noise (so columns are
correlated); the mixed table has floats, small integers, categories of 2-40 levels, flags with
missing values and dates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from synthgen import process

HERE = Path(__file__).resolve().parent


def floats_table(rows: int = 50, columns: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(rows, 8))
    x = factors @ rng.normal(size=(8, columns)) + rng.normal(scale=0.5, size=(rows, columns))
    return pd.DataFrame(x, columns=[f"f{j:04d}" for j in range(columns)])


def mixed_table(rows: int = 2000, columns: int = 1200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(rows, 6))
    data = {}
    for j in range(columns):
        signal = factors @ rng.normal(size=6) + rng.normal(scale=0.7, size=rows)
        kind = j % 5
        if kind == 0:
            data[f"x{j:04d}"] = signal * rng.uniform(1, 100)
        elif kind == 1:
            data[f"n{j:04d}"] = np.clip(np.round(signal * 3 + 10), 0, None).astype(np.int64)
        elif kind == 2:
            levels = int(rng.integers(2, 41))
            cut = np.quantile(signal, np.linspace(0, 1, levels + 1)[1:-1])
            data[f"c{j:04d}"] = pd.Series(np.digitize(signal, cut)).map(
                lambda k, j=j: f"level_{j}_{k}"
            )
        elif kind == 3:
            flag = pd.array(signal > 0, dtype="boolean")
            flag[rng.random(rows) < 0.05] = pd.NA
            data[f"b{j:04d}"] = flag
        else:
            data[f"d{j:04d}"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(
                np.round(signal * 100 + 500), unit="D"
            )
    return pd.DataFrame(data)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (from /proc)."""
    total = 0
    for p in [pid, *process.descendants(pid)]:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf(
                "SC_PAGE_SIZE"
            )
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def run_generate(table: Path, out: Path, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "synthgen.cli",
        "generate",
        str(table),
        "--out",
        str(out),
        "--seed",
        "0",
        "--sample-seed",
        "1",
        "-q",
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_mb(proc.pid))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    stop.set()
    watcher.join()
    seconds = time.perf_counter() - t0
    result = {
        "command": " ".join(cmd[1:]),
        "rc": proc.returncode,
        "seconds": round(seconds, 1),
        "peak_rss_mb_process_tree": round(peak),
        "stdout": stdout.strip().splitlines(),
        "stderr_tail": stderr.strip().splitlines()[-5:],
    }
    reports = sorted(out.glob("reports/*/*/report.json"))
    if reports:
        report = json.loads(reports[-1].read_text())
        result["timings"] = report.get("timings")
        result["scores"] = {
            m: {
                k: (d["evaluation"].get("quality") or {}).get(k)
                for k in (
                    "overall",
                    "column_shapes",
                    "column_pair_trends",
                    "pairs_scored",
                    "pairs_total",
                )
            }
            for m, d in report["models"].items()
        }
        result["plan"] = {
            m: (d.get("training") or {}).get("plan") for m, d in report["models"].items()
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["floats", "mixed"])
    parser.add_argument(
        "--write-only", type=Path, help="write the two tables into this folder and stop"
    )
    parser.add_argument("--models", default="vae,ae")
    args = parser.parse_args()
    tables = {"floats": floats_table, "mixed": mixed_table}
    if args.only:
        tables = {args.only: tables[args.only]}
    if args.write_only:
        args.write_only.mkdir(parents=True, exist_ok=True)
        for name, make in tables.items():
            make().to_parquet(args.write_only / f"wide_{name}.parquet")
        return
    results = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in tables.items():
            table = Path(tmp) / f"wide_{name}.parquet"
            make().to_parquet(table)
            out = Path(tmp) / f"out_{name}"
            results["runs"][name] = run_generate(table, out, ["--models", args.models])
            print(
                name,
                json.dumps({k: v for k, v in results["runs"][name].items() if k != "stdout"}),
                flush=True,
            )
    path = HERE / "results" / f"wide-{datetime.now(timezone.utc):%Y-%m-%d}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
