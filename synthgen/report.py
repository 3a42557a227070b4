"""Quality reports: report.json (every figure), report.html (one self-contained page), report.md
(summary).

The HTML page draws its figures as inline SVG (no JavaScript, no external file): it opens offline
from a file, stays small (tens to hundreds of kB) and can be mailed. Everything on it is rebuilt
from report.json alone.
"""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synthgen.io import atomic_path, json_default

REPORT_VERSION = 1
QUALITY_LEVELS = ((0.90, "good"), (0.80, "fair"), (0.0, "poor"))
MODEL_NAMES = {"vae": "VAE", "ae": "AE (baseline)"}
PRIOR_NAMES = {"standard": "N(0, I)", "fitted": "a fitted Gaussian", "learned": "a learned flow"}


def variant_of(name: str, entry: dict[str, Any] | None) -> str | None:
    """The model a scored variant samples, or None for a model's own rows (reports before variants
    were general had one variant, "ae-standard")."""
    entry = entry or {}
    return entry.get("variant_of") or (
        "ae" if name == "ae-standard" and entry.get("published") is False else None
    )


def model_label(name: str | None, entry: dict[str, Any] | None = None) -> str:
    """A model's name for people: VAE, AE (baseline), or a scored variant such as
    "AE, z ~ N(0, I)"."""
    base = variant_of(name or "", entry)
    if base is None:
        return MODEL_NAMES.get(name, name or "")
    prior = ((entry or {}).get("settings") or {}).get("prior", "standard")
    return f"{MODEL_NAMES.get(base, base).split(' (')[0]}, z ~ {PRIOR_NAMES.get(prior, prior)}"


def model_color(name: str, entry: dict[str, Any] | None = None) -> str:
    return COLORS["variant"] if variant_of(name, entry) else COLORS.get(name, "#2e9d5b")


# --------------------------------------------------------------------------------------------------
# Verdict


def quality_level(score: float | None) -> str:
    if score is None:
        return "unknown"
    return next(label for threshold, label in QUALITY_LEVELS if score >= threshold)


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """The headline a data owner reads first: quality of the primary model and the privacy gate."""
    primary = report.get("primary_model") or next(iter(report["models"]), None)
    ev = report["models"][primary]["evaluation"] if primary else {}
    overall = (ev.get("quality") or {}).get("overall")
    gate = ev.get("privacy_gate") or {"set": False, "passed": None}
    failed_gates = [
        name
        for name, m in report["models"].items()
        if (m["evaluation"].get("privacy_gate") or {}).get("passed") is False
    ]
    if gate.get("set"):
        privacy = "passed" if gate.get("passed") else "failed"
    else:
        privacy = "not set"
    return {
        "primary_model": primary,
        "quality": quality_level(overall),
        "quality_score": overall,
        "privacy_gate": privacy,
        "failed_gates": failed_gates,
        "run_failed": privacy == "failed",
    }


