"""Drawing rows from a trained model, block by block, so any number of rows fits in flat memory.

Rows form one seeded stream cut into fixed blocks of BLOCK_ROWS; block b uses seeds derived from
(seed, b) and numbers its ids from b * BLOCK_ROWS. So rows [a, b) are the same whether drawn in one call,
in batches, or in shards on other workers (shards start on a block boundary).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn

from synthgen.transform import TableTransformer

log = logging.getLogger("synthgen")

BLOCK_ROWS = 65_536


def block_seed(seed: int, block: int) -> int:
    return int(np.random.SeedSequence([seed, block]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@functools.cache
def fast_bf16(device_type: str) -> bool:
    """Whether the decoder runs in bf16 when sampling: on CUDA, and on CPUs where a bf16 matrix
    product measures faster than a float32 one (AVX512-BF16 / AMX: about 3x here). SYNTHGEN_PRECISION=fp32
    turns it off. Logits and means then carry about 3 significant digits, far below the sampling noise."""
    choice = os.environ.get("SYNTHGEN_PRECISION", "auto")
    if choice in ("fp32", "bf16"):
        return choice == "bf16"
    if device_type == "cuda":
        return True
    a, b = torch.randn(2048, 256), torch.randn(256, 256)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, w = a.to(dtype), b.to(dtype)
        torch.mm(x, w)
        t0 = time.perf_counter()
        for _ in range(10):
            torch.mm(x, w)
        timings[dtype] = time.perf_counter() - t0
    return timings[torch.bfloat16] < 0.7 * timings[torch.float32]


@torch.inference_mode()
def sample_matrix(model: nn.Module, n: int, generator: torch.Generator) -> np.ndarray:
    """z from the model's prior -> decoder -> a draw from every column's distribution: (n, n_inputs)."""
    z = model.prior.sample(n, generator)  # (n, latent)
    out_t = model.decoder.forward_t(z, torch.bfloat16 if fast_bf16(z.device.type) else None)  # (out_width, n)
    return model.likelihood.sample(out_t, generator).cpu().numpy().T  # (n, n_inputs), column-major


def iter_blocks(model: nn.Module, transformer: TableTransformer, n_rows: int, seed: int,
                start_row: int = 0) -> Iterator[pd.DataFrame]:
    """Rows [start_row, start_row + n_rows) of the seeded stream, one DataFrame per block."""
    if start_row % BLOCK_ROWS:
        raise ValueError(f"start_row must be a multiple of {BLOCK_ROWS}")
    model.eval()
    device = next(model.parameters()).device
    for first in range(start_row, start_row + n_rows, BLOCK_ROWS):
        rows = min(BLOCK_ROWS, start_row + n_rows - first)
        block = first // BLOCK_ROWS
        generator = torch.Generator(device=device).manual_seed(block_seed(seed, block))
        matrix = sample_matrix(model, rows, generator)
        yield transformer.inverse_transform(matrix, rng=np.random.default_rng([seed, block]),
                                            row_offset=first, id_seed=seed, exact=False)


def shard_range(n_rows: int, shard: int, shards: int) -> tuple[int, int]:
    """(first row, row count) of shard `shard` of `shards`: contiguous runs of whole blocks."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in [0, {shards})")
    blocks = -(-n_rows // BLOCK_ROWS)
    first, last = shard * blocks // shards, (shard + 1) * blocks // shards
    start = first * BLOCK_ROWS
    return start, max(0, min(last * BLOCK_ROWS, n_rows) - start)


def part_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


class Throughput:
    """Logs progress of long sampling runs: rows so far and rows/s."""

    def __init__(self, total: int, what: str = "sampled") -> None:
        self.total, self.what, self.done = total, what, 0
        self.start = self.last = time.perf_counter()

    def add(self, rows: int) -> None:
        self.done += rows
        now = time.perf_counter()
        if now - self.last > 5 or self.done == self.total:
            self.last = now
            log.info("%s %d/%d rows (%.0f rows/s)", self.what, self.done, self.total, self.rate)

    @property
    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.start, 1e-9)
