"""Building blocks the VAE and the AE share: input expansion, MLP, encoder and decoder."""

from __future__ import annotations

import math
from itertools import accumulate
from typing import Callable

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
    A profile's class is not read: the columns it is a combination of say it already.
    """

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        blocks = [b for b in layout.discrete if b.role != "profile"]
        sizes = [b.n_classes for b in blocks]
        self.register_buffer(
            "code_cols", torch.tensor([b.input_col for b in blocks], dtype=torch.long)
        )
        self.register_buffer(
            "offsets", torch.tensor([0, *accumulate(sizes)][: len(sizes)], dtype=torch.long)
        )
        self.register_buffer(
            "cont_cols", torch.tensor([s.input_col for s in layout.continuous], dtype=torch.long)
        )
        self.n_onehot = sum(sizes)
        self.width = layout.onehot_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n_inputs) -> (B, width)
        onehot = torch.zeros(x.shape[0], self.n_onehot, device=x.device, dtype=x.dtype)
        if len(self.code_cols):
            onehot.scatter_(1, x[:, self.code_cols].long() + self.offsets, 1.0)
        return torch.cat([onehot, x[:, self.cont_cols]], dim=1)

    def first_layer(
        self, layer: nn.Linear, dtype: torch.dtype | None = None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """`x -> layer(self(x))` for inference, without the one-hot: one weighted `embedding_bag`
        over the layer's weight rows (one row per class, one per continuous value, and the bias
        as the last row) sums, for each row, its classes' rows (weight 1), its continuous values
        times theirs, and the bias; in `dtype` (bf16) when given, float32 otherwise."""
        table = torch.cat([layer.weight.T, layer.bias[None]]).contiguous()  # (n_in + 1, out)
        table = table.to(dtype or table.dtype)
        n_codes, n_continuous = len(self.code_cols), len(self.cont_cols)
        columns = torch.cat([self.code_cols, self.cont_cols])
        rows = self.n_onehot + torch.arange(n_continuous + 1, device=table.device)

        def apply(x: torch.Tensor) -> torch.Tensor:  # (B, n_inputs) -> (B, out)
            read = x.index_select(1, columns)
            index = torch.empty(len(x), n_codes + len(rows), dtype=torch.long, device=x.device)
            index[:, :n_codes] = read[:, :n_codes]
            index[:, :n_codes] += self.offsets
            index[:, n_codes:] = rows
            weights = torch.ones(index.shape, device=x.device, dtype=table.dtype)
            weights[:, n_codes : n_codes + n_continuous] = read[:, n_codes:]
            return F.embedding_bag(index, table, per_sample_weights=weights, mode="sum")

        return apply


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
    def infer(
        self,
        x: torch.Tensor,
        chunk: int,
        outputs: int | None = None,
        dtype: torch.dtype | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Inference only: the first `outputs` numbers (all by default) of each row, (B, outputs),
        float32, `chunk` rows at a time (into `out` when given). The first layer reads the class
        codes (`InputExpander.first_layer`), so no one-hot is built; with `dtype` (bf16) every
        layer runs in it (half the memory traffic); activations run in place."""
        first, *body, last = self.net
        layer_one = self.expand.first_layer(first, dtype)
        cast = (lambda t: t.to(dtype)) if dtype else (lambda t: t)
        linears = {id(m): (cast(m.weight), cast(m.bias)) for m in body if isinstance(m, nn.Linear)}
        weight, bias = cast(last.weight[:outputs]), cast(last.bias[:outputs])
        out = torch.empty(len(x), len(weight), device=x.device) if out is None else out
        for a in range(0, len(x), chunk):
            h = layer_one(x[a : a + chunk])
            for layer in body:
                if isinstance(layer, nn.Linear):
                    h = F.linear(cast(h), *linears[id(layer)])
                elif isinstance(layer, tuple(ACTIVATIONS.values())):
                    h = _activate_(layer, h)
                elif not isinstance(layer, nn.Dropout):  # normalization, in float32
                    h = layer(h.float())
            if dtype:  # converted to float32 as it is written
                out[a : a + chunk] = torch.addmm(bias, cast(h), weight.T)
            else:
                torch.addmm(bias, h, weight.T, out=out[a : a + chunk])
        return out


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


# sine and cosine of the flow's time at this many frequencies: the velocity net's clock
TIME_FREQUENCIES = 8
FLOW_CHUNK = 4096  # rows integrated together on a CPU: the hidden states stay in cache


