"""Conditional generation: conditioned columns hold exactly, the others follow the conditional
distribution, and impossible or malformed conditions are one clear error, never a hang."""

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from synthgen import Synthesizer, UserError
from synthgen.config import RunConfig, where_conditions

SETTINGS = {"epochs": 25, "hidden": [64, 64], "latent_dim": 8, "seed": 0}


@pytest.fixture(scope="module")
def churn_model(demo_df, tmp_path_factory) -> Synthesizer:
    """A small VAE of the demo table, saved and loaded fresh."""
    path = tmp_path_factory.mktemp("models") / "vae"
    Synthesizer("vae", **SETTINGS).fit(demo_df, progress=False).save(path)
    return Synthesizer.load(path)


def test_a_condition_holds_exactly_and_the_rest_follows_the_real_subset(churn_model, demo_df):
    rows = churn_model.sample(4000, seed=1, conditions={"churn": "Yes"})
    assert len(rows) == 4000 and (rows["churn"] == "Yes").all()
    real = demo_df[demo_df["churn"] == "Yes"]["contract"].value_counts(normalize=True)
    plain = churn_model.sample(4000, seed=1)["contract"].value_counts(normalize=True)
    given = rows["contract"].value_counts(normalize=True)
    # churners are 89% month-to-month against 55% overall: the conditioned rows must move there
    assert abs(given["Month-to-month"] - real["Month-to-month"]) < 0.08
    assert abs(plain["Month-to-month"] - real["Month-to-month"]) > 0.2
    # seeded: the same rows again
    pd.testing.assert_frame_equal(
        rows, churn_model.sample(4000, seed=1, conditions={"churn": "Yes"})
    )


def test_a_condition_on_one_category_gets_the_real_subsets_class_shares(churn_model, demo_df):
    """The other discrete columns are drawn at the class shares of the training rows that meet
    the condition (the pair counts a model keeps), closer than the model alone draws them."""
    from synthgen.conditional import pair_counts

    subset = demo_df[demo_df["payment_method"] == "Electronic check"]
    columns = ["contract", "internet_service", "churn"]
    counts = churn_model.info["pair_counts"]

    def gap(rows: pd.DataFrame) -> float:
        return max(
            (rows[c].value_counts(normalize=True) - subset[c].value_counts(normalize=True))
            .abs()
            .max()
            for c in columns
        )

    condition = {"payment_method": "Electronic check"}
    kept = churn_model.sample(8000, seed=4, conditions=condition)
    churn_model.info["pair_counts"] = None  # as a model saved before the counts were kept
    try:
        alone = churn_model.sample(8000, seed=4, conditions=condition)
    finally:
        churn_model.info["pair_counts"] = counts
    # (how far the model alone is depends on the hardware it trained on: 0.018 on an H200)
    assert gap(kept) < min(0.02, gap(alone))
    # what the model keeps: counts of class pairs, none under rare_threshold
    matrix = churn_model.transformer.transform(demo_df)
    assert pair_counts(matrix, churn_model.transformer, 5) == counts
    assert all(v == 0 or v >= 5 for table in counts.values() for v in table)


def test_values_ranges_and_open_ranges(churn_model):
    rows = churn_model.sample(
        2000,
        seed=2,
        conditions={
            "payment_method": ["Mailed check", "Credit card (automatic)"],
            "tenure": (12, 24),
            "monthly_charges": {"low": 80.0, "high": None},
        },
    )
    assert set(rows["payment_method"]) == {"Mailed check", "Credit card (automatic)"}
    assert rows["tenure"].between(12, 24).all() and rows["tenure"].nunique() > 5
    assert (rows["monthly_charges"] >= 80.0).all() and rows["monthly_charges"].std() > 1.0
    assert rows["tenure"].dtype == np.int64
    # a number given as text (the command line, YAML) holds exactly too
    assert (churn_model.sample(50, seed=3, conditions={"tenure": "7"})["tenure"] == 7).all()


def test_groups_rebalance_a_class(churn_model):
    rows = churn_model.sample(
        1001,
        seed=4,
        conditions=[
            {"where": {"churn": "Yes"}, "share": 1},
            {"where": {"churn": "No"}, "share": 1},
        ],
    )
    counts = rows["churn"].value_counts()
    assert len(rows) == 1001 and abs(counts["Yes"] - counts["No"]) <= 1


