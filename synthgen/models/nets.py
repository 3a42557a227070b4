"""Building blocks the VAE and the AE share: input expansion, MLP, encoder and decoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from synthgen.transform import Layout

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}


def _activate_(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """An activation module's function, in place where torch
    has an in-place form (inference only)."""
    if isinstance(layer, nn.ReLU):
        return h.relu_()
    if isinstance(layer, nn.SiLU):
        return F.silu(h, inplace=True)
    if isinstance(layer, nn.LeakyReLU):
        return F.leaky_relu_(h, layer.negative_slope)
    return layer(h)


class InputExpander(nn.Module):
    """Compact matrix -> model input: each class code one-hot, then the continuous values.

    The table stays compact (one float per categorical column) and is expanded one batch at a time.
    """

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        self.register_buffer(
            "code_cols", torch.tensor([b.input_col for b in layout.discrete], dtype=torch.long)
        )
        self.register_buffer(
            "offsets", torch.tensor([b.out_start for b in layout.discrete], dtype=torch.long)
        )
        self.register_buffer(
            "cont_cols", torch.tensor([s.input_col for s in layout.continuous], dtype=torch.long)
        )
        self.n_onehot = sum(b.n_classes for b in layout.discrete)
        self.width = layout.onehot_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n_inputs) -> (B, width)
        onehot = torch.zeros(x.shape[0], self.n_onehot, device=x.device, dtype=x.dtype)
        if len(self.code_cols):
            onehot.scatter_(1, x[:, self.code_cols].long() + self.offsets, 1.0)
        return torch.cat([onehot, x[:, self.cont_cols]], dim=1)


def mlp(
    d_in: int,
    hidden: list[int],
    d_out: int,
    activation: str = "silu",
    norm: str = "none",
    dropout: float = 0.0,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(d_in, width))
        if norm == "batch":
            layers.append(nn.BatchNorm1d(width))
        elif norm == "layer":
            layers.append(nn.LayerNorm(width))
        layers.append(ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        d_in = width
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Row -> `d_out` numbers: (mean, log-variance) of
    q(z|x) for the VAE, the code itself for the AE."""

    def __init__(self, layout: Layout, hidden: list[int], d_out: int, **mlp_args) -> None:
        super().__init__()
        self.expand = InputExpander(layout)
        self.net = mlp(self.expand.width, hidden, d_out, **mlp_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n_inputs) -> (B, d_out)
        return self.net(self.expand(x))

    @torch.no_grad()
    def forward_t(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Inference only: the same output, transposed (d_out, B), `chunk` rows at a time."""
        return mlp_forward_t(self.net, self.expand(x), chunk=chunk)


class Decoder(nn.Module):
    """z -> the parameters of every column's distribution:
    logits of each softmax block, then means."""

    def __init__(self, d_out: int, hidden: list[int], latent_dim: int, **mlp_args) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden[::-1], d_out, **mlp_args)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, latent) -> (B, out_width)
        return self.net(z)

    @torch.no_grad()
    def forward_t(
        self,
        z: torch.Tensor,
        dtype: torch.dtype | None = None,
        chunk: int | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Inference only: the same output, transposed, (B, latent) -> (out_width, B), float32,
        `chunk` rows at a time (into `out` when given): `mlp_forward_t`."""
        return mlp_forward_t(self.net, z, dtype, chunk, out)


@torch.no_grad()
def mlp_forward_t(
    net: nn.Sequential,
    z: torch.Tensor,
    dtype: torch.dtype | None = None,
    chunk: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """An MLP's output for inference, transposed: (B, d_in) -> (d_out, B), float32, `chunk` rows
    at a time (into `out` when given).

    Every layer runs transposed (features, rows), so per-column sampling reads contiguous rows
    and each bias broadcasts along rows (addmm on (B, features) would first copy a broadcast
    bias into the output). With `dtype` (bf16) the products run in that precision with in-place
    activations; on CPUs with bf16 units this is faster than float32, where autocast's
    out-of-place casts would give most of the gain back. The weights are cast once per call, and
    the bf16 result is converted while it is written to `out`.
    """

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if dtype else t

    *body, last = net
    layers = [
        (cast(m.bias).unsqueeze(1), cast(m.weight)) if isinstance(m, nn.Linear) else m for m in body
    ]
    bias, weight = cast(last.bias).unsqueeze(1), cast(last.weight)
    out = torch.empty(last.out_features, len(z), device=z.device) if out is None else out
    step = chunk or max(len(z), 1)
    for a in range(0, len(z), step):
        h = cast(z[a : a + step]).T  # (d_in, rows)
        for layer in layers:
            if isinstance(layer, tuple):
                h = torch.addmm(*layer, h)  # (width, rows)
            # elementwise: the layout does not matter
            elif isinstance(layer, tuple(ACTIVATIONS.values())):
                h = _activate_(layer, h)
            # normalization: over features, so on (rows, width)
            elif not isinstance(layer, nn.Dropout):
                h = layer(h.T.float()).to(h.dtype).T
        out[:, a : a + step] = torch.addmm(bias, weight, h)
    return out


def gaussian_log_prob(
    z: torch.Tensor, mean: torch.Tensor | None = None, chol: torch.Tensor | None = None
) -> torch.Tensor:
    """(N,): the log-density of each z under N(mean, chol chol^T); N(0, I) without them."""
    if mean is None:
        eps, log_det = z, 0.0
    else:
        eps = torch.linalg.solve_triangular(chol, (z - mean).T, upper=False).T
        log_det = chol.diagonal().log().sum()
    return -0.5 * eps.pow(2).sum(1) - log_det - 0.5 * z.shape[1] * math.log(2 * math.pi)


class LatentPrior(nn.Module):
    """Where generation draws z from: N(0, I) ("standard"), or a Gaussian with the mean and full
    covariance of the training codes ("fitted", set after training)."""

    def __init__(self, latent_dim: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("chol", torch.eye(latent_dim))

    @torch.no_grad()
    def fit(self, codes: torch.Tensor, variances: torch.Tensor | None = None) -> None:
        """Match the first two moments of the codes (N, latent). `variances` (N, latent): each row's
        posterior variance (VAE), so the Gaussian is the aggregate posterior's:
        Cov z = Cov E[z|x] + E[Var z|x]."""
        codes = codes.double()
        cov = torch.cov(codes.T).reshape(codes.shape[1], codes.shape[1])
        if variances is not None:
            cov = cov + torch.diag(variances.double().mean(0))
        self.set(codes.mean(0), cov)

    @torch.no_grad()
    def set(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        """Draw z from N(mean, cov)."""
        cov = cov.double()
        jitter = 1e-6 * cov.diagonal().mean().clamp(min=1e-6)
        cov = cov + jitter * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        self.mean.copy_(mean.float())
        self.chol.copy_(torch.linalg.cholesky(cov).float())

    def log_prob(self, z: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """(N,): the log-density of each z under this prior (or `kind`'s)."""
        if (kind or self.kind) == "standard":
            return gaussian_log_prob(z)
        return gaussian_log_prob(z, self.mean, self.chol)

    def sample(
        self, n: int, generator: torch.Generator | None = None, kind: str | None = None
    ) -> torch.Tensor:
        """n draws of z (n, latent), from this prior or,
        with `kind`, from "standard" or "fitted" instead."""
        eps = torch.randn(n, self.mean.shape[0], generator=generator, device=self.mean.device)
        return eps if (kind or self.kind) == "standard" else self.mean + eps @ self.chol.T
