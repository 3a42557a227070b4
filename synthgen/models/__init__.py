"""The two models: a VAE (the generator) and a plain AE (the baseline), made of the same parts."""

from synthgen.models.ae import AE
from synthgen.models.vae import VAE

MODELS = {"vae": VAE, "ae": AE}

__all__ = ["AE", "MODELS", "VAE"]
