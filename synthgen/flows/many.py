"""Many datasets at once: one `generate` run per dataset, in parallel on Dask (prefect-dask).

Locally on a LocalCluster by default, or on an existing cluster given its scheduler address.
One dataset's failure does not stop the others; the summary lists every result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed

from synthgen.config import load_run_config
from synthgen.errors import UserError
from synthgen.flows import RunFailed, flow_result
from synthgen.flows.api import TemporaryAPI
from synthgen.flows.generate import generate
from synthgen.io import SUPPORTED


@contextlib.contextmanager
def shared_api() -> Iterator[None]:
    """Every process this one starts (the Dask workers) talks to the same Prefect API as this one.
    With no API configured, Prefect's temporary server is started once here; otherwise each worker
    would start its own."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with TemporaryAPI() as api, temporary_settings(updates={PREFECT_API_URL: api.url}):
        yield


def dask_runner(address: str | None = None, n_workers: int = 2, threads_per_worker: int = 1):
    """A DaskTaskRunner on an existing cluster (`address`) or on a new LocalCluster of
    worker processes."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "processes": True,
            "dashboard_address": None,
        }
    )


def dataset_inputs(datasets: list[str] | None = None, folder: str | None = None) -> list[str]:
    """The tables to run: listed paths, and every table file
    (or Parquet folder) directly in `folder`."""
    inputs = list(datasets or [])
    if folder is not None:
        root = Path(folder)
        if not root.is_dir():
            raise UserError(f"{folder}: no such folder")
        inputs += sorted(
            str(p)
            for p in root.iterdir()
            if p.name.lower().endswith(SUPPORTED) and not p.name.startswith(".")
        )
    if not inputs:
        raise UserError(
            "no datasets: list them under `datasets:` in the config or give a folder of tables"
        )
    return inputs


@task(name="generate-dataset", cache_policy=NO_CACHE)
def generate_one(settings: dict[str, Any]) -> dict[str, Any]:
    """One dataset's whole pipeline, as a nested `generate` flow run on a Dask worker."""
    return flow_result(generate(settings=settings, return_state=True), "run_id")


@flow(name="generate-many")
def generate_many(
    config_file: str | None = None,
    datasets: list[str] | None = None,
    folder: str | None = None,
    settings: dict[str, Any] | None = None,
):
    """Run `generate` for every dataset; settings (YAML, then `settings`) apply to each,
    `input` excepted."""
    base = load_run_config(config_file, **{"input": "-", **(settings or {})}).model_dump(
        exclude_unset=True
    )
    base.pop("input", None)
    base.pop("dataset", None)
    inputs = dataset_inputs(
        datasets if datasets is not None else base.pop("datasets", None), folder
    )
    logger = get_run_logger()
    logger.info("generating %d datasets: %s", len(inputs), ", ".join(Path(p).name for p in inputs))
    futures = [generate_one.submit({**base, "input": path}) for path in inputs]
    results = []
    for path, future in zip(inputs, futures, strict=False):
        try:
            summary = future.result()
            results.append(
                {
                    "input": path,
                    "dataset": summary["dataset"],
                    "status": summary["status"],
                    "run_id": summary["run_id"],
                    "report": summary["report"],
                    "error": None,
                    "overall": {r["model"]: r["overall"] for r in summary["scores"]},
                }
            )
        except Exception as exc:
            # one dataset's failure is reported, not fatal to the others
            logger.error("%s failed: %s", path, exc)
            message = (
                str(exc)
                if isinstance(exc, (RunFailed, UserError))
                else f"{type(exc).__name__}: {exc}"
            )
            results.append(
                {
                    "input": path,
                    "dataset": Path(path).name.split(".")[0],
                    "status": "error",
                    "run_id": None,
                    "report": None,
                    "error": message,
                    "overall": {},
                }
            )
    create_table_artifact(
        table=[{k: (str(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in results],
        key="generate-many-summary",
        description="one row per dataset",
    )
    failed = [r for r in results if r["status"] != "passed"]
    summary = {"datasets": results, "passed": len(results) - len(failed), "failed": len(failed)}
    if failed:
        return Failed(
            message=f"{len(failed)} of {len(results)} datasets did not pass", data=summary
        )
    return Completed(message=f"{len(results)} datasets published", data=summary)


def run_many(
    config_file: str | None = None,
    datasets: list[str] | None = None,
    folder: str | None = None,
    settings: dict[str, Any] | None = None,
    address: str | None = None,
    n_workers: int = 2,
):
    """generate_many on Dask: an existing scheduler at `address`,
    or a LocalCluster of `n_workers`."""
    with shared_api():
        return generate_many.with_options(task_runner=dask_runner(address, n_workers))(
            config_file=config_file,
            datasets=datasets,
            folder=folder,
            settings=settings,
            return_state=True,
        )
