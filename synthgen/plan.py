"""Memory planned before the work starts, from the schema and the encoded layout.

A fit holds the encoded table, the network with its gradients and optimizer state, a batch's
activations, the calibration's draws and, later, sampling's blocks of rows. Each is estimated here
from the widths alone, so that a table nobody tested is scaled to fit, or refused with one line,
before any of it is allocated:

- categories: when the encoded input would be wider than MAX_INPUT_WIDTH, the most frequent
  `max_categories` values of each wide column are kept and the rest share an "other" class (lowered
  until the width fits);
- the batch: smaller when one batch's activations would pass ACTIVATION_BUDGET;
- the calibration: CALIBRATION_DRAWS_PER_ROW drawn rows per training row, from
  SMALL_CALIBRATION_ROWS to MAX_CALIBRATION_ROWS (more would fit shares far below the training
  column's own noise), fewer (at least MIN_CALIBRATION_ROWS) where CALIBRATION_BUDGET is short;
- sampling: fewer rows per block (a power of two, at least MIN_BLOCK_ROWS) within BLOCK_BUDGET;
- what is left over the memory limit (SYNTHGEN_MEMORY_LIMIT,
  else 80% of what the machine has free) is refused.

Tables of a few hundred columns or fewer plan exactly as before: every cap is far above them.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from synthgen.errors import UserError
from synthgen.schema import Schema

log = logging.getLogger("synthgen")

MiB = 2**20
MAX_INPUT_WIDTH = 50_000  # one-hot width of the model's input
MIN_CATEGORIES = 10
ACTIVATION_BUDGET = 1024 * MiB
CALIBRATION_BUDGET = 512 * MiB
BLOCK_BUDGET = 384 * MiB
MAX_CALIBRATION_ROWS, MIN_CALIBRATION_ROWS = 65_536, 8_192
SMALL_CALIBRATION_ROWS, CALIBRATION_DRAWS_PER_ROW = 16_384, 16
MAX_BLOCK_ROWS, MIN_BLOCK_ROWS = 65_536, 1_024
FLOAT = 4


@dataclass
class Plan:
    input_width: int
    output_width: int
    parameters: int
    batch_size: int
    calibration_rows: int
    block_rows: int
    bytes: dict[str, int]
    limit: int

    @property
    def peak(self) -> int:
        return max(
            self.bytes["training"],
            self.bytes["calibration"] + self.bytes["model"],
            self.bytes["sampling"],
        )

    def describe(self) -> str:
        b = self.bytes
        return (
            f"memory plan: input {self.input_width:,} wide, output {self.output_width:,}, "
            f"{self.parameters:,} parameters; training ~{_mb(b['training'])} "
            f"(model {_mb(b['model'])}, batch {self.batch_size}), "
            f"calibration ~{_mb(b['calibration'])} on {self.calibration_rows:,} rows, "
            f"sampling ~{_mb(b['sampling'])} in blocks of {self.block_rows:,} rows; "
            f"limit {_mb(self.limit)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak": self.peak}


def _mb(n: int) -> str:
    return f"{n / MiB:,.0f} MB" if n < 10 * 2**30 else f"{n / 2**30:,.1f} GB"


def memory_limit() -> int:
    """Bytes a fit may plan for: SYNTHGEN_MEMORY_LIMIT (like "3GB", "512MB"), else 80% of the memory
    available now (/proc/meminfo, or a cgroup's limit when lower), else 8 GB."""
    given = os.environ.get("SYNTHGEN_MEMORY_LIMIT")
    if given:
        match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", given, re.IGNORECASE)
        if not match:
            raise UserError(
                f"SYNTHGEN_MEMORY_LIMIT must be a size like 3GB or 512MB, got {given!r}"
            )
        return int(float(match[1]) * 1024 ** "BKMGT".index((match[2] or "B").upper()))
    available = []
    try:
        with open("/proc/meminfo") as fh:
            available += [
                int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:")
            ]
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = open(path).read().strip()
            if value.isdigit() and int(value) < 2**60:
                used = open(
                    path.replace("max", "current").replace("limit_in_bytes", "usage_in_bytes")
                ).read()
                available.append(int(value) - int(used))
        except OSError:
            continue
    return int(0.8 * min(available)) if available else 8 * 2**30


def category_cap(schema: Schema, max_categories: int | None) -> int | None:
    """The `max_categories` to encode with: the setting, lowered until the categorical columns'
    one-hot width fits MAX_INPUT_WIDTH (each column also has up to three classes of its own: rare,
    other, missing)."""
    counts = [c.n_categories or 0 for c in schema.columns if c.kind in ("categorical", "text")]

    def width(cap: int | None) -> int:
        return sum(min(n, cap) if cap else n for n in counts) + 3 * len(counts)

    if width(max_categories) <= MAX_INPUT_WIDTH:
        return max_categories
    cap = max(max(counts), MIN_CATEGORIES) if max_categories is None else max_categories
    while cap > MIN_CATEGORIES and width(cap) > MAX_INPUT_WIDTH:
        cap = max(MIN_CATEGORIES, int(cap * 0.8))
    log.warning(
        "%d categorical columns would encode %s classes: keeping the %d most frequent values "
        "of each (the rest share an 'other' class) so the model's input stays near %d",
        len(counts),
        f"{width(max_categories):,}",
        cap,
        MAX_INPUT_WIDTH,
    )
    return cap


def plan_fit(
    layout: Any,
    n_rows: int,
    n_columns: int,
    *,
    hidden: list[int],
    latent_dim: int,
    batch_size: int,
    variational: bool,
    where: str = "the table",
    per_row_gradients: bool = False,
    encoder_hidden: list[int] | None = None,
) -> Plan:
    """The memory a fit on this layout will hold, scaled to the budgets above; refuses (UserError)
    what cannot fit. `per_row_gradients` (DP-SGD): every row of a batch holds a gradient of
    every parameter."""
    n_slots = len(layout.continuous)
    in_w = layout.onehot_width
    out_w = layout.out_width + (n_slots if variational else 0)
    widths = [in_w, *(encoder_hidden or hidden[:1]), latent_dim * (2 if variational else 1)]
    dec = [latent_dim, *reversed(hidden), out_w]
    params = sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False)) + sum(
        (a + 1) * b for a, b in zip(dec, dec[1:], strict=False)
    )
    # weights, gradients, two optimizer moments, the best epoch's copy, a checkpoint's
    model = params * FLOAT * 6
    # forward and backward, one-hot and softmax
    per_example = FLOAT * 8 * (in_w + out_w + 2 * sum(hidden))
    if per_row_gradients:
        per_example += FLOAT * 2 * params  # the row's gradient, and its clipped copy
    batch = max(16, min(batch_size, ACTIVATION_BUDGET // per_example))
    # the encoded table: NumPy, torch, the train/validation copies
    matrix = n_rows * layout.n_inputs * FLOAT * 3
    training = model + matrix + batch * per_example

    per_draw, per_sampled = _row_bytes(layout, n_columns, latent_dim, variational)
    wanted = min(
        MAX_CALIBRATION_ROWS, max(SMALL_CALIBRATION_ROWS, CALIBRATION_DRAWS_PER_ROW * n_rows)
    )
    calibration_rows = int(max(MIN_CALIBRATION_ROWS, min(wanted, CALIBRATION_BUDGET // per_draw)))
    blocks = block_rows(layout, n_columns, latent_dim, variational)
    threads = 2
    # blocks in flight and the writer's batch
    sampling = model // 6 + (threads + 5) * blocks * per_sampled
    plan = Plan(
        in_w,
        out_w,
        params,
        batch,
        calibration_rows,
        blocks,
        {
            "model": model,
            "matrix": matrix,
            "training": training,
            "calibration": calibration_rows * per_draw,
            "sampling": sampling,
        },
        memory_limit(),
    )
    if batch < batch_size:
        log.warning(
            "one batch of %d rows would hold %s of activations: training with batches of %d",
            batch_size,
            _mb(batch_size * per_example),
            batch,
        )
    if plan.peak > plan.limit:
        raise UserError(
            f"{where} needs about {_mb(plan.peak)} to train ({n_columns:,} columns encode to "
            f"{in_w:,} model inputs, {params:,} parameters; {n_rows:,} rows), more than the "
            f"{_mb(plan.limit)} available: lower max_categories, drop wide columns, set "
            "max_train_rows, or raise SYNTHGEN_MEMORY_LIMIT"
        )
    log.info(plan.describe())
    return plan


def block_rows(layout: Any, n_columns: int, latent_dim: int, variational: bool) -> int:
    """Rows per sampled block: the most (a power of two up to MAX_BLOCK_ROWS) within BLOCK_BUDGET. A
    function of the layout alone, so that a loaded model draws the same stream of rows."""
    rows = MAX_BLOCK_ROWS
    while (
        rows > MIN_BLOCK_ROWS
        and rows * _row_bytes(layout, n_columns, latent_dim, variational)[1] > BLOCK_BUDGET
    ):
        rows //= 2
    return rows


def _row_bytes(layout: Any, n_columns: int, latent_dim: int, variational: bool) -> tuple[int, int]:
    """Bytes per drawn row (matrix, logits, noise, z) and per sampled row (that, plus the decoded
    columns and a share of the decoder's chunk buffer)."""
    n_slots = len(layout.continuous)
    per_draw = FLOAT * (
        2 * layout.n_inputs
        + 2 * sum(b.n_classes for b in layout.discrete)
        + 2 * n_slots
        + len(layout.discrete)
        + latent_dim
    )
    out_w = layout.out_width + (n_slots if variational else 0)
    return per_draw, per_draw + 8 * 3 * n_columns + 16 * 4096 * out_w // MAX_BLOCK_ROWS
