"""The `synthgen` command line: parses arguments and calls the library; no logic of its own."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from synthgen import process
from synthgen.errors import UserError

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Learn a table and write synthetic rows that keep its statistics, with quality reports.",
)

EXIT_FAILED, EXIT_USAGE = 1, 2


def _setup_logging(quiet: bool = False) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logger = logging.getLogger("synthgen")
    if not any(h.get_name() == "synthgen-console" for h in logger.handlers):
        if sys.stderr.isatty():
            handler: logging.Handler = RichHandler(
                console=Console(stderr=True), show_path=False, show_time=False
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:  # logs that go to a file or a scheduler: one plain line per message
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
            )
        handler.set_name("synthgen-console")
        logger.addHandler(handler)
        logger.propagate = False
    process.one_line_console(logger)
    for handler in logger.handlers:  # the console follows --quiet; the log file keeps everything
        if handler.get_name() != "synthgen-log-file":
            handler.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.setLevel(logging.INFO)


def user_errors(fn):
    """Turn a UserError into one `error: ...` line and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@user_errors
def schema(
    input: str = typer.Argument(
        ..., help="CSV, Parquet (file or folder) or JSON Lines table, or a database URL."
    ),
    metadata: Optional[Path] = typer.Option(
        None, help="SDV single-table metadata JSON that overrides inference."
    ),
    metadata_out: Optional[Path] = typer.Option(
        None, help="Also write the SDV metadata alone to this file."
    ),
    encoding: Optional[str] = typer.Option(
        None, help="Text encoding of a CSV input (default: detected)."
    ),
) -> None:
    """Infer every column's kind and print it as JSON (a readable table goes to stderr)."""
    from rich.console import Console
    from rich.table import Table

    from synthgen.config import refuse_password
    from synthgen.io import write_json
    from synthgen.runs import read_input
    from synthgen.schema import infer_schema

    _setup_logging()
    refuse_password(input)
    df, meta, where = read_input(input, encoding, str(metadata) if metadata else None)
    inferred = infer_schema(df, meta)
    table = Table(title=f"{where}: {inferred.n_rows} rows", title_justify="left")
    for key in ("column", "kind", "dtype", "missing", "details", "reason"):
        table.add_column(key, overflow="fold")
    for row in inferred.explain():
        table.add_row(
            *(str(row[k]) for k in ("column", "kind", "dtype", "missing", "details", "reason"))
        )
    Console(stderr=True).print(table)
    if metadata_out:
        write_json(inferred.to_metadata(), metadata_out)
    print(json.dumps(inferred.describe(), indent=2, default=str))


