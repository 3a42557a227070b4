"""Drawing rows from a trained model, block by block, so any number of rows fits in flat memory.

Rows form one seeded stream cut into fixed blocks of `block_rows` (BLOCK_ROWS, fewer for wide tables:
synthgen.plan.block_rows); block b uses seeds derived from (seed, b) and numbers its ids from b * block_rows. So rows [a, b) are the same whether drawn in one call,
in batches, or in shards on other workers (shards start on a block boundary), and whichever thread draws them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
from torch import nn

from synthgen.models.nets import fast_bf16, torch_threads
from synthgen.transform import TableTransformer

log = logging.getLogger("synthgen")

BLOCK_ROWS = 65_536
# On a CPU, blocks are drawn by as many threads as torch may use (at most this many), each running torch at one
# thread: a block's products are too small to split well (adult: 478k rows/s on one thread, 444k on two), whole
# blocks in parallel are not (786k on two cores), and the numbers do not depend on the machine's core count.
MAX_SAMPLING_THREADS = 8


def block_seed(seed: int, block: int) -> int:
    return int(np.random.SeedSequence([seed, block]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# On a CPU, rows are drawn SAMPLE_CHUNK at a time and the decoder runs DECODER_CHUNK rows at a time, so their
# intermediate tensors stay in cache (decoder 1.3-1.5x, category draws ~1.3x faster than whole blocks). The
# randomness is drawn for the whole block first, so the rows are the same however they are chunked.
DECODER_CHUNK, SAMPLE_CHUNK = 4096, 16384
CHUNK_VALUES = 8_000_000  # a wide table's chunks hold at most this many decoder outputs (32 MB per temporary)


def sample_matrix(model: nn.Module, n: int, generator: torch.Generator, precision: str = "auto") -> np.ndarray:
    """z from the model's prior -> decoder -> a draw from every column's distribution: (n, n_inputs)."""
    return draw_matrix_t(model, n, generator, precision).cpu().numpy().T  # column-major


@torch.inference_mode()
def draw_matrix_t(model: nn.Module, n: int, generator: torch.Generator, precision: str = "auto") -> torch.Tensor:
    """What `sample_matrix` draws, transposed and on the model's device: (n_inputs, n)."""
    z = model.prior.sample(n, generator)  # (n, latent)
    uniforms, normals = model.likelihood.draw_noise(n, generator, z.device)
    matrix_t = torch.empty(model.likelihood.n_inputs, n, device=z.device)  # (n_inputs, n)
    for a, b, out_t in _decoded(model, z, precision):
        noise = ([u[:, a:b] for u in uniforms], normals[:, a:b] if normals is not None else None)
        matrix_t[:, a:b] = model.likelihood.sample(out_t, noise)
    return matrix_t


def _prior_logits_t(model: nn.Module, n: int, generator: torch.Generator, precision: str) -> torch.Tensor:
    """The decoder's logits for n draws of z from the prior: (n_logits, n), on the model's device."""
    z = model.prior.sample(n, generator)  # (n, latent)
    logits_t = torch.empty(model.likelihood.n_logits, n, device=z.device)
    for a, b, out_t in _decoded(model, z, precision):
        logits_t[:, a:b] = out_t[:model.likelihood.n_logits]
    return logits_t


def _decoded(model: nn.Module, z: torch.Tensor, precision: str) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The decoder's transposed output for z, chunk by chunk: (a, b, (out_width, b - a)) for rows [a, b). The
    output buffer is reused: read each chunk before asking for the next."""
    bf16 = precision == "bf16" or (precision == "auto" and fast_bf16(z.device.type))
    dtype = torch.bfloat16 if bf16 else None
    n = len(z)
    if z.device.type == "cuda":
        chunk = decoder_chunk = max(n, 1)
    else:  # rows per chunk: fewer for wide outputs, so that each temporary stays small
        chunk = max(256, min(SAMPLE_CHUNK, CHUNK_VALUES // max(model.likelihood.out_width, 1)))
        decoder_chunk = min(DECODER_CHUNK, chunk)
    out_t = torch.empty(model.likelihood.out_width, min(chunk, n), device=z.device)  # (out_width, chunk)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        model.decoder.forward_t(z[a:b], dtype, chunk=decoder_chunk, out=out_t[:, :b - a])
        yield a, b, out_t[:, :b - a]


CALIBRATION_ROWS = 65_536


@torch.inference_mode()
def calibrate_marginals(model: nn.Module, training_matrix: torch.Tensor, seed: int,
                        precision: str = "auto", rows: int = CALIBRATION_ROWS) -> tuple[int, int]:
    """Fit the model's marginal calibration (models.losses.MarginalCalibration) to `rows` rows drawn
    from it with `seed`: first the class shifts, to the class shares of `training_matrix` (the encoded training
    table, (N, n_inputs)), then, on rows drawn with those shifts, the continuous maps. Returns how many softmax
    blocks and continuous values were calibrated."""
    likelihood = model.likelihood
    if likelihood.calibration is None:
        return 0, 0
    model.eval()
    likelihood.calibration.reset()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    blocks = sum(len(g.input_cols) for g in likelihood.groups)
    if blocks:
        logits_t = _prior_logits_t(model, rows, generator, precision)
        gap = likelihood.calibrate_classes(logits_t, likelihood.class_shares(training_matrix.to(device)))
        log.debug("class shares calibrated to within %.2g of the training rows'", gap)
    matrix_t = draw_matrix_t(model, rows, generator, precision)  # stays on the device
    return blocks, likelihood.calibration.fit(*likelihood.continuous_values_t(matrix_t))


def iter_blocks(model: nn.Module, transformer: TableTransformer, n_rows: int, seed: int,
                start_row: int = 0, precision: str = "auto", threads: int | None = None,
                block_rows: int = BLOCK_ROWS) -> Iterator[pd.DataFrame]:
    """Rows [start_row, start_row + n_rows) of the seeded stream, one DataFrame per block, in order.

    `precision` is the model's setting (auto, fp32, bf16): the decoder runs as the model was trained.
    `threads`: blocks drawn at once on a CPU (None: torch's thread count, at most MAX_SAMPLING_THREADS); at most
    that many blocks are held beyond the one yielded, so memory stays flat."""
    if start_row % block_rows:
        raise ValueError(f"start_row must be a multiple of {block_rows}")
    model.eval()
    device = next(model.parameters()).device
    firsts = range(start_row, start_row + n_rows, block_rows)

    def draw(first: int) -> pd.DataFrame:
        block = first // block_rows
        generator = torch.Generator(device=device).manual_seed(block_seed(seed, block))
        matrix = sample_matrix(model, min(block_rows, start_row + n_rows - first), generator, precision)
        return transformer.inverse_transform(matrix, rng=np.random.default_rng([seed, block]),
                                             row_offset=first, id_seed=seed, exact=False)

    if device.type != "cpu":
        yield from map(draw, firsts)
        return
    threads = max(1, min(threads or min(torch.get_num_threads(), MAX_SAMPLING_THREADS), len(firsts)))
    with torch_threads(1):
        yield from _in_order(draw, firsts, threads)


def _in_order(fn, items, threads: int) -> Iterator:
    """fn(item) for each item, in order, computed by `threads` threads with at most `threads` results held ahead
    (ThreadPoolExecutor.map would submit every item at once and hold all results a slow consumer has not read)."""
    if threads == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="synthgen-sample") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) == threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # a consumer that stops early does not wait for results nobody will read
            for future in pending:
                future.cancel()


def shard_range(n_rows: int, shard: int, shards: int, block_rows: int = BLOCK_ROWS) -> tuple[int, int]:
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
