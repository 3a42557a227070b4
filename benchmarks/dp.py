"""DP mode's trade-off: the VAE at several privacy budgets on compare.py's split, scored by
synthgen.evaluate (fidelity against train; utility and the membership attacks with test).

    python benchmarks/dp.py                                    # adult and credit, epsilon 1, 3, 10
    python benchmarks/dp.py --datasets adult --epsilons 3 --seeds 0-2
    python benchmarks/dp.py --baseline rows.parquet --name MST --datasets adult --epsilons 3
        # score another tool's rows (e.g. smartnoise-synth's MST, from a separate environment)

One JSON line per run, then a markdown table; everything to results/dp-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the split and targets of the benchmark
import pandas as pd  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.evaluate import evaluate  # noqa: E402
from synthgen.schema import infer_schema  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = ("shapes", "trends", "detection", "utility", "mia_distance", "mia_density")


def seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def score(name: str, train: pd.DataFrame, test: pd.DataFrame, rows: pd.DataFrame, seed: int):
    ev = evaluate(
        train,
        rows,
        holdout=test,
        target=compare.TARGETS[name],
        schema=infer_schema(train),
        seed=seed,
    )
    mia = ev["privacy"]["membership_inference"].get("auc", {})
    return {
        "overall": ev["quality"]["overall"],
        "shapes": ev["quality"]["column_shapes"],
        "trends": ev["quality"]["column_pair_trends"],
        "detection": ev["detection"]["score"],
        "utility": ev["utility"]["ratio"],
        "mia_distance": mia.get("distance"),
        "mia_density": mia.get("density"),
        "dcr_ratio": ev["privacy"]["dcr_ratio"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="adult,credit")
    ap.add_argument("--epsilons", default="1,3,10")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--model", default="vae")
    ap.add_argument("--baseline", help="score these rows instead of training (Parquet)")
    ap.add_argument("--name", default="synthgen", help="the name the rows are reported under")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    runs = []
    for name in args.datasets.split(","):
        train, test = compare.split(name, compare.DATASETS)
        for eps in [float(e) for e in args.epsilons.split(",")]:
            for seed in seeds(args.seeds):
                t0 = time.perf_counter()
                if args.baseline:
                    rows, info = pd.read_parquet(args.baseline), {}
                    rows = rows.astype({c: train[c].dtype for c in train.columns}, errors="ignore")
                else:
                    synth = Synthesizer(args.model, epsilon=eps, seed=seed).fit(
                        train, progress=False
                    )
                    rows, info = synth.sample(len(train), seed=seed + 1), synth.info["privacy"]
                fit_s = time.perf_counter() - t0
                run = {
                    "tool": args.name,
                    "dataset": name,
                    "epsilon": eps,
                    "seed": seed,
                    **score(name, train, test, rows, seed),
                    "epsilon_spent": info.get("epsilon_spent"),
                    "fit_s": fit_s,
                }
                runs.append(run)
                print(
                    json.dumps(
                        {k: round(v, 4) if isinstance(v, float) else v for k, v in run.items()}
                    ),
                    flush=True,
                )
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["tool"], r["dataset"], r["epsilon"]), []).append(r)
    print("\n| tool | table | epsilon | seeds | " + " | ".join(FIGURES) + " |")
    print("|---" * (4 + len(FIGURES)) + "|")
    for (tool, name, eps), rs in groups.items():
        means = [statistics.mean(r[f] for r in rs if r[f] is not None) for f in FIGURES]
        print(
            f"| {tool} | {name} | {eps:g} | {len(rs)} | "
            + " | ".join(f"{m:.3f}" for m in means)
            + " |"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"dp-{args.name}-{dt.date.today()}.json"
    out.write_text(
        json.dumps({"created": dt.datetime.now(dt.UTC).isoformat(), "runs": runs}, indent=1)
    )
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
