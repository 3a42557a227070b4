"""Anomaly scores of the VAE (negative ELBO) and the AE (reconstruction loss) against scikit-learn's
IsolationForest, on anomalies injected into held-back real rows.

    python benchmarks/anomaly.py --datasets adult,diamonds,cps1988,telco_churn,credit --seeds 0-2

compare.py's split: models are fitted on the train part (model seed 0); anomalies are made from test
rows the models never saw, as anomaly-detection benchmarks do (ADBench's three kinds):
- global: one column per row given a value no training row holds (a number 0.5-2 ranges past its
  end, a category never seen);
- dependency: every column shuffled independently across the anomalous rows, so each value is
  normal but the row is not;
- local: the two numerical columns most correlated with others each moved by one standard
  deviation of noise, kept within the column's range.
IsolationForest (200 trees, 20,000 training rows) sees numbers as they are and categories
one-hot (the 50 most frequent values) or as ordinal codes. Each kind: AUROC of the score
separating ANOMALIES anomalous rows from NORMAL clean test rows (other rows than the anomalies
were made from). Injection seeds 0..k; the mean is reported. Writes
benchmarks/results/anomaly-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402
from seeds import parse_seeds  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.schema import infer_schema  # noqa: E402

NORMAL, ANOMALIES = 2000, 200
KINDS = ("global", "dependency", "local")


def inject(test: pd.DataFrame, schema, kind: str, rng: np.random.Generator, train: pd.DataFrame):
    """(normal rows, anomalous rows) drawn from disjoint test rows."""
    perm = rng.permutation(len(test))
    bad = test.iloc[perm[:ANOMALIES]].reset_index(drop=True).copy()
    normal = test.iloc[perm[ANOMALIES : ANOMALIES + NORMAL]].reset_index(drop=True)
    modelled = [c for c in schema.columns if c.kind in ("numerical", "categorical")]
    numeric = [c.name for c in modelled if c.kind == "numerical"]
    if kind == "dependency":
        for c in bad.columns:
            bad[c] = bad[c].to_numpy()[rng.permutation(len(bad))]
    elif kind == "global":
        for i in range(len(bad)):
            col = modelled[rng.integers(len(modelled))]
            if col.kind == "numerical":
                lo, hi = train[col.name].min(), train[col.name].max()
                span = (hi - lo) or 1.0
                past = span * rng.uniform(0.5, 2.0)
                value = hi + past if rng.random() < 0.5 else lo - past
                bad[col.name] = bad[col.name].astype("float64")
                bad.loc[i, col.name] = value
            else:
                bad[col.name] = bad[col.name].astype(object)
                bad.loc[i, col.name] = "never-seen-value"
    else:  # local: the most correlated numerical columns, one standard deviation of noise
        corr = train[numeric].corr(method="spearman").abs().fillna(0.0)
        np.fill_diagonal(corr.values, 0.0)
        chosen = corr.max().sort_values(ascending=False).index[:2]
        for name in chosen:
            x = train[name].astype("float64")
            noisy = bad[name].astype("float64") + rng.normal(0, x.std(), len(bad))
            bad[name] = noisy.clip(x.min(), x.max())
    return normal, bad


def isolation_forest(train: pd.DataFrame, schema, seed: int, onehot: bool = True):
    """IsolationForest on numbers (missing: the median) and categories, one-hot (the 50 most
    frequent values) or as ordinal codes (unseen: -1): a score function."""
    from sklearn.ensemble import IsolationForest

    cats = [c.name for c in schema.columns if c.kind == "categorical"]
    nums = [c.name for c in schema.columns if c.kind == "numerical"]
    medians = train[nums].astype("float64").median()
    levels = {c: train[c].astype(str).value_counts().index[:50].tolist() for c in cats}
    codes = {c: {v: i for i, v in enumerate(train[c].astype(str).unique())} for c in cats}

    def features(df: pd.DataFrame) -> np.ndarray:
        parts = [df[nums].astype("float64").fillna(medians).to_numpy()]
        for c in cats:
            s = df[c].astype(str).to_numpy()
            if onehot:
                parts.append(np.stack([s == v for v in levels[c]], 1).astype(np.float64))
            else:
                parts.append(np.array([[codes[c].get(v, -1)] for v in s], dtype=np.float64))
        return np.concatenate(parts, 1)

    fit_rows = train.sample(min(len(train), 20_000), random_state=seed)
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(features(fit_rows))
    return lambda df: -forest.score_samples(features(df))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", default="adult,diamonds,cps1988,telco_churn,credit")
    ap.add_argument("--seeds", default="0-2", help="anomaly injection seeds")
    ap.add_argument("--data", type=Path, default=compare.DATASETS)
    ap.add_argument("--settings", default="{}", help="model settings, as JSON (default: none)")
    ap.add_argument("--models", type=Path, help="keep fitted models here and reuse them")
    args = ap.parse_args()
    settings = json.loads(args.settings)
    warnings.filterwarnings("ignore")
    from sklearn.metrics import roc_auc_score

    results = []
    for name in args.datasets.split(","):
        train, test = compare.split(name, args.data)
        schema = infer_schema(train)
        scorers = {}
        for model in ("vae", "ae"):
            t0 = time.perf_counter()
            saved = args.models / f"{name}-{model}-0" if args.models else None
            if saved and saved.exists():
                synth = Synthesizer.load(saved)
            else:
                synth = Synthesizer(model, seed=0, **settings).fit(train, progress=False)
                print(f"{name}: {model} fitted in {time.perf_counter() - t0:.0f} s", flush=True)
                if saved:
                    synth.save(saved)
            scorers[model] = lambda df, s=synth: s.score(df)["score"].to_numpy()
        scorers["isolation_forest"] = isolation_forest(train, schema, 0)
        scorers["isolation_forest_ordinal"] = isolation_forest(train, schema, 0, onehot=False)
        for kind in KINDS:
            for seed in parse_seeds(args.seeds):
                normal, bad = inject(test, schema, kind, np.random.default_rng(seed), train)
                labels = np.r_[np.zeros(len(normal)), np.ones(len(bad))]
                row = {"dataset": name, "kind": kind, "seed": seed}
                for scorer, fn in scorers.items():
                    both = pd.concat([normal, bad], ignore_index=True)
                    row[scorer] = round(float(roc_auc_score(labels, fn(both))), 4)
                results.append(row)
                print(json.dumps(row), flush=True)
    table = pd.DataFrame(results)
    scored = ["vae", "ae", "isolation_forest", "isolation_forest_ordinal"]
    means = table.groupby(["dataset", "kind"])[scored].mean().round(3)
    compare.save_results("anomaly", results, means, settings)


if __name__ == "__main__":
    main()
