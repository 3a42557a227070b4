"""Speed of embed and score on 1M rows of adult (its training part repeated), on this machine's
threads: rows/s into a DataFrame, the median of 3, with the table's encoding and without it.

    python benchmarks/latent_speed.py [--model saved_model_dir]
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
    args = ap.parse_args()
    train, _ = compare.split("adult", compare.DATASETS)
    synth = (
        Synthesizer.load(args.model)
        if args.model
        else Synthesizer("vae", seed=0).fit(train, progress=False)
    )
    big = pd.concat([train] * (ROWS // len(train) + 1), ignore_index=True).iloc[:ROWS]
    matrix = synth.transformer.transform(big)
    out = {
        "threads": torch.get_num_threads(),
        "embed_rows_per_s": round(median_rate(lambda: synth.embed(big))),
        "embed_encoded_rows_per_s": round(median_rate(lambda: embed_matrix(synth.net, matrix))),
        "encode_rows_per_s": round(median_rate(lambda: synth.transformer.transform(big))),
        "score_rows_per_s": round(median_rate(lambda: synth.score(big), repeats=1)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