# --------------------------------------------------------------------------------------------------
# Writing


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.html and report.md into `out_dir` (each file atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = _clean(dict(report, report_version=REPORT_VERSION, verdict=verdict(report)))
    report.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    paths = {
        "json": out_dir / "report.json",
        "html": out_dir / "report.html",
        "md": out_dir / "report.md",
    }
    contents = {
        "json": json.dumps(report, indent=2, default=json_default, allow_nan=False),
        "html": render_html(report),
        "md": render_markdown(report),
    }
    for key, path in paths.items():
        with atomic_path(path) as tmp:
            tmp.write_text(contents[key], encoding="utf-8")
    return paths


def _clean(value: Any) -> Any:
    """NaN and infinity are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def library_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in (
        "synthgen",
        "torch",
        "pandas",
        "numpy",
        "pyarrow",
        "sdmetrics",
        "scikit-learn",
        "prefect",
    ):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def load_report(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------------------------------
# Markdown summary


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def scores_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row of headline figures per model: what the summary table, the flows' table artifact and
    the run index show."""
    rows = []
    for name, model in report["models"].items():
        ev = model["evaluation"]
        q, u, p = ev.get("quality") or {}, ev.get("utility") or {}, ev.get("privacy") or {}
        rows.append(
            {
                "model": name,
                "label": model_label(name, model),
                "overall": q.get("overall"),
                "column_shapes": q.get("column_shapes"),
                "pair_trends": q.get("column_pair_trends"),
                "pair_trends_all": q.get("column_pair_trends_all_pairs"),
                "detection": (ev.get("detection") or {}).get("score"),
                "c2st_auc": ((ev.get("detection") or {}).get("c2st") or {}).get("auc"),
                "logistic_detection": (
                    (ev.get("detection") or {}).get("logistic_detection") or {}
                ).get("score"),
                "utility_ratio": u.get("ratio"),
                "dcr_ratio": p.get("dcr_ratio"),
                "exact_copies": p.get("exact_copy_share"),
                "mia_auc": (p.get("membership_inference") or {}).get("max_auc"),
                "privacy_gate": (
                    "rows not published"
                    if model.get("published") is False
                    else {True: "passed", False: "failed"}.get(
                        (ev.get("privacy_gate") or {}).get("passed"), "not set"
                    )
                ),
            }
        )
    return rows


def render_markdown(report: dict[str, Any], html_name: str = "report.html") -> str:
    v = report.get("verdict") or verdict(report)
    lines = [
        f"# synthgen quality report: {report.get('dataset', '')}",
        "",
        f"**Verdict**: quality **{v['quality']}** ({_f(v['quality_score'])} overall, "
        f"{model_label(v['primary_model'], report['models'].get(v['primary_model']))}); "
        f"privacy gate **{v['privacy_gate']}**.",
        "",
        (
            "| model | overall | column shapes | pair trends | all pairs | detection | C2ST AUC "
            "| LogisticDetection | utility | DCR ratio | exact copies | MIA AUC | privacy gate |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in scores_rows(report):
        lines.append(
            f"| {r['label']} | {_f(r['overall'])} | {_f(r['column_shapes'])} | "
            f"{_f(r['pair_trends'])} | {_f(r['pair_trends_all'])} | {_f(r['detection'])} | "
            f"{_f(r['c2st_auc'])} | {_f(r['logistic_detection'])} | {_f(r['utility_ratio'])} | "
            f"{_f(r['dcr_ratio'], 2)} | {_f(r['exact_copies'], 4)} | {_f(r['mia_auc'])} | "
            f"{r['privacy_gate']} |"
        )
    inp = report.get("input") or {}
    lines += [
        "",
        _sampling_note(report),
        "",
        f"Input: `{inp.get('path', '')}` ({inp.get('rows', '?')} rows, "
        f"sha256 `{str(inp.get('sha256', ''))[:12]}`). "
        f"Scores: SDMetrics {report.get('versions', {}).get('sdmetrics', '')} "
        "against the training rows.",
        "",
        f"Privacy: {guarantee(report['models'])} {_protection_note(report['models'])}",
        "",
        f"Full report: [{html_name}]({html_name})",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# HTML page

# a backslash at the end of a line continues it on the next (no line break in the string)
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;\
color:#1d2330;background:#f5f6f8}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} \
h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6474;margin-bottom:16px}
.banner{display:flex;gap:16px;flex-wrap:wrap;margin:16px 0}
.card{flex:1;min-width:220px;border-radius:10px;padding:14px 18px;background:#fff;\
box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card .label{font-size:13px;color:#5b6474;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:28px;font-weight:600;margin-top:4px}
.good{border-left:6px solid #2e9d5b}.fair{border-left:6px solid #e0a526}\
.poor,.failed{border-left:6px solid #d64545}
.passed{border-left:6px solid #2e9d5b}.unknown,.notset{border-left:6px solid #8a94a6}
table{border-collapse:collapse;width:100%;background:#fff;font-size:14px;margin:8px 0}
th,td{padding:6px 10px;border-bottom:1px solid #e6e9ee;text-align:right} th{background:#eef1f5}
td:first-child,th:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.plot{background:#fff;border-radius:8px;padding:4px}
.note{color:#5b6474;font-size:13px} code{background:#eef1f5;padding:1px 4px;border-radius:4px}
pre{background:#fff;padding:12px;border-radius:8px;overflow:auto;font-size:12px}
.chart{display:block;width:100%;height:auto}
.chart text{font-size:11px;fill:#2a3140} .chart .t{font-size:12px;font-weight:600}
.chart .gl{stroke:#e6e9ee} .chart .ax{stroke:#8a94a6}
.chart .hv{fill:transparent} .chart .hv:hover{fill:rgba(29,35,48,.08)}
"""
MAX_COLUMN_FIGURES = 60  # a wide table shows its weakest columns
COLORS = {"real": "#3b4a6b", "vae": "#2e9d5b", "ae": "#e07b26", "variant": "#b04a9b"}


def render_html(report: dict[str, Any]) -> str:
    v = report.get("verdict") or verdict(report)
    models = report["models"]
    primary = v["primary_model"]

    def fig_html(svg: str) -> str:
        return f'<div class="plot">{svg}</div>'

    esc = html.escape
    parts = [
        f"<h1>synthgen quality report: {esc(str(report.get('dataset', '')))}</h1>",
        f'<div class="sub">run {esc(str(report.get("run_id", "")))} · '
        f"{esc(str(report.get('created', '')))} · "
        f"{esc(str((report.get('input') or {}).get('path', '')))}</div>",
    ]
    # -- verdict banner
    gate_class = {"passed": "passed", "failed": "failed"}.get(v["privacy_gate"], "notset")
    parts.append(
        '<div class="banner" id="verdict">'
        f'<div class="card {v["quality"]}">'
        f'<div class="label">Quality ({esc(model_label(primary, models.get(primary)))})</div>'
        f'<div class="value">{esc(v["quality"])} · {_f(v["quality_score"])}</div></div>'
        f'<div class="card {gate_class}"><div class="label">Privacy gate</div>'
        f'<div class="value">{esc(v["privacy_gate"])}</div></div>'
        '<div class="card notset">'
        '<div class="label">Training rows → synthetic rows per model</div><div class="value">'
        f"{_rows_text(report)}</div></div></div>"
    )
    # -- models side by side
    rows = scores_rows(report)
    parts.append("<h2>Models side by side</h2>")
    parts.append(
        f'<p class="note">{esc(_sampling_note(report))} '
        "Overall = mean of Column Shapes and Column Pair Trends (SDMetrics, official: pairs with a "
        "real trend); all pairs = Column Pair Trends over every pair; "
        "detection: 1 = a gradient-boosted classifier cannot tell synthetic from real; "
        "C2ST AUC = that classifier's AUC over 5 folds of up to 20,000 rows a side (0.5: "
        "indistinguishable); LogisticDetection = SDMetrics' score of a logistic regression (1: "
        "indistinguishable; what TabSyn and TabDiff publish as C2ST); "
        "utility = score of a model trained on synthetic / trained on real, on real holdout rows; "
        "DCR ratio = median distance of synthetic rows to their closest training row / the same "
        "for real holdout rows (below 1: closer to the training rows than fresh real data is); "
        "MIA AUC = the stronger of two membership-inference attacks (0.5: chance).</p>"
    )
    parts.append(
        _table(
            [
                "model",
                "overall",
                "column shapes",
                "pair trends",
                "all pairs",
                "detection",
                "C2ST AUC",
                "LogisticDetection",
                "utility",
                "DCR ratio",
                "exact copies",
                "MIA AUC",
                "privacy gate",
            ],
            [
                [
                    r["label"],
                    _f(r["overall"]),
                    _f(r["column_shapes"]),
                    _f(r["pair_trends"]),
                    _f(r["pair_trends_all"]),
                    _f(r["detection"]),
                    _f(r["c2st_auc"]),
                    _f(r["logistic_detection"]),
                    _f(r["utility_ratio"]),
                    _f(r["dcr_ratio"], 2),
                    _f(r["exact_copies"], 4),
                    _f(r["mia_auc"]),
                    r["privacy_gate"],
                ]
                for r in rows
            ],
        )
    )
    metrics = [
        ("overall", "overall"),
        ("column_shapes", "shapes"),
        ("pair_trends_all", "pairs (all)"),
        ("detection", "detection"),
        ("utility_ratio", "utility"),
    ]
    series = [
        (r["label"], model_color(r["model"], models.get(r["model"])), [r[m[0]] for m in metrics])
        for r in rows
    ]
    parts.append(
        fig_html(
            _bar_figure(
                "Headline scores (higher is better)",
                [m[1] for m in metrics],
                series,
                WIDE_W,
                340,
                y_max=1.05,
                y_title="",
            )
        )
    )
    # -- training
    train_rows = [
        [
            model_label(n, models.get(n)),
            _rows_used(m["training"]),
            str(m["training"].get("epochs_run", "–")),
            "yes" if m["training"].get("stopped_early") else "no",
            " ".join(str(m["training"].get(k, "")) for k in ("device", "precision")).strip() or "–",
            _f(m["training"].get("seconds"), 1),
            _f(m["training"].get("best_val_loss")),
            "reused from cache" if m.get("reused") else "trained",
        ]
        for n, m in models.items()
        if m.get("training")
    ]
    if train_rows:
        parts.append("<h2>Training</h2>")
        parts.append(
            _table(
                [
                    "model",
                    "rows used",
                    "epochs",
                    "early stop",
                    "device, precision",
                    "seconds",
                    "best validation loss",
                    "model",
                ],
                train_rows,
            )
        )
        curves = [
            (
                model_label(n, models.get(n)),
                model_color(n, models.get(n)),
                [(h.get("epoch"), h.get("val_loss")) for h in m["training"]["history"]],
            )
            for n, m in models.items()
            if (m.get("training") or {}).get("history")
        ]
        if curves:
            title = "Validation loss per epoch (VAE: reconstruction + KL; AE: reconstruction)"
            parts.append(fig_html(_line_figure(title, curves, 300)))
    # -- columns
    ev = models[primary]["evaluation"] if primary else {}
    dists = ev.get("distributions") or {}
    col_scores = {c["column"]: c for c in (ev.get("quality") or {}).get("columns", [])}
    order = sorted(
        dists,
        key=lambda c: (
            col_scores.get(c, {}).get("score") is None,
            col_scores.get(c, {}).get("score") or 0,
        ),
    )
    parts.append("<h2>Columns, worst first</h2>")
    parts.append(
        '<p class="note">Real vs synthetic shares per column; the score is SDMetrics Column Shapes '
        f"for the {esc(model_label(primary, models.get(primary)))} "
        "(KS complement for numbers and dates, TV complement for categories).</p>"
    )
    if len(order) > MAX_COLUMN_FIGURES:
        parts.append(
            f'<p class="note">The {MAX_COLUMN_FIGURES} weakest of {len(order)} columns; '
            "every column's score is in report.json.</p>"
        )
    cells = []
    for name in order[:MAX_COLUMN_FIGURES]:
        cells.append(fig_html(_column_figure(name, models, col_scores.get(name))))
    parts.append(f'<div class="grid">{"".join(cells)}</div>')
    # -- pair trends
    assoc = ev.get("associations")
    if assoc and assoc["real"]["columns"]:
        parts.append("<h2>Pair trends</h2>")
        parts.append(
            '<p class="note">Association of every pair of columns: Pearson correlation for two '
            "numbers, Cramér's V otherwise (numbers cut at the real data's deciles). Left: real; "
            "middle: synthetic; right: absolute difference.</p>"
        )
        total = assoc["real"].get("columns_total", len(assoc["real"]["columns"]))
        if total > len(assoc["real"]["columns"]):
            parts.append(
                f'<p class="note">The first {len(assoc["real"]["columns"])} of {total} columns.</p>'
            )
        quality_ = ev.get("quality") or {}
        if quality_.get("pairs_scored", quality_.get("pairs_total")) != quality_.get("pairs_total"):
            parts.append(
                '<p class="note">Column Pair Trends scored a seeded sample of '
                f"{quality_['pairs_scored']:,} "
                f"of the {quality_['pairs_total']:,} column pairs "
                "(SDMetrics' own metrics on each pair).</p>"
            )
        parts.append(fig_html(_heatmaps(assoc)))
        parts.append(_pairs_table(ev.get("quality") or {}))
    # -- latent space
    mapped = [(n, m["latent"]) for n, m in models.items() if m.get("latent")]
    if mapped:
        parts.append("<h2>Latent space</h2>")
        parts.append(
            '<p class="note">Real training rows and synthetic rows, each through the model\'s '
            "encoder (the VAE's posterior mean, the AE's code), on the first two principal "
            "components of the real rows' codes: the share of each table per cell. Where the "
            "right panel is red the model draws too many rows, where blue too few. A real cell "
            "fewer rows hold than value protection allows shows empty.</p>"
        )
        for name, latent_ in mapped:
            parts.append(fig_html(_latent_figure(model_label(name, models[name]), latent_)))
    # -- detection breakdown
    telling = [
        (n, m["evaluation"]["detection"])
        for n, m in models.items()
        if m.get("published", True) and (m["evaluation"].get("detection") or {}).get("columns")
    ]
    if telling:
        parts.append("<h2>What gives the rows away</h2>")
        parts.append(
            '<p class="note">Per column: the AUC of the best one-column classifier (the ratio '
            "of the real and synthetic histograms, out of fold; 0.5: that column alone tells "
            "nothing). Per pair, among the most telling columns: the same on both, and its gain "
            "over the better column alone (what only the joint structure gives away). Features: "
            "the AUC the boosted classifier loses when one column is shuffled.</p>"
        )
        for name, det in telling:
            label = esc(model_label(name, models[name]))
            parts.append(f"<h3>{label}</h3>")
            parts.append(
                _table(
                    ["column", "AUC alone", "feature", "AUC lost when shuffled"],
                    [
                        [
                            str(c["column"]),
                            _f(c["auc"]),
                            str(i["column"]) if i else "",
                            _f(i["auc_lost"]) if i else "",
                        ]
                        for c, i in zip(
                            det["columns"],
                            det.get("importance", []) + [None] * len(det["columns"]),
                            strict=False,
                        )
                    ],
                )
            )
            parts.append(
                _table(
                    ["column pair", "AUC together", "gain over one column"],
                    [
                        [
                            f"{p['column_1']} × {p['column_2']}",
                            _f(p["auc"]),
                            _f(p["gain"]),
                        ]
                        for p in det.get("pairs", [])
                    ],
                )
            )
    # -- privacy
    parts.append("<h2>Privacy</h2>")
    parts.append(_privacy_html(models, fig_html))
    # -- utility
    util_rows = [
        [
            model_label(n, models.get(n)),
            m["evaluation"]["utility"]["target"],
            m["evaluation"]["utility"]["metric"],
            _f(m["evaluation"]["utility"]["synthetic"].get(m["evaluation"]["utility"]["metric"])),
            _f(m["evaluation"]["utility"]["real"].get(m["evaluation"]["utility"]["metric"])),
            _f(m["evaluation"]["utility"]["ratio"]),
        ]
        for n, m in models.items()
        if m["evaluation"].get("utility")
    ]
    parts.append("<h2>Utility</h2>")
    if util_rows:
        parts.append(
            '<p class="note">A gradient-boosted model trained on synthetic rows and on real '
            "training rows, both tested on real holdout rows.</p>"
        )
        parts.append(
            _table(
                ["model", "target", "metric", "trained on synthetic", "trained on real", "ratio"],
                util_rows,
            )
        )
    else:
        parts.append(
            '<p class="note">No target column was given (--target), '
            "so utility was not measured.</p>"
        )
    # -- lineage
    parts.append("<h2>Data lineage</h2>")
    parts.append(_lineage_html(report))
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>synthgen report: '
        f'{esc(str(report.get("dataset", "")))}</title><link rel="icon" href="data:,">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style>"
        f"</head><body><main>{body}</main></body></html>"
    )


def _sampling_note(report: dict[str, Any]) -> str:
    """Where each model's z came from, read from the settings each model ran with (the run config
    for reports written before models recorded their settings)."""
    models = report["models"]

    def recorded(name: str) -> dict[str, Any]:
        return (models.get(name) or {}).get("settings") or {}

    def prior(name: str) -> str | None:
        if "prior" in recorded(name):
            return recorded(name)["prior"]
        return ((report.get("config") or {}).get("model") or {}).get("prior") or (
            "standard" if name == "vae" else "fitted"
        )

    notes = []
    conditions = (report.get("config") or {}).get("conditions")
    if conditions:
        notes.append(
            f"Rows were generated under conditions ({json.dumps(conditions, default=str)}): z is "
            "drawn from the model's posterior given them. "
            + (
                "Scores compare the rows with the real rows that meet them."
                if isinstance(conditions, dict)
                else "Scores compare the rows with the whole training table."
            )
        )
    learned = (
        "a flow-matching model of its training codes (model setting prior: learned), integrated "
        "from N(0, I)"
    )
    if "vae" in models:
        notes.append(
            "The VAE draws z from a Gaussian fitted to its aggregate posterior (model setting "
            "prior: fitted), not from its N(0, I) prior."
            if prior("vae") == "fitted"
            else f"The VAE draws z from {learned}, not from its N(0, I) prior."
            if prior("vae") == "learned"
            else "The VAE draws z from its N(0, I) prior."
        )
    if "ae" in models:
        if prior("ae") == "learned":
            notes.append(f"The plain AE has no prior: it is sampled from {learned}.")
        elif prior("ae") == "standard":
            notes.append(
                "The plain AE has no prior; this run samples it from N(0, I) (model setting prior: "
                "standard), which shows why an AE alone is no generator."
            )
        elif any(variant_of(k, m) == "ae" and prior(k) == "standard" for k, m in models.items()):
            notes.append(
                "The plain AE has no prior: it is sampled from a Gaussian fitted to its training "
                'codes, and in the row "AE, z ~ N(0, I)" from N(0, I), which shows why an AE alone '
                "is no generator."
            )
        else:
            notes.append(
                "The plain AE has no prior: "
                "it is sampled from a Gaussian fitted to its training codes."
            )
    for name in ("vae", "ae"):
        zeros = ((models.get(name) or {}).get("training") or {}).get("structural_zeros")
        if zeros:
            shown = ", ".join(" × ".join(map(str, z["columns"])) for z in zeros[:3])
            notes.append(
                f"The {model_label(name, models.get(name))} keeps {sum(z['pairs'] for z in zeros)} "
                f"structural zeros in {len(zeros)} pairs of columns ({shown}"
                f"{', ...' if len(zeros) > 3 else ''}): pairs of values no training row (or "
                "fewer than rare_threshold) holds together, though independent columns would give "
                "at least 10 rows, are never drawn (model setting structural_zeros)."
            )
    written_from = {  # training key: how the note names what those columns are written from
        "derived_columns": "the columns they follow from ({}), learning only what those leave "
        "unexplained (model setting derived_columns)",
        "lookup_columns": "the column that determines them on every training row ({}), rather "
        "than drawing them (model setting lookup_columns)",
    }
    for name in ("vae", "ae"):
        training = (models.get(name) or {}).get("training") or {}
        for key, source in written_from.items():
            if training.get(key):
                notes.append(
                    f"The {model_label(name, models.get(name))} writes {len(training[key])} "
                    f"column(s) back from {source.format('; '.join(training[key]))}."
                )
        for group in training.get("profile_columns") or []:
            notes.append(
                f"The {model_label(name, models.get(name))} draws {group}: combinations at "
                "least rare_threshold training rows hold, on about as many rows as hold one in "
                "training; the other rows' columns are drawn one by one (model setting "
                "profile_columns)."
            )
    calibrated = [
        model_label(name, models.get(name))
        for name in ("vae", "ae")
        if recorded(name).get("calibrate_marginals")
    ]
    variants = [model_label(k, m) for k, m in models.items() if variant_of(k, m)]
    if variants:
        notes.append(
            f"Scored, not published: {', '.join(variants)} (trained models sampled another way, "
            "setting scored_variants)."
        )
    if calibrated:
        notes.append(
            f"The columns of the {' and the '.join(calibrated)} are calibrated to the "
            "distributions of the training columns on draws of the model itself: continuous values "
            "pass through a monotone map (every draw keeps its rank), and each category's logit is "
            "shifted by one constant (on every row alike), so the dependence between columns is "
            "the model's (model setting calibrate_marginals)."
        )
    return " ".join(notes)


def _rows_used(training: dict[str, Any]) -> str:
    used, total = (
        training.get("rows_used") or training.get("train_rows"),
        training.get("table_rows"),
    )
    if not isinstance(used, int):
        return "–"
    if isinstance(total, int) and used < total:
        return f"{used:,} of {total:,} (seeded sample, max_train_rows)"
    return f"{used:,}"


def _rows_text(report: dict[str, Any]) -> str:
    inp = report.get("input") or {}
    sampled = [
        m.get("sample", {}).get("rows") for m in report["models"].values() if m.get("sample")
    ]
    real = inp.get("train_rows") or inp.get("rows", "?")
    return (
        f"{real:,} real → {sampled[0]:,} synthetic"
        if sampled and isinstance(real, int)
        else f"{real} real"
    )


def _table(head: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(
            "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows
        )
        + "</tbody></table>"
    )


def _column_figure(name: str, models: dict, score: dict | None) -> str:
    """Real vs synthetic shares of one column: a histogram (real bars, a step line per model) or
    grouped bars."""
    first = next(iter(models.values()))["evaluation"]["distributions"][name]
    suffix = f" · score {score['score']:.3f}" if score and score.get("score") is not None else ""
    missing = first.get("missing", [0, 0])
    if missing[0] > 0:
        suffix += f" · missing {missing[0]:.1%} real"
    title = _clip(str(name), max(8, _fits(FIG_W - 16, 12) - len(suffix))) + suffix
    real = [("real", COLORS["real"], first["real"])]
    synthetic = [
        (
            model_label(m, models.get(m)),
            model_color(m, models.get(m)),
            model["evaluation"]["distributions"][name]["synthetic"],
        )
        for m, model in models.items()
    ]
    if first["type"] == "histogram":
        return _histogram_figure(
            title,
            first["edges"],
            real,
            synthetic,
            dates=bool(first.get("datetime")),
            tooltip=f"{name}: ",
        )
    return _bar_figure(title, first["labels"], real + synthetic, FIG_W, 280, tooltip=f"{name} = ")


def _heatmaps(assoc: dict) -> str:
    """Real, synthetic and |difference| association matrices side by side, in one SVG.

    Row labels stand left of the first panel only (the three share their columns); each scale has
    one colour bar, right of its panels in room left for it, so no bar or label covers a panel."""
    cols = [str(c) for c in assoc["real"]["columns"]]
    real, synth = assoc["real"]["matrix"], assoc["synthetic"]["matrix"]
    diff = [
        [None if a is None or b is None else abs(a - b) for a, b in zip(ra, rb, strict=False)]
        for ra, rb in zip(real, synth, strict=False)
    ]
    n, labels = len(cols), [_clip(c, 24, middle=True) for c in cols]
    longest = max(len(s) for s in labels)
    gap, bar, top = 14, 46, 24  # bar: 12 px of colour, then its tick labels
    for size in (11, 10, 9, 8, 7):  # the largest label font whose rows fit in their cells
        label_w = _text_w("x" * longest, size) + 6
        cell = min(40.0, (WIDE_W - label_w - 2 * bar - 4 * gap) / 3 / n)
        if cell >= size + 1:
            break
    panel = cell * n
    # left to right, centred: row labels, real, synthetic, their colour bar, |difference|, its bar
    left = (WIDE_W - (label_w + 3 * panel + 2 * bar + 4 * gap)) / 2 + label_w
    xs = [left, left + panel + gap, left + 2 * panel + 3 * gap + bar]
    bars = [xs[1] + panel + gap, xs[2] + panel + gap]
    height = top + panel + label_w + 4
    out = [
        f'<svg class="chart heatmaps" viewBox="0 0 {WIDE_W} {_n(height)}" role="img" '
        'aria-label="association matrices">'
    ]
    panels = (
        (xs[0], "real", real, RDBU, -1),
        (xs[1], "synthetic", synth, RDBU, -1),
        (xs[2], "|difference|", diff, REDS, 0),
    )
    for x0, title, matrix, scale, lo in panels:
        out.append(
            f'<text class="t" x="{_n(x0 + panel / 2)}" y="16" text-anchor="middle">{title}</text>'
        )
        # unit squares, one path per colour (values rounded to 1/64): a panel stays a few kB
        by_color: dict[str, list[str]] = {}
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                color = _color(scale, None if value is None else round(value * 64) / 64, lo, 1)
                by_color.setdefault(color, []).append(f"M{j} {i}h1v1h-1z")
        cells = [f'<path fill="{c}" d="{"".join(d)}"/>' for c, d in by_color.items()]
        if matrix is diff:  # a cell's tooltip tells all three values; one serves (i, j) and (j, i)
            for i in range(n):
                for j in range(i + 1):
                    twin = f"M{i} {j}h1v1h-1z" if i != j else ""
                    cells.append(
                        f'<path class="hv" d="M{j} {i}h1v1h-1z{twin}"><title>'
                        f"{_esc(cols[i])} × {_esc(cols[j])}: real {_f(real[i][j])}, "
                        f"synthetic {_f(synth[i][j])}, |difference| {_f(diff[i][j])}"
                        "</title></path>"
                    )
        out.append(
            f'<g class="hm-panel" transform="translate({_n(x0)},{top}) scale({cell:.4f})" '
            f'shape-rendering="crispEdges">{"".join(cells)}</g>'
        )
        out.append(
            '<g class="hm-cols">'
            + "".join(
                f'<text transform="translate({_n(x0 + (j + 0.5) * cell + size * 0.35)},'
                f'{_n(top + panel + 4)}) rotate(-90)" text-anchor="end" style="font-size:{size}px">'
                f"{_esc(s)}</text>"
                for j, s in enumerate(labels)
            )
            + "</g>"
        )
    out.append(
        '<g class="hm-rows">'
        + "".join(
            f'<text x="{_n(xs[0] - 4)}" y="{_n(top + (i + 0.5) * cell)}" dy=".35em" '
            f'text-anchor="end" style="font-size:{size}px">{_esc(s)}</text>'
            for i, s in enumerate(labels)
        )
        + "</g>"
    )
    out.append(_colorbar(bars[0], top, panel, RDBU, -1))
    out.append(_colorbar(bars[1], top, panel, REDS, 0))
    out.append("</svg>")
    return "".join(out)


def _latent_figure(label: str, latent: dict) -> str:
    """Three square panels: real shares, synthetic shares (one colour scale), their difference."""
    bins = latent["bins"]
    real, synth = latent["real"], latent["synthetic"]
    top_share = max(max(max(r) for r in real), max(max(r) for r in synth), 1e-9)
    diff = [
        [b - a for a, b in zip(ra, rb, strict=True)] for ra, rb in zip(real, synth, strict=True)
    ]
    top_diff = max(max(abs(v) for v in row) for row in diff) or 1e-9
    gap, top, size = 28, 40, 300
    left = (WIDE_W - 3 * size - 2 * gap) / 2
    explained = latent.get("explained") or [0, 0]
    out = [
        f'<svg class="chart latent" viewBox="0 0 {WIDE_W} {top + size + 34}" role="img" '
        f'aria-label="latent space of {_esc(label)}">',
        f'<text class="t" x="{_n(WIDE_W / 2)}" y="14" text-anchor="middle">{_esc(label)}: '
        f"PC1 ({explained[0]:.0%} of the variance) across, PC2 ({explained[1]:.0%}) up</text>",
    ]
    panels = (
        ("real", real, REDS, 0.0, top_share),
        ("synthetic", synth, REDS, 0.0, top_share),
        ("synthetic − real", diff, RDBU, -top_diff, top_diff),
    )
    cell = size / bins
    for k, (title, grid, scale, lo, hi) in enumerate(panels):
        x0 = left + k * (size + gap)
        out.append(
            f'<text class="t" x="{_n(x0 + size / 2)}" y="{top - 8}" text-anchor="middle">'
            f"{title}</text>"
        )
        by_color: dict[str, list[str]] = {}
        for i, row in enumerate(grid):  # i: PC1 bin (across), j: PC2 bin (up)
            for j, value in enumerate(row):
                color = _color(scale, value, lo, hi) if value or lo < 0 else "#ffffff"
                by_color.setdefault(color, []).append(f"M{i} {bins - 1 - j}h1v1h-1z")
        cells = "".join(f'<path fill="{c}" d="{"".join(d)}"/>' for c, d in by_color.items())
        out.append(
            f'<g transform="translate({_n(x0)},{top}) scale({cell:.4f})" '
            f'shape-rendering="crispEdges">{cells}</g>'
            f'<rect x="{_n(x0)}" y="{top}" width="{size}" height="{size}" fill="none" '
            'stroke="#9aa3ad"/>'
        )
    outside = latent.get("outside") or [0, 0]
    out.append(
        f'<text x="{_n(left)}" y="{top + size + 22}">{latent["rows"][0]:,} real and '
        f"{latent['rows'][1]:,} synthetic rows; outside the frame: {outside[0]:.1%} real, "
        f"{outside[1]:.1%} synthetic</text></svg>"
    )
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# SVG figures, drawn here rather than by a chart library: the page needs no JavaScript (a library
# inlined for offline use would weigh megabytes), and every figure shows offline and in mail.

FIG_W, WIDE_W = 380, 1140  # viewBox widths of a grid cell and of the page; each SVG scales to fit
# colorbrewer RdBu from -1 (blue) to 1 (red), and Reds from 0 to 1
RDBU = [
    (5, 48, 97),
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
]
REDS = [
    (255, 245, 240),
    (254, 224, 210),
    (252, 187, 161),
    (252, 146, 114),
    (251, 106, 74),
    (239, 59, 44),
    (203, 24, 29),
    (165, 15, 21),
    (103, 0, 13),
]


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _n(v: float) -> str:
    """A coordinate, one decimal at most."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _text_w(text: str, size: float) -> float:
    """A generous estimate of the drawn width of `text`, where room is laid out for it
    (Helvetica-like fonts average ~0.5 em a glyph, DejaVu Sans ~0.6)."""
    return len(text) * size * 0.6


def _fits(width: float, size: float) -> int:
    """About how many glyphs of a title fit in `width` (a clipped title only loses its end)."""
    return int(width / (size * 0.55))


def _clip(text: str, chars: int, middle: bool = False) -> str:
    """`text` in at most `chars` glyphs: its end cut, or its middle (names that share a prefix stay
    apart)."""
    if len(text) <= chars:
        return text
    head = (chars - 1) // 2 if middle else chars - 1
    return text[: max(head, 1)] + "…" + (text[len(text) - (chars - 1 - head) :] if middle else "")


def _color(scale: list[tuple[int, int, int]], value: float | None, lo: float, hi: float) -> str:
    if value is None:
        return "#d9dde3"
    t = min(max((value - lo) / (hi - lo), 0.0), 1.0) * (len(scale) - 1)
    i = min(int(t), len(scale) - 2)
    pairs = zip(scale[i], scale[i + 1], strict=False)
    return "#" + "".join(f"{round(a + (b - a) * (t - i)):02x}" for a, b in pairs)


def _colorbar(x: float, top: float, height: float, scale: list, lo: float) -> str:
    """A vertical colour bar from `lo` to 1, 12 px wide at `x`, with tick labels right of it."""
    gid = f"cb{len(scale)}"  # one gradient per scale on the page
    h = min(height, 320.0)
    y0 = top + (height - h) / 2
    stops = "".join(
        f'<stop offset="{i / (len(scale) - 1):.3f}" stop-color="#{r:02x}{g:02x}{b:02x}"/>'
        for i, (r, g, b) in enumerate(scale)
    )
    parts = 4 if h >= 120 else 2
    step = (1 - lo) / parts
    ticks = "".join(
        f'<text x="{_n(x + 16)}" y="{_n(y0 + h * (1 - k / parts))}" dy=".35em">'
        f"{_tick_label(lo + step * k, step)}</text>"
        for k in range(parts + 1)
    )
    return (
        f'<g class="hm-bar"><defs><linearGradient id="{gid}" x1="0" y1="1" x2="0" y2="0">'
        f'{stops}</linearGradient></defs><rect x="{_n(x)}" y="{_n(y0)}" width="12" '
        f'height="{_n(h)}" fill="url(#{gid})"/>{ticks}</g>'
    )


def _nice_ticks(lo: float, hi: float, count: int = 5) -> tuple[list[float], float]:
    """Round tick values within [lo, hi], about `count` of them, and their step."""
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)], step


def _tick_label(value: float, step: float) -> str:
    """`value` with as many decimals as `step` needs; k, M, G for steps of thousands and more."""
    value = 0.0 if abs(value) < abs(step) * 1e-6 else value
    div, suffix = next(
        ((d, s) for d, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")) if abs(step) >= d), (1, "")
    )
    scaled = step / div
    decimals = next(
        d for d in range(7) if d == 6 or abs(round(scaled, d) - scaled) < abs(scaled) * 1e-6
    )
    return f"{value / div:,.{decimals}f}{suffix}".replace("-", "−")


def _date_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Ticks on a time axis (epoch seconds): month or year starts for long spans, else days, hours
    or seconds."""
    day, utc = 86400.0, timezone.utc
    if hi - lo > 60 * day:
        months = (hi - lo) / (30.44 * day)
        step = next(s for s in (1, 2, 3, 6, 12, 24, 60, 120, 240, 600, 1200) if months / s <= 5)
        start = datetime.fromtimestamp(lo, tz=utc)
        month = -(-(start.year * 12 + start.month - 1) // step) * step  # the first multiple of step
        out = []
        while True:
            t = datetime(month // 12, month % 12 + 1, 1, tzinfo=utc)
            if t.timestamp() > hi:
                return out
            if t.timestamp() >= lo:
                out.append((t.timestamp(), t.strftime("%Y" if step >= 12 else "%b %Y")))
            month += step
    step = next(
        (
            s
            for s in (1, 10, 60, 600, 3600, 6 * 3600, day, 2 * day, 7 * day, 14 * day)
            if (hi - lo) / s <= 6
        ),
        28 * day,
    )
    fmt = "%Y-%m-%d" if step >= day else "%m-%d %H:%M" if hi - lo > day else "%H:%M:%S"
    first = math.ceil(lo / step) * step
    return [
        (t, datetime.fromtimestamp(t, tz=utc).strftime(fmt))
        for t in (first + k * step for k in range(int((hi - first) / step) + 1))
    ]


def _date_text(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _log_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Ticks on a log axis: round values within about a decade, else 1-2-5 or powers of ten."""
    if hi / lo < 20:
        values, step = _nice_ticks(lo, hi)
        return [(v, _tick_label(v, step)) for v in values if v > 0]
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    every = max(1, math.ceil((b - a) / 8))
    mults = (1, 2, 5) if b - a <= 3 else (1,)
    return [
        (m * 10.0**e, f"{m * 10.0**e:g}")
        for e in range(a, b + 1, every)
        for m in mults
        if lo <= m * 10.0**e <= hi
    ]


class _Chart:
    """One cartesian figure as SVG: title, y axis with grid lines, x axis with tick labels, legend,
    and the marks a caller adds in data coordinates. Categories sit at x = 0.5, 1.5, ... on [0, n].

    The plot area keeps what room the labels and the legend leave of `height` (100 px at least)."""

    def __init__(
        self,
        title: str,
        width: float,
        height: float,
        x_range: tuple[float, float],
        x_ticks: list[tuple[float, str]],
        y_range: tuple[float, float],
        legend: list[tuple[str, str, str]],
        log_y: bool = False,
        y_title: str = "",
        x_title: str = "",
    ):
        self.title, self.width, self.log_y = title, width, log_y
        self.y_title, self.x_title = y_title, x_title
        (self.x_lo, self.x_hi), (self.y_lo, self.y_hi) = x_range, y_range
        self.marks: list[str] = []
        self.hovers: list[str] = []
        if log_y:
            self.y_ticks = _log_ticks(self.y_lo, self.y_hi)
        else:
            values, step = _nice_ticks(self.y_lo, self.y_hi)
            self.y_ticks = [(v, _tick_label(v, step)) for v in values]
        widest = max([_text_w(t, 11) for _, t in self.y_ticks] + [0])
        self.left = widest + 8 + (16 if y_title else 0)
        self.right, self.top = width - 12, 30 if title else 10
        self.x_ticks = [(x, _clip(t, 20)) for x, t in x_ticks]
        spacing = (self.right - self.left) / max(len(self.x_ticks), 1)
        widest = max([_text_w(t, 11) for _, t in self.x_ticks] + [0])
        self.rotate = widest > spacing - 6  # labels that would touch slant at 40 degrees
        label_h = widest * math.sin(math.radians(40)) + 14 if self.rotate else 16
        self.legend_rows: list[tuple[list, float]] = []
        row: list = []
        row_w = 0.0
        for item in legend:  # (name, colour, "bar" or "line"), wrapped into rows under the axis
            w = 34 + _text_w(item[0], 11)
            if row and row_w + w > width - 20:
                self.legend_rows.append((row, row_w))
                row, row_w = [], 0.0
            row.append((item, w))
            row_w += w
        if row:
            self.legend_rows.append((row, row_w))
        below = 10 + label_h + (16 if x_title else 0) + 18 * len(self.legend_rows)
        self.bottom = max(height - below, self.top + 100)
        self.height = self.bottom + below

    def x(self, v: float) -> float:
        share = (v - self.x_lo) / ((self.x_hi - self.x_lo) or 1)
        return self.left + share * (self.right - self.left)

    def y(self, v: float) -> float:
        if self.log_y:
            lo, hi = math.log10(self.y_lo), math.log10(self.y_hi)
            v = math.log10(max(v, self.y_lo))
        else:
            lo, hi, v = self.y_lo, self.y_hi, min(max(v, self.y_lo), self.y_hi)
        return self.bottom - (v - lo) / ((hi - lo) or 1) * (self.bottom - self.top)

    def bar(self, x0: float, x1: float, value: float | None, color: str, opacity: float = 1.0):
        if value is None or (self.log_y and value <= 0):
            return
        base, end = self.y(self.y_lo if self.log_y else max(self.y_lo, 0)), self.y(value)
        fade = f' fill-opacity="{opacity}"' if opacity < 1 else ""
        self.marks.append(
            f'<rect x="{_n(self.x(x0))}" y="{_n(min(base, end))}" '
            f'width="{_n(self.x(x1) - self.x(x0))}" height="{_n(abs(base - end))}" '
            f'fill="{color}"{fade}/>'
        )

    def path(self, points: list[tuple[Any, Any]], color: str, steps: bool = False):
        """A line through (x, y) points, broken at missing values; with `steps`, the points are
        (left edge, value) of bins and each value is drawn flat to the next edge."""
        d, pen = [], "M"
        for k, (px, py) in enumerate(points):
            if px is None or py is None or (self.log_y and py <= 0):
                pen = "M"
                continue
            d.append(f"{pen}{_n(self.x(px))} {_n(self.y(py))}")
            if steps:
                d.append(f"H{_n(self.x(points[k + 1][0]))}")
            pen = "L"
        if d:
            self.marks.append(
                f'<path d="{"".join(d)}" fill="none" stroke="{color}" '
                'stroke-width="2" stroke-linejoin="round"/>'
            )

    def hover(self, x0: float, x1: float, text: str):
        """A transparent band over [x0, x1] whose tooltip tells the values there."""
        x, w, h = _n(self.x(x0)), _n(self.x(x1) - self.x(x0)), _n(self.bottom - self.top)
        self.hovers.append(
            f'<rect class="hv" x="{x}" y="{_n(self.top)}" width="{w}" height="{h}">'
            f"<title>{_esc(text)}</title></rect>"
        )

    def svg(self) -> str:
        out = [
            f'<svg class="chart" viewBox="0 0 {_n(self.width)} {_n(self.height)}" role="img" '
            f'aria-label="{_esc(self.title)}">'
        ]
        if self.title:
            out.append(f'<text class="t" x="8" y="18">{_esc(self.title)}</text>')
        left, right, bottom = _n(self.left), _n(self.right), _n(self.bottom)
        for v, label in self.y_ticks:
            y = _n(self.y(v))
            out.append(f'<line class="gl" x1="{left}" x2="{right}" y1="{y}" y2="{y}"/>')
            out.append(
                f'<text x="{_n(self.left - 5)}" y="{y}" dy=".35em" text-anchor="end">{label}</text>'
            )
        out += self.marks
        out.append(f'<line class="ax" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>')
        for v, label in self.x_ticks:
            if self.rotate:
                out.append(
                    f'<text transform="translate({_n(self.x(v))},{_n(self.bottom + 10)}) '
                    f'rotate(-40)" text-anchor="end">{_esc(label)}</text>'
                )
            else:
                out.append(
                    f'<text x="{_n(self.x(v))}" y="{_n(self.bottom + 14)}" '
                    f'text-anchor="middle">{_esc(label)}</text>'
                )
        if self.y_title:
            mid = _n((self.top + self.bottom) / 2)
            out.append(
                f'<text transform="translate(12,{mid}) rotate(-90)" text-anchor="middle">'
                f"{_esc(self.y_title)}</text>"
            )
        y = self.height - 18 * len(self.legend_rows) - 4
        if self.x_title:
            out.append(
                f'<text x="{_n((self.left + self.right) / 2)}" y="{_n(y - 6)}" '
                f'text-anchor="middle">{_esc(self.x_title)}</text>'
            )
        for row, row_w in self.legend_rows:
            x = (self.width - row_w) / 2
            for (name, color, kind), w in row:
                if kind == "bar":
                    out.append(
                        f'<rect x="{_n(x)}" y="{_n(y + 4)}" width="12" height="10" fill="{color}"/>'
                    )
                else:
                    out.append(
                        f'<line x1="{_n(x)}" x2="{_n(x + 14)}" y1="{_n(y + 9)}" '
                        f'y2="{_n(y + 9)}" stroke="{color}" stroke-width="2.5"/>'
                    )
                out.append(f'<text x="{_n(x + 18)}" y="{_n(y + 9)}" dy=".35em">{_esc(name)}</text>')
                x += w
            y += 18
        out += self.hovers
        out.append("</svg>")
        return "".join(out)


def _values_at(series: list[tuple[str, str, list]], i: int) -> str:
    """The tooltip lines of one bar group or bin: each series' value."""
    return "\n".join(f"{name}: {_f(vs[i] if i < len(vs) else None)}" for name, _, vs in series)


def _bar_figure(
    title: str,
    labels: list[str],
    series: list[tuple[str, str, list]],
    width: float,
    height: float,
    y_max: float | None = None,
    y_title: str = "share",
    tooltip: str = "",
) -> str:
    """Grouped bars: a group per label, a bar per series (name, colour, values)."""
    values = [v for _, _, vs in series for v in vs if v is not None]
    top = y_max if y_max is not None else max(values + [0.01]) * 1.08
    ticks = [(i + 0.5, str(s)) for i, s in enumerate(labels)]
    legend = [(name, color, "bar") for name, color, _ in series]
    chart = _Chart(title, width, height, (0, len(labels)), ticks, (0, top), legend, y_title=y_title)
    k = len(series)
    for i, label in enumerate(labels):
        for j, (_, color, vs) in enumerate(series):  # the group fills 80 % of its band
            value = vs[i] if i < len(vs) else None
            chart.bar(i + 0.1 + 0.8 * j / k, i + 0.1 + 0.8 * (j + 1) / k, value, color)
        chart.hover(i, i + 1, f"{tooltip}{label}\n{_values_at(series, i)}")
    return chart.svg()


def _histogram_figure(
    title: str,
    edges: list[float],
    bars: list[tuple[str, str, list]],
    steps: list[tuple[str, str, list]],
    dates: bool = False,
    tooltip: str = "",
    x_title: str = "",
    opacity: float = 0.75,
) -> str:
    """Shares per bin of `edges`: bars (overlaid, translucent) and step lines, each (name, colour,
    shares); on a time axis where `dates` (edges in epoch seconds)."""
    lo, hi = edges[0], edges[-1]
    if dates:
        ticks = _date_ticks(lo, hi)
    else:
        tick_values, step = _nice_ticks(lo, hi)
        ticks = [(v, _tick_label(v, step)) for v in tick_values]
    values = [v for _, _, vs in bars + steps for v in vs if v is not None]
    legend = [(name, color, "bar") for name, color, _ in bars]
    legend += [(name, color, "line") for name, color, _ in steps]
    chart = _Chart(
        title,
        FIG_W,
        280,
        (lo, hi),
        ticks,
        (0, max(values + [0.01]) * 1.08),
        legend,
        y_title="share",
        x_title=x_title,
    )
    for _, color, vs in bars:
        for i, v in enumerate(vs):
            gap = (edges[i + 1] - edges[i]) * 0.05
            chart.bar(edges[i] + gap, edges[i + 1] - gap, v, color, opacity)
    for _, color, vs in steps:
        chart.path(list(zip(edges, list(vs) + [None], strict=False)), color, steps=True)
    show = _date_text if dates else (lambda v: f"{v:.4g}")
    for i in range(len(edges) - 1):
        where = f"{tooltip}{show(edges[i])} to {show(edges[i + 1])}"
        chart.hover(edges[i], edges[i + 1], f"{where}\n{_values_at(bars + steps, i)}")
    return chart.svg()


def _line_figure(
    title: str, curves: list[tuple[str, str, list[tuple[Any, Any]]]], height: int
) -> str:
    """A line of (epoch, value) points per curve (name, colour, points), on a log y axis when every
    value is positive."""
    points = [(x, y) for _, _, pts in curves for x, y in pts if x is not None and y is not None]
    xs, ys = [x for x, _ in points] or [0], [y for _, y in points] or [1]
    log_y = min(ys) > 0
    if log_y:
        lo, hi = min(ys) / 1.05, max(ys) * 1.05
    else:
        pad = (max(ys) - min(ys)) * 0.05 or 1
        lo, hi = min(ys) - pad, max(ys) + pad
    x_lo, x_hi = min(xs), max(max(xs), min(xs) + 1)
    tick_values, step = _nice_ticks(x_lo, x_hi, 8)
    ticks = [(v, _tick_label(v, max(step, 1))) for v in tick_values if v == int(v)]  # whole epochs
    legend = [(name, color, "line") for name, color, _ in curves]
    chart = _Chart(
        title, WIDE_W, height, (x_lo, x_hi), ticks, (lo, hi), legend, log_y=log_y, x_title="epoch"
    )
    for _, color, pts in curves:
        chart.path(pts, color)
        if len(pts) <= 40:  # markers on short runs, where a single epoch draws no line
            chart.marks += [
                f'<circle cx="{_n(chart.x(x))}" cy="{_n(chart.y(y))}" r="3" fill="{color}"/>'
                for x, y in pts
                if x is not None and y is not None and (y > 0 or not log_y)
            ]
    epochs = sorted({x for x, _ in points})
    for k, e in enumerate(epochs):  # a tooltip band around each epoch, halfway to its neighbours
        a = (e + epochs[k - 1]) / 2 if k else x_lo
        b = (e + epochs[k + 1]) / 2 if k + 1 < len(epochs) else x_hi
        chart.hover(
            a,
            b,
            f"epoch {e}\n"
            + "\n".join(f"{name}: {_f(y, 4)}" for name, _, pts in curves for x, y in pts if x == e),
        )
    return chart.svg()


def _pairs_table(quality: dict) -> str:
    pairs = [p for p in quality.get("pairs", []) if p.get("score") is not None]
    worst = sorted(pairs, key=lambda p: p["score"])[:10]
    if not worst:
        return ""
    return (
        '<p class="note">The ten weakest pairs (SDMetrics, all pairs; "aligned" bins numbers with '
        "the real data's edges on both sides; counted = part of the official score):</p>"
        + _table(
            ["pair", "metric", "score", "aligned", "real corr.", "synthetic corr.", "counted"],
            [
                [
                    f"{p['column_1']} × {p['column_2']}",
                    p["metric"],
                    _f(p["score"]),
                    _f(p.get("score_aligned")),
                    _f(p.get("real_correlation")),
                    _f(p.get("synthetic_correlation")),
                    "yes" if p.get("counted") else "no",
                ]
                for p in worst
            ],
        )
    )


def _privacy_html(models: dict, fig_html) -> str:
    rows, figs = [], []
    for name, model in models.items():
        p = model["evaluation"].get("privacy")
        if not p:
            continue
        gate = model["evaluation"].get("privacy_gate") or {}
        rows.append(
            [
                model_label(name, models.get(name)),
                _f(p["dcr_synthetic"]["p50"]),
                _f(p["dcr_holdout"]["p50"]),
                _f(p["dcr_ratio"], 2),
                _f(p["dcr_synthetic"]["p5"]),
                _f(p["dcr_holdout"]["p5"]),
                _f(p["closer_to_train_share"]),
                _f(p["exact_copy_share"], 4),
                _f(p["holdout_copy_share"], 4),
                {True: "passed", False: "failed"}.get(gate.get("passed"), "not set"),
            ]
        )
        h = p["histogram"]
        total_s, total_h = sum(h["synthetic"]) or 1, sum(h["holdout"]) or 1
        bars = [
            ("real holdout → train", COLORS["real"], [c / total_h for c in h["holdout"]]),
            (
                "synthetic → train",
                model_color(name, models.get(name)),
                [c / total_s for c in h["synthetic"]],
            ),
        ]
        title = _clip(
            f"{model_label(name, models.get(name))}: distance to the closest training row",
            _fits(FIG_W - 16, 12),
        )
        figs.append(
            fig_html(
                _histogram_figure(
                    title,
                    h["edges"],
                    bars,
                    [],
                    x_title="distance",
                    opacity=0.7,
                    tooltip="distance ",
                )
            )
        )
    protection = _protection_html(models)
    if not rows:
        return (
            protection
            + '<p class="note">No holdout rows were given, so privacy was not measured.</p>'
        )
    gate_rows = []
    for name, model in models.items():
        for check in (model["evaluation"].get("privacy_gate") or {}).get("checks", []):
            gate_rows.append(
                [
                    model_label(name, models.get(name)),
                    check["check"],
                    _f(check.get("value"), 4),
                    check.get("detail", ""),
                    "passed" if check["passed"] else "FAILED",
                ]
            )
    first = next(m for m in models.values() if m["evaluation"].get("privacy"))["evaluation"][
        "privacy"
    ]
    out = (
        '<p class="note">Distance to the closest record (DCR) over every training row '
        f"(nearest-neighbour index; {html.escape(first['distance'])}). "
        "Real holdout rows, never seen in training, are the yardstick: synthetic rows should sit "
        "no closer to the training rows than they do. "
        "Closer-to-train share: against a training subset as large as the holdout, "
        "0.5 means no preference.</p>"
    )
    out += _table(
        [
            "model",
            "median DCR synthetic",
            "median DCR holdout",
            "ratio",
            "5th pct synthetic",
            "5th pct holdout",
            "closer to train",
            "exact copies",
            "holdout copies (natural)",
            "gate",
        ],
        rows,
    )
    attack_rows = [
        [
            model_label(name, models.get(name)),
            _f(mia["auc"]["distance"]),
            _f(mia["auc"]["density"]),
            f"{mia['members']} / {mia['non_members']}",
        ]
        for name, mia in _attack_results(models, "membership_inference", "auc")
    ]
    if attack_rows:
        out += (
            '<p class="note">Membership inference: an attacker holding the synthetic rows ranks '
            "training rows (members) against real holdout rows the model never saw. Distance "
            "attack: nearer to a synthetic row, likelier a member. Density attack (DOMIAS): "
            "synthetic rows denser there than real reference rows (half of the holdout). AUC "
            "0.5 = chance.</p>"
        )
        out += _table(
            ["model", "distance AUC", "density AUC", "members / non-members"], attack_rows
        )
    aia_rows = [
        [
            model_label(name, models.get(name)),
            str(aia["column"]),
            _f(aia["accuracy_members"]),
            _f(aia["accuracy_non_members"]),
            _f(aia["majority_baseline"]),
            _f(aia["advantage"]),
        ]
        for name, aia in _attack_results(models, "attribute_inference", "advantage")
    ]
    if aia_rows:
        out += (
            '<p class="note">Attribute inference: an attacker who knows every other column of a '
            "person guesses the sensitive column from the nearest synthetic rows. What matters is "
            "the advantage: how much better the guess is for training rows than for real rows "
            "the model never saw.</p>"
        )
        out += _table(
            ["model", "column", "accuracy, members", "non-members", "majority", "advantage"],
            aia_rows,
        )
    if gate_rows:
        out += _table(["model", "check", "value", "limit", "result"], gate_rows)
    sd = first.get("sdmetrics_dcr") or {}
    if sd:
        out += f'<p class="note">SDMetrics DCR metrics: {html.escape(json.dumps(sd))}</p>'
    return protection + out + f'<div class="grid">{"".join(figs)}</div>'


def _attack_results(models: dict, attack: str, figure: str) -> list[tuple[str, dict]]:
    """(model name, result) of each model whose privacy evaluation ran `attack` to `figure`."""
    results = [
        (name, (model["evaluation"].get("privacy") or {}).get(attack) or {})
        for name, model in models.items()
    ]
    return [(name, result) for name, result in results if figure in result]


NO_GUARANTEE = (
    "These rows carry no formal privacy guarantee (no differential privacy): value protection "
    "and the distances below are measures, not a bound on what an attacker can learn."
)


def dp_accounts(models: dict) -> dict[str, dict]:
    """Each DP-mode model's account (synthgen.dp.privacy_account), by model name."""
    return {
        name: m["training"]["differential_privacy"]
        for name, m in models.items()
        if (m.get("training") or {}).get("differential_privacy")
    }


def guarantee(models: dict) -> str:
    """What the rows' privacy rests on, in a sentence or two."""
    accounts = dp_accounts(models)
    if not accounts:
        return NO_GUARANTEE
    spent = "; ".join(
        f"{name}: epsilon {a['epsilon_spent']:.3g} of {a['epsilon']:g}, "
        f"delta {a['delta_spent']:.2g}"
        for name, a in accounts.items()
    )
    # a variant samples its model's weights another way: covered when its model is
    plain = [
        name
        for name, m in models.items()
        if name not in accounts and m.get("variant_of") not in accounts
    ]
    return (
        f"Differentially private ({spent}; {next(iter(accounts.values()))['accountant']}; "
        "neighbouring tables differ by one row). Public, not paid for: "
        + "; ".join(next(iter(accounts.values()))["public"])
        + ". The scores in this report are computed on the real rows and are not covered."
        + (f" Models without DP mode ({', '.join(plain)}): no formal guarantee." if plain else "")
    )


def dp_rows(models: dict) -> list[list[str]]:
    """One row per DP-mode model and part of the budget."""
    rows = []
    for name, a in dp_accounts(models).items():
        for part, spend in a["parts"].items():
            rows.append([name, part, f"{spend['epsilon']:.3g}", f"{spend['delta']:.2g}"])
        rows.append([name, "total", f"{a['epsilon_spent']:.3g}", f"{a['delta_spent']:.2g}"])
    return rows


def protection_rows(models: dict) -> tuple[int | None, list[list[str]]]:
    """The rare-value threshold and, per column, what value protection kept from the output."""
    for m in models.values():
        training = m.get("training") or {}
        if training.get("protection") is not None:
            threshold = (m.get("settings") or {}).get("rare_threshold")
            rows = [
                [
                    str(name),
                    str(p.get("rare_categories", p.get("rare_end_values"))),
                    str(p["rows"]),
                    "rare categories pooled"
                    if "rare_categories" in p
                    else "rare values at the ends",
                    f"{_f(p.get('lowest_written'))} – {_f(p.get('highest_written'))}"
                    if "rare_end_values" in p
                    else "–",
                ]
                for name, p in training["protection"].items()
            ]
            return threshold, rows
    return None, []


def _protection_note(models: dict) -> str:
    threshold, rows = protection_rows(models)
    if threshold is None:
        return ""
    return (
        f"Value protection (fewer than {threshold} rows): {len(rows)} columns had rare values "
        "kept out"
        + (": " + ", ".join(f"`{r[0]}` ({r[1]})" for r in rows[:20]) if rows else "")
        + ("..." if len(rows) > 20 else "")
        + "."
    )


def _protection_html(models: dict) -> str:
    threshold, rows = protection_rows(models)
    out = f'<p class="note">{html.escape(guarantee(models))}</p>'
    if dp_accounts(models):
        out += _table(["model", "part of the budget", "epsilon", "delta"], dp_rows(models))
    if threshold is None:
        return out
    out += (
        '<p class="note">Value protection: no category, and no value among a number\'s or a '
        f"date's 20 lowest and 20 highest, that fewer than {threshold} training rows hold is "
        "written out. Rare categories share one pooled class; rare values at the ends are "
        "replaced by the nearest value enough rows share (or the mean of a run of them).</p>"
    )
    if rows:
        out += _table(["column", "values kept out", "rows", "how", "written range"], rows)
    return out


def _lineage_html(report: dict[str, Any]) -> str:
    inp = report.get("input") or {}
    rows = [
        ["input", str(inp.get("path", ""))],
        ["input sha256", str(inp.get("sha256", ""))],
        [
            "rows (all / train / holdout)",
            f"{inp.get('rows', '')} / {inp.get('train_rows', '')} / {inp.get('holdout_rows', '')}",
        ],
        ["scored rows", str(_first_eval(report).get("rows", {}))],
        ["seeds", json.dumps(report.get("seeds", {}))],
        ["device", str(report.get("device", ""))],
        ["timings (s)", json.dumps(report.get("timings", {}))],
        ["versions", ", ".join(f"{k} {v}" for k, v in (report.get("versions") or {}).items())],
    ]
    for name, model in report["models"].items():
        if model.get("sample"):
            rows.append(
                [
                    f"output ({name})",
                    f"{model['sample'].get('path', '')} · {model['sample'].get('rows', '')} rows, "
                    f"seed {model['sample'].get('seed', '')}",
                ]
            )
        if model.get("model_dir"):
            rows.append(
                [
                    f"model ({name})",
                    f"{model['model_dir']}"
                    + (" (reused from cache)" if model.get("reused") else ""),
                ]
            )
    out = _table(["", ""], rows)
    schema = report.get("schema") or []
    if schema:
        out += '<p class="note">Schema: what synthgen decided for every column, and why.</p>'
        out += _table(
            ["column", "kind", "dtype", "missing", "details", "reason"],
            [
                [c["column"], c["kind"], c["dtype"], _f(c["missing"], 4), c["details"], c["reason"]]
                for c in schema
            ],
        )
    if report.get("config"):
        out += (
            '<p class="note">Configuration</p>'
            f"<pre>{html.escape(json.dumps(report['config'], indent=2, default=str))}</pre>"
        )
    return out


def _first_eval(report: dict[str, Any]) -> dict[str, Any]:
    return next(iter(report["models"].values()))["evaluation"] if report["models"] else {}


# --------------------------------------------------------------------------------------------------
# The index of published runs


def write_index(reports_root: str | Path) -> Path:
    """reports/index.html: every published run (dataset, time, models, quality, privacy), newest
    first."""
    root = Path(reports_root)
    entries = []
    for path in sorted(root.glob("*/*/report.json")):
        try:
            rep = load_report(path)
        except (OSError, json.JSONDecodeError):
            continue
        v = rep.get("verdict") or {}
        scores = {r["label"]: r["overall"] for r in scores_rows(rep)}
        entries.append(
            (
                rep.get("created", ""),
                rep.get("dataset", path.parent.parent.name),
                rep.get("run_id", path.parent.name),
                scores,
                v,
                path.parent.relative_to(root).as_posix() + "/report.html",
            )
        )
    entries.sort(key=lambda e: e[0], reverse=True)
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(str(created))}</td><td>{esc(str(dataset))}</td>"
        f'<td><a href="{esc(link)}">{esc(str(run_id))}</a></td>'
        f"<td>{esc(', '.join(f'{m} {_f(s)}' for m, s in scores.items()))}</td>"
        f'<td class="{esc(v.get("quality", "unknown"))}">{esc(v.get("quality", "?"))}</td>'
        f"<td>{esc(v.get('privacy_gate', '?'))}</td></tr>"
        for created, dataset, run_id, scores, v, link in entries
    )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>synthgen runs</title>'
        f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body><main>'
        "<h1>synthgen runs</h1>"
        f'<div class="sub">{len(entries)} published runs, newest first. '
        "Overall = SDMetrics quality score per model.</div>"
        "<table><thead><tr><th>time</th><th>dataset</th><th>run</th><th>overall per model</th>"
        "<th>quality</th>"
        f"<th>privacy gate</th></tr></thead><tbody>{rows}</tbody></table></main></body></html>"
    )
    index = root / "index.html"
    with atomic_path(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index
