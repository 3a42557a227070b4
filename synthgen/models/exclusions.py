"""Structural zeros: pairs of classes that fewer than `rare_threshold` training rows hold together
(most often none) although, were their two columns independent, at least ZERO_EXPECTED rows would
hold them. A class is a category or a number's mode (missing, a point mass such as 0, "continuous"),
so "no basement" against a basement area above 0, or phone_service = 0 against multiple_lines =
"No", is such a pair. A pair that 1-4 rows hold where independence expects 10 or more is a near
zero (a data-entry slip, a rare exception): drawing it at the model's rate gives rows away, and
never drawing it also keeps those few rows' combination out of the synthetic ones.

The decoder draws every column independently given z, so it draws these pairs now and then (the
default VAE's rows: 15% of telco_churn's broke at least one, 18% of adult's, 94% of caravan's), and
a classifier spots such rows at once. After the draw, a row that breaks one redraws the later of the
two blocks from its own probabilities with the excluded classes masked, block by block in layout
order (a conditioned block first), so every earlier block is final when a later one is checked.

Only classes at least `rare_threshold` training rows hold take part, and the model stores which
pairs are excluded, not counts. Not in DP mode (the pairs are read from the rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthgen.transform import Layout

# independent columns would leave a pair of classes this many rows expect empty with chance e^-10
ZERO_EXPECTED = 10.0
MAX_PAIR_VALUES = 1 << 24  # class pairs examined, at most (a wide table's later pairs go unchecked)


def find_exclusions(matrix: np.ndarray, layout: Layout, k: int) -> list[dict[str, Any]]:
    """The structural zeros of an encoded table (N, n_inputs), class pairs fewer than k rows (at
    least one) hold: per pair of softmax blocks with at least one, {"a": block index, "b": later
    block index, "excluded": hex bitmask over a's classes x b's}."""
    n = len(matrix)
    blocks = layout.discrete
    codes = [matrix[:, b.input_col].astype(np.int64) for b in blocks]
    counts = [np.bincount(c, minlength=b.n_classes) for c, b in zip(codes, blocks, strict=True)]
    out, examined = [], 0
    for i, a in enumerate(blocks):
        for j in range(i + 1, len(blocks)):
            b = blocks[j]
            if a.column == b.column:  # one column's own blocks: the encoder keeps them consistent
                continue
            if "profile" in (a.role, b.role):  # its rows' columns are written from the profile
                continue
            examined += a.n_classes * b.n_classes
            if examined > MAX_PAIR_VALUES:
                return out
            joint = np.bincount(
                codes[i] * b.n_classes + codes[j], minlength=a.n_classes * b.n_classes
            ).reshape(a.n_classes, b.n_classes)
            held = (counts[i] >= max(k, 1))[:, None] & (counts[j] >= max(k, 1))[None, :]
            expected = np.outer(counts[i], counts[j]) / max(n, 1)
            excluded = (joint < max(k, 1)) & held & (expected >= ZERO_EXPECTED)
            if excluded.any():
                out.append({"a": i, "b": j, "excluded": np.packbits(excluded).tobytes().hex()})
    return out


# a block of at most this many classes checks its pairs as one int64 bitmask per parent class
MASK_CLASSES = 63


class Exclusions:
    """The structural zeros of a model (`find_exclusions`), applied to drawn class codes."""

    def __init__(self, layout: Layout, found: list[dict[str, Any]], device: torch.device) -> None:
        self.blocks = layout.discrete
        # b -> [(a, its (n_a, n_b) table, or (n_a,) bitmasks where b has <= MASK_CLASSES classes)]
        self.parents: dict[int, list[tuple[int, torch.Tensor]]] = {}
        for pair in found:
            a, b = self.blocks[pair["a"]], self.blocks[pair["b"]]
            bits = np.unpackbits(np.frombuffer(bytes.fromhex(pair["excluded"]), np.uint8))
            table = torch.from_numpy(bits[: a.n_classes * b.n_classes].astype(bool))
            table = table.reshape(a.n_classes, b.n_classes)
            self.parents.setdefault(pair["b"], []).append((pair["a"], _packed(table)))
            # the same pair seen from a: used when a is drawn after b (b conditioned)
            self.parents.setdefault(pair["a"], []).append((pair["b"], _packed(table.T)))
        self.device = torch.device("cpu")
        self._move(torch.device(device))

    def _move(self, device: torch.device) -> None:
        self.parents = {j: [(i, t.to(device)) for i, t in ps] for j, ps in self.parents.items()}
        self.device = device

    def repair(
        self,
        matrix_t: torch.Tensor,
        logits_t: torch.Tensor,
        uniforms: dict[int, torch.Tensor],
        fixed: frozenset[int] = frozenset(),
    ) -> int:
        """Redraw, in place, the class codes of `matrix_t` (n_inputs, B) that break a structural
        zero with a block settled before them: `fixed` blocks (conditioned) first, then the others
        in layout order. `logits_t` (n_logits, B): the logits the codes were drawn from (with the
        temperature and the calibration's shifts); `uniforms`: block index -> the (B,) uniforms
        that drew its codes. Returns how many codes were redrawn."""
        if self.device != matrix_t.device:  # the model moved
            self._move(matrix_t.device)
        order = sorted(self.parents, key=lambda i: (i not in fixed, i))
        # every constrained block's codes as int64, once: each pair is then a lookup or two
        codes = {i: matrix_t[self.blocks[i].input_col].long() for i in order}
        settled: set[int] = set(fixed)
        redrawn = 0
        for j in order:
            if j in fixed:
                continue
            parents = [(i, t) for i, t in self.parents[j] if i in settled]
            settled.add(j)
            if not parents:
                continue
            blk = self.blocks[j]
            code = codes[j]
            if blk.n_classes <= MASK_CLASSES:  # the classes of j each parent's code excludes
                forbidden = parents[0][1].gather(0, codes[parents[0][0]])
                for i, masks in parents[1:]:
                    forbidden |= masks.gather(0, codes[i])
                rows = ((forbidden >> code) & 1).nonzero().squeeze(1)
                if not len(rows):
                    continue
                classes = torch.arange(blk.n_classes, device=rows.device).unsqueeze(1)
                allowed = ((forbidden[rows] >> classes) & 1) == 0  # (classes, rows)
            else:
                bad = torch.zeros_like(code, dtype=torch.bool)
                for i, table in parents:  # table (n_i, n_j), row-major: code_i * n_j + code
                    bad |= table.view(-1).gather(0, torch.add(code, codes[i], alpha=blk.n_classes))
                rows = bad.nonzero().squeeze(1)
                if not len(rows):
                    continue
                allowed = torch.ones(blk.n_classes, len(rows), dtype=torch.bool, device=rows.device)
                for i, table in parents:
                    allowed &= ~table.index_select(0, codes[i][rows]).T
            # classes along dim 0 and rows along dim 1 (contiguous): small-class ops stay fast
            keep = allowed.any(0)  # classes left to draw from: otherwise the row stays as drawn
            rows, allowed = rows[keep], allowed[:, keep]
            old = code[rows].unsqueeze(0)
            logits = logits_t[blk.out_start : blk.out_start + blk.n_classes].index_select(1, rows)
            probs = torch.softmax(logits, 0)  # (classes, rows)
            # the uniform that drew the excluded class, rescaled to U(0, 1) within that class
            p_old = probs.gather(0, old).squeeze(0)
            below = probs.cumsum(0).gather(0, old).squeeze(0) - p_old
            u = ((uniforms[j][rows] - below) / p_old.clamp_min(1e-12)).clamp(0.0, 1.0 - 1e-6)
            masked = probs * allowed
            cdf = masked.cumsum(0) / masked.sum(0, keepdim=True).clamp_min(1e-30)
            new = (cdf < u.unsqueeze(0)).sum(0).clamp(max=blk.n_classes - 1)
            # no probability left on the allowed classes (underflow): the first allowed one
            ok = allowed.gather(0, new.unsqueeze(0)).squeeze(0)
            first = (allowed.long().cumsum(0) == 0).sum(0)  # classes before the first allowed one
            new = torch.where(ok, new, first)
            matrix_t[blk.input_col, rows] = new.to(matrix_t.dtype)
            code[rows] = new
            redrawn += len(rows)
        return redrawn


def _packed(table: torch.Tensor) -> torch.Tensor:
    """A pair's (n_a, n_b) table of excluded classes; for n_b up to MASK_CLASSES, one int64 per
    class of a with bit c set where (that class, c) is excluded."""
    if table.shape[1] > MASK_CLASSES:
        return table.contiguous()
    return (table.long() << torch.arange(table.shape[1])).sum(1)
