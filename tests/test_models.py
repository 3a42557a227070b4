import json

import numpy as np
import pandas as pd
import pytest
import torch
from sdmetrics.reports.single_table import QualityReport

from synthgen import Synthesizer, UserError
from synthgen.config import ModelSettings
from synthgen.models import AE, VAE
from synthgen.schema import infer_schema
from synthgen.transform import TableTransformer


def tiny_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "key": [f"A{i:04d}" for i in range(n)],
            "x": np.round(x, 3),
            "y": np.round(2 * x + rng.normal(scale=0.1, size=n), 2),
            "count": rng.poisson(3, n),
            "color": rng.choice(["red", "green", "blue"], n),
            "flag": rng.random(n) < 0.3,
            "maybe": np.where(rng.random(n) < 0.2, np.nan, rng.gamma(2, 2, n).round(1)),
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        }
    )


def encoded(df):
    tt = TableTransformer().fit(df, infer_schema(df))
    return tt, torch.from_numpy(tt.transform(df))


@pytest.mark.parametrize("model_cls", [VAE, AE])
def test_shapes_and_loss_parts(model_cls):
    tt, x = encoded(tiny_table())
    settings = ModelSettings(model="vae" if model_cls is VAE else "ae", latent_dim=4, hidden=[16])
    model = model_cls(tt.layout, settings)
    loss, parts = model(x[:32])
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert parts["parts"].shape == (len(model.likelihood.columns),)
    assert set(model.likelihood.columns) == {"x", "y", "count", "color", "flag", "maybe", "when"}
    assert torch.allclose(parts["parts"].sum(), parts["reconstruction"])
    codes, variances = model.codes(x[:32])
    assert codes.shape == (32, 4)
    assert (
        (variances is None)
        if model_cls is AE
        else (variances.shape == (32, 4) and (variances > 0).all())
    )
    out_t = model.decoder.forward_t(codes)
    assert out_t.shape == (model.likelihood.out_width, 32)
    drawn = model.likelihood.sample(out_t).T
    assert drawn.shape == (32, tt.layout.n_inputs)
    for block in tt.layout.discrete:  # every drawn code is a valid class
        col = drawn[:, block.input_col]
        assert (col >= 0).all() and (col < block.n_classes).all() and (col == col.round()).all()


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "leaky_relu"])
@pytest.mark.parametrize("norm", ["none", "layer"])
def test_inference_decoder_matches_forward(activation, norm):
    """Sampling's transposed, in-place decoder computes what the training forward does."""
    tt, _ = encoded(tiny_table())
    torch.manual_seed(0)
    model = VAE(
        tt.layout, ModelSettings(latent_dim=4, hidden=[32, 16], activation=activation, norm=norm)
    ).eval()
    z = torch.randn(50, 4)
    with torch.no_grad():
        expected = model.decoder(z)
    got = model.decoder.forward_t(z, chunk=16).T
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    low = model.decoder.forward_t(z, dtype=torch.bfloat16).T  # the bf16 path: close, not equal
    assert (low - expected).abs().max() < 0.05 * expected.abs().max()


@pytest.mark.parametrize("norm", ["none", "layer"])
@pytest.mark.parametrize("encoder_hidden", [None, [24, 12]])
def test_inference_encoder_matches_forward(norm, encoder_hidden):
    """Embedding's encoder (first layer summed from the class codes' weight rows, only the first
    `outputs` numbers) computes what the training forward does."""
    tt, x = encoded(tiny_table())
    torch.manual_seed(0)
    settings = ModelSettings(
        latent_dim=4, hidden=[32, 16], norm=norm, encoder_hidden=encoder_hidden
    )
    model = VAE(tt.layout, settings).eval()
    assert model.encoder.net[0].out_features == (encoder_hidden or [32])[0]
    with torch.no_grad():
        expected = model.encoder(x[:50])
    got = model.encoder.infer(x[:50], chunk=16)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    means = model.encoder.infer(x[:50], chunk=64, outputs=4)
    assert torch.allclose(means, expected[:, :4], atol=1e-5)
    low = model.encoder.infer(x[:50], chunk=16, dtype=torch.bfloat16)  # close, not equal
    assert (low - expected).abs().max() < 0.05 * expected.abs().max()


