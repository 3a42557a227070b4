"""Derived columns (`derived_columns`, synthgen.encoders.derived) on and off, for issue 21.

    python benchmarks/derived.py --datasets telco_churn,diamonds --seeds 0-2

On `latent_prior.py`'s validation split (80% of compare.py's training rows; the test rows are never
read), per seed: the default VAE with derived columns off and on, each drawing as many rows as it
was fitted on (seed + 1), scored against the fit rows with synthgen.evaluate's C2ST (XGBoost-style
boosted trees, 5-fold) and SDMetrics' Column Shapes and all-pairs Column Pair Trends. A table where
the search finds no relation is fitted once (both variants are the same model). Results:
benchmarks/results/derived-columns-<date>.json.
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="telco_churn,diamonds")
    ap.add_argument("--seeds", default="0-2")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    runs = []
    for name in args.datasets.split(","):
        train = validation_split(name)
        schema = infer_schema(train)
        print(f"{name}:", flush=True)
        for seed in parse_seeds(args.seeds):
            for derived in (True, False):
                t0 = time.perf_counter()
                synth = Synthesizer("vae", seed=seed, derived_columns=derived)
                synth.fit(train, progress=False)
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
    table = pd.DataFrame(runs)
    means = table.groupby(["dataset", "derived_columns"])[["c2st_auc", "shapes", "trends_all"]]
    compare.save_results("derived-columns", runs, means.mean().round(4))


if __name__ == "__main__":
    main()
