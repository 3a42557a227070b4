"""Marginal calibration: after training, each column's marginal in the model's draws is brought to
the training column's, fitted on the model's own draws. Continuous values get a monotone map (their
ranks are kept, so the dependence between columns is still the model's); categories, and the modes
of numbers, get one logit shift per class (so which rows lean to a class is still the model's)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from synthgen.models.draw import draw_matrix_t, prior_logits_t
from synthgen.models.likelihood import ColumnLikelihood

log = logging.getLogger("synthgen")

CALIBRATION_KNOTS = 257  # per continuous value
# fewer drawn values leave a column uncalibrated: too few to place the tail knots
MIN_CALIBRATION_VALUES = 1_000
CLASS_ROUNDS = 30  # rounds of the class-share fit, at most: each closes most of the remaining gap
SHARE_TOLERANCE = 1e-5  # the fit stops once every class's share is this close to its target
# a class absent from the training column is drawn with odds below e^-10, not never
MAX_LOGIT_SHIFT = 10.0


class MarginalCalibration(nn.Module):
    """Brings each column's marginal in the model's draws to the training column's, fitted to the
    model's own draws after training. Identity until fitted.

    Continuous values: one monotone piecewise-linear map per value, from the drawn values to normal
    scores. In the transformer's encoding a training column's continuous values are standard normal;
    the map (`fit`) sends each draw to the normal score of its quantile among the draws, so the
    column's marginal, tails and range included, becomes the training column's, while every draw
    keeps its rank within the column: the dependence between columns is still the model's. The knots
    sit evenly spaced across the range of the draws (normal scores, so a few units wide), which
    makes finding a value's segment one division rather than a search: it runs on every sampled
    value.

    Categories (and the modes of numbers): one shift per logit
    (`ColumnLikelihood.calibrate_classes`), so that the mean of the softmax over the draws is the
    class's share of the training rows. A shift leaves every odds ratio between two rows unchanged,
    so which rows lean to a class is still the model's.
    """

    def __init__(self, n_slots: int, n_logits: int = 0) -> None:
        super().__init__()
        self.register_buffer("low", torch.empty(n_slots, 1))  # the lowest draw: the first knot
        self.register_buffer("step", torch.empty(n_slots, 1))  # distance between knots
        # normal score at each knot
        self.register_buffer("target", torch.empty(n_slots, CALIBRATION_KNOTS))
        self.register_buffer("logit_shift", torch.empty(n_logits))  # added to the decoder's logits
        self.reset()

    def reset(self) -> None:
        """Back to the identity, so that the model's own draws can be fitted again."""
        self.logit_shift.zero_()
        self.low.fill_(-5.0)
        self.step.fill_(10.0 / (CALIBRATION_KNOTS - 1))
        self.target.copy_(
            torch.linspace(-5.0, 5.0, CALIBRATION_KNOTS, device=self.target.device).expand_as(
                self.target
            )
        )

    @torch.no_grad()
    def fit(self, values_t: torch.Tensor, used_t: torch.Tensor, chunk: int = 64) -> int:
        """`values_t` (n_slots, N): the values drawn for every continuous slot; `used_t`
        (n_slots, N): on which rows each slot's mode says "continuous". Returns how many slots were
        calibrated (a slot used on under MIN_CALIBRATION_VALUES rows, or with one value only, keeps
        the identity). Slots are fitted `chunk` at a time, sorted together."""
        fitted = 0
        for a in range(0, len(values_t), chunk):
            v = (
                values_t[a : a + chunk]
                .double()
                .masked_fill(~used_t[a : a + chunk], float("inf"))
                .sort(dim=1)
                .values
            )
            n = used_t[a : a + chunk].sum(1)  # (S,): the used values sort first
            last = v.gather(1, (n - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
            ok = (n >= MIN_CALIBRATION_VALUES) & (last > v[:, 0])
            if not ok.any():
                continue
            steps = torch.linspace(0, 1, CALIBRATION_KNOTS, dtype=torch.float64, device=v.device)
            knots = v[:, :1] + (last - v[:, 0]).unsqueeze(1) * steps  # (S, knots)
            knots[:, -1] = last
            below = torch.searchsorted(v, knots.contiguous(), right=False)
            at_or_below = torch.searchsorted(v, knots.contiguous(), right=True)
            nn = n.unsqueeze(1).double()
            quantile = torch.minimum(
                torch.maximum((below + at_or_below) / (2 * nn), 0.5 / nn), 1 - 0.5 / nn
            )
            slots = torch.nonzero(ok).squeeze(1)
            self.low[a + slots] = v[slots, :1].float()
            self.step[a + slots] = (knots[slots, 1:2] - knots[slots, :1]).float()
            self.target[a + slots] = torch.special.ndtri(quantile[slots]).float()
            fitted += int(ok.sum())
        return fitted

    def forward(self, values: torch.Tensor) -> torch.Tensor:  # (n_slots, B) -> (n_slots, B)
        position = (values - self.low) / self.step  # in knots from the first
        segment = position.floor().clamp(0, CALIBRATION_KNOTS - 2)
        index = segment.long()
        z0, z1 = self.target.gather(1, index), self.target.gather(1, index + 1)
        mapped = z0 + (position - segment) * (z1 - z0)
        # beyond the outermost draws: shifted, not stretched
        below = self.target[:, :1] + (values - self.low)
        above = self.target[:, -1:] + (values - self.low - self.step * (CALIBRATION_KNOTS - 1))
        return torch.where(
            position < 0, below, torch.where(position > CALIBRATION_KNOTS - 1, above, mapped)
        )


def class_shares(likelihood: ColumnLikelihood, matrix: torch.Tensor) -> torch.Tensor:  # (n_logits,)
    """Each class's share of the rows of a compact matrix (N, n_inputs), in logit order."""
    # the last slot: the groups' padding
    counts = torch.zeros(likelihood.n_logits + 1, device=matrix.device)
    for group in likelihood.groups:
        codes = matrix[:, group.input_cols].T.long()  # (n_blocks, N)
        counts.index_add_(
            0,
            group.index.gather(1, codes).flatten(),
            torch.ones(codes.numel(), device=matrix.device),
        )
    return counts[:-1] / max(len(matrix), 1)


def expected_shares(
    likelihood: ColumnLikelihood,
    logits_t: torch.Tensor,
    chunk: int = 16_384,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean softmax probability of each class over the rows of transposed logits (n_logits, N), with
    the class shifts (`shift`, else the calibration's); `chunk` rows at a time, fewer for wide
    tables (about 8M logits per chunk)."""
    chunk = max(256, min(chunk, 8_000_000 // max(likelihood.n_logits, 1)))
    n = logits_t.shape[1]
    # one buffer for every chunk: the decoding logits, plus the -inf row the groups' padding reads
    padded = logits_t.new_empty(likelihood.n_logits + 1, min(chunk, n), dtype=torch.float32)
    padded[-1] = float("-inf")
    sums = torch.zeros(likelihood.n_logits + 1, device=logits_t.device)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        likelihood.decoding_logits(logits_t[:, a:b], out=padded[:-1, : b - a], shift=shift)
        for group in likelihood.groups:
            probs = torch.softmax(padded[:, : b - a][group.index], dim=1)  # (blocks, width, B)
            sums.index_add_(0, group.index.flatten(), probs.sum(2).flatten())
    return sums[:-1] / max(logits_t.shape[1], 1)


@torch.no_grad()
def calibrate_classes(
    likelihood: ColumnLikelihood,
    logits_t: torch.Tensor,
    target: torch.Tensor,
    shift: torch.Tensor | None = None,
    used: torch.Tensor | None = None,
    rounds: int = CLASS_ROUNDS,
) -> float:
    """Fit logit shifts so that the mean softmax over drawn logits (n_logits, N) is `target`, the
    training rows' class shares (`class_shares`): the calibration's, from zero, or `shift` in
    place from where it stands, moving only the `used` classes (a bool mask) when given.
    Alternating the softmax with a per-class correction is Sinkhorn's iteration, which converges.
    Returns the largest gap left between a class's expected and target share."""
    if shift is None:
        shift = likelihood.calibration.logit_shift
        shift.zero_()
    if not likelihood.n_logits:
        return 0.0
    log_target = target.clamp_min(1e-12).log()
    for done in range(rounds + 1):
        expected = expected_shares(likelihood, logits_t, shift=shift)
        gaps = (expected - target).abs()
        gap = float(gaps.max() if used is None else gaps[used].max())
        if gap < SHARE_TOLERANCE or done == rounds:
            break
        step = log_target - expected.clamp_min(1e-12).log()
        shift += step if used is None else torch.where(used, step, 0.0)
        shift.clamp_(-MAX_LOGIT_SHIFT, MAX_LOGIT_SHIFT)
    return gap


EXCLUSION_ROUNDS = 4  # rounds of the class-share fit on drawn codes, structural zeros kept


@torch.no_grad()
def calibrate_with_exclusions(
    likelihood: ColumnLikelihood,
    logits_t: torch.Tensor,
    target: torch.Tensor,
    generator: torch.Generator,
    shift: torch.Tensor | None = None,
    used: torch.Tensor | None = None,
    fixed: dict[int, torch.Tensor] | None = None,
) -> None:
    """Correct the class shifts (the calibration's, or `shift`, only the `used` classes when
    given) for the structural zeros (models.exclusions): a redrawn code moves its row to another
    class, so shares are counted on codes drawn from `logits_t` with the zeros kept and the
    `fixed` blocks set, and each class's shift moves by the log ratio of its target count to its
    drawn count (each plus one, so a class drawn rarely moves little on noise)."""
    shift = likelihood.calibration.logit_shift if shift is None else shift
    n = logits_t.shape[1]
    for _ in range(EXCLUSION_ROUNDS):
        uniforms, _ = likelihood.draw_noise(n, generator, logits_t.device)
        codes_t = likelihood.draw_classes(logits_t, uniforms, fixed, shift)
        step = ((target * n + 1) / (class_shares(likelihood, codes_t.T) * n + 1)).log()
        shift += step if used is None else torch.where(used, step, 0.0)
        shift.clamp_(-MAX_LOGIT_SHIFT, MAX_LOGIT_SHIFT)


CALIBRATION_ROWS = 65_536


@torch.inference_mode()
def calibrate_marginals(
    model: nn.Module,
    training_matrix: torch.Tensor,
    seed: int,
    precision: str = "auto",
    rows: int = CALIBRATION_ROWS,
) -> tuple[int, int]:
    """Fit the model's marginal calibration (models.calibration.MarginalCalibration) to `rows` rows
    drawn from it with `seed`: first the class shifts, to the class shares of `training_matrix` (the
    encoded training table, (N, n_inputs)), then, on rows drawn with those shifts, the continuous
    maps. Returns how many softmax blocks and continuous values were calibrated."""
    likelihood = model.likelihood
    if likelihood.calibration is None:
        return 0, 0
    model.eval()
    likelihood.calibration.reset()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    blocks = sum(len(g.input_cols) for g in likelihood.groups)
    if blocks:
        logits_t = prior_logits_t(model, rows, generator, precision)
        target = class_shares(likelihood, training_matrix.to(device))
        gap = calibrate_classes(likelihood, logits_t, target)
        log.debug("class shares calibrated to within %.2g of the training rows'", gap)
        if likelihood.exclusions is not None:
            calibrate_with_exclusions(likelihood, logits_t, target, generator)
    matrix_t = draw_matrix_t(model, rows, generator, precision)  # stays on the device
    return blocks, likelihood.calibration.fit(*likelihood.continuous_values_t(matrix_t))