def test_vae_has_positive_kl_and_ae_has_none():
    tt, x = encoded(tiny_table())
    vae = VAE(tt.layout, ModelSettings(latent_dim=4, hidden=[16]))
    ae = AE(tt.layout, ModelSettings(model="ae", latent_dim=4, hidden=[16]))
    _, vae_parts = vae(x)
    ae_loss, ae_parts = ae(x)
    assert vae_parts["kl"] > 0
    assert "kl" not in ae_parts and torch.allclose(ae_loss, ae_parts["reconstruction"])
    assert ae.likelihood.continuous == "mse" and vae.likelihood.continuous == "gaussian"
    assert (
        isinstance(vae.encoder.net[-1], torch.nn.Linear) and vae.encoder.net[-1].out_features == 8
    )  # mean, log-var
    assert ae.encoder.net[-1].out_features == 4


def test_fitted_prior_of_a_vae_is_its_aggregate_posterior():
    """prior="fitted" on a VAE matches the mean and covariance of z over all training rows,
    posterior noise included (law of total covariance), not only the spread of the posterior means;
    standard stays N(0, I)."""
    df = tiny_table(400)
    synth = Synthesizer(
        "vae",
        epochs=5,
        latent_dim=4,
        hidden=[32],
        prior="fitted",
        val_fraction=0.0,
        precision="fp32",
        seed=1,
    ).fit(df, progress=False)  # every row trains, no bf16 rounding of the codes
    prior = synth.net.prior
    with torch.no_grad():
        mu, logvar = synth.net.encode(torch.from_numpy(synth.transformer.transform(df)))
    drawn = torch.randn(200_000, 4, generator=torch.Generator().manual_seed(0))
    z = (mu.repeat(50, 1) + torch.exp(0.5 * logvar).repeat(50, 1) * drawn[: len(mu) * 50]).double()
    cov = prior.chol.double() @ prior.chol.double().T
    assert torch.allclose(prior.mean.double(), mu.double().mean(0), atol=1e-5)
    assert torch.allclose(
        cov, torch.cov(z.T), atol=0.03 * cov.diagonal().max().item()
    )  # a Monte Carlo check
    assert (cov.diagonal() - torch.cov(mu.double().T).diagonal() > 0.5 * logvar.exp().mean(0)).all()
    assert synth.sample(50, seed=2).shape == (50, df.shape[1])
    standard = (
        Synthesizer("vae", epochs=1, latent_dim=4, hidden=[32], seed=1)
        .fit(df, progress=False)
        .net.prior
    )
    assert torch.equal(standard.mean, torch.zeros(4)) and torch.equal(standard.chol, torch.eye(4))


@pytest.fixture(scope="module")
def fitted_vae():
    df = tiny_table(600)
    return df, Synthesizer("vae", epochs=15, latent_dim=8, hidden=[64, 64], seed=3).fit(
        df, progress=False
    )


def test_sample_has_columns_dtypes_rows_and_categories(fitted_vae):
    df, synth = fitted_vae
    out = synth.sample(1000, seed=1)
    assert list(out.columns) == list(df.columns) and len(out) == 1000
    assert out.dtypes.to_dict() == df.dtypes.to_dict()
    assert set(out["color"]) <= set(df["color"])
    assert out["key"].is_unique and out["key"].str.fullmatch(r"A[0-9]{4,}").all()
    assert out["x"].between(df["x"].min(), df["x"].max()).all()
    assert 0.05 < out["maybe"].isna().mean() < 0.4  # the missing rate is learned, not imputed away
    assert synth.sample(0).shape == (0, df.shape[1])
    with pytest.raises(UserError):
        synth.sample(-1)


def test_seeds_reproduce_on_cpu():
    df = tiny_table(400)
    a = Synthesizer("vae", epochs=5, hidden=[32], seed=7).fit(df, progress=False)
    b = Synthesizer("vae", epochs=5, hidden=[32], seed=7).fit(df, progress=False)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=False):
        assert torch.equal(va, vb), k
    pd.testing.assert_frame_equal(a.sample(500, seed=2), b.sample(500, seed=2))
    assert not a.sample(500, seed=2).equals(a.sample(500, seed=3))


