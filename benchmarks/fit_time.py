"""Fit time of the default VAE against the same with other settings, alternating in one process, so
that the machine's drift touches both alike: compare.py's training rows, seed 0.

    python benchmarks/fit_time.py --datasets adult,telco_churn --reps 2 \
        --settings '{"encoder_hidden": [256, 256]}'

One JSON line per fit; the medians per table and settings at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the split of the benchmark

from synthgen import Synthesizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default="adult,telco_churn")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--settings", default="{}", help="the other settings, as JSON")
    args = ap.parse_args()
    other = json.loads(args.settings)
    times: dict[tuple[str, str], list[float]] = {}
    for name in args.datasets.split(","):
        train, _ = compare.split(name, compare.DATASETS)
        for rep in range(args.reps):
            for label, settings in (("default", {}), (args.settings, other)):
                t0 = time.perf_counter()
                Synthesizer("vae", seed=0, **settings).fit(train, progress=False)
                seconds = time.perf_counter() - t0
                times.setdefault((name, label), []).append(seconds)
                row = {"dataset": name, "rep": rep, "settings": label, "fit_s": round(seconds, 1)}
                print(json.dumps(row), flush=True)
    for (name, label), values in times.items():
        print(f"{name:12s} {label:40s} median fit {statistics.median(values):.1f} s")


if __name__ == "__main__":
    main()
