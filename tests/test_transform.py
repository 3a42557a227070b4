import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthgen.encoders import render_ids
from synthgen.schema import infer_schema
from synthgen.transform import TableTransformer, column_differences

NO_POOLING = dict(rare_threshold=0, max_categories=None)


def assert_round_trip(df: pd.DataFrame, **settings) -> None:
    schema = infer_schema(df)
    tt = TableTransformer(**(settings or NO_POOLING)).fit(df, schema)
    matrix = tt.transform(df)
    assert matrix.dtype == np.float32 and matrix.shape == (len(df), tt.layout.n_inputs)
    back = tt.inverse_transform(matrix)
    assert list(back.columns) == list(df.columns)
    assert column_differences(df, back, schema) == {}
    for col in schema.columns:  # an independent check with pandas' own comparison
        if col.kind == "id":
            assert back[col.name].is_unique
            continue
        pd.testing.assert_series_equal(
            df[col.name].reset_index(drop=True),
            back[col.name],
            check_names=False,
            check_exact=col.kind != "numerical" or col.decimals == 0,
            rtol=1e-9,
        )


@st.composite
def tables(draw):
    n = draw(st.integers(1, 40))
    ints = st.integers(-(10**6), 10**6)
    maybe = lambda strat, p: st.one_of(st.none(), strat) if p else strat  # noqa: E731
    with_missing = draw(st.booleans())
    decimals = draw(st.integers(0, 4))
    floats = st.floats(-1e5, 1e5, allow_nan=False).map(lambda x: round(x, decimals))
    words = st.sampled_from(["a", "b", "c", "long value", "ü", ""])
    stamps = st.datetimes(
        min_value=pd.Timestamp("1990-01-01").to_pydatetime(),
        max_value=pd.Timestamp("2030-01-01").to_pydatetime(),
    ).map(lambda d: d.replace(microsecond=0))
    col = lambda strat: draw(st.lists(strat, min_size=n, max_size=n))  # noqa: E731
    df = pd.DataFrame(
        {
            "word": pd.Series(col(maybe(words, with_missing)), dtype=object),
            "int": pd.Series(col(ints), dtype="int64"),
            "small_int": pd.Series(col(st.integers(0, 3)), dtype="int64"),
            "nullable_int": pd.Series(col(maybe(ints, with_missing)), dtype="Int64"),
            "flag": pd.Series(col(st.booleans()), dtype=bool),
            "float": pd.Series(col(maybe(floats, with_missing)), dtype="float64"),
            "when": pd.Series(col(maybe(stamps, with_missing)), dtype="datetime64[ns]"),
            "cat": pd.Series(col(maybe(words, with_missing)), dtype="category"),
        }
    )
    return df


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(tables())
def test_round_trip_is_exact_without_pooling(df):
    assert_round_trip(df)


def test_round_trip_keeps_dtypes_timezones_and_text_formats():
    n = 300
    rng = np.random.default_rng(1)
    stamps = pd.Series(
        pd.to_datetime("2023-03-01", utc=True)
        + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s")
    )
    df = pd.DataFrame(
        {
            "tz": stamps.dt.tz_convert("Europe/Oslo"),
            "text_date": stamps.dt.strftime("%Y-%m-%d %H:%M"),
            "day": stamps.dt.strftime("%d.%m.%Y"),
            "boolean": pd.array(rng.choice([True, False, None], n), dtype="boolean"),
            "string": pd.array(rng.choice(["x", "y", None], n), dtype="string"),
            "uint": rng.integers(0, 200, n).astype("uint16"),
            "f32": np.round(rng.normal(size=n), 3).astype("float32").astype("float64"),
            "ordered": pd.Categorical(
                rng.choice(["lo", "mid", "hi"], n), categories=["lo", "mid", "hi"], ordered=True
            ),
            "key": [f"K-{i:04d}" for i in range(n)],
        }
    )
    assert_round_trip(df)
    back = (
        TableTransformer(**NO_POOLING)
        .fit(df, infer_schema(df))
        .inverse_transform(TableTransformer(**NO_POOLING).fit(df, infer_schema(df)).transform(df))
    )
    assert str(back["tz"].dtype) == "datetime64[ns, Europe/Oslo]"
    assert back["ordered"].cat.ordered and list(back["ordered"].cat.categories) == [
        "lo",
        "mid",
        "hi",
    ]


@pytest.mark.parametrize(
    "name", ["adult", "adult_test", "cps1988", "credit", "diamonds", "telco_churn", "flights"]
)
def test_every_shared_dataset_round_trips(name):
    assert_round_trip(pd.read_parquet(shared_dataset(name)))