def test_first_fit_in_a_process_trains_the_same_model(monkeypatch):
    """Choosing the precision (once per process) must not draw from the seeded global RNG."""
    from synthgen.runtime import fast_bf16

    monkeypatch.setenv("SYNTHGEN_PRECISION", "auto")
    monkeypatch.setattr(
        "synthgen.runtime._cpu_flags", lambda: None, raising=False
    )  # the timing probe, as on non-Linux
    df = tiny_table(200)
    fast_bf16.cache_clear()
    try:
        first = Synthesizer("vae", epochs=3, hidden=[16], seed=3).fit(df, progress=False)
        again = Synthesizer("vae", epochs=3, hidden=[16], seed=3).fit(df, progress=False)
    finally:
        fast_bf16.cache_clear()
    for (k, va), vb in zip(
        first.net.state_dict().items(), again.net.state_dict().values(), strict=False
    ):
        assert torch.equal(va, vb), k
    assert first.training.precision in ("fp32", "bf16 mixed")


def test_small_models_train_on_one_cpu_thread_and_leave_the_callers_setting(monkeypatch):
    import synthgen.runtime

    df = tiny_table(200)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = Synthesizer("vae", epochs=2, seed=0).fit(df, progress=False)
        assert small.training.cpu_threads == 1 and torch.get_num_threads() == 2
        asked = Synthesizer("vae", epochs=2, seed=0, cpu_threads=2).fit(df, progress=False)
        assert asked.training.cpu_threads == 2
        monkeypatch.setattr(
            synthgen.runtime, "ONE_THREAD_PARAMS", 1_000
        )  # now the default network counts as large
        large = Synthesizer("vae", epochs=2, seed=0).fit(df, progress=False)
        assert large.training.cpu_threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    # a runtime choice, like the device: the cache key of the trained model does not change
    assert ModelSettings(cpu_threads=2).fingerprint_fields() == ModelSettings().fingerprint_fields()


def test_cache_key_follows_input_settings_and_training_revision(monkeypatch):
    import synthgen.synthesizer as synthesizer

    key = synthesizer.model_cache_key("sha", ModelSettings())
    assert key == synthesizer.model_cache_key(
        "sha", ModelSettings(device="cpu", checkpoint_every=3)
    )
    assert key != synthesizer.model_cache_key("sha", ModelSettings(beta=0.8))
    assert key != synthesizer.model_cache_key("other", ModelSettings())
    # a model trained by older training code is not reused
    monkeypatch.setattr(synthesizer, "TRAINING_REVISION", synthesizer.TRAINING_REVISION + 1)
    assert key != synthesizer.model_cache_key("sha", ModelSettings())


def test_editing_the_metadata_retrains_the_cached_model(tmp_path, demo_df):
    from synthgen.synthesizer import fit_or_reuse

    table = demo_df.sample(n=300, random_state=0).reset_index(drop=True)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"columns": {"tenure": {"sdtype": "numerical"}}}))
    settings = ModelSettings(epochs=1, hidden=[16], latent_dim=2)

    def fit():
        return fit_or_reuse(
            table, settings, tmp_path / "models", cache_key_input="same input", metadata=str(meta)
        )

    first, second = fit(), fit()
    assert (first[2], second[2]) == (False, True) and first[1] == second[1]
    meta.write_text(
        json.dumps({"columns": {"tenure": {"sdtype": "id"}}})
    )  # a sensitive column: no longer learned
    synth, model_dir, reused = fit()
    assert not reused and model_dir != first[1] and synth.schema["tenure"].kind == "id"
    assert (
        synth.info["fingerprint"] != first[0].info["fingerprint"]
    )  # checkpoints of the old fit are not resumed


def test_default_training_length_follows_the_table_size():
    from synthgen.train import auto_epochs

    assert (
        auto_epochs(300_000, 1024) == 30
    )  # large tables: about ROW_VISITS rows seen, never under 30 epochs
    assert auto_epochs(38_836, 1024) == 142
    assert auto_epochs(20_000, 1024) == 180  # at most MAX_EPOCHS
    assert (
        auto_epochs(5_071, 1024) == 120
    )  # 5 batches an epoch: EPOCHS_PER_BATCH (24) epochs per batch
    assert auto_epochs(3_207, 1024) == 200  # 3 steps an epoch: at least MIN_STEPS steps
    assert auto_epochs(900, 900) == 300  # one step an epoch: up to 300 epochs
    synth = Synthesizer("vae", hidden=[16], patience=1, seed=0).fit(tiny_table(200), progress=False)
    assert synth.training.epochs_planned == 300 and synth.training.stopped_early


