"""The generation pipeline as a Prefect flow. Orchestration only:
every task calls a synthgen function.

ingest (read, hash, infer and validate the schema) -> split (train/holdout, seeded) -> train each
model (or reuse it) -> sample -> evaluate -> scored variants -> report -> publish. Tasks pass paths
and hashes, never DataFrames.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed

from synthgen import process
from synthgen.config import RunConfig, load_run_config, run_overrides
from synthgen.evaluate import evaluate
from synthgen.io import read_table
from synthgen.report import render_markdown, scores_rows, verdict, write_report
from synthgen.runs import (
    RunPaths,
    build_manifest,
    build_report,
    checked_schema,
    dataset_name,
    discard,
    input_metadata,
    input_table,
    new_run_id,
    peak_rss_mb,
    preflight,
    publish,
    publish_database,
    release_input,
    run_summary,
    scored_variants,
    split_train_holdout,
    training_record,
    withhold_failed,
)
from synthgen.sample import part_name
from synthgen.schema import Schema
from synthgen.score import latent_map
from synthgen.synthesizer import Synthesizer, fit_or_reuse

MAX_COLUMNS_LOGGED = 40  # wider tables log their schema as one summary line
MIN_CONDITIONED_HOLDOUT = 20  # fewer holdout rows meeting the conditions: no privacy or utility


@task(name="ingest", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def ingest(
    cfg: RunConfig, checked: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The input's size, hash and schema, checked against the settings: what the caller's preflight
    found when it ran in this process (`checked`: its input info), else read here."""
    schema = checked_schema(cfg, checked) if checked is not None else None
    if schema is not None:
        info = checked
    else:
        info, schema = preflight(cfg)
    logger = get_run_logger()
    logger.info(
        "input %s: %d rows x %d columns, sha256 %s",
        info["path"],
        info["rows"],
        info["columns"],
        info["sha256"][:12],
    )
    if len(schema.columns) <= MAX_COLUMNS_LOGGED:
        for row in schema.explain():
            logger.info("column %s: %s (%s)", row["column"], row["kind"], row["reason"])
    else:  # a wide table: one line, and every column's reason in the report
        logger.info("schema: %s", schema.summary())
    return info, schema.to_dict()


@task(name="split", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def split(cfg: RunConfig, paths: RunPaths, input_info: dict[str, Any]) -> dict[str, Any]:
    parts = split_train_holdout(
        input_table(cfg, input_info), paths.work, cfg.holdout_fraction, cfg.seed, cfg.encoding
    )
    get_run_logger().info(
        "split (seed %d): %d training rows, %d holdout rows",
        cfg.seed,
        parts["train_rows"],
        parts["holdout_rows"],
    )
    return parts


@task(name="train", cache_policy=NO_CACHE)
def train(
    cfg: RunConfig, model: str, parts: dict, input_info: dict, paths: RunPaths
) -> dict[str, Any]:
    settings = cfg.model_settings(model)
    key = f"{input_info['sha256']}:{cfg.seed}:{cfg.holdout_fraction}"
    t0 = time.perf_counter()
    synth, model_dir, reused = fit_or_reuse(
        parts["train"],
        settings,
        paths.models_dir,
        cache_key_input=key,
        metadata=input_metadata(cfg, input_info),
        reuse=cfg.reuse_models,
    )
    record = training_record(synth, model_dir, reused, settings, time.perf_counter() - t0)
    t, logger = synth.training, get_run_logger()
    if reused:
        logger.info(
            "%s: reused the cached model %s (unchanged input and settings): training skipped",
            model,
            model_dir.name,
        )
    else:
        logger.info(
            "%s: trained on %s, %d of %d epochs%s, %.1fs",
            model,
            t.device,
            t.epochs_run,
            t.epochs_planned,
            f" (early stop, best epoch {t.best_epoch})" if t.stopped_early else "",
            t.seconds,
        )
    used, rows = record["training"]["rows_used"], record["training"]["table_rows"]
    if used and rows and used < rows:
        logger.warning(
            "%s: trained on a seeded sample of %d of the %d training rows (max_train_rows)",
            model,
            used,
            rows,
        )
    return record


@task(name="sample", cache_policy=NO_CACHE)
def sample(
    name: str,
    trained: dict,
    rows: int,
    seed: int,
    folder: Path,
    device: str,
    prior: str | None = None,
    conditions: Any = None,
) -> dict[str, Any]:
    """`rows` rows of a trained model into `folder`
    (the staged data; a scored variant's go to the work folder)."""
    out = folder / f"{name}.parquet"
    t0 = time.perf_counter()
    Synthesizer.load(trained["model_dir"], device=device).sample_to_parquet(
        rows, out, seed=seed, prior=prior, conditions=conditions
    )
    seconds = time.perf_counter() - t0
    get_run_logger().info(
        "%s: sampled %d rows in %.1fs (%.0f rows/s), seed %d%s",
        name,
        rows,
        seconds,
        rows / max(seconds, 1e-9),
        seed,
        f", z from the {prior} prior" if prior else "",
    )
    return {"path": str(out), "rows": rows, "seed": seed, "seconds": seconds, "shards": 1}


@task(name="sample-shard", cache_policy=NO_CACHE)
def sample_shard(
    model_dir: str, rows: int, seed: int, shard: int, shards: int, folder: str, device: str
) -> dict[str, Any]:
    t0 = time.perf_counter()
    path = Synthesizer.load(model_dir, device=device).sample_shard(
        rows, Path(folder) / part_name(shard), seed=seed, shard=shard, shards=shards
    )
    return {"path": str(path), "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def sample_sharded(
    model: str, trained: dict, rows: int, seed: int, paths: RunPaths, cfg: RunConfig
) -> dict[str, Any]:
    """Shards with independent seeds, on the flow's task runner (Dask workers when it has them),
    written as part files of one Parquet dataset inside the run's staging folder: published with the
    run, or not at all."""
    folder = paths.staged_data / f"{model}.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    futures = [
        sample_shard.submit(
            trained["model_dir"], rows, seed, k, cfg.sample_shards, str(folder), cfg.device
        )
        for k in range(cfg.sample_shards)
    ]
    parts = [f.result() for f in futures]
    seconds = time.perf_counter() - t0
    get_run_logger().info(
        "%s: sampled %d rows in %d shards in %.1fs (%.0f rows/s), seed %d",
        model,
        rows,
        cfg.sample_shards,
        seconds,
        rows / max(seconds, 1e-9),
        seed,
    )
    return {
        "path": str(folder),
        "rows": rows,
        "seed": seed,
        "seconds": seconds,
        "shards": cfg.sample_shards,
        "peak_rss_mb_per_shard": [p["peak_rss_mb"] for p in parts],
    }


