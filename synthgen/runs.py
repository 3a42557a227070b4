"""A generation run's lifecycle: checks before any work, where outputs go, the seeded split,
and publishing so that a failed or killed run leaves nothing partial.

A run writes everything under `<base>/.synthgen-staging/<run-id>/` and,
only when every step succeeded, renames its two folders into place:

    <base>/data/synthetic/<dataset>/<run-id>/<model>.parquet + manifest.json
    <base>/reports/<dataset>/<run-id>/report.{html,json,md}

then rebuilds `<base>/reports/index.html`.
Staging folders of runs that died are removed by the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synthgen.config import RunConfig
from synthgen.errors import UserError
from synthgen.io import (
    iter_parquet_batches,
    read_table,
    source_fingerprint,
    write_json,
    write_parquet,
)
from synthgen.report import library_versions, scores_rows, verdict, write_index
from synthgen.schema import Schema, infer_schema, load_metadata
from synthgen.split import split_rows
from synthgen.sql import check_target, dataset_from, publish_rows, read_sql, sql_source

log = logging.getLogger("synthgen")

STAGING = ".synthgen-staging"


# preflight's schemas in this process, so that a run checked by the CLI does not infer it again
# (not a flow parameter: Prefect caps those at 512 KB, less than a 3,000-column schema)
_checked_schemas: dict[tuple[str, str], Schema] = {}


def checked_schema(cfg: RunConfig, info: dict[str, Any]) -> Schema | None:
    """The schema `preflight` inferred in this process for these settings and this input."""
    return _checked_schemas.get((cfg.model_dump_json(), info["sha256"]))


def preflight(cfg: RunConfig) -> tuple[dict[str, Any], Schema]:
    """Every check a user's input can fail, before any work starts: the input reads as a table, the
    metadata fits it, there is something to learn, the target is a column. Returns what it learned
    about the input (path, sha256, rows, columns) and the schema it inferred.

    A database input is read once, here: its rows (or the sample `max_train_rows` needs) go to a
    local Parquet snapshot that the run's steps read (`input_table`); `release_input` removes it."""
    source = sql_source(cfg.input)
    if source is None:
        df = read_table(cfg.input, encoding=cfg.encoding)
        metadata = load_metadata(cfg.metadata)
        info = {"path": str(cfg.input), "sha256": source_fingerprint(cfg.input), "rows": len(df)}
    else:
        df, metadata, info = _snapshot(cfg, source)
    try:
        schema = _checked(cfg, df, metadata, info["path"])
    except BaseException:
        release_input(info)
        raise
    info["columns"] = df.shape[1]
    _checked_schemas.clear()  # one at a time: a long-lived process does not collect them
    _checked_schemas[(cfg.model_dump_json(), info["sha256"])] = schema
    return info, schema


