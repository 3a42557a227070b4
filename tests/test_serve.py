"""Scheduled runs against a real Prefect server: serve with a cron schedule, check it,
trigger one run."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.server, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, body: dict | None = None):
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception:
            # not up yet
            pass
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process exited: {proc.stdout.read().decode()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free loopback port with its own SQLite database;
    stopped afterwards."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db",
    )
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: get_json(f"{api}/health") is True, 180, "the Prefect server", proc)
        yield api, home
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_serve_schedules_and_a_triggered_run_publishes(prefect_server, small_table, tmp_path):
    api, home = prefect_server
    out = tmp_path / "out"
    config = tmp_path / "nightly.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "input": str(small_table),
                "dataset": "nightly",
                "out": str(out),
                "models": ["vae"],
                "rows": 300,
                "model": {"epochs": 2, "hidden": [32]},
                "max_eval_rows": 1000,
                "schedule": "0 3 * * *",
            }
        )
    )
    env = dict(
        os.environ,
        PREFECT_API_URL=api,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "synthgen.cli", "serve", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deployment = wait_for(
            lambda: get_json(f"{api}/deployments/name/generate/generate-nightly"),
            120,
            "the served deployment",
            server,
        )
        schedules = deployment.get("schedules") or []
        assert [s["schedule"]["cron"] for s in schedules] == ["0 3 * * *"] and schedules[0][
            "active"
        ]
        assert deployment["parameters"] == {"config_file": str(config.resolve())}

        # trigger one run now, no waiting for cron
        # (retried: a busy SQLite-backed server can answer 503)
        run = wait_for(
            lambda: get_json(f"{api}/deployments/{deployment['id']}/create_flow_run", {}),
            60,
            "the triggered run to be created",
            server,
        )

        def finished():
            state = get_json(f"{api}/flow_runs/{run['id']}")["state"]
            return (
                state if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None
            )

        state = wait_for(finished, 300, "the triggered run", server)
        assert state["type"] == "COMPLETED", state
    finally:
        stop(server)
    runs = list((out / "data" / "synthetic" / "nightly").iterdir())
    assert len(runs) == 1 and len(pd.read_parquet(runs[0] / "vae.parquet")) == 300
    assert (out / "reports" / "nightly" / runs[0].name / "report.html").exists()


def test_serve_without_a_server_is_a_clear_error(small_table, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"input": str(small_table), "schedule": "0 3 * * *"}))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-m", "synthgen.cli", "serve", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "Prefect server" in proc.stderr.strip().splitlines()[-1]
