import logging

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dataset

from synthgen.errors import UserError
from synthgen.schema import infer_schema


def make_table(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "row": np.arange(n),
            "age": rng.integers(18, 90, n),
            "flag": rng.integers(0, 2, n),
            "amount": np.round(rng.gamma(2, 50, n), 2),
            "city": rng.choice(["Oslo", "Lima", "Pune"], n),
            "ok": rng.random(n) > 0.5,
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
            "when_text": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%d/%m/%Y"),
            "note": [f"free text number {i} with words" for i in range(n)],
            "nothing": [None] * n,
        }
    )


def test_kinds_and_reasons():
    schema = infer_schema(make_table())
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "customer_id": "id",
        "row": "id",
        "age": "numerical",
        "flag": "categorical",
        "amount": "numerical",
        "city": "categorical",
        "ok": "categorical",
        "when": "datetime",
        "when_text": "datetime",
        "note": "text",
        "nothing": "empty",
    }
    assert schema.primary_key == "customer_id"
    assert schema["amount"].decimals == 2 and not schema["amount"].integer
    assert schema["age"].integer and 18 <= schema["age"].min <= schema["age"].max < 90
    assert schema["when_text"].datetime_format == "%d/%m/%Y"
    assert schema["customer_id"].id_format["regex"] == "C[0-9]{5}"
    assert schema["ok"].sdtype == "boolean"
    assert all(c.reason for c in schema.columns)


def test_empty_column_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="synthgen"):
        infer_schema(make_table())
    assert any("'nothing' is entirely empty" in r.getMessage() for r in caplog.records)


def test_flights_time_hour_is_datetime_text_keeping_format():
    df = pd.read_parquet(shared_dataset("flights"), columns=["time_hour", "tailnum", "dep_time"])
    schema = infer_schema(df.iloc[:20000])
    assert schema["time_hour"].kind == "datetime"
    assert schema["time_hour"].datetime_format == "%Y-%m-%dT%H:%M:%SZ"
    assert schema["tailnum"].kind == "categorical"
    assert schema["dep_time"].integer and schema["dep_time"].missing_share > 0


def test_metadata_overrides_column_by_column():
    df = make_table()
    metadata = {
        "columns": {
            "age": {"sdtype": "categorical"},
            "when_text": {"sdtype": "datetime", "datetime_format": "%d/%m/%Y"},
            "flag": {"sdtype": "numerical"},
        },
        "primary_key": "row",
    }
    schema = infer_schema(df, metadata)
    assert schema["age"].kind == "categorical" and schema["age"].source == "metadata"
    assert schema["flag"].kind == "numerical"
    assert schema["city"].source == "inferred"
    assert schema.primary_key == "row"
    # the output of `synthgen schema` is accepted as metadata too
    again = infer_schema(df, schema.describe())
    assert {c.name: c.kind for c in again.columns} == {c.name: c.kind for c in schema.columns}


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"columns": {"nope": {"sdtype": "numerical"}}}, "not in the table: nope"),
        ({"columns": {"age": {"sdtype": "money"}}}, "unknown sdtype 'money'"),
        ({"columns": {"city": {"sdtype": "numerical"}}}, "holds non-numeric values"),
        ({"columns": {"city": {"sdtype": "datetime"}}}, "do not parse"),
        ({"columns": {}, "primary_key": "ghost"}, "primary_key 'ghost'"),
        (["not", "an", "object"], "metadata must be a JSON object"),
    ],
)
def test_bad_metadata_is_a_clear_error(metadata, message):
    with pytest.raises(UserError, match=message):
        infer_schema(make_table(), metadata)


def test_sdv_metadata_round_trip():
    schema = infer_schema(make_table())
    meta = schema.to_metadata()
    assert meta["METADATA_SPEC_VERSION"] == "SINGLE_TABLE_V1"
    assert meta["columns"]["customer_id"] == {"sdtype": "id", "regex_format": "C[0-9]{5}"}
    assert meta["columns"]["when_text"] == {"sdtype": "datetime", "datetime_format": "%d/%m/%Y"}
    assert "nothing" not in meta["columns"]
    again = infer_schema(make_table(), meta)
    assert [c.kind for c in again.columns] == [c.kind for c in schema.columns]


def test_nothing_to_learn():
    with pytest.raises(UserError, match="nothing to learn"):
        infer_schema(pd.DataFrame({"id": [f"k{i}" for i in range(50)]}))
