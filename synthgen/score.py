"""Reading rows through a trained model's encoder: embeddings (each row's posterior mean, or the
AE's code) and anomaly scores (each row's negative ELBO, or the AE's reconstruction loss, with its
parts per column)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from synthgen.runtime import in_order, torch_threads
from synthgen.transform import TableTransformer

CHUNK_ROWS = 65_536  # rows through the network at once: flat memory for any table
ENCODER_CHUNK = 8_192  # rows per product on a CPU: the intermediates stay in cache
REFERENCE_ROWS = 20_000  # training rows the score's reference (quantiles, typical parts) reads
LATENT_ROWS, LATENT_BINS = 5_000, 24  # rows per table and grid of the report's latent-space map


@torch.inference_mode()
def embed_matrix(
    model: nn.Module, matrix: np.ndarray, dtype: torch.dtype | None = None
) -> np.ndarray:
    """(N, latent) float32: the VAE's posterior means, or the AE's codes, of encoded rows; with
    `dtype` (bf16) the encoder's layers run in it."""
    model.eval()
    device = next(model.parameters()).device
    latent = model.prior.mean.shape[0]
    out = torch.empty(len(matrix), latent)

    @torch.inference_mode()  # per thread
    def embed_rows(a: int) -> None:
        x = torch.from_numpy(matrix[a : a + CHUNK_ROWS]).to(device)
        into = out[a : a + len(x)] if device.type == "cpu" else None  # written in place
        codes = model.encoder.infer(x, ENCODER_CHUNK, latent, dtype, out=into)
        if into is None:
            out[a : a + len(x)] = codes.cpu()

    starts = range(0, len(matrix), CHUNK_ROWS)
    threads = min(torch.get_num_threads(), len(starts)) if device.type == "cpu" else 1
    with torch_threads(1 if threads > 1 else None):  # a slice's layers stay in its core's cache
        for _ in in_order(embed_rows, starts, threads):
            pass
    return out.numpy()