@task(name="evaluate", cache_policy=NO_CACHE)
def score(
    cfg: RunConfig,
    parts: dict,
    sampled: dict,
    schema: dict,
    gated: bool = True,
    model_dir: str | None = None,
) -> dict[str, Any]:
    """`gated`: apply the privacy gate (rows that will be published);
    a scored variant is only scored. With `model_dir` (a published model) the evaluation also holds
    `latent`, the latent-space map of the same rows, and rows generated under one set of conditions
    are scored against the real rows that meet them."""
    holdout = read_table(parts["holdout"]) if parts["holdout"] else None
    train, synthetic = read_table(parts["train"]), read_table(sampled["path"])
    synth = Synthesizer.load(model_dir, device="cpu") if model_dir else None
    real = train
    if isinstance(cfg.conditions, dict) and synth is not None:
        real = train[synth.meets(train, cfg.conditions)].reset_index(drop=True)
        if holdout is not None:
            holdout = holdout[synth.meets(holdout, cfg.conditions)].reset_index(drop=True)
            holdout = holdout if len(holdout) >= MIN_CONDITIONED_HOLDOUT else None
        get_run_logger().info(
            "scoring against the %d training rows that meet the conditions", len(real)
        )
    evaluation = evaluate(
        real,
        synthetic,
        holdout=holdout,
        target=cfg.target if holdout is not None else None,
        schema=Schema.from_dict(schema),
        max_rows=cfg.max_eval_rows,
        seed=cfg.seed,
        gate=cfg.privacy_gate.as_dict() if gated else None,
        sensitive=cfg.sensitive,
    )
    if synth is not None:
        evaluation["latent"] = latent_map(
            synth.net, synth.transformer, train, synthetic, seed=cfg.seed
        )
    return evaluation


@task(name="publish-database", cache_policy=NO_CACHE)
def publish_to_database(
    cfg: RunConfig, report: dict, paths: RunPaths, schema: dict, input_info: dict
) -> dict[str, Any]:
    """The published rows into `publish:`'s table (no retries: an append must not run twice)."""
    written = publish_database(cfg, report, paths, Schema.from_dict(schema), input_info)
    get_run_logger().info(
        "%s: %d rows to %s (%s)",
        written["model"],
        written["rows"],
        cfg.publish.table,
        written["action"],
    )
    return written


