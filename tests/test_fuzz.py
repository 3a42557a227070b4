"""Property-based fuzzing of the whole library path: generated tables of random column kinds,
missing values, infinities, unicode, 1-300 rows and 1-200 columns go through fit, sample, save/load
and evaluate. The only exception allowed out is UserError, and every sampled table has the input's
columns and dtypes.

Profiles (SYNTHGEN_FUZZ): "fast" (default, part of `make test`: seeded, 15 tables of at most 120
rows x 24 columns) and "long" (`SYNTHGEN_FUZZ=long pytest tests/test_fuzz.py`: 300 tables over the
full ranges, random seeds).
"""

import datetime as dt
import decimal
import json
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from synthgen import Synthesizer, UserError
from synthgen.evaluate import evaluate

pytestmark = pytest.mark.slow

PROFILE = os.environ.get("SYNTHGEN_FUZZ", "fast")
settings.register_profile(
    "fast",
    max_examples=15,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_ROWS, MAX_COLUMNS = (120, 24) if PROFILE == "fast" else (300, 200)

KINDS = [
    "float",
    "float_inf",
    "float_huge",
    "int",
    "int_limits",
    "nullable_int",
    "bool",
    "nullable_bool",
    "category",
    "unicode",
    "free_text",
    "category_dtype",
    "datetime",
    "datetime_tz",
    "date",
    "decimal",
    "nested",
    "empty",
    "constant",
    "mixed_objects",
    "date_text",
]
WORDS = [
    "α",
    "béta",
    "日本",
    "🙂 smile",
    "",
    " ",
    "a,b",
    'quo"te',
    "line\nbreak",
    "x" * 300,
    "NULL",
    "nan",
]


def column(kind: str, n: int, rng: np.random.Generator, missing: float) -> pd.Series:
    """n values of one kind, with about `missing` of them missing where the kind allows."""
    holes = rng.random(n) < missing
    if kind == "float":
        s = pd.Series(rng.normal(size=n) * 10.0 ** rng.integers(-3, 6))
    elif kind == "float_inf":
        x = rng.normal(size=n)
        x[rng.random(n) < 0.1] = np.inf
        x[rng.random(n) < 0.05] = -np.inf
        s = pd.Series(x)
    elif kind == "float_huge":
        s = pd.Series(rng.choice([1e308, -1e308, 1e-308, 0.0, 3.5], n))
    elif kind == "int":
        s = pd.Series(rng.integers(-50, 50, n))
    elif kind == "int_limits":
        top = np.iinfo(np.int64).max
        s = pd.Series(
            np.where(
                rng.random(n) < 0.5, top - rng.integers(0, 10, n), -top + rng.integers(0, 10, n)
            )
        )
    elif kind == "nullable_int":
        s = pd.Series(pd.array(rng.integers(0, 1000, n), dtype="Int64"))
        s[holes] = pd.NA
        return s
    elif kind == "bool":
        s = pd.Series(rng.random(n) < 0.3)
    elif kind == "nullable_bool":
        s = pd.Series(pd.array(rng.random(n) < 0.5, dtype="boolean"))
        s[holes] = pd.NA
        return s
    elif kind == "category":
        s = pd.Series(rng.choice(["red", "green", "blue", "grey"], n), dtype=object)
    elif kind == "unicode":
        s = pd.Series(rng.choice(WORDS, n), dtype=object)
    elif kind == "free_text":
        s = pd.Series(
            [f"note {rng.integers(1e9)} {rng.choice(WORDS)}" for _ in range(n)], dtype=object
        )
    elif kind == "category_dtype":
        s = pd.Series(
            pd.Categorical(
                rng.choice(["lo", "mid", "hi"], n), categories=["lo", "mid", "hi", "unused"]
            )
        )
    elif kind == "datetime":
        s = pd.Series(
            pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="min")
        )
    elif kind == "datetime_tz":
        s = pd.Series(
            pd.Timestamp("2020-01-01", tz="America/New_York")
            + pd.to_timedelta(rng.integers(0, 10**5, n), unit="h")
        )
    elif kind == "date":
        s = pd.Series(
            [dt.date(2000, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 9000, n)],
            dtype=object,
        )
    elif kind == "decimal":
        s = pd.Series(
            [decimal.Decimal(int(v)).scaleb(-2) for v in rng.integers(-(10**6), 10**6, n)],
            dtype=object,
        )
    elif kind == "nested":
        s = pd.Series(
            [[int(v), {"k": int(v)}] if v % 2 else {"a": [1, 2]} for v in rng.integers(0, 100, n)],
            dtype=object,
        )
    elif kind == "empty":
        return pd.Series([None] * n, dtype=object)
    elif kind == "constant":
        s = pd.Series(np.full(n, 7.25))
    elif kind == "mixed_objects":
        s = pd.Series([int(v) if v % 3 else f"v{v}" for v in rng.integers(0, 30, n)], dtype=object)
    elif kind == "date_text":
        s = pd.Series(
            (
                pd.Timestamp("2021-06-01") + pd.to_timedelta(rng.integers(0, 400, n), unit="D")
            ).strftime("%d/%m/%Y"),
            dtype=object,
        )
    else:
        raise AssertionError(kind)
    if missing and s.dtype != bool:
        s = s.astype(object).where(~holes, None) if s.dtype == object else s.mask(holes)
    return s