def test_partial_rows_are_completed_in_place(churn_model):
    partial = pd.DataFrame(
        {
            "contract": ["Two year", None, "One year", "Two year"],
            "tenure": [70, 3, None, 70],
        },
        index=[10, 11, 12, 13],
    )
    done = churn_model.sample(conditions=partial, seed=5)
    assert list(done.index) == [10, 11, 12, 13] and list(done.columns) == list(
        churn_model.schema.names
    )
    assert done.loc[[10, 13], "contract"].eq("Two year").all() and done.loc[12, "contract"] == (
        "One year"
    )
    assert done.loc[[10, 13], "tenure"].eq(70).all() and done.loc[11, "tenure"] == 3
    assert done.notna().all().all()


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"no_such_column": 1}, "unknown column 'no_such_column'"),
        ({"contract": "Ten year"}, "no training row has contract='Ten year'"),
        ({"tenure": "abc"}, "'abc' is not a number"),
        ({"tenure": 500}, "no training row has tenure=500"),
        ({"tenure": (400, 500)}, "no training row has tenure in"),
        ({"contract": (1, 2)}, "a \\(low, high\\) range needs a number or a date"),
        ({"tenure": (30, 10)}, "low 30 is above high 10"),
        ({}, "conditions must map column names"),
        ([{"where": {"churn": "Yes"}}], "a share or rows"),
    ],
)
def test_bad_conditions_are_user_errors(churn_model, conditions, message):
    with pytest.raises(UserError, match=message):
        churn_model.sample(100, seed=0, conditions=conditions)


def test_a_combination_no_row_holds_ends_quickly(churn_model, demo_df, caplog):
    # every value exists, never together: no internet service yet paying for tech support
    assert not ((demo_df["internet_service"] == "No") & (demo_df["tech_support"] == "Yes")).any()
    t0 = time.perf_counter()
    try:
        with caplog.at_level("WARNING", logger="synthgen"):
            rows = churn_model.sample(
                500, seed=6, conditions={"internet_service": "No", "tech_support": "Yes"}
            )
    except UserError as exc:  # the model gives it no probability at all
        assert "almost no probability" in str(exc)
    else:  # or some: the rows hold and the log says no training row may meet the conditions
        assert (rows["internet_service"] == "No").all() and (rows["tech_support"] == "Yes").all()
        assert "fewer than 5 training rows hold internet_service=No with tech_support=Yes" in (
            caplog.text
        )
    assert time.perf_counter() - t0 < 120  # bounded effort (generous for a busy machine)


def test_where_texts_and_run_config():
    assert where_conditions(["a=x", "a=y", "b=1..5", "c=..3", "d=2020-01-01"]) == {
        "a": ["x", "y"],
        "b": {"low": "1", "high": "5"},
        "c": {"low": None, "high": "3"},
        "d": "2020-01-01",
    }
    with pytest.raises(UserError, match="col=value"):
        where_conditions(["oops"])
    cfg = RunConfig(input="t.csv", conditions={"churn": "Yes"})
    assert cfg.conditions == {"churn": "Yes"}
    with pytest.raises(Exception, match="sample_shards"):
        RunConfig(input="t.csv", conditions={"churn": "Yes"}, sample_shards=2)


def test_cli_where(churn_model, tmp_path):
    model = tmp_path / "model"
    churn_model.save(model)
    out = tmp_path / "rows.parquet"
    cmd = [sys.executable, "-m", "synthgen.cli", "sample", str(model), "-n", "300", "-o", str(out)]
    ok = subprocess.run(
        [*cmd, "--where", "contract=Two year", "--where", "tenure=24..48", "--seed", "1"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    rows = pd.read_parquet(out)
    assert (rows["contract"] == "Two year").all() and rows["tenure"].between(24, 48).all()
    for where, message in (("nope=1", "unknown column"), ("tenure=abc", "not a number")):
        bad = subprocess.run([*cmd, "--where", where], capture_output=True, text=True)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
        assert message in lines[0] and "Traceback" not in bad.stderr