def test_batches_and_blocks_do_not_change_rows(fitted_vae, tmp_path):
    _, synth = fitted_vae
    from synthgen.sample import BLOCK_ROWS

    n = BLOCK_ROWS + 1234
    whole = synth.sample(n, seed=11)
    path = synth.sample_to_parquet(n, tmp_path / "s.parquet", seed=11, batch_rows=1000)
    pd.testing.assert_frame_equal(pd.read_parquet(path), whole)
    assert whole["key"].is_unique


def test_blocks_drawn_by_parallel_threads_are_the_rows_of_one_thread(fitted_vae):
    """On a CPU, blocks are drawn by several threads at once. The rows and their order must not
    depend on how many, a consumer that stops early must not wait for the rest, and torch's thread
    setting comes back."""
    from synthgen.sample import BLOCK_ROWS, iter_blocks

    _, synth = fitted_vae
    n = 3 * BLOCK_ROWS + 10  # four blocks, the last a short one

    def blocks(threads: int):
        return iter_blocks(synth.net, synth.transformer, n, 7, threads=threads)

    before = torch.get_num_threads()
    one = pd.concat(blocks(1), ignore_index=True)
    pd.testing.assert_frame_equal(pd.concat(blocks(3), ignore_index=True), one)
    pd.testing.assert_frame_equal(synth.sample(n, seed=7), one)  # threads as torch's setting says
    stream = blocks(2)
    pd.testing.assert_frame_equal(next(stream), one.iloc[:BLOCK_ROWS])
    stream.close()
    assert torch.get_num_threads() == before and one["key"].is_unique


def test_rows_gathers_blocks_as_pd_concat_would():
    """Blocks are copied into columns allocated once; a column of pandas' own dtype, or whose
    dtype changes between blocks, is concatenated by pandas: the frame is pd.concat's."""
    from synthgen.sample import Rows

    def block(a: int, b: int, ints: bool) -> pd.DataFrame:
        k = np.arange(a, b)
        return pd.DataFrame(
            {
                "n": k * 2 if ints else np.where(k % 3, k * 2.0, np.nan),  # int64, then float64
                "s": np.array([f"v{i % 4}" for i in k], dtype=object),
                "c": pd.Categorical([["a", "b"][i % 2] for i in k], categories=["a", "b"]),
                "i": pd.array(np.where(k % 5, k, -1), dtype="Int64"),
                "x": k / 7,
            }
        )

    blocks = [block(0, 5, True), block(5, 12, False), block(12, 13, True)]
    rows = Rows(13)
    for b in blocks:
        rows.add(b)
    pd.testing.assert_frame_equal(rows.frame(), pd.concat(blocks, ignore_index=True))
    whole = Rows(5)
    whole.add(blocks[0])
    assert whole.frame() is blocks[0]  # one block of all the rows: kept as it is
    short = Rows(14)
    short.add(blocks[0])
    with pytest.raises(ValueError, match="5 rows of 14"):
        short.frame()
    over = Rows(6)
    over.add(blocks[0])
    with pytest.raises(ValueError, match="12 rows where 6"):
        over.add(blocks[1])


def test_chunked_decoding_and_drawing_do_not_change_rows(fitted_vae, monkeypatch):
    """The CPU path decodes and draws in cache-sized chunks; the randomness is drawn per block,
    so the rows must be those of one unchunked pass (as on a GPU), however odd the chunk sizes."""
    import synthgen.models.draw as sample_module

    _, synth = fitted_vae
    chunked = synth.sample(5000, seed=4)
    monkeypatch.setattr(sample_module, "SAMPLE_CHUNK", 1 << 30)
    monkeypatch.setattr(sample_module, "DECODER_CHUNK", 1 << 30)
    pd.testing.assert_frame_equal(synth.sample(5000, seed=4), chunked)
    monkeypatch.setattr(sample_module, "SAMPLE_CHUNK", 777)
    monkeypatch.setattr(sample_module, "DECODER_CHUNK", 100)
    pd.testing.assert_frame_equal(synth.sample(5000, seed=4), chunked)