def _snapshot(cfg: RunConfig, source: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Stream a database input into a Parquet snapshot in the staging folder (kept only while
    this process lives: the next run removes a dead one's). Enough rows are sampled that the
    training part holds `max_train_rows`."""
    cap = None
    if cfg.max_train_rows:  # the fewest rows whose training part (split_rows) holds them all
        cap = max(math.ceil(cfg.max_train_rows / (1 - cfg.holdout_fraction)) - 1, 1)
        while cap - round(cap * cfg.holdout_fraction) < cfg.max_train_rows:
            cap += 1
    read = read_sql(source, sample_rows=cap, seed=cfg.seed)
    df = read.to_pandas()
    metadata = read.metadata(load_metadata(cfg.metadata))
    folder = Path(cfg.out or ".").resolve() / STAGING / f"input-{secrets.token_hex(6)}"
    folder.mkdir(parents=True)
    (folder / "pid").write_text(str(os.getpid()))
    info = {
        "path": read.where,
        "sha256": read.sha256,
        "rows": read.rows,
        "database": read.dialect,
        "local": {
            "table": str(write_parquet(df, folder / "input.parquet")),
            "metadata": str(write_json(metadata, folder / "metadata.json")),
        },
    }
    if len(df) < read.rows:
        info["rows_read"] = len(df)
    return df, metadata, info


def read_input(
    source: str, encoding: str | None = None, metadata: str | None = None
) -> tuple[Any, dict[str, Any] | None, str]:
    """A file's or a database's rows, the metadata to infer their schema with, and where they
    came from as logs may write it (no password)."""
    sql = sql_source(source)
    if sql is None:
        return read_table(source, encoding=encoding), load_metadata(metadata), source
    read = read_sql(sql)
    return read.to_pandas(), read.metadata(load_metadata(metadata)), read.where


def input_table(cfg: RunConfig, info: dict[str, Any]) -> str:
    """The table a run's steps read: the input file, or a database input's snapshot."""
    return info["local"]["table"] if "local" in info else str(cfg.input)


def input_metadata(cfg: RunConfig, info: dict[str, Any]) -> str | None:
    """The metadata a run's models train with: the user's, or the database's with the user's."""
    return info["local"]["metadata"] if "local" in info else cfg.metadata


def release_input(info: dict[str, Any]) -> None:
    """Remove a database input's snapshot (after the run, or when a check failed)."""
    if "local" in info:
        folder = Path(info["local"]["table"]).parent
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # only when no other run is staging there


def _checked(cfg: RunConfig, df: Any, metadata: Any, where: str) -> Schema:
    schema = infer_schema(df, metadata)
    if cfg.target is not None:
        if cfg.target not in df.columns:
            raise UserError(f"target column {cfg.target!r} is not in {where}")
        if schema[cfg.target].kind in ("id", "empty", "text", "unsupported"):
            raise UserError(
                f"target column {cfg.target!r} is {schema[cfg.target].kind}: nothing to predict"
            )
        if not any(c.modelled and c.name != cfg.target for c in schema.columns):
            raise UserError(
                f"target column {cfg.target!r} is the only column learned: "
                "nothing to predict it from"
            )
    if cfg.holdout_fraction > 0 and len(df) < 10:
        raise UserError(
            f"{where}: {len(df)} rows are too few to keep a holdout (set holdout_fraction: 0)"
        )
    dataset_name(cfg.input, cfg.dataset)
    if cfg.publish is not None:
        check_target(cfg.publish)
    return schema


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def dataset_name(input_path: Any, given: str | None = None) -> str:
    source = sql_source(input_path) if not given else None
    name = given or (dataset_from(source) if source else Path(input_path).name.split(".")[0])
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise UserError(f"dataset name {name!r} must be letters, digits, '_', '-' or '.'")
    return name


@dataclass(frozen=True)
class RunPaths:
    base: Path
    dataset: str
    run_id: str

    @property
    def staging(self) -> Path:
        return self.base / STAGING / self.run_id

    @property
    def staged_data(self) -> Path:
        return self.staging / "data"

    @property
    def staged_report(self) -> Path:
        return self.staging / "report"

    @property
    def work(self) -> Path:
        return self.staging / "work"

    @property
    def data_dir(self) -> Path:
        return self.base / "data" / "synthetic" / self.dataset / self.run_id

    @property
    def report_dir(self) -> Path:
        return self.base / "reports" / self.dataset / self.run_id

    @property
    def reports_root(self) -> Path:
        return self.base / "reports"

    @property
    def models_dir(self) -> Path:
        return self.base / "models"

    def create(self) -> RunPaths:
        clean_stale_staging(self.base)
        for folder in (self.staged_data, self.staged_report, self.work):
            folder.mkdir(parents=True, exist_ok=True)
        (self.staging / "pid").write_text(str(os.getpid()))
        return self


def clean_stale_staging(base: Path) -> None:
    """Remove staging folders whose run is no longer alive (a killed run's leftovers)."""
    root = base / STAGING
    if not root.is_dir():
        return
    for folder in root.iterdir():
        pid_file = folder / "pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            pid = None
        if pid is None or not _alive(pid):
            log.info("removing the unpublished leftovers of run %s", folder.name)
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def split_train_holdout(
    input_path: str, work: Path, fraction: float, seed: int, encoding: str | None = None
) -> dict[str, Any]:
    """Seeded split of the input into train and holdout Parquet files;
    returns their paths and sizes."""
    df = read_table(input_path, encoding=encoding)
    kept, held = split_rows(len(df), fraction, seed, min_rows=10)
    train = df.iloc[kept].reset_index(drop=True)
    holdout = df.iloc[held].reset_index(drop=True)
    train_path = write_parquet(train, work / "train.parquet")
    holdout_path = write_parquet(holdout, work / "holdout.parquet") if len(held) else None
    return {
        "train": str(train_path),
        "holdout": str(holdout_path) if holdout_path else None,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
    }


def publish(paths: RunPaths, manifest: dict[str, Any]) -> dict[str, str]:
    """Move the staged run into place
    (report first, then the data with its manifest) and rebuild the index.

    If the second move fails the first is undone, so a run is either fully published or not at all.
    """
    write_json(manifest, paths.staged_data / "manifest.json")
    for target in (paths.report_dir, paths.data_dir):
        if target.exists():
            raise RuntimeError(f"{target} already exists: run ids must be unique")
        target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(paths.staged_report, paths.report_dir)
    try:
        os.replace(paths.staged_data, paths.data_dir)
    except BaseException:
        os.replace(paths.report_dir, paths.staged_report)
        raise
    _remove_staging(paths)
    index = write_index(paths.reports_root)
    return {
        "data": str(paths.data_dir),
        "report": str(paths.report_dir / "report.html"),
        "index": str(index),
    }


def publish_database(
    cfg: RunConfig, report: dict[str, Any], paths: RunPaths, schema: Schema, input_info: dict
) -> dict[str, Any]:
    """Write the published model's staged rows to `publish:`'s table, within one transaction,
    with the source table's column types when it was the same kind of database. Runs before the
    Parquet publish: when it fails, the run publishes nothing."""
    target = cfg.publish
    model = target.model or cfg.models[0]
    if model in verdict(report)["failed_gates"]:
        log.warning("%s: privacy gate failed, no rows written to %s", model, target.table)
        return {"model": model, "table": target.table, "rows": 0, "action": "withheld"}
    written = publish_rows(
        sql_source(target),
        iter_parquet_batches(paths.staged_data / f"{model}.parquet"),
        column_types={c.name: c.sql_type for c in schema.columns if c.sql_type},
        not_null=[
            c.name for c in schema.columns if c.not_null and c.kind not in ("empty", "unsupported")
        ],
        source_dialect=input_info.get("database"),
    )
    return {**written, "model": model, "if_exists": target.if_exists}


def discard(paths: RunPaths) -> None:
    """Throw away a run that failed: nothing of it is published."""
    _remove_staging(paths)


def _remove_staging(paths: RunPaths) -> None:
    shutil.rmtree(paths.staging, ignore_errors=True)
    try:
        (paths.base / STAGING).rmdir()  # only when no other run is staging there
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_manifest(data_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(data_dir) / "manifest.json").read_text())


# --------------------------------------------------------------------------------------------------
# What a run records: pure functions the flow calls, so that it only orchestrates


def training_record(
    synth: Any, model_dir: Path, reused: bool, settings: Any, seconds: float
) -> dict[str, Any]:
    """A trained (or reused) model as the report and the manifest record it."""
    t = synth.training
    training = {
        **t.to_dict(),
        "table_rows": synth.info.get("rows"),
        "rows_used": synth.info.get("train_rows_used"),
        "plan": synth.info.get("plan"),
        "protection": synth.info.get("protection"),
        "differential_privacy": synth.info.get("privacy"),
        "structural_zeros": _structural_zeros(synth),
        "derived_columns": synth.transformer.relations(),
        "lookup_columns": synth.transformer.lookup_maps(),
        "profile_columns": synth.transformer.profile_groups(),
        "heaped_values": synth.transformer.heap_summary(),
    }
    return {
        "model_dir": str(model_dir),
        "reused": reused,
        "training": training,
        "settings": settings.fingerprint_fields(),
        "seconds": seconds,
    }


def _structural_zeros(synth: Any) -> list[dict[str, Any]] | None:
    """Per pair of columns, how many pairs of their classes (almost) no training row holds and
    drawn rows keep apart (models.exclusions); None where the model keeps none."""
    found = synth.info.get("exclusions")
    if found is None:
        return None
    blocks = synth.transformer.layout.discrete
    return [
        {
            "columns": [blocks[p["a"]].column, blocks[p["b"]].column],
            "pairs": int(sum(bin(b).count("1") for b in bytes.fromhex(p["excluded"]))),
        }
        for p in found
    ]


def scored_variants(
    cfg: RunConfig, trained: dict[str, dict[str, Any]]
) -> list[tuple[Any, dict[str, Any]]]:
    """The configured variants to score, each with its trained model:
    those whose model ran and that sample differently from it (none under conditions: a variant's
    prior would not draw the conditioned rows)."""
    if cfg.conditions:
        return []
    return [
        (v, trained[v.model])
        for v in cfg.scored_variants
        if v.model in trained
        and trained[v.model]["settings"]["prior"] != v.prior
        and v.name not in trained
    ]


def build_report(
    cfg: RunConfig,
    paths: RunPaths,
    input_info: dict[str, Any],
    parts: dict[str, Any],
    schema: Schema,
    seeds: dict[str, int],
    models: dict[str, dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    """The report of a run (report.json) from what its steps returned. `models[name]`: trained,
    sampled and evaluation, plus variant (a ScoredVariant) for a scored variant and latent (the
    latent-space map) for a published model."""
    entries, timings = {}, {}
    for name, m in models.items():
        variant = m.get("variant")
        entry = {
            "evaluation": m["evaluation"],
            "reused": m["trained"]["reused"],
            "model_dir": m["trained"]["model_dir"],
            "sample": dict(m["sampled"]),
        }
        if m.get("latent"):
            entry["latent"] = m["latent"]
        if variant is None:
            entry.update(training=m["trained"]["training"], settings=m["trained"]["settings"])
            timings.update(
                {
                    f"{name}_fit": m["trained"]["seconds"],
                    f"{name}_sample": m["sampled"]["seconds"],
                    f"{name}_evaluate": m["evaluation"]["seconds"]["total"],
                }
            )
        else:  # the trained model sampled another way: scored, never published
            entry.update(
                training=None,
                variant_of=variant.model,
                published=False,
                settings={**m["trained"]["settings"], "prior": variant.prior},
            )
            entry["sample"]["path"] = None
            timings[f"{name}_sample_and_evaluate"] = (
                m["sampled"]["seconds"] + m["evaluation"]["seconds"]["total"]
            )
        entries[name] = entry
    timings["total"] = seconds
    return {
        "dataset": paths.dataset,
        "run_id": paths.run_id,
        "primary_model": cfg.models[0],
        "input": {
            **{k: v for k, v in input_info.items() if k != "local"},
            "train_rows": parts["train_rows"],
            "holdout_rows": parts["holdout_rows"],
        },
        "schema": schema.explain(),
        "config": cfg.model_dump(),
        "seeds": seeds,
        "versions": library_versions(),
        "device": sorted(
            {m["training"].get("device", "?") for m in entries.values() if m["training"]}
        ),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "models": entries,
    }


def withhold_failed(report: dict[str, Any], paths: RunPaths) -> list[str]:
    """Delete the staged rows of every model whose privacy gate failed (the report says why) and
    point each published model's sample at where its rows will be. Returns the models withheld."""
    withheld = list(verdict(report)["failed_gates"])
    for model in withheld:
        staged = paths.staged_data / f"{model}.parquet"
        shutil.rmtree(staged) if staged.is_dir() else staged.unlink(missing_ok=True)
        report["models"][model]["sample"]["path"] = None
        log.warning("%s: privacy gate failed, its synthetic rows are withheld", model)
    for model in published_models(report, withheld):
        report["models"][model]["sample"]["path"] = str(paths.data_dir / f"{model}.parquet")
    return withheld


def published_models(report: dict[str, Any], withheld: list[str]) -> list[str]:
    return [
        m for m, d in report["models"].items() if d.get("published", True) and m not in withheld
    ]


def build_manifest(report: dict[str, Any], paths: RunPaths, withheld: list[str]) -> dict[str, Any]:
    """manifest.json: what was published, from what, with which settings and seeds."""
    outputs = {
        m: {
            "path": report["models"][m]["sample"]["path"],
            "rows": report["models"][m]["sample"]["rows"],
        }
        for m in published_models(report, withheld)
    }
    return {
        "run_id": paths.run_id,
        "dataset": paths.dataset,
        "status": "failed" if withheld else "passed",
        "input": report["input"],
        "config": report["config"],
        "seeds": report["seeds"],
        "versions": report["versions"],
        "timings": report["timings"],
        "outputs": outputs,
        "database": report.get("database"),
        "withheld": withheld,
        "models": {
            m: {
                "model_dir": d["model_dir"],
                "reused": d["reused"],
                "epochs_run": (d["training"] or {}).get("epochs_run"),
                "device": (d["training"] or {}).get("device"),
            }
            for m, d in report["models"].items()
            if d.get("published", True)
        },
        "report": str(paths.report_dir / "report.html"),
        "verdict": verdict(report),
    }


def run_summary(
    report: dict[str, Any], manifest: dict[str, Any], published: dict[str, str]
) -> dict[str, Any]:
    """What a finished flow run returns: paths, scores and the verdict (the CLI prints it)."""
    return {
        "run_id": report["run_id"],
        "dataset": report["dataset"],
        "status": manifest["status"],
        "outputs": {m: o["path"] for m, o in manifest["outputs"].items()},
        "report": published["report"],
        "index": published["index"],
        "data_dir": published["data"],
        "scores": scores_rows(report),
        "verdict": manifest["verdict"],
        "reused": {m: d["reused"] for m, d in report["models"].items() if d.get("published", True)},
    }


def evaluation_report(
    real: str | Path,
    synthetic: str | Path,
    schema: Schema,
    evaluation: dict[str, Any],
    *,
    rows: dict[str, int | None],
    settings: dict[str, Any],
    seed: int,
    seconds: float,
) -> dict[str, Any]:
    """The report of `synthgen evaluate`: any synthetic table scored against its real one."""
    name = Path(synthetic).stem
    return {
        "dataset": Path(real).stem,
        "run_id": f"evaluate-{name}",
        "primary_model": name,
        "input": {
            "path": str(real),
            "sha256": source_fingerprint(real),
            "rows": rows["real"],
            "train_rows": rows["real"],
            "holdout_rows": rows["holdout"],
        },
        "schema": schema.explain(),
        "seeds": {"evaluation": seed},
        "versions": library_versions(),
        "config": settings,
        "timings": {"evaluate": round(seconds, 2)},
        "models": {
            name: {
                "evaluation": evaluation,
                "sample": {"path": str(synthetic), "rows": rows["synthetic"]},
            }
        },
    }
