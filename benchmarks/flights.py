"""The large-table bars on flights (336,776 rows): default fit time and peak memory,
sample_to_parquet of 10,000,000 rows and its peak memory, and evaluation time on the 80/20 split.

    python benchmarks/flights.py [--data ../shared/datasets/flights.parquet]
                                 [--work /tmp/synthgen-flights]

Each stage runs in its own process, so each peak memory (ru_maxrss) is that stage's own.
One JSON line per stage.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def fit(data: Path, work: Path) -> dict:
    from synthgen import Synthesizer

    t0 = time.perf_counter()
    synth = Synthesizer("vae").fit(data, progress=False)
    out = {
        "fit_s": round(time.perf_counter() - t0, 1),
        "epochs": synth.training.epochs_run,
        "precision": synth.training.precision,
        "peak_rss_mb": peak_mb(),
    }
    synth.save(work / "vae")
    return out


def sample(data: Path, work: Path) -> dict:
    from synthgen import Synthesizer

    synth = Synthesizer.load(work / "vae")
    t0 = time.perf_counter()
    synth.sample_to_parquet(10_000_000, work / "rows-10m.parquet", seed=1)
    seconds = time.perf_counter() - t0
    return {
        "rows": 10_000_000,
        "seconds": round(seconds, 1),
        "rows_per_s": round(10_000_000 / seconds),
        "peak_rss_mb": peak_mb(),
    }


def evaluate(data: Path, work: Path) -> dict:
    import numpy as np
    import pandas as pd

    from synthgen import Synthesizer
    from synthgen.evaluate import evaluate as score

    df = pd.read_parquet(data)
    perm = np.random.default_rng(0).permutation(len(df))
    k = round(0.2 * len(df))
    train, test = df.iloc[perm[k:]].reset_index(drop=True), df.iloc[perm[:k]].reset_index(drop=True)
    synth = Synthesizer.load(work / "vae")
    rows = synth.sample(len(train), seed=2)
    t0 = time.perf_counter()
    ev = score(train, rows, holdout=test, target="arr_delay", schema=synth.schema)
    return {
        "evaluate_s": round(time.perf_counter() - t0, 1),
        "seconds": ev["seconds"],
        "scored_rows": [ev["rows"]["scored_real"], ev["rows"]["scored_synthetic"]],
        "overall": round(ev["quality"]["overall"], 3),
        "detection": round(ev["detection"]["score"], 3),
    }


STAGES = {"fit": fit, "sample": sample, "evaluate": evaluate}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "flights.parquet"
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/synthgen-flights"))
    ap.add_argument(
        "--stage",
        choices=list(STAGES),
        help="run one stage in this process (the script runs each so)",
    )
    args = ap.parse_args()
    if args.stage:
        print(
            json.dumps({"stage": args.stage, **STAGES[args.stage](args.data, args.work)}),
            flush=True,
        )
        return
    args.work.mkdir(parents=True, exist_ok=True)
    for stage in STAGES:
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--stage",
                stage,
                "--data",
                str(args.data),
                "--work",
                str(args.work),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