def test_a_narrower_encoder_is_saved_and_loaded_with_its_widths(tmp_path):
    df = tiny_table(600)
    settings = {"epochs": 2, "hidden": [32, 32], "encoder_hidden": [16], "latent_dim": 4}
    synth = Synthesizer("vae", **settings).fit(df, progress=False)
    assert [m.out_features for m in synth.net.encoder.net if hasattr(m, "out_features")] == [16, 8]
    loaded = Synthesizer.load(synth.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.embed(df), synth.embed(df))
    pd.testing.assert_frame_equal(loaded.sample(200, seed=1), synth.sample(200, seed=1))


def test_the_default_encoder_has_one_hidden_layer_and_old_models_load_with_two(tmp_path):
    df = tiny_table(600)
    synth = Synthesizer("vae", epochs=2, hidden=[32, 24], latent_dim=4).fit(df, progress=False)
    assert [m.out_features for m in synth.net.encoder.net if hasattr(m, "out_features")] == [32, 8]
    assert Synthesizer("vae", epsilon=3.0).settings.encoder_hidden == [128, 128]  # as measured
    # a model saved while the default was `hidden` has `encoder_hidden: null` and two layers
    old = Synthesizer("vae", epochs=2, hidden=[32, 24], encoder_hidden=[32, 24], latent_dim=4)
    path = old.fit(df, progress=False).save(tmp_path / "old")
    manifest = json.loads((path / "synthgen.json").read_text())
    manifest["settings"]["encoder_hidden"] = None
    (path / "synthgen.json").write_text(json.dumps(manifest))
    loaded = Synthesizer.load(path)
    assert loaded.settings.encoder_hidden == [32, 24]
    pd.testing.assert_frame_equal(loaded.embed(df), old.embed(df))


