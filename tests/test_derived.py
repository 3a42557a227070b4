"""Derived columns: a number that follows from others is learned as its residual and written back
from them (synthgen.encoders.derived)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from synthgen import Synthesizer, UserError
from synthgen.schema import infer_schema
from synthgen.transform import TableTransformer

SETTINGS = {"epochs": 40, "hidden": [64, 64], "latent_dim": 8, "seed": 0}


def price_list(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A monthly charge priced per service (plus noise), a total of tenure x monthly charge, and
    columns that follow from nothing."""
    rng = np.random.default_rng(seed)
    internet = rng.choice(["none", "dsl", "fiber"], n, p=[0.2, 0.4, 0.4])
    tv = rng.choice(["yes", "no"], n)
    price = {"none": 0.0, "dsl": 25.0, "fiber": 50.0}
    monthly = 20 + np.vectorize(price.get)(internet) + 10.0 * (tv == "yes") + rng.normal(0, 1, n)
    tenure = rng.integers(1, 73, n)
    return pd.DataFrame(
        {
            "internet": internet,
            "tv": tv,
            "region": rng.choice(list("abcd"), n),
            "tenure": tenure,
            "monthly": np.round(monthly, 2),
            "total": np.round(tenure * monthly * np.exp(rng.normal(0, 0.02, n)), 2),
            "age": rng.integers(18, 90, n),
            "income": np.round(rng.lognormal(10, 0.5, n), 2),
        }
    )


def gap(rows: pd.DataFrame) -> float:
    """How far rows are from total = tenure x monthly: the median |log ratio|."""
    ratio = rows["total"] / (rows["tenure"] * rows["monthly"])
    return float(np.median(np.abs(np.log(ratio))))


@pytest.fixture(scope="module")
def models():
    df = price_list()
    return df, {
        on: Synthesizer("vae", derived_columns=on, **SETTINGS).fit(df, progress=False)
        for on in (True, False)
    }


def test_the_search_finds_the_price_list_and_the_product_and_nothing_else():
    df = price_list()
    tt = TableTransformer(derive=True, rare_threshold=0).fit(df, infer_schema(df))
    assert tt.derived == ["monthly", "total"]  # a sum decodes before the product it is part of
    monthly, total = (tt.encoders[c].relation for c in tt.derived)
    assert monthly.kind == "sum" and monthly.classes == ["internet", "tv"]  # region: no amount
    assert total.kind == "product" and sorted(total.parents) == ["monthly", "tenure"]
    np.testing.assert_allclose(total.coefficients, [1.0, 1.0], atol=0.02)
    assert "monthly" in tt.relations()[1] and "tenure" in tt.relations()[1]
    # written back from the parents and the residual, close to the values encoded
    back = tt.inverse_transform(tt.transform(df))
    assert np.abs(back["monthly"] - df["monthly"]).max() < 0.05
    assert np.abs(np.log(back["total"] / df["total"])).max() < 0.01
    assert back["total"].dtype == np.float64 and back["tenure"].dtype == np.int64
    # saved as JSON and loaded: the same matrix
    state = json.loads(json.dumps(tt.state()))
    np.testing.assert_array_equal(
        TableTransformer.from_state(state).transform(df), tt.transform(df)
    )
    # a transformer saved before derived columns existed loads with none
    plain = TableTransformer().fit(df, infer_schema(df)).state()
    del plain["derived"]
    assert TableTransformer.from_state(plain).derived == []


def test_no_relation_among_independent_or_coded_columns():
    rng = np.random.default_rng(1)
    main = rng.integers(1, 11, 4000)
    df = pd.DataFrame(
        {
            "main_type": main.astype(str),  # a category...
            "sub_type": (main - 1) * 4 + rng.integers(1, 5, 4000),  # ...and its 40 coded subtypes
            "a": rng.lognormal(0, 1, 4000),
            "b": rng.lognormal(0, 1, 4000),
            "c": rng.normal(100, 10, 4000),
        }
    )
    assert TableTransformer(derive=True).fit(df, infer_schema(df)).derived == []


def test_drawn_rows_keep_the_relation(models):
    df, synth = models
    on, off = (synth[k].sample(3000, seed=1) for k in (True, False))
    assert on["total"].notna().all() and on["monthly"].notna().all()
    assert gap(on) < 0.05 < gap(off) and 3 * gap(on) < gap(off)
    # the price list holds: the drawn monthly charge less its services' prices
    price = {"none": 0.0, "dsl": 25.0, "fiber": 50.0}
    rest = on["monthly"] - 20 - on["internet"].map(price) - 10.0 * (on["tv"] == "yes")
    assert np.abs(rest).median() < 2.0
    assert on["total"].between(df["total"].min(), df["total"].max()).all()