@task(name="publish", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def publish_run(report: dict, paths: RunPaths) -> tuple[dict[str, Any], dict[str, str]]:
    """Withhold the rows of models that failed their privacy gate,
    write the report and the manifest, publish."""
    withheld = withhold_failed(report, paths)
    report["verdict"] = verdict(report)
    manifest = build_manifest(report, paths, withheld)
    write_report(report, paths.staged_report)
    return manifest, publish(paths, manifest)


@flow(name="generate", log_prints=True)
def generate(
    input: str | None = None,
    config_file: str | None = None,
    models: list[str] | None = None,
    rows: int | None = None,
    epochs: int | None = None,
    target: str | None = None,
    seed: int | None = None,
    sample_seed: int | None = None,
    out: str | None = None,
    device: str | None = None,
    settings: dict[str, Any] | None = None,
    checked: dict[str, Any] | None = None,
):
    """Dataset in, synthetic Parquet and a quality report out. Settings: YAML file, then these
    parameters. `checked`: the input's info when the caller already read and checked it."""
    # under `synthgen generate`: a stop signal ends the run within seconds
    process.rearm_stop_signals()
    cfg = load_run_config(
        config_file,
        **run_overrides(
            settings,
            input=input,
            models=models,
            rows=rows,
            epochs=epochs,
            target=target,
            seed=seed,
            sample_seed=sample_seed,
            out=out,
            device=device,
        ),
    )
    paths = RunPaths(
        Path(cfg.out or ".").resolve(), dataset_name(cfg.input, cfg.dataset), new_run_id()
    ).create()
    started = time.perf_counter()
    input_info: dict[str, Any] = checked or {}
    try:
        input_info, schema = ingest(cfg, checked)
        parts = split(cfg, paths, input_info)
        rows_n = cfg.rows or parts["train_rows"]
        seeds = {
            "split_and_training": cfg.seed,
            "sampling": _sampling_seed(cfg),
            "evaluation": cfg.seed,
        }
        results: dict[str, dict[str, Any]] = {}
        for model in cfg.models:
            trained = train(cfg, model, parts, input_info, paths)
            sampled = (
                sample_sharded(model, trained, rows_n, seeds["sampling"], paths, cfg)
                if cfg.sample_shards > 1
                else sample(
                    model,
                    trained,
                    rows_n,
                    seeds["sampling"],
                    paths.staged_data,
                    cfg.device,
                    conditions=cfg.conditions,
                )
            )
            evaluation = score(cfg, parts, sampled, schema, model_dir=trained["model_dir"])
            results[model] = {
                "trained": trained,
                "sampled": sampled,
                "latent": evaluation.pop("latent"),
                "evaluation": evaluation,
            }
        for variant, trained in scored_variants(cfg, {m: r["trained"] for m, r in results.items()}):
            sampled = sample(
                variant.name,
                trained,
                rows_n,
                seeds["sampling"],
                paths.work,
                cfg.device,
                variant.prior,
            )
            results[variant.name] = {
                "trained": trained,
                "sampled": sampled,
                "variant": variant,
                "evaluation": score(cfg, parts, sampled, schema, gated=False),
            }
        report = build_report(
            cfg,
            paths,
            input_info,
            parts,
            Schema.from_dict(schema),
            seeds,
            results,
            time.perf_counter() - started,
        )
        if cfg.publish is not None:
            report["database"] = publish_to_database(cfg, report, paths, schema, input_info)
        manifest, published = publish_run(report, paths)
    except BaseException:
        discard(paths)
        raise
    finally:
        release_input(input_info)
    _artifacts(report, published, paths)
    summary = run_summary(report, manifest, published)
    if manifest["withheld"]:
        return Failed(
            message=f"privacy gate failed for {', '.join(manifest['withheld'])}: "
            "rows withheld, report published",
            data=summary,
        )
    return Completed(message="published", data=summary)


def _sampling_seed(cfg: RunConfig) -> int:
    return (
        cfg.sample_seed
        if cfg.sample_seed is not None
        else int.from_bytes(os.urandom(4), "little") >> 1
    )


def _artifacts(report: dict, published: dict, paths: RunPaths) -> None:
    key = re.sub(r"[^a-z0-9-]+", "-", paths.dataset.lower()).strip("-") or "dataset"
    create_markdown_artifact(
        markdown=render_markdown(report, html_name=Path(published["report"]).as_uri()),
        key=f"{key}-quality-summary",
        description=f"synthgen run {paths.run_id}",
    )
    create_table_artifact(
        table=[
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
            for r in scores_rows(report)
        ],
        key=f"{key}-scores",
        description="headline scores per model",
    )
    create_link_artifact(
        link=Path(published["report"]).resolve().as_uri(),
        link_text="report.html",
        key=f"{key}-report",
        description="the full HTML quality report",
    )
