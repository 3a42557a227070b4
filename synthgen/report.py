"""Quality reports: report.json (every figure), report.html (one self-contained page), report.md (summary).

The HTML page inlines plotly.js once, so it opens offline from a file and can be mailed. Everything on it
is rebuilt from report.json alone.
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
MODEL_NAMES = {"vae": "VAE", "ae": "AE (baseline)", "ae-standard": "AE, z ~ N(0, I)"}


# ----------------------------------------------------------------------------------------------------------
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
    failed_gates = [name for name, m in report["models"].items()
                    if (m["evaluation"].get("privacy_gate") or {}).get("passed") is False]
    if gate.get("set"):
        privacy = "passed" if gate.get("passed") else "failed"
    else:
        privacy = "not set"
    return {"primary_model": primary, "quality": quality_level(overall), "quality_score": overall,
            "privacy_gate": privacy, "failed_gates": failed_gates, "run_failed": privacy == "failed"}


# ----------------------------------------------------------------------------------------------------------
# Writing


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.html and report.md into `out_dir` (each file atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = _clean(dict(report, report_version=REPORT_VERSION, verdict=verdict(report)))
    report.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html", "md": out_dir / "report.md"}
    contents = {"json": json.dumps(report, indent=2, default=json_default, allow_nan=False),
                "html": render_html(report), "md": render_markdown(report)}
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
    for package in ("synthgen", "torch", "pandas", "numpy", "pyarrow", "sdmetrics", "scikit-learn", "prefect"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def load_report(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


# ----------------------------------------------------------------------------------------------------------
# Markdown summary


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def scores_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row of headline figures per model: what the summary table, the flows' table artifact and the
    run index show."""
    rows = []
    for name, model in report["models"].items():
        ev = model["evaluation"]
        q, u, p = ev.get("quality") or {}, ev.get("utility") or {}, ev.get("privacy") or {}
        rows.append({
            "model": name, "overall": q.get("overall"), "column_shapes": q.get("column_shapes"),
            "pair_trends": q.get("column_pair_trends"), "pair_trends_all": q.get("column_pair_trends_all_pairs"),
            "detection": (ev.get("detection") or {}).get("score"), "utility_ratio": u.get("ratio"),
            "dcr_ratio": p.get("dcr_ratio"), "exact_copies": p.get("exact_copy_share"),
            "privacy_gate": ("rows not published" if model.get("published") is False else
                             {True: "passed", False: "failed"}.get((ev.get("privacy_gate") or {}).get("passed"), "not set")),
        })
    return rows


