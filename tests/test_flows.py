"""The generate flow end to end on a small real table, under Prefect's test API."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

FAST = {
    "model": {"epochs": 3, "hidden": [32, 32], "latent_dim": 8},
    "max_eval_rows": 1000,
    "ae_standard_normal_row": False,
}


def run(small_table, out, **settings):
    from synthgen.flows.generate import generate

    cfg = {
        "input": str(small_table),
        "target": "churn",
        "rows": 400,
        "out": str(out),
        **FAST,
        **settings,
    }
    state = generate(settings=cfg, return_state=True)
    return state, state.result(raise_on_failure=False)


def published(out: Path) -> list[Path]:
    return (
        sorted(p for p in (out / "data" / "synthetic").glob("*/*") if p.is_dir())
        if (out / "data").exists()
        else []
    )


def test_run_publishes_parquet_manifest_report_and_artifacts(
    prefect_harness, small_table, tmp_path
):
    model = {
        **FAST["model"],
        "ae": {"latent_dim": 4},
    }  # a section for one model, over the shared settings
    state, summary = run(
        small_table, tmp_path, sample_seed=5, model=model, ae_standard_normal_row=True
    )
    assert state.is_completed(), state.message
    data_dir = Path(summary["data_dir"])
    assert data_dir == tmp_path / "data" / "synthetic" / "churn_small" / summary["run_id"]
    for model in ("vae", "ae"):
        rows = pd.read_parquet(data_dir / f"{model}.parquet")
        assert len(rows) == 400 and list(rows.columns) == list(pd.read_parquet(small_table).columns)
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["status"] == "passed" and manifest["input"]["rows"] == 1500
    assert len(manifest["input"]["sha256"]) == 64 and manifest["seeds"]["sampling"] == 5
    assert manifest["outputs"]["vae"] == {"path": str(data_dir / "vae.parquet"), "rows": 400}
    assert {"torch", "prefect", "sdmetrics"} <= set(manifest["versions"]) and "total" in manifest[
        "timings"
    ]
    report_dir = tmp_path / "reports" / "churn_small" / summary["run_id"]
    assert {p.name for p in report_dir.iterdir()} == {"report.html", "report.json", "report.md"}
    report = json.loads((report_dir / "report.json").read_text())
    assert report["models"]["vae"]["evaluation"]["utility"]["target"] == "churn"
    assert (
        report["models"]["vae"]["settings"]["latent_dim"] == 8
        and report["models"]["ae"]["settings"]["latent_dim"] == 4
    )
    # the AE is also drawn from N(0, I) and scored beside its fitted Gaussian,
    # but those rows are not published
    assert set(report["models"]) == {"vae", "ae", "ae-standard"} and set(manifest["outputs"]) == {
        "vae",
        "ae",
    }
    assert set(manifest["models"]) == {"vae", "ae"} and sorted(
        p.name for p in data_dir.iterdir()
    ) == ["ae.parquet", "manifest.json", "vae.parquet"]
    contrast = report["models"]["ae-standard"]
    assert contrast["published"] is False and contrast["settings"]["prior"] == "standard"
    assert (
        contrast["evaluation"]["quality"]["overall"]
        != report["models"]["ae"]["evaluation"]["quality"]["overall"]
    )
    assert 'in the row "AE, z ~ N(0, I)" from N(0, I)' in (report_dir / "report.md").read_text()
    # the churn table's charges follow from tenure and the services: the report says so
    derived = report["models"]["vae"]["training"]["derived_columns"]
    assert [d.split(" ~ ")[0] for d in derived] == ["monthly_charges", "total_charges"]
    assert "total_charges ~ " in (report_dir / "report.md").read_text()
    # and phone service follows from multiple lines ("No phone service"): written, not drawn
    lookups = report["models"]["vae"]["training"]["lookup_columns"]
    assert lookups == ["phone_service follows from multiple_lines (3 values)"]
    assert "phone_service follows from multiple_lines" in (report_dir / "report.md").read_text()
    assert [r["privacy_gate"] for r in summary["scores"]] == [
        "not set",
        "not set",
        "rows not published",
    ]
    assert summary["run_id"] in (tmp_path / "reports" / "index.html").read_text()
    assert not (tmp_path / ".synthgen-staging").exists()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def artifacts():
        async with get_client() as client:
            return {
                a.key: a
                for a in await client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        key=ArtifactFilterKey(
                            any_=[
                                "churn-small-quality-summary",
                                "churn-small-scores",
                                "churn-small-report",
                            ]
                        )
                    )
                )
            }

    import asyncio

    found = asyncio.run(artifacts())
    assert set(found) == {"churn-small-quality-summary", "churn-small-scores", "churn-small-report"}
    assert "Verdict" in found["churn-small-quality-summary"].data
    assert (
        "report.html" in found["churn-small-report"].data
        and "file://" in found["churn-small-report"].data
    )


def test_second_run_reuses_the_model_and_a_changed_input_retrains(
    prefect_harness, small_table, tmp_path
):
    _, first = run(small_table, tmp_path)
    _, second = run(small_table, tmp_path)
    assert first["reused"] == {"vae": False, "ae": False}
    assert set(json.loads(Path(first["report"]).with_suffix(".json").read_text())["models"]) == {
        "vae",
        "ae",
    }  # no contrast row
    assert second["reused"] == {"vae": True, "ae": True}
    a = pd.read_parquet(first["outputs"]["vae"])
    b = pd.read_parquet(second["outputs"]["vae"])
    assert not a.equals(b)  # fresh rows: a new sampling seed each run
    changed = tmp_path / "changed.parquet"
    pd.read_parquet(small_table).iloc[:1400].to_parquet(changed)
    _, third = run(changed, tmp_path, models=["vae"])
    assert third["reused"] == {"vae": False}
    assert len(published(tmp_path)) == 3


def test_failure_in_the_sample_step_publishes_nothing(
    prefect_harness, small_table, tmp_path, monkeypatch
):
    from synthgen.synthesizer import Synthesizer

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Synthesizer, "sample_to_parquet", broken)
    state, _ = run(small_table, tmp_path)
    assert state.is_failed()
    assert published(tmp_path) == [] and not (tmp_path / "reports" / "churn_small").exists()
    assert not (tmp_path / ".synthgen-staging").exists()


def test_a_killed_run_publishes_nothing_and_its_leftovers_are_cleaned(small_table, tmp_path):
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
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "synthgen.cli", "generate", "--config", str(config), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    staging = tmp_path / ".synthgen-staging"
    try:
        deadline = (
            time.monotonic() + 600
        )  # a loaded machine takes its time to start the run: no race with it
        while not list(
            staging.glob("*/work/train.parquet")
        ):  # wait until the run is training (its split is staged)
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read().decode())
            if time.monotonic() > deadline:
                pytest.fail("the run did not reach training in 600 s")
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert published(tmp_path) == [] and not (tmp_path / "reports").exists()
    assert list(staging.iterdir())  # the killed run's leftovers, unpublished ...
    from synthgen.runs import RunPaths

    RunPaths(tmp_path, "x", "next-run").create()  # ... are removed by the next run
    assert [p.name for p in staging.iterdir()] == ["next-run"]


def test_privacy_gate_failure_withholds_rows_and_reports_why(
    prefect_harness, small_table, tmp_path
):
    state, summary = run(
        small_table, tmp_path, models=["vae"], privacy_gate={"min_dcr_ratio": 100.0}
    )
    assert state.is_failed() and "privacy gate failed" in state.message
    assert summary["status"] == "failed" and summary["outputs"] == {}
    data_dir = Path(summary["data_dir"])
    assert not (data_dir / "vae.parquet").exists()
    assert json.loads((data_dir / "manifest.json").read_text())["withheld"] == ["vae"]
    assert (
        json.loads(Path(summary["report"]).with_suffix(".json").read_text())["verdict"][
            "privacy_gate"
        ]
        == "failed"
    )


@pytest.mark.parametrize(
    "args, content, message",
    [
        (["generate", "{missing}"], None, "no such file"),
        (
            ["generate", "--config", "{cfg}"],
            "input: {table}\nmodels: [gan]\n",
            "models.0: Input should be 'vae' or 'ae'",
        ),
        (
            ["generate", "--config", "{cfg}"],
            "input: {table}\nrows: -3\n",
            "rows: Input should be greater than or equal to 1",
        ),
        (
            ["generate", "--config", "{cfg}"],
            "input: {table}\nepochz: 3\n",
            "epochz: unknown setting",
        ),
        (["generate", "--config", "{cfg}"], "input: [unclosed\n", "not valid YAML"),
        (["generate", "{table}", "--target", "nope"], None, "target column 'nope' is not in"),
        (
            ["generate", "--config", "{cfg}"],
            "input: {table}\nmodel: {{lr: 0}}\n",
            "lr: Input should be greater than 0",
        ),
        (
            ["generate", "--config", "{cfg}"],
            "input: {table}\nmodel: {{vae: {{betta: 1}}}}\n",
            "bad vae settings: betta: unknown setting",
        ),
        (
            ["generate", "--config", "{cfg}"],
            "input: {table}\nmodels: [vae]\nmodel: {{ae: 3}}\n",
            "model.ae must be a mapping",
        ),
    ],
)
def test_bad_config_and_input_exit_2_with_one_line(small_table, tmp_path, args, content, message):
    cfg = tmp_path / "run.yaml"
    if content is not None:
        cfg.write_text(content.format(table=small_table))
    argv = [a.format(missing=tmp_path / "missing.csv", cfg=cfg, table=small_table) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "synthgen.cli", *argv, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_run_with_conditions_publishes_rows_that_meet_them(
    prefect_harness, small_table, tmp_path
):
    state, summary = run(
        small_table,
        tmp_path,
        models=["vae"],
        conditions=[
            {"where": {"churn": "Yes", "contract": "Month-to-month"}, "share": 1},
            {"where": {"churn": "No"}, "share": 1},
        ],
    )
    assert state.is_completed(), state.message
    rows = pd.read_parquet(Path(summary["data_dir"]) / "vae.parquet")
    assert len(rows) == 400 and (rows["churn"] == "Yes").sum() == 200
    assert (rows.loc[rows["churn"] == "Yes", "contract"] == "Month-to-month").all()
    report_dir = tmp_path / "reports" / "churn_small" / summary["run_id"]
    report = json.loads((report_dir / "report.json").read_text())
    latent = report["models"]["vae"]["latent"]
    assert (
        len(latent["real"]) == latent["bins"] and abs(sum(map(sum, latent["synthetic"])) - 1) < 0.1
    )
    page = (report_dir / "report.html").read_text()
    assert "Latent space" in page and "generated under conditions" in page
