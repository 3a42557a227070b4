"""The learned prior (prior="learned"): a flow-matching model of the training codes, and decoding at
a lower temperature."""

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen import Synthesizer, UserError
from synthgen.models.nets import LatentFlow


def two_clusters(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Two groups whose numbers sit far apart: a bimodal table a single Gaussian in z blurs."""
    rng = np.random.default_rng(seed)
    group = rng.random(n) < 0.5
    return pd.DataFrame(
        {
            "group": np.where(group, "a", "b"),
            "x": np.where(group, 5.0, -5.0) + rng.normal(scale=0.3, size=n),
            "y": np.where(group, -3.0, 3.0) + rng.normal(scale=0.3, size=n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )


# a small network trained long enough on a small table, and its learned prior
SMALL = dict(
    prior="learned",
    epochs=150,
    batch_size=128,
    latent_dim=4,
    hidden=[64, 64],
    # the widths these margins were set with (one layer: the AE's 0.843 against 0.817)
    encoder_hidden=[64, 64],
    prior_hidden=[64, 64],
    prior_epochs=150,
    # x and y are a sum of an amount per group: derived columns would keep every row's group and
    # numbers in agreement whatever z is, and the priors could not be told apart
    derived_columns=False,
    seed=0,
)


@pytest.fixture(scope="module")
def learned():
    df = two_clusters()
    synth = Synthesizer("vae", beta=0.05, prior_steps=8, **SMALL).fit(df, progress=False)
    return df, synth


def test_transport_is_the_midpoint_integration_of_the_velocity_field():
    """The fast transposed integration (clock folded into the first layer's bias, chunked) gives
    what a plain midpoint loop over `forward` gives."""
    torch.manual_seed(0)
    flow = LatentFlow(3, [16, 16], steps=5)
    with torch.no_grad():
        flow.mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        flow.scale.copy_(torch.tensor([2.0, 0.5, 1.0]))
    e = torch.randn(5000, 3)
    z, h = e.clone(), 1.0 / flow.steps
    with torch.no_grad():
        for k in range(flow.steps):
            t = torch.full((len(z),), k * h)
            half = z + h / 2 * flow(z, t)
            z = z + h * flow(half, t + h / 2)
    expected = z * flow.scale + flow.mean
    assert torch.allclose(flow.transport(e), expected, atol=1e-5)


def agreement(rows: pd.DataFrame) -> float:
    """How often a row's group and the sign of its x agree (always, in the real table)."""
    return float(((rows["group"] == "a") == (rows["x"] > 0)).mean())


def test_learned_prior_draws_the_codes_distribution(learned):
    """Its draws of z match the moments of the training codes' aggregate posterior; decoded rows
    keep the clusters apart and keep group and x together more often than z from N(0, I) does."""
    df, synth = learned
    assert synth.training.prior_fit["steps"] > 0 and synth.net.prior.flow is not None
    x = torch.from_numpy(synth.transformer.transform(df))
    mu, var = synth.net.codes(x)
    z = synth.net.prior.sample(20_000, torch.Generator().manual_seed(1))
    spread = (mu.var(0) + var.mean(0)).sqrt()
    assert ((z.mean(0) - mu.mean(0)).abs() < 0.25 * spread + 0.05).all()
    assert ((z.std(0) / spread - 1).abs() < 0.3).all()
    rows = synth.sample(4000, seed=2)
    assert rows["x"].between(-3, 3).mean() < 0.05  # the gap between the clusters stays empty
    standard = synth.sample(4000, seed=2, prior="standard")
    assert agreement(rows) > 0.8 and agreement(rows) > agreement(standard) + 0.03


def test_learned_prior_saves_loads_conditions_and_refusals(learned, tmp_path):
    df, synth = learned
    synth.save(tmp_path / "m")
    loaded = Synthesizer.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.sample(300, seed=4), synth.sample(300, seed=4))
    rows = loaded.sample(400, seed=5, conditions={"group": "a"})
    assert (rows["group"] == "a").all() and (rows["x"] > 0).mean() > 0.75  # half, unconditioned
    # the model's standard prior can still be asked for; a model without a flow refuses "learned"
    assert len(synth.sample(10, seed=1, prior="standard")) == 10
    plain = Synthesizer("vae", epochs=2, latent_dim=4, hidden=[16]).fit(df, progress=False)
    with pytest.raises(UserError, match="no learned prior"):
        plain.sample(5, prior="learned")
    with pytest.raises(UserError, match="DP mode"):
        Synthesizer("vae", prior="learned", epsilon=3.0)


def test_ae_generates_from_a_learned_prior():
    """The seed's point: an AE cannot generate from N(0, I), but it can from a learned
    distribution of its codes."""
    df = two_clusters(500, seed=1)
    ae = Synthesizer("ae", **SMALL).fit(df, progress=False)
    rows = ae.sample(3000, seed=1)
    assert rows["x"].between(-3, 3).mean() < 0.05 and agreement(rows) > 0.7
    assert agreement(rows) > agreement(ae.sample(3000, seed=1, prior="fitted")) + 0.03


def test_temperature_narrows_the_draws_around_the_decoder_mode():
    """temperature < 1: categories nearer their most likely class, continuous noise scaled down;
    the marginal calibration still brings every class to its training share."""
    df = two_clusters(600, seed=2)
    kw = dict(epochs=30, latent_dim=4, hidden=[64, 64], seed=0)
    cold = Synthesizer("vae", temperature=0.3, **kw).fit(df, progress=False)
    net = cold.net
    out = net.decoder(torch.randn(1000, 4))
    logits = out[:, : net.likelihood.n_logits].T
    assert torch.allclose(
        net.likelihood.decoding_logits(logits),
        logits / 0.3 + net.likelihood.calibration.logit_shift.unsqueeze(1),
        atol=1e-5,
    )
    shares = cold.sample(20_000, seed=1)["color"].value_counts(normalize=True)
    real = df["color"].value_counts(normalize=True)
    assert (shares - real).abs().max() < 0.03
