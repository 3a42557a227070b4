"""Validated settings. A wrong setting is one clear error before any work starts."""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthgen.errors import UserError

MODEL_KINDS = ("vae", "ae")


DP_HIDDEN = (128, 128)  # DP mode's default hidden widths
DP_LR = 1e-2  # DP mode's default learning rate (docs/design.md, "DP mode")


class ModelSettings(BaseModel):
    """Everything that decides what a trained model is: a trained model's cache key hashes these.
    Why each default is what it is: docs/design.md, "Why the defaults are what they are"."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: Literal["vae", "ae"] = Field(
        "vae", description="vae (the generator) or ae (the baseline)"
    )
    epochs: int | None = Field(
        None, ge=1, description="training epochs; None: from the table size (30-180, 600+ steps)"
    )
    batch_size: int = Field(1024, ge=2, description="rows per optimizer step")
    latent_dim: int = Field(32, ge=1, description="width of the latent code z")
    hidden: list[int] = Field(
        default_factory=lambda: [256, 256],
        min_length=1,
        description="hidden layer widths (DP mode: [128, 128])",
    )
    encoder_hidden: list[int] | None = Field(
        None,
        min_length=1,
        description="the encoder's hidden widths; None: the first of `hidden` alone (DP mode: "
        "`hidden`); the decoder reads `hidden` reversed",
    )
    activation: Literal["relu", "gelu", "silu", "leaky_relu"] = Field(
        "silu", description="activation of the hidden layers"
    )
    norm: Literal["none", "batch", "layer"] = Field("none", description="normalization layers")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after each hidden layer")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate (DP mode: 1e-2)")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant, or cosine decay to 5% over the planned epochs"
    )
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay")
    # 1 is the ELBO, which blurs dependence that only a few columns share; docs/design.md
    beta: float = Field(0.7, gt=0, description="weight of the KL term (VAE)")
    kl_warmup_epochs: int = Field(10, ge=0, description="epochs over which beta ramps up from 0")
    patience: int = Field(
        50, ge=1, description="epochs without a better validation loss before stopping"
    )
    val_fraction: float = Field(
        0.1, ge=0.0, lt=0.5, description="training rows held out for early stopping"
    )
    prior: Literal["standard", "fitted", "learned"] | None = Field(
        None,
        description=(
            "where new rows draw z from: standard = N(0, I); fitted = a Gaussian with the codes' "
            "mean and covariance (the VAE's aggregate posterior); learned = a flow-matching model "
            "of the training codes, fitted after the autoencoder. None: standard for the VAE, "
            "fitted for the AE"
        ),
    )
    prior_hidden: list[int] = Field(
        default_factory=lambda: [256, 256, 256],
        min_length=1,
        description="hidden layer widths of the learned prior's velocity network",
    )
    prior_steps: int = Field(
        5, ge=1, le=200, description="midpoint steps (two evaluations each) of the learned prior"
    )
    prior_epochs: int | None = Field(
        None, ge=1, description="epochs of the learned prior's fit; None: from the table size"
    )
    temperature: float = Field(
        1.0,
        gt=0,
        le=1,
        description="decoding temperature: category logits divided by it, continuous noise "
        "multiplied by it (below 1: rows nearer the decoder's mode)",
    )
    calibrate_marginals: bool = Field(
        True,
        description=(
            "after training, calibrate each column's marginal to the training column's on the "
            "model's own draws (ranks kept)"
        ),
    )
    structural_zeros: bool = Field(
        True,
        description="keep pairs of classes fewer than rare_threshold training rows hold (though "
        "independent columns would give 10 rows) out of the drawn rows (not in DP mode)",
    )
    derived_columns: bool = Field(
        True,
        description="learn a number that follows from other columns (a product of positive "
        "numbers, or a sum of an amount per category) as what they leave unexplained, and write "
        "it back from them (not in DP mode)",
    )
    lookup_columns: bool = Field(
        True,
        description="write a column that another one determines on every training row (a code "
        "and its label, a subtype's type) from that column's value, rather than draw it (not in "
        "DP mode)",
    )
    profile_columns: bool = Field(
        True,
        description="draw a group of columns that a key the table does not hold determines (the "
        "area a postcode's columns describe) as one of the combinations at least rare_threshold "
        "training rows hold, rather than column by column (not in DP mode)",
    )
    rare_threshold: int = Field(
        5,
        ge=0,
        description="categories, point masses and values at a column's ends held by fewer rows "
        "are never written out",
    )
    max_categories: int | None = Field(
        150, ge=1, description="categories kept per column; the rest share an 'other' class"
    )
    point_mass_share: float = Field(
        0.02, gt=0, le=1, description="share of rows that makes a number's value a class"
    )
    heap_share: float = Field(
        0.002,
        ge=0,
        le=1,
        description="share of rows (and at least rare_threshold rows) that makes a number's "
        "value a heap: its rows' span of the quantile map decodes to exactly that value, so round "
        "amounts keep their share (0: none)",
    )
    max_train_rows: int | None = Field(
        None, ge=100, description="train on a seeded sample of this many rows"
    )
    epsilon: float | None = Field(
        None,
        gt=0,
        description="DP mode: the total differential-privacy budget (DP-SGD plus the noisy "
        "column statistics); None: no formal guarantee",
    )
    delta: float = Field(
        1e-5, gt=0, lt=1, description="DP mode: the budget's delta; well under 1 / rows"
    )
    seed: int = Field(0, description="seed of training: the same seed gives the same model on CPU")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 mixed precision on CUDA and CPUs with bf16 units"
    )
    checkpoint_every: int = Field(10, ge=1, description="epochs between checkpoints of a fit")
    cpu_threads: int | None = Field(
        None, ge=1, description="torch threads for CPU training; None: 1 for small networks"
    )

    @model_validator(mode="after")
    def _default_prior(self) -> ModelSettings:
        if self.prior is None:
            object.__setattr__(self, "prior", "standard" if self.model == "vae" else "fitted")
        if self.epsilon and self.prior == "learned":
            raise ValueError(
                "prior 'learned' reads the training codes, which DP mode cannot account for: "
                "use 'standard' or 'fitted' with epsilon"
            )
        # DP-SGD's noise grows with the parameters and its per-row gradients cost memory and time
        if self.epsilon and "hidden" not in self.model_fields_set:
            object.__setattr__(self, "hidden", list(DP_HIDDEN))
        # one hidden layer encodes as well as two (validation split) and embeds twice as fast;
        # DP mode keeps the encoder its defaults were measured with
        if self.encoder_hidden is None:
            widths = self.hidden if self.epsilon else self.hidden[:1]
            object.__setattr__(self, "encoder_hidden", list(widths))
        # DP mode trains few, noisy steps: a larger step learns more of the table in them
        if self.epsilon and "lr" not in self.model_fields_set:
            object.__setattr__(self, "lr", DP_LR)
        return self

    def fingerprint_fields(self) -> dict[str, Any]:
        """The settings that change the trained weights (not where or how often it is saved)."""
        return self.model_dump(exclude={"device", "checkpoint_every", "cpu_threads"})

    @classmethod
    def describe(cls) -> str:
        """One line per setting: name, default, what it does (for docstrings and --help)."""
        lines = []
        for name, field in cls.model_fields.items():
            default = field.default_factory() if field.default_factory else field.default
            lines.append(f"{name} = {default!r}: {field.description}")
        return "\n".join(lines)


def validated(model_cls: type[BaseModel], values: dict[str, Any], where: str = "settings") -> Any:
    """Build a pydantic model, turning a validation error into one readable UserError line."""
    try:
        return model_cls(**values)
    except ValidationError as exc:
        errors = exc.errors()
        # a mapping given where text or a mapping may go (`input:`): its own errors, not "not text"
        mappings = {e["loc"][0] for e in errors if len(e["loc"]) > 1 and "[" in str(e["loc"][1])}
        problems = []
        for err in errors:
            if err["loc"][:1] and err["loc"][0] in mappings and err["loc"][1:2] == ("str",):
                continue
            loc = ".".join(str(p) for p in err["loc"] if "[" not in str(p)) or "value"
            msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{loc}: {msg.removeprefix('Value error, ')}")
        raise UserError(f"bad {where}: " + "; ".join(problems)) from None


class DPSettings(BaseModel):
    """DP mode: train with DP-SGD and release every other statistic of the rows with noise, within
    a total (epsilon, delta) budget."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(..., gt=0, description="the total privacy budget")
    delta: float = Field(1e-5, gt=0, lt=1, description="well under 1 / rows")


