"""Drawing rows from a trained model, block by block, so any number of rows fits in flat memory.

Rows form one seeded stream cut into fixed blocks of `block_rows` (BLOCK_ROWS, fewer for wide
tables: synthgen.plan.block_rows); block b uses seeds derived from (seed, b) and numbers its ids
from b * block_rows. So rows [a, b) are the same whether drawn in one call, in batches, or in shards
on other workers (shards start on a block boundary), and whichever thread draws them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn

from synthgen.models.draw import sample_matrix
from synthgen.runtime import in_order, torch_threads
from synthgen.transform import MAX_UNMERGED_COLUMNS, TableTransformer

log = logging.getLogger("synthgen")

BLOCK_ROWS = 65_536
# On a CPU, blocks are drawn by as many threads as torch may use (at most this many), each running
# torch at one thread: a block's products are too small to split across cores, whole blocks in
# parallel are not.
MAX_SAMPLING_THREADS = 8


def block_seed(seed: int, block: int) -> int:
    return int(
        np.random.SeedSequence([seed, block]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)
    )


def iter_blocks(
    model: nn.Module,
    transformer: TableTransformer,
    n_rows: int,
    seed: int,
    start_row: int = 0,
    precision: str = "auto",
    threads: int | None = None,
    block_rows: int = BLOCK_ROWS,
    prior: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Rows [start_row, start_row + n_rows) of the seeded stream, one DataFrame per block, in order.

    `precision` is the model's setting (auto, fp32, bf16): the decoder runs as it was trained.
    `threads`: blocks drawn at once on a CPU (None: torch's thread count, at most
    MAX_SAMPLING_THREADS); at most that many blocks are held beyond the one yielded, so memory stays
    flat."""
    if start_row % block_rows:
        raise ValueError(f"start_row must be a multiple of {block_rows}")
    model.eval()
    device = next(model.parameters()).device
    firsts = range(start_row, start_row + n_rows, block_rows)

    def draw(first: int) -> pd.DataFrame:
        block = first // block_rows
        generator = torch.Generator(device=device).manual_seed(block_seed(seed, block))
        matrix = sample_matrix(
            model, min(block_rows, start_row + n_rows - first), generator, precision, prior
        )
        return transformer.inverse_transform(
            matrix,
            rng=np.random.default_rng([seed, block]),
            row_offset=first,
            id_seed=seed,
            exact=False,
        )

    if device.type != "cpu":
        yield from map(draw, firsts)
        return
    threads = max(
        1, min(threads or min(torch.get_num_threads(), MAX_SAMPLING_THREADS), len(firsts))
    )
    with torch_threads(1):
        yield from in_order(draw, firsts, threads)


class Rows:
    """Blocks of rows gathered into one DataFrame of `n` rows: each block is copied into columns
    allocated once, as it arrives (while the next blocks are still drawn), so the whole table is
    not copied again at the end, and the blocks are not all held at once. A column whose blocks
    are not all of one NumPy dtype (pandas' own dtypes, or a dtype that changes between blocks)
    is concatenated by pandas at the end, as pd.concat would."""

    def __init__(self, n: int) -> None:
        self.n, self.done = n, 0
        self.whole: pd.DataFrame | None = None  # a first block of all n rows, kept as it is
        self.names: list = []
        self.arrays: dict = {}  # column -> (n,) array written so far
        self.pieces: dict = {}  # column -> list of Series, for pd.concat

    def add(self, block: pd.DataFrame) -> None:
        a, b = self.done, self.done + len(block)
        if b > self.n:
            raise ValueError(f"{b} rows where {self.n} were expected")
        if a == 0 and b == self.n:
            self.whole, self.done = block, b
            return
        if not self.names:
            self.names = list(block.columns)
        for name in self.names:
            column = block[name]
            out = self.arrays.get(name)
            if out is None and a == 0 and isinstance(column.dtype, np.dtype):
                out = self.arrays[name] = np.empty(self.n, column.dtype)
            if out is not None and column.dtype == out.dtype:
                out[a:b] = column.to_numpy()
                continue
            if out is not None:  # the dtype changed: what was written becomes the first piece
                self.pieces[name] = [pd.Series(self.arrays.pop(name)[:a], name=name)]
            self.pieces.setdefault(name, []).append(column.reset_index(drop=True))
        self.done = b

    def frame(self) -> pd.DataFrame:
        """The n rows (all must have been added)."""
        if self.done != self.n:
            raise ValueError(f"{self.done} rows of {self.n} were added")
        if self.whole is not None:
            return self.whole
        data = {
            name: self.arrays[name]
            if name in self.arrays
            else pd.concat(self.pieces[name], ignore_index=True)
            for name in self.names
        }
        # wide tables merged into 2-D blocks, as TableTransformer.inverse_transform does
        return pd.DataFrame(data, columns=self.names, copy=len(data) > MAX_UNMERGED_COLUMNS)


def shard_range(
    n_rows: int, shard: int, shards: int, block_rows: int = BLOCK_ROWS
) -> tuple[int, int]:
    """(first row, row count) of shard `shard` of `shards`: contiguous runs of whole blocks."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in [0, {shards})")
    blocks = -(-n_rows // block_rows)
    first, last = shard * blocks // shards, (shard + 1) * blocks // shards
    start = first * block_rows
    return start, max(0, min(last * block_rows, n_rows) - start)


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
