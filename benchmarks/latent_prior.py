"""Where z comes from and how rows are decoded, judged by a classifier two-sample test (issue 21).

    python benchmarks/latent_prior.py --datasets adult,telco_churn --seeds 0-2 \
        --betas 0.7,0.1 --priors standard,learned --temperatures 1,0.8

For choosing defaults only: every table's training rows (compare.py's split) are split again, 80%
to fit on and 20% left aside (`seeds.py --validation`'s split); the test rows are never read. Per
table, seed and KL weight, one VAE is fitted with prior="learned" (its flow fitted after the
autoencoder); each prior and decoding temperature is then scored on the same network: the marginal
calibration is refitted to that way of drawing, as many rows as the fit rows are drawn, and scored
against the fit rows with synthgen.evaluate's C2ST (gradient boosting, 5 folds, up to 20k rows per
side) and SDMetrics' Column Shapes and all-pairs Column Pair Trends. `--ae` adds the AE with its
fitted Gaussian and with a learned prior. Results: benchmarks/results/latent_prior-<date>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the split of the benchmark
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from seeds import parse_seeds  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.evaluate import detection_breakdown, quality  # noqa: E402
from synthgen.models.calibration import calibrate_marginals  # noqa: E402
from synthgen.schema import infer_schema  # noqa: E402


def validation_split(name: str) -> pd.DataFrame:
    """The rows settings are chosen on: 80% of compare.py's training rows (as seeds.py
    --validation)."""
    train, _ = compare.split(name, compare.DATASETS)
    perm = np.random.default_rng(1).permutation(len(train))
    return train.iloc[perm[round(0.2 * len(train)) :]].reset_index(drop=True)


def draw_as(
    synth: Synthesizer,
    prior: str,
    temperature: float,
    steps: int,
    zeros: bool,
    rows: int,
    seed: int,
):
    """Rows drawn with z from `prior` (a learned one integrated in `steps` midpoint steps),
    decoded at `temperature`, with or without the structural zeros, the calibration refitted."""
    net = synth.net
    net.prior.kind, net.likelihood.temperature = prior, temperature
    if net.prior.flow is not None:
        net.prior.flow.steps = steps
    net.likelihood.set_exclusions(synth.info.get("exclusions") if zeros else None)
    matrix = synth.transformer.transform(synth._train_frame)
    calibrate_marginals(net, torch.from_numpy(matrix), synth.settings.seed, rows=65_536)
    t0 = time.perf_counter()
    df = synth.sample(rows, seed=seed)
    return df, rows / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default="adult,telco_churn,credit")
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--betas", default="0.7", help="the VAE's KL weights ('': no VAE)")
    ap.add_argument("--priors", default="standard,learned")
    ap.add_argument("--temperatures", default="1")
    ap.add_argument("--ode-steps", default="5", help="the learned prior's midpoint steps")
    ap.add_argument(
        "--zeros", default="on", help="structural zeros kept (on), not (off), or both (on,off)"
    )
    ap.add_argument("--settings", default="{}", help="other model settings as JSON")
    ap.add_argument("--ae", action="store_true", help="also the AE: fitted vs learned prior")
    ap.add_argument(
        "--flow-on",
        choices=("draws", "means"),
        default="draws",
        help="what the flow learns: draws from each row's q(z|x) (synthgen's), or the means",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    extra = json.loads(args.settings)
    if args.flow_on == "means":  # a contrast: the flow learns the posterior means (TabSyn's)
        import synthgen.train as train_module

        fit = train_module.fit_flow
        train_module.fit_flow = lambda flow, codes, variances, *a: fit(flow, codes, None, *a)
    runs = []
    models = [("vae", float(b)) for b in args.betas.split(",") if b]
    if args.ae:
        models.append(("ae", None))
    for name in args.datasets.split(","):
        train = validation_split(name)
        schema = infer_schema(train)
        for seed, (model, beta) in itertools.product(parse_seeds(args.seeds), models):
            settings = {"prior": "learned", **extra}
            if beta is not None:
                settings["beta"] = beta
            t0 = time.perf_counter()
            synth = Synthesizer(model, seed=seed, **settings).fit(train, progress=False)
            fit_s = time.perf_counter() - t0
            synth._train_frame = train
            priors = args.priors.split(",") if model == "vae" else ["fitted", "learned"]
            if model == "ae":  # its Gaussian: fitted here, as the AE's default does
                from synthgen.train import _codes, _null_context

                x = torch.from_numpy(synth.transformer.transform(train))
                synth.net.prior.fit(_codes(synth.net, x, 8192, _null_context())[0])
            ways = [
                (prior, temp, steps, zeros == "on")
                for prior in priors
                for temp in map(float, args.temperatures.split(","))
                for steps in (map(int, args.ode_steps.split(",")) if prior == "learned" else [0])
                for zeros in args.zeros.split(",")
            ]
            for prior, temp, steps, zeros in ways:
                synthetic, rate = draw_as(
                    synth, prior, temp, steps or 1, zeros, len(train), seed + 1
                )
                det = detection_breakdown(train, synthetic, schema, seed=seed)
                q = quality(train, synthetic, schema)
                row = {
                    "dataset": name,
                    "model": model,
                    "seed": seed,
                    "beta": beta,
                    "settings": extra,
                    "flow_on": args.flow_on,
                    "prior": prior,
                    "temperature": temp,
                    "ode_steps": steps,
                    "zeros": zeros,
                    "c2st_auc": det["c2st"]["auc"],
                    "logistic_detection": det["logistic_detection"]["score"],
                    "shapes": q["column_shapes"],
                    "trends_all": q["column_pair_trends_all_pairs"],
                    "trends_aligned": q["column_pair_trends_aligned"],
                    "fit_s": fit_s,
                    "prior_fit_s": (synth.training.prior_fit or {}).get("seconds"),
                    "sample_rows_per_s": rate,
                    "top_pair": (det["pairs"] or [{}])[0],
                    "top_importance": det["importance"][:3],
                }
                runs.append(row)
                print(
                    json.dumps(
                        {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()},
                        default=str,
                    ),
                    flush=True,
                )
    df = pd.DataFrame(runs)
    keys = ["dataset", "model", "beta", "prior", "temperature", "ode_steps", "zeros"]
    summary = (
        df.groupby(keys, dropna=False)[["c2st_auc", "shapes", "trends_all", "sample_rows_per_s"]]
        .mean()
        .round(4)
    )
    print(summary.to_string())
    out = args.out or (
        compare.ROOT / "benchmarks" / "results" / f"latent_prior-{time.strftime('%Y-%m-%d')}.json"
    )
    out.write_text(json.dumps({"command": " ".join(sys.argv), "runs": runs}, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
