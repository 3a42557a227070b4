"""Speed of embed and score on 1M rows of adult (its training part repeated), on this machine's
threads: rows/s into a DataFrame, the median of 3, with the table's encoding and without it, with
text columns as Python strings (object) and as pandas categories, and embed in float32 as well as
in the precision sampling uses (bf16 on CPUs with bf16 units).

    python benchmarks/latent_speed.py [--model saved_model_dir]
    python benchmarks/latent_speed.py --settings '{"encoder_hidden": [256]}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare  # noqa: E402

from synthgen import Synthesizer  # noqa: E402
from synthgen.models.draw import compute_dtype  # noqa: E402
from synthgen.score import embed_matrix  # noqa: E402

ROWS = 1_000_000


def median_rate(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return ROWS / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, help="a saved adult model (default: fit one, seed 0)")
    ap.add_argument("--settings", default="{}", help="model settings of the fitted one, as JSON")
    args = ap.parse_args()
    train, _ = compare.split("adult", compare.DATASETS)
    synth = (
        Synthesizer.load(args.model)
        if args.model
        else Synthesizer("vae", seed=0, **json.loads(args.settings)).fit(train, progress=False)
    )
    big = pd.concat([train] * (ROWS // len(train) + 1), ignore_index=True).iloc[:ROWS]
    categories = big.astype({c: "category" for c in big.columns if big[c].dtype == object})
    matrix = synth.transformer.transform(big)
    low = compute_dtype(synth.settings.precision, torch.device("cpu"))
    out = {
        "threads": torch.get_num_threads(),
        "encoder_hidden": synth.settings.encoder_hidden or synth.settings.hidden,
        "embed_rows_per_s": round(median_rate(lambda: synth.embed(big))),
        "embed_categories_rows_per_s": round(median_rate(lambda: synth.embed(categories))),
        "embed_encoded_rows_per_s": round(
            median_rate(lambda: embed_matrix(synth.net, matrix, low))
        ),
        "embed_encoded_fp32_rows_per_s": round(
            median_rate(lambda: embed_matrix(synth.net, matrix))
        ),
        "embed_dtype": str(low or torch.float32),
        "encode_rows_per_s": round(median_rate(lambda: synth.transformer.transform(big))),
        "encode_categories_rows_per_s": round(
            median_rate(lambda: synth.transformer.transform(categories))
        ),
        "score_rows_per_s": round(median_rate(lambda: synth.score(big), repeats=1)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
