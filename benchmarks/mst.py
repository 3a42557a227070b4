"""The published DP baseline for benchmarks/dp.py: smartnoise-synth's MST on compare.py's split.

smartnoise-synth pins opacus < 0.15, which cannot sit beside synthgen's torch and Opacus, so it runs
in an environment of its own (MST needs neither torch nor Opacus):

    python3 -m venv /tmp/snenv
    /tmp/snenv/bin/pip install smartnoise-synth==1.0.8 --no-deps
    /tmp/snenv/bin/pip install "mbi>=1.1,<2" "smartnoise-sql>=1.0.10" "disjoint-set<0.10" Faker \\
        "pac-synth<0.0.9" "pandas<3" pyarrow
    /tmp/snenv/bin/python benchmarks/mst.py adult 3 0 /tmp/mst_adult_3_0.parquet
    python benchmarks/dp.py --baseline /tmp/mst_adult_3_0.parquet --name MST --datasets adult \\
        --epsilons 3

Numbers with more than 20 distinct values are continuous (MST bins them, spending 10% of epsilon on
their bounds); the rest are categories.
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from snsynth import Synthesizer

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def split(name: str) -> pd.DataFrame:
    """compare.py's training rows (this environment cannot import compare.py)."""
    if name == "adult":
        return pd.read_parquet(DATASETS / "adult.parquet")
    df = pd.read_parquet(DATASETS / f"{name}.parquet")
    perm = np.random.default_rng(0).permutation(len(df))
    return df.iloc[perm[round(0.2 * len(df)) :]].reset_index(drop=True)


def main() -> None:
    warnings.filterwarnings("ignore")
    name, epsilon, seed, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    train = split(name)
    continuous = [
        c
        for c in train.columns
        if pd.api.types.is_numeric_dtype(train[c]) and train[c].nunique() > 20
    ]
    categorical = [c for c in train.columns if c not in continuous]
    data = train.astype({c: str for c in categorical})
    np.random.seed(seed)
    t0 = time.time()
    synth = Synthesizer.create("mst", epsilon=epsilon, verbose=False)
    synth.fit(
        data,
        preprocessor_eps=0.1 * epsilon,
        categorical_columns=categorical,
        continuous_columns=continuous,
        nullable=True,
    )
    rows = synth.sample(len(train))
    for c in categorical:  # back to the table's own values
        if pd.api.types.is_numeric_dtype(train[c]):
            rows[c] = pd.to_numeric(rows[c], errors="coerce")
        else:
            rows[c] = rows[c].replace({"None": None, "nan": None})
    rows.to_parquet(out)
    print(
        f"{name} epsilon {epsilon}: {len(rows)} rows in {time.time() - t0:.0f} s", file=sys.stderr
    )


if __name__ == "__main__":
    main()
