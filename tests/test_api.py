"""The public API's convention: Synthesizer(model, **settings) or a ModelSettings, every setting
documented in the class's docstring, and fit = preprocess + fit_processed_data."""

import pandas as pd
import pytest

from synthgen import Synthesizer, UserError
from synthgen.config import ModelSettings

FAST = {"epochs": 2, "hidden": [16], "latent_dim": 4}


def test_every_setting_is_documented_with_its_default():
    doc = Synthesizer.__doc__
    for name, field in ModelSettings.model_fields.items():
        assert f"    {name} = " in doc and field.description, name


def test_settings_as_keywords_or_as_one_object(demo_df):
    as_object = Synthesizer("ae", ModelSettings(**FAST, beta=0.5))
    as_keywords = Synthesizer("ae", **FAST, beta=0.5)
    assert as_object.settings == as_keywords.settings and as_object.settings.model == "ae"
    assert Synthesizer("vae", ModelSettings(**FAST), epochs=3).settings.epochs == 3  # keywords win
    with pytest.raises(UserError, match="betta: unknown setting"):
        Synthesizer("vae", betta=1)


def test_fit_is_preprocess_then_fit_processed_data(demo_df):
    table = demo_df.sample(n=400, random_state=0).reset_index(drop=True)
    whole = Synthesizer("vae", **FAST).fit(table)
    parts = Synthesizer("vae", **FAST)
    matrix = parts.preprocess(table)
    assert matrix.shape == (400, parts.transformer.layout.n_inputs)
    parts.fit_processed_data(matrix)
    pd.testing.assert_frame_equal(whole.sample(300, seed=2), parts.sample(300, seed=2))
    assert whole.info["fingerprint"] == parts.info["fingerprint"] and "plan" in parts.info
    with pytest.raises(UserError, match="preprocess a table first"):
        Synthesizer("vae").fit_processed_data(matrix)
