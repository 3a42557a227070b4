"""Conditional generation on adult: synthgen's VAE against SDV's GaussianCopula
(`sample_from_conditions`), same split, same run.

    pip install -e ".[bench]"     # SDV, an optional extra
    python benchmarks/conditional.py --seeds 0-2

For each condition, ROWS rows are generated (RARE_ROWS for the rare category, timed) and scored
against the real training rows that meet the condition (the rows the models learned): SDMetrics'
Column Shapes over the columns that are not conditioned (our variant: a conditioned column is
constant in both tables and would count as a perfect 1.0), the official Column Shapes over every
column (also against the test rows that meet it, which no model saw), and the share of rows where
the conditioned column holds. The VAE is also run without its conditional class shares (the pair
counts a model keeps), as a contrast. Writes benchmarks/results/conditional-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402
from seeds import parse_seeds  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.evaluate import quality  # noqa: E402
from synthgen.schema import infer_schema  # noqa: E402

ROWS, RARE_ROWS = 20_000, 100_000
# adult: a 33% class, the 24% target class, and a 1% category
CONDITIONS = {
    "sex=Female": {"sex": "Female"},
    "income=>50K": {"income": ">50K"},
    "race=Amer-Indian-Eskimo (1%)": {"race": "Amer-Indian-Eskimo"},
}
RARE = "race=Amer-Indian-Eskimo (1%)"


def scored(real: pd.DataFrame, held: pd.DataFrame, rows: pd.DataFrame, schema, fixed: dict) -> dict:
    q = quality(real, rows, schema)
    q_held = quality(held, rows, schema)
    free = [c["score"] for c in q["columns"] if c["column"] not in fixed and c["score"] is not None]
    holds = np.mean([(rows[c].astype(str) == str(v)).mean() for c, v in fixed.items()])
    return {
        "shapes_free_columns": round(float(np.mean(free)), 4),
        "shapes_official": round(q["column_shapes"], 4),
        "shapes_official_test_rows": round(q_held["column_shapes"], 4),
        "trends_all_pairs": round(q["column_pair_trends_all_pairs"], 4),
        "condition_holds": round(float(holds), 4),
    }


def without_shares(vae: Synthesizer, seed: int, n: int, fixed: dict) -> pd.DataFrame:
    """Rows drawn without the conditional class shares (as a model saved without pair counts)."""
    counts, vae.info["pair_counts"] = vae.info["pair_counts"], None
    try:
        return vae.sample(n, seed, conditions=fixed)
    finally:
        vae.info["pair_counts"] = counts


def gaussian_copula(train: pd.DataFrame, schema, seed: int):
    from sdv.metadata import Metadata
    from sdv.sampling import Condition
    from sdv.single_table import GaussianCopulaSynthesizer

    meta = Metadata.load_from_dict(schema.to_metadata())
    np.random.seed(seed)
    synth = GaussianCopulaSynthesizer(meta)
    table = next(iter(meta.tables))
    synth.fit({table: train})  # SDV 2 takes {table: DataFrame}

    def sample(n: int, fixed: dict) -> pd.DataFrame:
        out = synth.sample_from_conditions([Condition(num_rows=n, column_values=fixed)])
        return next(iter(out.values())) if isinstance(out, dict) else out

    return sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--data", type=Path, default=compare.DATASETS)
    ap.add_argument("--no-sdv", action="store_true", help="skip GaussianCopula")
    ap.add_argument("--settings", default="{}", help="model settings, as JSON (default: none)")
    ap.add_argument("--models", type=Path, help="keep fitted VAEs here and reuse them")
    args = ap.parse_args()
    settings = json.loads(args.settings)
    warnings.filterwarnings("ignore")
    train, test = compare.split("adult", args.data)
    schema = infer_schema(train)
    results = []
    for seed in parse_seeds(args.seeds):
        t0 = time.perf_counter()
        saved = args.models / f"adult-vae-{seed}" if args.models else None
        if saved and saved.exists():
            vae = Synthesizer.load(saved)
        else:
            vae = Synthesizer("vae", seed=seed, **settings).fit(train, progress=False)
            print(f"seed {seed}: vae fitted in {time.perf_counter() - t0:.0f} s", flush=True)
            if saved:
                vae.save(saved)
        models = {"synthgen-vae": lambda n, fixed, s=seed, m=vae: m.sample(n, s, conditions=fixed)}
        if vae.info.get("pair_counts"):  # a contrast: the model's own conditional alone
            models["synthgen-vae, no class shares"] = partial(without_shares, vae, seed)
        if not args.no_sdv:
            models["sdv-gaussiancopula"] = gaussian_copula(train, schema, seed)
        for label, fixed in CONDITIONS.items():
            real, held = train, test  # the rows the models learned, and rows they never saw
            for c, v in fixed.items():
                real, held = real[real[c] == v], held[held[c] == v]
            n = RARE_ROWS if label == RARE else ROWS
            for model, sample in models.items():
                t0 = time.perf_counter()
                try:
                    rows = sample(n, fixed)
                except Exception as exc:  # SDV's rejection sampling can give up
                    row = {"seed": seed, "condition": label, "model": model, "error": str(exc)}
                    results.append(row)
                    print(json.dumps(row), flush=True)
                    continue
                seconds = time.perf_counter() - t0
                row = {
                    "seed": seed,
                    "condition": label,
                    "model": model,
                    "rows": len(rows),
                    "real_rows": len(real),
                    "seconds": round(seconds, 2),
                    "test_rows": len(held),
                    **scored(real, held, rows, schema, fixed),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    table = pd.DataFrame([r for r in results if "error" not in r])
    means = (
        table.groupby(["condition", "model"])[
            [
                "shapes_free_columns",
                "shapes_official",
                "shapes_official_test_rows",
                "trends_all_pairs",
                "seconds",
            ]
        ]
        .median()
        .round(4)
    )
    compare.save_results("conditional", results, means, settings)


if __name__ == "__main__":
    main()
