"""The model as a generator of encoded rows: z from its prior, through the decoder, a draw from
every column's distribution. Rows are drawn in chunks whose size depends only on the output's width;
the randomness is drawn for all rows first, so the rows are the same however they are chunked."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from synthgen.runtime import fast_bf16

# On a CPU, rows are drawn SAMPLE_CHUNK at a time and the decoder runs DECODER_CHUNK rows at a time,
# so their intermediate tensors stay in cache. The randomness is drawn for the whole block first, so
# the rows are the same however they are chunked.
DECODER_CHUNK, SAMPLE_CHUNK = 4096, 16384
# a wide table's chunks hold at most this many decoder outputs (32 MB per temporary)
CHUNK_VALUES = 8_000_000


def sample_matrix(
    model: nn.Module,
    n: int,
    generator: torch.Generator,
    precision: str = "auto",
    prior: str | None = None,
) -> np.ndarray:
    """z from the model's prior -> decoder -> a draw from
    every column's distribution: (n, n_inputs)."""
    return draw_matrix_t(model, n, generator, precision, prior).cpu().numpy().T  # column-major


@torch.inference_mode()
def draw_matrix_t(
    model: nn.Module,
    n: int,
    generator: torch.Generator,
    precision: str = "auto",
    prior: str | None = None,
) -> torch.Tensor:
    """What `sample_matrix` draws, transposed and on the model's device: (n_inputs, n). `prior`
    overrides where z comes from ("standard" or "fitted")."""
    z = model.prior.sample(n, generator, prior, compute_dtype(precision, model.prior.mean.device))
    return draw_given_z_t(model, z, generator, precision)


@torch.inference_mode()
def draw_given_z_t(
    model: nn.Module,
    z: torch.Tensor,
    generator: torch.Generator,
    precision: str = "auto",
    fixed: dict[int, torch.Tensor] | None = None,
    logit_shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode z (n, latent) and draw every column from the decoder's distribution: the transposed
    compact matrix (n_inputs, n). `fixed`: softmax block index -> (n,) class codes set, not drawn
    (conditions; the other blocks keep the structural zeros with them). `logit_shift`
    (n_logits,): the class shifts to draw with instead of the calibration's (a condition's class
    shares)."""
    n = len(z)
    uniforms, normals = model.likelihood.draw_noise(n, generator, z.device)
    matrix_t = torch.empty(model.likelihood.n_inputs, n, device=z.device)  # (n_inputs, n)
    for a, b, out_t in decoded(model, z, precision):
        noise = ([u[:, a:b] for u in uniforms], normals[:, a:b] if normals is not None else None)
        chunk = {j: codes[a:b] for j, codes in fixed.items()} if fixed else None
        matrix_t[:, a:b] = model.likelihood.sample(out_t, noise, chunk, logit_shift)
    return matrix_t


def prior_logits_t(
    model: nn.Module, n: int, generator: torch.Generator, precision: str
) -> torch.Tensor:
    """The decoder's logits for n draws of z from the prior:
    (n_logits, n), on the model's device."""
    z = model.prior.sample(n, generator, dtype=compute_dtype(precision, model.prior.mean.device))
    logits_t = torch.empty(model.likelihood.n_logits, n, device=z.device)
    for a, b, out_t in decoded(model, z, precision):
        logits_t[:, a:b] = out_t[: model.likelihood.n_logits]
    return logits_t


def decoded(
    model: nn.Module, z: torch.Tensor, precision: str
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The decoder's transposed output for z, chunk by chunk: (a, b, (out_width, b - a)) for
    rows [a, b). The output buffer is reused: read each chunk before asking for the next."""
    dtype = compute_dtype(precision, z.device)
    n = len(z)
    if z.device.type == "cuda":
        chunk = decoder_chunk = max(n, 1)
    else:  # rows per chunk: fewer for wide outputs, so that each temporary stays small
        chunk = max(256, min(SAMPLE_CHUNK, CHUNK_VALUES // max(model.likelihood.out_width, 1)))
        decoder_chunk = min(DECODER_CHUNK, chunk)
    # (out_width, chunk)
    out_t = torch.empty(model.likelihood.out_width, min(chunk, n), device=z.device)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        model.decoder.forward_t(z[a:b], dtype, chunk=decoder_chunk, out=out_t[:, : b - a])
        yield a, b, out_t[:, : b - a]


def compute_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The products' dtype when drawing: bf16 where asked or fast, else None (float32)."""
    bf16 = precision == "bf16" or (precision == "auto" and fast_bf16(device.type))
    return torch.bfloat16 if bf16 else None
