"""Value protection: the bar of issue 22 and what it costs, side by side in one run.

    python benchmarks/protection.py --datasets credit,adult --seeds 0-2

For each table (split protocol of ../shared/datasets/README.md) and seed, the default VAE is fitted
twice: as shipped, and with the tails left unprotected (the encoder's `_fit_protection` skipped,
everything else equal). Each samples as many rows as train holds, scored by synthgen.evaluate
(SDMetrics' Column Shapes and Column Pair Trends, our detection and utility), and the protected
model also samples 1,000,000 rows in which no value of a numeric column may equal a training value
that fewer than rare_threshold rows hold among the column's 20 largest and 20 smallest.
Writes benchmarks/results/protection-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402
from seeds import parse_seeds  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.encoders.numerical import PROTECTED_TAIL, NumericalEncoder  # noqa: E402
from synthgen.evaluate import evaluate  # noqa: E402
from synthgen.schema import infer_schema  # noqa: E402

CHECK_ROWS = 1_000_000


def protected_values(train: pd.DataFrame, k: int) -> dict[str, np.ndarray]:
    """Per numeric column: the training values fewer than `k` rows hold among its 20 largest and
    20 smallest distinct values."""
    out = {}
    for column in train.select_dtypes("number").columns:
        counts = train[column].dropna().value_counts().sort_index()
        ends = pd.concat([counts.iloc[:PROTECTED_TAIL], counts.iloc[-PROTECTED_TAIL:]])
        out[column] = ends[ends < k].index.to_numpy()
    return out


def fit_and_score(name, train, test, schema, seed, protect: bool) -> tuple[Synthesizer, dict]:
    original = NumericalEncoder._fit_protection
    if not protect:
        NumericalEncoder._fit_protection = lambda self, values, counts: None
    try:
        t0 = time.perf_counter()
        synth = Synthesizer("vae", seed=seed).fit(train, progress=False)
        fit_s = time.perf_counter() - t0
    finally:
        NumericalEncoder._fit_protection = original
    synthetic = synth.sample(len(train), seed=seed + 1)
    ev = evaluate(
        train, synthetic, holdout=test, target=compare.TARGETS[name], schema=schema, seed=seed
    )
    return synth, {**compare.summarize(ev), "fit_s": round(fit_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default="credit,adult")
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--data", type=Path, default=compare.DATASETS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    results: dict = {"created": datetime.now(timezone.utc).isoformat(), "tables": {}}
    for name in args.datasets.split(","):
        train, test = compare.split(name, args.data)
        schema = infer_schema(train)
        runs = []
        for seed in parse_seeds(args.seeds):
            synth, on = fit_and_score(name, train, test, schema, seed, protect=True)
            _, off = fit_and_score(name, train, test, schema, seed, protect=False)
            big = synth.sample(CHECK_ROWS, seed=seed + 2)
            protected = protected_values(train, synth.settings.rare_threshold)
            hits = {
                c: int(big[c].isin(v).sum()) for c, v in protected.items() if len(v) and c in big
            }
            runs.append(
                {
                    "seed": seed,
                    "protected": on,
                    "unprotected": off,
                    "bar": {
                        "rows_checked": CHECK_ROWS,
                        "protected_values": {c: len(v) for c, v in protected.items()},
                        "hits": hits,
                        "passed": not any(hits.values()),
                    },
                }
            )
            print(name, seed, json.dumps(runs[-1]["bar"]["hits"]), flush=True)
            for key in ("shapes", "trends", "detection", "utility_ratio"):
                print(f"  {key}: protected {on[key]:.4f}  unprotected {off[key]:.4f}", flush=True)
        mean = {
            side: {
                key: float(np.mean([r[side][key] for r in runs]))
                for key in ("overall", "shapes", "trends", "detection", "utility_ratio")
            }
            for side in ("protected", "unprotected")
        }
        results["tables"][name] = {"runs": runs, "mean": mean}
        print(name, "mean", json.dumps(mean), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"protection-{datetime.now(timezone.utc):%Y-%m-%d}.json"
    path.write_text(json.dumps(results, indent=2))
    print("wrote", path)


if __name__ == "__main__":
    main()
