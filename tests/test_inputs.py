"""Every input class gets a deliberate answer: each table below goes through fit, sample, save/load
and evaluate, and comes back with its columns, dtypes and the values its class promises."""

import datetime as dt
import decimal
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthgen import Synthesizer, UserError
from synthgen.evaluate import evaluate
from synthgen.io import read_table, write_parquet

FAST = {"epochs": 2, "hidden": [32], "latent_dim": 4}
N = 240


def roundtrip(
    source, tmp_path, rows: int = 500, **settings
) -> tuple[Synthesizer, pd.DataFrame, pd.DataFrame]:
    """Fit, sample, save, load, sample again (the same rows), evaluate;
    return (model, real, synthetic)."""
    real = read_table(source)
    synth = Synthesizer("vae", **{**FAST, **settings}).fit(source)
    out = synth.sample(rows, seed=3)
    assert list(out.columns) == list(real.columns)
    assert [str(t) for t in out.dtypes] == [str(t) for t in real.dtypes]
    synth.save(tmp_path / "model")
    again = Synthesizer.load(tmp_path / "model").sample(rows, seed=3)
    pd.testing.assert_frame_equal(out, again)
    ev = evaluate(real, out, schema=synth.schema, max_rows=500)
    json.dumps(ev, allow_nan=False, default=str)  # the report can be written
    write_parquet(out, tmp_path / "out.parquet")
    return synth, real, out


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-8-sig", "utf-16"])
def test_text_encodings_are_detected(tmp_path, rng, encoding):
    names = (
        ["Zoë", "André", "Müller", "Ñandú", "Łódź"]
        if encoding in ("utf-8-sig", "utf-16")
        else ["Zoë", "André", "Müller", "Ñandú", "€uro"]
    )
    if encoding == "latin-1":
        names[-1] = "plain"  # no euro sign in Latin-1
    df = pd.DataFrame({"name": rng.choice(names, N), "x": rng.normal(size=N)})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False, encoding=encoding)
    _, real, out = roundtrip(path, tmp_path)
    assert list(real.columns) == ["name", "x"] and set(real["name"]) == set(names)
    assert set(out["name"]) <= set(names)


def test_a_given_encoding_wins_and_a_wrong_one_is_one_clear_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("name,x\nZo\u00eb,1\n".encode("cp1252"))
    assert read_table(path, encoding="latin-1")["name"].tolist() == ["Zoë"]
    with pytest.raises(UserError, match="cannot read as csv.*--encoding"):
        read_table(path, encoding="utf-8")
    with pytest.raises(UserError, match="unknown text encoding 'klingon'"):
        read_table(path, encoding="klingon")


def test_quoted_line_breaks_in_csv_fields(tmp_path, rng):
    path = tmp_path / "t.csv"
    lines = ["note,x"] + [f'"first line\nsecond {i % 3}",{rng.normal()}' for i in range(N)]
    path.write_text("\n".join(lines) + "\n")
    _, real, out = roundtrip(path, tmp_path)
    assert len(real) == N and set(out["note"]) <= {f"first line\nsecond {k}" for k in range(3)}


def test_decimal_columns_are_numbers_written_back_with_their_scale(tmp_path, rng):
    amounts = [decimal.Decimal(f"{v:.2f}") for v in rng.gamma(2.0, 300.0, N)]
    amounts[5] = None
    table = pa.table(
        {"amount": pa.array(amounts, pa.decimal128(12, 2)), "k": rng.choice(list("abc"), N)}
    )
    pq.write_table(table, tmp_path / "t.parquet")
    synth, real, out = roundtrip(tmp_path / "t.parquet", tmp_path, rows=2000)
    col = synth.schema["amount"]
    assert col.kind == "numerical" and col.decimals == 2 and col.object_values == "decimal"
    values = out["amount"].dropna()
    assert (
        values.map(type).eq(decimal.Decimal).all()
        and values.map(lambda v: v.as_tuple().exponent).eq(-2).all()
    )
    assert out["amount"].isna().any()  # a missing share of 1/240 is learned
    assert pq.read_schema(tmp_path / "out.parquet").field("amount").type.scale == 2


def test_infinities_are_point_masses_of_their_own(tmp_path, rng):
    x = rng.normal(size=N)
    x[::12], x[::20] = np.inf, -np.inf  # 20 and 12 rows
    df = pd.DataFrame({"x": x, "c": rng.choice(list("ab"), N)})
    synth, _, out = roundtrip(df, tmp_path, rows=20_000)
    assert synth.schema["x"].min > -np.inf and synth.schema["x"].max < np.inf
    assert abs(np.isposinf(out["x"]).mean() - np.isposinf(x).mean()) < 0.02
    assert abs(np.isneginf(out["x"]).mean() - np.isneginf(x).mean()) < 0.02
    finite = out["x"][np.isfinite(out["x"])]
    assert finite.between(x[np.isfinite(x)].min(), x[np.isfinite(x)].max()).all()


