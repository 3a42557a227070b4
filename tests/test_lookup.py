"""Lookup columns: a column that another determines on every training row is written from it."""

import json

import numpy as np
import pandas as pd
import pytest

from synthgen import Synthesizer, UserError
from synthgen.schema import infer_schema
from synthgen.transform import TableTransformer

LEVELS = ["Preschool", "HS-grad", "Some-college", "Bachelors", "Masters", "Doctorate"]


def table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """education <-> education_num (one to one), subtype -> main type (many to one), the rest
    noise; one rare subtype (3 rows) whose main type only those rows show."""
    rng = np.random.default_rng(seed)
    level = rng.choice(len(LEVELS), n, p=[0.05, 0.35, 0.25, 0.2, 0.1, 0.05])
    subtype = rng.integers(1, 31, n)
    subtype[:3] = 40
    income = np.exp(rng.normal(10 + 0.2 * level, 0.4)).round(0)
    return pd.DataFrame(
        {
            "education": np.asarray(LEVELS, dtype=object)[level],
            "education_num": level + 1,
            "subtype": subtype,
            "main_type": np.where(subtype == 40, 9, (subtype - 1) // 5),
            "income": income,
            "row_key": rng.permutation(n) * 7.5,  # nearly unique: determines every column
        }
    )


def test_finds_the_maps_keeps_the_category_drawn_and_round_trips():
    df = table()
    tt = TableTransformer(lookups=True).fit(df, infer_schema(df))
    assert tt.lookups == ["education_num", "main_type"]  # never from the nearly unique row_key
    enc = tt.encoders["main_type"]
    assert enc.parent == "subtype" and enc.width == 0
    assert 40 not in enc.lookup.keys  # held by 3 rows: not kept (one person's value)
    matrix = tt.transform(df)
    assert matrix.shape[1] == tt.layout.n_inputs
    assert {b.column for b in tt.layout.discrete} & {"education_num", "main_type"} == set()
    back = tt.inverse_transform(matrix)
    assert back["education_num"].equals(df["education_num"])
    kept = df["subtype"] != 40  # the rare subtype is written as a kept one (value protection)
    assert back["main_type"][kept].equals(df["main_type"][kept])
    assert (back["main_type"] == (back["subtype"] - 1) // 5).all()
    loaded = TableTransformer.from_state(json.loads(json.dumps(tt.state())))
    assert loaded.lookups == tt.lookups
    pd.testing.assert_frame_equal(loaded.inverse_transform(matrix), back)


def test_sampled_rows_never_break_a_map_and_conditions_go_through_it(tmp_path):
    df = table()
    settings = dict(epochs=30, hidden=[64, 64], latent_dim=8, seed=0)
    synth = Synthesizer("vae", **settings).fit(df, progress=False)
    assert synth.transformer.lookups == ["education_num", "main_type"]
    rows = synth.sample(4000, seed=1)
    level = pd.Series({v: i + 1 for i, v in enumerate(LEVELS)})
    assert (rows["education_num"].to_numpy() == level[rows["education"]].to_numpy()).all()
    kept = rows["subtype"] != 40
    assert (rows["main_type"][kept] == (rows["subtype"][kept] - 1) // 5).all()
    assert rows["education_num"].dtype == df["education_num"].dtype

    synth.save(tmp_path / "model")
    loaded = Synthesizer.load(tmp_path / "model")
    given = loaded.sample(300, seed=2, conditions={"education_num": 4})
    assert (given["education"] == "Bachelors").all() and (given["education_num"] == 4).all()
    ranged = loaded.sample(300, seed=2, conditions={"main_type": (4, 5)})
    assert ranged["main_type"].between(4, 5).all() and ranged["subtype"].between(21, 30).all()
    with pytest.raises(UserError, match="no training row has education_num=99"):
        loaded.sample(10, conditions={"education_num": 99})
    with pytest.raises(UserError, match="not both"):
        loaded.sample(10, conditions={"education_num": 4, "education": "Masters"})


def test_a_row_that_breaks_a_map_is_unusual_there():
    df = table()
    synth = Synthesizer("vae", epochs=20, hidden=[64, 64], latent_dim=8, seed=0).fit(
        df, progress=False
    )
    probe = df.iloc[3:8].copy()
    probe.iloc[0, probe.columns.get_loc("education_num")] = 6  # not what its education gives
    scores = synth.score(probe)
    assert scores["most_unusual"].iloc[0] == "education_num"
    assert scores["score"].iloc[0] > scores["score"].iloc[1:].max()
    assert (scores["nll:education_num"].iloc[1:] == 0).all()


def test_lookup_columns_off_models_every_column():
    df = table(1000)
    synth = Synthesizer("vae", epochs=2, lookup_columns=False).fit(df, progress=False)
    assert synth.transformer.lookups == []
    assert "education_num" in {b.column for b in synth.transformer.layout.discrete} | {
        s.column for s in synth.transformer.layout.continuous
    }
