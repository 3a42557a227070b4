"""One VAE setting over several seeds on one benchmark table:
how settings were compared before a default changed.

    python benchmarks/seeds.py credit --settings '{"beta": 0.8}' --seeds 0-7
    python benchmarks/seeds.py diamonds --seeds 0,1 --pairs
        # also the counted trend pairs and column ranges
    python benchmarks/seeds.py credit --seeds 0-7 --z-from posterior
        # diagnosis: is the prior the problem?

compare.py's split (`--validation`: its training rows split again, 80% to train on and 20% to
score utility and privacy on, for choosing defaults); per seed: fit on train (the settings over the
defaults), sample as many rows as train holds with seed + 1, score with synthgen.evaluate (fidelity
against train, utility and privacy with test). One JSON line per seed, then the means. Seed-to-seed
spread is large on the small tables (credit's utility 0.90-0.97), so compare means over several
seeds, not one run.

`--z-from posterior` decodes z drawn from the aggregate posterior (a random train row's q(z|x))
instead of the prior: a diagnosis, not a way to sample (those rows lean on single train rows). If
it scores like the prior, what the rows lack is not in the latent at all, and a better prior would
not help.
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

import compare  # noqa: E402 - the split and targets of the benchmark
import numpy as np  # noqa: E402
import torch  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.evaluate import evaluate  # noqa: E402
from synthgen.schema import infer_schema  # noqa: E402

FIGURES = (
    "overall",
    "shapes",
    "trends",
    "aligned",
    "detection",
    "c2st_auc",
    "logistic_detection",
    "utility",
    "dcr_ratio",
    "mia_auc",
    "fit_s",
)


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


def draw_from_posterior(synth: Synthesizer, train) -> None:
    """Make `synth` decode z ~ q(z | x) of a random train row
    wherever it would draw z from its prior."""
    device = next(synth.net.parameters()).device
    mu, variance = synth.net.codes(
        torch.as_tensor(synth.transformer.transform(train), dtype=torch.float32, device=device)
    )
    std = variance.sqrt()

    def sample(n: int, generator: torch.Generator | None = None) -> torch.Tensor:  # (n, latent)
        rows = torch.randint(0, len(mu), (n,), generator=generator, device=device)
        return mu[rows] + std[rows] * torch.randn(
            n, mu.shape[1], generator=generator, device=device
        )

    synth.net.prior.sample = sample


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dataset", choices=sorted(compare.TARGETS))
    ap.add_argument(
        "--settings", default="{}", help="model settings as JSON, e.g. '{\"beta\": 0.8}'"
    )
    ap.add_argument("--seeds", default="0-2", help="e.g. 0-7 or 0,3,5")
    ap.add_argument(
        "--pairs",
        action="store_true",
        help="print the counted trend pairs and each numeric column's range",
    )
    ap.add_argument(
        "--z-from",
        choices=("prior", "posterior"),
        default="prior",
        help="where generation draws z (posterior: a diagnosis, see above)",
    )
    ap.add_argument("--data", type=Path, default=compare.DATASETS)
    ap.add_argument(
        "--validation",
        action="store_true",
        help="choosing a default: hold 20%% of the training rows out as the rows utility and "
        "privacy are scored on, and never touch the test rows",
    )
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    settings = json.loads(args.settings)
    train, test = compare.split(args.dataset, args.data)
    if args.validation:
        perm = np.random.default_rng(1).permutation(len(train))
        k = round(0.2 * len(train))
        train, test = (
            train.iloc[perm[k:]].reset_index(drop=True),
            train.iloc[perm[:k]].reset_index(drop=True),
        )
    schema = infer_schema(train)
    rows = []
    for seed in parse_seeds(args.seeds):
        t0 = time.perf_counter()
        synth = Synthesizer("vae", seed=seed, **settings).fit(train, progress=False)
        fit_s = time.perf_counter() - t0
        if args.z_from == "posterior":
            draw_from_posterior(synth, train)
        synthetic = synth.sample(len(train), seed=seed + 1)
        ev = evaluate(
            train,
            synthetic,
            holdout=test,
            target=compare.TARGETS[args.dataset],
            schema=schema,
            seed=seed,
        )
        q = ev["quality"]
        row = {
            "dataset": args.dataset,
            "settings": settings,
            "z_from": args.z_from,
            "seed": seed,
            "epochs": synth.training.epochs_run,
            "overall": q["overall"],
            "shapes": q["column_shapes"],
            "trends": q["column_pair_trends"],
            "aligned": q["column_pair_trends_aligned"],
            "utility": ev["utility"]["ratio"],
            "dcr_ratio": ev["privacy"]["dcr_ratio"],
            # the stronger of the two membership attacks (nan when the holdout is too small)
            "mia_auc": ev["privacy"]["membership_inference"].get("max_auc", float("nan")),
            "mia": ev["privacy"]["membership_inference"].get("auc"),
            "detection": ev["detection"]["score"],
            "c2st_auc": ev["detection"]["c2st"]["auc"],
            "logistic_detection": ev["detection"]["logistic_detection"]["score"],
            "fit_s": fit_s,
        }
        rows.append(row)
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
            flush=True,
        )
        if args.pairs:
            counted = [p for p in q["pairs"] if p["counted"]]
            for p in sorted(counted, key=lambda p: p["score"] if p["score"] is not None else 1.0):
                print(
                    f"  {p['column_1']} x {p['column_2']}: {p['score']:.3f} official, "
                    f"{p['score_aligned']:.3f} aligned"
                )
            for col in train.select_dtypes("number").columns:
                print(
                    f"  {col}: real {train[col].min()}..{train[col].max()}, synthetic "
                    f"{synthetic[col].min()}..{synthetic[col].max()}"
                )
    means = {k: round(statistics.mean(r[k] for r in rows if r[k] is not None), 4) for k in FIGURES}
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "settings": settings,
                "z_from": args.z_from,
                "seeds": len(rows),
                "mean": means,
            }
        )
    )


if __name__ == "__main__":
    main()
