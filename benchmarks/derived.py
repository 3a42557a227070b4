"""Would derived amounts make rows harder to tell from real ones? A measurement for issue 21, made
outside the library: nothing here is used by synthgen itself.

    python benchmarks/derived.py --datasets telco_churn,diamonds --seeds 0-2
    python benchmarks/derived.py --datasets telco_churn --seeds 0-2 --sums

A column that follows from others (telco_churn's total charges = monthly charges x tenure, a
diamond's carat from its length and depth) is drawn by the VAE independently of them given z, which
blurs the relation; the classifier two-sample test finds exactly these columns. Here such relations
are found as log-linear fits, log c = a0 + sum(a_i log p_i) over positive numerical columns (greedy,
up to 3 parents, accepted when the residual's standard deviation is under TOLERANCE and at most
1/GAIN of the column's own; a derived column is never a parent). The VAE is fitted on the table
with each derived column replaced by its residual, and decoded rows get c back from their parents
and residual, rounded to the decimals the schema found in it and kept within its range.

On `latent_prior.py`'s validation split (80% of compare.py's training rows; the test rows are never
read), per seed: the default VAE on the table as it is, and on the residual table, each drawing as
many rows as it was fitted on (seed + 1), scored against the fit rows with synthgen.evaluate's C2ST
and SDMetrics' Column Shapes and all-pairs Column Pair Trends. Results:
benchmarks/results/derived-<date>.json.
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
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from latent_prior import validation_split  # noqa: E402
from seeds import parse_seeds  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.evaluate import detection_breakdown, quality  # noqa: E402
from synthgen.schema import Schema, infer_schema  # noqa: E402

TOLERANCE, GAIN, MAX_PARENTS = 0.08, 5.0, 3
SUM_GAIN, MAX_CLASSES = (
    10.0,
    10,
)  # --sums: residual sd at most 1/10; numbers of <= 10 values are classes
MIN_DISTINCT = 20  # numerical columns with fewer distinct values are left as they are


def _log_positive(s: pd.Series) -> np.ndarray:
    return np.log(s.where(s > 0).to_numpy(dtype=np.float64))


def best_fit(logs: dict[str, np.ndarray], column: str, pool: list[str]) -> tuple | None:
    """(residual sd, parents, coefficients) of the greedy log-linear fit of `column` on `pool`;
    a parent is added while it cuts the residual's sd by at least 30%."""
    y, parents, best = logs[column], [], None
    for _ in range(MAX_PARENTS):
        trial = None
        for p in pool:
            if p == column or p in parents:
                continue
            x = np.column_stack([np.ones(len(y))] + [logs[q] for q in parents + [p]])
            ok = np.isfinite(x).all(1) & np.isfinite(y)
            coef = np.linalg.lstsq(x[ok], y[ok], rcond=None)[0]
            sd = float(np.std(y[ok] - x[ok] @ coef))
            if trial is None or sd < trial[0]:
                trial = (sd, parents + [p], coef)
        if trial is None or (best is not None and trial[0] > 0.7 * best[0]):
            break
        best, parents = trial, trial[1]
    return best


def find_relations(df: pd.DataFrame) -> dict[str, tuple[list[str], np.ndarray]]:
    """Derived column -> (parents, coefficients), the strongest relation first."""
    numbers = [
        c
        for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
        and df[c].nunique() >= MIN_DISTINCT
        and (df[c].dropna() > 0).mean() > 0.98
    ]
    logs = {c: _log_positive(df[c]) for c in numbers}
    relations: dict[str, tuple[list[str], np.ndarray]] = {}
    parents_used: set[str] = set()
    while True:
        best = None
        for c in numbers:
            if c in relations or c in parents_used:
                continue
            fit = best_fit(logs, c, [p for p in numbers if p not in relations])
            if fit is None:
                continue
            gain = float(np.nanstd(logs[c])) / max(fit[0], 1e-12)
            if fit[0] < TOLERANCE and gain > GAIN and (best is None or gain > best[0]):
                best = (gain, c, fit)
        if best is None:
            return relations
        gain, c, (sd, parents, coef) = best
        relations[c] = (parents, coef)
        parents_used.update(parents)
        print(f"  {c} <- {parents}: coefficients {np.round(coef, 3)}, residual sd {sd:.4f}")


def _predicted(df: pd.DataFrame, parents: list[str], coef: np.ndarray) -> np.ndarray:
    return coef[0] + sum(a * _log_positive(df[p]) for a, p in zip(coef[1:], parents, strict=True))


def to_residuals(df: pd.DataFrame, relations: dict) -> pd.DataFrame:
    out = df.copy()
    for c, (parents, coef) in relations.items():
        out[c] = _log_positive(df[c]) - _predicted(df, parents, coef)
    return out


