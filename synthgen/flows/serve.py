"""Serve the generate flow on a cron schedule from a run config (Prefect's `flow.serve`).

Schedules need a real Prefect server (or Prefect Cloud): the embedded temporary API that `make run`
uses does not schedule. Start one with `prefect server start` and point PREFECT_API_URL at it.
"""

from __future__ import annotations

import os
from pathlib import Path

from synthgen.config import load_run_config
from synthgen.errors import UserError
from synthgen.flows.generate import generate
from synthgen.runs import dataset_name


def deployment_name(config_file: str) -> str:
    cfg = load_run_config(config_file)
    return f"generate-{dataset_name(cfg.input, cfg.dataset)}"


def serve(config_file: str, *, cron: str | None = None, name: str | None = None) -> None:
    """Register a deployment of `generate` with the config's schedule and run its scheduled runs
    (blocks)."""
    cfg = load_run_config(config_file)
    cron = cron or cfg.schedule
    if not cron:
        raise UserError(
            f"{config_file}: no schedule: set `schedule: '0 3 * * *'` in the config or pass --cron"
        )
    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            raise UserError(
                "scheduled runs need a Prefect server: start one (`prefect server start`) and set "
                "PREFECT_API_URL=http://127.0.0.1:4200/api"
            )
    config_path = str(Path(config_file).resolve())
    generate.serve(
        name=name or deployment_name(config_file),
        cron=cron,
        parameters={"config_file": config_path},
        description=f"synthgen: synthetic data from {cfg.input} on the schedule {cron}",
        tags=["synthgen"],
        print_starting_message=True,
    )