@torch.inference_mode()
def score_matrix(model: nn.Module, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Each encoded row's negative log-likelihood per scored column (N, len(scored_columns)),
    decoded at the posterior mean (VAE) or the code (AE); and the VAE's KL term (N,), None for the
    AE. Their sum is the VAE's negative ELBO with the reconstruction read at the posterior mean, or
    the AE's reconstruction loss, less a profile's class."""
    model.eval()
    device = next(model.parameters()).device
    parts = np.empty((len(matrix), len(model.likelihood.columns)), dtype=np.float64)
    kls = []
    for a in range(0, len(matrix), CHUNK_ROWS):
        x = torch.from_numpy(matrix[a : a + CHUNK_ROWS]).to(device)
        z, kl = model.point(x)
        parts[a : a + len(x)] = model.likelihood.row_nll(model.decoder(z), x).double().cpu()
        if kl is not None:
            kls.append(kl.double().cpu().numpy())
    scored = set(scored_columns(model))
    kept = [i for i, name in enumerate(model.likelihood.columns) if name in scored]
    return parts[:, kept], (np.concatenate(kls) if kls else None)


def scored_columns(model: nn.Module) -> list[str]:
    """The likelihood's columns a score reads: all but a profile's class, which follows from the
    profile's columns (scored already)."""
    profiles = {b.column for b in model.likelihood.layout.discrete if b.role == "profile"}
    return [name for name in model.likelihood.columns if name not in profiles]


def score_table(
    model: nn.Module,
    transformer: TableTransformer,
    df: pd.DataFrame,
    reference: dict | None = None,
) -> pd.DataFrame:
    """Anomaly scores of a table's rows, index kept: `score` (higher: more unusual), `percentile`
    (share of training rows scoring lower, with a `reference`), `most_unusual` (the column whose
    part is furthest above its typical value), the VAE's `kl`, then one `nll:<column>` per modelled
    column. Values the encoding cannot show (unseen categories, numbers past the range) are scored
    through the encoders' `surprise`, not refused."""
    matrix = transformer.transform(df)
    parts, kl = score_matrix(model, matrix)
    columns = scored_columns(model)
    for i, name in enumerate(columns):
        parts[:, i] += transformer.encoders[name].surprise(df[name])
    # a lookup column is not modelled: its part is the surprise of a value its parent does not give
    lookups = [transformer.encoders[name] for name in transformer.lookups]
    if lookups:
        extra = [enc.surprise_with(df[enc.col.name], df[enc.parent]) for enc in lookups]
        parts = np.column_stack([parts, *extra])
        columns += [enc.col.name for enc in lookups]
    score = parts.sum(1) + (kl if kl is not None else 0.0)
    out = pd.DataFrame({"score": score}, index=df.index)
    if reference:
        knots = np.asarray(reference["quantiles"])
        out["percentile"] = np.interp(score, knots, np.linspace(0, 100, len(knots)))
    typical = np.array([(reference or {}).get("typical", {}).get(c, 0.0) for c in columns])
    out["most_unusual"] = (
        np.asarray(columns, dtype=object)[(parts - typical).argmax(1)] if columns else None
    )
    if kl is not None:
        out["kl"] = kl
    where = {name: i for i, name in enumerate(columns)}
    for name in (n for n in transformer.schema.names if n in where):  # in the table's order
        out[f"nll:{name}"] = parts[:, where[name]]
    return out


def score_reference(model: nn.Module, matrix: np.ndarray, seed: int = 0) -> dict:
    """What a score is read against, from up to REFERENCE_ROWS training rows: 101 quantiles of the
    score and each column's median part."""
    if len(matrix) > REFERENCE_ROWS:
        rows = np.random.default_rng(seed).choice(len(matrix), REFERENCE_ROWS, replace=False)
        matrix = matrix[np.sort(rows)]
    parts, kl = score_matrix(model, matrix)
    score = parts.sum(1) + (kl if kl is not None else 0.0)
    return {
        "quantiles": np.quantile(score, np.linspace(0, 1, 101)).tolist(),
        "typical": dict(zip(scored_columns(model), np.median(parts, 0).tolist(), strict=True)),
    }


def latent_map(
    model: nn.Module,
    transformer: TableTransformer,
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    rows: int = LATENT_ROWS,
    bins: int = LATENT_BINS,
    min_rows: int = 5,
    seed: int = 0,
) -> dict:
    """Where real and synthetic rows lie in the latent space, for the report: both embedded, then
    projected on the first two principal components of the real rows' codes and counted on a
    bins x bins grid (shares of each table). A real cell fewer than `min_rows` rows hold shows as
    empty, as value protection treats rare values."""
    r = real.sample(min(len(real), rows), random_state=seed)
    s = synthetic.sample(min(len(synthetic), rows), random_state=seed)
    zr = embed_matrix(model, transformer.transform(r)).astype(np.float64)
    zs = embed_matrix(model, transformer.transform(s)).astype(np.float64)
    mean = zr.mean(0)
    _, spread, axes = np.linalg.svd(zr - mean, full_matrices=False)
    axes = axes[:2] if len(axes) >= 2 else np.vstack([axes, np.zeros_like(axes)])
    pr, ps = (zr - mean) @ axes.T, (zs - mean) @ axes.T
    edges = []
    for k in range(2):  # the real rows' 0.5%-99.5% range, a tenth wider on each side
        lo, hi = np.quantile(pr[:, k], [0.005, 0.995])
        pad = 0.1 * (hi - lo) or 1.0
        edges.append(np.linspace(lo - pad, hi + pad, bins + 1))

    def shares(points: np.ndarray, protect: bool) -> tuple[list, float]:
        counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=edges)
        inside = counts.sum()
        if protect:
            counts[counts < min_rows] = 0
        return (counts / max(len(points), 1)).round(5).tolist(), 1 - inside / max(len(points), 1)

    real_shares, real_out = shares(pr, True)
    synth_shares, synth_out = shares(ps, False)
    explained = spread**2 / max(float((spread**2).sum()), 1e-12)
    return {
        "bins": bins,
        "x_range": [float(edges[0][0]), float(edges[0][-1])],
        "y_range": [float(edges[1][0]), float(edges[1][-1])],
        "real": real_shares,
        "synthetic": synth_shares,
        "outside": [round(float(real_out), 4), round(float(synth_out), 4)],
        "explained": [round(float(v), 4) for v in explained[:2]],
        "rows": [len(r), len(s)],
        "min_rows": min_rows,
    }
