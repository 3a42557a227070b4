"""Speed of embed and score on 1M rows of adult (its training part repeated), on this machine's
threads: rows/s into a DataFrame, the median of 3 after a warm-up call (and the first call alone),
with the table's encoding and without it, with text columns as Python strings (object: the
repeated objects pandas' readers give, and every value its own object) and as pandas categories,
and embed in float32 as well as in the precision sampling uses (bf16 on CPUs with bf16 units).

    python benchmarks/latent_speed.py [--model saved_model_dir] [--out figures.jsonl]
    python benchmarks/latent_speed.py --settings '{"encoder_hidden": [256, 256]}'
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
    """Rows/s of `fn()`, the median of `repeats` calls after one untimed call: the first call in a
    process also pays for memory the machine hands out for the first time (about 0.3 s here)."""
    fn()
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
    ap.add_argument("--out", type=Path, help="append the figures to this file as a JSON line")
    args = ap.parse_args()
    train, _ = compare.split("adult", compare.DATASETS)
    synth = (
        Synthesizer.load(args.model)
        if args.model
        else Synthesizer("vae", seed=0, **json.loads(args.settings)).fit(train, progress=False)
    )
    big = pd.concat([train] * (ROWS // len(train) + 1), ignore_index=True).iloc[:ROWS]
    text = [c for c in big.columns if big[c].dtype == object]
    categories = big.astype({c: "category" for c in text})
    # every value its own Python object (the rows above repeat the objects of a few, as pandas'
    # readers give): text encoding's slower path
    distinct = big.assign(
        **{c: ["".join(v) if isinstance(v, str) else v for v in big[c]] for c in text}
    )
    matrix = synth.transformer.transform(big)
    low = compute_dtype(synth.settings.precision, torch.device("cpu"))
    t0 = time.perf_counter()
    synth.embed(big)
    first_call = ROWS / (time.perf_counter() - t0)
    out = {
        "threads": torch.get_num_threads(),
        "embed_first_call_rows_per_s": round(first_call),
        "encoder_hidden": synth.settings.encoder_hidden or synth.settings.hidden,
        "embed_rows_per_s": round(median_rate(lambda: synth.embed(big))),
        "embed_categories_rows_per_s": round(median_rate(lambda: synth.embed(categories))),
        "embed_distinct_objects_rows_per_s": round(median_rate(lambda: synth.embed(distinct))),
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
    if args.out:  # one JSON line per run
        with args.out.open("a") as f:
            f.write(json.dumps({"date": time.strftime("%Y-%m-%d"), **out}) + "\n")


if __name__ == "__main__":
    main()