class LatentFlow(nn.Module):
    """A learned distribution of the training codes (prior="learned"): a velocity field v(z, t)
    fitted by flow matching (rectified flow) on straight paths from e ~ N(0, I) at t = 0 to a
    standardized code at t = 1. Drawing z integrates dz/dt = v from a standard normal draw in
    `steps` midpoint steps (two evaluations each): a fixed map e -> z, so anything that samples
    e from N(0, I) (conditional sampling included) samples z from the learned distribution."""

    def __init__(self, latent_dim: int, hidden: list[int], steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.net = mlp(latent_dim + 2 * TIME_FREQUENCIES, hidden, latent_dim)
        self.register_buffer("mean", torch.zeros(latent_dim))  # the codes' standardization
        self.register_buffer("scale", torch.ones(latent_dim))
        self.register_buffer(
            "freqs", torch.exp(torch.linspace(0.0, math.log(100.0), TIME_FREQUENCIES))
        )

    def clock(self, t: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, 2 * TIME_FREQUENCIES)
        angles = t.unsqueeze(1) * self.freqs
        return torch.cat([angles.sin(), angles.cos()], 1)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # velocity (B, latent)
        return self.net(torch.cat([z_t, self.clock(t)], 1))

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        """Flow matching on a batch of codes (B, latent): the squared error of the velocity at a
        random point of each straight path from noise to the standardized code."""
        x1 = (codes - self.mean) / self.scale
        x0 = torch.randn_like(x1)
        t = torch.rand(len(x1), device=x1.device)
        z_t = x0 + t.unsqueeze(1) * (x1 - x0)
        return (self(z_t, t) - (x1 - x0)).pow(2).sum(1).mean()

    @torch.no_grad()
    def transport(self, e: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Base draws e (n, latent) -> codes (n, latent): the ODE integrated with midpoint steps,
        transposed (features, rows) and FLOW_CHUNK rows at a time. The clock enters the first
        layer as a bias computed once per evaluation; with `dtype` (bf16) the products run in that
        precision while z accumulates in float32."""
        first, *rest = self.net
        d = e.shape[1]
        w_z = first.weight[:, :d].to(dtype or first.weight.dtype)
        layers = [
            (m.bias.unsqueeze(1).to(dtype or m.bias.dtype), m.weight.to(dtype or m.weight.dtype))
            if isinstance(m, nn.Linear)
            else m
            for m in rest
        ]
        h_dt = 1.0 / self.steps
        times = torch.arange(2 * self.steps, device=e.device) * (h_dt / 2)  # t and t + h / 2
        clock_bias = first.bias + self.clock(times) @ first.weight[:, d:].T  # (2 steps, width)
        clock_bias = clock_bias.to(dtype or clock_bias.dtype).unsqueeze(2)

        def velocity(z_t: torch.Tensor, k: int) -> torch.Tensor:  # (latent, rows), float32
            h = torch.addmm(clock_bias[k], w_z, z_t.to(w_z.dtype))
            for layer in layers:
                h = torch.addmm(*layer, h) if isinstance(layer, tuple) else _activate_(layer, h)
            return h.float()

        out = torch.empty_like(e)
        chunk = len(e) if e.device.type == "cuda" else FLOW_CHUNK
        for a in range(0, len(e), max(chunk, 1)):
            z = e[a : a + chunk].T.contiguous()  # (latent, rows)
            for k in range(self.steps):
                half = z + (h_dt / 2) * velocity(z, 2 * k)
                z += h_dt * velocity(half, 2 * k + 1)
            out[a : a + chunk] = (z * self.scale.unsqueeze(1) + self.mean.unsqueeze(1)).T
        return out


class LatentPrior(nn.Module):
    """Where generation draws z from: N(0, I) ("standard"), a Gaussian with the mean and full
    covariance of the training codes ("fitted", set after training), or a flow-matching model of
    the training codes ("learned", `LatentFlow`, fitted after training). Each is a map from
    e ~ N(0, I): `transport`."""

    def __init__(
        self, latent_dim: int, kind: str, flow_hidden: list[int] | None = None, steps: int = 0
    ) -> None:
        super().__init__()
        self.kind = kind
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("chol", torch.eye(latent_dim))
        self.flow = LatentFlow(latent_dim, flow_hidden or [], steps) if kind == "learned" else None

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
        """(N,): the log-density of each z under a Gaussian prior (this one or `kind`'s)."""
        kind = kind or self.kind
        if kind == "learned":
            raise ValueError("a learned prior has no closed-form density: work with e (transport)")
        if kind == "standard":
            return gaussian_log_prob(z)
        return gaussian_log_prob(z, self.mean, self.chol)

    def transport(
        self, e: torch.Tensor, kind: str | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Base draws e ~ N(0, I) (n, latent) -> draws of z from this prior (or `kind`'s);
        `dtype`: the learned flow's products (bf16 where fast)."""
        kind = kind or self.kind
        if kind == "standard":
            return e
        if kind == "fitted":
            return self.mean + e @ self.chol.T
        if self.flow is None:
            raise ValueError("this model has no learned prior")
        return self.flow.transport(e, dtype)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        kind: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """n draws of z (n, latent), from this prior or, with `kind`, from "standard", "fitted"
        or "learned" instead."""
        eps = torch.randn(n, self.mean.shape[0], generator=generator, device=self.mean.device)
        return self.transport(eps, kind, dtype)
