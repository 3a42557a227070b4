"""Sharded sampling and many datasets on a local Dask cluster of 2 worker processes."""

from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.dask, pytest.mark.slow]

FAST = {
    "models": ["vae"],
    "model": {"epochs": 2, "hidden": [32]},
    "max_eval_rows": 500,
    "target": None,
}


def test_sharded_sampling_on_dask_equals_unsharded(prefect_harness, small_table, tmp_path):
    from synthgen.flows.generate import generate
    from synthgen.flows.many import dask_runner, shared_api

    settings = {
        "input": str(small_table),
        "out": str(tmp_path),
        "rows": 150_000,
        "sample_seed": 7,
        **FAST,
    }
    local = generate(settings=settings, return_state=True).result()
    with shared_api():
        on_dask = generate.with_options(task_runner=dask_runner(n_workers=2))(
            settings={**settings, "sample_shards": 3}, return_state=True
        ).result()
    assert on_dask["reused"] == {"vae": True}  # the same cached model, so only the sharding differs
    folder = Path(on_dask["outputs"]["vae"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    one, sharded = pd.read_parquet(local["outputs"]["vae"]), pd.read_parquet(folder)
    assert len(sharded) == 150_000
    pd.testing.assert_frame_equal(one, sharded)
    manifest = pd.read_json(Path(on_dask["data_dir"]) / "manifest.json", typ="series")
    assert manifest["status"] == "passed"


def test_generate_many_reports_a_failed_dataset_and_publishes_the_others(
    prefect_harness, small_table, credit_df, tmp_path
):
    from synthgen.flows.many import run_many

    tables = tmp_path / "tables"
    tables.mkdir()
    pd.read_parquet(small_table).to_parquet(tables / "churn.parquet")
    credit_df.sample(1500, random_state=0).to_parquet(tables / "credit.parquet")
    pd.DataFrame({"key": [f"k{i}" for i in range(100)]}).to_csv(
        tables / "only_ids.csv", index=False
    )
    out = tmp_path / "out"
    state = run_many(
        folder=str(tables), settings={**FAST, "rows": 500, "out": str(out)}, n_workers=2
    )
    assert state.is_failed()
    summary = state.result(raise_on_failure=False)
    by_name = {r["dataset"]: r for r in summary["datasets"]}
    assert by_name["churn"]["status"] == "passed" and by_name["credit"]["status"] == "passed"
    assert (
        by_name["only_ids"]["status"] == "error"
        and "nothing to learn" in by_name["only_ids"]["error"]
    )
    assert summary["passed"] == 2 and summary["failed"] == 1
    assert sorted(p.name for p in (out / "data" / "synthetic").iterdir()) == ["churn", "credit"]
    assert sorted(p.name for p in (out / "reports").iterdir() if p.is_dir()) == ["churn", "credit"]
    assert not (out / ".synthgen-staging").exists()  # nothing partial left by the failed dataset
    index = (out / "reports" / "index.html").read_text()
    assert by_name["churn"]["run_id"] in index and by_name["credit"]["run_id"] in index
