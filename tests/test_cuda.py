"""The CUDA path: training steps replayed from a captured CUDA graph, checkpoints across devices,
and a model trained on the GPU sampled on the CPU. Skipped without CUDA (CI has none);
`benchmarks/gpu_check.sh` runs it on a GPU machine. Imports nothing beyond the core packages, so it
runs where sdmetrics is not installed."""

import gc
import json

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen import Synthesizer
from synthgen import train as train_module

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def table(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kind = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1])
    x = rng.normal(size=n) + (kind == "a") * 3.0
    return pd.DataFrame(
        {
            "kind": kind,
            "x": x,
            "y": 2 * x + rng.normal(scale=0.3, size=n),
            "flag": rng.random(n) < 0.3,
            "count": rng.poisson(4, n),
        }
    )


SETTINGS = dict(
    epochs=12, hidden=[64, 64], latent_dim=8, batch_size=256, seed=0, patience=100, device="cuda"
)


@pytest.mark.parametrize("model", ["vae", "ae"])
def test_graphed_steps_train_like_eager_ones(model, monkeypatch):
    df = table()
    graphed = Synthesizer(model, **SETTINGS).fit(df, progress=False)
    monkeypatch.setenv("SYNTHGEN_CUDA_GRAPH", "0")
    eager = Synthesizer(model, **SETTINGS).fit(df, progress=False)
    assert graphed.training.device.startswith("cuda") and graphed.training.precision == "bf16 mixed"
    steps_per_epoch = graphed.training.train_rows // 256
    # all full batches but the warm-up steps and the captures (one per KL warm-up epoch) are replays
    assert graphed.training.graphed_steps >= 12 * steps_per_epoch - 3 - 10 - 12
    assert eager.training.graphed_steps == 0
    g = graphed.training.history
    assert g[-1]["loss"] < 0.8 * g[0]["loss"]
    best_g, best_e = graphed.training.best_val_loss, eager.training.best_val_loss
    assert abs(best_g - best_e) < 0.1 * abs(best_e) + 0.1, (best_g, best_e)
    rows = graphed.sample(2000, seed=1)
    assert len(rows) == 2000 and set(rows["kind"]) <= set("abcd")


def test_recaptures_when_learning_rate_changes_every_epoch():
    settings = {**SETTINGS, "lr_schedule": "cosine", "kl_warmup_epochs": 4}
    fit = Synthesizer("vae", **settings).fit(table(), progress=False)
    assert fit.training.graphed_steps > 0
    losses = [r["loss"] for r in fit.training.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_cpu_checkpoint_resumes_on_cuda_with_graphs(tmp_path, monkeypatch):
    df = table(3000)
    settings = {**SETTINGS, "device": "auto", "checkpoint_every": 4}
    ckpt = tmp_path / "ckpt"
    original = train_module._ProgressBar.update

    def killed_at_epoch_6(self, row):
        original(self, row)
        if row["epoch"] == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "resolve_device", lambda name: torch.device("cpu"))
    monkeypatch.setattr(train_module._ProgressBar, "update", killed_at_epoch_6)
    with pytest.raises(KeyboardInterrupt):
        Synthesizer("vae", **settings).fit(df, checkpoint_dir=ckpt, progress=False)
    assert json.loads((ckpt / "checkpoint.json").read_text())["epoch"] == 4
    monkeypatch.undo()
    resumed = Synthesizer("vae", **settings).fit(df, checkpoint_dir=ckpt, progress=False)
    assert resumed.training.device.startswith("cuda") and resumed.training.resumed_from_epoch == 4
    assert resumed.training.epochs_run == 12 and resumed.training.graphed_steps > 0


def test_model_trained_on_gpu_samples_on_cpu(tmp_path):
    fit = Synthesizer("vae", **SETTINGS).fit(table(), progress=False)
    fit.save(tmp_path / "model")
    loaded = Synthesizer.load(tmp_path / "model", device="cpu")
    assert next(loaded.net.parameters()).device.type == "cpu"
    rows = loaded.sample(3000, seed=2)
    assert list(rows.columns) == list(table(5).columns) and rows["flag"].dtype == bool


def test_repeated_fits_do_not_grow_gpu_memory():
    df = table(3000)
    Synthesizer("vae", **SETTINGS).fit(
        df, progress=False
    )  # the first fit sets up cuBLAS workspaces for good
    gc.collect()
    before = torch.cuda.memory_allocated()
    for _ in range(3):
        Synthesizer("vae", **SETTINGS).fit(df, progress=False)
    gc.collect()
    assert torch.cuda.memory_allocated() - before < 8 * 2**20


