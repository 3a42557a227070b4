"""How good and how safe a synthetic table is: fidelity (SDMetrics), detection, privacy and utility.

Works on any real/synthetic pair with the same columns, including tables other tools made.

- Fidelity: SDMetrics QualityReport (overall, Column Shapes, Column Pair Trends) and
  DiagnosticReport. Since sdmetrics 0.27 Column Pair Trends averages only the pairs whose real data
  shows a trend (|Pearson| > 0.5 or Cramer's V > 0.3); we report that official score, the score over
  all pairs (a generator that only copies marginals scores well on the first and badly on the
  second), and an "aligned" all-pairs score where numeric x categorical pairs bin both tables with
  the real data's bin edges (SDMetrics bins each table on its own min/max, so one real outlier can
  misalign every bin).
- Detection: a gradient-boosted classifier, cross-validated, real vs synthetic;
  1 = indistinguishable.
- Privacy: distance to the closest training record (DCR) with a nearest-neighbour index over the
  *whole* training set, for synthetic rows and, as the yardstick, for real holdout rows; exact
  copies; two membership-inference attacks (distance and density), each an AUC.
- Utility: train on synthetic, test on real holdout, against the same model trained on real.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from synthgen.encoders.datetime import datetimes_to_ns
from synthgen.errors import UserError
from synthgen.schema import ColumnSchema, Schema, infer_schema, parse_datetimes

log = logging.getLogger("synthgen")

TABLE = "table"
DEFAULT_MAX_ROWS = 50_000  # rows per side scored by SDMetrics and detection on large tables
DEFAULT_PRIVACY_ROWS = 10_000  # synthetic / holdout rows whose closest training record is searched
MIN_UTILITY_ROWS = 5  # rows with a known target on each side, or utility is not measured
# column pairs scored per table; wider tables score a seeded sample of pairs (the report says so)
MAX_PAIRS = 4_000
MAX_ASSOCIATION_COLUMNS = 40  # columns in the association matrices the report draws
DISTANCE_LEVELS = 64  # categories kept apart in the distance space (the rest count as one "other")
SDMETRICS_DCR_MAX_ROWS = 1_500  # SDMetrics' own DCR metrics cross-join in pandas: small tables only
SDMETRICS_DCR_MAX_COLUMNS = 100  # and loop over columns: narrow tables only
MIA_ROWS = 2_000  # members (training rows) and as many non-members (holdout rows) attacked
MIA_MIN_ROWS = 20  # fewer non-members: the attacks are not run
MIA_REFERENCE_ROWS = 20_000  # synthetic and reference rows the density attack estimates from
# the k of the k-nearest-neighbour density estimates: 1, the most local, where a model that
# memorized leaves its mark (k = 5 scored 0.60 against a generator that copies, k = 1 0.8+)
MIA_NEIGHBOURS = 1
AIA_NEIGHBOURS = 5  # synthetic rows whose sensitive value the attribute attacker takes a vote of


def evaluate(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    holdout: pd.DataFrame | None = None,
    target: str | None = None,
    schema: Schema | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    privacy_rows: int = DEFAULT_PRIVACY_ROWS,
    seed: int = 0,
    gate: dict[str, float] | None = None,
    detection: bool = True,
    sensitive: str | None = None,
) -> dict[str, Any]:
    """Score `synthetic` against the `real` rows it was learned from. Every figure is JSON-ready.
    `sensitive`: the column an attribute-inference attack tries to learn (default: `target`)."""
    import sdmetrics

    started = time.perf_counter()
    schema = schema or infer_schema(real)
    synthetic = _aligned_columns(real, synthetic, "synthetic")
    if holdout is not None:
        holdout = _aligned_columns(real, holdout, "holdout")
    if target is not None and target not in real.columns:
        raise UserError(f"target column {target!r} is not in the table")
    if sensitive is not None and sensitive not in real.columns:
        raise UserError(f"sensitive column {sensitive!r} is not in the table")
    scored = [c.name for c in schema.columns if c.modelled]
    real_s, synth_s = _sample(real, max_rows, seed), _sample(synthetic, max_rows, seed + 1)
    result: dict[str, Any] = {
        "sdmetrics_version": sdmetrics.__version__,
        "rows": {
            "real": len(real),
            "synthetic": len(synthetic),
            "holdout": None if holdout is None else len(holdout),
            "scored_real": len(real_s),
            "scored_synthetic": len(synth_s),
            "sampled": len(real_s) < len(real) or len(synth_s) < len(synthetic),
            "max_rows": max_rows,
            "seed": seed,
        },
        "columns_scored": scored,
    }
    timings = {}
    t0 = time.perf_counter()
    log.info(
        "evaluating fidelity with SDMetrics on %d real and %d synthetic rows",
        len(real_s),
        len(synth_s),
    )
    result["quality"] = quality(real_s, synth_s, schema, seed=seed)
    result["diagnostic"] = diagnostic(real_s, synth_s, schema)
    result["distributions"] = distributions(real_s, synth_s, schema)
    result["associations"] = {
        "real": associations(real_s, schema),
        "synthetic": associations(synth_s, schema, like=real_s),
    }
    timings["fidelity"] = time.perf_counter() - t0
    if detection:
        t0 = time.perf_counter()
        log.info("evaluating detection (gradient-boosted classifier, real vs synthetic)")
        result["detection"] = detection_score(real_s, synth_s, schema, seed=seed)
        result["detection"].update(detection_breakdown(real_s, synth_s, schema, seed=seed))
        timings["detection"] = time.perf_counter() - t0
    if holdout is not None:
        t0 = time.perf_counter()
        log.info("evaluating privacy: distance to the closest of %d training rows", len(real))
        result["privacy"] = privacy(
            real,
            synthetic,
            holdout,
            schema,
            query_rows=privacy_rows,
            seed=seed,
            sensitive=sensitive or target,
        )
        timings["privacy"] = time.perf_counter() - t0
        if target is not None:
            t0 = time.perf_counter()
            log.info(
                "evaluating utility: train on synthetic, test on real holdout (target %r)", target
            )
            measured = utility(
                real, synthetic, holdout, schema, target, max_rows=max(max_rows, 100_000), seed=seed
            )
            result["utility" if "skipped" not in measured else "utility_skipped"] = measured
            timings["utility"] = time.perf_counter() - t0
    result["privacy_gate"] = privacy_gate(result.get("privacy"), gate)
    timings["total"] = time.perf_counter() - started
    result["seconds"] = {k: round(v, 2) for k, v in timings.items()}
    return result


# --------------------------------------------------------------------------------------------------
# Input checks and sampling


def _aligned_columns(real: pd.DataFrame, other: pd.DataFrame, what: str) -> pd.DataFrame:
    if len(other) == 0:
        raise UserError(f"the {what} table has no rows")
    missing, extra = (
        [c for c in real.columns if c not in other.columns],
        [c for c in other.columns if c not in real.columns],
    )
    if missing or extra:
        parts = ([f"missing {', '.join(map(str, missing))}"] if missing else []) + (
            [f"extra {', '.join(map(str, extra))}"] if extra else []
        )
        raise UserError(
            f"the {what} table's columns do not match the real table's: {'; '.join(parts)}"
        )
    return other[list(real.columns)].reset_index(drop=True)


def _sample(df: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    if rows is None or len(df) <= rows:
        return df.reset_index(drop=True)
    return df.sample(n=rows, random_state=seed).reset_index(drop=True)


def _sdv_frames(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema
) -> tuple[dict, dict, dict]:
    """The tables as SDMetrics reads them: the columns it scores, numbers as floats (infinities as
    missing, which SDMetrics cannot bin) and datetimes as datetimes."""
    meta = schema.to_metadata()
    meta["columns"] = {
        k: v for k, v in meta["columns"].items() if v["sdtype"] not in ("id", "text", "unknown")
    }
    meta.pop("primary_key", None)
    cols = list(meta["columns"])

    def frame(df: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for name in cols:
            col = schema[name]
            if col.kind == "numerical":
                x = _as_number(df[name], col)
                out[name] = np.where(np.isfinite(x), x, np.nan)
            elif col.kind == "datetime" and col.object_values == "date":
                out[name] = parse_datetimes(df[name], None)
            else:
                out[name] = df[name]
        return pd.DataFrame(out, index=df.index)

    return {TABLE: frame(real)}, {TABLE: frame(synthetic)}, {"tables": {TABLE: meta}}


# --------------------------------------------------------------------------------------------------
# Fidelity


def quality(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: Schema,
    *,
    seed: int = 0,
    max_pairs: int | None = None,
) -> dict[str, Any]:
    """SDMetrics QualityReport: official scores, plus Column Pair Trends over all pairs and aligned.

    A table of more than `max_pairs` (MAX_PAIRS) column pairs scores a seeded sample of that many
    pairs with SDMetrics' own Column Pair Trends property (`pairs_scored` says how many); Column
    Shapes covers every column.
    """
    real_d, synth_d, meta = _sdv_frames(real, synthetic, schema)
    n_columns = len(meta["tables"][TABLE]["columns"])
    n_pairs = n_columns * (n_columns - 1) // 2
    max_pairs = MAX_PAIRS if max_pairs is None else max_pairs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_pairs <= max_pairs:
            shapes, pairs_official, pairs_all, overall, props = _quality_all_pairs(
                real_d, synth_d, meta
            )
        else:
            log.info(
                "%d columns make %d pairs: scoring pair trends on a seeded sample of %d",
                n_columns,
                n_pairs,
                max_pairs,
            )
            shapes, pairs_official, pairs_all, overall, props = _quality_sampled_pairs(
                real_d,
                synth_d,
                meta,
                _sampled_pairs(list(meta["tables"][TABLE]["columns"]), max_pairs, seed),
            )
    counted = (
        pairs_official.set_index(["Column 1", "Column 2"])["Meets Threshold?"]
        .astype("boolean")
        .fillna(False)
    )
    pairs_all["Meets Threshold?"] = [
        bool(counted.get((a, b), False))
        for a, b in zip(pairs_all["Column 1"], pairs_all["Column 2"], strict=False)
    ]
    pairs_all["Real Association"] = (
        pairs_official.set_index(["Column 1", "Column 2"])["Real Association"]
        .reindex(list(zip(pairs_all["Column 1"], pairs_all["Column 2"], strict=False)))
        .to_numpy()
    )
    pairs_all["Aligned Score"] = _aligned_pair_scores(
        real_d[TABLE], synth_d[TABLE], pairs_all, schema
    )
    columns = [
        {"column": r["Column"], "metric": r["Metric"], "score": _num(r["Score"])}
        for _, r in shapes.iterrows()
    ]
    pairs = [
        {
            "column_1": r["Column 1"],
            "column_2": r["Column 2"],
            "metric": r["Metric"],
            "score": _num(r["Score"]),
            "score_aligned": _num(r["Aligned Score"]),
            "real_correlation": _num(r.get("Real Correlation")),
            "synthetic_correlation": _num(r.get("Synthetic Correlation")),
            "real_association": _num(r.get("Real Association")),
            "counted": bool(r["Meets Threshold?"]),
        }
        for _, r in pairs_all.iterrows()
    ]
    return {
        "overall": _num(overall),
        "column_shapes": _num(props.get("Column Shapes")),
        "column_pair_trends": _num(props.get("Column Pair Trends")),
        "column_pair_trends_all_pairs": _num(pairs_all["Score"].mean()),
        "column_pair_trends_aligned": _num(pairs_all["Aligned Score"].mean()),
        "pairs_counted": int(pairs_all["Meets Threshold?"].sum()),
        "pairs_total": n_pairs,
        "pairs_scored": len(pairs_all),
        "columns": sorted(
            columns, key=lambda c: (c["score"] is None, c["score"] if c["score"] is not None else 0)
        ),
        "pairs": pairs,
    }


def _quality_all_pairs(real_d: dict, synth_d: dict, meta: dict) -> tuple:
    """SDMetrics' QualityReport twice: its official scores, and Column Pair Trends over every
    pair."""
    from sdmetrics.reports import QualityReport

    official = QualityReport()
    official.generate(real_d, synth_d, meta, verbose=False)
    all_pairs = QualityReport()
    all_pairs.real_correlation_threshold = 0
    all_pairs.real_association_threshold = 0
    all_pairs.generate(real_d, synth_d, meta, verbose=False)
    props = official.get_properties().set_index("Property")["Score"]
    return (
        official.get_details("Column Shapes"),
        official.get_details("Column Pair Trends"),
        all_pairs.get_details("Column Pair Trends").copy(),
        official.get_score(),
        props,
    )


def _quality_sampled_pairs(
    real_d: dict, synth_d: dict, meta: dict, pairs: list[tuple[str, str]]
) -> tuple:
    """The same figures from SDMetrics' two properties, with Column Pair Trends on `pairs` only."""
    from sdmetrics.reports.single_table._properties import ColumnPairTrends, ColumnShapes
    from sdmetrics.reports.utils import (
        DEFAULT_REAL_ASSOCIATION_THRESHOLD,
        DEFAULT_REAL_CORRELATION_THRESHOLD,
    )

    table_meta = meta["tables"][TABLE]
    shapes = ColumnShapes()
    shapes_score = shapes.get_score(real_d[TABLE], synth_d[TABLE], table_meta)
    details = {}
    for name, corr, assoc in (
        ("official", DEFAULT_REAL_CORRELATION_THRESHOLD, DEFAULT_REAL_ASSOCIATION_THRESHOLD),
        ("all", 0, 0),
    ):
        trends = ColumnPairTrends()
        trends.real_correlation_threshold, trends.real_association_threshold = corr, assoc
        trends.details = trends._generate_details(
            real_d[TABLE], synth_d[TABLE], table_meta, column_pairs=pairs
        )
        details[name] = (trends, trends._compute_average())
    trends_score = details["official"][1]
    scores = [x for x in (shapes_score, trends_score) if x is not None and np.isfinite(x)]
    props = pd.Series({"Column Shapes": shapes_score, "Column Pair Trends": trends_score})
    return (
        shapes.details,
        details["official"][0].details,
        details["all"][0].details.copy(),
        float(np.mean(scores)) if scores else np.nan,
        props,
    )


