import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from synthgen import UserError
from synthgen.evaluate import evaluate
from synthgen.report import render_html, write_report
from synthgen.schema import infer_schema


def mixed_table(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    group = np.where(x + rng.normal(scale=0.5, size=n) > 0, "high", "low")
    return pd.DataFrame(
        {
            "x": np.round(x, 3),
            "y": np.round(3 * x + rng.normal(scale=0.3, size=n), 2),
            "group": group,
            "level": rng.choice(["a", "b", "c", "d"], n),
            "income": np.where(rng.random(n) < 0.1, np.nan, np.round(rng.lognormal(3, 1, n), 1)),
            "city": pd.Series(
                rng.choice(["Oslo", "Lima", None], n, p=[0.5, 0.4, 0.1]), dtype=object
            ),
            "joined": pd.Timestamp("2020-01-01")
            + pd.to_timedelta(rng.integers(0, 1000, n), unit="D"),
            "day": (
                pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
            ).strftime("%Y-%m-%d"),
        }
    )


@pytest.fixture(scope="module")
def table():
    df = mixed_table(3000)
    return df.iloc[:2400].reset_index(drop=True), df.iloc[2400:].reset_index(drop=True)


def test_identical_tables_score_about_one(table):
    train, holdout = table
    ev = evaluate(train, train.copy(), schema=infer_schema(train))
    q = ev["quality"]
    assert (
        q["overall"] > 0.99
        and q["column_shapes"] > 0.99
        and q["column_pair_trends_all_pairs"] > 0.99
    )
    assert ev["detection"]["score"] > 0.9
    assert ev["diagnostic"]["data_validity"] == 1.0


def test_independent_fresh_rows_are_private_and_useful(table):
    train, holdout = table
    fresh = mixed_table(
        2400, seed=9
    )  # same process, never-seen rows: what an ideal generator would write
    ev = evaluate(
        train,
        fresh,
        holdout=holdout,
        target="group",
        schema=infer_schema(train),
        gate={"max_exact_copy_share": "natural", "min_dcr_ratio": 0.8},
    )
    # An ideal generator: marginals and aligned pair trends near 1. The official pair score is not:
    # SDMetrics bins each table on its own min/max.
    assert (
        ev["quality"]["column_shapes"] > 0.95 and ev["quality"]["column_pair_trends_aligned"] > 0.95
    )
    assert (
        ev["quality"]["column_pair_trends_aligned"] > ev["quality"]["column_pair_trends_all_pairs"]
    )
    assert ev["detection"]["score"] > 0.8
    assert (
        0.85 < ev["privacy"]["dcr_ratio"] < 1.2
        and 0.4 < ev["privacy"]["closer_to_train_share"] < 0.6
    )
    assert ev["utility"]["task"] == "classification" and ev["utility"]["ratio"] > 0.95
    assert ev["privacy_gate"]["passed"] is True


def test_shuffled_and_constant_columns_score_low(table):
    train, _ = table
    schema = infer_schema(train)
    rng = np.random.default_rng(1)
    broken = train.copy()
    broken["y"] = rng.permutation(broken["y"].to_numpy())  # same marginal, no relation to x
    ev = evaluate(train, broken, schema=schema)
    pair = next(p for p in ev["quality"]["pairs"] if {p["column_1"], p["column_2"]} == {"x", "y"})
    assert pair["score"] < 0.6 and pair["counted"]
    assert ev["quality"]["column_shapes"] > 0.98  # marginals untouched
    assert ev["detection"]["score"] < 0.2  # a tree sees the broken relation at once
    constant = train.copy()
    constant["level"] = "a"
    cols = {
        c["column"]: c["score"]
        for c in evaluate(train, constant, schema=schema, detection=False)["quality"]["columns"]
    }
    assert cols["level"] < 0.35 and cols["x"] > 0.99


def test_copying_the_training_table_trips_the_privacy_gate(table):
    train, holdout = table
    ev = evaluate(
        train,
        train.sample(frac=1, random_state=2),
        holdout=holdout,
        schema=infer_schema(train),
        gate={"max_exact_copy_share": "natural", "min_dcr_ratio": 0.8},
    )
    assert ev["privacy"]["exact_copy_share"] == 1.0 and ev["privacy"]["dcr_ratio"] == 0.0
    assert ev["privacy_gate"]["passed"] is False
    assert {c["check"]: c["passed"] for c in ev["privacy_gate"]["checks"]} == {
        "exact copies of training rows": False,
        "DCR ratio (synthetic / holdout median)": False,
    }


def test_exact_copies_ignore_dtype_differences():
    real = pd.DataFrame({"a": [1, 2, 3] * 100, "b": ["x", "y", "z"] * 100})
    other = real.astype({"a": "float64"}).astype({"b": "category"})
    ev = evaluate(real, other, holdout=real.iloc[:30], schema=infer_schema(real), detection=False)
    assert ev["privacy"]["exact_copy_share"] == 1.0


def test_large_tables_are_scored_on_a_seeded_sample(table):
    train, _ = table
    ev = evaluate(train, train, schema=infer_schema(train), max_rows=500, detection=False)
    assert ev["rows"]["scored_real"] == 500 and ev["rows"]["sampled"] and ev["rows"]["real"] == 2400


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.drop(columns=["x"]), "missing x"),
        (lambda df: df.assign(extra=1), "extra extra"),
        (lambda df: df.iloc[:0], "synthetic table has no rows"),
    ],
)
def test_bad_inputs_are_clear_errors(table, change, message):
    train, _ = table
    with pytest.raises(UserError, match=message):
        evaluate(train, change(train))