def from_residuals(
    rows: pd.DataFrame, relations: dict, real: pd.DataFrame, schema: Schema
) -> pd.DataFrame:
    """Each derived column from its parents and drawn residual, rounded to the decimals the
    schema found in it (full precision where none) and kept within its range."""
    out = rows.copy()
    for c, (parents, coef) in relations.items():
        values = np.exp(_predicted(out, parents, coef) + rows[c].to_numpy(dtype=np.float64))
        if schema[c].decimals is not None:
            values = np.round(values, schema[c].decimals)
        values = np.clip(values, real[c].min(), real[c].max())
        out[c] = pd.Series(values, index=out.index).astype(real[c].dtype, errors="ignore")
    return out


def find_sums(df: pd.DataFrame, skip: dict) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
    """Numerical columns that are nearly a sum of per-class amounts of the table's categories (a
    price list: telco_churn's monthly charges from its services): least squares on the classes'
    indicators, accepted when the residual's sd is at most 1/SUM_GAIN of the column's own.
    Column -> (category columns, indicator names, coefficients with the intercept first)."""
    categories = [
        c
        for c in df.columns
        if df[c].dtype == object or (df[c].nunique() <= MAX_CLASSES and c not in skip)
    ]
    sums = {}
    for c in df.columns:
        if c in skip or c in categories or not pd.api.types.is_numeric_dtype(df[c]):
            continue
        if df[c].nunique() < MIN_DISTINCT or df[c].isna().any():
            continue
        names, coef = _fit_sum(df, categories, df[c].to_numpy(dtype=np.float64))
        sd = float(np.std(df[c].to_numpy(dtype=np.float64) - _summed(df, categories, names, coef)))
        if sd * SUM_GAIN < float(df[c].std()):
            sums[c] = (categories, names, coef)
            print(f"  {c} = sum over {len(names)} classes of {categories}: residual sd {sd:.3f}")
    return sums


def _indicators(df: pd.DataFrame, categories: list[str], names: list[str] | None) -> pd.DataFrame:
    x = pd.get_dummies(df[categories].astype(str)).astype(np.float64)
    return x if names is None else x.reindex(columns=names, fill_value=0.0)


def _fit_sum(
    df: pd.DataFrame, categories: list[str], y: np.ndarray
) -> tuple[list[str], np.ndarray]:
    x = _indicators(df, categories, None)
    coef = np.linalg.lstsq(np.c_[np.ones(len(x)), x.to_numpy()], y, rcond=None)[0]
    return list(x.columns), coef


def _summed(df: pd.DataFrame, categories: list[str], names: list[str], coef: np.ndarray):
    return coef[0] + _indicators(df, categories, names).to_numpy() @ coef[1:]


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
    ap.add_argument("--sums", action="store_true", help="also sums of per-class amounts")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    runs = []
    for name in args.datasets.split(","):
        train = validation_split(name)
        schema = infer_schema(train)
        print(f"{name}:", flush=True)
        relations = find_relations(train)
        sums = find_sums(train, relations) if args.sums else {}
        if not relations and not sums:
            print("  no relation found", flush=True)
            continue
        derived = to_residuals(train, relations)
        for c, (categories, names, coef) in sums.items():  # the products read the real amounts
            derived[c] = train[c] - _summed(train, categories, names, coef)
        for seed in parse_seeds(args.seeds):
            for variant, table in (("as is", train), ("derived", derived)):
                t0 = time.perf_counter()
                synth = Synthesizer("vae", seed=seed).fit(table, progress=False)
                rows = synth.sample(len(train), seed=seed + 1)
                fit_s = time.perf_counter() - t0
                if variant == "derived":
                    for c, (categories, names, coef) in sums.items():  # first: a product's parent
                        values = rows[c].to_numpy(dtype=np.float64) + _summed(
                            rows, categories, names, coef
                        )
                        if schema[c].decimals is not None:
                            values = np.round(values, schema[c].decimals)
                        rows[c] = np.clip(values, train[c].min(), train[c].max())
                    rows = from_residuals(rows, relations, train, schema)
                row = {"dataset": name, "seed": seed, "variant": variant}
                row.update(scored(train, rows, schema, seed, fit_s))
                row["relations"] = {c: p for c, (p, _) in relations.items()}
                row["sums"] = {c: cats for c, (cats, _, _) in sums.items()}
                runs.append(row)
                print(json.dumps(row), flush=True)
    table = pd.DataFrame(runs)
    if len(table):
        means = table.groupby(["dataset", "variant"])[["c2st_auc", "shapes", "trends_all"]].mean()
        compare.save_results("derived", runs, means.round(4), {"sums": True} if args.sums else None)


if __name__ == "__main__":
    main()
