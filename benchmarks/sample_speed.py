"""Sampling rate into a DataFrame: the default VAE beside the same model without heaps and lookup
columns, and without profiles, alternating, median of 3 draws each.

    python benchmarks/sample_speed.py --datasets telco_churn,diamonds,credit,attrition,caravan
    python benchmarks/sample_speed.py  # the five benchmark tables

The models train for 10 epochs only: what sampling costs (encoders, heaps, lookups, derived columns,
structural zeros) comes from the table, not from how long the model trained. Writes
benchmarks/results/sample-speed-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the benchmark's split
import torch  # noqa: E402

from synthgen import Synthesizer  # noqa: E402

VARIANTS = {
    "default": {},
    "no heaps, no lookups": {"heap_share": 0.0, "lookup_columns": False},
    "no profiles": {"profile_columns": False},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="telco_churn,diamonds,credit,cps1988,adult")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=compare.DATASETS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    out = {}
    for name in args.datasets.split(","):
        train, _ = compare.split(name, args.data)
        models = {
            k: Synthesizer("vae", epochs=10, seed=0, **v).fit(train, progress=False)
            for k, v in VARIANTS.items()
        }
        rates: dict[str, list[float]] = {k: [] for k in models}
        for rep in range(3):
            for k, model in models.items():
                started = time.perf_counter()
                rows = model.sample(args.rows, seed=rep)
                rates[k].append(len(rows) / (time.perf_counter() - started))
        out[name] = {k: round(statistics.median(v)) for k, v in rates.items()}
        print(name, out[name], flush=True)
    day = datetime.now(timezone.utc).date()
    path = compare.ROOT / "benchmarks" / "results" / f"sample-speed-{day}.json"
    path.write_text(json.dumps({"command": " ".join(sys.argv), "rows_per_s": out}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
