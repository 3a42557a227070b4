"""Value protection: no value that fewer than `rare_threshold` training rows hold at a column's
ends is ever written out, nor is any rare category; quantile knots are never one row's value."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dataset

from synthgen import Synthesizer
from synthgen.encoders.base import DecodeContext
from synthgen.encoders.numerical import PROTECTED_TAIL, NumericalEncoder
from synthgen.schema import infer_schema
from synthgen.transform import TableTransformer

K = 5  # the default rare_threshold


def planted_table(rows: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, dict[str, list]]:
    """Ordinary columns, each with a few unique outliers planted at both ends."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "salary": np.round(rng.lognormal(10.5, 0.4, rows), 2),
            "age": rng.integers(20, 65, rows),
            "score": rng.normal(size=rows),
            "joined": pd.Timestamp("2015-01-01")
            + pd.to_timedelta(rng.integers(0, 3000, rows), unit="D"),
            "team": rng.choice(["a", "b", "c"], rows),
        }
    )
    planted = {
        "salary": [2_300_000.55, 1_750_000.0, 990_000.25, 3.5, 7.25],
        "age": [97, 99, 101, 3, 5],
        "score": [9.87654321, -8.7654321, 7.5, -7.25, 11.0],
        "joined": [pd.Timestamp("1970-03-04"), pd.Timestamp("2031-12-25")],
    }
    for column, values in planted.items():
        where = rng.choice(rows, len(values), replace=False)
        df.loc[where, column] = values
    return df, planted


def test_planted_outliers_never_come_out_in_a_million_rows():
    df, planted = planted_table()
    synth = Synthesizer("vae", epochs=3, hidden=[32], latent_dim=4, seed=0).fit(df)
    out = synth.sample(1_000_000, seed=1)
    for column, values in planted.items():
        hits = out[column].isin(values)
        assert not hits.any(), f"{column}: {out[column][hits].unique()[:5]}"
    protection = synth.info["protection"]
    assert {"salary", "age", "score", "joined"} <= set(protection)
    assert protection["age"]["highest_written"] < 97 and protection["age"]["lowest_written"] > 5


@pytest.mark.parametrize("name", ["credit", "adult"])
def test_no_rare_value_at_a_columns_ends_is_decoded(name):
    # The bar of issue 22 on the decoder: 1M values drawn over the whole normal range (wider than
    # the model's draws) never equal a training value fewer than K rows hold among each numeric
    # column's 20 largest and 20 smallest.
    df = pd.read_parquet(shared_dataset(name))
    tt = TableTransformer(rare_threshold=K).fit(df, infer_schema(df, None))
    z = np.random.default_rng(0).normal(size=1_000_000) * 2.0
    checked = 0
    for column, enc in tt.encoders.items():
        if not isinstance(enc, NumericalEncoder) or not enc.has_continuous:
            continue
        counts = df[column].dropna().value_counts().sort_index()
        ends = pd.concat([counts.iloc[:PROTECTED_TAIL], counts.iloc[-PROTECTED_TAIL:]])
        protected = ends[ends < K].index.to_numpy(dtype=np.float64)
        block = np.zeros((len(z), enc.width), dtype=np.float32)
        if enc.has_mode_block:
            block[:, 0] = enc.continuous_code
        block[:, -1] = z
        ctx = DecodeContext(n_rows=len(z), rng=np.random.default_rng(0), exact=True)
        out = pd.to_numeric(pd.Series(enc.decode(block, ctx))).to_numpy(dtype=np.float64)
        assert not np.isin(out, protected).any(), column
        checked += len(protected) > 0
    assert checked >= 5


