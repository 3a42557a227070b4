"""Profiles: a group of columns that a key the table does not hold determines is drawn as one of
the combinations enough training rows hold, or column by column for the rest."""

import json

import numpy as np
import pandas as pd
import pytest

from synthgen import Synthesizer, UserError
from synthgen.encoders.profile import find_profiles
from synthgen.schema import infer_schema
from synthgen.transform import TableTransformer

AREA_COLUMNS = [f"area_{i}" for i in range(8)]


def table(n: int = 4000, areas: int = 400, seed: int = 0) -> pd.DataFrame:
    """Each row lives in one of `areas` areas (a few hold many rows, most a handful); eight
    columns (0-9) describe its area, four describe the row alone, one of them leaning on the
    area."""
    rng = np.random.default_rng(seed)
    profile = rng.integers(0, 10, (areas, len(AREA_COLUMNS)))
    weight = 1.0 / np.arange(1, areas + 1) ** 0.8
    area = rng.choice(areas, n, p=weight / weight.sum())
    df = pd.DataFrame(profile[area], columns=AREA_COLUMNS)
    df["policies"] = rng.poisson(1 + profile[area, 0] / 5)
    df["age"] = rng.integers(18, 90, n)
    df["segment"] = rng.choice(["a", "b", "c"], n).astype(object)
    df["income"] = np.exp(rng.normal(10, 0.5, n)).round(0)
    return df


def held(df: pd.DataFrame) -> pd.Series:
    """How many rows hold each combination of the area columns."""
    return df[AREA_COLUMNS].value_counts()


def test_finds_the_group_and_nothing_in_independent_columns():
    df = table()
    tt = TableTransformer().fit(df, infer_schema(df))
    profiles = find_profiles(df, tt.schema, tt.encoders, 5)
    assert len(profiles) == 1 and sorted(profiles[0].columns) == AREA_COLUMNS
    counts = held(df)
    assert len(profiles[0].values) == (counts >= 5).sum()
    assert profiles[0].rows == counts[counts >= 5].sum()
    rng = np.random.default_rng(1)  # the same columns drawn independently: no hidden key
    shuffled = df.apply(lambda s: s.sample(frac=1, random_state=rng).to_numpy())
    assert find_profiles(shuffled, tt.schema, tt.encoders, 5) == []
    two = df[["area_0", "area_1", "policies", "age"]]  # too few columns to tell a key
    assert find_profiles(two, infer_schema(two), tt.encoders, 5) == []


def test_round_trips_and_adds_one_class_per_kept_combination():
    df = table()
    tt = TableTransformer(profiles=True).fit(df, infer_schema(df))
    assert list(tt.profiles) == ["(profile of area_0 and 7 more)"]
    enc = tt.profiles["(profile of area_0 and 7 more)"]
    block = [b for b in tt.layout.discrete if b.role == "profile"]
    assert len(block) == 1 and block[0].n_classes == len(enc.profile.values) + 1
    assert tt.layout.onehot_width == tt.layout.out_width - block[0].n_classes  # not an input
    matrix = tt.transform(df)
    classes = matrix[:, block[0].input_col].astype(int)
    counts = held(df)
    kept = df[AREA_COLUMNS].apply(tuple, axis=1).map(counts).to_numpy() >= 5
    assert ((classes < enc.none) == kept).all()  # rarer combinations: the last class
    back = tt.inverse_transform(matrix)
    pd.testing.assert_frame_equal(back[AREA_COLUMNS], df[AREA_COLUMNS])
    plain = TableTransformer().fit(df, tt.schema)  # the rest as without profiles
    pd.testing.assert_frame_equal(back, plain.inverse_transform(plain.transform(df)))
    loaded = TableTransformer.from_state(json.loads(json.dumps(tt.state())))
    pd.testing.assert_frame_equal(loaded.inverse_transform(matrix), back)