def render_markdown(report: dict[str, Any], html_name: str = "report.html") -> str:
    v = report.get("verdict") or verdict(report)
    lines = [f"# synthgen quality report: {report.get('dataset', '')}", "",
             f"**Verdict**: quality **{v['quality']}** ({_f(v['quality_score'])} overall, {MODEL_NAMES.get(v['primary_model'], v['primary_model'])}); "
             f"privacy gate **{v['privacy_gate']}**.", "",
             "| model | overall | column shapes | pair trends | all pairs | detection | utility | DCR ratio | exact copies | privacy gate |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in scores_rows(report):
        lines.append(f"| {MODEL_NAMES.get(r['model'], r['model'])} | {_f(r['overall'])} | {_f(r['column_shapes'])} | "
                     f"{_f(r['pair_trends'])} | {_f(r['pair_trends_all'])} | {_f(r['detection'])} | {_f(r['utility_ratio'])} | "
                     f"{_f(r['dcr_ratio'], 2)} | {_f(r['exact_copies'], 4)} | {r['privacy_gate']} |")
    inp = report.get("input") or {}
    lines += ["", _sampling_note(report), "", f"Input: `{inp.get('path', '')}` ({inp.get('rows', '?')} rows, sha256 `{str(inp.get('sha256', ''))[:12]}`). "
              f"Scores: SDMetrics {report.get('versions', {}).get('sdmetrics', '')} against the training rows.",
              "", f"Full report: [{html_name}]({html_name})", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# HTML page

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6474;margin-bottom:16px}
.banner{display:flex;gap:16px;flex-wrap:wrap;margin:16px 0}
.card{flex:1;min-width:220px;border-radius:10px;padding:14px 18px;background:#fff;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card .label{font-size:13px;color:#5b6474;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:28px;font-weight:600;margin-top:4px}
.good{border-left:6px solid #2e9d5b}.fair{border-left:6px solid #e0a526}.poor,.failed{border-left:6px solid #d64545}
.passed{border-left:6px solid #2e9d5b}.unknown,.notset{border-left:6px solid #8a94a6}
table{border-collapse:collapse;width:100%;background:#fff;font-size:14px;margin:8px 0}
th,td{padding:6px 10px;border-bottom:1px solid #e6e9ee;text-align:right} th{background:#eef1f5}
td:first-child,th:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px}
.plot{background:#fff;border-radius:8px;padding:4px}
.note{color:#5b6474;font-size:13px} code{background:#eef1f5;padding:1px 4px;border-radius:4px}
pre{background:#fff;padding:12px;border-radius:8px;overflow:auto;font-size:12px}
"""
MAX_COLUMN_FIGURES = 60  # a wide table shows its weakest columns
COLORS = {"real": "#3b4a6b", "vae": "#2e9d5b", "ae": "#e07b26", "ae-standard": "#b04a9b"}


def render_html(report: dict[str, Any]) -> str:
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    v = report.get("verdict") or verdict(report)
    models = report["models"]
    primary = v["primary_model"]
    figures: list[str] = []

    def fig_html(fig: go.Figure, height: int = 300) -> str:
        fig.update_layout(height=height, margin=dict(l=40, r=10, t=40, b=40), template="plotly_white",
                          legend=dict(orientation="h", y=-0.2))
        div = fig.to_html(full_html=False, include_plotlyjs=False,
                          config={"displaylogo": False, "responsive": True, "displayModeBar": False})
        figures.append(div)
        return f'<div class="plot">{div}</div>'

    esc = html.escape
    parts = [f"<h1>synthgen quality report: {esc(str(report.get('dataset', '')))}</h1>",
             f'<div class="sub">run {esc(str(report.get("run_id", "")))} · {esc(str(report.get("created", "")))} · '
             f'{esc(str((report.get("input") or {}).get("path", "")))}</div>']
    # -- verdict banner
    gate_class = {"passed": "passed", "failed": "failed"}.get(v["privacy_gate"], "notset")
    parts.append('<div class="banner" id="verdict">'
                 f'<div class="card {v["quality"]}"><div class="label">Quality ({esc(MODEL_NAMES.get(primary, primary or ""))})</div>'
                 f'<div class="value">{esc(v["quality"])} · {_f(v["quality_score"])}</div></div>'
                 f'<div class="card {gate_class}"><div class="label">Privacy gate</div><div class="value">{esc(v["privacy_gate"])}</div></div>'
                 f'<div class="card notset"><div class="label">Training rows → synthetic rows per model</div><div class="value">'
                 f'{_rows_text(report)}</div></div></div>')
    # -- models side by side
    rows = scores_rows(report)
    parts.append("<h2>Models side by side</h2>")
    parts.append(f'<p class="note">{esc(_sampling_note(report))} '
                 "Overall = mean of Column Shapes and Column Pair Trends (SDMetrics, official: pairs with a real trend); "
                 "all pairs = Column Pair Trends over every pair; detection: 1 = a gradient-boosted classifier cannot tell "
                 "synthetic from real; utility = score of a model trained on synthetic / trained on real, on real holdout "
                 "rows; DCR ratio = median distance of synthetic rows to their closest training row / the same for real "
                 "holdout rows (below 1: closer to the training rows than fresh real data is).</p>")
    parts.append(_table(["model", "overall", "column shapes", "pair trends", "all pairs", "detection", "utility",
                         "DCR ratio", "exact copies", "privacy gate"],
                        [[MODEL_NAMES.get(r["model"], r["model"]), _f(r["overall"]), _f(r["column_shapes"]), _f(r["pair_trends"]),
                          _f(r["pair_trends_all"]), _f(r["detection"]), _f(r["utility_ratio"]), _f(r["dcr_ratio"], 2),
                          _f(r["exact_copies"], 4), r["privacy_gate"]] for r in rows]))
    metrics = [("overall", "overall"), ("column_shapes", "shapes"), ("pair_trends_all", "pairs (all)"),
               ("detection", "detection"), ("utility_ratio", "utility")]
    fig = go.Figure([go.Bar(name=MODEL_NAMES.get(r["model"], r["model"]), x=[m[1] for m in metrics],
                            y=[r[m[0]] if r[m[0]] is not None else 0 for m in metrics],
                            marker_color=COLORS.get(r["model"])) for r in rows])
    fig.update_layout(barmode="group", title="Headline scores (higher is better)", yaxis=dict(range=[0, 1.05]))
    parts.append(fig_html(fig, 340))
    # -- training
    train_rows = [[MODEL_NAMES.get(n, n), _rows_used(m["training"]), str(m["training"].get("epochs_run", "–")),
                   "yes" if m["training"].get("stopped_early") else "no",
                   " ".join(str(m["training"].get(k, "")) for k in ("device", "precision")).strip() or "–",
                   _f(m["training"].get("seconds"), 1), _f(m["training"].get("best_val_loss")),
                   "reused from cache" if m.get("reused") else "trained"] for n, m in models.items() if m.get("training")]
    if train_rows:
        parts.append("<h2>Training</h2>")
        parts.append(_table(["model", "rows used", "epochs", "early stop", "device, precision", "seconds", "best validation loss",
                             "model"], train_rows))
        curves = [go.Scatter(name=MODEL_NAMES.get(n, n), x=[h["epoch"] for h in m["training"].get("history", [])],
                             y=[h["val_loss"] for h in m["training"].get("history", [])], mode="lines",
                             line=dict(color=COLORS.get(n))) for n, m in models.items() if (m.get("training") or {}).get("history")]
        if curves:
            fig = go.Figure(curves)
            fig.update_layout(title="Validation loss per epoch (VAE: reconstruction + KL; AE: reconstruction)",
                              xaxis_title="epoch", yaxis_type="log")
            parts.append(fig_html(fig, 300))
    # -- columns
    ev = models[primary]["evaluation"] if primary else {}
    dists = ev.get("distributions") or {}
    col_scores = {c["column"]: c for c in (ev.get("quality") or {}).get("columns", [])}
    order = sorted(dists, key=lambda c: (col_scores.get(c, {}).get("score") is None, col_scores.get(c, {}).get("score") or 0))
    parts.append("<h2>Columns, worst first</h2>")
    parts.append(f'<p class="note">Real vs synthetic shares per column; the score is SDMetrics Column Shapes for the '
                 f"{esc(MODEL_NAMES.get(primary, primary or ''))} (KS complement for numbers and dates, TV complement for categories).</p>")
    if len(order) > MAX_COLUMN_FIGURES:
        parts.append(f'<p class="note">The {MAX_COLUMN_FIGURES} weakest of {len(order)} columns; every column\'s score '
                     "is in report.json.</p>")
    cells = []
    for name in order[:MAX_COLUMN_FIGURES]:
        cells.append(fig_html(_column_figure(go, name, models, col_scores.get(name)), 280))
    parts.append(f'<div class="grid">{"".join(cells)}</div>')
    # -- pair trends
    assoc = ev.get("associations")
    if assoc and assoc["real"]["columns"]:
        parts.append("<h2>Pair trends</h2>")
        parts.append('<p class="note">Association of every pair of columns: Pearson correlation for two numbers, Cramér\'s V '
                     "otherwise (numbers cut at the real data's deciles). Left: real; middle: synthetic; right: absolute difference.</p>")
        total = assoc["real"].get("columns_total", len(assoc["real"]["columns"]))
        if total > len(assoc["real"]["columns"]):
            parts.append(f'<p class="note">The first {len(assoc["real"]["columns"])} of {total} columns.</p>')
        quality_ = ev.get("quality") or {}
        if quality_.get("pairs_scored", quality_.get("pairs_total")) != quality_.get("pairs_total"):
            parts.append(f'<p class="note">Column Pair Trends scored a seeded sample of {quality_["pairs_scored"]:,} '
                         f'of the {quality_["pairs_total"]:,} column pairs (SDMetrics\' own metrics on each pair).</p>')
        parts.append(fig_html(_heatmaps(go, assoc), 460))
        parts.append(_pairs_table(ev.get("quality") or {}))
    # -- privacy
    parts.append("<h2>Privacy</h2>")
    parts.append(_privacy_html(go, models, fig_html))
    # -- utility
    util_rows = [[MODEL_NAMES.get(n, n), m["evaluation"]["utility"]["target"], m["evaluation"]["utility"]["metric"],
                  _f(m["evaluation"]["utility"]["synthetic"].get(m["evaluation"]["utility"]["metric"])),
                  _f(m["evaluation"]["utility"]["real"].get(m["evaluation"]["utility"]["metric"])),
                  _f(m["evaluation"]["utility"]["ratio"])] for n, m in models.items() if m["evaluation"].get("utility")]
    parts.append("<h2>Utility</h2>")
    if util_rows:
        parts.append('<p class="note">A gradient-boosted model trained on synthetic rows and on real training rows, both '
                     "tested on real holdout rows.</p>")
        parts.append(_table(["model", "target", "metric", "trained on synthetic", "trained on real", "ratio"], util_rows))
    else:
        parts.append('<p class="note">No target column was given (--target), so utility was not measured.</p>')
    # -- lineage
    parts.append("<h2>Data lineage</h2>")
    parts.append(_lineage_html(report))
    body = "\n".join(parts)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>synthgen report: "
            f"{esc(str(report.get('dataset', '')))}</title><link rel=\"icon\" href=\"data:,\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body><main>{body}</main></body></html>")


def _sampling_note(report: dict[str, Any]) -> str:
    """Where each model's z came from, read from the settings each model ran with (the run config for reports
    written before models recorded their settings)."""
    models = report["models"]

    def recorded(name: str) -> dict[str, Any]:
        return (models.get(name) or {}).get("settings") or {}

    def prior(name: str) -> str | None:
        if "prior" in recorded(name):
            return recorded(name)["prior"]
        return ((report.get("config") or {}).get("model") or {}).get("prior") or ("standard" if name == "vae" else "fitted")

    notes = []
    if "vae" in models:
        notes.append("The VAE draws z from a Gaussian fitted to its aggregate posterior (model setting prior: fitted), not "
                     "from its N(0, I) prior." if prior("vae") == "fitted" else "The VAE draws z from its N(0, I) prior.")
    if "ae" in models:
        if prior("ae") == "standard":
            notes.append("The plain AE has no prior; this run samples it from N(0, I) (model setting prior: standard), "
                         "which shows why an AE alone is no generator.")
        elif "ae-standard" in models:
            notes.append("The plain AE has no prior: it is sampled from a Gaussian fitted to its training codes, and in "
                         "the row \"AE, z ~ N(0, I)\" from N(0, I), which shows why an AE alone is no generator (those "
                         "rows are scored, not published).")
        else:
            notes.append("The plain AE has no prior: it is sampled from a Gaussian fitted to its training codes.")
    calibrated = [MODEL_NAMES.get(name, name) for name in ("vae", "ae") if recorded(name).get("calibrate_marginals")]
    if calibrated:
        notes.append(f"The columns of the {' and the '.join(calibrated)} are calibrated to the distributions of the "
                     "training columns on draws of the model itself: continuous values pass through a monotone map "
                     "(every draw keeps its rank), and each category's logit is shifted by one constant (on every row "
                     "alike), so the dependence between columns is the model's (model setting calibrate_marginals).")
    return " ".join(notes)


def _rows_used(training: dict[str, Any]) -> str:
    used, total = training.get("rows_used") or training.get("train_rows"), training.get("table_rows")
    if not isinstance(used, int):
        return "–"
    if isinstance(total, int) and used < total:
        return f"{used:,} of {total:,} (seeded sample, max_train_rows)"
    return f"{used:,}"


def _rows_text(report: dict[str, Any]) -> str:
    inp = report.get("input") or {}
    sampled = [m.get("sample", {}).get("rows") for m in report["models"].values() if m.get("sample")]
    real = inp.get("train_rows") or inp.get("rows", "?")
    return f"{real:,} real → {sampled[0]:,} synthetic" if sampled and isinstance(real, int) else f"{real} real"


def _table(head: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    return ("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>" +
            "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows) + "</tbody></table>")


def _column_figure(go, name: str, models: dict, score: dict | None):
    first = next(iter(models.values()))["evaluation"]["distributions"][name]
    traces = []
    if first["type"] == "histogram":
        edges = first["edges"]
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        if first.get("datetime"):
            centers = [datetime.fromtimestamp(c, tz=timezone.utc).isoformat() for c in centers]
        traces.append(go.Bar(name="real", x=centers, y=first["real"], marker_color=COLORS["real"], opacity=0.75))
        for model_name, model in models.items():
            d = model["evaluation"]["distributions"][name]
            traces.append(go.Scatter(name=MODEL_NAMES.get(model_name, model_name), x=centers, y=d["synthetic"],
                                     mode="lines", line=dict(color=COLORS.get(model_name), width=2, shape="hvh")))
    else:
        traces.append(go.Bar(name="real", x=first["labels"], y=first["real"], marker_color=COLORS["real"]))
        for model_name, model in models.items():
            d = model["evaluation"]["distributions"][name]
            traces.append(go.Bar(name=MODEL_NAMES.get(model_name, model_name), x=d["labels"], y=d["synthetic"],
                                 marker_color=COLORS.get(model_name)))
    fig = go.Figure(traces)
    title = f"{name}" + (f" · score {score['score']:.3f}" if score and score.get("score") is not None else "")
    missing = first.get("missing", [0, 0])
    if missing[0] > 0:
        title += f" · missing {missing[0]:.1%} real"
    fig.update_layout(title=title, barmode="group", yaxis_title="share", bargap=0.05 if first["type"] == "histogram" else 0.2)
    return fig


def _heatmaps(go, assoc: dict):
    from plotly.subplots import make_subplots

    cols = assoc["real"]["columns"]
    real, synth = assoc["real"]["matrix"], assoc["synthetic"]["matrix"]
    diff = [[abs(a - b) for a, b in zip(ra, rb)] for ra, rb in zip(real, synth)]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("real", "synthetic", "|difference|"), horizontal_spacing=0.06)
    for i, (matrix, scale, lo) in enumerate(((real, "RdBu", -1), (synth, "RdBu", -1), (diff, "Reds", 0)), start=1):
        fig.add_trace(go.Heatmap(z=matrix, x=cols, y=cols, zmin=lo, zmax=1, colorscale=scale, reversescale=scale == "RdBu",
                                 showscale=i >= 2, colorbar=dict(x=0.655 if i == 2 else 1.0, len=0.8, thickness=12)),
                      row=1, col=i)
    fig.update_yaxes(autorange="reversed")
    return fig


def _pairs_table(quality: dict) -> str:
    pairs = [p for p in quality.get("pairs", []) if p.get("score") is not None]
    worst = sorted(pairs, key=lambda p: p["score"])[:10]
    if not worst:
        return ""
    return ('<p class="note">The ten weakest pairs (SDMetrics, all pairs; "aligned" bins numbers with the real data\'s '
            "edges on both sides; counted = part of the official score):</p>" +
            _table(["pair", "metric", "score", "aligned", "real corr.", "synthetic corr.", "counted"],
                   [[f"{p['column_1']} × {p['column_2']}", p["metric"], _f(p["score"]), _f(p.get("score_aligned")),
                     _f(p.get("real_correlation")), _f(p.get("synthetic_correlation")), "yes" if p.get("counted") else "no"]
                    for p in worst]))


def _privacy_html(go, models: dict, fig_html) -> str:
    rows, figs = [], []
    for name, model in models.items():
        p = model["evaluation"].get("privacy")
        if not p:
            continue
        gate = model["evaluation"].get("privacy_gate") or {}
        rows.append([MODEL_NAMES.get(name, name), _f(p["dcr_synthetic"]["p50"]), _f(p["dcr_holdout"]["p50"]), _f(p["dcr_ratio"], 2),
                     _f(p["dcr_synthetic"]["p5"]), _f(p["dcr_holdout"]["p5"]), _f(p["closer_to_train_share"]),
                     _f(p["exact_copy_share"], 4), _f(p["holdout_copy_share"], 4),
                     {True: "passed", False: "failed"}.get(gate.get("passed"), "not set")])
        h = p["histogram"]
        centers = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:])]
        total_s, total_h = sum(h["synthetic"]) or 1, sum(h["holdout"]) or 1
        fig = go.Figure([go.Bar(name="real holdout → train", x=centers, y=[c / total_h for c in h["holdout"]],
                                marker_color=COLORS["real"], opacity=0.7),
                         go.Bar(name="synthetic → train", x=centers, y=[c / total_s for c in h["synthetic"]],
                                marker_color=COLORS.get(name, "#2e9d5b"), opacity=0.7)])
        fig.update_layout(title=f"{MODEL_NAMES.get(name, name)}: distance to the closest training row", barmode="overlay",
                          xaxis_title="distance", yaxis_title="share")
        figs.append(fig_html(fig, 280))
    if not rows:
        return '<p class="note">No holdout rows were given, so privacy was not measured.</p>'
    gate_rows = []
    for name, model in models.items():
        for check in (model["evaluation"].get("privacy_gate") or {}).get("checks", []):
            gate_rows.append([MODEL_NAMES.get(name, name), check["check"], _f(check.get("value"), 4), check.get("detail", ""),
                              "passed" if check["passed"] else "FAILED"])
    first = next(m for m in models.values() if m["evaluation"].get("privacy"))["evaluation"]["privacy"]
    out = ('<p class="note">Distance to the closest record (DCR) over every training row (nearest-neighbour index; '
           f"{html.escape(first['distance'])}). Real holdout rows, never seen in training, are the yardstick: synthetic rows "
           "should sit no closer to the training rows than they do. "
           "Closer-to-train share: against a training subset as large as the holdout, 0.5 means no preference.</p>")
    out += _table(["model", "median DCR synthetic", "median DCR holdout", "ratio", "5th pct synthetic", "5th pct holdout",
                   "closer to train", "exact copies", "holdout copies (natural)", "gate"], rows)
    if gate_rows:
        out += _table(["model", "check", "value", "limit", "result"], gate_rows)
    sd = first.get("sdmetrics_dcr") or {}
    if sd:
        out += f'<p class="note">SDMetrics DCR metrics: {html.escape(json.dumps(sd))}</p>'
    return out + f'<div class="grid">{"".join(figs)}</div>'


def _lineage_html(report: dict[str, Any]) -> str:
    inp = report.get("input") or {}
    rows = [["input", str(inp.get("path", ""))], ["input sha256", str(inp.get("sha256", ""))],
            ["rows (all / train / holdout)", f"{inp.get('rows', '')} / {inp.get('train_rows', '')} / {inp.get('holdout_rows', '')}"],
            ["scored rows", str(_first_eval(report).get("rows", {}))],
            ["seeds", json.dumps(report.get("seeds", {}))], ["device", str(report.get("device", ""))],
            ["timings (s)", json.dumps(report.get("timings", {}))],
            ["versions", ", ".join(f"{k} {v}" for k, v in (report.get("versions") or {}).items())]]
    for name, model in report["models"].items():
        if model.get("sample"):
            rows.append([f"output ({name})", f"{model['sample'].get('path', '')} · {model['sample'].get('rows', '')} rows, "
                                             f"seed {model['sample'].get('seed', '')}"])
        if model.get("model_dir"):
            rows.append([f"model ({name})", f"{model['model_dir']}" + (" (reused from cache)" if model.get("reused") else "")])
    out = _table(["", ""], rows)
    schema = report.get("schema") or []
    if schema:
        out += "<p class=\"note\">Schema: what synthgen decided for every column, and why.</p>"
        out += _table(["column", "kind", "dtype", "missing", "details", "reason"],
                      [[c["column"], c["kind"], c["dtype"], _f(c["missing"], 4), c["details"], c["reason"]] for c in schema])
    if report.get("config"):
        out += f"<p class=\"note\">Configuration</p><pre>{html.escape(json.dumps(report['config'], indent=2, default=str))}</pre>"
    return out


def _first_eval(report: dict[str, Any]) -> dict[str, Any]:
    return next(iter(report["models"].values()))["evaluation"] if report["models"] else {}


# ----------------------------------------------------------------------------------------------------------
# The index of published runs


def write_index(reports_root: str | Path) -> Path:
    """reports/index.html: every published run (dataset, time, models, quality, privacy), newest first."""
    root = Path(reports_root)
    entries = []
    for path in sorted(root.glob("*/*/report.json")):
        try:
            rep = load_report(path)
        except (OSError, json.JSONDecodeError):
            continue
        v = rep.get("verdict") or {}
        scores = {r["model"]: r["overall"] for r in scores_rows(rep)}
        entries.append((rep.get("created", ""), rep.get("dataset", path.parent.parent.name), rep.get("run_id", path.parent.name),
                        scores, v, path.parent.relative_to(root).as_posix() + "/report.html"))
    entries.sort(key=lambda e: e[0], reverse=True)
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(str(created))}</td><td>{esc(str(dataset))}</td><td><a href=\"{esc(link)}\">{esc(str(run_id))}</a></td>"
        f"<td>{esc(', '.join(f'{MODEL_NAMES.get(m, m)} {_f(s)}' for m, s in scores.items()))}</td>"
        f"<td class=\"{esc(v.get('quality', 'unknown'))}\">{esc(v.get('quality', '?'))}</td><td>{esc(v.get('privacy_gate', '?'))}</td></tr>"
        for created, dataset, run_id, scores, v, link in entries)
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>synthgen runs</title>"
            f"<link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head><body><main><h1>synthgen runs</h1>"
            f"<div class=\"sub\">{len(entries)} published runs, newest first. Overall = SDMetrics quality score per model.</div>"
            "<table><thead><tr><th>time</th><th>dataset</th><th>run</th><th>overall per model</th><th>quality</th>"
            f"<th>privacy gate</th></tr></thead><tbody>{rows}</tbody></table></main></body></html>")
    index = root / "index.html"
    with atomic_path(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index