class PrivacyGate(BaseModel):
    """Limits a run must meet to be published as passed (see synthgen.evaluate.privacy_gate)."""

    model_config = ConfigDict(extra="forbid")

    max_exact_copy_share: float | Literal["natural"] | None = Field(
        None,
        description=(
            "largest share of synthetic rows that equal a training row; "
            "'natural' = the holdout's rate"
        ),
    )
    min_dcr_ratio: float | None = Field(
        None, gt=0, description="median DCR synthetic / holdout, at least"
    )
    max_closer_to_train_share: float | None = Field(None, gt=0, le=1)
    max_mia_auc: float | None = Field(
        None,
        ge=0.5,
        le=1,
        description="largest AUC of the membership-inference attacks (distance, density)",
    )
    max_attribute_advantage: float | None = Field(
        None,
        ge=0,
        le=1,
        description="largest gain of the attribute-inference attack on training rows over "
        "holdout rows",
    )

    def as_dict(self) -> dict[str, Any] | None:
        values = {k: v for k, v in self.model_dump().items() if v is not None}
        return values or None


class ScoredVariant(BaseModel):
    """A trained model sampled another way and scored beside it in the report, never published: the
    default, the AE with z from N(0, I), shows why an autoencoder without a prior is no
    generator."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        ..., pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", description="its row name in the report"
    )
    model: Literal["vae", "ae"] = Field(..., description="the trained model it samples")
    prior: Literal["standard", "fitted"] = Field(
        ..., description="where z is drawn from instead of the model's own"
    )


DEFAULT_VARIANTS = [ScoredVariant(name="ae-standard", model="ae", prior="standard")]


SQL_SCHEMES = ("postgresql", "postgres", "sqlite", "duckdb")
URL_HELP = "url must be postgresql://user@host/db, sqlite:///file.db or duckdb:///file.db"
SECRET_HELP = (
    "give it with PGPASSWORD, a .pgpass file (PGPASSFILE), `password_env: VARIABLE` or "
    "`password_secret: BLOCK` (a Prefect Secret block)"
)


def is_sql_url(value: Any) -> bool:
    """Whether `value` is a database URL synthgen reads (postgresql://, sqlite:///, duckdb:///)."""
    if not isinstance(value, str) or "://" not in value:
        return False
    return value.split("://", 1)[0].split("+", 1)[0].lower() in SQL_SCHEMES


def url_has_password(url: str) -> bool:
    """A password in the URL's user part or in a `password=` parameter."""
    parts = urlsplit(url)
    return bool(parts.password) or "password" in parse_qs(parts.query)


def refuse_password(value: str) -> None:
    """UserError for a database URL holding a password on a command line (shell history, `ps`)."""
    if is_sql_url(value) and url_has_password(value):
        raise UserError("the database URL holds a password: " + SECRET_HELP)


def _no_password(url: str, where: str) -> None:
    # the config is recorded in report.json, manifest.json and Prefect's database
    if url_has_password(url):
        raise ValueError(
            f"{where} holds a password: it would be recorded with the run's settings; "
            + SECRET_HELP
        )


class _Database(BaseModel):
    """A database and how to log in to it (never a password: see SECRET_HELP)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        ..., description="postgresql://user@host:5432/db, sqlite:///f.db, duckdb:///f.db"
    )
    password_env: str | None = Field(None, description="environment variable holding the password")
    password_secret: str | None = Field(None, description="Prefect Secret block holding it")

    @model_validator(mode="after")
    def _check_url(self) -> _Database:
        if not is_sql_url(self.url):
            raise ValueError(URL_HELP)
        _no_password(self.url, "url")
        return self


class SqlInput(_Database):
    """A table or a query in a database (README, "Databases")."""

    table: str | None = Field(None, description="table to read (or ?table= in the URL)")
    query: str | None = Field(None, description="a SELECT to read instead of a table")

    @model_validator(mode="after")
    def _check(self) -> SqlInput:
        given = parse_qs(urlsplit(self.url).query)
        table, query = self.table or given.get("table"), self.query or given.get("query")
        if bool(table) == bool(query):
            raise ValueError("give either a table or a query")
        return self


class SqlPublish(_Database):
    """Also write the published rows to a database table, swapped in within one transaction."""

    table: str = Field(..., description="table to write (schema.table allowed)")
    if_exists: Literal["replace", "append", "fail"] = Field(
        "fail", description="what to do when the table exists"
    )
    model: Literal["vae", "ae"] | None = Field(
        None, description="whose rows (default: the first model's)"
    )


def _publish_mapping(url: str) -> dict[str, Any]:
    """`publish:` as one URL: ?table=, ?if_exists= and ?model= become its keys."""
    base, _, query = url.partition("?")  # not urlunsplit: it drops sqlite:///'s empty host
    given = parse_qs(query)
    keys = {k: v[-1] for k, v in given.items() if k in ("table", "if_exists", "model")}
    rest = "&".join(f"{k}={v}" for k, vs in given.items() if k not in keys for v in vs)
    return {"url": base + ("?" + rest if rest else ""), **keys}


class RunConfig(BaseModel):
    """One generation run: what to read, which models, how many rows, where to publish."""

    model_config = ConfigDict(extra="forbid")

    input: str | SqlInput = Field(
        ...,
        description="CSV, Parquet (file or folder) or JSON Lines table, or a database table or "
        "query (a URL with ?table=, or {url: ..., table: ...} / {url: ..., query: ...})",
    )
    encoding: str | None = Field(
        None, description="text encoding of a CSV input (default: detected)"
    )
    dataset: str | None = Field(
        None, description="name used in output paths (default: the input file's stem)"
    )
    metadata: str | None = Field(
        None, description="SDV single-table metadata JSON overriding inference"
    )
    models: list[Literal["vae", "ae"]] = Field(default_factory=lambda: ["vae", "ae"], min_length=1)
    rows: int | None = Field(
        None, ge=1, description="rows to sample per model (default: as many as the training part)"
    )
    seed: int = Field(
        0, description="seed of the split and the training: the same seed reuses a cached model"
    )
    sample_seed: int | None = Field(
        None, description="seed of the sampled rows (default: a fresh one per run)"
    )
    holdout_fraction: float = Field(
        0.2, ge=0.0, lt=0.9, description="real rows kept out of training for privacy and utility"
    )
    target: str | None = Field(None, description="column to predict for the utility check")
    sensitive: str | None = Field(
        None, description="column the attribute-inference attack tries to learn (default: target)"
    )
    model: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "model settings (epochs, latent_dim, ...) for every model; a `vae:` or `ae:` mapping "
            "inside holds settings for that model only, over the shared ones"
        ),
    )
    scored_variants: list[ScoredVariant] = Field(
        default_factory=lambda: list(DEFAULT_VARIANTS),
        description=(
            "trained models sampled another way and scored beside them, never published ([] for "
            "none); a variant whose model is not run, or that samples as the model does, is skipped"
        ),
    )
    privacy: DPSettings | None = Field(
        None, description="DP mode for every model: {epsilon: E, delta: D} (docs/design.md)"
    )
    privacy_gate: PrivacyGate = Field(default_factory=PrivacyGate)
    conditions: dict[str, Any] | list[dict[str, Any]] | None = Field(
        None,
        description="generate rows meeting conditions: {col: value | [values] | {low, high}}, or "
        "groups [{where: {...}, share: f}] to rebalance (README, Conditional generation)",
    )
    max_eval_rows: int = Field(50_000, ge=100)
    out: str | None = Field(
        None, description="put the whole run (data, reports, model cache) under this folder"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    reuse_models: bool = Field(
        True, description="reuse a cached model trained on the same input and settings"
    )
    sample_shards: int = Field(
        1, ge=1, description="sample in this many shards (on Dask workers when there are any)"
    )
    max_train_rows: int | None = Field(
        None, ge=100, description="train on a seeded sample when the table is larger"
    )
    schedule: str | None = Field(
        None, description="cron schedule for `synthgen serve` (e.g. '0 3 * * *')"
    )
    executor: Literal["local", "dask"] = Field(
        "local", description="where tasks run: threads here, or Dask workers"
    )
    dask_address: str | None = Field(
        None, description="scheduler of an existing Dask cluster (default: a LocalCluster)"
    )
    dask_workers: int = Field(2, ge=1, description="workers of the LocalCluster")
    datasets: list[str] | None = Field(None, description="tables for `synthgen generate-many`")
    publish: SqlPublish | None = Field(
        None, description="also write the rows to a database table: {url, table, if_exists}"
    )

    @model_validator(mode="before")
    @classmethod
    def _urls(cls, values: Any) -> Any:
        # a database URL given as text is checked as its mapping form
        if isinstance(values, dict):
            values = dict(values)
            if is_sql_url(values.get("input")):
                values["input"] = {"url": values["input"]}
            if is_sql_url(values.get("publish")):
                values["publish"] = _publish_mapping(values["publish"])
        return values

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        # scored_variants replaced ae_standard_normal_row (false is scored_variants: [])
        if isinstance(values, dict) and "ae_standard_normal_row" in values:
            values = dict(values)
            if not values.pop("ae_standard_normal_row"):
                values.setdefault("scored_variants", [])
        return values

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.publish and self.publish.model and self.publish.model not in self.models:
            raise ValueError(f"publish.model {self.publish.model!r} is not one of models")
        # every model setting must be valid before any work starts, used or not
        for model in MODEL_KINDS:
            if model in self.models or model in self.model:
                self.model_settings(model)
        if self.conditions is not None and self.sample_shards > 1:
            raise ValueError("conditions sample into one file: leave sample_shards at 1")
        if self.schedule is not None and len(self.schedule.split()) not in (5, 6):
            raise ValueError(
                f"schedule must be a cron expression like '0 3 * * *', got {self.schedule!r}"
            )
        return self

    def secret_blocks(self) -> list[str]:
        """The Prefect Secret blocks the run logs in with (they need the Prefect API up)."""
        places = (self.input, self.publish)
        return [p.password_secret for p in places if isinstance(p, _Database) and p.password_secret]

    def model_settings(self, model: str) -> ModelSettings:
        """The settings of one model: the shared ones under `model:`, then its own section
        (`model: {vae: {...}}`)."""
        shared = {k: v for k, v in self.model.items() if k not in MODEL_KINDS}
        own = self.model.get(model) or {}
        if not isinstance(own, dict):
            raise UserError(
                f"bad model settings: model.{model} must be a mapping of settings for the "
                f"{model} only, got {own!r}"
            )
        extra = {"max_train_rows": self.max_train_rows} if self.max_train_rows else {}
        if self.privacy:
            extra.update(self.privacy.model_dump())
        return validated(
            ModelSettings,
            {"seed": self.seed, **shared, **own, **extra, "model": model, "device": self.device},
            f"{model} settings" if own else "model settings",
        )


def where_conditions(where: list[str]) -> dict[str, Any]:
    """Conditions from `--where` texts: `col=value`; a column given twice takes one of the values;
    `col=low..high` is a range (an end may be left out: `age=65..`)."""
    out: dict[str, Any] = {}
    for text in where:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--where takes col=value or col=low..high, got {text!r}")
        name = name.strip()
        low, dots, high = value.partition("..")
        if dots and ".." not in high:
            spec: Any = {"low": low.strip() or None, "high": high.strip() or None}
        else:
            spec = value
        if name not in out:
            out[name] = spec
        elif isinstance(out[name], list) and not isinstance(spec, dict):
            out[name].append(spec)
        elif not isinstance(out[name], dict) and not isinstance(spec, dict):
            out[name] = [out[name], spec]
        else:
            raise UserError(f"--where gives {name!r} a range and other values")
    return out


def run_overrides(
    settings: dict[str, Any] | None = None,
    *,
    epochs: int | None = None,
    models: str | list | None = None,
    epsilon: float | None = None,
    **given: Any,
) -> dict[str, Any]:
    """What a command line or a flow call sets over a config file: the values given (None: not
    given), with `epochs` as a model setting and `models` as a list ("vae,ae" or ["vae", "ae"])."""
    values = dict(settings or {})
    values.update(
        {k: str(v) if isinstance(v, os.PathLike) else v for k, v in given.items() if v is not None}
    )
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if models:
        values["models"] = models
    if epochs:
        values["model"] = _merged(values.get("model") or {}, {"epochs": epochs})
    if epsilon is not None:
        values["privacy"] = _merged(values.get("privacy") or {}, {"epsilon": epsilon})
    return values


def privacy_gate(
    max_copies: str | None = None,
    min_dcr_ratio: float | None = None,
    max_mia_auc: float | None = None,
    max_attribute_advantage: float | None = None,
) -> PrivacyGate:
    """A privacy gate from command-line text: max_copies is a share (0.01) or 'natural'."""
    values: dict[str, Any] = {
        "min_dcr_ratio": min_dcr_ratio,
        "max_mia_auc": max_mia_auc,
        "max_attribute_advantage": max_attribute_advantage,
    }
    if max_copies is not None:
        try:
            values["max_exact_copy_share"] = (
                max_copies if max_copies == "natural" else float(max_copies)
            )
        except ValueError:
            raise UserError(
                f"--gate-max-copies must be a share (0.01) or 'natural', got {max_copies!r}"
            ) from None
    return validated(PrivacyGate, values, "privacy gate")


def load_run_config(path: str | None = None, **overrides: Any) -> RunConfig:
    """Settings from a YAML file, then overrides (flow parameters, CLI options) other than None."""
    values: dict[str, Any] = {}
    if path is not None:
        import yaml

        if not os.path.isfile(path):
            raise UserError(f"{path}: no such config file")
        try:
            loaded = yaml.safe_load(open(path, encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: the config must be a mapping of settings")
        values.update(loaded)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "model" and isinstance(value, dict):
            values["model"] = _merged(values.get("model") or {}, value)
        else:
            values[key] = value
    return validated(RunConfig, values, "config")


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, per-model sections (`vae:`,
    `ae:`) merged key by key rather than replaced."""
    out = dict(base)
    for key, value in override.items():
        if key in MODEL_KINDS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
