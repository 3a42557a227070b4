"""Plain autoencoder, the baseline: one deterministic code per row, reconstruction loss only (MSE-style).

It has no prior, so by itself it cannot generate. To compare it with the VAE anyway, z is drawn from a
Gaussian fitted to its training codes after training (prior="fitted"), or from N(0, I) (prior="standard"),
which shows why a plain AE is no generator: nothing made its codes look like N(0, I).
"""

from __future__ import annotations

import torch
from torch import nn

from synthgen.config import ModelSettings
from synthgen.models.losses import ColumnLikelihood
from synthgen.models.nets import Decoder, Encoder, LatentPrior
from synthgen.transform import Layout


class AE(nn.Module):
    def __init__(self, layout: Layout, settings: ModelSettings) -> None:
        super().__init__()
        net = dict(activation=settings.activation, norm=settings.norm, dropout=settings.dropout)
        self.encoder = Encoder(layout, settings.hidden, settings.latent_dim, **net)  # the code itself
        self.likelihood = ColumnLikelihood(layout, continuous="mse",  # fixed unit scale: nothing learned
                                           calibrate=settings.calibrate_marginals)
        self.decoder = Decoder(self.likelihood.out_width, settings.hidden, settings.latent_dim, **net)
        self.prior = LatentPrior(settings.latent_dim, settings.prior)

    def forward(self, x: torch.Tensor, beta: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reconstruction, parts = self.likelihood(self.decoder(self.encoder(x)), x)
        return reconstruction, {"reconstruction": reconstruction, "parts": parts}  # no KL term: no prior

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.encoder(x), None  # one point per row: no posterior variance
