"""Sampling rate into a DataFrame: the default VAE beside the same model without heaps and lookup
columns, and without profiles, alternating, median of 3 draws each; and the default model's blocks
gathered by one pd.concat at the end (how `sample` gathered them before `sample.Rows`).

    python benchmarks/sample_speed.py --datasets telco_churn,diamonds,credit,attrition,caravan
    python benchmarks/sample_speed.py --variants default --epochs 10  # quicker, less faithful
    python benchmarks/sample_speed.py --datasets adult,attrition --variants default \
        --memory-rows 4000000  # also each way's peak memory, in a process of its own

The models train as `Synthesizer` does by default: a short fit draws rows that break many more
structural zeros (attrition after 10 epochs: 99% of the rows hold an excluded pair, 62% after the
default fit), so its repair costs more than a user's model would. Writes
benchmarks/results/sample-speed-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the benchmark's split
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from synthgen import Synthesizer  # noqa: E402

CONCAT = "default, pd.concat at the end"
VARIANTS = {
    "default": {},
    "no heaps or lookups": {"heap_share": 0.0, "lookup_columns": False},
    "no profiles": {"profile_columns": False},
    "learned prior": {"prior": "learned"},  # z by the flow's ODE: an option, not the default
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="telco_churn,diamonds,credit,cps1988,adult")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=compare.DATASETS)
    ap.add_argument(
        "--variants", default="default,no heaps or lookups,no profiles", help=", ".join(VARIANTS)
    )
    ap.add_argument("--epochs", type=int, default=None, help="the models' (default: automatic)")
    ap.add_argument("--memory-rows", type=int, default=0, help="rows for the peak-memory check")
    ap.add_argument("--out", type=Path, default=None, help="results file (default: dated)")
    ap.add_argument("--peak-of", nargs=3, help=argparse.SUPPRESS)  # MODEL_DIR WAY ROWS
    args = ap.parse_args()
    if args.peak_of:
        return peak_of(*args.peak_of)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    out = {}
    for name in args.datasets.split(","):
        train, _ = compare.split(name, args.data)
        models = {
            k: Synthesizer("vae", epochs=args.epochs, seed=0, **VARIANTS[k]).fit(
                train, progress=False
            )
            for k in args.variants.split(",")
        }
        ways = {k: (m, "rows") for k, m in models.items()}
        if "default" in models:  # the blocks as `sample` draws them, gathered by pd.concat
            ways[CONCAT] = (models["default"], "concat")
        rates: dict[str, list[float]] = {k: [] for k in ways}
        for rep in range(3):
            for k, (model, way) in ways.items():
                started = time.perf_counter()
                rows = drawn(model, way, args.rows, rep)
                rates[k].append(len(rows) / (time.perf_counter() - started))
                del rows
        out[name] = {k: round(statistics.median(v)) for k, v in rates.items()}
        if args.memory_rows and "default" in models:
            with tempfile.TemporaryDirectory() as tmp:
                models["default"].save(tmp)
                for way in ("rows", "concat"):
                    run = [sys.executable, __file__, "--peak-of", tmp, way, str(args.memory_rows)]
                    found = json.loads(subprocess.run(run, capture_output=True, check=True).stdout)
                    out[name][f"peak MB, {way}"] = found["peak_mb"]
                    out[name]["frame MB"] = found["frame_mb"]
        print(name, out[name], flush=True)
    day = datetime.now(timezone.utc).date()
    path = args.out or compare.ROOT / "benchmarks" / "results" / f"sample-speed-{day}.json"
    path.write_text(json.dumps({"command": " ".join(sys.argv), "rows_per_s": out}, indent=1))
    print(f"wrote {path}")


def drawn(model: Synthesizer, way: str, n: int, seed: int) -> pd.DataFrame:
    """n rows as `sample` draws them ("rows"), or its blocks joined by one pd.concat ("concat")."""
    if way == "rows":
        return model.sample(n, seed=seed)
    return pd.concat(model._blocks(n, seed, 0, None, None), ignore_index=True)


def peak_of(model_dir: str, way: str, rows: str) -> None:
    """One way of drawing `rows` rows (`sample`, or the blocks joined by pd.concat) in this
    process: the peak of the memory NumPy and Python allocate meanwhile (tracemalloc; torch's
    own buffers are per block and not counted), and the frame's own size (MB), as JSON."""
    torch.set_num_threads(2)
    model = Synthesizer.load(model_dir)
    model.sample(1000, seed=0)
    n = int(rows)
    tracemalloc.start()
    df = drawn(model, way, n, 1)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    frame = df.memory_usage(deep=False).sum() / 2**20
    print(json.dumps({"peak_mb": round(peak), "frame_mb": round(frame)}))


if __name__ == "__main__":
    main()