def test_fits_in_two_threads_capture_side_by_side():
    # flows run tasks in threads: one thread's capture must not break the other's eager GPU work
    from concurrent.futures import ThreadPoolExecutor

    def fit(model: str):
        return Synthesizer(model, **SETTINGS).fit(table(), progress=False)

    with ThreadPoolExecutor(2) as pool:
        fits = list(pool.map(fit, ["vae", "ae"]))
    for f in fits:
        assert f.training.graphed_steps > 0 and np.isfinite(f.training.best_val_loss)


def test_failed_capture_falls_back_to_eager_steps(monkeypatch, caplog):
    original = train_module._TrainStep._step

    def breaks_the_capture(self, xb, beta):
        if torch.cuda.is_current_stream_capturing():
            torch.cuda.synchronize()  # not allowed while capturing: the capture fails
        original(self, xb, beta)

    monkeypatch.setattr(train_module._TrainStep, "_step", breaks_the_capture)
    with caplog.at_level("WARNING", logger="synthgen"):
        fallback = Synthesizer("vae", **SETTINGS).fit(table(), progress=False)
    assert "could not capture" in caplog.text
    assert fallback.training.graphed_steps == 0 and np.isfinite(fallback.training.best_val_loss)
    assert fallback.training.history[-1]["loss"] < fallback.training.history[0]["loss"]
    monkeypatch.undo()
    # nothing is left broken: the default CUDA generator draws again, and the next fit captures
    torch.randn(4, device="cuda")
    assert Synthesizer("vae", **SETTINGS).fit(table(), progress=False).training.graphed_steps > 0


@pytest.mark.parametrize("model", ["vae", "ae"])
def test_learned_prior_fits_on_gpu_and_samples_alike_on_cpu(model, tmp_path):
    df = table()
    fit = Synthesizer(model, **SETTINGS, prior="learned", prior_epochs=30).fit(df, progress=False)
    assert next(fit.net.prior.flow.parameters()).device.type == "cuda"
    assert fit.training.graphed_steps > 0 and np.isfinite(fit.training.prior_fit["loss"])
    on_gpu = fit.sample(4000, seed=3)
    fit.save(tmp_path / "model")
    on_cpu = Synthesizer.load(tmp_path / "model", device="cpu").sample(4000, seed=3)
    for rows in (on_gpu, on_cpu):
        # the flow's codes decode to the table: the kind shares and x's mean within sampling noise
        share = rows["kind"].value_counts(normalize=True)
        assert abs(share.get("a", 0) - 0.4) < 0.08, share
        assert abs(rows["x"].mean() - df["x"].mean()) < 0.3
    assert abs(on_gpu["x"].mean() - on_cpu["x"].mean()) < 0.2


def test_conditional_rows_from_a_model_on_the_gpu():
    fit = Synthesizer("vae", **SETTINGS).fit(table(), progress=False)
    rows = fit.sample(500, seed=4, conditions={"kind": "d", "x": (0.0, 2.0)})
    assert (rows["kind"] == "d").all() and rows["x"].between(0.0, 2.0).all()


def test_profiles_draw_on_the_gpu_as_on_the_cpu(tmp_path):
    """A profile's class (a softmax of over 256 classes, drawn by one cumulative sum) on CUDA:
    rarer combinations never copied, profiles at about the training share, the same share when
    the model samples on the CPU, and conditions on its columns held."""
    from test_profiles import AREA_COLUMNS, held
    from test_profiles import table as areas

    df = areas(n=8000, areas=1000)  # 445 profiles
    settings = {**SETTINGS, "epochs": 30}
    fit = Synthesizer("vae", **settings).fit(df, progress=False)
    (profile,) = fit.transformer.profiles.values()
    assert profile.none > 256  # the wide draw
    counts = held(df)
    share = counts[counts >= 5].sum() / len(df)
    fit.save(tmp_path / "m")
    on_cpu = Synthesizer.load(tmp_path / "m", device="cpu")
    for synth in (fit, on_cpu):
        drawn = synth.sample(6000, seed=1)[AREA_COLUMNS].apply(tuple, axis=1).map(counts)
        drawn = drawn.fillna(0).to_numpy()
        assert not ((drawn > 0) & (drawn < 5)).any()
        assert abs((drawn >= 5).mean() - share) < 0.05
    rows = fit.sample(300, seed=2, conditions={"area_3": 7, "area_2": (6, 9)})
    assert (rows["area_3"] == 7).all() and rows["area_2"].between(6, 9).all()
