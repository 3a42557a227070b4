"""The generation pipeline as a Prefect flow. Orchestration only: every task calls a synthgen function.

ingest (read, hash, infer and validate the schema) -> split (train/holdout, seeded) -> train each model
(or reuse it) -> sample -> evaluate -> report -> publish. Tasks pass paths and hashes, never DataFrames.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "synthgen")  # synthgen's decisions land in the run logs
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import re  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.states import Completed, Failed  # noqa: E402

from synthgen import process  # noqa: E402
from synthgen.config import RunConfig, load_run_config  # noqa: E402
from synthgen.evaluate import evaluate  # noqa: E402
from synthgen.io import read_table  # noqa: E402
from synthgen.report import library_versions, render_markdown, scores_rows, verdict, write_report  # noqa: E402
from synthgen.runs import RunPaths, dataset_name, discard, new_run_id, peak_rss_mb, preflight, publish, split_train_holdout  # noqa: E402
from synthgen.sample import part_name  # noqa: E402
from synthgen.schema import Schema  # noqa: E402
from synthgen.synthesizer import Synthesizer, fit_or_reuse  # noqa: E402


MAX_COLUMNS_LOGGED = 40  # wider tables log their schema as one summary line


@task(name="ingest", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def ingest(cfg: RunConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the input once: its size and hash, and its schema inferred and checked against the settings."""
    info, schema = preflight(cfg)
    logger = get_run_logger()
    logger.info("input %s: %d rows x %d columns, sha256 %s", info["path"], info["rows"], info["columns"], info["sha256"][:12])
    if len(schema.columns) <= MAX_COLUMNS_LOGGED:
        for row in schema.explain():
            logger.info("column %s: %s (%s)", row["column"], row["kind"], row["reason"])
    else:  # a wide table: one line, and every column's reason in the report
        logger.info("schema: %s", schema.summary())
    return info, schema.to_dict()