def _sampled_pairs(columns: list[str], k: int, seed: int) -> list[tuple[str, str]]:
    """`k` distinct column pairs (i < j), drawn without replacement with `seed`, in table order."""
    n = len(columns)
    total = n * (n - 1) // 2
    flat = np.sort(np.random.default_rng(seed).choice(total, size=min(k, total), replace=False))
    # flat index -> (i, j): pairs are numbered row by row of the upper triangle
    starts = np.cumsum([0] + [n - 1 - i for i in range(n - 1)])
    i = np.searchsorted(starts, flat, side="right") - 1
    j = flat - starts[i] + i + 1
    return [(columns[a], columns[b]) for a, b in zip(i, j, strict=False)]


def _aligned_pair_scores(
    real: pd.DataFrame, synthetic: pd.DataFrame, pairs: pd.DataFrame, schema: Schema
) -> list:
    """Numeric x categorical pairs scored with the real data's bin edges for both tables."""
    from sdmetrics.column_pairs import ContingencySimilarity

    continuous = {c.name for c in schema.columns if c.kind in ("numerical", "datetime")}
    binned_real, binned_synth = {}, {}
    for name in continuous:
        if name in real.columns:
            r, s = _as_number(real[name], schema[name]), _as_number(synthetic[name], schema[name])
            edges = _bin_edges(r, 10)
            binned_real[name], binned_synth[name] = _digitize(r, edges), _digitize(s, edges)
    scores = []
    for _, row in pairs.iterrows():
        a, b = row["Column 1"], row["Column 2"]
        if (a in continuous) == (b in continuous):
            scores.append(row["Score"])
            continue
        ra = binned_real[a] if a in continuous else real[a].astype(object)
        rb = binned_real[b] if b in continuous else real[b].astype(object)
        sa = binned_synth[a] if a in continuous else synthetic[a].astype(object)
        sb = binned_synth[b] if b in continuous else synthetic[b].astype(object)
        try:
            scores.append(
                ContingencySimilarity.compute(
                    pd.DataFrame({a: ra, b: rb}), pd.DataFrame({a: sa, b: sb})
                )
            )
        except Exception:
            # a pair SDMetrics cannot score stays unscored, as in its own report
            scores.append(np.nan)
    return scores


