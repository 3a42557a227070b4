"""No traceback reaches a user: failures end with one `error:` line (exit 2 for the user's
input, exit 1 otherwise, with the traceback in a log file), a stop signal ends a run within
seconds and leaves no process behind, and Prefect's temporary API server that does not come up
is one clear line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from synthgen import process

pytestmark = pytest.mark.slow

FAST = {
    "model": {"epochs": 2, "hidden": [32], "latent_dim": 4},
    "max_eval_rows": 500,
    "ae_standard_normal_row": False,
    "models": ["vae"],
}


def cli(
    args, tmp_path, inject: str | None = None, env: dict | None = None, **kwargs
) -> subprocess.CompletedProcess:
    argv, options = _command(args, tmp_path, inject, env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **options, **kwargs)


def _command(args, tmp_path, inject, env):
    """The CLI in a fresh process; `inject` is Python run at its start-up
    (sitecustomize) to plant a failure."""
    environ = dict(
        os.environ,
        SYNTHGEN_LOG_DIR=str(tmp_path / "logs"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    environ.pop("PREFECT_API_URL", None)
    if inject:
        hook = tmp_path / "hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(inject)
        environ["PYTHONPATH"] = os.pathsep.join([str(hook), environ.get("PYTHONPATH", "")])
    environ.update(env or {})
    return [sys.executable, "-m", "synthgen.cli", *map(str, args)], dict(env=environ)


def only_log(tmp_path) -> Path:
    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert len(logs) == 1, logs
    return logs[0]


# planted before synthgen's modules import the names they use
FIT_BREAKS = """
import synthgen.train
def broken(*args, **kwargs):
    raise RuntimeError("the disk went away\\nsecond line")
synthgen.train.train = broken
"""


def test_an_unexpected_failure_is_one_line_and_a_log_file_with_the_traceback(tmp_path, small_table):
    run = cli(
        ["fit", small_table, "--out", tmp_path / "model", "--epochs", "1"],
        tmp_path,
        inject=FIT_BREAKS,
    )
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    log = only_log(tmp_path)
    assert lines[-1] == f"error: RuntimeError: the disk went away; the full traceback is in {log}"
    assert "Traceback" not in run.stderr and "Traceback (most recent call last)" in log.read_text()
    assert not (tmp_path / "model").exists()


GENERATE_BREAKS = """
import synthgen.evaluate
def broken(*args, **kwargs):
    raise RuntimeError("scoring blew up")
synthgen.evaluate.evaluate = broken
"""
GENERATE_USER_ERROR = """
import synthgen.synthesizer
from synthgen.errors import UserError
def refuse(self, *args, **kwargs):
    raise UserError("column 'x' cannot be learned: say what to do")
synthgen.synthesizer.Synthesizer.fit = refuse
"""


@pytest.mark.parametrize(
    "inject, code, last",
    [
        (GENERATE_BREAKS, 1, "error: the run failed: "),
        (GENERATE_USER_ERROR, 2, "error: column 'x' cannot be learned: say what to do"),
    ],
)
def test_a_failing_flow_run_prints_no_traceback(tmp_path, small_table, inject, code, last):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump({"input": str(small_table), "out": str(tmp_path / "out"), **FAST})
    )
    run = cli(["generate", "--config", config], tmp_path, inject=inject)
    assert run.returncode == code, run.stderr
    assert "Traceback" not in run.stderr and 'File "' not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(last), run.stderr
    if code == 1:
        assert run.stderr.strip().endswith(str(only_log(tmp_path)))
        assert "scoring blew up" in only_log(tmp_path).read_text()
    assert not list((tmp_path / "out").glob("data/synthetic/*/*"))  # nothing published


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_one_stop_signal_ends_the_run_within_seconds_and_leaves_no_process(
    tmp_path, small_table, signum
):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "input": str(small_table),
                "out": str(tmp_path),
                **FAST,
                "model": {"epochs": 10_000, "hidden": [32], "patience": 10_000},
            }
        )
    )
    argv, kwargs = _command(["generate", "--config", config], tmp_path, None, None)
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )
    staging = tmp_path / ".synthgen-staging"
    try:
        deadline = time.monotonic() + 600
        while not list(staging.glob("*/work/train.parquet")):  # training has started
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not start training"
            time.sleep(0.2)
        time.sleep(1.0)
        children = process.descendants(proc.pid)
        assert children, "Prefect's temporary server runs as a child process"
        sent = time.monotonic()
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 30, f"{took:.1f} s after the signal"  # STOP_GRACE_S is 8 s
    assert proc.returncode == 128 + signum, stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: stopped by {signal.Signals(signum).name}")
    )
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)], "a child process outlived the run"
    assert not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()


def test_a_temporary_api_server_that_does_not_start_is_one_clear_line(tmp_path, small_table):
    run = cli(
        ["generate", small_table, "--out", tmp_path / "out", "--models", "vae", "--epochs", "1"],
        tmp_path,
        env={"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"},
    )
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Prefect's temporary API server did not start" in lines[0], (
        run.stderr
    )
    assert "2 tries" in lines[0] and "PREFECT_API_URL" in lines[0]
    assert not (tmp_path / "out" / "data").exists()


def test_a_table_whose_schema_outgrows_prefects_parameter_limit_runs(tmp_path):
    # 40 columns with names of 16,000 characters: a schema of 650 KB, past Prefect's 512 KB cap
    data = {"x": range(40), "y": [i % 3 for i in range(40)]}
    data.update({f"c{j:03d}_" + "n" * 16_000: [1.5] * 40 for j in range(40)})
    table = tmp_path / "wide.parquet"
    pd.DataFrame(data).to_parquet(table)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"input": str(table), "out": str(tmp_path / "out"), **FAST}))
    run = cli(["generate", "--config", config, "-q"], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert all(len(line) < 1000 for line in run.stderr.splitlines())
    (part,) = (tmp_path / "out").glob("data/synthetic/wide/*/vae.parquet")
    assert pd.read_parquet(part).shape[1] == 42


def test_a_console_line_is_cut_short_and_the_log_keeps_it_whole():
    long = "x" * 100_000
    assert len(process.shorten(long)) < 500
    assert process.failure_line(RuntimeError(long)).startswith("error: RuntimeError: xxx")
    assert len(process.failure_line(RuntimeError(long))) < 1000