def test_knots_are_never_one_rows_value():
    # Each quantile knot is a value K rows hold or the mean of the K rows around its rank. (On an
    # integer column such a mean can land on a value one row holds: it is still K rows' mean.)
    df, _ = planted_table()
    tt = TableTransformer(rare_threshold=K).fit(df, infer_schema(df, None))
    for column in ("salary", "score"):
        enc = tt.encoders[column]
        held = df[column].value_counts().reindex(enc.knots_x).fillna(0).to_numpy()
        assert ((held == 0) | (held >= K)).all(), column
        assert len(enc.knots_x) > 100


def test_a_point_mass_needs_rare_threshold_rows_on_a_small_table():
    # 100 rows: 2% is 2 rows, fewer than K, so neither repeated value becomes a class of its own
    values = np.r_[np.full(2, 123.25), np.full(3, 77.5), np.linspace(0, 50, 95)]
    s = pd.Series(values, name="x")
    schema = infer_schema(s.to_frame(), None)
    enc = TableTransformer(rare_threshold=K).fit(s.to_frame(), schema).encoders["x"]
    assert enc.modes == []


def test_protection_is_off_with_rare_threshold_zero():
    df, planted = planted_table(rows=500)
    tt = TableTransformer(rare_threshold=0).fit(df, infer_schema(df, None))
    assert tt.protection_summary() == {}
    back = tt.inverse_transform(tt.transform(df))
    assert back["age"].isin(planted["age"]).sum() == len(planted["age"])


def population(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    return pd.DataFrame(
        {
            "x": x,
            "y": x * 2 + rng.normal(size=rows),
            "n": rng.integers(0, 1000, rows),
            "c": rng.choice(list("abcde"), rows),
        }
    )


def test_membership_inference_catches_copies_and_not_fresh_rows():
    from synthgen.evaluate import membership_inference, privacy_gate

    train, holdout = population(3000, 0), population(2000, 1)
    schema = infer_schema(train, None)
    copied = train.sample(3000, random_state=2, replace=True)  # a generator that memorized
    fresh = population(3000, 3)  # a generator that learned the population only
    leaky = membership_inference(train, copied, holdout, schema, seed=0)
    safe = membership_inference(train, fresh, holdout, schema, seed=0)
    assert leaky["auc"]["distance"] > 0.75 and leaky["auc"]["density"] > 0.75, leaky
    assert max(safe["auc"].values()) < 0.57, safe
    assert leaky["members"] == leaky["non_members"] == 1000  # half the holdout is the reference
    gate = privacy_gate({"membership_inference": leaky}, {"max_mia_auc": 0.6})
    assert gate["passed"] is False and gate["checks"][0]["value"] == leaky["max_auc"]
    tiny = membership_inference(train, fresh, holdout.head(30), schema)
    assert "skipped" in tiny


def test_the_attribute_attack_gains_on_copied_rows_and_not_on_fresh_ones():
    from synthgen.evaluate import evaluate

    rng = np.random.default_rng(0)
    n = 1200
    population = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.integers(0, 50, n),
            "c": rng.choice(list("xyz"), n),
            "disease": rng.choice(["no", "yes"], n, p=[0.7, 0.3]),  # independent of the rest
        }
    )
    train, holdout = population.iloc[:800], population.iloc[800:].reset_index(drop=True)
    copies = evaluate(train, train.copy(), holdout=holdout, sensitive="disease", detection=False)
    aia = copies["privacy"]["attribute_inference"]
    assert aia["accuracy_members"] > 0.9 and aia["advantage"] > 0.2
    fresh = population.sample(800, random_state=1).assign(
        disease=rng.choice(["no", "yes"], 800, p=[0.7, 0.3])
    )
    gate = {"max_attribute_advantage": 0.1}
    ok = evaluate(train, fresh, holdout=holdout, sensitive="disease", detection=False, gate=gate)
    assert abs(ok["privacy"]["attribute_inference"]["advantage"]) < 0.1
    assert ok["privacy_gate"]["passed"]
    bad = evaluate(
        train, train.copy(), holdout=holdout, sensitive="disease", detection=False, gate=gate
    )
    assert not bad["privacy_gate"]["passed"]
