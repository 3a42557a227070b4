"""Per-column likelihood of a row, read from the transformer's
layout, and sampling from the same distributions.

- softmax blocks (categories, and the point-mass / missing / continuous modes of numbers):
  cross-entropy;
- continuous values: Gaussian negative log-likelihood with a learned scale ("gaussian", the VAE: the
  decoder predicts a mean and a scale per row, so a confident reconstruction gets little noise and
  an uncertain one more), or half the squared error ("mse", the AE: a Gaussian with a fixed unit
  scale, nothing learned);
  a continuous value only counts on rows whose mode says "continuous".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from synthgen.models.exclusions import Exclusions
from synthgen.transform import Layout

# the targets are standard normal: a scale above 1 explains nothing
SIGMA_MIN, SIGMA_MAX = 0.01, 1.0
WIDE_BLOCK = 256  # classes past which a draw takes one cumulative sum (a profile's class)


class ColumnLikelihood(nn.Module):
    def __init__(
        self, layout: Layout, continuous: str = "gaussian", temperature: float = 1.0
    ) -> None:
        super().__init__()
        assert continuous in ("gaussian", "mse")
        self.continuous = continuous
        self.temperature = temperature  # of decoding only: `sample` and `decoding_logits`
        self.n_inputs = layout.n_inputs
        self.columns = list(
            dict.fromkeys(
                [b.column for b in layout.discrete] + [s.column for s in layout.continuous]
            )
        )
        col_index = {name: i for i, name in enumerate(self.columns)}
        self.n_logits = sum(b.n_classes for b in layout.discrete)
        self.groups = nn.ModuleList(
            _BlockGroup(blocks, self.n_logits) for blocks in _group_by_width(layout.discrete)
        )
        # every group's logit rows, gathered at once: one gradient of the output in training
        index = [g.index.reshape(-1) for g in self.groups]
        self.register_buffer(
            "group_rows",
            torch.cat(index) if index else torch.zeros(0, dtype=torch.long),
            persistent=False,
        )
        slots = layout.continuous
        part_of = [col_index[b.column] for g in _group_by_width(layout.discrete) for b in g] + [
            col_index[s.column] for s in slots
        ]
        self.register_buffer("part_of", torch.tensor(part_of, dtype=torch.long))
        self.register_buffer(
            "cont_cols", torch.tensor([s.input_col for s in slots], dtype=torch.long)
        )
        self.register_buffer(
            "cont_out", torch.tensor([s.out_index for s in slots], dtype=torch.long)
        )
        self.register_buffer(
            "gate_cols",
            torch.tensor(
                [s.gate_col if s.gate_col is not None else 0 for s in slots], dtype=torch.long
            ),
        )
        self.register_buffer(
            "gate_codes",
            torch.tensor(
                [s.gate_code if s.gate_code is not None else -1 for s in slots], dtype=torch.long
            ),
        )
        self.register_buffer(
            "gated", torch.tensor([s.gate_col is not None for s in slots], dtype=torch.bool)
        )
        # decoder output: the layout's logits and means,
        # then (gaussian) one log-scale per continuous value
        self.out_width = layout.out_width + (len(slots) if continuous == "gaussian" else 0)
        self.register_buffer(
            "scale_out", torch.arange(layout.out_width, self.out_width, dtype=torch.long)
        )
        # models.calibration.MarginalCalibration, set by the model
        self.calibration: nn.Module | None = None
        # models.exclusions.Exclusions, set after training (`set_exclusions`)
        self.exclusions: Exclusions | None = None
        self.layout = layout
        # block index (layout order) -> (group, row in the group): where its uniforms are
        where = {
            int(col): (g, r)
            for g, group in enumerate(self.groups)
            for r, col in enumerate(group.input_cols.tolist())
        }
        self.block_slot = [where[b.input_col] for b in layout.discrete]

    def set_exclusions(self, found: list[dict] | None) -> None:
        """Structural zeros (models.exclusions.find_exclusions) that drawn rows keep; None: none."""
        self.exclusions = Exclusions(self.layout, found, self.part_of.device) if found else None

    def _padded_t(self, out: torch.Tensor) -> torch.Tensor:
        """(layout.out_width + 1, B): the decoder output
        transposed, plus a -inf row the groups pad with.

        Softmax blocks are reduced over their classes along
        dim 0, so every op runs over contiguous rows.
        """
        return with_padding_row(out[:, : self.n_logits].T)

    def _group_logits(self, out_t: torch.Tensor) -> list[torch.Tensor]:
        """Each group's (n_blocks, width, B) logits from `_padded_t`'s output, in one gather (a
        gather per group would fill and add an output-sized gradient each in the backward pass)."""
        gathered = out_t[self.group_rows].split([g.index.numel() for g in self.groups])
        return [
            part.view(*g.index.shape, -1) for g, part in zip(self.groups, gathered, strict=True)
        ]

    def sigma(self, out: torch.Tensor) -> torch.Tensor:  # (B, n_slots)
        return sigma_of(out[:, self.scale_out])

    def _continuous_mask(self, x: torch.Tensor) -> torch.Tensor:  # (B, n_slots): which values count
        gate = x[:, self.gate_cols].long() == self.gate_codes
        return torch.where(self.gated, gate, torch.ones_like(gate)).to(x.dtype)

    def forward(self, out: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss per row, and its parts per column (in `self.columns` order)."""
        out = out.float()
        logits = self._group_logits(self._padded_t(out))
        sums = [
            nll
            for group, z in zip(self.groups, logits, strict=True)
            for nll in group.nll(z, x).sum(1).unbind()
        ]
        if len(self.cont_cols):
            sums.extend(self._continuous_nll(out, x).sum(0).unbind())
        # every column is constant: nothing to reconstruct (the decoder's output is empty)
        if not sums:
            return out.sum() * 0.0, out.new_zeros(0)
        per_part = torch.stack(sums) / x.shape[0]
        parts = torch.zeros(len(self.columns), device=x.device).index_add(0, self.part_of, per_part)
        return parts.sum(), parts

    def _continuous_nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, n_slots): each continuous value's negative log-likelihood, 0 where its mode is not
        "continuous"."""
        target, mean = x[:, self.cont_cols], out[:, self.cont_out]  # (B, n_slots)
        if self.continuous == "gaussian":
            sigma = self.sigma(out)
            nll = 0.5 * ((target - mean) / sigma) ** 2 + sigma.log() + 0.5 * math.log(2 * math.pi)
        else:
            nll = 0.5 * (target - mean) ** 2
        return nll * self._continuous_mask(x)

    def row_nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, n_columns): each row's negative log-likelihood per column (`self.columns` order),
        what `forward` averages over rows."""
        out = out.float()
        logits = self._group_logits(self._padded_t(out))
        parts = [g.nll(z, x) for g, z in zip(self.groups, logits, strict=True)]  # (n_blocks, B)
        if len(self.cont_cols):
            parts.append(self._continuous_nll(out, x).T)
        rows = out.new_zeros(len(self.columns), x.shape[0])
        if parts:
            rows.index_add_(0, self.part_of, torch.cat(parts))
        return rows.T

    def continuous_values_t(
        self, matrix_t: torch.Tensor, chunk: int = 64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """From a transposed compact matrix (n_inputs, N): every continuous slot's values
        (n_slots, N), and on which rows its mode uses them (n_slots, N); `chunk` slots at a time, so
        a wide table needs no (N, n_slots) copy."""
        used = torch.empty(
            len(self.cont_cols), matrix_t.shape[1], dtype=torch.bool, device=matrix_t.device
        )
        for a in range(0, len(self.cont_cols), chunk):
            b = a + chunk
            codes = matrix_t[self.gate_cols[a:b]].long()
            used[a:b] = (codes == self.gate_codes[a:b].unsqueeze(1)) | ~self.gated[a:b].unsqueeze(1)
        return matrix_t[self.cont_cols], used

    @torch.no_grad()
    def draw_noise(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The randomness of `sample` for n rows, drawn up front so that rows sampled in chunks are
        the same as rows sampled at once: one uniform per softmax block (n_blocks, n) per group, and
        (gaussian) one standard normal per continuous value (n_slots, n)."""
        uniforms = [
            torch.rand(len(g.input_cols), n, device=device, generator=generator)
            for g in self.groups
        ]
        normals = (
            torch.randn(len(self.cont_cols), n, device=device, generator=generator)
            if self.continuous == "gaussian" and len(self.cont_cols)
            else None
        )
        return uniforms, normals

    @torch.no_grad()
    def sample(
        self,
        out_t: torch.Tensor,
        noise: tuple[list[torch.Tensor], torch.Tensor | None] | None = None,
        fixed: dict[int, torch.Tensor] | None = None,
        shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw a compact matrix, transposed (n_inputs, B), from the decoder's transposed output
        (out_width, B): ancestral sampling from every column's distribution, never argmax, then
        the structural zeros kept (`exclusions`). `noise` comes from `draw_noise` (fresh when
        None); `fixed`: block index -> (B,) class codes set rather than drawn (conditions);
        `shift`: the class shifts to draw with (`decoding_logits`)."""
        n = out_t.shape[1]
        uniforms, normals = noise if noise is not None else self.draw_noise(n, device=out_t.device)
        matrix_t = self.draw_classes(out_t[: self.n_logits], uniforms, fixed, shift)
        if len(self.cont_cols):
            values = out_t[self.cont_out].float()  # (n_slots, B)
            if normals is not None:
                sigma = sigma_of(out_t[self.scale_out].float())
                if self.temperature != 1.0:
                    sigma *= self.temperature
                values += sigma * normals
            if self.calibration is not None:
                values = self.calibration(values)
            gate = matrix_t[self.gate_cols] == self.gate_codes.unsqueeze(1).float()
            values *= gate | ~self.gated.unsqueeze(1)
            matrix_t[self.cont_cols] = values
        return matrix_t

    @torch.no_grad()
    def draw_classes(
        self,
        logits_t: torch.Tensor,
        uniforms: list[torch.Tensor],
        fixed: dict[int, torch.Tensor] | None = None,
        shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The class codes of every softmax block drawn from the decoder's logits (n_logits, B)
        with `uniforms` (draw_noise's), `fixed` blocks set, the structural zeros kept: a compact
        matrix, transposed (n_inputs, B), with the continuous values still 0. `shift`: as in
        `decoding_logits`."""
        n = logits_t.shape[1]
        # the logits, plus one -inf row that the padded softmax groups point at
        padded = logits_t.new_empty(self.n_logits + 1, n, dtype=torch.float32)
        self.decoding_logits(logits_t, out=padded[:-1], shift=shift)
        padded[-1] = float("-inf")
        matrix_t = torch.zeros(self.n_inputs, n, device=logits_t.device)
        for group, u in zip(self.groups, uniforms, strict=False):
            matrix_t[group.input_cols] = group.sample(padded, u)
        for j, codes in (fixed or {}).items():
            matrix_t[self.layout.discrete[j].input_col] = codes.to(matrix_t.dtype)
        if self.exclusions is not None:
            u_of = {j: uniforms[g][r] for j, (g, r) in enumerate(self.block_slot)}
            self.exclusions.repair(matrix_t, padded, u_of, frozenset(fixed or ()))
        return matrix_t

    def decoding_logits(
        self,
        logits_t: torch.Tensor,
        out: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The logits rows are drawn from (n_logits, B): the decoder's, divided by the temperature,
        plus the class shifts (into `out` when given: one pass). `shift` (n_logits,) replaces the
        calibration's (a condition's class shares)."""
        scaled = logits_t if self.temperature == 1.0 else logits_t / self.temperature
        if shift is None and self.calibration is not None:
            shift = self.calibration.logit_shift
        if shift is None:
            return scaled.float() if out is None else out.copy_(scaled)
        shift = shift.unsqueeze(1)
        return torch.add(scaled, shift) if out is None else torch.add(scaled, shift, out=out)


def sigma_of(raw: torch.Tensor) -> torch.Tensor:
    """A continuous value's scale from the decoder's raw output, within [SIGMA_MIN, SIGMA_MAX]."""
    return torch.sigmoid(raw) * (SIGMA_MAX - SIGMA_MIN) + SIGMA_MIN


def with_padding_row(logits_t: torch.Tensor) -> torch.Tensor:  # (n_logits, B) -> (n_logits + 1, B)
    """Transposed logits plus the -inf row that the softmax groups' padding points at."""
    return torch.cat([logits_t, logits_t.new_full((1, logits_t.shape[1]), float("-inf"))], dim=0)


def _group_by_width(blocks) -> list[list]:
    """Softmax blocks in a few groups of similar width, so each group is one padded tensor op."""
    groups: dict[int, list] = {}
    for b in blocks:
        bucket = next(w for w in (2, 4, 8, 16, 64, 256, 1 << 30) if b.n_classes <= w)
        groups.setdefault(bucket, []).append(b)
    return [groups[k] for k in sorted(groups)]


class _BlockGroup(nn.Module):
    """Softmax blocks of similar width gathered into one
    (n_blocks, width, B) tensor, padded with -inf."""

    def __init__(self, blocks, pad: int) -> None:
        super().__init__()
        width = max(b.n_classes for b in blocks)
        index = [
            [b.out_start + k if k < b.n_classes else pad for k in range(width)] for b in blocks
        ]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long))  # (n_blocks, width)
        self.register_buffer(
            "input_cols", torch.tensor([b.input_col for b in blocks], dtype=torch.long)
        )
        self.register_buffer(
            "last_class", torch.tensor([b.n_classes - 1 for b in blocks], dtype=torch.long)
        )

    def nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # the (n_blocks, B) cross-entropy from the group's (n_blocks, width, B) logits
        logp = torch.log_softmax(logits, dim=1)
        target = x[:, self.input_cols].T.long().unsqueeze(1)  # (n_blocks, 1, B)
        return -logp.gather(1, target).squeeze(1)

    def sample(self, out_t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # (n_blocks, B)
        """Inverse-CDF draw: the class where the running sum
        of probabilities passes u ~ U(0, 1) (n_blocks, B)."""
        probs = torch.softmax(out_t[self.index], dim=1)  # (n_blocks, width, B)
        if probs.shape[1] > WIDE_BLOCK:  # one cumulative sum, not a step per class
            codes = (probs.cumsum(1) < u.unsqueeze(1)).sum(1, dtype=u.dtype)
            return torch.minimum(codes, self.last_class.unsqueeze(1).float())
        running, codes, passed = torch.zeros_like(u), torch.zeros_like(u), torch.empty_like(u)
        for k in range(probs.shape[1] - 1):  # over classes, each step a contiguous (n_blocks, B) op
            running += probs[:, k]
            torch.lt(running, u, out=passed)  # into a float tensor: no bool -> float copy
            codes += passed
        return torch.minimum(codes, self.last_class.unsqueeze(1).float())
