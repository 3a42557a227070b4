"""The public API, in the style SDV users know:
Synthesizer(...).fit(df).sample(n), save(dir), load(dir)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from synthgen import __version__, plan
from synthgen.conditional import (
    meets,
    pair_counts,
    parse_conditions,
    partial_row_groups,
    row_groups,
    sample_conditional,
    seen_pairs,
)
from synthgen.config import ModelSettings, validated
from synthgen.dp import privacy_account, private_stand_in, split_budget
from synthgen.errors import UserError
from synthgen.io import (
    ParquetStreamWriter,
    TableSource,
    atomic_path,
    json_default,
    read_table,
    source_fingerprint,
)
from synthgen.models import MODELS
from synthgen.models.calibration import calibrate_marginals
from synthgen.models.draw import compute_dtype
from synthgen.models.exclusions import find_exclusions
from synthgen.runtime import resolve_device
from synthgen.sample import Rows, Throughput, block_seed, iter_blocks, part_name, shard_range
from synthgen.schema import Schema, infer_schema, load_metadata
from synthgen.score import embed_matrix, score_reference, score_table
from synthgen.sql import read_sql, sql_source
from synthgen.train import TrainResult, train
from synthgen.transform import TableTransformer

log = logging.getLogger("synthgen")

FORMAT = "synthgen-model"
FORMAT_VERSION = 1
# Bumped when a code change alters what training produces: cached models and checkpoints retrain.
TRAINING_REVISION = 12
WEIGHTS, MANIFEST = "model.safetensors", "synthgen.json"
MIN_ROWS = 10  # fewer rows are refused: nothing to learn a distribution from
MAX_COLUMNS_LOGGED = 40  # per-column log lines of a wide table stop here


class Synthesizer:
    """Learn a table with a VAE (or the AE baseline) and draw new rows from it.

    >>> synth = Synthesizer("vae", epochs=50).fit(df)
    >>> synthetic = synth.sample(10_000, seed=1)

    Settings are keywords (or one `ModelSettings`); each, with its default:

    {settings}
    """

    def __init__(
        self, model: str = "vae", settings: ModelSettings | None = None, **keywords: Any
    ) -> None:
        given = settings.model_dump(exclude_unset=True) if settings else {}
        values = {**given, "model": model, **keywords}
        self.settings: ModelSettings = validated(ModelSettings, values, "model settings")
        self.transformer: TableTransformer | None = None
        self.net: torch.nn.Module | None = None
        self.training: TrainResult | None = None
        self.info: dict[str, Any] = {}

    @property
    def schema(self) -> Schema:
        self._require_fitted()
        return self.transformer.schema

    # ----------------------------------------------------------------------------------------------
    def fit(
        self,
        data: TableSource,
        metadata: dict | str | os.PathLike | None = None,
        *,
        checkpoint_dir: str | os.PathLike | None = None,
        progress: bool | None = None,
        encoding: str | None = None,
        table: str | None = None,
        query: str | None = None,
    ) -> Synthesizer:
        """Infer the schema, encode the table (`preprocess`) and train (`fit_processed_data`).
        `checkpoint_dir` makes a killed fit resumable; `encoding` is a CSV's text encoding.

        `data` may be a database: a URL (`postgresql://user@host/db?table=customers`,
        `sqlite:///f.db`, `duckdb:///f.db`), an `SqlSource`, or an open connection, with `table=`
        or `query=`. Its rows stream in batches; with `max_train_rows` only a seeded sample of
        them is kept in memory."""
        matrix = self.preprocess(data, metadata, encoding=encoding, table=table, query=query)
        return self.fit_processed_data(matrix, checkpoint_dir=checkpoint_dir, progress=progress)

    def preprocess(
        self,
        data: TableSource,
        metadata: dict | str | os.PathLike | None = None,
        *,
        encoding: str | None = None,
        table: str | None = None,
        query: str | None = None,
    ) -> np.ndarray:
        """Read the table, infer its schema, fit the encoders and return the encoded training
        matrix (float32, one row per training row)."""
        st = self.settings
        # a wrong device is an error before any work
        log.info("device: %s", resolve_device(st.device))
        source = sql_source(data, table=table, query=query)
        meta = _metadata(metadata)
        if source is not None:  # streamed: only the sample max_train_rows keeps is held
            read = read_sql(source, sample_rows=st.max_train_rows, seed=st.seed)
            df, input_hash, rows = read.to_pandas(), read.sha256, read.rows
            meta, name = read.metadata(meta), source.where
        else:
            df = read_table(data, encoding=encoding)
            input_hash, rows, name = source_fingerprint(data), len(df), _name(data)
        if len(df) < MIN_ROWS:
            raise UserError(
                f"{name} has {len(df)} rows: synthgen needs at least {MIN_ROWS} to learn from"
            )
        schema = infer_schema(df, meta)
        _log_schema(schema)
        train_df = df
        if st.max_train_rows and len(df) > st.max_train_rows:
            train_df = df.sample(n=st.max_train_rows, random_state=st.seed)
        if len(train_df) < rows:
            log.warning(
                "table has %d rows: training on a seeded sample of %d (max_train_rows)",
                rows,
                len(train_df),
            )
        t0 = time.perf_counter()
        fit_df, self._public_matrix = train_df, None
        if st.epsilon:
            budget = split_budget(st.epsilon, st.delta, fitted_prior=st.prior == "fitted")
            # the encoders never see the rows: they fit on a stand-in drawn from noisy histograms
            fit_df, schema, marginals = private_stand_in(
                train_df, schema, budget["marginals"], st.seed
            )
            self._budget = budget
            self._dp_marginals = marginals
            log.info(
                "DP mode: epsilon %g, delta %g: %s",
                st.epsilon,
                st.delta,
                ", ".join(f"{k} {v.epsilon:.3g}" for k, v in budget.items()),
            )
        max_categories = plan.category_cap(schema, st.max_categories)
        self.transformer = TableTransformer(
            rare_threshold=st.rare_threshold,
            max_categories=max_categories,
            point_mass_share=st.point_mass_share,
            heap_share=st.heap_share,
            derive=st.derived_columns and not st.epsilon,  # DP: the search would read the rows
            lookups=st.lookup_columns and not st.epsilon,
            profiles=st.profile_columns and not st.epsilon,
        ).fit(fit_df, schema)
        for profile in self.transformer.profile_groups():
            log.info("profile columns: %s", profile)
        for lookup in self.transformer.lookup_maps():
            log.info("lookup column: %s (written from it, not drawn)", lookup)
        for relation in self.transformer.relations():
            log.info("derived column: %s (learned as its residual)", relation)
        _log_pooling(self.transformer.pooling_summary(), max_categories)
        heaps = self.transformer.heap_summary()
        if heaps:
            log.info(
                "heaped values, each decoded exactly with its share of the rows: %s",
                ", ".join(f"{k} {v['values']}" for k, v in heaps.items()),
            )
        protection = self.transformer.protection_summary()
        _log_protection(protection, st.rare_threshold)
        matrix = self.transformer.transform(train_df)
        if st.epsilon:  # the class shares the calibration targets: the stand-in's
            self._public_matrix = self.transformer.transform(fit_df)
        encode_s = time.perf_counter() - t0
        layout = self.transformer.layout
        log.info(
            "encoded %d rows to %d columns (model input %d wide, output %d)",
            len(matrix),
            layout.n_inputs,
            layout.onehot_width,
            layout.out_width,
        )
        self.info = {
            "input_sha256": input_hash,
            "fingerprint": _fingerprint(input_hash, st, meta),
            "rows": rows,
            "train_rows_used": len(train_df),
            "encode_seconds": encode_s,
            "protection": protection,
        }
        self._source = name
        return matrix

    def fit_processed_data(
        self,
        matrix: np.ndarray,
        *,
        checkpoint_dir: str | os.PathLike | None = None,
        progress: bool | None = None,
    ) -> Synthesizer:
        """Train on a matrix from `preprocess`: plan the memory, train the network, calibrate the
        marginals. `checkpoint_dir` makes a killed fit resumable."""
        if self.transformer is None:
            raise UserError("preprocess a table first: fit() does both")
        st, layout = self.settings, self.transformer.layout
        memory = plan.plan_fit(
            layout,
            len(matrix),
            len(self.transformer.schema.columns),
            hidden=st.hidden,
            encoder_hidden=st.encoder_hidden,
            latent_dim=st.latent_dim,
            batch_size=st.batch_size,
            variational=st.model == "vae",
            where=getattr(self, "_source", "the table"),
            per_row_gradients=bool(st.epsilon),
        )
        torch.manual_seed(st.seed)
        self.net = MODELS[st.model](layout, st)
        trained_with = (
            st
            if memory.batch_size == st.batch_size
            else st.model_copy(update={"batch_size": memory.batch_size})
        )
        self.training = train(
            self.net,
            matrix,
            trained_with,
            checkpoint_dir=checkpoint_dir,
            fingerprint=self.info.get("fingerprint", ""),
            progress=progress,
            budget=self._budget if st.epsilon else None,
        )
        if st.epsilon:
            self.info["privacy"] = privacy_account(
                st.epsilon, st.delta, self._budget, self._dp_marginals, self.training.privacy
            )
        if st.structural_zeros and not st.epsilon:  # DP mode: the pairs would read the rows
            self.info["exclusions"] = find_exclusions(
                matrix, layout, self.transformer.settings["rare_threshold"]
            )
            self.net.likelihood.set_exclusions(self.info["exclusions"])
            log.info(
                "%d pairs of columns hold classes (almost) no training row holds together: drawn "
                "rows keep them apart",
                len(self.info["exclusions"]),
            )
        if st.calibrate_marginals:
            public = self._public_matrix if st.epsilon else matrix
            blocks, values = calibrate_marginals(
                self.net,
                torch.from_numpy(public),
                st.seed,
                st.precision,
                rows=memory.calibration_rows,
            )
            log.info(
                "calibrated the marginals of %d category blocks and %d continuous values to the "
                "training columns' on %d drawn rows",
                blocks,
                values,
                memory.calibration_rows,
            )
        if not st.epsilon:  # DP mode: both read the rows, which would spend budget
            self.info["score_reference"] = score_reference(self.net, matrix, st.seed)
            k = self.transformer.settings["rare_threshold"]
            self.info["seen_pairs"] = seen_pairs(matrix, self.transformer, k)
            self.info["pair_counts"] = pair_counts(matrix, self.transformer, k)
        self.info["plan"] = memory.to_dict()
        return self

    @property
    def block_rows(self) -> int:
        """Rows per sampled block (synthgen.plan): the stream
        of rows for a seed is cut into blocks of this many."""
        self._require_fitted()
        return plan.block_rows(
            self.transformer.layout,
            len(self.transformer.schema.columns),
            self.settings.latent_dim,
            self.settings.model == "vae",
        )

    # ----------------------------------------------------------------------------------------------
    def sample(
        self,
        n: int | None = None,
        seed: int | None = None,
        *,
        prior: str | None = None,
        conditions: Mapping[str, Any] | list[dict] | pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """`n` new rows as a DataFrame with the training table's columns and dtypes. `prior`
        ("standard", "fitted", or "learned" where trained) draws z from another prior than the
        model's own (for contrasts such
        as an AE from N(0, I)).

        `conditions`: `{"col": value | [values] | (low, high)}` gives n rows meeting all of them
        (a `None` end leaves a range open); groups `[{"where": {...}, "share": 0.5}, ...]` split
        the n rows among several (to rebalance a class; rows come group by group); a DataFrame
        of partial rows completes each row (missing cells are drawn, n is its length). The
        conditioned columns hold exactly; the others follow the model's conditional distribution
        (synthgen.conditional)."""
        self._require_fitted()
        self._check_conditions(conditions)
        seed = self._seed(seed)
        if isinstance(conditions, pd.DataFrame):
            if n is not None and n != len(conditions):
                raise UserError(f"n is {n} but the partial rows number {len(conditions)}")
            return self._complete_rows(conditions, seed)
        n = _check_rows(n)
        if not n:
            return self.transformer.inverse_transform(
                np.zeros((0, self.transformer.layout.n_inputs), np.float32)
            )
        meter, rows = Throughput(n), Rows(n)
        for block in self._blocks(n, seed, 0, prior, conditions):
            rows.add(block)
            meter.add(len(block))
        return rows.frame()

    def _check_conditions(self, conditions: Any) -> None:
        """Malformed or impossible conditions are an error before any work."""
        if conditions is not None and not isinstance(conditions, pd.DataFrame):
            for where, _ in row_groups(conditions, 0):
                parse_conditions(where, self.transformer)

    def _conditional_blocks(self, rows: int, seed: int, conditions: Any) -> Iterator[pd.DataFrame]:
        """Rows meeting `conditions` (a mapping, or groups with shares), block by block; every
        condition is checked before any row is drawn."""
        groups = [
            (parse_conditions(where, self.transformer), k)
            for where, k in row_groups(conditions, rows)
        ]
        done = 0
        for g, (parsed, k) in enumerate(groups):
            for a in range(0, k, self.block_rows):
                m = min(self.block_rows, k - a)
                df, stats = sample_conditional(
                    self.net,
                    self.transformer,
                    parsed,
                    m,
                    block_seed(seed, (g << 32) + a // self.block_rows),
                    self.settings.precision,
                    row_offset=done,
                    seen=self.info.get("seen_pairs"),
                    counts=self.info.get("pair_counts"),
                )
                if a == 0:  # once per group of conditions
                    for warning in stats["warnings"]:
                        log.warning("%s: the rows drawn are the model's extrapolation", warning)
                done += m
                yield df

    def _complete_rows(self, rows: pd.DataFrame, seed: int) -> pd.DataFrame:
        """Each partial row completed: rows fixing the same cells are drawn together."""
        parts, order, done, warned = [], [], 0, []
        for i, (fixed, positions) in enumerate(partial_row_groups(rows, self.transformer)):
            parsed = parse_conditions(fixed, self.transformer) if fixed else []
            df, stats = sample_conditional(
                self.net,
                self.transformer,
                parsed,
                len(positions),
                block_seed(seed, i),
                self.settings.precision,
                row_offset=done,
                seen=self.info.get("seen_pairs"),
                counts=self.info.get("pair_counts"),
            )
            done += len(positions)
            warned += stats["warnings"][:1] * len(positions)
            parts.append(df)
            order.extend(positions)
        if warned:
            log.warning(
                "%d of %d partial rows fix values no training row may hold together (e.g. %s): "
                "their other cells are the model's extrapolation",
                len(warned),
                len(rows),
                warned[0],
            )
        if not parts:
            return self.sample(0, seed).set_axis(rows.index)
        out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        out = out.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
        out.index = rows.index
        return out

    def meets(self, data: TableSource, conditions: Mapping[str, Any]) -> np.ndarray:
        """Which rows of a table meet `conditions` (as `sample` takes them): a bool array."""
        self._require_fitted()
        df = _rows(data)
        return meets(df, parse_conditions(conditions, self.transformer), self.transformer)

    # ----------------------------------------------------------------------------------------------
    def embed(
        self,
        data: TableSource,
        *,
        encoding: str | None = None,
        table: str | None = None,
        query: str | None = None,
    ) -> pd.DataFrame:
        """Each row's place in the latent space: the VAE's posterior mean, or the AE's code, as
        columns z0..z{latent_dim - 1}, the table's index kept. `data` as `fit` takes it (a
        database: `table=` or `query=`). The encoder runs in bf16 where the `precision` setting
        lets sampling use it (codes within about 0.02 of float32's, which precision="fp32"
        gives)."""
        self._require_fitted()
        df = _rows(data, encoding, table, query)
        dtype = compute_dtype(self.settings.precision, next(self.net.parameters()).device)
        z = embed_matrix(self.net, self.transformer.transform(df), dtype)
        return pd.DataFrame(z, index=df.index, columns=[f"z{i}" for i in range(z.shape[1])])

    def score(
        self,
        data: TableSource,
        *,
        encoding: str | None = None,
        table: str | None = None,
        query: str | None = None,
    ) -> pd.DataFrame:
        """Anomaly scores, the table's index kept: `score` (the VAE's negative ELBO, the AE's
        reconstruction loss; higher is more unusual), `percentile` among training rows,
        `most_unusual` column, the VAE's `kl`, and each column's part as `nll:<column>`. Unseen
        categories and out-of-range values are scored, not refused. `data` as `fit` takes it."""
        self._require_fitted()
        df = _rows(data, encoding, table, query)
        return score_table(self.net, self.transformer, df, self.info.get("score_reference"))

    def sample_to_parquet(
        self,
        n: int,
        path: str | os.PathLike,
        seed: int | None = None,
        *,
        batch_rows: int | None = None,
        shards: int = 1,
        prior: str | None = None,
        conditions: Any = None,
    ) -> Path:
        """Stream `n` rows to one Parquet file, a row group per batch: flat memory for any `n`.
        `conditions` as in `sample` (a mapping or groups; not with shards).

        With `shards` > 1, `path` is a folder of part files (part-00000.parquet, ...), one Parquet
        dataset, renamed into place once every part is written. The rows are the same whatever the
        sharding.
        """
        self._require_fitted()
        self._check_conditions(conditions)
        seed = self._seed(seed)
        n = _check_rows(n)
        if conditions is not None and shards > 1:
            raise UserError("conditional sampling writes one file: leave shards at 1")
        if shards == 1:
            return self._write_rows(Path(path), n, seed, 0, batch_rows, prior, conditions)
        with atomic_path(path, is_dir=True) as folder:
            for shard in range(shards):
                self.sample_shard(
                    n,
                    folder / part_name(shard),
                    seed=seed,
                    shard=shard,
                    shards=shards,
                    batch_rows=batch_rows,
                    prior=prior,
                )
        return Path(path)

    def sample_shard(
        self,
        n: int,
        path: str | os.PathLike,
        *,
        seed: int,
        shard: int,
        shards: int,
        batch_rows: int | None = None,
        prior: str | None = None,
    ) -> Path:
        """Write shard `shard` of `shards` of the `n`-row stream for `seed` to one part file.

        Shards cut the stream on block boundaries, so they
        can run on different workers, in any order."""
        self._require_fitted()
        start, rows = shard_range(_check_rows(n), shard, shards, self.block_rows)
        return self._write_rows(Path(path), rows, int(seed), start, batch_rows, prior)

    def _blocks(
        self, rows: int, seed: int, start_row: int, prior: str | None, conditions: Any = None
    ) -> Iterator[pd.DataFrame]:
        if prior not in (None, "standard", "fitted", "learned"):
            raise UserError(f"prior must be 'standard', 'fitted' or 'learned', got {prior!r}")
        if prior == "learned" and self.net.prior.flow is None:
            raise UserError("this model has no learned prior: train it with prior='learned'")
        if conditions is not None:
            if prior is not None:
                raise UserError("conditions draw z from the model's own prior: leave prior unset")
            return self._conditional_blocks(rows, seed, conditions)
        return iter_blocks(
            self.net,
            self.transformer,
            rows,
            seed,
            start_row=start_row,
            precision=self.settings.precision,
            block_rows=self.block_rows,
            prior=prior,
        )

    def _write_rows(
        self,
        path: Path,
        rows: int,
        seed: int,
        start_row: int,
        batch_rows: int | None,
        prior: str | None,
        conditions: Any = None,
    ) -> Path:
        batch_rows = batch_rows or 4 * self.block_rows  # a row group per four blocks
        meter = Throughput(rows)
        pending: list[pd.DataFrame] = []
        pending_rows = 0
        with ParquetStreamWriter(
            path, row_group_rows=max(batch_rows, 1), field_types=self.transformer.arrow_types()
        ) as writer:
            for block in self._blocks(rows, seed, start_row, prior, conditions):
                pending.append(block)
                pending_rows += len(block)
                if pending_rows >= batch_rows:
                    writer.write(pd.concat(pending, ignore_index=True))
                    pending, pending_rows = [], 0
                meter.add(len(block))
            if pending or writer.rows == 0:
                writer.write(
                    pd.concat(pending, ignore_index=True) if pending else self.sample(0, seed)
                )
        return path

    def _seed(self, seed: int | None) -> int:
        if seed is None:
            seed = secrets.randbits(31)
            log.info("sampling with a fresh seed %d (pass seed= to repeat it)", seed)
        self.last_seed = int(seed)
        return int(seed)

    # ----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Weights as safetensors, the rest as JSON; written to a temporary folder, then renamed."""
        self._require_fitted()
        path = Path(path)
        with atomic_path(path, is_dir=True) as tmp:
            weights = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
            save_file(weights, str(tmp / WEIGHTS))
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "synthgen_version": __version__,
                "torch_version": torch.__version__,
                "model": self.settings.model,
                "settings": self.settings.model_dump(),
                "transformer": self.transformer.state(),
                "training": self.training.to_dict() if self.training else None,
                "info": self.info,
                "weights_sha256": source_fingerprint(tmp / WEIGHTS),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, default=json_default))
        log.info("saved the %s model to %s", self.settings.model, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> Synthesizer:
        """Load a saved model; never unpickles. Refuses unknown formats and tampered weights."""
        path = Path(path)
        manifest_path, weights_path = path / MANIFEST, path / WEIGHTS
        if not manifest_path.is_file() or not weights_path.is_file():
            raise UserError(
                f"{path}: not a synthgen model folder (expected {MANIFEST} and {WEIGHTS})"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{manifest_path}: not valid JSON") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UserError(
                f"{path}: not a synthgen model (format is "
                f"{manifest.get('format') if isinstance(manifest, dict) else None!r})"
            )
        if manifest.get("format_version") != FORMAT_VERSION:
            raise UserError(
                f"{path}: model format version {manifest.get('format_version')!r} is not supported "
                f"by synthgen {__version__} (it reads version {FORMAT_VERSION})"
            )
        if source_fingerprint(weights_path) != manifest.get("weights_sha256"):
            raise UserError(
                f"{weights_path}: weights do not match the checksum in {MANIFEST} "
                "(modified or corrupt)"
            )
        settings = dict(manifest["settings"], device=device)
        # saved before the setting existed: no calibration weights
        settings.setdefault("calibrate_marginals", False)
        # saved while the encoder's default was `hidden` (a saved model now names its widths)
        if settings.get("encoder_hidden") is None:
            settings["encoder_hidden"] = settings["hidden"]
        synth = cls(**settings)
        synth.transformer = TableTransformer.from_state(manifest["transformer"])
        synth.net = MODELS[synth.settings.model](synth.transformer.layout, synth.settings)
        try:
            weights = load_file(str(weights_path))
            # saved before categories were calibrated: no logit shifts (nor, for a table without
            # continuous values, any calibration), which the unfitted calibration, the identity,
            # stands in for
            identity = {
                k: v
                for k, v in synth.net.state_dict().items()
                if k.startswith("likelihood.calibration.") and k not in weights
            }
            synth.net.load_state_dict({**identity, **weights})
        except Exception as exc:  # safetensors header errors, missing or misshapen tensors
            raise UserError(
                f"{weights_path}: cannot load weights ({str(exc).splitlines()[0]})"
            ) from None
        synth.net.to(resolve_device(device)).eval()
        synth.training = TrainResult(**manifest["training"]) if manifest.get("training") else None
        synth.info = manifest.get("info", {})
        synth.net.likelihood.set_exclusions(synth.info.get("exclusions"))
        return synth

    def _require_fitted(self) -> None:
        if self.net is None or self.transformer is None:
            raise UserError("the synthesizer is not fitted: call fit() or Synthesizer.load() first")


def _log_schema(schema: Schema) -> None:
    log.info("schema: %s", schema.summary())
    for kind, what in (
        ("id", "not learned, regenerated unique"),
        ("empty", "not learned, written back all-missing"),
        ("text", "free text: only values seen often enough are learned"),
    ):
        names = [c.name for c in schema.columns if c.kind == kind]
        if names:
            shown = ", ".join(map(str, names[:12])) + (", ..." if len(names) > 12 else "")
            log.info(
                "%d %s column%s (%s): %s", len(names), kind, "s" * (len(names) > 1), shown, what
            )


def _log_pooling(pooled_columns: dict[str, dict[str, int]], max_categories: int | None) -> None:
    for name, pooled in list(pooled_columns.items())[:MAX_COLUMNS_LOGGED]:
        log.info(
            "column %r: %d rare values (%d rows) pooled as '(rare)', "
            "%d values beyond the %s most frequent pooled as 'other'",
            name,
            pooled["rare_values"],
            pooled["rare_rows"],
            pooled["overflow_values"],
            max_categories,
        )
    if len(pooled_columns) > MAX_COLUMNS_LOGGED:
        log.info(
            "... and %d more columns with pooled values", len(pooled_columns) - MAX_COLUMNS_LOGGED
        )


def _log_protection(protection: dict[str, dict[str, Any]], k: int) -> None:
    ends = {name: p for name, p in protection.items() if "rare_end_values" in p}
    if ends:
        log.info(
            "value protection: %d numeric or date columns have values at their ends that fewer "
            "than %d rows hold (%d values, %d rows); the nearest values enough rows share are "
            "written instead",
            len(ends),
            k,
            sum(p["rare_end_values"] for p in ends.values()),
            sum(p["rows"] for p in ends.values()),
        )


def _name(data: TableSource) -> str:
    return "the DataFrame" if isinstance(data, pd.DataFrame) else str(data)


def _rows(
    data: TableSource,
    encoding: str | None = None,
    table: str | None = None,
    query: str | None = None,
) -> pd.DataFrame:
    """A whole table to read rows from: a file, a DataFrame, or a database table or query."""
    source = sql_source(data, table=table, query=query)
    if source is not None:
        return read_sql(source).to_pandas()
    return read_table(data, encoding=encoding)


def _check_rows(n: int) -> int:
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise UserError(f"number of rows must be a non-negative integer, got {n!r}")
    return int(n)


def _metadata(metadata: dict | str | os.PathLike | None) -> dict | None:
    return (
        metadata if isinstance(metadata, dict) or metadata is None else load_metadata(str(metadata))
    )


def _fingerprint(input_hash: str, settings: ModelSettings, metadata: dict | None = None) -> str:
    payload = json.dumps(
        {
            "input": input_hash,
            "settings": settings.fingerprint_fields(),
            "metadata": metadata,
            "format_version": FORMAT_VERSION,
            "training_revision": TRAINING_REVISION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def model_cache_key(
    input_hash: str, settings: ModelSettings, metadata: dict | str | os.PathLike | None = None
) -> str:
    """Key of a trained model: input content hash + the settings that change the weights + the
    metadata that overrides column kinds (its content) + the training code's revision
    (TRAINING_REVISION)."""
    return _fingerprint(input_hash, settings, _metadata(metadata))[:24]


def fit_or_reuse(
    train: TableSource,
    settings: ModelSettings,
    cache_dir: str | os.PathLike,
    *,
    cache_key_input: str,
    metadata: dict | str | None = None,
    reuse: bool = True,
    progress: bool | None = False,
) -> tuple[Synthesizer, Path, bool]:
    """A trained model for (`cache_key_input`, settings): loaded from the cache when one exists,
    else trained (resumable: its checkpoints sit beside the cache entry) and saved there. Returns
    (model, folder, reused)."""
    cache_dir = Path(cache_dir)
    model_dir = (
        cache_dir / f"{settings.model}-{model_cache_key(cache_key_input, settings, metadata)}"
    )
    if reuse and (model_dir / MANIFEST).is_file():
        try:
            synth = Synthesizer.load(model_dir, device=settings.device)
            log.info(
                "reusing the cached %s model %s: same input and settings, training skipped",
                settings.model,
                model_dir.name,
            )
            return synth, model_dir, True
        except UserError as exc:
            log.warning("cached model %s is unusable (%s): training again", model_dir, exc)
    log.info(
        "training the %s model: %s",
        settings.model,
        "no cached model for this input and these settings" if reuse else "model reuse is off",
    )
    checkpoints = model_dir.with_name(model_dir.name + ".ckpt")
    synth = Synthesizer(**settings.model_dump()).fit(
        train, metadata=metadata, checkpoint_dir=checkpoints, progress=progress
    )
    synth.save(model_dir)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return synth, model_dir, False


Synthesizer.__doc__ = Synthesizer.__doc__.replace(
    "{settings}", ModelSettings.describe().replace("\n", "\n    ")
)