def test_rare_categories_never_come_out_verbatim():
    n = 1000
    rng = np.random.default_rng(0)
    common = rng.choice(["north", "south", "east"], n).astype(object)
    common[:4] = ["Jane Doe", "John Roe", "Jane Doe", "Max Mustermann"]  # each seen < 5 times
    df = pd.DataFrame({"who": common, "x": rng.normal(size=n), "code": rng.choice([1, 2, 3], n)})
    df.loc[5, "code"] = 99  # a rare integer category
    schema = infer_schema(df)
    tt = TableTransformer(rare_threshold=5).fit(df, schema)
    decoded = tt.inverse_transform(tt.transform(df))
    assert not decoded["who"].isin(["Jane Doe", "John Roe", "Max Mustermann"]).any()
    assert (decoded["who"] == "(rare)").sum() == 4
    # whatever a model puts in the matrix, rare values cannot come out
    block = next(b for b in tt.layout.discrete if b.column == "who")
    random_codes = np.zeros((5000, tt.layout.n_inputs), dtype=np.float32)
    random_codes[:, block.input_col] = rng.integers(0, block.n_classes, 5000)
    assert (
        not tt.inverse_transform(random_codes)["who"]
        .isin(["Jane Doe", "John Roe", "Max Mustermann"])
        .any()
    )
    assert 99 not in set(decoded["code"].unique()) or schema["code"].kind == "numerical"


def test_category_cap_keeps_frequencies_of_overflow_values():
    rng = np.random.default_rng(0)
    values = rng.zipf(1.3, 20000) % 400
    df = pd.DataFrame({"c": [f"v{v}" for v in values], "y": rng.normal(size=20000)})
    schema = infer_schema(df)
    tt = TableTransformer(max_categories=20).fit(df, schema)
    block = next(b for b in tt.layout.discrete if b.column == "c")
    assert block.n_classes <= 20 + 2  # kept + rare + other
    back = tt.inverse_transform(tt.transform(df), rng=np.random.default_rng(1))
    real, synth = df["c"].value_counts(normalize=True), back["c"].value_counts(normalize=True)
    common = real[real.index.isin(synth.index)]
    assert (common - synth.reindex(common.index)).abs().max() < 0.01


def test_category_columns_and_large_tables_encode_as_their_values_do():
    """A pandas category column maps through its categories, text that repeats its Python objects
    through them, and a table long enough to be encoded by several threads gets the matrix one
    thread gives: kept, rare, overflow, missing and never-seen values alike."""
    rng = np.random.default_rng(0)
    n = 60_000
    values = np.array([f"v{v}" for v in rng.zipf(1.5, n) % 60], dtype=object)
    values[rng.random(n) < 0.05] = None
    df = pd.DataFrame({"c": values, "x": rng.normal(size=n), "k": rng.choice(["a", "b"], n)})
    tt = TableTransformer(max_categories=10).fit(df, infer_schema(df))
    new = df.copy()
    new.loc[:9, "c"] = "never seen"
    expected = np.vstack([tt.transform(new.iloc[a : a + 1000]) for a in range(0, n, 1000)])
    np.testing.assert_array_equal(tt.transform(new), expected)  # several threads
    as_category = new.assign(c=new["c"].astype("category"), k=new["k"].astype("category"))
    np.testing.assert_array_equal(tt.transform(as_category), expected)
    # each value one of a few Python objects (as pandas' readers give): looked up once per object
    shared = as_category.astype(object)
    assert shared["c"].map(id).nunique() < 100 < new["c"].map(id).nunique()
    np.testing.assert_array_equal(tt.transform(shared), expected)
    block = next(b for b in tt.layout.discrete if b.column == "c")
    assert len(np.unique(expected[:, block.input_col])) == block.n_classes  # every kind seen


def test_point_masses_and_missing_get_their_own_classes():
    rng = np.random.default_rng(0)
    x = np.where(rng.random(5000) < 0.6, 0.0, rng.lognormal(5, 1, 5000).round(2))
    x[rng.random(5000) < 0.1] = np.nan
    df = pd.DataFrame({"debt": x})
    tt = TableTransformer().fit(df, infer_schema(df))
    (block,) = tt.layout.discrete
    (slot,) = tt.layout.continuous
    assert block.role == "mode" and block.n_classes == 3  # 0.0, continuous, missing
    assert slot.gate_col == block.input_col and slot.gate_code == 1
    matrix = tt.transform(df)
    zero_rows = matrix[:, 0] == 0
    assert np.array_equal(zero_rows, x == 0)
    assert np.abs(matrix[:, 1]).max() <= 5


def heaped_wages(n: int = 20000, seed: int = 0) -> pd.DataFrame:
    """Wages heaped on round amounts (each under the 2% of a point mass), the rest spread."""
    rng = np.random.default_rng(seed)
    rounds = np.array([300.0, 400.0, 500.0, 600.0, 750.0, 1000.0])
    heaped = rng.random(n) < 0.09  # 1.5% of the rows on each round amount
    x = np.where(heaped, rng.choice(rounds, n), rng.lognormal(6.3, 0.5, n).round(2))
    return pd.DataFrame({"wage": x})


