"""Sharded sampling on a local Dask cluster: N rows of a saved model with 1 worker vs 2 workers.

    python benchmarks/dask_sampling.py MODEL_DIR [--rows 10000000] [--shards 8] [--workers 1,2]

Each worker is a process with one thread (Dask's default for processes sets OMP_NUM_THREADS=1), so
the comparison is one core against two. Prints one JSON line per cluster size: rows/s and peak
memory per worker, and checks that the rows are the same whatever the number of workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_shard(model_dir: str, rows: int, seed: int, shard: int, shards: int, folder: str) -> str:
    from synthgen.sample import part_name
    from synthgen.synthesizer import Synthesizer

    return str(
        Synthesizer.load(model_dir, device="cpu").sample_shard(
            rows, Path(folder) / part_name(shard), seed=seed, shard=shard, shards=shards
        )
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def digest(folder: Path) -> str:
    import pandas as pd
    import pyarrow.parquet as pq

    h = hashlib.sha256()
    table = pq.read_table(folder)
    for batch in table.to_batches(max_chunksize=1_000_000):
        h.update(pd.util.hash_pandas_object(batch.to_pandas(), index=False).to_numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    from dask.distributed import Client, LocalCluster

    outputs = {}
    for n_workers in map(int, args.workers.split(",")):
        # the rows are read back only after every cluster ran: workers started from a
        # process that holds millions of rows would report that process's memory as theirs
        out = outputs[n_workers] = Path(tempfile.mkdtemp(prefix="synthgen-dask-"))
        with (
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(
                lambda: __import__("synthgen.synthesizer")
            )  # imports (torch) before the clock starts
            t0 = time.perf_counter()
            futures = [
                client.submit(
                    write_shard,
                    args.model_dir,
                    args.rows,
                    args.seed,
                    k,
                    args.shards,
                    str(out),
                    pure=False,
                )
                for k in range(args.shards)
            ]
            client.gather(futures)
            seconds = time.perf_counter() - t0
            peaks = client.run(peak_rss_mb)
        print(
            json.dumps(
                {
                    "workers": n_workers,
                    "rows": args.rows,
                    "shards": args.shards,
                    "seconds": round(seconds, 1),
                    "rows_per_s": round(args.rows / seconds),
                    "peak_rss_mb_per_worker": sorted(round(v) for v in peaks.values()),
                }
            ),
            flush=True,
        )
    digests = {n: digest(out) for n, out in outputs.items()}
    for out in outputs.values():
        shutil.rmtree(out)
    print(json.dumps({"same_rows_for_every_cluster_size": len(set(digests.values())) == 1}))


if __name__ == "__main__":
    main()
