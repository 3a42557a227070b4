"""Derived columns (`derived_columns`, synthgen.encoders.derived) on and off, for issue 21.

    python benchmarks/derived.py --datasets telco_churn,diamonds --seeds 0-2
    python benchmarks/derived.py --datasets telco_churn,diamonds --seeds 0 --speed 1000000

On `latent_prior.py`'s validation split (80% of compare.py's training rows; the test rows are never
read), per seed: the default VAE with derived columns off and on, each drawing as many rows as it
was fitted on (seed + 1), scored against the fit rows with synthgen.evaluate's C2ST (XGBoost-style
boosted trees, 5-fold) and SDMetrics' Column Shapes and all-pairs Column Pair Trends. A table where
the search finds no relation is fitted once (both variants are the same model). `--speed N`: also
rows/s of sampling N rows into a DataFrame, both models alternating, the median of 3 draws each.
Results: benchmarks/results/derived-columns[-speed]-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - save_results
import pandas as pd  # noqa: E402
from latent_prior import validation_split  # noqa: E402
from seeds import parse_seeds  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.evaluate import detection_breakdown, quality  # noqa: E402
from synthgen.schema import infer_schema  # noqa: E402


def scored(train: pd.DataFrame, rows: pd.DataFrame, schema, seed: int, fit_s: float) -> dict:
    det = detection_breakdown(train, rows, schema, seed=seed)
    q = quality(train, rows, schema)
    return {
        "c2st_auc": round(det["c2st"]["auc"], 4),
        "shapes": round(q["column_shapes"], 4),
        "trends_all": round(q["column_pair_trends_all_pairs"], 4),
        "fit_s": round(fit_s, 1),
        "top_importance": [d["column"] for d in det["importance"][:3]],
    }


def sampling_rates(models: dict, rows: int, repeats: int = 3) -> dict:
    """Rows/s of `sample(rows)` per model, alternating, the median of `repeats` draws (after a
    warm-up draw each)."""
    times: dict = {k: [] for k in models}
    for synth in models.values():
        synth.sample(rows, seed=0)
    for _ in range(repeats):
        for k, synth in models.items():
            t0 = time.perf_counter()
            synth.sample(rows, seed=1)
            times[k].append(time.perf_counter() - t0)
    return {k: round(rows / statistics.median(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="telco_churn,diamonds")
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--speed", type=int, default=0, help="rows to time sampling with (0: none)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    runs = []
    for name in args.datasets.split(","):
        train = validation_split(name)
        schema = infer_schema(train)
        print(f"{name}:", flush=True)
        for seed in parse_seeds(args.seeds):
            models = {}
            for derived in (True, False):
                t0 = time.perf_counter()
                synth = Synthesizer("vae", seed=seed, derived_columns=derived)
                synth.fit(train, progress=False)
                models[derived] = synth
                rows = synth.sample(len(train), seed=seed + 1)
                fit_s = time.perf_counter() - t0
                relations = synth.transformer.relations()
                row = {"dataset": name, "seed": seed, "derived_columns": derived}
                row.update(scored(train, rows, schema, seed, fit_s))
                row["relations"] = relations
                runs.append(row)
                print(json.dumps(row), flush=True)
                if derived and not relations:  # off would fit the same model
                    runs.append({**row, "derived_columns": False})
                    break
            if args.speed and len(models) == 2:
                rates = sampling_rates(models, args.speed)
                print(json.dumps({"dataset": name, "seed": seed, "rows_per_s": rates}), flush=True)
                for row in runs[-2:]:
                    row["sample_rows_per_s"] = rates[row["derived_columns"]]
    table = pd.DataFrame(runs)
    means = table.groupby(["dataset", "derived_columns"])[["c2st_auc", "shapes", "trends_all"]]
    kind = "derived-columns-speed" if args.speed else "derived-columns"
    compare.save_results(kind, runs, means.mean().round(4))


if __name__ == "__main__":
    main()
