"""The Prefect API a command's flow runs report to: the one PREFECT_API_URL names,
or a temporary server of its own.

Prefect starts its temporary server on first use and waits too briefly for a busy machine
(docs/design.md, "A run's orchestration"). `TemporaryAPI` starts the same server (uvicorn with
Prefect's app factory) before anything else, so that it comes up while the command imports its
libraries and checks its input, waits as long as a loaded machine needs
(`PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`, default DEFAULT_START_TIMEOUT_S), tries a
second time on a fresh port, and says plainly what failed. Starting it here, rather than through
Prefect's client, also spares the command importing Prefect's server code.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from synthgen import process

DEFAULT_START_TIMEOUT_S = 120.0
ATTEMPTS = 2


class APIStartError(RuntimeError):
    """Prefect's temporary API server did not come up."""


def start_timeout() -> float:
    return float(
        os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
        or DEFAULT_START_TIMEOUT_S
    )


class TemporaryAPI:
    """`start()` launches the server (unless PREFECT_API_URL is set) and points this process at
    it; `wait()` blocks until it answers; `stop()` ends it. Use as a context manager around the
    flow run."""

    def __init__(self) -> None:
        self.url = os.environ.get("PREFECT_API_URL") or None
        self.own = self.url is None
        self.proc: subprocess.Popen | None = None
        self.attempt = 0
        self.started_at = 0.0
        self._settings = None

    def start(self) -> TemporaryAPI:
        if self.own and self.proc is None:
            self._launch()
            process.on_stop(self._end_process)  # a stopped command leaves no server behind
        return self

    def _launch(self) -> None:
        self.attempt += 1
        port = _free_port()
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.url = f"http://127.0.0.1:{port}/api"
        self.started_at = time.monotonic()
        os.environ["PREFECT_API_URL"] = (
            self.url
        )  # read by Prefect when it is imported, and by child processes

    def wait(self) -> str:
        """Block until the API answers; returns its URL.
        Raises APIStartError after ATTEMPTS tries."""
        if not self.own:
            return self.url
        timeout = start_timeout()
        while True:
            problem = self._wait_one(timeout)
            if problem is None:
                return self.url
            self._end_process()
            if self.attempt >= ATTEMPTS:
                os.environ.pop("PREFECT_API_URL", None)
                raise APIStartError(
                    f"Prefect's temporary API server did not start ({problem}; "
                    f"{ATTEMPTS} tries of up to {timeout:.0f} s). Start one with "
                    "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
                    "or raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
                )
            self._launch()

    def _wait_one(self, timeout: float) -> str | None:
        health = self.url + "/health"
        while time.monotonic() - self.started_at < timeout:
            code = self.proc.poll()
            if code is not None:
                err = (self.proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()
                return f"it exited with code {code}" + (f": {err[-1]}" if err else "")
            try:
                with urllib.request.urlopen(health, timeout=5) as response:
                    if response.status == 200:
                        return None
            except (urllib.error.URLError, OSError, TimeoutError):
                pass
            time.sleep(0.2)
        return f"no answer within {timeout:.0f} s"

    def _end_process(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        if self.own:
            self._drain_logs()
            self._end_process()
            self.proc = None
            if os.environ.get("PREFECT_API_URL") == self.url:
                os.environ.pop("PREFECT_API_URL", None)

    @staticmethod
    def _drain_logs() -> None:
        if (
            "prefect.logging.handlers" in sys.modules
        ):  # the last log lines reach the server before it stops
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)

    def __enter__(self) -> TemporaryAPI:
        self.start()
        self.wait()
        if (
            self.own and "prefect.settings" in sys.modules
        ):  # Prefect read its settings before the URL was set
            from prefect.settings import PREFECT_API_URL, temporary_settings

            self._settings = temporary_settings(updates={PREFECT_API_URL: self.url})
            self._settings.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        settings, self._settings = self._settings, None
        if settings is not None:
            settings.__exit__(None, None, None)
        self.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect_logs_to_file(quiet: bool = False) -> None:
    """Set up Prefect's logging now (it would on first use), then send what reaches the root
    logger to the command's log file too, and make its console handlers print one line per message
    without tracebacks (only warnings and errors when `quiet`)."""
    import logging

    from prefect.logging.configuration import PROCESS_LOGGING_CONFIG, setup_logging

    if not PROCESS_LOGGING_CONFIG:
        setup_logging()
    process.capture_root_logs(quiet)
    process.one_line_console(logging.getLogger("uvicorn"))
