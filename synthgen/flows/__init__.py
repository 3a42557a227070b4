"""Prefect flows: orchestration only; every task calls a function of the `synthgen` package."""

from __future__ import annotations

import os
from typing import Any

from synthgen import process
from synthgen.errors import UserError

# Set before the flow modules import Prefect (and Dask), which read them then: synthgen's decisions
# land in the run logs, the Dask cluster's chatter stays out of them.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "synthgen")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


class RunFailed(RuntimeError):
    """A flow run ended without the summary it returns when it finishes
    (a crash, or a failed task)."""


def flow_result(state: Any, key: str) -> dict[str, Any]:
    """The summary a finished flow run returns (a failed privacy gate still returns one, marked
    failed): the data of its final state, which holds `key`. A run that failed on the user's input
    raises that UserError, a stopped one StopRequested, any other failure RunFailed with the
    state's message."""
    try:
        data = state.result(raise_on_failure=False)
    except Exception as exc:
        # a crashed run has no result to read
        data = exc
    if isinstance(data, dict) and key in data:
        return data
    if isinstance(data, (UserError, process.StopRequested)):
        raise data
    lines = str(state.message or "").strip().splitlines()
    raise RunFailed(lines[0] if lines else "the flow run crashed")