@st.composite
def tables(draw) -> pd.DataFrame:
    n_rows = draw(st.integers(1, MAX_ROWS))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=MAX_COLUMNS))
    missing = draw(st.sampled_from([0.0, 0.0, 0.05, 0.5, 0.97]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {f"{kind}_{j}": column(kind, n_rows, rng, missing) for j, kind in enumerate(kinds)}
    )


@settings(settings.get_profile(PROFILE))
@given(df=tables(), model=st.sampled_from(["vae", "ae"]))
def test_any_table_fits_samples_saves_loads_and_evaluates(tmp_path_factory, df, model):
    try:
        synth = Synthesizer(model, epochs=1, hidden=[16], latent_dim=2, seed=0).fit(df)
    except UserError as exc:
        event(f"fit refused: {str(exc).split(':')[-1].strip()[:40]}")
        return  # a clear refusal (too few rows, nothing to learn) is a deliberate answer
    out = synth.sample(37, seed=1)
    assert list(out.columns) == list(df.columns)
    assert [str(t) for t in out.dtypes] == [str(t) for t in df.dtypes], (df.dtypes, out.dtypes)
    folder = tmp_path_factory.mktemp("model")
    synth.save(folder / "m")
    again = Synthesizer.load(folder / "m").sample(37, seed=1)
    pd.testing.assert_frame_equal(out, again)
    # the same table read back through the model: codes, and scores that are numbers
    assert synth.embed(df).shape == (len(df), 2)
    scores = synth.score(df)
    assert len(scores) == len(df) and not scores["score"].isna().any()
    # conditioned on a value the first drawn row holds (when the model may be conditioned on it)
    name = next((c.name for c in synth.schema.columns if c.kind == "categorical"), None)
    if name is not None and out[name].notna().iloc[0]:
        try:
            given = synth.sample(11, seed=2, conditions={name: out[name].iloc[0]})
        except UserError as exc:  # a pooled (rare) value: refused with one line
            event(f"condition refused: {str(exc)[:40]}")
        else:
            assert len(given) == 11 and (given[name] == out[name].iloc[0]).all()
    try:
        ev = evaluate(
            df,
            out,
            schema=synth.schema,
            max_rows=200,
            holdout=df if len(df) >= 2 else None,
            target=df.columns[0] if synth.schema.columns[0].modelled else None,
        )
    except UserError as exc:
        event(f"evaluation refused: {str(exc)[:60]}")
        return
    json.dumps(ev, default=str)
    event("fitted, sampled, saved, loaded and evaluated")