def _bin_edges(x: np.ndarray, bins: int) -> np.ndarray:
    """`bins` equal-width bins over the finite values of `x` (fewer where the range is too narrow
    for float64: integers near 2**63), always at least one."""
    finite = x[np.isfinite(x)]
    if not len(finite):
        return np.array([0.0, 1.0])
    edges = np.unique(np.linspace(finite.min(), finite.max(), bins + 1))
    return edges if len(edges) > 1 else np.array([edges[0], edges[0] + 1.0])


def _digitize(values: np.ndarray, edges: np.ndarray) -> pd.Series:
    codes = np.digitize(values, edges).astype(object)
    codes[np.isnan(values)] = None
    return pd.Series(codes)


def diagnostic(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict[str, Any]:
    from sdmetrics.reports import DiagnosticReport

    real_d, synth_d, meta = _sdv_frames(real, synthetic, schema)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = DiagnosticReport()
        report.generate(real_d, synth_d, meta, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return {
        "data_validity": _num(props.get("Data Validity")),
        "data_structure": _num(props.get("Data Structure")),
        "overall": _num(report.get_score()),
    }


# --------------------------------------------------------------------------------------------------
# Features for the tree models and the distances


def _as_number(s: pd.Series, col) -> np.ndarray:
    if col.kind == "datetime":  # seconds since the epoch, UTC
        ns, missing = datetimes_to_ns(s, col.datetime_format)
        return np.where(missing, np.nan, ns.astype(np.float64) / 1e9)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


class _Features:
    """Column-wise numeric features fitted on the real (training) table.

    Numbers stay numbers (missing as NaN); categories become codes of the real table's most frequent
    values (the rest share one code), as tree models take them.
    """

    def __init__(
        self,
        real: pd.DataFrame,
        schema: Schema,
        exclude: tuple[str, ...] = (),
        max_levels: int = 250,
    ) -> None:
        self.columns = [c for c in schema.columns if c.modelled and c.name not in exclude]
        self.levels: dict[str, pd.Index] = {}
        self.ranges: dict[str, tuple[float, float]] = {}
        for col in self.columns:
            if col.kind in ("categorical", "text"):
                top = real[col.name].astype(object).value_counts().index[: max_levels - 1]
                self.levels[col.name] = pd.Index(top)
            else:
                x = _as_number(real[col.name], col)
                x = x[np.isfinite(x)]
                lo, hi = (float(x.min()), float(x.max())) if len(x) else (0.0, 1.0)
                with np.errstate(over="ignore"):
                    # inf for a range past float64's (-1e308 to 1e308): then half of it, twice
                    span = hi - lo
                self.ranges[col.name] = (
                    lo,
                    span
                    if np.isfinite(span) and span > 0
                    else (hi / 2 - lo / 2 if hi > lo else 1.0),
                )

    @property
    def categorical_mask(self) -> list[bool]:
        return [c.name in self.levels for c in self.columns]

    def codes(self, df: pd.DataFrame) -> np.ndarray:
        """(rows, columns) float matrix for tree models: category codes, NaN for missing."""
        out = np.empty((len(df), len(self.columns)))
        for j, col in enumerate(self.columns):
            if col.name in self.levels:
                values = df[col.name].astype(object)
                code = self.levels[col.name].get_indexer(values).astype(np.float64)
                code[code < 0] = len(self.levels[col.name])  # other
                code[values.isna().to_numpy()] = np.nan
                out[:, j] = code
            else:
                out[:, j] = self._finite(df[col.name], col)
        return out

    def _finite(self, s: pd.Series, col) -> np.ndarray:
        """Numbers with infinities as values one range beyond the real data's (tree models take no
        infinity)."""
        lo, span = self.ranges[col.name]
        x = _as_number(s, col)
        big = np.finfo(np.float64).max
        return np.where(
            np.isposinf(x),
            min(lo + 2 * span, big),
            np.where(np.isneginf(x), max(lo - span, -big), x),
        )

    def distance_space(self, df: pd.DataFrame) -> np.ndarray:
        """Rows as points where the squared distance sums, per column: (difference / range)^2 for
        numbers, 1 for a different category, 1 when exactly one of two cells is missing."""
        blocks = []
        for col in self.columns:
            if col.name in self.levels:
                values = df[col.name].astype(object)
                code = self.levels[col.name].get_indexer(values)
                code[code < 0] = len(self.levels[col.name])
                code[values.isna().to_numpy()] = len(self.levels[col.name]) + 1
                onehot = np.zeros((len(df), len(self.levels[col.name]) + 2), dtype=np.float32)
                onehot[np.arange(len(df)), code] = np.sqrt(0.5)
                blocks.append(onehot)
            else:
                lo, span = self.ranges[col.name]
                with np.errstate(over="ignore", invalid="ignore"):
                    x = np.clip((self._finite(df[col.name], col) - lo) / span, -1.0, 2.0)
                missing = np.isnan(x)
                blocks.append(
                    np.stack([np.where(missing, 0.0, x), missing.astype(np.float64)], 1).astype(
                        np.float32
                    )
                )
        return np.concatenate(blocks, axis=1)


# --------------------------------------------------------------------------------------------------
# What the report plots: marginals and pairwise associations, as compact JSON


def distributions(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, bins: int = 30, top: int = 20
) -> dict[str, dict[str, Any]]:
    """Per column, real and synthetic shares on the same support: histogram bins cut on the real
    data, or the real data's most frequent categories (+ other). Missing cells are their own
    share."""
    out = {}
    for col in schema.columns:
        if not col.modelled:
            continue
        r, s = real[col.name], synthetic[col.name]
        entry: dict[str, Any] = {
            "kind": col.kind,
            "missing": [float(r.isna().mean()), float(s.isna().mean())],
        }
        if col.kind in ("numerical", "datetime"):
            rx, sx = _as_number(r, col), _as_number(s, col)
            rx, sx = rx[~np.isnan(rx)], sx[~np.isnan(sx)]  # infinities fall in the outer bins
            edges = _bin_edges(rx, bins)
            entry.update(
                type="histogram",
                edges=edges.tolist(),
                real=_shares(np.histogram(np.clip(rx, edges[0], edges[-1]), edges)[0]),
                synthetic=_shares(np.histogram(np.clip(sx, edges[0], edges[-1]), edges)[0]),
                datetime=col.kind == "datetime",
            )
        else:
            counts = r.astype(object).value_counts(normalize=True)
            labels = [str(v) for v in counts.index[:top]]
            sc = s.dropna().astype(object).astype(str).value_counts(normalize=True)
            rc = r.dropna().astype(object).astype(str).value_counts(normalize=True)
            entry.update(
                type="bar",
                labels=labels + (["(other)"] if len(counts) > top else []),
                real=[float(rc.get(v, 0.0)) for v in labels],
                synthetic=[float(sc.get(v, 0.0)) for v in labels],
            )
            if len(counts) > top:
                entry["real"].append(float(rc.drop(labels, errors="ignore").sum()))
                entry["synthetic"].append(float(sc.drop(labels, errors="ignore").sum()))
        out[col.name] = entry
    return out


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return (counts / total).tolist() if total else counts.astype(float).tolist()


def associations(
    df: pd.DataFrame, schema: Schema, like: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Pairwise association matrix: Pearson correlation for two numbers, Cramer's V otherwise
    (numbers cut into the deciles of `like`, the real table, so both tables are cut the same way).
    Of a wide table, the first MAX_ASSOCIATION_COLUMNS columns."""
    like = df if like is None else like
    modelled = [c for c in schema.columns if c.modelled]
    # a picture of a few dozen columns; wider tables show their first
    cols = modelled[:MAX_ASSOCIATION_COLUMNS]
    numeric, binned = {}, {}
    for col in cols:
        if col.kind in ("numerical", "datetime"):
            x, ref = _as_number(df[col.name], col), _as_number(like[col.name], col)
            numeric[col.name] = np.where(np.isfinite(x), x, np.nan)
            ref = ref[np.isfinite(ref)]
            edges = (
                np.unique(np.quantile(ref, np.linspace(0, 1, 11))) if len(ref) else np.array([0.0])
            )
            codes = np.digitize(x, edges[1:-1]).astype(float)
            codes[np.isnan(x)] = -1
            binned[col.name] = codes
        else:
            binned[col.name] = pd.factorize(df[col.name].astype(object), use_na_sentinel=False)[
                0
            ].astype(float)
    names = [c.name for c in cols]
    matrix = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = names[i], names[j]
            if a in numeric and b in numeric:
                ok = ~np.isnan(numeric[a]) & ~np.isnan(numeric[b])
                # a constant column has no correlation
                with np.errstate(divide="ignore", invalid="ignore"):
                    value = (
                        np.corrcoef(numeric[a][ok], numeric[b][ok])[0, 1]
                        if ok.sum() > 2
                        else np.nan
                    )
            else:
                value = _cramers_v(binned[a], binned[b])
            matrix[i, j] = matrix[j, i] = 0.0 if not np.isfinite(value) else value
    return {
        "columns": names,
        "matrix": np.round(matrix, 4).tolist(),
        "columns_total": len(modelled),
    }


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    n = table.sum()
    if n == 0 or min(table.shape) < 2:
        return 0.0
    expected = table.sum(1, keepdims=True) @ table.sum(0, keepdims=True) / n
    chi2 = np.sum((table - expected) ** 2 / np.where(expected > 0, expected, 1))
    return float(np.sqrt(chi2 / n / (min(table.shape) - 1)))


# --------------------------------------------------------------------------------------------------
# Detection, privacy, utility


def detection_score(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, *, seed: int = 0, folds: int = 3
) -> dict[str, Any]:
    """Can a gradient-boosted classifier tell synthetic rows from real ones?
    score = 1 - (2 * max(AUC, .5) - 1)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    n = min(len(real), len(synthetic))
    real, synthetic, feats, x, y = _detection_data(real, synthetic, schema, n, seed)
    model = HistGradientBoostingClassifier(
        categorical_features=feats.categorical_mask, random_state=seed
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    aucs = cross_val_score(model, x, y, cv=cv, scoring="roc_auc")
    auc = float(np.mean(aucs))
    return {
        "auc": auc,
        "score": 1.0 - (2.0 * max(auc, 0.5) - 1.0),
        "auc_folds": [float(a) for a in aucs],
        "rows_per_side": n,
        "model": "HistGradientBoostingClassifier",
        "folds": folds,
    }


C2ST_ROWS, C2ST_FOLDS = 20_000, 5  # the classifier two-sample test TabSyn and TabDiff publish
RATIO_BINS = 20  # a number's bins (real quantiles) for the per-column and per-pair AUCs
PAIR_COLUMNS = 8  # pairs are scored among the columns that give the rows away most on their own
IMPORTANCE_COLUMNS = 30  # columns whose permutation importance is measured
SHOWN = 10  # columns, pairs and features the breakdown keeps


def _detection_data(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, n: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, _Features, np.ndarray, np.ndarray]:
    """n seeded rows of each table, the features fitted on the real ones, the stacked feature
    matrix (real rows first) and the labels (1: synthetic), as the detection classifiers read
    them."""
    real, synthetic = _sample(real, n, seed), _sample(synthetic, n, seed + 1)
    feats = _Features(real, schema)
    x = _sparse_missing_filled(
        np.concatenate([feats.codes(real), feats.codes(synthetic)]), feats.categorical_mask
    )
    return real, synthetic, feats, x, np.r_[np.zeros(n), np.ones(n)]


def detection_breakdown(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, *, seed: int = 0
) -> dict[str, Any]:
    """What gives synthetic rows away, on up to C2ST_ROWS rows per side:
    - `c2st`: a gradient-boosted classifier's AUC over C2ST_FOLDS folds (real vs synthetic);
    - `logistic_detection`: SDMetrics' LogisticDetection (what TabSyn and TabDiff publish as C2ST);
    - `columns`: each column's own AUC, out of fold, from the ratio of its real and synthetic
      histograms (the best one-column classifier), the highest first;
    - `pairs`: the same on pairs of the most telling columns, with `gain` over the better column
      alone (what only the joint structure gives away);
    - `importance`: the boosted classifier's AUC lost on its last fold when one column is shuffled.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    n = min(len(real), len(synthetic), C2ST_ROWS)
    real, synthetic, feats, x, y = _detection_data(real, synthetic, schema, n, seed)
    if n < C2ST_FOLDS or not feats.columns:  # too few rows for the folds, or nothing to compare
        return {}
    names = [c.name for c in feats.columns]
    folds = list(StratifiedKFold(C2ST_FOLDS, shuffle=True, random_state=seed).split(x, y))
    aucs, model = [], None
    for train_i, test_i in folds:
        model = HistGradientBoostingClassifier(
            categorical_features=feats.categorical_mask, random_state=seed
        ).fit(x[train_i], y[train_i])
        aucs.append(float(roc_auc_score(y[test_i], model.predict_proba(x[test_i])[:, 1])))
    keys = [_bin_keys(x[:, j], is_cat, n) for j, is_cat in enumerate(feats.categorical_mask)]
    single = [_ratio_auc(k, y, folds) for k in keys]
    order = np.argsort(single)[::-1]
    top = order[:PAIR_COLUMNS]
    pairs = []
    for i, a in enumerate(top):
        for b in top[i + 1 :]:
            joint = keys[a] * (keys[b].max() + 1) + keys[b]
            auc = _ratio_auc(joint, y, folds)
            pairs.append(
                {
                    "column_1": names[a],
                    "column_2": names[b],
                    "auc": auc,
                    "gain": auc - max(single[a], single[b]),
                }
            )
    test_i = folds[-1][1]
    base = aucs[-1]
    rng = np.random.default_rng(seed)
    importance = []
    for j in order[:IMPORTANCE_COLUMNS]:
        shuffled = x[test_i].copy()
        shuffled[:, j] = shuffled[rng.permutation(len(test_i)), j]
        lost = base - roc_auc_score(y[test_i], model.predict_proba(shuffled)[:, 1])
        importance.append({"column": names[j], "auc_lost": float(lost)})
    return {
        "c2st": {
            "auc": float(np.mean(aucs)),
            "auc_folds": aucs,
            "rows_per_side": n,
            "folds": C2ST_FOLDS,
            "model": "HistGradientBoostingClassifier",
        },
        "logistic_detection": _logistic_detection(real, synthetic, schema, seed),
        "columns": [{"column": names[j], "auc": single[j]} for j in order[:SHOWN]],
        "pairs": sorted(pairs, key=lambda p: -p["gain"])[:SHOWN],
        "importance": sorted(importance, key=lambda r: -r["auc_lost"])[:SHOWN],
    }


def _bin_keys(v: np.ndarray, categorical: bool, n: int) -> np.ndarray:
    """Integer keys of a feature's values: category codes, or the real rows' quantile bins for a
    number (the first n rows are the real ones); missing values get a key of their own."""
    missing = ~np.isfinite(v)
    if categorical:
        keys = np.where(missing, -1, v).astype(np.int64)
    else:
        known = v[:n][~missing[:n]]
        edges = (
            np.unique(np.quantile(known, np.linspace(0, 1, RATIO_BINS + 1)[1:-1]))
            if len(known)
            else np.array([])
        )
        keys = np.searchsorted(edges, np.where(missing, 0.0, v)).astype(np.int64)
        keys[missing] = -1
    return np.unique(keys, return_inverse=True)[1].astype(np.int64)


def _ratio_auc(keys: np.ndarray, y: np.ndarray, folds: list) -> float:
    """Out-of-fold AUC of the share of synthetic rows in each key's cell (add-one smoothed)."""
    from sklearn.metrics import roc_auc_score

    size = int(keys.max()) + 1
    scores = np.empty(len(y))
    for train_i, test_i in folds:
        synth = np.bincount(keys[train_i], weights=y[train_i], minlength=size)
        total = np.bincount(keys[train_i], minlength=size)
        scores[test_i] = ((synth + 1) / (total + 2))[keys[test_i]]
    return float(roc_auc_score(y, scores))


def _logistic_detection(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int = 0
) -> dict:
    """SDMetrics' LogisticDetection: 1 - (2 * max(AUC, .5) - 1) of a logistic regression. Its folds
    are shuffled by NumPy's global generator, so that is seeded for the call (and put back): the
    same rows score the same."""
    from sdmetrics.single_table import LogisticDetection

    real_d, synth_d, meta = _sdv_frames(real, synthetic, schema)
    # its encoder is fitted on the real rows and refuses a category they lack (pooled "(rare)"
    # values, a missing value): such a value is passed as the real column's most common one
    for name, col in meta["tables"][TABLE]["columns"].items():
        if col.get("sdtype") == "categorical":
            a, b = real_d[TABLE][name], synth_d[TABLE][name]
            unseen = ~b.astype(str).isin(set(a.astype(str)))
            if unseen.any() and a.notna().any():
                synth_d[TABLE][name] = b.astype(object).where(~unseen, a.mode().iloc[0])
    state = np.random.get_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            np.random.seed(seed)
            score = float(
                LogisticDetection.compute(real_d[TABLE], synth_d[TABLE], meta["tables"][TABLE])
            )
        except Exception as exc:  # a table SDMetrics cannot encode: the rest of the report stands
            log.warning("SDMetrics' LogisticDetection failed: %s", str(exc).splitlines()[0][:200])
            return {"score": None, "auc": None, "error": str(exc).splitlines()[0][:200]}
        finally:
            np.random.set_state(state)
    return {"score": score, "auc": 1.0 - score / 2.0, "metric": "sdmetrics LogisticDetection"}


SPARSE_FEATURE_VALUES = 20  # features with fewer known values get a value for "missing" (see below)


def _sparse_missing_filled(x: np.ndarray, categorical: list[bool]) -> np.ndarray:
    """Features known on fewer than SPARSE_FEATURE_VALUES rows, with missing cells set to a value of
    their own (below every known number, or a category code past the others): scikit-learn's
    gradient boosting fails on a feature with no known value in a fold's training rows, and such a
    value splits off the same rows as its missing-value branch would."""
    known = np.isfinite(x).sum(0)
    sparse = np.flatnonzero(known < SPARSE_FEATURE_VALUES)
    if not len(sparse):
        return x
    x = x.copy()
    for j in sparse:
        col = x[:, j]
        if categorical[j]:
            col[np.isnan(col)] = np.nanmax(col) + 1 if known[j] else 0.0
        else:
            col[np.isnan(col)] = np.nanmin(col) - 1.0 if known[j] else 0.0
    return x


def _row_keys(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A hash per row over `columns`, equal for equal rows whatever the dtypes
    (1 == 1.0, 'a' == 'a')."""
    normalized = pd.DataFrame({c: _normalized(df[c]) for c in columns})
    return pd.util.hash_pandas_object(normalized, index=False).to_numpy()


def _normalized(s: pd.Series) -> pd.Series:
    if (
        ptypes.is_bool_dtype(s.dtype)
        or isinstance(s.dtype, pd.CategoricalDtype)
        or s.dtype == object
    ):
        return s.astype(object).where(s.notna(), None).astype(str)
    if ptypes.is_numeric_dtype(s.dtype):
        return pd.to_numeric(s).astype("float64")
    return s.astype(str)


def privacy(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: Schema,
    *,
    query_rows: int = DEFAULT_PRIVACY_ROWS,
    seed: int = 0,
    sensitive: str | None = None,
) -> dict[str, Any]:
    """Distance to closest training record (DCR) of synthetic rows against real holdout rows,
    copies, and the membership- and attribute-inference attacks."""
    from sklearn.neighbors import NearestNeighbors

    feats = _Features(train, schema, max_levels=DISTANCE_LEVELS)
    train_x = feats.distance_space(train)
    synth_q, hold_q = (
        _sample(synthetic, query_rows, seed + 2),
        _sample(holdout, query_rows, seed + 3),
    )
    synth_x = feats.distance_space(synth_q)
    index = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(train_x)
    d_synth = index.kneighbors(synth_x)[0][:, 0]
    d_hold = index.kneighbors(feats.distance_space(hold_q))[0][:, 0]
    # closer to a training row than to any holdout row? Against a training subset of the holdout's
    # size, so that 50% is what a generator that never saw the training rows would score.
    subset = _sample(train, len(holdout), seed + 4)
    near_train = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(
        feats.distance_space(subset)
    )
    near_hold = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(
        feats.distance_space(holdout)
    )
    closer = float(
        np.mean(near_train.kneighbors(synth_x)[0][:, 0] < near_hold.kneighbors(synth_x)[0][:, 0])
    )
    columns = [c.name for c in feats.columns]
    train_keys = set(_row_keys(train, columns).tolist())
    copies = float(np.isin(_row_keys(synthetic, columns), list(train_keys)).mean())
    natural = float(np.isin(_row_keys(holdout, columns), list(train_keys)).mean())
    median_s, median_h = float(np.median(d_synth)), float(np.median(d_hold))
    result = {
        "dcr_synthetic": _quantiles(d_synth),
        "dcr_holdout": _quantiles(d_hold),
        "dcr_ratio": median_s / median_h
        if median_h > 0
        else (1.0 if median_s == 0 else float("inf")),
        "dcr_zero_share_synthetic": float(np.mean(d_synth == 0)),
        "dcr_zero_share_holdout": float(np.mean(d_hold == 0)),
        "closer_to_train_share": closer,
        "exact_copy_share": copies,
        "holdout_copy_share": natural,
        "query_rows": {"synthetic": len(synth_q), "holdout": len(hold_q)},
        "train_rows": len(train),
        "histogram": _histograms(d_synth, d_hold),
        "distance": (
            "euclidean over columns: (difference / training range) for numbers, "
            "1 for another category or missingness"
        ),
    }
    result["sdmetrics_dcr"] = _sdmetrics_dcr(train, synthetic, holdout, schema, seed)
    result["membership_inference"] = membership_inference(
        train, synthetic, holdout, schema, seed=seed, feats=feats
    )
    if sensitive is not None and schema[sensitive].modelled:
        result["attribute_inference"] = attribute_inference(
            train, synthetic, holdout, schema, sensitive, seed=seed
        )
    return result


def attribute_inference(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: Schema,
    sensitive: str,
    *,
    rows: int = MIA_ROWS,
    seed: int = 0,
) -> dict[str, Any]:
    """An attacker who knows every other column of a person's row looks up the AIA_NEIGHBOURS
    nearest synthetic rows and guesses the sensitive value they hold most, nearer rows weighing
    more (numbers: which of five quantile bins). The risk is what the guess gains on training rows
    (members) over real rows the model never saw: what the model gives away about its training
    rows beyond what it learned of the population (the idea of SDMetrics' CAP metrics, scored
    against non-members)."""
    from sklearn.neighbors import NearestNeighbors

    m = min(rows, len(train), len(holdout))
    if m < MIA_MIN_ROWS:
        return {"skipped": f"{len(holdout)} holdout rows are too few to attack with"}
    feats = _Features(train, schema, exclude=(sensitive,), max_levels=DISTANCE_LEVELS)
    if not feats.columns:
        return {"skipped": "no other column to attack with"}
    label = _labeller(train[sensitive], schema[sensitive])
    reference = _sample(synthetic, MIA_REFERENCE_ROWS, seed + 10)
    k = min(AIA_NEIGHBOURS, len(reference))
    index = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(feats.distance_space(reference))
    known = label(reference[sensitive])

    def accuracy(targets: pd.DataFrame) -> float:
        distance, near = index.kneighbors(feats.distance_space(targets))  # (m, k)
        weight = 1.0 / (distance + 1e-6)  # nearer rows count more; an equal row settles it
        votes = np.zeros((len(near), int(known.max()) + 1))
        np.add.at(votes, (np.arange(len(near))[:, None], known[near]), weight)
        guess = votes.argmax(1)
        return float(np.mean(guess == label(targets[sensitive])))

    members = accuracy(_sample(train, m, seed + 11))
    non_members = accuracy(_sample(holdout, m, seed + 12))
    baseline = float(np.bincount(label(train[sensitive])).max() / len(train))
    return {
        "column": sensitive,
        "accuracy_members": members,
        "accuracy_non_members": non_members,
        "majority_baseline": baseline,
        "advantage": members - non_members,
        "targets": m,
        "neighbours": k,
        "note": "the attacker knows every other column; advantage 0: the rows give away nothing "
        "about training rows that they do not about anyone",
    }


def _labeller(values: pd.Series, col: ColumnSchema):
    """Values -> small integer labels: categories (missing as one), or numbers' quintile bins."""
    if col.kind in ("numerical", "datetime"):
        x = _as_number(values, col)
        edges = np.unique(np.nanquantile(x, [0.2, 0.4, 0.6, 0.8])) if np.isfinite(x).any() else []

        def label(s: pd.Series) -> np.ndarray:
            v = _as_number(s, col)
            return np.where(np.isnan(v), len(edges) + 1, np.searchsorted(edges, v))

        return label
    levels = pd.Index(values.astype(object).where(values.notna(), None).astype(str).unique())

    def label(s: pd.Series) -> np.ndarray:
        codes = levels.get_indexer(s.astype(object).where(s.notna(), None).astype(str))
        return np.where(codes < 0, len(levels), codes)

    return label


def membership_inference(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: Schema,
    *,
    rows: int = MIA_ROWS,
    seed: int = 0,
    feats: _Features | None = None,
) -> dict[str, Any]:
    """Can an attacker who holds the synthetic rows tell training rows (members) from real rows the
    model never saw (non-members, from the holdout)? Two attacks, each scored by its AUC (0.5: no
    better than a coin):

    - distance: the closer a row's nearest synthetic row, the likelier a member;
    - density (DOMIAS, van Breugel et al. 2023): a member where the synthetic rows are denser than
      real rows from the same population are. Densities are k-nearest-neighbour estimates, log p =
      -D log(k-th distance) + const, so the score is the difference of the two log distances. The
      real reference rows are half of the holdout; the non-members the other half.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    shuffled = _sample(holdout, len(holdout), seed + 5)
    reference, outside = shuffled.iloc[: len(shuffled) // 2], shuffled.iloc[len(shuffled) // 2 :]
    m = min(rows, len(outside), len(train))
    if m < MIA_MIN_ROWS or len(reference) < MIA_NEIGHBOURS:
        return {"skipped": f"{len(holdout)} holdout rows are too few to attack with"}
    feats = feats or _Features(train, schema, max_levels=DISTANCE_LEVELS)
    queries = feats.distance_space(
        pd.concat([_sample(train, m, seed + 6), _sample(outside, m, seed + 7)], ignore_index=True)
    )
    member = np.r_[np.ones(m), np.zeros(m)]
    synth_x = feats.distance_space(_sample(synthetic, MIA_REFERENCE_ROWS, seed + 8))
    ref_x = feats.distance_space(_sample(reference, MIA_REFERENCE_ROWS, seed + 9))
    k = min(MIA_NEIGHBOURS, len(synth_x), len(ref_x))
    d_synth = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(synth_x).kneighbors(queries)[0]
    d_ref = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(ref_x).kneighbors(queries)[0]
    tiny = 1e-9  # equal rows are at distance 0
    attacks = {
        "distance": -d_synth[:, 0],
        "density": np.log(d_ref[:, -1] + tiny) - np.log(d_synth[:, -1] + tiny),
    }
    aucs = {name: float(roc_auc_score(member, score)) for name, score in attacks.items()}
    return {
        "auc": aucs,
        "max_auc": max(aucs.values()),
        "members": m,
        "non_members": m,
        "reference_rows": len(ref_x),
        "synthetic_rows": len(synth_x),
        "neighbours": k,
        "note": (
            "members: training rows; non-members: holdout rows; AUC 0.5 = the attacker "
            "does no better than chance"
        ),
    }


def _sdmetrics_dcr(train, synthetic, holdout, schema, seed) -> dict[str, Any]:
    if max(len(train), len(synthetic), len(holdout)) > SDMETRICS_DCR_MAX_ROWS:
        return {
            "skipped": f"tables over {SDMETRICS_DCR_MAX_ROWS} rows: "
            "SDMetrics' DCR metrics cross-join in pandas "
            "and subsample the reference rows too; "
            "the nearest-neighbour figures above cover every training row"
        }
    if sum(c.modelled for c in schema.columns) > SDMETRICS_DCR_MAX_COLUMNS:
        return {
            "skipped": f"tables over {SDMETRICS_DCR_MAX_COLUMNS} columns: "
            "SDMetrics' DCR metrics loop over columns "
            "in pandas; the nearest-neighbour figures above cover every column"
        }
    from sdmetrics.single_table import DCRBaselineProtection, DCROverfittingProtection

    real_d, synth_d, meta = _sdv_frames(train, synthetic, schema)
    table_meta = meta["tables"][TABLE]
    hold = holdout[list(table_meta["columns"])]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            baseline = DCRBaselineProtection.compute_breakdown(
                real_d[TABLE], synth_d[TABLE], table_meta, None
            )
            overfit = DCROverfittingProtection.compute_breakdown(
                real_d[TABLE], synth_d[TABLE], hold, table_meta, None
            )
        return {
            "dcr_baseline_protection": _num(baseline.get("score")),
            "dcr_overfitting_protection": _num(overfit.get("score")),
        }
    except Exception as exc:
        # reported, never fatal: these are secondary figures
        return {"skipped": f"SDMetrics DCR failed: {type(exc).__name__}: {exc}"}


def _quantiles(d: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(d, q)) for q in (5, 25, 50, 75, 95)} | {
        "mean": float(d.mean())
    }


def _histograms(d_synth: np.ndarray, d_hold: np.ndarray, bins: int = 30) -> dict[str, list]:
    hi = float(np.percentile(np.r_[d_synth, d_hold], 99)) or 1.0
    edges = np.linspace(0, hi, bins + 1)
    return {
        "edges": edges.tolist(),
        "synthetic": np.histogram(np.clip(d_synth, 0, hi), edges)[0].tolist(),
        "holdout": np.histogram(np.clip(d_hold, 0, hi), edges)[0].tolist(),
    }


def utility(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: Schema,
    target: str,
    *,
    max_rows: int = 100_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Train on synthetic / test on real holdout, against train on real / test on real, same
    model."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import f1_score, r2_score, roc_auc_score

    col = schema[target]
    if not col.modelled:
        raise UserError(f"target column {target!r} is {col.kind}: nothing to predict")
    task = "regression" if col.kind in ("numerical", "datetime") else "classification"
    feats = _Features(train, schema, exclude=(target,))
    if not feats.columns:
        raise UserError(
            f"target column {target!r} is the only column learned: nothing to predict it from"
        )

    def xy(df: pd.DataFrame):
        known = df[target].notna().to_numpy()
        if task == "regression":
            known &= np.isfinite(_as_number(df[target], col))
        df = _sample(df[known], max_rows, seed)
        y = (
            _as_number(df[target], col)
            if task == "regression"
            else df[target].astype(str).to_numpy()
        )
        return feats.codes(df), y

    x_test, y_test = xy(holdout)
    sides = {"real": xy(train), "synthetic": xy(synthetic)}
    sides = {
        k: (_sparse_missing_filled(x, feats.categorical_mask), y) for k, (x, y) in sides.items()
    }
    too_few = [
        name
        for name, (_, y) in (("holdout", (x_test, y_test)), *sides.items())
        if len(y) < MIN_UTILITY_ROWS
    ]
    if too_few or (task == "classification" and len(set(y_test)) < 2):
        reason = (
            f"fewer than {MIN_UTILITY_ROWS} {' and '.join(too_few)} rows with a known {target!r}"
            if too_few
            else f"the holdout rows hold one value of {target!r}"
        )
        log.warning("utility not measured: %s", reason)
        return {"target": target, "skipped": reason}
    # R2 does not depend on the scale; a scale near float64's limits overflows its squares
    if task == "regression":
        scale = float(np.max(np.abs(sides["real"][1]))) or 1.0
        y_test = y_test / scale
        sides = {k: (x, y / scale) for k, (x, y) in sides.items()}
    scores: dict[str, dict[str, float]] = {}
    for name, (x, y) in sides.items():
        if task == "regression":
            model = HistGradientBoostingRegressor(
                categorical_features=feats.categorical_mask, random_state=seed
            ).fit(x, y)
            scores[name] = {"r2": float(r2_score(y_test, model.predict(x_test)))}
            continue
        model = HistGradientBoostingClassifier(
            categorical_features=feats.categorical_mask, random_state=seed
        )
        if len(np.unique(y)) < 2:
            scores[name] = {"auc": 0.5, "macro_f1": 0.0}
            continue
        model.fit(x, y)
        proba = model.predict_proba(x_test)
        classes = list(model.classes_)
        known = np.isin(y_test, classes)
        # classes the model knows that the test rows hold
        present = [c for c in classes if c in set(y_test[known])]
        p = proba[known][:, [classes.index(c) for c in present]]
        p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
        if len(present) < 2:
            auc = 0.5  # the test rows it can score hold one class: no ranking to measure
        elif len(present) == 2:
            auc = roc_auc_score(y_test[known] == present[1], p[:, 1])
        else:
            auc = roc_auc_score(
                y_test[known], p, multi_class="ovr", average="macro", labels=present
            )
        scores[name] = {
            "auc": float(auc),
            "macro_f1": float(f1_score(y_test, model.predict(x_test), average="macro")),
        }
    main = "r2" if task == "regression" else "auc"
    real_score, synth_score = scores["real"][main], scores["synthetic"][main]
    return {
        "target": target,
        "task": task,
        "metric": main,
        "real": scores["real"],
        "synthetic": scores["synthetic"],
        "ratio": synth_score / real_score if real_score > 0 else None,
        "test_rows": len(x_test),
        "model": "HistGradientBoosting" + ("Regressor" if task == "regression" else "Classifier"),
    }


# --------------------------------------------------------------------------------------------------
# The privacy gate


def privacy_gate(
    privacy_result: dict[str, Any] | None, gate: dict[str, float] | None
) -> dict[str, Any]:
    """Check privacy figures against limits. Keys: max_exact_copy_share, min_dcr_ratio,
    max_closer_to_train_share, max_mia_auc (the stronger membership-inference attack's AUC),
    max_attribute_advantage (the attribute-inference attack's accuracy on members over non-members).

    `max_exact_copy_share` may be "natural": no more copies than real holdout rows have (the natural
    duplicate rate of the data).
    """
    if not gate:
        return {"set": False, "passed": None, "checks": []}
    if privacy_result is None:
        return {
            "set": True,
            "passed": False,
            "checks": [
                {
                    "check": "privacy",
                    "passed": False,
                    "detail": "no holdout rows: privacy cannot be measured",
                }
            ],
        }
    checks = []
    limit = gate.get("max_exact_copy_share")
    if limit is not None:
        limit_value = privacy_result["holdout_copy_share"] if limit == "natural" else float(limit)
        value = privacy_result["exact_copy_share"]
        checks.append(
            {
                "check": "exact copies of training rows",
                "value": value,
                "limit": limit_value,
                "passed": value <= limit_value + 1e-12,
                "detail": f"share <= {limit}",
            }
        )
    if gate.get("min_dcr_ratio") is not None:
        value = privacy_result["dcr_ratio"]
        checks.append(
            {
                "check": "DCR ratio (synthetic / holdout median)",
                "value": value,
                "limit": gate["min_dcr_ratio"],
                "passed": value >= gate["min_dcr_ratio"],
                "detail": f">= {gate['min_dcr_ratio']}",
            }
        )
    if gate.get("max_closer_to_train_share") is not None:
        value = privacy_result["closer_to_train_share"]
        checks.append(
            {
                "check": "share closer to a training row than to a holdout row",
                "value": value,
                "limit": gate["max_closer_to_train_share"],
                "passed": value <= gate["max_closer_to_train_share"],
                "detail": f"<= {gate['max_closer_to_train_share']}",
            }
        )
    attacks = (
        (
            "max_attribute_advantage",
            "attribute_inference",
            "advantage",
            "attribute-inference advantage on training rows",
            "no sensitive column",
        ),
        (
            "max_mia_auc",
            "membership_inference",
            "max_auc",
            "membership-inference AUC (the stronger attack)",
            "too few holdout rows",
        ),
    )
    for key, result, figure, check, unmeasured in attacks:
        if gate.get(key) is not None:
            value = (privacy_result.get(result) or {}).get(figure)
            checks.append(
                {
                    "check": check,
                    "value": value,
                    "limit": gate[key],
                    "passed": value is not None and value <= gate[key],
                    "detail": f"<= {gate[key]}"
                    + ("" if value is not None else f": not measured ({unmeasured})"),
                }
            )
    return {"set": True, "passed": all(c["passed"] for c in checks), "checks": checks, "gate": gate}


def _num(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None