def test_nested_columns_are_not_learned_and_come_back_missing(tmp_path, rng, caplog):
    table = pa.table(
        {
            "tags": pa.array([["a", "b"], ["c"]] * (N // 2)),
            "info": pa.array([{"k": 1, "v": "x"}] * N),
            "m": pa.array([[("k", 1)]] * N, pa.map_(pa.string(), pa.int64())),
            "x": rng.normal(size=N),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    synth, _, out = roundtrip(tmp_path / "t.parquet", tmp_path)
    assert [synth.schema[c].kind for c in ("tags", "info", "m")] == ["unsupported"] * 3
    assert out[["tags", "info", "m"]].isna().all().all()
    assert "holds nested or binary values" in caplog.text
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"obj": {"a": i}, "x": float(rng.normal())}) + "\n" for i in range(N))
    )
    synth, _, out = roundtrip(jsonl, tmp_path)
    assert synth.schema["obj"].kind == "unsupported" and out["obj"].isna().all()


def test_time_zones_mixed_offsets_and_dates(tmp_path, rng):
    df = pd.DataFrame(
        {
            "aware": pd.date_range("2024-01-01", periods=N, freq="37min", tz="Europe/Berlin"),
            "day": [
                dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 300, N)
            ],
            "x": rng.normal(size=N),
        }
    )
    df.to_parquet(tmp_path / "t.parquet")
    synth, _, out = roundtrip(tmp_path / "t.parquet", tmp_path)
    assert str(out["aware"].dtype) == "datetime64[ns, Europe/Berlin]"
    assert out["day"].map(type).eq(dt.date).all() and synth.schema["day"].kind == "datetime"
    offsets = pd.DataFrame(
        {
            "t": [
                f"2024-03-{1 + i % 28:02d}T10:00:00{'+01:00' if i % 2 else '-05:00'}"
                for i in range(N)
            ],
            "x": rng.normal(size=N),
        }
    )
    offsets.to_csv(tmp_path / "o.csv", index=False)  # read as UTC instants
    synth, real, out = roundtrip(tmp_path / "o.csv", tmp_path)
    assert synth.schema["t"].kind == "datetime" and str(out["t"].dtype).endswith("UTC]")
    synth, _, out = roundtrip(
        offsets, tmp_path
    )  # the same text in a DataFrame: parsed as UTC, written as text
    assert synth.schema["t"].kind == "datetime" and out["t"].map(type).eq(str).all()


def test_nullable_types_and_dictionary_categories(tmp_path, rng):
    df = pd.DataFrame(
        {
            "i": pd.array(rng.integers(0, 50, N), "Int64"),
            "b": pd.array(rng.random(N) < 0.5, "boolean"),
            "x": rng.normal(size=N),
        }
    )
    df.loc[::7, "i"] = pd.NA
    df.loc[::5, "b"] = pd.NA
    _, _, out = roundtrip(df, tmp_path, rows=2000)
    assert out["i"].isna().any() and out["b"].isna().any()
    table = pa.table(
        {
            "colour": pa.array(rng.choice(["red", "green", "blue"], N)).dictionary_encode(),
            "x": rng.normal(size=N),
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    _, real, out = roundtrip(tmp_path / "d.parquet", tmp_path)
    assert str(real["colour"].dtype) == "category" and set(out["colour"]) <= {
        "red",
        "green",
        "blue",
    }


def test_int64_near_its_limits_stays_in_range_and_exact(tmp_path, rng):
    top = np.iinfo(np.int64).max
    df = pd.DataFrame(
        {
            "high": top - rng.integers(0, 1000, N),
            "low": -top + rng.integers(0, 1000, N),
            "u": (np.uint64(2**64 - 1) - rng.integers(0, 1000, N).astype(np.uint64)),
            "x": rng.normal(size=N),
        }
    )
    _, _, out = roundtrip(df, tmp_path, rows=20_000)
    for name in ("high", "low", "u"):
        assert out[name].dtype == df[name].dtype
        assert df[name].min() <= out[name].min() and out[name].max() <= df[name].max(), name
    assert (
        out["high"].nunique() > 100
    )  # spread over the range, not collapsed onto float64's few values there


def test_very_long_column_names(tmp_path, rng):
    df = pd.DataFrame({("column " * 60) + str(i): rng.normal(size=N) for i in range(3)})
    roundtrip(df, tmp_path)


def test_a_dozen_rows_train_and_never_make_a_point_mass_of_a_few_rows(tmp_path, rng):
    df = pd.DataFrame(
        {
            "a": rng.normal(size=12),
            "c": rng.integers(0, 1000, 12),
            "d": [7] * 6
            + [1, 2, 3, 4, 5, 6],  # 7 is held by 6 rows: a point mass; the rest by one each
            "e": ["p"] * 8 + ["q"] * 4,
        }
    )  # "q" is held by 4 rows: rare, never written out
    synth, _, out = roundtrip(df, tmp_path, rows=20_000, rare_threshold=5)
    enc = synth.transformer.encoders
    assert enc["a"].modes == [] and enc["c"].modes == [] and enc["d"].modes == [7.0]
    assert (
        not out["a"].isin(np.sort(df["a"])[1:-1]).any()
    )  # interior values are interpolated, not copied
    assert set(out["e"]) == {"p", "(rare)"}


def test_too_few_rows_and_names_that_are_not_text_are_one_clear_error():
    with pytest.raises(UserError, match="at least"):
        Synthesizer("vae", **FAST).fit(pd.DataFrame({"a": [1.0, 2.0, 3.0]}))
    with pytest.raises(UserError, match="column names must be text"):
        Synthesizer("vae", **FAST).fit(pd.DataFrame(np.zeros((20, 2))))
