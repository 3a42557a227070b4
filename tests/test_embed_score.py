"""Embeddings and anomaly scores from a trained model, loaded fresh from its folder."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from synthgen import Synthesizer, UserError
from synthgen import score as score_module
from synthgen.runtime import torch_threads

SETTINGS = {"epochs": 25, "hidden": [64, 64], "latent_dim": 8, "seed": 0}


@pytest.fixture(scope="module", params=["vae", "ae"])
def saved(request, demo_df, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / request.param
    Synthesizer(request.param, **SETTINGS).fit(demo_df.iloc[:5000], progress=False).save(path)
    return path


def test_embed_gives_the_codes_with_the_index_kept(saved, demo_df):
    synth = Synthesizer.load(saved)
    rows = demo_df.iloc[5000:5300].set_axis(np.arange(300) * 7 + 3)
    codes = synth.embed(rows)
    assert list(codes.columns) == [f"z{i}" for i in range(8)]
    assert list(codes.index) == list(rows.index) and codes.dtypes.eq(np.float32).all()
    assert codes.std().max() > 0.05  # rows differ in the latent space
    # the same row, alone or among others, gets the same code
    np.testing.assert_allclose(synth.embed(rows.iloc[[5]]).to_numpy(), codes.iloc[[5]], atol=1e-5)


def test_embedding_slices_on_several_threads_give_one_threads_codes(saved, demo_df, monkeypatch):
    synth = Synthesizer.load(saved)
    rows = demo_df.iloc[:700]
    monkeypatch.setattr(score_module, "CHUNK_ROWS", 64)  # 11 slices
    with torch_threads(2):
        threaded = synth.embed(rows)
    with torch_threads(1):
        pd.testing.assert_frame_equal(synth.embed(rows), threaded)


def test_score_parts_add_up_and_unusual_rows_score_higher(saved, demo_df):
    synth = Synthesizer.load(saved)
    held = demo_df.iloc[5000:6000].reset_index(drop=True)
    scores = synth.score(held)
    parts = scores.filter(like="nll:")
    assert list(parts.columns) == [f"nll:{c}" for c in held.columns]
    assert list(scores.index) == list(held.index)
    total = parts.sum(1) + (scores["kl"] if "kl" in scores else 0.0)
    np.testing.assert_allclose(scores["score"], total, rtol=1e-6)
    assert scores["percentile"].between(0, 100).all()
    # rows whose every column is shuffled on its own: each value normal, the row not
    rng = np.random.default_rng(0)
    shuffled = held.apply(lambda s: s.to_numpy()[rng.permutation(len(s))])
    from sklearn.metrics import roc_auc_score

    both = np.r_[scores["score"], synth.score(shuffled)["score"]]
    assert roc_auc_score(np.r_[np.zeros(1000), np.ones(1000)], both) > 0.75


def test_unseen_categories_and_out_of_range_values_are_scored_not_refused(saved, demo_df):
    synth = Synthesizer.load(saved)
    rows = demo_df.iloc[5000:5003].reset_index(drop=True)
    odd = rows.copy()
    odd["payment_method"] = odd["payment_method"].astype(object)
    odd.loc[0, "payment_method"] = "Bitcoin"
    odd.loc[1, "monthly_charges"] = 10_000.0
    odd.loc[2, "total_charges"] = np.nan  # never missing in training
    before, after = synth.score(rows), synth.score(odd)
    assert (after["score"] > before["score"] + 3).all()
    assert list(after["most_unusual"]) == ["payment_method", "monthly_charges", "total_charges"]


def test_score_and_embed_refuse_a_table_without_the_models_columns(saved, demo_df):
    synth = Synthesizer.load(saved)
    with pytest.raises(UserError, match="lacks columns the model was trained on: tenure"):
        synth.score(demo_df.drop(columns="tenure"))
    with pytest.raises(UserError, match="lacks columns"):
        synth.embed(demo_df.drop(columns="tenure"))


def test_cli_embed_and_score(saved, demo_df, tmp_path):
    table = tmp_path / "rows.parquet"
    demo_df.iloc[5000:5500].to_parquet(table)
    cli = [sys.executable, "-m", "synthgen.cli"]
    done = subprocess.run(
        [*cli, "embed", str(table), str(saved), "-o", str(tmp_path / "emb.parquet")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    emb = pd.read_parquet(tmp_path / "emb.parquet")
    assert emb.shape == (500, 9) and list(emb["row"]) == list(range(5000, 5500))  # index kept
    done = subprocess.run(
        [*cli, "score", str(table), str(saved), "-o", str(tmp_path / "s.parquet"), "--top", "7"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    top = pd.read_parquet(tmp_path / "s.parquet")
    assert len(top) == 7 and top["score"].is_monotonic_decreasing
    assert "most unusual" in done.stdout
    bad = tmp_path / "bad.parquet"
    demo_df.iloc[:50].drop(columns="tenure").to_parquet(bad)
    failed = subprocess.run(
        [*cli, "score", str(bad), str(saved), "-o", str(tmp_path / "x.parquet")],
        capture_output=True,
        text=True,
    )
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 2 and lines[-1].startswith("error: ") and "tenure" in lines[-1]
    assert "Traceback" not in failed.stderr and not (tmp_path / "x.parquet").exists()
