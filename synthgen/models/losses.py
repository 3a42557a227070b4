"""Per-column reconstruction losses read from the transformer's layout, and sampling from the same distributions.

- softmax blocks (categories, and the point-mass / missing / continuous modes of numbers): cross-entropy;
- continuous values: Gaussian negative log-likelihood with a learned scale ("gaussian", the VAE: the decoder
  predicts a mean and a log-scale per row, so a confident reconstruction gets little noise and an uncertain
  one more; one global scale per column blurred the joint structure of the rows it draws), or half the
  squared error ("mse", the AE: a Gaussian with a fixed unit scale, nothing learned);
  a continuous value only counts on rows whose mode says "continuous".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from synthgen.transform import Layout

SIGMA_MIN, SIGMA_MAX = 0.01, 1.0  # the targets are standard normal: a scale above 1 explains nothing
CALIBRATION_KNOTS = 257  # per continuous value
MIN_CALIBRATION_VALUES = 1_000  # fewer drawn values leave a column uncalibrated: too few to place the tail knots
CLASS_ROUNDS = 30  # rounds of the class-share fit: each round closes most of the remaining gap
MAX_LOGIT_SHIFT = 10.0  # a class absent from the training column is drawn with odds below e^-10, not never


class MarginalCalibration(nn.Module):
    """Brings each column's marginal in the model's draws to the training column's, fitted to the model's own
    draws after training. Identity until fitted.

    Continuous values: one monotone piecewise-linear map per value, from the drawn values to normal scores. In
    the transformer's encoding a training column's continuous values are standard normal; the map (`fit`) sends
    each draw to the normal score of its quantile among the draws, so the column's marginal, tails and range
    included, becomes the training column's, while every draw keeps its rank within the column: the dependence
    between columns is still the model's. The knots sit evenly spaced across the range of the draws (normal
    scores, so a few units wide), which makes finding a value's segment one division rather than a search: it
    runs on every sampled value.

    Categories (and the modes of numbers): one shift per logit (`ColumnLikelihood.calibrate_classes`), so that
    the mean of the softmax over the draws is the class's share of the training rows. A shift leaves every odds
    ratio between two rows unchanged, so which rows lean to a class is still the model's.
    """

    def __init__(self, n_slots: int, n_logits: int = 0) -> None:
        super().__init__()
        self.register_buffer("low", torch.empty(n_slots, 1))  # the lowest draw: the first knot
        self.register_buffer("step", torch.empty(n_slots, 1))  # distance between knots
        self.register_buffer("target", torch.empty(n_slots, CALIBRATION_KNOTS))  # normal score at each knot
        self.register_buffer("logit_shift", torch.empty(n_logits))  # added to the decoder's logits
        self.reset()

    def reset(self) -> None:
        """Back to the identity, so that the model's own draws can be fitted again."""
        self.logit_shift.zero_()
        self.low.fill_(-5.0)
        self.step.fill_(10.0 / (CALIBRATION_KNOTS - 1))
        self.target.copy_(torch.linspace(-5.0, 5.0, CALIBRATION_KNOTS, device=self.target.device).expand_as(self.target))

    @torch.no_grad()
    def fit(self, values_t: torch.Tensor, used_t: torch.Tensor, chunk: int = 64) -> int:
        """`values_t` (n_slots, N): the values drawn for every continuous slot; `used_t` (n_slots, N): on which rows
        each slot's mode says "continuous". Returns how many slots were calibrated (a slot used on under
        MIN_CALIBRATION_VALUES rows, or with one value only, keeps the identity). Slots are fitted `chunk` at a time,
        sorted together."""
        fitted = 0
        for a in range(0, len(values_t), chunk):
            v = values_t[a:a + chunk].double().masked_fill(~used_t[a:a + chunk], float("inf")).sort(dim=1).values
            n = used_t[a:a + chunk].sum(1)  # (S,): the used values sort first
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
            quantile = torch.minimum(torch.maximum((below + at_or_below) / (2 * nn), 0.5 / nn), 1 - 0.5 / nn)
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
        return torch.where(position < 0, below, torch.where(position > CALIBRATION_KNOTS - 1, above, mapped))