def test_report_is_complete_for_mixed_tables(table, tmp_path):
    train, holdout = table
    schema = infer_schema(train)
    ev = evaluate(
        train,
        mixed_table(2400, seed=5),
        holdout=holdout,
        target="income",
        schema=schema,
        gate={"max_exact_copy_share": 0.0},
    )
    report = {
        "dataset": "mixed",
        "run_id": "test",
        "primary_model": "vae",
        "input": {"path": "mixed.parquet", "rows": 3000},
        "schema": schema.explain(),
        "models": {"vae": {"evaluation": ev, "sample": {"rows": 2400}}},
    }
    paths = write_report(report, tmp_path)
    saved = json.loads(paths["json"].read_text())
    assert saved["verdict"]["privacy_gate"] == "passed" and saved["verdict"]["quality"] in (
        "good",
        "fair",
        "poor",
    )
    ev_saved = saved["models"]["vae"]["evaluation"]
    assert set(ev_saved) >= {
        "quality",
        "diagnostic",
        "detection",
        "privacy",
        "utility",
        "distributions",
        "associations",
        "privacy_gate",
        "rows",
        "sdmetrics_version",
        "seconds",
    }
    assert ev_saved["utility"]["task"] == "regression"
    assert set(ev_saved["distributions"]) == {
        "x",
        "y",
        "group",
        "level",
        "income",
        "city",
        "joined",
        "day",
    }
    assert ev_saved["distributions"]["income"]["missing"][0] > 0.05
    page = paths["html"].read_text()
    for section in (
        "Models side by side",
        "Columns, worst first",
        "Pair trends",
        "Privacy",
        "Utility",
        "Data lineage",
    ):
        assert section in page
    assert (
        "<script src=" not in page and '<link rel="stylesheet"' not in page
    )  # self-contained: opens offline
    assert "<script" not in page and page.count("<svg") >= 10  # inline SVG figures, no JavaScript
    assert len(page.encode()) < 400_000  # inline SVG figures, no script
    assert "report.html" in paths["md"].read_text()
    assert "The VAE draws z from its N(0, I) prior" in page
    fitted = render_html(
        {**report, "config": {"model": {"prior": "fitted"}}}
    )  # the page says where z came from
    assert (
        "fitted to its aggregate posterior" in fitted
        and "The VAE draws z from its N(0, I) prior" not in fitted
    )
    # each model's recorded settings win over the run config
    # (a `vae:` section may differ from the shared settings)
    both = {
        "vae": {"evaluation": ev, "settings": {"prior": "fitted"}},
        "ae": {"evaluation": ev, "settings": {"prior": "standard"}},
    }
    page = render_html({**report, "config": {"model": {"prior": "standard"}}, "models": both})
    assert (
        "fitted to its aggregate posterior" in page and "this run samples it from N(0, I)" in page
    )
    contrast = {
        **both,
        "ae": {"evaluation": ev, "settings": {"prior": "fitted"}},
        "ae-standard": {"evaluation": ev, "settings": {"prior": "standard"}, "published": False},
    }
    page = render_html({**report, "models": contrast})
    assert (
        "fitted to its training codes, and in the row &quot;AE, z ~ N(0, I)&quot; from N(0, I)"
        in page
    )
    assert (
        "rows not published" in page
        and "AE, z ~ N(0, I)" in page
        and "calibrate_marginals" not in page
    )
    contrast["vae"] = {
        "evaluation": ev,
        "settings": {"prior": "standard", "calibrate_marginals": True},
    }
    assert (
        "The columns of the VAE are calibrated to the distributions of the training columns"
        in render_html({**report, "models": contrast})
    )


