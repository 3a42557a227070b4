"""synthgen's VAE and AE against SDV's TVAE and GaussianCopula: same split, same run, same threads.

    pip install -e ".[bench]"     # SDV, an optional extra
    python benchmarks/compare.py --datasets adult,diamonds,cps1988,telco_churn,credit

Split protocol of ../shared/datasets/README.md (adult: the official train and test files). Every
model is fitted on train, samples as many rows as train holds, and is scored by synthgen.evaluate
against train (fidelity, detection), with test for privacy and utility. The bars are checked for the
default VAE and for VARIANTS, VAE settings the README suggests. Writes
benchmarks/results/compare-<stamp>.json and .md (and -latest copies).
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "GOMP_SPINCOUNT", "1000"
)  # before torch loads: the same for every model in this process

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthgen import Synthesizer, __version__  # noqa: E402
from synthgen.evaluate import evaluate  # noqa: E402
from synthgen.runtime import torch_threads  # noqa: E402
from synthgen.schema import infer_schema  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
TARGETS = {
    "adult": "income",
    "diamonds": "price",
    "cps1988": "wage",
    "telco_churn": "churn",
    "credit": "Status",
    "flights": "arr_delay",
    "attrition": "Attrition",
    "caravan": "Purchase",
}
# Published on Adult (independent 2026 re-run, sdmetrics 0.24; ../shared/datasets/README.md)
PUBLISHED_ADULT = {
    "TVAE": (0.762, 0.666),
    "CTGAN": (0.809, 0.758),
    "TabSyn": (0.992, 0.980),
    "TabDiff": (0.993, 0.985),
}
# a setting the README describes ("KL weight"), scored beside the default
VARIANTS = {
    "vae-fitted": ("vae", {"prior": "fitted"}),  # z from the aggregate posterior's Gaussian
    "vae-underived": ("vae", {"derived_columns": False}),  # what derived columns buy
    "vae-learned": ("vae", {"prior": "learned"}),  # z from a flow fitted to the posterior codes
}
OURS, PEERS = ("vae", *VARIANTS, "ae", "ae-standard"), ("tvae", "gaussiancopula")


def split(name: str, datasets: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    if name == "adult":
        return pd.read_parquet(datasets / "adult.parquet"), pd.read_parquet(
            datasets / "adult_test.parquet"
        )
    df = pd.read_parquet(datasets / f"{name}.parquet")
    perm = np.random.default_rng(0).permutation(len(df))
    k = round(0.2 * len(df))
    return df.iloc[perm[k:]].reset_index(drop=True), df.iloc[perm[:k]].reset_index(drop=True)


def save_results(
    kind: str, runs: list[dict], summary: pd.DataFrame, settings: dict | None = None
) -> Path:
    """Print a benchmark's summary table and write its runs and summary to
    benchmarks/results/<kind>-<date>.json (<kind>-settings-<date>.json, with the settings
    recorded, when the models were fitted with non-default `settings`)."""
    print(summary.to_string())
    tag = "-settings" if settings else ""
    out = ROOT / "benchmarks" / "results" / f"{kind}{tag}-{datetime.now(timezone.utc).date()}.json"
    record = {"runs": runs, "summary": summary.reset_index().to_dict("records")}
    out.write_text(json.dumps({"settings": settings, **record} if settings else record))
    print(f"wrote {out}")
    return out


SAMPLE_THREADS = torch.get_num_threads()  # set by --sample-threads


def median_rate(sample, rows: int, repeats: int = 3) -> float:
    """Rows/s of `sample(rows)`, the median of `repeats` draws,
    at SAMPLE_THREADS torch threads for every model."""
    rates = []
    with torch_threads(SAMPLE_THREADS):
        for _ in range(repeats):
            t0 = time.perf_counter()
            sample(rows)
            rates.append(rows / (time.perf_counter() - t0))
    return float(np.median(rates))


def run_ours(kind: str, train: pd.DataFrame, seed: int, trained: dict) -> tuple[pd.DataFrame, dict]:
    if (
        kind == "ae-standard"
    ):  # the same trained AE, z drawn from N(0, I): why an AE alone is no generator
        rows = trained["ae"].sample(len(train), seed=seed + 1, prior="standard")
        return rows, {"fit_s": None, "note": "the AE above, z ~ N(0, I)"}
    model, settings = VARIANTS.get(kind, (kind, {}))
    t0 = time.perf_counter()
    synth = Synthesizer(model, seed=seed, **settings).fit(train, progress=False)
    fit_s = time.perf_counter() - t0
    trained[kind] = synth
    # the learned prior's ODE samples slowly: its rate from one draw of 200k rows, as the peers'
    draws = (200_000, 1) if settings.get("prior") == "learned" else (1_000_000, 5)
    t0 = time.perf_counter()
    rows = synth.sample(len(train), seed=seed + 1)
    info = {
        "fit_s": fit_s,
        "sample_s": time.perf_counter() - t0,
        "epochs": synth.training.epochs_run,
        "stopped_early": synth.training.stopped_early,
        "training_threads": synth.training.cpu_threads,
        "sample_rows_per_s_1m": median_rate(lambda n: synth.sample(n, seed=seed + 2), *draws),
    }
    return rows, info


def run_peer(
    kind: str, train: pd.DataFrame, metadata: dict, seed: int, tvae_epochs: int
) -> tuple[pd.DataFrame, dict]:
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer, TVAESynthesizer

    meta = Metadata.load_from_dict(metadata)
    synth = (
        TVAESynthesizer(meta, epochs=tvae_epochs)
        if kind == "tvae"
        else GaussianCopulaSynthesizer(meta)
    )
    torch.manual_seed(seed)
    np.random.seed(seed)
    table = next(iter(meta.tables))

    def sample(n: int) -> pd.DataFrame:  # SDV 2 returns {table: DataFrame}, SDV 1 a DataFrame
        out = synth.sample(n)
        return next(iter(out.values())) if isinstance(out, dict) else out

    t0 = time.perf_counter()
    try:
        synth.fit({table: train})  # SDV 2 takes {table: DataFrame}
    except Exception:
        # SDV 1 takes the DataFrame itself
        synth.fit(train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = sample(len(train))
    sample_s = time.perf_counter() - t0
    return rows, {
        "fit_s": fit_s,
        "sample_s": sample_s,
        "sample_rows_per_s_1m": median_rate(sample, 200_000, repeats=1),
    }


def summarize(ev: dict) -> dict:
    q, u, p = ev["quality"], ev.get("utility") or {}, ev.get("privacy") or {}
    return {
        "overall": q["overall"],
        "shapes": q["column_shapes"],
        "trends": q["column_pair_trends"],
        "pairs_counted": q["pairs_counted"],
        "trends_all": q["column_pair_trends_all_pairs"],
        "trends_aligned": q["column_pair_trends_aligned"],
        "detection": ev["detection"]["score"],
        "c2st_auc": (ev["detection"].get("c2st") or {}).get("auc"),
        "logistic_detection": (ev["detection"].get("logistic_detection") or {}).get("score"),
        "utility_ratio": u.get("ratio"),
        "utility_metric": u.get("metric"),
        "utility_synthetic": (u.get("synthetic") or {}).get(u.get("metric")),
        "utility_real": (u.get("real") or {}).get(u.get("metric")),
        "dcr_ratio": p.get("dcr_ratio"),
        "closer_to_train": p.get("closer_to_train_share"),
        "exact_copies": p.get("exact_copy_share"),
        "natural_copies": p.get("holdout_copy_share"),
        "worst_columns": [
            (c["column"], round(c["score"], 3)) for c in q["columns"][:3] if c["score"] is not None
        ],
    }


def bars(results: dict, model: str = "vae") -> dict:
    """The bars of the models issue, checked on this run's numbers for `model`
    (the VAE or a variant of it)."""
    vae, peers = results.get(model), [results[k] for k in PEERS if k in results]
    if not vae:
        return {}
    out = {"column_shapes >= 0.97": vae["shapes"] >= 0.97}
    if peers:
        best_overall = max(p["overall"] for p in peers)
        best_all = max(p["trends_all"] for p in peers)
        out[f"overall >= best peer + 0.03 ({best_overall + 0.03:.3f})"] = (
            vae["overall"] >= best_overall + 0.03
        )
        out[f"all-pairs trends >= best peer ({best_all:.3f})"] = vae["trends_all"] >= best_all
    if vae.get("utility_ratio") is not None:
        need = 0.90 if vae["utility_metric"] == "r2" else 0.95
        out[f"utility ratio >= {need}"] = vae["utility_ratio"] >= need
    if vae.get("exact_copies") is not None:
        out["exact copies <= natural rate"] = vae["exact_copies"] <= vae["natural_copies"] + 1e-12
    if "tvae" in results and vae.get("fit_s"):
        out[f"fit <= 25% of TVAE ({results['tvae']['fit_s'] * 0.25:.1f}s)"] = (
            vae["fit_s"] <= 0.25 * results["tvae"]["fit_s"]
        )
    if vae.get("sample_rows_per_s_1m"):
        out["sampling >= 500,000 rows/s"] = vae["sample_rows_per_s_1m"] >= 500_000
    return out


def markdown(report: dict) -> str:
    lines = [
        f"# synthgen vs SDV peers ({report['started']})",
        "",
        f"synthgen {report['synthgen_version']}, sdv {report.get('sdv_version')}, "
        f"sdmetrics {report['sdmetrics_version']}, torch {report['torch_version']} "
        f"with {report['threads']} threads for every model, {report['machine']}; "
        "synthgen trains networks under 1M parameters on one of them (train.ONE_THREAD_PARAMS). "
        f"Sampling rates: {report['sample_threads']} threads for every model.",
        f"Command: `{report['command']}`",
        "",
        "Scores: SDMetrics QualityReport against train (trends = official Column Pair Trends over "
        "the pairs with a real trend; all = over all pairs; aligned = all pairs with real bin "
        "edges); detection = 1 - (2 AUC - 1) of a gradient-boosted real-vs-synthetic classifier; "
        "C2ST = that classifier's AUC over 5 folds of up to 20k rows a side; LogisticDetection = "
        "SDMetrics' (what TabSyn and TabDiff publish as C2ST); "
        "sample rows/s = median of 5 draws of 1M rows into a DataFrame "
        "(peers and the learned prior: one of 200k); "
        "utility = train on synthetic / train on real, tested on real test rows (AUC or R^2); "
        "DCR ratio = median distance of synthetic rows to their closest train row / the same for "
        "real test rows; copies = share of rows that equal a train row (synthetic / real test).",
        "",
    ]
    head = (
        "| dataset | model | fit s | sample rows/s | overall | shapes | trends (pairs) | all pairs "
        "| aligned | detection | C2ST AUC | LogisticDetection | utility | DCR ratio | copies |"
    )
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for name, ds in report["datasets"].items():
        for model, r in ds["models"].items():
            if "error" in r:
                lines.append(f"| {name} | {model} | failed: {r['error']} |")
                continue
            fmt = lambda v, d=3: "" if v is None else f"{v:.{d}f}"  # noqa: E731
            rate = r.get("sample_rows_per_s_1m")
            lines.append(
                f"| {name} | {model} | {fmt(r.get('fit_s'), 1)} | "
                f"{'' if not rate else f'{rate:,.0f}'} | {fmt(r['overall'])} | "
                f"{fmt(r['shapes'])} | {fmt(r['trends'])} ({r['pairs_counted']}) | "
                f"{fmt(r['trends_all'])} | {fmt(r['trends_aligned'])} | {fmt(r['detection'])} | "
                f"{fmt(r.get('c2st_auc'))} | {fmt(r.get('logistic_detection'))} | "
                f"{fmt(r['utility_ratio'])} | {fmt(r['dcr_ratio'], 2)} | "
                f"{fmt(r['exact_copies'], 4)} / {fmt(r['natural_copies'], 4)} |"
            )
    lines += ["", "## Bars (the models issue), on this run", ""]
    for name, ds in report["datasets"].items():
        for model, model_bars in ds.get("bars", {}).items():
            checks = ", ".join(f"{k}: {'yes' if v else '**no**'}" for k, v in model_bars.items())
            lines.append(f"- **{name}** ({model}): {checks}")
    if "adult" in report["datasets"] and "vae" in report["datasets"]["adult"]["models"]:
        vae = report["datasets"]["adult"]["models"]["vae"]
        lines += [
            "",
            "## Adult beside the published record (Column Shapes / Column Pair Trends)",
            "",
            "| model | shapes | trends |",
            "|---|---|---|",
        ]
        lines += [
            f"| {k} (published, sdmetrics 0.24) | {s:.3f} | {t:.3f} |"
            for k, (s, t) in PUBLISHED_ADULT.items()
        ]
        lines.append(
            f"| synthgen VAE (this run) | {vae['shapes']:.3f} | {vae['trends']:.3f} (official), "
            f"{vae['trends_all']:.3f} (all pairs) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default="adult,diamonds,cps1988,telco_churn,credit")
    ap.add_argument("--models", default=",".join(OURS + PEERS))
    ap.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads, the same for every model",
    )
    ap.add_argument(
        "--sample-threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads for the sampling-rate draws, the same for every model "
        "(default: torch's, as a user gets it; synthgen draws blocks in that many threads)",
    )
    ap.add_argument("--tvae-epochs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATASETS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    global SAMPLE_THREADS
    SAMPLE_THREADS = args.sample_threads
    import sdmetrics

    try:
        import sdv

        sdv_version = sdv.__version__
    except ImportError:
        sdv_version = None
    models = args.models.split(",")
    if sdv_version is None and any(m in PEERS for m in models):
        sys.exit("error: the peers need SDV: pip install -e '.[bench]'")
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
    report = {
        "started": started,
        "command": " ".join(["python", *sys.argv]),
        "synthgen_version": __version__,
        "sdv_version": sdv_version,
        "sdmetrics_version": sdmetrics.__version__,
        "torch_version": torch.__version__,
        "threads": args.threads,
        "sample_threads": args.sample_threads,
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "seed": args.seed,
        "datasets": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.datasets.split(","):
        train, test = split(name, args.data)
        schema = infer_schema(train)
        ds = {
            "train_rows": len(train),
            "test_rows": len(test),
            "target": TARGETS.get(name),
            "models": {},
        }
        trained: dict = {}
        for model in models:
            print(f"[{name}] {model} ...", file=sys.stderr, flush=True)
            try:
                if model in OURS:
                    rows, info = run_ours(model, train, args.seed, trained)
                else:
                    rows, info = run_peer(
                        model, train, schema.to_metadata(), args.seed, args.tvae_epochs
                    )
                ev = evaluate(
                    train,
                    rows,
                    holdout=test,
                    target=TARGETS.get(name),
                    schema=schema,
                    seed=args.seed,
                )
                ds["models"][model] = {**info, **summarize(ev), "evaluation_seconds": ev["seconds"]}
            except Exception as exc:
                # one failing peer must not lose the others' numbers
                ds["models"][model] = {"error": f"{type(exc).__name__}: {exc}"}
            shown = {k: v for k, v in ds["models"][model].items() if k != "evaluation_seconds"}
            print(
                f"[{name}] {model}: {json.dumps(shown, default=str)}",
                file=sys.stderr,
                flush=True,
            )
        scored = {k: v for k, v in ds["models"].items() if "error" not in v}
        ds["bars"] = {m: checks for m in ("vae", *VARIANTS) if (checks := bars(scored, m))}
        report["datasets"][name] = ds
        for suffix, text in (
            (".json", json.dumps(report, indent=2, default=str)),
            (".md", markdown(report)),
        ):
            (args.out / f"compare-{started}{suffix}").write_text(text)
            (args.out / f"compare-latest{suffix}").write_text(text)
    print(markdown(report))


if __name__ == "__main__":
    main()