class ColumnLikelihood(nn.Module):
    def __init__(self, layout: Layout, continuous: str = "gaussian", calibrate: bool = False) -> None:
        super().__init__()
        assert continuous in ("gaussian", "mse")
        self.continuous = continuous
        self.n_inputs = layout.n_inputs
        self.columns = list(dict.fromkeys([b.column for b in layout.discrete] + [s.column for s in layout.continuous]))
        col_index = {name: i for i, name in enumerate(self.columns)}
        self.n_logits = sum(b.n_classes for b in layout.discrete)
        self.groups = nn.ModuleList(_BlockGroup(blocks, self.n_logits) for blocks in _group_by_width(layout.discrete))
        slots = layout.continuous
        part_of = [col_index[b.column] for g in _group_by_width(layout.discrete) for b in g] + [col_index[s.column] for s in slots]
        self.register_buffer("part_of", torch.tensor(part_of, dtype=torch.long))
        self.register_buffer("cont_cols", torch.tensor([s.input_col for s in slots], dtype=torch.long))
        self.register_buffer("cont_out", torch.tensor([s.out_index for s in slots], dtype=torch.long))
        self.register_buffer("gate_cols", torch.tensor([s.gate_col if s.gate_col is not None else 0 for s in slots], dtype=torch.long))
        self.register_buffer("gate_codes", torch.tensor([s.gate_code if s.gate_code is not None else -1 for s in slots], dtype=torch.long))
        self.register_buffer("gated", torch.tensor([s.gate_col is not None for s in slots], dtype=torch.bool))
        # decoder output: the layout's logits and means, then (gaussian) one log-scale per continuous value
        self.out_width = layout.out_width + (len(slots) if continuous == "gaussian" else 0)
        self.register_buffer("scale_out", torch.arange(layout.out_width, self.out_width, dtype=torch.long))
        self.calibration = MarginalCalibration(len(slots), self.n_logits) if calibrate else None

    def _padded_t(self, out: torch.Tensor) -> torch.Tensor:
        """(layout.out_width + 1, B): the decoder output transposed, plus a -inf row the groups pad with.

        Softmax blocks are reduced over their classes along dim 0, so every op runs over contiguous rows.
        """
        return _with_padding_row(out[:, :self.n_logits].T)

    def sigma(self, out: torch.Tensor) -> torch.Tensor:  # (B, n_slots)
        return torch.sigmoid(out[:, self.scale_out]) * (SIGMA_MAX - SIGMA_MIN) + SIGMA_MIN

    def _continuous_mask(self, x: torch.Tensor) -> torch.Tensor:  # (B, n_slots): which values count
        gate = x[:, self.gate_cols].long() == self.gate_codes
        return torch.where(self.gated, gate, torch.ones_like(gate)).to(x.dtype)

    def forward(self, out: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss per row, and its parts per column (in `self.columns` order)."""
        out = out.float()
        out_t = self._padded_t(out)
        sums = [nll for group in self.groups for nll in group.nll(out_t, x).sum(1).unbind()]
        if len(self.cont_cols):
            target, mean = x[:, self.cont_cols], out[:, self.cont_out]  # (B, n_slots)
            if self.continuous == "gaussian":
                sigma = self.sigma(out)
                nll = 0.5 * ((target - mean) / sigma) ** 2 + sigma.log() + 0.5 * math.log(2 * math.pi)
            else:
                nll = 0.5 * (target - mean) ** 2
            sums.extend((nll * self._continuous_mask(x)).sum(0).unbind())
        if not sums:  # every column is constant: nothing to reconstruct (the decoder's output is empty)
            return out.sum() * 0.0, out.new_zeros(0)
        per_part = torch.stack(sums) / x.shape[0]
        parts = torch.zeros(len(self.columns), device=x.device).index_add(0, self.part_of, per_part)
        return parts.sum(), parts

    def class_shares(self, matrix: torch.Tensor) -> torch.Tensor:  # (n_logits,)
        """Each class's share of the rows of a compact matrix (N, n_inputs), in logit order."""
        counts = torch.zeros(self.n_logits + 1, device=matrix.device)  # the last slot: the groups' padding
        for group in self.groups:
            codes = matrix[:, group.input_cols].T.long()  # (n_blocks, N)
            counts.index_add_(0, group.index.gather(1, codes).flatten(), torch.ones(codes.numel(), device=matrix.device))
        return counts[:-1] / max(len(matrix), 1)

    def expected_shares(self, logits_t: torch.Tensor, chunk: int = 16_384) -> torch.Tensor:  # (n_logits,)
        """Mean softmax probability of each class over the rows of transposed logits (n_logits, N), with the
        calibration's shift; `chunk` rows at a time, fewer for wide tables (about 8M logits per chunk)."""
        chunk = max(256, min(chunk, 8_000_000 // max(self.n_logits, 1)))
        shift = self.calibration.logit_shift.unsqueeze(1) if self.calibration is not None else 0.0
        sums = torch.zeros(self.n_logits + 1, device=logits_t.device)
        for a in range(0, logits_t.shape[1], chunk):
            padded = _with_padding_row(logits_t[:, a:a + chunk] + shift)
            for group in self.groups:
                sums.index_add_(0, group.index.flatten(), torch.softmax(padded[group.index], dim=1).sum(2).flatten())
        return sums[:-1] / max(logits_t.shape[1], 1)

    @torch.no_grad()
    def calibrate_classes(self, logits_t: torch.Tensor, target: torch.Tensor) -> float:
        """Fit the calibration's logit shifts so that the mean softmax over drawn logits (n_logits, N) is
        `target`, the training rows' class shares (`class_shares`). Alternating the softmax with a per-class
        correction is Sinkhorn's iteration, which converges. Returns the largest gap left between a class's
        expected and target share."""
        shift = self.calibration.logit_shift
        shift.zero_()
        log_target = target.clamp_min(1e-12).log()
        for _ in range(CLASS_ROUNDS):
            shift += log_target - self.expected_shares(logits_t).clamp_min(1e-12).log()
            shift.clamp_(-MAX_LOGIT_SHIFT, MAX_LOGIT_SHIFT)
        return float((self.expected_shares(logits_t) - target).abs().max()) if self.n_logits else 0.0

    def continuous_values_t(self, matrix_t: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """From a transposed compact matrix (n_inputs, N): every continuous slot's values (n_slots, N), and on which
        rows its mode uses them (n_slots, N); `chunk` slots at a time, so a wide table needs no (N, n_slots) copy."""
        used = torch.empty(len(self.cont_cols), matrix_t.shape[1], dtype=torch.bool, device=matrix_t.device)
        for a in range(0, len(self.cont_cols), chunk):
            b = a + chunk
            codes = matrix_t[self.gate_cols[a:b]].long()
            used[a:b] = (codes == self.gate_codes[a:b].unsqueeze(1)) | ~self.gated[a:b].unsqueeze(1)
        return matrix_t[self.cont_cols], used

    @torch.no_grad()
    def draw_noise(self, n: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The randomness of `sample` for n rows, drawn up front so that rows sampled in chunks are the same
        as rows sampled at once: one uniform per softmax block (n_blocks, n) per group, and (gaussian) one
        standard normal per continuous value (n_slots, n)."""
        uniforms = [torch.rand(len(g.input_cols), n, device=device, generator=generator) for g in self.groups]
        normals = (torch.randn(len(self.cont_cols), n, device=device, generator=generator)
                   if self.continuous == "gaussian" and len(self.cont_cols) else None)
        return uniforms, normals

    @torch.no_grad()
    def sample(self, out_t: torch.Tensor, noise: tuple[list[torch.Tensor], torch.Tensor | None] | None = None) -> torch.Tensor:
        """Draw a compact matrix, transposed (n_inputs, B), from the decoder's transposed output
        (out_width, B): ancestral sampling from every column's distribution, never argmax. `noise`
        comes from `draw_noise` (fresh when None)."""
        n = out_t.shape[1]
        uniforms, normals = noise if noise is not None else self.draw_noise(n, device=out_t.device)
        # the logits, plus one -inf row that the padded softmax groups point at
        padded = out_t.new_empty(self.n_logits + 1, n, dtype=torch.float32)
        if self.calibration is not None:  # shifted while copied: one pass
            torch.add(out_t[:self.n_logits], self.calibration.logit_shift.unsqueeze(1), out=padded[:-1])
        else:
            padded[:-1] = out_t[:self.n_logits]
        padded[-1] = float("-inf")
        matrix_t = torch.zeros(self.n_inputs, n, device=out_t.device)
        for group, u in zip(self.groups, uniforms):
            matrix_t[group.input_cols] = group.sample(padded, u)
        if len(self.cont_cols):
            values = out_t[self.cont_out].float()  # (n_slots, B)
            if normals is not None:
                sigma = torch.sigmoid(out_t[self.scale_out].float()) * (SIGMA_MAX - SIGMA_MIN) + SIGMA_MIN
                values += sigma * normals
            if self.calibration is not None:
                values = self.calibration(values)
            gate = matrix_t[self.gate_cols] == self.gate_codes.unsqueeze(1).float()
            values *= (gate | ~self.gated.unsqueeze(1))
            matrix_t[self.cont_cols] = values
        return matrix_t


def _with_padding_row(logits_t: torch.Tensor) -> torch.Tensor:  # (n_logits, B) -> (n_logits + 1, B)
    """Transposed logits plus the -inf row that the softmax groups' padding points at."""
    return torch.cat([logits_t, logits_t.new_full((1, logits_t.shape[1]), float("-inf"))], dim=0)


def _group_by_width(blocks) -> list[list]:
    """Softmax blocks in a few groups of similar width, so that each group is one padded tensor op."""
    groups: dict[int, list] = {}
    for b in blocks:
        bucket = next(w for w in (2, 4, 8, 16, 64, 256, 1 << 30) if b.n_classes <= w)
        groups.setdefault(bucket, []).append(b)
    return [groups[k] for k in sorted(groups)]


class _BlockGroup(nn.Module):
    """Softmax blocks of similar width gathered into one (n_blocks, width, B) tensor, padded with -inf."""

    def __init__(self, blocks, pad: int) -> None:
        super().__init__()
        width = max(b.n_classes for b in blocks)
        index = [[b.out_start + k if k < b.n_classes else pad for k in range(width)] for b in blocks]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long))  # (n_blocks, width)
        self.register_buffer("input_cols", torch.tensor([b.input_col for b in blocks], dtype=torch.long))
        self.register_buffer("last_class", torch.tensor([b.n_classes - 1 for b in blocks], dtype=torch.long))

    def nll(self, out_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # (n_blocks, B) cross-entropy
        logp = torch.log_softmax(out_t[self.index], dim=1)  # (n_blocks, width, B)
        target = x[:, self.input_cols].T.long().unsqueeze(1)  # (n_blocks, 1, B)
        return -logp.gather(1, target).squeeze(1)

    def sample(self, out_t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # (n_blocks, B)
        """Inverse-CDF draw: the class where the running sum of probabilities passes u ~ U(0, 1) (n_blocks, B)."""
        probs = torch.softmax(out_t[self.index], dim=1)  # (n_blocks, width, B)
        running, codes, passed = torch.zeros_like(u), torch.zeros_like(u), torch.empty_like(u)
        for k in range(probs.shape[1] - 1):  # over classes, each step a contiguous (n_blocks, B) op
            running += probs[:, k]
            torch.lt(running, u, out=passed)  # into a float tensor: no bool -> float copy
            codes += passed
        return torch.minimum(codes, self.last_class.unsqueeze(1).float())
