"""DP mode: the budget adds up, the accountant stops training within it, and nothing a few rows
hold reaches the encoders, the schema or the saved model."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from synthgen import Synthesizer
from synthgen.config import DP_HIDDEN, DP_LR, ModelSettings, load_run_config, run_overrides
from synthgen.dp import (
    Budget,
    gaussian_noise_scale,
    private_gaussian,
    private_stand_in,
    split_budget,
)
from synthgen.schema import infer_schema
from synthgen.train import _steps_within

SECRET_SALARY = 9_876_543.21
SECRET_CITY = "Secretville"


def table(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "salary": np.round(rng.lognormal(10.5, 0.3, rows), 2),
            "age": rng.integers(20, 65, rows),
            "joined": pd.Timestamp("2015-01-01")
            + pd.to_timedelta(rng.integers(0, 3000, rows), unit="D"),
            "city": rng.choice(["Paris", "Lyon", "Nice"], rows, p=[0.5, 0.3, 0.2]),
            "member": rng.random(rows) < 0.3,
        }
    )
    df.loc[7, "salary"] = SECRET_SALARY  # one person's values
    df.loc[11, "city"] = SECRET_CITY
    return df


def test_the_parts_of_the_budget_add_up_to_the_whole():
    for fitted in (False, True):
        parts = split_budget(3.0, 1e-5, fitted_prior=fitted)
        assert math.isclose(sum(p.epsilon for p in parts.values()), 3.0)
        assert math.isclose(sum(p.delta for p in parts.values()), 1e-5)
        assert ("prior" in parts) == fitted


def test_the_gaussian_mechanism_noise_is_the_least_that_meets_delta():
    from scipy.special import ndtr

    def delta(sigma, eps, sens=1.0):  # Balle and Wang 2018, theorem 8
        a, b = sens / (2 * sigma), eps * sigma / sens
        return ndtr(a - b) - math.exp(eps) * ndtr(-a - b)

    for eps in (0.1, 1.0, 8.0):
        sigma = gaussian_noise_scale(eps, 1e-5, 1.0)
        assert delta(sigma, eps) <= 1e-5 < delta(0.99 * sigma, eps)
    # the classic bound, valid for epsilon < 1, is looser
    assert gaussian_noise_scale(0.5, 1e-5, 1.0) < math.sqrt(2 * math.log(1.25 / 1e-5)) / 0.5


def test_the_stand_in_holds_no_value_one_row_has_and_keeps_the_marginals():
    df = table(20_000)
    schema = infer_schema(df)
    stand_in, restated, account = private_stand_in(df, schema, Budget(2.0, 1e-6), seed=0)
    assert len(stand_in) == len(df) and list(stand_in.columns) == list(df.columns)
    assert SECRET_SALARY not in set(stand_in["salary"]) and SECRET_CITY not in set(stand_in["city"])
    # the schema's ranges come from the stand-in, not the rows
    assert restated["salary"].max < 1_000_000 and restated["salary"].max == stand_in["salary"].max()
    assert restated["joined"].max == stand_in["joined"].max().timestamp()
    assert stand_in["joined"].dt.normalize().eq(stand_in["joined"]).all()  # whole days, as the data
    assert stand_in["age"].between(20, 64).mean() > 0.99
    assert abs(stand_in["age"].mean() - df["age"].mean()) < 1.0
    shares = stand_in["city"].value_counts(normalize=True)
    assert abs(shares["Paris"] - 0.5) < 0.02 and abs(shares["Nice"] - 0.2) < 0.02
    assert stand_in["member"].dtype == bool and abs(stand_in["member"].mean() - 0.3) < 0.02
    assert account["salary"]["delta"] == 0.0 and account["city"]["delta"] > 0.0
    assert math.isclose(sum(a["epsilon"] for a in account.values()), 2.0)


def test_a_category_one_row_holds_is_released_at_most_with_probability_delta():
    # 200 tables, each with a category only one row has: never released at delta 1e-6 (the chance
    # of any release over 200 tries is under 2e-4)
    df = pd.DataFrame({"c": ["common"] * 500 + ["rare"], "x": np.arange(501.0)})
    schema = infer_schema(df)
    for seed in range(200):
        stand_in, _, _ = private_stand_in(df, schema, Budget(2.0, 2e-6), seed=seed)
        assert "rare" not in set(stand_in["c"])


def test_the_accountant_stops_training_at_the_budget():
    from opacus.accountants import RDPAccountant

    spend = Budget(1.0, 1e-5)
    steps = _steps_within(spend, sample_rate=0.05, noise=2.0, planned=10_000)
    assert 0 < steps < 10_000

    def epsilon(n):
        accountant = RDPAccountant()
        accountant.history = [(2.0, 0.05, n)]
        return accountant.get_epsilon(1e-5)

    assert epsilon(steps) <= 1.0 < epsilon(steps + 1)


def test_a_private_gaussian_is_close_on_many_rows_and_clips_an_outlier():
    rng = np.random.default_rng(0)
    codes = rng.normal([1.0, -2.0], [1.0, 0.5], size=(50_000, 2))
    codes[0] = [1e6, 1e6]  # one row far away moves the estimate by at most the clip radius / n
    mean, cov, note = private_gaussian(codes, Budget(1.0, 1e-6), seed=0)
    assert np.allclose(mean, [1.0, -2.0], atol=0.05)
    assert np.allclose(np.diag(cov), [1.0, 0.25], atol=0.1)
    assert note["clip_radius"] <= 16
    # a few thousand rows: the noise over the empty bins of the norms' histogram must not carry
    # the radius far out
    small = rng.normal(0.0, 1.0, size=(5_000, 16))
    assert private_gaussian(small, Budget(0.15, 5e-7), seed=0)[2]["clip_radius"] <= 16


@pytest.fixture(scope="module")
def dp_model(tmp_path_factory):
    synth = Synthesizer("vae", epsilon=3.0, epochs=2, latent_dim=4, seed=0).fit(table())
    path = synth.save(tmp_path_factory.mktemp("dp") / "model")
    return synth, path


def test_dp_mode_trains_within_its_budget_and_says_so(dp_model):
    synth, path = dp_model
    account = synth.info["privacy"]
    assert account["epsilon"] == 3.0 and account["delta"] == 1e-5
    assert account["epsilon_spent"] <= 3.0 + 1e-9 and account["delta_spent"] <= 1e-5 + 1e-15
    assert "RDP" in account["accountant"]
    assert synth.training.privacy["steps"] > 0 and synth.training.val_rows == 0
    assert synth.settings.hidden == list(DP_HIDDEN) and synth.settings.lr == DP_LR
    manifest = (path / "synthgen.json").read_text()
    saved = json.loads(manifest)
    assert saved["settings"]["epsilon"] == 3.0
    assert saved["info"]["privacy"]["epsilon_spent"] == account["epsilon_spent"]
    assert saved["training"]["privacy"]["accountant"] == "RDP"
    # nothing one row holds is in the saved model
    assert SECRET_CITY not in manifest and "9876543" not in manifest
    rows = Synthesizer.load(path).sample(20_000, seed=1)
    assert not rows["city"].eq(SECRET_CITY).any() and rows["salary"].max() < 1_000_000


def test_the_ae_pays_for_its_fitted_prior():
    synth = Synthesizer("ae", epsilon=2.0, epochs=1, latent_dim=3, seed=0).fit(table(1500))
    parts = synth.info["privacy"]["parts"]
    assert set(parts) == {"marginals", "prior", "training"}
    assert synth.info["privacy"]["epsilon_spent"] <= 2.0 + 1e-9
    assert len(synth.sample(100, seed=0)) == 100


def test_dp_mode_is_a_run_setting_and_a_command_line_option():
    cfg = load_run_config(None, input="x.csv", privacy={"epsilon": 3, "delta": 1e-6})
    assert cfg.model_settings("vae").epsilon == 3 and cfg.model_settings("ae").delta == 1e-6
    cfg = load_run_config(None, **run_overrides(input="x.csv", epsilon=1.5))
    assert cfg.model_settings("vae").epsilon == 1.5
    assert ModelSettings().epsilon is None  # off by default
    assert ModelSettings(epsilon=1, hidden=[64]).hidden == [64]  # a given width is kept


def test_the_report_states_the_budget_or_that_there_is_no_guarantee(dp_model):
    from synthgen.report import NO_GUARANTEE, dp_rows, guarantee

    synth, _ = dp_model
    account = synth.info["privacy"]
    models = {
        "vae": {"training": {"differential_privacy": account}},
        "vae-fitted": {"variant_of": "vae"},
    }
    text = guarantee(models)
    assert f"epsilon {account['epsilon_spent']:.3g} of 3" in text and "RDP" in text
    assert "Public, not paid for" in text and "no formal guarantee" not in text
    assert [r[1] for r in dp_rows(models)] == ["marginals", "training", "total"]
    assert guarantee({"vae": {"training": {}}}) == NO_GUARANTEE