def test_cli_evaluate_any_two_tables(table, tmp_path):
    train, holdout = table
    train.to_parquet(tmp_path / "real.parquet")
    holdout.to_parquet(tmp_path / "holdout.parquet")
    mixed_table(2400, seed=3).to_csv(tmp_path / "other_tool.csv", index=False)
    cli = [sys.executable, "-m", "synthgen.cli", "evaluate"]
    ok = subprocess.run(
        cli
        + [
            str(tmp_path / "real.parquet"),
            str(tmp_path / "other_tool.csv"),
            "--holdout",
            str(tmp_path / "holdout.parquet"),
            "--target",
            "group",
            "--out",
            str(tmp_path / "rep"),
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "rep" / "report.html").exists() and "overall" in ok.stdout
    copy = subprocess.run(
        cli
        + [
            str(tmp_path / "real.parquet"),
            str(tmp_path / "real.parquet"),
            "--holdout",
            str(tmp_path / "holdout.parquet"),
            "--gate-max-copies",
            "natural",
            "--out",
            str(tmp_path / "rep2"),
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert copy.returncode == 1 and "privacy gate failed" in copy.stderr
    train.drop(columns=["x"]).to_parquet(tmp_path / "bad.parquet")
    bad = subprocess.run(
        cli
        + [
            str(tmp_path / "real.parquet"),
            str(tmp_path / "bad.parquet"),
            "--out",
            str(tmp_path / "rep3"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: the synthetic table's columns do not match the real table's: missing x"
    ]
    assert not (tmp_path / "rep3").exists()


def test_detection_breakdown_names_what_gives_the_rows_away():
    from synthgen.evaluate import detection_breakdown

    real = mixed_table(1500, seed=3)
    fresh = mixed_table(1500, seed=7)
    # every column's own values, but y no longer follows x: only the pair gives the rows away
    broken = fresh.assign(y=fresh["y"].to_numpy()[np.random.default_rng(1).permutation(1500)])
    schema = infer_schema(real)
    same = detection_breakdown(real, fresh, schema, seed=0)
    odd = detection_breakdown(real, broken, schema, seed=0)
    assert same["c2st"]["folds"] == 5 and same["c2st"]["rows_per_side"] == 1500
    assert same["c2st"]["auc"] < 0.6 and odd["c2st"]["auc"] > 0.8
    assert max(c["auc"] for c in odd["columns"]) < 0.6  # no single column tells
    top = odd["pairs"][0]
    assert {top["column_1"], top["column_2"]} == {"x", "y"} and top["gain"] > 0.2
    assert odd["importance"][0]["column"] in ("x", "y")
    assert 0.0 <= odd["logistic_detection"]["score"] <= 1.0
    # in the report: the C2ST and LogisticDetection columns and the breakdown's section
    ev = evaluate(real, broken, schema=schema, seed=0)
    assert ev["detection"]["pairs"][0]["gain"] > 0.2
    page = render_html(
        {"dataset": "t", "models": {"vae": {"evaluation": ev, "published": True}}, "config": {}}
    )
    assert "What gives the rows away" in page and "C2ST AUC" in page and "x × y" in page


def test_logistic_detection_reads_a_category_only_the_synthetic_rows_hold():
    """Pooled "(rare)" values appear in synthetic rows only; SDMetrics' encoder, fitted on the
    real rows, used to refuse them and the metric went missing."""
    from synthgen.evaluate import _logistic_detection

    rng = np.random.default_rng(0)
    real = pd.DataFrame({"c": rng.choice(list("abcde"), 600), "x": rng.normal(size=600)})
    synthetic = real.sample(frac=1.0, random_state=1).reset_index(drop=True)
    synthetic.loc[:30, "c"] = "(rare)"
    out = _logistic_detection(real, synthetic, infer_schema(real))
    assert out.get("error") is None and 0.9 < out["score"] <= 1.0


def test_logistic_detection_scores_the_same_rows_the_same():
    """SDMetrics shuffles its folds with NumPy's global generator: the call seeds it (and puts the
    caller's state back), so a report's LogisticDetection does not move between runs."""
    from synthgen.evaluate import _logistic_detection

    real = mixed_table(800, seed=3)
    synthetic = mixed_table(800, seed=7)
    schema = infer_schema(real)
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    scores = {_logistic_detection(real, synthetic, schema, seed=0)["score"] for _ in range(4)}
    assert len(scores) == 1 and np.array_equal(np.random.get_state()[1], before)
    other = _logistic_detection(real, synthetic, schema, seed=1)["score"]
    assert 0.0 <= other <= 1.0