def test_save_load_sample_and_refusals(fitted_vae, tmp_path):
    _, synth = fitted_vae
    path = synth.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "synthgen.json"]
    loaded = Synthesizer.load(path, device="cpu")
    pd.testing.assert_frame_equal(loaded.sample(300, seed=5), synth.sample(300, seed=5))

    manifest = json.loads((path / "synthgen.json").read_text())
    manifest["format_version"] = 99
    (path / "synthgen.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="format version 99 is not supported"):
        Synthesizer.load(path)
    manifest["format_version"], manifest["format"] = 1, "pickle"
    (path / "synthgen.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="not a synthgen model"):
        Synthesizer.load(path)
    manifest["format"] = "synthgen-model"
    (path / "synthgen.json").write_text(json.dumps(manifest))
    weights = bytearray((path / "model.safetensors").read_bytes())
    weights[-10] ^= 0xFF  # one flipped byte in the weights
    (path / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(UserError, match="do not match the checksum"):
        Synthesizer.load(path)
    (path / "synthgen.json").write_text("not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Synthesizer.load(path)


def test_ae_baseline_fits_a_gaussian_to_its_codes():
    df = tiny_table(500)
    ae = Synthesizer("ae", epochs=10, hidden=[32], latent_dim=4).fit(df, progress=False)
    assert ae.net.prior.kind == "fitted"
    assert not torch.equal(
        ae.net.prior.chol, torch.eye(4)
    )  # fitted after training, not the identity
    standard = Synthesizer("ae", prior="standard", epochs=10, hidden=[32], latent_dim=4).fit(
        df, progress=False
    )
    assert torch.equal(standard.net.prior.chol, torch.eye(4))
    assert len(ae.sample(100, seed=0)) == 100
    # the same weights (same seed), so the fitted AE drawn from N(0, I) is the AE trained with
    # prior="standard" (uncalibrated: a calibration is fitted to the draws of the model's own prior)
    ae, standard = (
        Synthesizer(
            "ae", prior=prior, calibrate_marginals=False, epochs=10, hidden=[32], latent_dim=4
        ).fit(df, progress=False)
        for prior in ("fitted", "standard")
    )
    pd.testing.assert_frame_equal(
        ae.sample(200, seed=3, prior="standard"), standard.sample(200, seed=3)
    )
    assert ae.net.prior.kind == "fitted" and not ae.sample(200, seed=3).equals(
        standard.sample(200, seed=3)
    )
    with pytest.raises(UserError, match="prior must be"):
        ae.sample(5, prior="uniform")


def shapes_score(real, synthetic, schema) -> float:
    report = QualityReport()
    report.generate(real, synthetic, schema.to_metadata(), verbose=False)
    return float(report.get_properties().set_index("Property").loc["Column Shapes", "Score"])


def test_fit_on_real_table_beats_a_trivial_baseline(credit_df):
    train = credit_df.sample(frac=0.8, random_state=0).reset_index(drop=True)
    synth = Synthesizer("vae", epochs=40, seed=0).fit(train, progress=False)
    synthetic = synth.sample(len(train), seed=1)
    # trivial baseline: every column drawn uniformly from its observed distinct values
    rng = np.random.default_rng(0)
    trivial = pd.DataFrame(
        {c: rng.choice(train[c].dropna().unique(), len(train)) for c in train.columns}
    )
    trivial = trivial.astype(train.dtypes.to_dict())
    ours, baseline = (
        shapes_score(train, synthetic, synth.schema),
        shapes_score(train, trivial, synth.schema),
    )
    assert ours > 0.9 and ours > baseline + 0.15, (ours, baseline)


def test_training_resumes_from_checkpoint(tmp_path, monkeypatch):
    df = tiny_table(400)
    settings = dict(epochs=12, hidden=[32], latent_dim=4, seed=1, checkpoint_every=4, patience=100)
    straight = Synthesizer("vae", **settings).fit(df, progress=False)

    from synthgen import train as train_module

    original = train_module._ProgressBar.update

    def killed_at_epoch_10(self, row):
        original(self, row)
        if row["epoch"] == 10:
            raise KeyboardInterrupt

    ckpt = tmp_path / "ckpt"
    monkeypatch.setattr(train_module._ProgressBar, "update", killed_at_epoch_10)
    with pytest.raises(KeyboardInterrupt):
        Synthesizer("vae", **settings).fit(df, checkpoint_dir=ckpt, progress=False)
    assert json.loads((ckpt / "checkpoint.json").read_text())["epoch"] == 8
    monkeypatch.setattr(train_module._ProgressBar, "update", original)
    resumed = Synthesizer("vae", **settings).fit(df, checkpoint_dir=ckpt, progress=False)
    assert resumed.training.resumed_from_epoch == 8 and resumed.training.epochs_run == 12
    for (k, va), vb in zip(
        straight.net.state_dict().items(), resumed.net.state_dict().values(), strict=False
    ):
        assert torch.allclose(va, vb, atol=1e-6), k
    # a checkpoint of other settings is ignored, not loaded
    other = Synthesizer("vae", **{**settings, "seed": 2}).fit(
        df, checkpoint_dir=ckpt, progress=False
    )
    assert other.training.resumed_from_epoch is None


def test_bad_settings_are_clear_errors():
    with pytest.raises(UserError, match="lr"):
        Synthesizer("vae", lr=-1)
    with pytest.raises(UserError, match="unknown setting"):
        Synthesizer("vae", epoch=3)
    with pytest.raises(UserError, match="not fitted"):
        Synthesizer().sample(3)


def test_cli_fit_then_sample(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "t.csv"
    tiny_table(300).to_csv(data, index=False)
    model = tmp_path / "model"
    cli = [sys.executable, "-m", "synthgen.cli"]
    fit = subprocess.run(
        cli + ["fit", str(data), "--out", str(model), "--epochs", "3", "--seed", "1", "-q"],
        capture_output=True,
        text=True,
    )
    assert fit.returncode == 0, fit.stderr
    assert (model / "model.safetensors").exists() and not (tmp_path / "model.ckpt").exists()
    out = tmp_path / "rows.parquet"
    run = subprocess.run(
        cli + ["sample", str(model), "--rows", "2500", "--out", str(out), "--seed", "4", "-q"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    rows = pd.read_parquet(out)
    assert len(rows) == 2500 and list(rows.columns) == list(tiny_table(5).columns)
    bad = subprocess.run(
        cli + ["sample", str(tmp_path), "--rows", "5", "--out", str(tmp_path / "x.parquet")],
        capture_output=True,
        text=True,
    )
    assert (
        bad.returncode == 2
        and bad.stderr.startswith("error: ")
        and not (tmp_path / "x.parquet").exists()
    )


def test_marginal_calibration_maps_draws_to_normal_scores_and_keeps_their_order():
    from scipy import stats

    from synthgen.models.calibration import MarginalCalibration

    calibration = MarginalCalibration(2)
    values = torch.tensor([[-7.0, -1.0, 0.0, 2.5, 9.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    assert torch.allclose(
        calibration(values), values
    )  # the identity until fitted, beyond the knots too
    rng = np.random.default_rng(0)
    narrow = torch.from_numpy(
        0.4 * rng.standard_normal(20_000) + 1.0
    ).float()  # too narrow and shifted
    skewed = torch.from_numpy(rng.gamma(2.0, size=20_000)).float()
    used = torch.ones(2, 20_000, dtype=torch.bool)
    used[1, 500:] = False
    assert (
        calibration.fit(torch.stack([narrow, skewed]), used) == 1
    )  # too few draws of the second: left as it was
    fresh = torch.from_numpy(0.4 * rng.standard_normal(20_000) + 1.0).float()
    mapped = calibration(torch.stack([fresh, fresh]))
    assert stats.kstest(mapped[0].numpy(), "norm").statistic < 0.02  # now standard normal
    assert torch.allclose(mapped[1], fresh, atol=1e-6)
    assert (mapped[0][fresh.argsort()].diff() >= 0).all()  # every draw keeps its rank
    lowest, highest = narrow.min(), narrow.max()
    outside = calibration(torch.tensor([[lowest - 1.0, highest + 2.0], [0.0, 0.0]]))[0]
    edges = calibration(torch.tensor([[lowest, highest], [0.0, 0.0]]))[0]
    assert torch.allclose(
        outside - edges, torch.tensor([-1.0, 2.0]), atol=1e-5
    )  # shifted, not stretched


def test_class_calibration_draws_each_class_at_its_training_share():
    from synthgen.models.calibration import MarginalCalibration, calibrate_classes, class_shares
    from synthgen.models.likelihood import ColumnLikelihood

    tt, x = encoded(tiny_table(3000))
    likelihood = ColumnLikelihood(tt.layout)
    likelihood.calibration = MarginalCalibration(len(tt.layout.continuous), likelihood.n_logits)
    target = class_shares(likelihood, x)
    for block in tt.layout.discrete:  # every block's shares sum to one
        assert (
            abs(float(target[block.out_start : block.out_start + block.n_classes].sum()) - 1) < 1e-5
        )
    gen = torch.Generator().manual_seed(0)
    n = 40_000
    # logits that vary by row and favour the first class of every block: the model's shares are off
    out_t = torch.randn(likelihood.out_width, n, generator=gen)
    out_t[[b.out_start for b in tt.layout.discrete]] += 1.5
    noise = likelihood.draw_noise(n, gen)
    before = likelihood.sample(
        out_t, noise
    )  # identity until fitted: as an uncalibrated likelihood draws
    assert torch.allclose(before, ColumnLikelihood(tt.layout).sample(out_t, noise), atol=1e-5)
    gap = calibrate_classes(likelihood, out_t[: likelihood.n_logits], target)
    assert gap < 1e-3
    after = likelihood.sample(out_t, noise)
    off_before, off_after = (
        (class_shares(likelihood, m.T) - target).abs().max() for m in (before, after)
    )
    assert off_before > 0.1 and off_after < 0.015, (off_before, off_after)


def test_expected_shares_are_the_mean_softmax_with_temperature_and_shift():
    """What the class-share fit reads: per block, the rows' mean of softmax(logits / T + shift)."""
    from synthgen.models.calibration import expected_shares
    from synthgen.models.likelihood import ColumnLikelihood

    tt, _ = encoded(tiny_table(300))
    likelihood = ColumnLikelihood(tt.layout, temperature=0.7)
    gen = torch.Generator().manual_seed(0)
    logits_t = 2 * torch.randn(likelihood.n_logits, 5000, generator=gen)
    shift = torch.randn(likelihood.n_logits, generator=gen)
    got = expected_shares(likelihood, logits_t, chunk=700, shift=shift)  # chunks and groups agree
    for b in tt.layout.discrete:
        rows = slice(b.out_start, b.out_start + b.n_classes)
        want = torch.softmax(logits_t[rows] / 0.7 + shift[rows, None], dim=0).mean(1)
        assert torch.allclose(got[rows], want, atol=1e-5), b.column


def test_calibration_draws_scale_with_the_table(monkeypatch):
    """16 drawn rows per training row, from 16,384 to 65,536; a wide layout gets fewer."""
    from synthgen import plan

    tt, _ = encoded(tiny_table(300))

    def rows(n: int) -> int:
        settings = dict(hidden=[64], latent_dim=4, batch_size=500, variational=True)
        return plan.plan_fit(tt.layout, n, 8, **settings).calibration_rows

    assert {n: rows(n) for n in (300, 2_000, 10_000)} == {
        300: 16_384,
        2_000: 32_000,
        10_000: 65_536,
    }
    monkeypatch.setattr(plan, "CALIBRATION_BUDGET", 1 << 20)  # holds fewer than the table asks for
    assert plan.MIN_CALIBRATION_ROWS <= rows(10_000) < 16_384


def test_calibrated_marginals_match_the_training_column_with_the_model_s_ranks(tmp_path):
    from scipy import stats

    df = tiny_table(2000)
    settings = dict(
        epochs=5, hidden=[32], latent_dim=4, seed=0
    )  # undertrained: its marginals are off
    plain = Synthesizer("vae", calibrate_marginals=False, **settings).fit(df, progress=False)
    calibrated = Synthesizer("vae", **settings).fit(df, progress=False)  # calibrated by default
    a, b = plain.sample(20_000, seed=1), calibrated.sample(20_000, seed=1)
    for col in ("x", "y"):
        ks_plain, ks_calibrated = (stats.ks_2samp(df[col], s[col]).statistic for s in (a, b))
        assert ks_calibrated < 0.5 * ks_plain and ks_calibrated < 0.05, (
            col,
            ks_plain,
            ks_calibrated,
        )
        # the same weights and draws: the calibration only moved values along the column,
        # keeping their order
        assert stats.spearmanr(a[col], b[col]).statistic > 0.999
    shares = [
        s["color"].value_counts(normalize=True).reindex(df["color"].unique(), fill_value=0)
        for s in (df, a, b)
    ]
    tv_plain, tv_calibrated = (0.5 * (shares[0] - s).abs().sum() for s in shares[1:])
    assert tv_calibrated < 0.5 * tv_plain and tv_calibrated < 0.02, (tv_plain, tv_calibrated)
    loaded = Synthesizer.load(calibrated.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.sample(500, seed=2), calibrated.sample(500, seed=2))


def test_a_model_saved_before_categories_were_calibrated_loads_with_its_categories_as_drawn(
    tmp_path,
):
    from safetensors.torch import load_file, save_file

    from synthgen.io import source_fingerprint

    synth = Synthesizer("vae", epochs=3, hidden=[16], latent_dim=4, seed=0).fit(
        tiny_table(), progress=False
    )
    assert (
        synth.net.likelihood.calibration.logit_shift.abs().max() > 0.01
    )  # three epochs leave the shares off
    path = synth.save(tmp_path / "m")
    weights = load_file(str(path / "model.safetensors"))
    del weights["likelihood.calibration.logit_shift"]  # as stop-16 code saved it
    save_file(weights, str(path / "model.safetensors"))
    manifest = json.loads((path / "synthgen.json").read_text())
    manifest["weights_sha256"] = source_fingerprint(path / "model.safetensors")
    (path / "synthgen.json").write_text(json.dumps(manifest))
    old = Synthesizer.load(path)
    assert not old.net.likelihood.calibration.logit_shift.any()
    synth.net.likelihood.calibration.logit_shift.zero_()
    pd.testing.assert_frame_equal(old.sample(300, seed=1), synth.sample(300, seed=1))
    del weights["decoder.net.0.weight"]
    save_file(weights, str(path / "model.safetensors"))  # any other tensor missing is still refused
    manifest["weights_sha256"] = source_fingerprint(path / "model.safetensors")
    (path / "synthgen.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="cannot load weights"):
        Synthesizer.load(path)
