"""Validated settings. A wrong setting is one clear error before any work starts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthgen.errors import UserError


class ModelSettings(BaseModel):
    """Everything that decides what a trained model is: the cache key of a trained model hashes these."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: Literal["vae", "ae"] = "vae"
    # training length: None picks it from the table size (about 2.5M row visits, 30 to 300 epochs)
    epochs: int | None = Field(None, ge=1)
    batch_size: int = Field(1024, ge=2)
    latent_dim: int = Field(32, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [256, 256], min_length=1)
    activation: Literal["relu", "gelu", "silu", "leaky_relu"] = "relu"
    norm: Literal["none", "batch", "layer"] = "none"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    beta: float = Field(1.0, gt=0, description="weight of the KL term (VAE)")
    kl_warmup_epochs: int = Field(10, ge=0)
    patience: int = Field(30, ge=1, description="epochs without a better validation loss before stopping")
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    # where generation draws z from. VAE: "standard" = N(0, I), the prior it was trained against.
    # AE: "fitted" = a Gaussian (mean, full covariance) fitted to the training codes; "standard" shows why
    # an AE alone is no generator.
    prior: Literal["standard", "fitted"] | None = None
    rare_threshold: int = Field(5, ge=0)
    max_categories: int | None = Field(150, ge=1)
    point_mass_share: float = Field(0.02, gt=0, le=1)
    max_train_rows: int | None = Field(None, ge=100, description="train on a seeded sample of this many rows")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _default_prior(self) -> ModelSettings:
        if self.prior is None:
            object.__setattr__(self, "prior", "standard" if self.model == "vae" else "fitted")
        return self

    def fingerprint_fields(self) -> dict[str, Any]:
        """The settings that change the trained weights (not where or how often it is saved)."""
        return self.model_dump(exclude={"device", "checkpoint_every"})


def validated(model_cls: type[BaseModel], values: dict[str, Any], where: str = "settings") -> Any:
    """Build a pydantic model, turning a validation error into one readable UserError line."""
    try:
        return model_cls(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "value"
            msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{loc}: {msg}")
        raise UserError(f"bad {where}: " + "; ".join(problems)) from None