@task(name="split", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def split(cfg: RunConfig, paths: RunPaths) -> dict[str, Any]:
    parts = split_train_holdout(cfg.input, paths.work, cfg.holdout_fraction, cfg.seed, cfg.encoding)
    get_run_logger().info("split (seed %d): %d training rows, %d holdout rows", cfg.seed, parts["train_rows"], parts["holdout_rows"])
    return parts


@task(name="train", cache_policy=NO_CACHE)
def train(cfg: RunConfig, model: str, parts: dict, input_info: dict, paths: RunPaths) -> dict[str, Any]:
    settings = cfg.model_settings(model)
    key = f"{input_info['sha256']}:{cfg.seed}:{cfg.holdout_fraction}"
    synth, model_dir, reused = fit_or_reuse(parts["train"], settings, paths.models_dir, cache_key_input=key,
                                            metadata=cfg.metadata, reuse=cfg.reuse_models)
    t = synth.training
    logger = get_run_logger()
    if reused:
        logger.info("%s: reused the cached model %s (unchanged input and settings): training skipped", model, model_dir.name)
    else:
        logger.info("%s: trained on %s, %d of %d epochs%s, %.1fs", model, t.device, t.epochs_run, t.epochs_planned,
                    f" (early stop, best epoch {t.best_epoch})" if t.stopped_early else "", t.seconds)
    training = {**t.to_dict(), "table_rows": synth.info.get("rows"), "rows_used": synth.info.get("train_rows_used"),
                "plan": synth.info.get("plan")}
    if training["rows_used"] and training["table_rows"] and training["rows_used"] < training["table_rows"]:
        logger.warning("%s: trained on a seeded sample of %d of the %d training rows (max_train_rows)", model,
                       training["rows_used"], training["table_rows"])
    return {"model_dir": str(model_dir), "reused": reused, "training": training, "settings": settings.fingerprint_fields()}


@task(name="sample", cache_policy=NO_CACHE)
def sample(model: str, trained: dict, rows: int, seed: int, paths: RunPaths, device: str) -> dict[str, Any]:
    synth = Synthesizer.load(trained["model_dir"], device=device)
    out = paths.staged_data / f"{model}.parquet"
    t0 = time.perf_counter()
    synth.sample_to_parquet(rows, out, seed=seed)
    seconds = time.perf_counter() - t0
    get_run_logger().info("%s: sampled %d rows in %.1fs (%.0f rows/s), seed %d", model, rows, seconds, rows / max(seconds, 1e-9), seed)
    return {"path": str(out), "rows": rows, "seed": seed, "seconds": seconds, "shards": 1}


@task(name="sample-ae-standard-normal", cache_policy=NO_CACHE)
def sample_ae_standard_normal(trained: dict, rows: int, seed: int, paths: RunPaths, device: str) -> dict[str, Any]:
    """The trained AE's rows with z ~ N(0, I) instead of its fitted Gaussian, into the run's work folder: scored
    for the report, never published."""
    out = paths.work / "ae-standard.parquet"
    with Synthesizer.load(trained["model_dir"], device=device).z_from_standard_normal() as synth:
        synth.sample_to_parquet(rows, out, seed=seed)
    get_run_logger().info("ae: sampled %d rows with z ~ N(0, I) for the report's contrast row (not published)", rows)
    return {"path": str(out), "rows": rows, "seed": seed, "shards": 1}


@task(name="sample-shard", cache_policy=NO_CACHE)
def sample_shard(model_dir: str, rows: int, seed: int, shard: int, shards: int, folder: str, device: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    path = Synthesizer.load(model_dir, device=device).sample_shard(
        rows, Path(folder) / part_name(shard), seed=seed, shard=shard, shards=shards)
    return {"path": str(path), "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def sample_sharded(model: str, trained: dict, rows: int, seed: int, paths: RunPaths, cfg: RunConfig) -> dict[str, Any]:
    """Shards with independent seeds, on the flow's task runner (Dask workers when it has them), written as
    part files of one Parquet dataset inside the run's staging folder: published with the run, or not at all."""
    folder = paths.staged_data / f"{model}.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    futures = [sample_shard.submit(trained["model_dir"], rows, seed, k, cfg.sample_shards, str(folder), cfg.device)
               for k in range(cfg.sample_shards)]
    parts = [f.result() for f in futures]
    seconds = time.perf_counter() - t0
    get_run_logger().info("%s: sampled %d rows in %d shards in %.1fs (%.0f rows/s), seed %d", model, rows,
                          cfg.sample_shards, seconds, rows / max(seconds, 1e-9), seed)
    return {"path": str(folder), "rows": rows, "seed": seed, "seconds": seconds, "shards": cfg.sample_shards,
            "peak_rss_mb_per_shard": [p["peak_rss_mb"] for p in parts]}


@task(name="evaluate", cache_policy=NO_CACHE)
def score(cfg: RunConfig, parts: dict, sampled: dict, schema: dict, gated: bool = True) -> dict[str, Any]:
    """`gated`: apply the privacy gate (rows that will be published); contrast rows are only scored."""
    holdout = read_table(parts["holdout"]) if parts["holdout"] else None
    return evaluate(read_table(parts["train"]), read_table(sampled["path"]), holdout=holdout,
                    target=cfg.target if holdout is not None else None, schema=Schema.from_dict(schema),
                    max_rows=cfg.max_eval_rows, seed=cfg.seed, gate=cfg.privacy_gate.as_dict() if gated else None)


@task(name="publish", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def publish_run(report: dict, manifest: dict, paths: RunPaths) -> dict[str, str]:
    write_report(report, paths.staged_report)
    return publish(paths, manifest)


@flow(name="generate", log_prints=True)
def generate(input: str | None = None, config_file: str | None = None, models: list[str] | None = None,
             rows: int | None = None, epochs: int | None = None, target: str | None = None, seed: int | None = None,
             sample_seed: int | None = None, out: str | None = None, device: str | None = None,
             settings: dict[str, Any] | None = None):
    """Dataset in, synthetic Parquet and a quality report out. Settings: YAML file, then these parameters."""
    explicit = dict(input=input, models=models, rows=rows, target=target, seed=seed, sample_seed=sample_seed,
                    out=out, device=device, model={"epochs": epochs} if epochs else None)
    process.rearm_stop_signals()  # under `synthgen generate`: a stop signal ends the run within seconds
    cfg = load_run_config(config_file, **{**(settings or {}), **{k: v for k, v in explicit.items() if v is not None}})
    logger = get_run_logger()
    run_id = new_run_id()
    paths = RunPaths(Path(cfg.out or ".").resolve(), dataset_name(cfg.input, cfg.dataset), run_id).create()
    started = time.perf_counter()
    try:
        input_info, schema = ingest(cfg)
        parts = split(cfg, paths)
        rows_n = cfg.rows or parts["train_rows"]
        draw_seed = cfg.sample_seed if cfg.sample_seed is not None else int.from_bytes(os.urandom(4), "little") >> 1
        models_out: dict[str, dict[str, Any]] = {}
        timings: dict[str, float] = {}
        for model in cfg.models:
            t0 = time.perf_counter()
            trained = train(cfg, model, parts, input_info, paths)
            t1 = time.perf_counter()
            if cfg.sample_shards > 1:
                sampled = sample_sharded(model, trained, rows_n, draw_seed, paths, cfg)
            else:
                sampled = sample(model, trained, rows_n, draw_seed, paths, cfg.device)
            t2 = time.perf_counter()
            evaluation = score(cfg, parts, sampled, schema)
            timings.update({f"{model}_fit": t1 - t0, f"{model}_sample": t2 - t1, f"{model}_evaluate": time.perf_counter() - t2})
            models_out[model] = {"evaluation": evaluation, "training": trained["training"], "reused": trained["reused"],
                                 "model_dir": trained["model_dir"], "sample": sampled, "settings": trained["settings"]}
            if model == "ae" and cfg.ae_standard_normal_row and trained["settings"]["prior"] == "fitted":
                t3 = time.perf_counter()
                contrast = sample_ae_standard_normal(trained, rows_n, draw_seed, paths, cfg.device)
                models_out["ae-standard"] = {
                    "evaluation": score(cfg, parts, contrast, schema, gated=False), "training": None,
                    "reused": trained["reused"], "model_dir": trained["model_dir"], "sample": {**contrast, "path": None},
                    "settings": {**trained["settings"], "prior": "standard"}, "published": False}
                timings["ae-standard_sample_and_evaluate"] = time.perf_counter() - t3
        report = {
            "dataset": paths.dataset, "run_id": run_id, "primary_model": cfg.models[0],
            "input": {**input_info, "train_rows": parts["train_rows"], "holdout_rows": parts["holdout_rows"]},
            "schema": Schema.from_dict(schema).explain(), "config": cfg.model_dump(),
            "seeds": {"split_and_training": cfg.seed, "sampling": draw_seed, "evaluation": cfg.seed},
            "versions": library_versions(), "device": sorted({m["training"].get("device", "?") for m in models_out.values() if m["training"]}),
            "timings": {k: round(v, 2) for k, v in timings.items()}, "models": models_out,
        }
        v = verdict(report)
        withheld = list(v["failed_gates"])
        for model in withheld:  # rows that failed the privacy gate are not published, only the report saying why
            withheld_path = Path(models_out[model]["sample"]["path"])
            shutil.rmtree(withheld_path) if withheld_path.is_dir() else withheld_path.unlink(missing_ok=True)
            models_out[model]["sample"]["path"] = None
            logger.warning("%s: privacy gate failed, its synthetic rows are withheld", model)
        outputs = {m: str(paths.data_dir / f"{m}.parquet") for m in cfg.models if m not in withheld}
        for model, path in outputs.items():
            models_out[model]["sample"]["path"] = path
        report["timings"]["total"] = round(time.perf_counter() - started, 2)
        manifest = {
            "run_id": run_id, "dataset": paths.dataset, "status": "failed" if withheld else "passed",
            "input": report["input"], "config": cfg.model_dump(), "seeds": report["seeds"], "versions": report["versions"],
            "timings": report["timings"],
            "outputs": {m: {"path": p, "rows": rows_n} for m, p in outputs.items()}, "withheld": withheld,
            "models": {m: {"model_dir": d["model_dir"], "reused": d["reused"],
                           "epochs_run": (d["training"] or {}).get("epochs_run"), "device": (d["training"] or {}).get("device")}
                       for m, d in models_out.items() if d.get("published", True)},
            "report": str(paths.report_dir / "report.html"), "verdict": v,
        }
        published = publish_run(report, manifest, paths)
    except BaseException:
        discard(paths)
        raise
    _artifacts(report, published, paths)
    summary = {"run_id": run_id, "dataset": paths.dataset, "status": manifest["status"], "outputs": outputs,
               "report": published["report"], "index": published["index"], "data_dir": published["data"],
               "scores": scores_rows(report), "verdict": v, "reused": {m: models_out[m]["reused"] for m in cfg.models}}
    if withheld:
        return Failed(message=f"privacy gate failed for {', '.join(withheld)}: rows withheld, report published", data=summary)
    return Completed(message="published", data=summary)


def _artifacts(report: dict, published: dict, paths: RunPaths) -> None:
    key = re.sub(r"[^a-z0-9-]+", "-", paths.dataset.lower()).strip("-") or "dataset"
    create_markdown_artifact(markdown=render_markdown(dict(report, verdict=verdict(report)),
                                                      html_name=Path(published["report"]).as_uri()),
                             key=f"{key}-quality-summary", description=f"synthgen run {paths.run_id}")
    create_table_artifact(table=[{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                                 for r in scores_rows(report)],
                          key=f"{key}-scores", description="headline scores per model")
    create_link_artifact(link=Path(published["report"]).resolve().as_uri(), link_text="report.html",
                         key=f"{key}-report", description="the full HTML quality report")
