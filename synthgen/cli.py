"""The `synthgen` command line: parses arguments and calls the library; no logic of its own."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from synthgen.errors import UserError

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learn a table and write synthetic rows that keep its statistics, with quality reports.")

EXIT_FAILED, EXIT_USAGE = 1, 2


def _setup_logging(quiet: bool = False) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logger = logging.getLogger("synthgen")
    if not logger.handlers:
        if sys.stderr.isatty():
            handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:  # logs that go to a file or a scheduler: one plain line per message
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


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
    input: Path = typer.Argument(..., help="CSV, Parquet (file or folder) or JSON Lines table."),
    metadata: Optional[Path] = typer.Option(None, help="SDV single-table metadata JSON that overrides inference."),
    metadata_out: Optional[Path] = typer.Option(None, help="Also write the SDV metadata alone to this file."),
) -> None:
    """Infer every column's kind and print it as JSON (a readable table goes to stderr)."""
    from rich.console import Console
    from rich.table import Table

    from synthgen.io import read_table, write_json
    from synthgen.schema import infer_schema, load_metadata

    _setup_logging()
    inferred = infer_schema(read_table(input), load_metadata(metadata))
    table = Table(title=f"{input}: {inferred.n_rows} rows", title_justify="left")
    for key in ("column", "kind", "dtype", "missing", "details", "reason"):
        table.add_column(key, overflow="fold")
    for row in inferred.explain():
        table.add_row(*(str(row[k]) for k in ("column", "kind", "dtype", "missing", "details", "reason")))
    Console(stderr=True).print(table)
    if metadata_out:
        write_json(inferred.to_metadata(), metadata_out)
    print(json.dumps(inferred.describe(), indent=2, default=str))


@app.command()
@user_errors
def fit(
    input: Path = typer.Argument(..., help="Table to learn (CSV, Parquet file or folder, JSON Lines)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write."),
    model: str = typer.Option("vae", help="vae (the generator) or ae (the baseline)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: from the table size, early stopping)."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same model on CPU."),
    metadata: Optional[Path] = typer.Option(None, help="SDV single-table metadata JSON that overrides inference."),
    device: str = typer.Option("auto", help="auto (CUDA when available), cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    """Train a model on a table and save it (weights as safetensors, the rest as JSON).

    A killed fit resumes from its last checkpoint (kept beside OUT until the fit succeeds).
    """
    import shutil

    from synthgen.synthesizer import Synthesizer

    _setup_logging(quiet)
    settings = {"epochs": epochs, "seed": seed, "device": device}
    synth = Synthesizer(model, **settings)
    checkpoints = out.with_name(out.name + ".ckpt")
    synth.fit(input, metadata=str(metadata) if metadata else None, checkpoint_dir=checkpoints, progress=not quiet)
    synth.save(out)
    shutil.rmtree(checkpoints, ignore_errors=True)
    t = synth.training
    print(f"{out}: {model} trained on {t.train_rows} rows, {t.epochs_run} epochs on {t.device} in {t.seconds:.1f}s"
          f" (best validation loss {t.best_val_loss if t.best_val_loss is None else round(t.best_val_loss, 3)})")


@app.command()
@user_errors
def sample(
    model_dir: Path = typer.Argument(..., help="A model folder written by `synthgen fit`."),
    rows: int = typer.Option(..., "--rows", "-n", min=0, help="How many rows to write."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write (atomically)."),
    seed: Optional[int] = typer.Option(None, help="Seed (default: a fresh one, printed)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Draw new rows from a saved model into a Parquet file, streaming row groups (flat memory)."""
    import time

    from synthgen.synthesizer import Synthesizer

    _setup_logging(quiet)
    synth = Synthesizer.load(model_dir, device=device)
    t0 = time.perf_counter()
    synth.sample_to_parquet(rows, out, seed=seed)
    elapsed = time.perf_counter() - t0
    print(f"{out}: {rows} rows (seed {synth.last_seed}) in {elapsed:.1f}s, {rows / max(elapsed, 1e-9):,.0f} rows/s")


@app.callback()
def _root() -> None:
    """synthgen: synthetic tabular data with a VAE, an AE baseline, Prefect flows and quality reports."""


def main() -> None:
    try:
        rc = app(standalone_mode=False)
    except typer.Exit as exc:
        rc = exc.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        rc = 130
    except typer.TyperException as exc:  # bad arguments and options (click's UsageError): one line, exit 2
        if type(exc).__name__ == "NoArgsIsHelpError":
            rc = 0
        else:
            ctx = getattr(exc, "ctx", None)
            where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            print(f"error: {exc.format_message()}{where}", file=sys.stderr)
            rc = getattr(exc, "exit_code", EXIT_USAGE)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