def test_heaps_decode_to_their_value_with_their_share_and_keep_ranks():
    df = heaped_wages()
    plain = TableTransformer(heap_share=0.0).fit(df, infer_schema(df))
    heaped = TableTransformer(heap_share=0.005).fit(df, infer_schema(df))
    enc = heaped.encoders["wage"]
    assert {h[0] for h in enc.heaps} == {300.0, 400.0, 500.0, 600.0, 750.0, 1000.0}
    assert all(h[0] not in enc.modes for h in enc.heaps)  # heaps stay in the continuous part
    # standard normal scores, as a calibrated model draws them, in increasing order
    z = np.sort(np.random.default_rng(1).standard_normal(200000)).astype(np.float32)
    shares = df["wage"].value_counts(normalize=True)
    for tt, expect_heaps in ((plain, False), (heaped, True)):
        x = tt.encoders["wage"]._from_normal(z.astype(np.float64))
        assert (np.diff(x) >= 0).all()  # monotone: each row's rank is kept
        for value in (300.0, 1000.0):
            drawn = (x == value).mean()
            if expect_heaps:
                assert abs(drawn - shares[value]) < 0.004, (value, drawn, shares[value])
            else:
                assert drawn < 0.001
    assert_round_trip(df, heap_share=0.005, **NO_POOLING)


def test_a_heap_needs_rare_threshold_rows_and_survives_save_and_load():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=600).round(3), [7.5] * 4, [2.25] * 12])
    df = pd.DataFrame({"v": x})
    tt = TableTransformer(heap_share=0.005, rare_threshold=5).fit(df, infer_schema(df))
    heaps = [h[0] for h in tt.encoders["v"].heaps]
    assert 2.25 in heaps and 7.5 not in heaps  # 4 rows are too few to write out
    state = tt.state()
    back = TableTransformer.from_state(state)
    z = np.linspace(-3, 3, 1001)
    assert np.array_equal(back.encoders["v"]._from_normal(z), tt.encoders["v"]._from_normal(z))
    legacy = {  # saved before heaps
        "settings": {k: v for k, v in state["settings"].items() if k != "heap_share"},
        "schema": state["schema"],
        "encoders": {"v": {k: v for k, v in state["encoders"]["v"].items() if k != "heaps"}},
    }
    assert TableTransformer.from_state(legacy).encoders["v"].heaps == []


def test_quantile_transform_maps_to_standard_normal():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"skewed": rng.pareto(1.5, 50000)})
    tt = TableTransformer().fit(df, infer_schema(df))
    z = tt.transform(df)[:, -1]
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.03


def test_ids_unique_in_format_across_batches():
    fmt = {
        "type": "template",
        "segments": [["literal", "N"], ["class", "digit", 3], ["class", "upper", 2]],
        "regex": "N[0-9]{3}[A-Z]{2}",
    }
    first, second = render_ids(fmt, np.arange(0, 1000)), render_ids(fmt, np.arange(1000, 2000))
    both = pd.Series(np.concatenate([first, second]))
    assert both.is_unique and both.str.fullmatch(r"N[0-9]{3}[A-Z]{2}").all()
    uuids = pd.Series(render_ids({"type": "uuid"}, np.arange(5000), seed=3))
    assert (
        uuids.is_unique
        and uuids.str.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
        ).all()
    )
    wide = render_ids(
        {"type": "template", "segments": [["literal", "C"], ["class", "digit", 2]], "regex": ""},
        np.arange(500),
    )
    assert pd.Series(wide).is_unique  # more rows than 2 digits can number: the field widens


def test_state_is_json_and_reloads(credit_df):
    import json

    schema = infer_schema(credit_df)
    tt = TableTransformer().fit(credit_df, schema)
    state = json.loads(json.dumps(tt.state()))
    again = TableTransformer.from_state(state)
    assert again.layout == tt.layout
    m = tt.transform(credit_df)
    assert np.array_equal(m, again.transform(credit_df))
    pd.testing.assert_frame_equal(tt.inverse_transform(m), again.inverse_transform(m))


def test_a_wide_table_decodes_to_a_frame_pandas_does_not_call_fragmented():
    rng = np.random.default_rng(0)
    for width in (20, 150):  # below and above the column count where decoded frames are merged
        df = pd.DataFrame(
            {
                f"c{i}": rng.normal(size=50) if i % 2 else rng.choice(["a", "b"], 50)
                for i in range(width)
            }
        )
        tt = TableTransformer(**NO_POOLING).fit(df, infer_schema(df))
        back = tt.inverse_transform(tt.transform(df))
        with warnings.catch_warnings():
            warnings.simplefilter(
                "error"
            )  # pandas' PerformanceWarning on a frame of over 100 blocks
            back["new"] = 1.0
        assert back.shape == (50, width + 1)
