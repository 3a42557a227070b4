"""Variational autoencoder: q(z|x) = N(mu, diag(sigma^2)),
loss = reconstruction + beta * KL(q || N(0, I)).

New rows: z ~ N(0, I) (the prior it was trained against), decode, then draw every column from the
decoder's distribution. prior="fitted" draws z from a Gaussian with the aggregate posterior's mean
and covariance instead.
"""

from __future__ import annotations

import torch

from synthgen.config import ModelSettings
from synthgen.models.base import TabularAutoencoder
from synthgen.transform import Layout


class VAE(TabularAutoencoder):
    def __init__(self, layout: Layout, settings: ModelSettings) -> None:
        # the encoder gives a mean and a log-variance; continuous values get a mean and a scale
        super().__init__(
            layout, settings, code_width=2 * settings.latent_dim, continuous="gaussian"
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, latent) each
        return mu, logvar.clamp(-12.0, 8.0)

    def forward(
        self, x: torch.Tensor, beta: float = 1.0
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterization
        reconstruction, parts = self.likelihood(self.decoder(z), x)
        kl = kl_per_row(mu, logvar).mean()
        return reconstruction + beta * kl, {
            "reconstruction": reconstruction,
            "kl": kl,
            "parts": parts,
        }

    @torch.no_grad()
    def point(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return mu, kl_per_row(mu, logvar)

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance per row: what a fitted prior matches (prior="fitted")."""
        mu, logvar = self.encode(x)
        return mu, logvar.exp()


def kl_per_row(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """(B,): KL(N(mu, diag(exp(logvar))) || N(0, I)) of each row."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
