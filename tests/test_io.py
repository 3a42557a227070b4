import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from synthgen.errors import UserError
from synthgen.io import (
    ParquetStreamWriter,
    atomic_path,
    read_table,
    source_fingerprint,
    write_parquet,
)


@pytest.fixture()
def small() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, None, 1.5]})


def test_reads_every_format_alike(tmp_path, small):
    small.to_csv(tmp_path / "t.csv", index=False)
    small.to_parquet(tmp_path / "t.parquet", index=False)
    small.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    folder = tmp_path / "parts"
    folder.mkdir()
    small.iloc[:2].to_parquet(folder / "part-00000.parquet", index=False)
    small.iloc[2:].to_parquet(folder / "part-00001.parquet", index=False)
    for path in ["t.csv", "t.parquet", "t.jsonl", "parts"]:
        df = read_table(tmp_path / path)
        assert list(df.columns) == ["a", "b", "c"], path
        assert df["a"].tolist() == [1, 2, 3], path
        assert df["b"].isna().tolist() == [False, False, True], path
    assert read_table(small) is small


def test_csv_integers_with_missing_stay_integers(tmp_path):
    (tmp_path / "t.csv").write_text("n,s\n1,a\n,b\n3,c\n")
    assert str(read_table(tmp_path / "t.csv")["n"].dtype) == "Int64"


def _file(name: str, content: str):
    def make(p):
        (p / name).write_text(content)
        return p / name

    return make


def _folder(p):
    (p / "empty").mkdir()
    return p / "empty"


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "missing.csv", "no such file"),
        (_file("t.xlsx", "x"), "unknown file type"),
        (_file("t.parquet", "not parquet"), "cannot read as parquet"),
        (_file("t.csv", "a,b\n"), "table has no rows"),
        (_file("t.csv", "a,a\n1,2\n"), "duplicate column names: a"),
        (_file("t.jsonl", "{bad json\n"), "cannot read as jsonl"),
        (_folder, "folder holds no .parquet files"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, setup, message):
    path = setup(tmp_path)
    with pytest.raises(UserError, match=message) as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_no_columns_and_duplicate_columns_in_dataframes():
    with pytest.raises(UserError, match="no columns"):
        read_table(pd.DataFrame(index=range(3)))
    with pytest.raises(UserError, match="duplicate column names"):
        read_table(pd.DataFrame([[1, 2]], columns=["a", "a"]))


@pytest.mark.parametrize(
    "content, name, message",
    [
        (None, "missing.csv", "no such file"),
        ("a,b\n", "t.csv", "table has no rows"),
        ("a,a\n1,2\n", "t.csv", "duplicate column names"),
        ("x", "t.parquet", "cannot read as parquet"),
        ("x", "t.xyz", "unknown file type"),
    ],
)
def test_cli_bad_input_exit_code_2_one_line_no_output(tmp_path, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    out = tmp_path / "meta.json"
    proc = subprocess.run(
        [sys.executable, "-m", "synthgen.cli", "schema", str(path), "--metadata-out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".synthgen-tmp")]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_stream_writer_appends_row_groups_and_is_atomic(tmp_path):
    target = tmp_path / "big.parquet"
    with ParquetStreamWriter(target) as writer:
        for i in range(5):
            writer.write(
                pd.DataFrame(
                    {
                        "i": range(i * 100, (i + 1) * 100),
                        "s": [None] * 100 if i == 0 else ["x"] * 100,
                    }
                )
            )
            assert not target.exists()  # only the temporary file exists until the end
    meta = pq.ParquetFile(target).metadata
    assert meta.num_row_groups == 5 and meta.num_rows == 500
    back = pd.read_parquet(target)
    assert back["i"].tolist() == list(range(500))
    assert back["s"].isna().sum() == 100

    failed = tmp_path / "failed.parquet"
    with pytest.raises(ValueError):
        with ParquetStreamWriter(failed) as writer:
            writer.write(pd.DataFrame({"i": [1]}))
            raise ValueError("killed")
    assert not failed.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.parquet"]


def test_write_parquet_replaces_atomically(tmp_path, small):
    target = write_parquet(small, tmp_path / "x.parquet")
    write_parquet(small.iloc[:1], target)
    assert len(pd.read_parquet(target)) == 1


def test_fingerprint_follows_content(tmp_path, small):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    small.to_parquet(a)
    small.to_parquet(b)
    assert source_fingerprint(a) == source_fingerprint(b)
    small.iloc[:2].to_parquet(b)
    assert source_fingerprint(a) != source_fingerprint(b)
    assert source_fingerprint(small) != source_fingerprint(small.iloc[:2])


def test_schema_cli_prints_json_and_sdv_metadata(tmp_path, demo_df):
    path = tmp_path / "demo.csv"
    demo_df.to_csv(path, index=False)
    meta = tmp_path / "meta.json"
    proc = subprocess.run(
        [sys.executable, "-m", "synthgen.cli", "schema", str(path), "--metadata-out", str(meta)],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(proc.stdout)
    assert out["columns"]["tenure"]["kind"] == "numerical" and out["columns"]["tenure"]["integer"]
    assert out["columns"]["female"]["kind"] == "categorical"
    assert "tenure" in proc.stderr  # the readable table
    assert json.loads(meta.read_text()) == out["metadata"]


def test_written_files_follow_the_umask(tmp_path, small):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = write_parquet(small, tmp_path / "x.parquet")
        with atomic_path(tmp_path / "folder", is_dir=True) as folder:
            (folder / "a.txt").write_text("a")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


def test_run_config_model_sections_apply_to_one_model_only(tmp_path):
    from synthgen.config import load_run_config

    cfg = load_run_config(
        None,
        input="t.csv",
        model={"epochs": 5, "beta": 0.9, "vae": {"prior": "fitted", "beta": 0.8}},
    )
    vae, ae = cfg.model_settings("vae"), cfg.model_settings("ae")
    assert (vae.epochs, vae.beta, vae.prior) == (5, 0.8, "fitted")
    assert (ae.epochs, ae.beta, ae.prior) == (
        5,
        0.9,
        "fitted",
    )  # the AE's own default prior, the shared beta
    cfg = load_run_config(None, input="t.csv", model={"ae": {"prior": "standard"}})
    assert (
        cfg.model_settings("vae").prior == "standard"
        and cfg.model_settings("ae").prior == "standard"
    )
    # an override (a CLI option, a flow parameter) merges into the file's section
    # instead of replacing it
    path = tmp_path / "run.yaml"
    path.write_text("input: t.csv\nmodel:\n  epochs: 3\n  vae: {beta: 0.8}\n")
    cfg = load_run_config(str(path), model={"epochs": 4, "vae": {"prior": "fitted"}})
    assert (
        cfg.model_settings("vae").beta,
        cfg.model_settings("vae").prior,
        cfg.model_settings("vae").epochs,
    ) == (0.8, "fitted", 4)
    with pytest.raises(
        UserError, match="bad ae settings: betta: unknown setting"
    ):  # checked even when not run
        load_run_config(None, input="t.csv", models=["vae"], model={"ae": {"betta": 1}})
    with pytest.raises(UserError, match="model.vae must be a mapping"):
        load_run_config(None, input="t.csv", model={"vae": 0.8})