@app.command()
@user_errors
def fit(
    input: str = typer.Argument(
        ..., help="Table to learn (CSV, Parquet file or folder, JSON Lines, database URL)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write."),
    model: str = typer.Option("vae", help="vae (the generator) or ae (the baseline)."),
    epochs: Optional[int] = typer.Option(
        None, help="Training epochs (default: from the table size, early stopping)."
    ),
    epsilon: Optional[float] = typer.Option(
        None,
        help="DP mode: train with DP-SGD within this total privacy budget (delta 1e-5).",
    ),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same model on CPU."),
    metadata: Optional[Path] = typer.Option(
        None, help="SDV single-table metadata JSON that overrides inference."
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available), cpu or cuda."),
    encoding: Optional[str] = typer.Option(
        None, help="Text encoding of a CSV input (default: detected)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    """Train a model on a table and save it (weights as safetensors, the rest as JSON).

    A killed fit resumes from its last checkpoint (kept beside OUT until the fit succeeds).
    """
    import shutil

    from synthgen.config import refuse_password
    from synthgen.synthesizer import Synthesizer

    _setup_logging(quiet)
    refuse_password(input)
    settings = {"epochs": epochs, "seed": seed, "device": device, "epsilon": epsilon}
    synth = Synthesizer(model, **settings)
    checkpoints = out.with_name(out.name + ".ckpt")
    synth.fit(
        input,
        metadata=str(metadata) if metadata else None,
        checkpoint_dir=checkpoints,
        progress=not quiet,
        encoding=encoding,
    )
    synth.save(out)
    shutil.rmtree(checkpoints, ignore_errors=True)
    t = synth.training
    print(
        f"{out}: {model} trained on {t.train_rows} rows, {t.epochs_run} epochs on {t.device} "
        f"in {t.seconds:.1f}s (best validation loss "
        f"{t.best_val_loss if t.best_val_loss is None else round(t.best_val_loss, 3)})"
    )


@app.command()
@user_errors
def sample(
    model_dir: Path = typer.Argument(..., help="A model folder written by `synthgen fit`."),
    rows: int = typer.Option(..., "--rows", "-n", min=0, help="How many rows to write."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write (atomically)."),
    seed: Optional[int] = typer.Option(None, help="Seed (default: a fresh one, printed)."),
    where: list[str] = typer.Option(
        [],
        help="Only rows meeting this condition: col=value, col=low..high (repeatable; a column "
        "given twice takes either value).",
    ),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Draw new rows from a saved model into a Parquet file, streaming row groups (flat memory)."""
    import time

    from synthgen.config import where_conditions
    from synthgen.synthesizer import Synthesizer

    _setup_logging(quiet)
    conditions = where_conditions(where) if where else None
    synth = Synthesizer.load(model_dir, device=device)
    t0 = time.perf_counter()
    synth.sample_to_parquet(rows, out, seed=seed, conditions=conditions)
    elapsed = time.perf_counter() - t0
    print(
        f"{out}: {rows} rows (seed {synth.last_seed}) in {elapsed:.1f}s, "
        f"{rows / max(elapsed, 1e-9):,.0f} rows/s"
    )


@app.command()
@user_errors
def embed(
    input: str = typer.Argument(
        ..., help="Table whose rows to place in the latent space (a file or a database URL)."
    ),
    model_dir: Path = typer.Argument(..., help="A model folder written by `synthgen fit`."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write (atomically)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    encoding: Optional[str] = typer.Option(None, help="Text encoding of a CSV input."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Each row's latent code (the VAE's posterior mean, the AE's code): columns row, z0, z1, ..."""
    from synthgen.config import refuse_password
    from synthgen.io import write_parquet
    from synthgen.synthesizer import Synthesizer

    _setup_logging(quiet)
    refuse_password(input)
    codes = Synthesizer.load(model_dir, device=device).embed(input, encoding=encoding)
    write_parquet(codes.reset_index(names="row"), out)
    print(f"{out}: {len(codes)} rows, {codes.shape[1]} latent dimensions")


@app.command()
@user_errors
def score(
    input: str = typer.Argument(..., help="Table whose rows to score (a file or a database URL)."),
    model_dir: Path = typer.Argument(..., help="A model folder written by `synthgen fit`."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write (atomically)."),
    top: Optional[int] = typer.Option(
        None, min=1, help="Keep only the N most unusual rows, highest score first."
    ),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    encoding: Optional[str] = typer.Option(None, help="Text encoding of a CSV input."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Anomaly scores: each row's negative ELBO (VAE) or reconstruction loss (AE), its percentile
    among training rows, the column that made it most unusual and every column's part."""
    from synthgen.config import refuse_password
    from synthgen.io import write_parquet
    from synthgen.synthesizer import Synthesizer

    _setup_logging(quiet)
    refuse_password(input)
    scores = Synthesizer.load(model_dir, device=device).score(input, encoding=encoding)
    if top:
        scores = scores.nlargest(top, "score")
    write_parquet(scores.reset_index(names="row"), out)
    shown = scores.nlargest(min(len(scores), 5), "score")
    print(f"{out}: {len(scores)} rows scored; the most unusual:")
    for row, r in shown.iterrows():
        print(f"  row {row}: score {r['score']:.2f}, most unusual column {r['most_unusual']}")


@app.command()
@user_errors
def evaluate(
    real: Path = typer.Argument(
        ..., help="The real (training) table the synthetic rows were learned from."
    ),
    synthetic: Path = typer.Argument(
        ..., help="The synthetic table: synthgen's or any other tool's, same columns."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for report.json, report.html and report.md."
    ),
    holdout: Optional[Path] = typer.Option(
        None, help="Real rows the generator never saw: needed for privacy and utility."
    ),
    target: Optional[str] = typer.Option(
        None, help="Column to predict for utility (train on synthetic, test on real)."
    ),
    metadata: Optional[Path] = typer.Option(
        None, help="SDV single-table metadata JSON (column kinds)."
    ),
    max_rows: int = typer.Option(
        50_000, help="Score large tables on a seeded sample of this many rows per side."
    ),
    seed: int = typer.Option(0, help="Seed of the row samples and the classifiers."),
    gate_max_copies: Optional[str] = typer.Option(
        None, help="Privacy gate: largest share of exact copies of training rows, or 'natural'."
    ),
    gate_min_dcr_ratio: Optional[float] = typer.Option(
        None, help="Privacy gate: smallest DCR ratio (synthetic / holdout median)."
    ),
    gate_max_mia_auc: Optional[float] = typer.Option(
        None, help="Privacy gate: largest membership-inference attack AUC (0.5 = chance)."
    ),
    sensitive: Optional[str] = typer.Option(
        None, help="Column the attribute-inference attack tries to learn (default: --target)."
    ),
    gate_max_attribute_advantage: Optional[float] = typer.Option(
        None, help="Privacy gate: largest attribute-inference gain on training rows."
    ),
    encoding: Optional[str] = typer.Option(
        None, help="Text encoding of CSV inputs (default: detected)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    # the backslash keeps this help text on one line in `synthgen --help`'s command list
    """Score any synthetic table against its real one and write the quality report. \
Exit 1 if a privacy gate fails."""
    import time

    from synthgen.config import privacy_gate
    from synthgen.evaluate import evaluate as run_evaluation
    from synthgen.io import read_table
    from synthgen.report import write_report
    from synthgen.runs import evaluation_report
    from synthgen.schema import infer_schema, load_metadata

    _setup_logging(quiet)
    gate = privacy_gate(
        gate_max_copies, gate_min_dcr_ratio, gate_max_mia_auc, gate_max_attribute_advantage
    ).as_dict()
    real_df, synth_df = (
        read_table(real, encoding=encoding),
        read_table(synthetic, encoding=encoding),
    )
    holdout_df = read_table(holdout, encoding=encoding) if holdout else None
    schema = infer_schema(real_df, load_metadata(str(metadata)) if metadata else None)
    t0 = time.perf_counter()
    ev = run_evaluation(
        real_df,
        synth_df,
        holdout=holdout_df,
        target=target,
        schema=schema,
        max_rows=max_rows,
        seed=seed,
        gate=gate,
        sensitive=sensitive,
    )
    report = evaluation_report(
        real,
        synthetic,
        schema,
        ev,
        seed=seed,
        seconds=time.perf_counter() - t0,
        rows={
            "real": len(real_df),
            "synthetic": len(synth_df),
            "holdout": None if holdout_df is None else len(holdout_df),
        },
        settings={
            "max_rows": max_rows,
            "target": target,
            "gate": gate,
            "holdout": str(holdout) if holdout else None,
        },
    )
    paths = write_report(report, out)
    q = ev["quality"]
    print(
        f"overall {q['overall']:.3f}  column shapes {q['column_shapes']:.3f}  "
        f"pair trends {q['column_pair_trends']:.3f} "
        f"(all pairs {q['column_pair_trends_all_pairs']:.3f})  "
        f"detection {ev['detection']['score']:.3f}"
    )
    print(f"report: {paths['html']}")
    if ev["privacy_gate"]["passed"] is False:
        print(
            "error: the privacy gate failed: "
            + "; ".join(c["check"] for c in ev["privacy_gate"]["checks"] if not c["passed"]),
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_FAILED)


@app.command()
@user_errors
def generate(
    input: Optional[str] = typer.Argument(
        None,
        help="Table to learn: a file, or a database URL such as "
        "postgresql://user@host/db?table=customers (or `input:` in the config file).",
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="YAML run config; options below override it."
    ),
    rows: Optional[int] = typer.Option(
        None, help="Rows to sample per model (default: as many as the training part)."
    ),
    models: Optional[str] = typer.Option(None, help="Comma-separated: vae,ae (default both)."),
    epochs: Optional[int] = typer.Option(
        None, help="Training epochs (default: from the table size)."
    ),
    epsilon: Optional[float] = typer.Option(
        None,
        help="DP mode: train with DP-SGD within this total privacy budget (delta 1e-5).",
    ),
    target: Optional[str] = typer.Option(None, help="Column to predict in the utility check."),
    seed: Optional[int] = typer.Option(
        None, help="Seed of the split and training (same seed: cached model reused)."
    ),
    sample_seed: Optional[int] = typer.Option(
        None, help="Seed of the sampled rows (default: fresh each run)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Put the whole run under this folder."
    ),
    where: list[str] = typer.Option(
        [], help="Generate only rows meeting this condition: col=value, col=low..high (repeatable)."
    ),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda."),
    encoding: Optional[str] = typer.Option(
        None, help="Text encoding of a CSV input (default: detected)."
    ),
    publish: Optional[str] = typer.Option(
        None,
        help="Also write the rows to a database table: URL?table=NAME&if_exists=replace "
        "(or append, fail).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    # the backslash keeps this help text on one line in `synthgen --help`'s command list
    """Run the whole pipeline as a Prefect flow: train, sample, evaluate, \
publish Parquet and a quality report."""
    from synthgen.config import run_overrides, where_conditions
    from synthgen.flows.api import TemporaryAPI

    _setup_logging(quiet)
    conditions = where_conditions(where) if where else None
    if input is None and config is None:
        raise UserError("give an INPUT table or a --config file with `input:`")
    api = TemporaryAPI().start()  # Prefect's temporary server comes up while the input is checked
    try:
        summary = _run_generate(
            api,
            config,
            run_overrides(
                input=input,
                rows=rows,
                target=target,
                seed=seed,
                sample_seed=sample_seed,
                out=out,
                device=device,
                encoding=encoding,
                publish=publish,
                models=models,
                epochs=epochs,
                epsilon=epsilon,
                conditions=conditions,
            ),
            quiet,
        )
    finally:
        api.stop()
    _print_summary(summary)
    if summary["status"] != "passed":
        print(
            "error: the privacy gate failed; rows withheld for "
            f"{', '.join(summary['verdict']['failed_gates'])} (see {summary['report']})",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_FAILED)


def _run_generate(api, config: Optional[Path], overrides: dict, quiet: bool = False) -> dict:
    """Check the input (one error line and exit 2 before any work), then run the flow;
    returns its summary."""
    from synthgen.config import load_run_config
    from synthgen.runs import preflight, release_input

    cfg = load_run_config(str(config) if config else None, **overrides)
    if cfg.secret_blocks():
        api.wait()  # the password is read from Prefect's API
    info, _ = preflight(cfg)
    process.on_stop(lambda: release_input(info))  # a database input's snapshot
    from synthgen.flows import RunFailed, flow_result
    from synthgen.flows.api import prefect_logs_to_file
    from synthgen.flows.generate import generate as generate_flow

    prefect_logs_to_file(quiet)
    dask_api = contextlib.nullcontext()
    if cfg.executor == "dask":  # tasks (and sampling shards) on Dask workers
        from synthgen.flows.many import dask_runner, shared_api

        generate_flow = generate_flow.with_options(
            task_runner=dask_runner(cfg.dask_address, cfg.dask_workers)
        )
        dask_api = shared_api()
    with api, dask_api:
        state = generate_flow(
            config_file=str(config) if config else None,
            settings=cfg.model_dump(exclude_unset=True),
            checked=info,
            return_state=True,
        )
    try:
        return flow_result(state, "run_id")
    except RunFailed as exc:
        where = f"; the full traceback is in {process.log_file()}" if process.log_file() else ""
        print(f"error: the run failed: {process.shorten(str(exc))}{where}", file=sys.stderr)
        raise typer.Exit(EXIT_FAILED) from None


def _print_summary(summary: dict) -> None:
    print(f"run {summary['run_id']} ({summary['dataset']}): {summary['status']}")
    for row in summary["scores"]:
        reused = " (cached model reused)" if summary["reused"].get(row["model"]) else ""
        parts = [
            f"{k} {row[k]:.3f}"
            for k in ("overall", "column_shapes", "pair_trends", "detection", "utility_ratio")
            if isinstance(row.get(k), float)
        ]
        gate = (
            row["privacy_gate"]
            if row["privacy_gate"] == "rows not published"
            else f"privacy gate {row['privacy_gate']}"
        )
        print(f"  {row['model']}: {'  '.join(parts)}  {gate}{reused}")
    for model, path in summary["outputs"].items():
        print(f"  {model} rows: {path}")
    print(f"  report: {summary['report']}")
    print(f"  all runs: {summary['index']}")


@app.command("generate-many")
@user_errors
def generate_many(
    tables: Optional[list[Path]] = typer.Argument(
        None, help="Tables to run (or `datasets:` in the config)."
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="YAML settings applied to every dataset."
    ),
    folder: Optional[Path] = typer.Option(
        None, help="Also run every table directly in this folder."
    ),
    address: Optional[str] = typer.Option(
        None, help="Scheduler address of an existing Dask cluster (tcp://host:8786)."
    ),
    workers: int = typer.Option(2, help="Workers of the local Dask cluster (when no --address)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Put every run under this folder."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """One generate run per dataset, in parallel on Dask. Exit 1 if any dataset did not pass."""
    from synthgen.config import load_run_config

    _setup_logging(quiet)
    settings = {"out": str(out)} if out else {}
    base = load_run_config(str(config) if config else None, **{"input": "-", **settings})
    from synthgen.flows import RunFailed, flow_result
    from synthgen.flows.many import dataset_inputs, run_many

    # settings are checked before any work; a bad table fails its own run only,
    # and the summary says so
    inputs = dataset_inputs(
        [str(t) for t in tables] if tables else base.datasets, str(folder) if folder else None
    )
    state = run_many(
        str(config) if config else None,
        datasets=inputs,
        settings=settings,
        address=address,
        n_workers=workers,
    )
    try:
        summary = flow_result(state, "datasets")
    except RunFailed as exc:
        print(f"error: the run failed: {process.shorten(str(exc))}", file=sys.stderr)
        raise typer.Exit(EXIT_FAILED) from None
    for r in summary["datasets"]:
        scores = ", ".join(f"{m} {v:.3f}" for m, v in r["overall"].items() if isinstance(v, float))
        print(
            f"  {r['dataset']}: {r['status']}"
            + (f" ({scores}) {r['report']}" if r["report"] else f": {r['error']}")
        )
    print(f"{summary['passed']} passed, {summary['failed']} did not")
    if summary["failed"]:
        raise typer.Exit(EXIT_FAILED)


@app.command()
@user_errors
def serve(
    config: Path = typer.Argument(..., help="YAML run config with `schedule:` (cron)."),
    cron: Optional[str] = typer.Option(None, help="Cron schedule, overriding the config's."),
    name: Optional[str] = typer.Option(None, help="Deployment name (default generate-<dataset>)."),
) -> None:
    """Serve the generate flow on a cron schedule (needs a Prefect server: PREFECT_API_URL)."""
    from synthgen.config import load_run_config
    from synthgen.runs import preflight, release_input

    _setup_logging()
    release_input(preflight(load_run_config(str(config)))[0])
    from synthgen.flows.serve import serve as serve_flow

    serve_flow(str(config), cron=cron, name=name)


@app.callback()
def _root() -> None:
    """synthgen: synthetic tabular data with a VAE, an AE baseline,
    Prefect flows and quality reports."""


def main() -> None:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in app_commands():
        process.start_log_file(command)
    process.arm_stop_signals()
    try:
        rc = app(standalone_mode=False)
    except typer.Exit as exc:
        rc = exc.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        rc = 130
    except (
        typer.TyperException
    ) as exc:  # bad arguments and options (click's UsageError): one line, exit 2
        if type(exc).__name__ == "NoArgsIsHelpError":
            rc = 0
        else:
            ctx = getattr(exc, "ctx", None)
            where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            print(f"error: {exc.format_message()}{where}", file=sys.stderr)
            rc = getattr(exc, "exit_code", EXIT_USAGE)
    except process.StopRequested as exc:  # the run unwound: nothing was published
        print(f"error: {exc}; nothing was published", file=sys.stderr)
        process.run_cleanups()
        rc = 128 + exc.signum
    except Exception as exc:
        # a bug or a failure outside the user's reach: one line, exit 1
        process.record_failure(exc)
        print(process.failure_line(exc), file=sys.stderr)
        rc = EXIT_FAILED
    sys.stdout.flush()
    sys.exit(rc if isinstance(rc, int) else 0)


def app_commands() -> set[str]:
    return {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}


if __name__ == "__main__":
    main()
