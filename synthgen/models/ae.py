"""Plain autoencoder, the baseline: one deterministic code per row, reconstruction loss only.

It has no prior, so by itself it cannot generate. To compare it with the VAE anyway, z is drawn from
a Gaussian fitted to its training codes after training (prior="fitted"), or from N(0, I)
(prior="standard"), which shows why a plain AE is no generator: nothing made its codes look like
N(0, I).
"""

from __future__ import annotations

import torch

from synthgen.config import ModelSettings
from synthgen.models.base import TabularAutoencoder
from synthgen.transform import Layout


class AE(TabularAutoencoder):
    def __init__(self, layout: Layout, settings: ModelSettings) -> None:
        # the encoder gives the code itself; continuous values: squared error (a fixed unit scale)
        super().__init__(layout, settings, code_width=settings.latent_dim, continuous="mse")

    def forward(
        self, x: torch.Tensor, beta: float = 1.0
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reconstruction, parts = self.likelihood(self.decoder(self.encoder(x)), x)
        # no KL term: no prior
        return reconstruction, {"reconstruction": reconstruction, "parts": parts}

    @torch.no_grad()
    def point(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.encoder(x), None  # no prior, no KL

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.encoder(x), None  # one point per row: no posterior variance
