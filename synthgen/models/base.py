"""What the VAE and the AE share: an encoder, a decoder, the column likelihood they are trained on,
the marginal calibration fitted after training, and the prior that generation draws z from. They
differ only in what the encoder gives (a distribution or a point) and in the loss (KL to the prior,
or none)."""

from __future__ import annotations

import torch
from torch import nn

from synthgen.config import ModelSettings
from synthgen.models.calibration import MarginalCalibration
from synthgen.models.likelihood import ColumnLikelihood
from synthgen.models.nets import Decoder, Encoder, LatentPrior
from synthgen.transform import Layout


class TabularAutoencoder(nn.Module):
    """`code_width`: numbers the encoder gives per row;
    `continuous`: the likelihood of continuous values."""

    def __init__(
        self, layout: Layout, settings: ModelSettings, *, code_width: int, continuous: str
    ) -> None:
        super().__init__()
        net = dict(activation=settings.activation, norm=settings.norm, dropout=settings.dropout)
        self.encoder = Encoder(
            layout, settings.encoder_hidden or settings.hidden[:1], code_width, **net
        )
        self.likelihood = ColumnLikelihood(
            layout, continuous=continuous, temperature=settings.temperature
        )
        if settings.calibrate_marginals:
            self.likelihood.calibration = MarginalCalibration(
                len(layout.continuous), self.likelihood.n_logits
            )
        self.decoder = Decoder(
            self.likelihood.out_width, settings.hidden, settings.latent_dim, **net
        )
        self.prior = LatentPrior(
            settings.latent_dim, settings.prior, settings.prior_hidden, settings.prior_steps
        )

    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each row's code, and its posterior variance where the model has one."""
        raise NotImplementedError

    def point(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each row's point in the latent space (the posterior mean, or the code) and its KL
        divergence to the prior per row (None where the model has no prior: the AE)."""
        raise NotImplementedError