def test_missing_values_and_text_find_their_profiles():
    """Text with NaN for missing (as read_csv gives), nullable integers with NA: a row is classed
    by its combination whatever form its missing values take."""
    df = table()
    for name in AREA_COLUMNS[:4]:
        df[name] = df[name].map(lambda v: np.nan if v == 0 else f"level {v}").astype(object)
    df["area_4"] = df["area_4"].astype("Int64").mask(df["area_4"] == 0)
    tt = TableTransformer(profiles=True).fit(df, infer_schema(df))
    (enc,) = tt.profiles.values()
    assert sorted(enc.profile.columns) == AREA_COLUMNS
    classes = tt.transform(df)[:, tt.layout.discrete[-1].input_col].astype(int)
    counts = df[AREA_COLUMNS].value_counts(dropna=False)
    kept = df[AREA_COLUMNS].apply(tuple, axis=1).map(counts).fillna(0).to_numpy() >= 5
    assert kept.mean() > 0.5 and ((classes < enc.none) == kept).all()
    back = tt.inverse_transform(tt.transform(df))
    pd.testing.assert_frame_equal(back[AREA_COLUMNS], df[AREA_COLUMNS])


def test_drawn_rows_copy_only_kept_combinations_at_their_training_share(tmp_path):
    df = table()
    settings = dict(epochs=40, hidden=[64, 64], latent_dim=8, seed=0)
    synth = Synthesizer("vae", **settings).fit(df, progress=False)
    assert len(synth.transformer.profiles) == 1
    rows = synth.sample(8000, seed=1)
    counts = held(df)
    drawn = rows[AREA_COLUMNS].apply(tuple, axis=1).map(counts).fillna(0).to_numpy()
    assert not ((drawn > 0) & (drawn < 5)).any()  # a rarer combination is never copied
    share = counts[counts >= 5].sum() / len(df)
    assert abs((drawn >= 5).mean() - share) < 0.05  # about as often as the training rows
    # a drawn profile keeps its columns together; column by column, rows almost never would
    assert (drawn >= 5).mean() > 0.5
    scores = synth.score(df.head(200))  # a profile's class is not a column of the scores
    assert set(scores["most_unusual"]) <= set(df.columns)
    assert not [c for c in scores.columns if "profile" in c]
    synth.save(tmp_path / "m")
    again = Synthesizer.load(tmp_path / "m").sample(500, seed=3)
    pd.testing.assert_frame_equal(again, synth.sample(500, seed=3))
    plain = Synthesizer("vae", **settings, profile_columns=False).fit(df, progress=False)
    assert plain.transformer.profiles == {}
    by_column = plain.sample(8000, seed=1)[AREA_COLUMNS].apply(tuple, axis=1).map(counts)
    assert (by_column.fillna(0) >= 5).mean() < (drawn >= 5).mean() - 0.2


def test_conditions_on_a_profile_column_hold_on_every_row():
    df = table()
    synth = Synthesizer("vae", epochs=20, hidden=[64, 64], latent_dim=8, seed=0).fit(
        df, progress=False
    )
    wanted = {"area_3": 7, "area_5": [1, 2, 3]}
    rows = synth.sample(400, seed=2, conditions=wanted)
    assert (rows["area_3"] == 7).all() and rows["area_5"].isin([1, 2, 3]).all()
    assert synth.meets(rows, wanted).all()
    counts = held(df)
    drawn = rows[AREA_COLUMNS].apply(tuple, axis=1).map(counts).fillna(0).to_numpy()
    assert not ((drawn > 0) & (drawn < 5)).any()
    # as many of the rows draw a profile as of the training rows that meet the conditions
    meet = (df["area_3"] == 7) & df["area_5"].isin([1, 2, 3])
    share = (df[meet][AREA_COLUMNS].apply(tuple, axis=1).map(counts) >= 5).mean()
    assert abs((drawn >= 5).mean() - share) < 0.1
    ranged = synth.sample(800, seed=3, conditions={"area_2": (6, 9)})  # a range: the same
    assert ranged["area_2"].between(6, 9).all()
    drawn = ranged[AREA_COLUMNS].apply(tuple, axis=1).map(counts).fillna(0).to_numpy()
    share = (df[df["area_2"] >= 6][AREA_COLUMNS].apply(tuple, axis=1).map(counts) >= 5).mean()
    assert not ((drawn > 0) & (drawn < 5)).any() and abs((drawn >= 5).mean() - share) < 0.06
    with pytest.raises(UserError, match="range"):
        synth.sample(10, conditions={"segment": "a", "area_1": ()})
