"""Seeded splits of a table's rows: the run's train/holdout split and training's validation
split."""

from __future__ import annotations

import numpy as np


def split_rows(
    n: int, val_fraction: float, seed: int, min_rows: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of row numbers into (kept, held out), both sorted; nothing is held out below
    `min_rows`."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction)) if n >= min_rows else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