def test_values_a_relation_extrapolates_past_the_range_are_not_piled_on_its_end():
    """A table cut at a top value (a price list's cap): where the relation predicts more, the
    drawn value is reflected back into the range, not written as the end value."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1, 10, 8000), rng.uniform(1, 10, 8000)
    c = np.round(a * b * np.exp(rng.normal(0, 0.05, 8000)), 2)
    df = pd.DataFrame({"a": np.round(a, 2), "b": np.round(b, 2), "c": c})[c <= 60]
    synth = Synthesizer("vae", **SETTINGS).fit(df, progress=False)
    assert synth.transformer.derived == ["c"]
    enc = synth.transformer.encoders["c"]
    low, high = enc.own._kx[0], enc.own._kx[-1]
    out = enc._reflected(np.array([high / 2, high * 1.1, high * 100, np.nan, np.inf, low / 2]))
    np.testing.assert_allclose(out[:3], [high / 2, high / 1.1, high])
    assert np.isnan(out[3]) and np.isinf(out[4]) and np.isclose(out[5], low * 2)
    drawn = synth.sample(8000, seed=1)["c"]
    top = drawn.max()
    assert top <= df["c"].max() and (drawn == top).mean() < 0.005
    assert abs((drawn > 50).mean() - (df["c"] > 50).mean()) < 0.05


def test_a_saved_model_draws_the_same_rows(models, tmp_path):
    _, synth = models
    synth[True].save(tmp_path / "m")
    loaded = Synthesizer.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.sample(500, seed=3), synth[True].sample(500, seed=3))


def test_a_range_on_a_derived_column_holds_and_an_exact_value_is_refused(models):
    _, synth = models
    rows = synth[True].sample(500, seed=2, conditions={"total": (1000, 2000), "tv": "yes"})
    assert rows["total"].between(1000, 2000).all() and (rows["tv"] == "yes").all()
    assert rows["total"].std() > 50 and gap(rows) < 0.05
    with pytest.raises(UserError, match="follows from"):
        synth[True].sample(10, conditions={"total": 1500.0})
    with pytest.raises(UserError, match="one value"):
        synth[True].sample(10, conditions={"total": (1000, 2000), "tv": ["yes", "no"]})


def test_a_row_that_breaks_the_relation_scores_as_unusual(models):
    df, synth = models
    held = price_list(400, seed=5)
    broken = held.assign(total=np.round(held["total"] * 1.4, 2))
    nll = np.r_[synth[True].score(held)["nll:total"], synth[True].score(broken)["nll:total"]]
    assert roc_auc_score(np.r_[np.zeros(400), np.ones(400)], nll) > 0.95


def test_zeros_and_missing_parents_are_drawn_without_failing():
    df = price_list(2000, seed=2)
    df.loc[:19, "tenure"] = 0  # new customers: no total yet
    df.loc[:19, "total"] = np.nan
    df.loc[20:29, "monthly"] = np.nan  # a total the relation cannot give
    synth = Synthesizer("vae", **{**SETTINGS, "epochs": 10}).fit(df, progress=False)
    assert "total" in synth.transformer.derived
    rows = synth.sample(2000, seed=1)
    assert rows["total"].dtype == np.float64 and rows["total"].isna().mean() < 0.05
    assert np.isfinite(rows["total"].dropna()).all()


def test_dp_mode_derives_nothing():
    synth = Synthesizer("vae", epsilon=3.0, epochs=1, latent_dim=4, seed=0)
    assert synth.fit(price_list(1500), progress=False).transformer.derived == []


def test_a_product_takes_a_factor_per_class():
    rng = np.random.default_rng(3)
    size = np.round(rng.lognormal(0, 0.5, 4000), 2)  # coarser than value: value is derived
    grade = rng.choice(["A", "B", "C"], 4000)
    factor = pd.Series(grade).map({"A": 1.0, "B": 1.5, "C": 3.0}).to_numpy()
    value = 3 * size**1.5 * factor * np.exp(rng.normal(0, 0.03, 4000))
    df = pd.DataFrame({"grade": grade, "size": size, "value": np.round(value, 2)})
    tt = TableTransformer(derive=True).fit(df, infer_schema(df))
    (relation,) = (tt.encoders[c].relation for c in tt.derived)
    assert (relation.column, relation.parents, relation.classes) == ("value", ["size"], ["grade"])
    np.testing.assert_allclose(relation.coefficients, [1.5], atol=0.02)
    codes = tt.encoders["grade"].encode(pd.Series(["A", "B", "C"]))[:, 0].astype(int)
    amounts = np.asarray(relation.amounts[0])[codes]
    np.testing.assert_allclose(amounts[1:] - amounts[0], np.log([1.5, 3.0]), atol=0.02)
