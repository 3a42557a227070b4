"""Conditional generation: rows whose given columns hold given values (one value, one of several,
or a range), the other columns drawn from the model's conditional distribution.

The decoder draws every column independently given z, so conditioning happens in latent space:
z ~ p(z | conditions) ∝ p(z) p(conditions | z), by adaptive importance sampling. A proposal starts
at the prior; each round fits a Gaussian to the weighted draws (tempered until enough draws carry
weight) and mixes it with the prior so that no region is lost. A final pool is drawn from it and n
values of z are resampled by weight. Then every column is drawn given z, and the conditioned columns
are set: a value exactly, a range with the value drawn for that z inside it (a pseudo-marginal
weight: the draw counts when it lands in range). Rejection of whole rows is never needed; the effort
is bounded and a condition the model cannot meet is an error, never a hang.

A condition on one discrete column (a category, or a number's point mass) also sets the class
shares of every other discrete column to those of the training rows that meet it (`pair_counts`),
as the marginal calibration does for the whole table: one logit shift per class, fitted on the
drawn z, so which rows lean to a class is still the model's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from synthgen.encoders.datetime import DatetimeEncoder, datetimes_to_ns
from synthgen.errors import UserError
from synthgen.models.calibration import calibrate_classes, calibrate_with_exclusions
from synthgen.models.draw import compute_dtype, decoded, draw_given_z_t
from synthgen.models.likelihood import sigma_of
from synthgen.models.nets import gaussian_log_prob
from synthgen.transform import TableTransformer

log = logging.getLogger("synthgen")

ROUNDS = 4  # adaptation rounds of the proposal
POOL_ROWS = 16_384  # draws per adaptation round (at most)
MIN_POOL_ROWS = 2_048
MIN_ESS = 256  # each round's weights are tempered until this many draws effectively count
PRIOR_SHARE = 0.1  # the proposal's share of draws from the prior itself (defensive mixture)
MAX_POOL_VALUES = 1 << 26  # latent values the final pool may hold (256 MB of float32)
RANGE_KINDS = ("numerical", "datetime")
# categories whose pairs a model remembers as seen, within 2^22 bits (512 kB of hex in its JSON)
MAX_PAIR_COLUMNS, MAX_PAIR_CLASSES, MAX_PAIR_BITS = 60, 256, 1 << 22
# class pairs whose counts a model keeps for the conditional class shares (about 1 MB of JSON)
MAX_PAIR_COUNTS = 1 << 17
MIN_CONDITION_ROWS = 50  # training rows a condition needs before its class shares are used
SHARE_ROWS, SHARE_ROUNDS = 16_384, 8  # draws of z, and Sinkhorn rounds, of the shares' fit


@dataclass(frozen=True)
class Condition:
    """One column's condition: `encoded` (k, width) are the allowed values as the transformer
    encodes them (None for a range); `low`/`high` a range in the encoder's units."""

    column: str
    encoded: np.ndarray | None = None
    values: tuple = ()
    low: float = -math.inf
    high: float = math.inf
    described: str = ""  # how logs name it, where `values` do not (a profile's classes)

    @property
    def is_range(self) -> bool:
        return self.encoded is None

    def holds(self, values: np.ndarray) -> np.ndarray:
        """Which of a range-conditioned column's values (`_bound`'s units) lie in its range."""
        with np.errstate(invalid="ignore"):  # NaN (missing) lies in none
            return (values >= self.low) & (values <= self.high)


def parse_conditions(
    conditions: Mapping[str, Any], transformer: TableTransformer
) -> list[Condition]:
    """`{"col": value | [values] | (low, high)}` checked against the schema and the encoders:
    unknown columns, values of the wrong type and values no training row holds are UserErrors."""
    if not isinstance(conditions, Mapping) or not conditions:
        raise UserError("conditions must map column names to a value, a list or a (low, high)")
    conditions = _through_lookups(conditions, transformer)
    out = _through_profiles(conditions, transformer)
    for name, raw in conditions.items():
        enc = _conditionable(name, transformer)
        spec = _normalized(name, raw)
        if isinstance(spec, tuple):
            out.append(_range(name, spec, enc))
        elif name in transformer.derived:
            parents = ", ".join(map(str, enc.parents))
            raise UserError(
                f"condition on {name!r}: it follows from {parents} (a derived column), so it "
                "takes a range (low, high), not an exact value"
            )
        else:
            if not spec:
                raise UserError(f"condition on {name!r}: the list of values is empty")
            kept = [_value(name, v, enc) for v in spec]
            series = pd.Series(kept, dtype=_series_dtype(enc))
            out.append(Condition(name, enc.encode(series), tuple(kept)))
    return out


def _through_lookups(conditions: Mapping[str, Any], transformer: TableTransformer) -> dict:
    """Conditions on a lookup column become conditions on the column that determines it: its
    values whose rows hold the wanted value (or one in the wanted range)."""
    out = dict(conditions)
    for name in [n for n in conditions if n in transformer.lookups]:
        enc, raw = transformer.encoders[name], out.pop(name)
        keys = enc.keys_for(_accepts(name, _normalized(name, raw), enc.own))
        if not keys:
            raise UserError(f"no training row has {name}={raw!r}")
        if enc.parent in conditions:
            raise UserError(
                f"condition on {name!r} or on {enc.parent!r}, not both: {name!r} follows from "
                f"{enc.parent!r} (a lookup column)"
            )
        out[enc.parent] = keys if len(keys) > 1 else keys[0]
    return out


def _through_profiles(
    conditions: Mapping[str, Any], transformer: TableTransformer
) -> list[Condition]:
    """Conditions on a profile's columns also hold its class to the profiles whose values meet
    them all, or to "none" (whose rows keep the columns' own draws)."""
    groups: dict[str, dict[str, Any]] = {}
    for name, raw in conditions.items():
        profile = transformer.profile_of(name)
        if profile is not None:
            groups.setdefault(profile, {})[name] = raw
    out = []
    for name, wanted in groups.items():
        enc = transformer.profiles[name]
        allowed = np.ones(enc.none + 1, dtype=bool)
        for column, raw in wanted.items():
            at, spec = enc.profile.columns.index(column), _normalized(column, raw)
            values = [row[at] for row in enc.profile.values]
            kind = transformer.encoders[column].col.kind
            if isinstance(spec, tuple) and (kind not in RANGE_KINDS or len(spec) != 2):
                continue  # not a range this column takes: its own condition says why
            accepts = _accepts(column, spec, transformer.encoders[column])
            allowed[:-1] &= [accepts(v) for v in values]
        if allowed.all():  # every profile meets them: nothing to hold
            continue
        classes = np.flatnonzero(allowed)
        shown = f"{name} meeting " + ", ".join(f"{c}={raw!r}" for c, raw in wanted.items())
        encoded = classes.astype(np.float32)[:, None]
        out.append(Condition(name, encoded, tuple(classes.tolist()), described=shown))
    return out


def _accepts(name: str, spec: tuple | list, enc) -> Callable[[Any], bool]:
    """Which of a column's values a condition (`_normalized`) accepts: those in its range, or its
    values as the column's encoder `enc` holds them (unknown values are refused)."""
    if isinstance(spec, tuple):
        low = -math.inf if spec[0] is None else _number(name, spec[0])
        high = math.inf if len(spec) < 2 or spec[1] is None else _number(name, spec[1])
        return lambda v: v is not None and low <= v <= high
    kept = [_value(name, w, enc) for w in spec]
    return lambda v: v in kept


def _normalized(name: str, spec: Any) -> tuple | list:
    """A condition as a range (low, high) or a list of values; {low: a, high: b} (as YAML writes a
    range) is a range."""
    if isinstance(spec, Mapping):
        if not spec or set(spec) - {"low", "high"}:
            raise UserError(f"condition on {name!r}: a range is {{low: a, high: b}}")
        return (spec.get("low"), spec.get("high"))
    if isinstance(spec, tuple):
        return spec
    return list(spec) if isinstance(spec, (list, set, pd.Series, np.ndarray)) else [spec]


def _conditionable(name: str, transformer: TableTransformer):
    enc = transformer.encoders.get(name)
    if enc is None:
        known = ", ".join(map(str, list(transformer.encoders)[:20]))
        raise UserError(f"condition on unknown column {name!r} (columns: {known})")
    if not enc.modelled or not enc.width:
        raise UserError(
            f"cannot condition on {name!r}: a {enc.col.kind} column is not learned "
            "(ids are regenerated, empty columns written back missing)"
        )
    return enc


def _value(name: str, raw: Any, enc) -> Any:
    """The condition's value as the column holds it."""
    col = enc.col
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        if not getattr(enc, "has_missing", False) and not getattr(
            getattr(enc, "numeric", None), "has_missing", False
        ):
            raise UserError(f"no training row has {name!r} missing")
        return None
    if col.kind in ("categorical", "text"):
        known = [*enc.categories, *enc.overflow_values]
        for value in known:
            if raw == value and type(raw) is not bool or raw is value:
                return value
        for value in known:  # from the command line or a YAML file: match the text
            if str(raw).strip().lower() == str(value).lower():
                return value
        protected = " (values fewer rows hold are pooled for privacy)" if enc.n_rare_values else ""
        shown = ", ".join(map(repr, known[:10])) + (", ..." if len(known) > 10 else "")
        raise UserError(f"no training row has {name}={raw!r}{protected}; values: {shown}")
    if col.kind == "numerical":
        value = _number(name, raw)
        if not col.min <= value <= col.max:
            raise UserError(
                f"no training row has {name}={raw!r}: its values lie in [{col.min:g}, {col.max:g}]"
            )
        if not enc.has_continuous and value not in enc.modes:
            raise UserError(f"no training row has {name}={raw!r}")
        return int(value) if col.integer and float(value).is_integer() else value
    return _timestamp(name, raw, col)


def _series_dtype(enc) -> Any:
    if enc.col.kind == "datetime" and not enc.col.datetime_format:
        return None
    if enc.col.kind == "numerical":
        return "float64"
    return object


def _number(name: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise UserError(f"condition on {name!r}: {raw!r} is not a number") from None
    if math.isnan(value):
        raise UserError(f"condition on {name!r}: NaN is not a value (use None for missing)")
    return value


def _timestamp(name: str, raw: Any, col) -> Any:
    try:
        ts = pd.Timestamp(raw)
    except (TypeError, ValueError):
        raise UserError(f"condition on {name!r}: {raw!r} is not a date or time") from None
    if col.timezone and ts.tzinfo is None:
        ts = ts.tz_localize(col.timezone)
    if col.datetime_format:
        return ts.strftime(col.datetime_format)
    return ts


def _range(name: str, spec: tuple, enc) -> Condition:
    if enc.col.kind not in RANGE_KINDS:
        raise UserError(f"condition on {name!r}: a (low, high) range needs a number or a date")
    if len(spec) != 2:
        raise UserError(f"condition on {name!r}: a range is (low, high), got {spec!r}")
    bounds = [_bound(name, b, enc, i) for i, b in enumerate(spec)]
    lo, hi = bounds
    if lo > hi:
        raise UserError(f"condition on {name!r}: low {spec[0]!r} is above high {spec[1]!r}")
    numeric = enc.numeric if isinstance(enc, DatetimeEncoder) else enc
    seen = [*numeric.modes, *numeric.knots_x]
    if not any(lo <= v <= hi for v in seen):
        raise UserError(f"no training row has {name} in [{spec[0]!r}, {spec[1]!r}]")
    return Condition(name, low=lo, high=hi)


def _bound(name: str, raw: Any, enc, i: int) -> float:
    """A range's end in the units the encoder decodes to (numbers less the offset, date steps)."""
    if raw is None:
        return -math.inf if i == 0 else math.inf
    if isinstance(enc, DatetimeEncoder):
        ts = _timestamp(name, raw, enc.col)
        ns, _ = datetimes_to_ns(pd.Series([ts]), enc.col.datetime_format)
        return float(ns[0] / enc.step_ns)
    return _number(name, raw) - enc.offset


def _range_values(transformer: TableTransformer, name: str, matrix: np.ndarray) -> np.ndarray:
    """Drawn values of a range-conditioned column in `_bound`'s units, as they will be written."""
    enc = transformer.encoders[name]
    if isinstance(enc, DatetimeEncoder):
        return np.round(enc.numeric.decode_values(matrix[:, transformer._slices[name]], False))
    return transformer.column_values(name, matrix)


class _Proposal:
    """Over the prior's base draws e ~ N(0, I) (z = prior.transport(e), so any prior, a learned one
    included, is sampled the same way): a mixture of N(0, I) (PRIOR_SHARE) and
    N(mean, chol chol^T); N(0, I) until fitted."""

    def __init__(self, dim: int, device: torch.device) -> None:
        self.dim, self.device = dim, device
        self.mean: torch.Tensor | None = None
        self.chol: torch.Tensor | None = None

    def sample(self, m: int, generator: torch.Generator) -> torch.Tensor:
        e = torch.randn(m, self.dim, generator=generator, device=self.device)
        if self.mean is None:
            return e
        eps = torch.randn(m, self.dim, generator=generator, device=self.device)
        fitted = self.mean + eps @ self.chol.T
        use_prior = torch.rand(m, generator=generator, device=self.device) < PRIOR_SHARE
        return torch.where(use_prior.unsqueeze(1), e, fitted)

    def log_prob(self, e: torch.Tensor) -> torch.Tensor:
        prior = gaussian_log_prob(e)
        if self.mean is None:
            return prior
        fitted = gaussian_log_prob(e, self.mean, self.chol)
        return torch.logaddexp(prior + math.log(PRIOR_SHARE), fitted + math.log(1 - PRIOR_SHARE))

    def fit(self, z: torch.Tensor, w: torch.Tensor) -> None:
        """The weighted draws' mean and covariance (w sums to 1), widened a little."""
        mean = (w.unsqueeze(1) * z).sum(0)
        centred = z - mean
        cov = (w.unsqueeze(1) * centred).T @ centred
        eye = torch.eye(z.shape[1], device=z.device)
        cov = 1.2 * cov + 1e-3 * eye
        self.mean, self.chol = mean, torch.linalg.cholesky(cov.double()).float()


def _ess(log_w: torch.Tensor) -> float:
    w = torch.softmax(log_w.double(), 0)
    return float(1.0 / w.pow(2).sum()) if torch.isfinite(log_w).any() else 0.0


def _tempered(log_prior_q: torch.Tensor, log_lik: torch.Tensor) -> torch.Tensor:
    """Weights p(z) L(z)^tau / q(z) with the largest tau in (0, 1] that leaves MIN_ESS draws
    counting (a range's misses stay at zero weight)."""
    if _ess(log_prior_q + log_lik) >= MIN_ESS:
        return log_prior_q + log_lik
    finite = torch.isfinite(log_lik)
    lo, hi = 0.0, 1.0
    for _ in range(20):
        tau = (lo + hi) / 2
        log_w = log_prior_q + torch.where(finite, tau * log_lik, log_lik)
        lo, hi = (tau, hi) if _ess(log_w) >= MIN_ESS else (lo, tau)
    return log_prior_q + torch.where(finite, lo * log_lik, log_lik)


class _Likelihood:
    """log p(conditions | z) for a batch of z, read from the decoder's output for the conditioned
    columns only (their softmax blocks, with the calibration's logit shifts, and their Gaussians),
    and the values a range-conditioned column drew."""

    def __init__(
        self,
        model: nn.Module,
        transformer: TableTransformer,
        conditions: list[Condition],
        precision: str = "auto",
    ) -> None:
        self.model, self.transformer, self.conditions = model, transformer, conditions
        self.precision = precision
        self.slices = {c.column: transformer._slices[c.column] for c in conditions}
        # the matrix columns a condition sets: a derived column's with those it follows from
        self.spans = {c.column: transformer.span(c.column) for c in conditions}
        derived = [c.column for c in conditions if c.is_range and c.column in transformer.derived]
        for c in conditions:
            if len(c.values) > 1 and any(c.column in transformer.ancestors(d) for d in derived):
                raise UserError(
                    f"condition on {c.column!r}: give one value, not several, with a range on "
                    f"{derived[0]!r}, which follows from it"
                )
        layout = transformer.layout
        self.blocks = {
            c.column: [b for b in layout.discrete if b.column == c.column] for c in conditions
        }
        self.slots = {
            c.column: [(i, s) for i, s in enumerate(layout.continuous) if s.column == c.column]
            for c in conditions
        }
        self.scale_start = layout.out_width  # the VAE's log-scales follow the means
        calibration = model.likelihood.calibration
        self.shift = calibration.logit_shift if calibration is not None else None
        # a profile's class and the conditions on its columns are met together: by a
        # profile that meets them, or by "none" (the last class) and the columns' own draws
        self.joined = {
            c.column: [m for m in conditions if transformer.profile_of(m.column) == c.column]
            for c in conditions
            if c.column in transformer.profiles
        }
        self.folded = {m.column for members in self.joined.values() for m in members}

    def __call__(
        self, z: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        likelihood = self.model.likelihood
        log_lik = torch.zeros(len(z), device=z.device)
        ranges = [c for c in self.conditions if c.is_range]
        drawn = {c.column: [] for c in ranges}
        noise = likelihood.draw_noise(len(z), generator, z.device) if ranges else None
        for a, b, out_t in decoded(self.model, z, self.precision):
            misses = {}  # per range condition: the rows whose drawn value lies outside it
            if ranges:
                chunk = (
                    [u[:, a:b] for u in noise[0]],
                    None if noise[1] is None else noise[1][:, a:b],
                )
                matrix = likelihood.sample(out_t, chunk).T.cpu().numpy()
                for c in self.conditions:  # what a derived column's range follows from
                    if len(c.values) == 1:
                        matrix[:, self.slices[c.column]] = c.encoded[0]
                for c in ranges:
                    values = _range_values(self.transformer, c.column, matrix)
                    misses[c.column] = torch.from_numpy(~c.holds(values)).to(z.device)
                    drawn[c.column].append(matrix[:, self.spans[c.column]])
            for c in self.conditions:
                if c.column in self.folded:  # met through its profile's class
                    continue
                if c.is_range:
                    log_lik[a:b].masked_fill_(misses[c.column], -math.inf)
                else:
                    log_lik[a:b] += self.alternatives_t(out_t, c, misses).logsumexp(0)
        return log_lik, {name: np.concatenate(blocks) for name, blocks in drawn.items()}

    def alternatives(
        self, z: torch.Tensor, c: Condition, misses: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(B, k): log p(value_j | z) for each of the condition's k values; `misses`: the rows
        whose drawn value lies outside each range condition (those a profile's class needs)."""
        parts = [
            self.alternatives_t(out_t, c, {k: v[a:b] for k, v in (misses or {}).items()})
            for a, b, out_t in decoded(self.model, z, self.precision)
        ]
        return torch.cat(parts, 1).T

    def range_misses(self, drawn: dict[str, np.ndarray], device: torch.device) -> dict:
        """The rows whose drawn value lies outside a range condition on a profile's column, from
        the values drawn with z (`sample_latents`)."""
        out = {}
        for c in self.conditions:
            if c.is_range and c.column in self.folded:
                full = np.zeros(
                    (len(drawn[c.column]), self.transformer.layout.n_inputs), np.float32
                )
                full[:, self.spans[c.column]] = drawn[c.column]
                values = _range_values(self.transformer, c.column, full)
                out[c.column] = torch.from_numpy(~c.holds(values)).to(device)
        return out

    def alternatives_t(
        self, out_t: torch.Tensor, c: Condition, misses: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(k, B) from the decoder's transposed output (out_width, B)."""
        start = self.slices[c.column].start
        rows = []
        for value in c.encoded:
            lp = out_t.new_zeros(out_t.shape[1])
            codes = {}
            for blk in self.blocks[c.column]:
                logits = out_t[blk.out_start : blk.out_start + blk.n_classes].float()
                logits = logits / self.model.likelihood.temperature
                if self.shift is not None:
                    shift = self.shift[blk.out_start : blk.out_start + blk.n_classes]
                    logits = logits + shift.unsqueeze(1)
                code = int(value[blk.input_col - start])
                codes[blk.input_col] = code
                lp += logits[code] - logits.logsumexp(0)
            for i, slot in self.slots[c.column]:
                if slot.gate_col is not None and codes.get(slot.gate_col) != slot.gate_code:
                    continue  # the value's mode is a point mass or missing: nothing continuous
                target, mean = float(value[slot.input_col - start]), out_t[slot.out_index].float()
                if self.model.likelihood.continuous == "gaussian":
                    sigma = sigma_of(out_t[self.scale_start + i].float())
                    sigma = sigma * self.model.likelihood.temperature
                    lp += -0.5 * ((target - mean) / sigma) ** 2 - sigma.log()
                else:
                    lp += -0.5 * (target - mean) ** 2
                lp -= 0.5 * math.log(2 * math.pi)
            rows.append(lp)
        for m in self.joined.get(c.column, ()):  # "none": its columns must meet theirs
            if not m.is_range:
                rows[-1] = rows[-1] + self.alternatives_t(out_t, m).logsumexp(0)
            elif misses:
                rows[-1] = rows[-1].masked_fill(misses[m.column], -math.inf)
        return torch.stack(rows)


@torch.inference_mode()
def sample_latents(
    model: nn.Module,
    transformer: TableTransformer,
    conditions: list[Condition],
    n: int,
    generator: torch.Generator,
    precision: str = "auto",
) -> tuple[torch.Tensor, dict[str, np.ndarray], dict[str, float]]:
    """n draws of z from p(z | conditions), the range columns' values drawn with them, and what the
    sampler did (pool size, effective sample size)."""
    model.eval()
    likelihood = _Likelihood(model, transformer, conditions, precision)
    prior = model.prior
    proposal = _Proposal(prior.mean.shape[0], prior.mean.device)
    dtype = compute_dtype(precision, prior.mean.device)
    pool = max(MIN_POOL_ROWS, min(POOL_ROWS, 4 * n))
    ess_share = 0.0
    for _ in range(ROUNDS):
        e = proposal.sample(pool, generator)
        log_lik, _ = likelihood(prior.transport(e, dtype=dtype), generator)
        log_prior_q = gaussian_log_prob(e) - proposal.log_prob(e)
        if not torch.isfinite(log_lik).any():
            pool = min(pool * 4, MAX_POOL_VALUES // e.shape[1])
            continue
        ess_share = _ess(log_prior_q + log_lik) / pool
        proposal.fit(e, torch.softmax(_tempered(log_prior_q, log_lik).double(), 0).float())
    if ess_share == 0.0 and proposal.mean is None:
        raise UserError(
            f"no draw of {pool:,} met the conditions ({_describe(conditions)}): "
            "the model gives them almost no probability"
        )
    # the final pool: enough draws for about n effective ones, within the memory cap
    cap = max(n, MAX_POOL_VALUES // e.shape[1])
    final = int(min(cap, max(n, math.ceil(1.5 * n / max(ess_share, 1e-9)))))
    zs, log_ws, draws = [], [], []
    for a in range(0, final, POOL_ROWS * 4):
        e = proposal.sample(min(POOL_ROWS * 4, final - a), generator)
        z = prior.transport(e, dtype=dtype)
        log_lik, drawn = likelihood(z, generator)
        zs.append(z)
        log_ws.append(gaussian_log_prob(e) - proposal.log_prob(e) + log_lik)
        draws.append(drawn)
    z, log_w = torch.cat(zs), torch.cat(log_ws)
    if not torch.isfinite(log_w).any():
        raise UserError(
            f"no draw of {final:,} met the conditions ({_describe(conditions)}): "
            "the model gives them almost no probability"
        )
    ess = _ess(log_w)
    # the mean weight estimates the probability the model gives the conditions
    probability = float((log_w.double().logsumexp(0) - math.log(len(log_w))).exp())
    picked = _systematic(torch.softmax(log_w.double(), 0), n, generator)
    drawn = {
        c: np.concatenate([d[c] for d in draws])[picked.cpu().numpy()]
        for c in (draws[0] if draws else {})
    }
    stats = {"pool": final, "effective_draws": round(ess, 1), "probability": probability}
    log.info(
        "conditional sampling (%s): %d rows from a pool of %d draws of z, %.0f effective",
        _describe(conditions),
        n,
        final,
        ess,
    )
    if ess < n / 20:
        log.warning(
            "the conditions (%s) are rare under the model: %d rows share %.0f effective draws of "
            "z, so their other columns vary less than they should",
            _describe(conditions),
            n,
            ess,
        )
    return z[picked], drawn, stats


def _warnings(
    conditions: list[Condition], transformer: TableTransformer, seen: dict, probability: float
) -> list[str]:
    """Why the conditions may be met by no training row: a pair of categories fewer than
    `rare_threshold` rows hold together (`seen`, from seen_pairs), or, for conditions on
    categories and ranges only (an exact number has a density, not a probability), the model's
    own estimate of how many training rows meet them."""
    k = max(transformer.settings["rare_threshold"], 1)
    out = [
        f"fewer than {k} training rows hold {pair}"
        for pair in unseen_pairs(conditions, transformer, seen)
    ]
    trained_on = max((getattr(e, "n_rows", 0) for e in transformer.encoders.values()), default=0)
    countable = all(
        c.is_range
        or c.column in transformer.profiles
        or transformer.encoders[c.column].col.kind in ("categorical", "text")
        for c in conditions
    )
    if countable and trained_on and probability * trained_on < 1:
        out.append(
            f"the model expects {probability * trained_on:.2g} of its {trained_on} training rows "
            f"to meet {_describe(conditions)}"
        )
    return out


def _systematic(w: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n indices drawn with probabilities w by systematic resampling (low variance)."""
    steps = torch.arange(n, device=w.device, dtype=torch.float64)
    u = (torch.rand(1, generator=generator, device=w.device).double() + steps) / n
    return torch.searchsorted(w.cumsum(0), u).clamp(max=len(w) - 1)


def _describe(conditions: list[Condition]) -> str:
    parts = []
    for c in conditions:
        if c.described:
            parts.append(c.described)
        elif c.is_range:
            parts.append(f"{c.column} in range")
        else:
            shown = c.values[0] if len(c.values) == 1 else list(c.values)
            parts.append(f"{c.column}={shown}")
    return ", ".join(parts)


@torch.inference_mode()
def sample_conditional(
    model: nn.Module,
    transformer: TableTransformer,
    conditions: list[Condition],
    n: int,
    seed: int,
    precision: str = "auto",
    row_offset: int = 0,
    seen: dict[str, Any] | None = None,
    counts: dict[str, list[int]] | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """n rows meeting `conditions` (parse_conditions), seeded, and the sampler's statistics;
    `row_offset` numbers the rows for new ids; `seen` (seen_pairs) warns about pairs of
    categories no training row holds; `counts` (pair_counts) sets the other columns' class
    shares under a condition on one discrete column (`conditional_shift`)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    z, drawn, stats = sample_latents(model, transformer, conditions, n, generator, precision)
    stats["warnings"] = _warnings(conditions, transformer, seen or {}, stats["probability"])
    likelihood = _Likelihood(model, transformer, conditions, precision)
    misses = likelihood.range_misses(drawn, z.device)
    values = {}  # each conditioned column's encoded slice per row (n, width)
    for c in conditions:
        if c.is_range:
            values[c.column] = drawn[c.column]
        elif len(c.values) == 1:
            values[c.column] = np.broadcast_to(c.encoded[0], (n, len(c.encoded[0])))
        else:  # one of several: each row's value drawn with its probability given its z
            probs = torch.softmax(likelihood.alternatives(z, c, misses), 1)
            pick = torch.multinomial(probs, 1, generator=generator).squeeze(1).cpu().numpy()
            values[c.column] = c.encoded[pick]
    # the conditioned columns' classes are set while drawing, so the other columns keep the
    # structural zeros with them (models.exclusions)
    # (a derived column's range: the classes of the columns it follows from, too)
    fixed = {}
    for c in conditions:
        at = {col: i for i, col in enumerate(likelihood.spans[c.column])}
        for j, blk in enumerate(transformer.layout.discrete):
            if blk.input_col in at:
                fixed[j] = torch.tensor(
                    values[c.column][:, at[blk.input_col]], dtype=torch.float32, device=z.device
                )
    shift = conditional_shift(
        model, transformer, conditions, z, counts, generator, fixed, precision
    )
    matrix = draw_given_z_t(model, z, generator, precision, fixed, shift).T.cpu().numpy()
    for c in conditions:
        matrix[:, likelihood.spans[c.column]] = values[c.column]
    df = transformer.inverse_transform(
        matrix,
        rng=np.random.default_rng([seed, 1]),
        row_offset=row_offset,
        id_seed=seed,
        exact=False,
    )
    for c in conditions:  # numbers hold exactly, not as the quantile map gives them back
        enc = transformer.encoders.get(c.column)
        if enc is None:  # a profile's class: its columns were written from it
            continue
        if not c.is_range and enc.col.kind == "numerical" and len(c.values) == 1:
            if c.values[0] is not None:
                df[c.column] = pd.Series([c.values[0]] * n, dtype=df[c.column].dtype)
    return df, stats


def meets(
    df: pd.DataFrame, conditions: list[Condition], transformer: TableTransformer
) -> np.ndarray:
    """Which rows of a table meet every condition (bool array)."""
    mask = np.ones(len(df), dtype=bool)
    for c in conditions:
        enc = transformer.encoders.get(c.column)
        if enc is None:  # a profile's class: the conditions on its columns say
            continue
        if c.is_range:
            if isinstance(enc, DatetimeEncoder):
                ns, missing = datetimes_to_ns(df[c.column], enc.col.datetime_format)
                values = np.where(missing, np.nan, np.round(ns / enc.step_ns))
            else:
                values = enc.values(df[c.column])
            mask &= c.holds(values)
        elif enc.col.kind == "numerical":  # the value itself, not its place in the encoding
            values = enc.values(df[c.column])
            wanted = [np.nan if v is None else float(v) - enc.offset for v in c.values]
            mask &= np.isin(values, wanted) | (np.isnan(values) & np.isnan(wanted).any())
        else:
            codes = enc.encode(df[c.column])
            mask &= np.any([(codes == row).all(1) for row in c.encoded], axis=0)
    return mask


def seen_pairs(matrix: np.ndarray, transformer: TableTransformer, k: int) -> dict[str, Any]:
    """Which pairs of categories at least `k` training rows hold together, for the first
    MAX_PAIR_COLUMNS categorical columns and within MAX_PAIR_BITS: {"a|b": hex bitmask over a's
    classes x b's}. A condition on a pair no k rows hold is then warned about (the model itself
    may give it some probability: it draws columns independently given z). Pairs fewer than k
    rows hold count as unseen, as value protection treats rare values."""
    blocks = [
        b
        for b in transformer.layout.discrete
        if b.role == "category" and b.n_classes <= MAX_PAIR_CLASSES
    ][:MAX_PAIR_COLUMNS]
    return {
        key: np.packbits(counts >= max(k, 1)).tobytes().hex()
        for key, counts in _pair_tables(matrix, blocks, MAX_PAIR_BITS)
    }


def _pair_tables(matrix: np.ndarray, blocks: list, budget: int) -> Iterator[tuple[str, np.ndarray]]:
    """("a|b", the training rows' counts over a's classes x b's, flattened) for each pair of
    `blocks` in order, until the counts would pass `budget` cells in all (a model file stays
    small: later pairs are left out)."""
    codes = {b.column: matrix[:, b.input_col].astype(np.int64) for b in blocks}
    cells = 0
    for i, a in enumerate(blocks):
        for b in blocks[i + 1 :]:
            cells += a.n_classes * b.n_classes
            if cells > budget:
                return
            pairs = codes[a.column] * b.n_classes + codes[b.column]
            yield f"{a.column}|{b.column}", np.bincount(pairs, minlength=a.n_classes * b.n_classes)


def unseen_pairs(
    conditions: list[Condition], transformer: TableTransformer, seen: dict[str, Any]
) -> list[str]:
    """The pairs of categorical conditions that no (or too few) training rows hold together."""
    layout = {b.column: b for b in transformer.layout.discrete if b.role == "category"}
    fixed = [c for c in conditions if not c.is_range and c.column in layout]
    out = []
    for i, a in enumerate(fixed):
        for b in fixed[i + 1 :]:
            key, first, second = f"{a.column}|{b.column}", a, b
            if key not in seen:
                key, first, second = f"{b.column}|{a.column}", b, a
            if key not in seen:
                continue
            bits = np.unpackbits(np.frombuffer(bytes.fromhex(seen[key]), np.uint8))
            width = layout[second.column].n_classes
            held = any(
                bits[int(x[0]) * width + int(y[0])] for x in first.encoded for y in second.encoded
            )
            if not held:
                out.append(f"{_describe([first])} with {_describe([second])}")
    return out


def row_groups(conditions: Any, n: int) -> list[tuple[dict, int]]:
    """Conditions as [(where, rows)]: one mapping gives all n rows; a list of groups
    `{"where": {...}, "share": f}` (or `"rows": k`) splits n among them, e.g. to rebalance a
    class. Shares are normalized; rows are rounded so that they add up to n."""
    if isinstance(conditions, Mapping):
        return [(dict(conditions), n)]
    if not isinstance(conditions, (list, tuple)) or not conditions:
        raise UserError("conditions must be a mapping, a DataFrame or a list of groups")
    groups = []
    for g in conditions:
        if not isinstance(g, Mapping) or not isinstance(g.get("where"), Mapping):
            raise UserError(f"a group of conditions is {{where: {{...}}, share: f}}, got {g!r}")
        if set(g) - {"where", "share", "rows"} or ("share" in g) == ("rows" in g):
            raise UserError(f"a group of conditions has a share or rows (one of them), got {g!r}")
        groups.append(g)
    if all("rows" in g for g in groups):
        return [(dict(g["where"]), _count(g["rows"])) for g in groups]
    if any("rows" in g for g in groups):
        raise UserError("groups of conditions give all shares or all rows, not both")
    shares = np.array([_share(g["share"]) for g in groups])
    cuts = np.round(np.cumsum(shares) / shares.sum() * n).astype(int)
    counts = np.diff(cuts, prepend=0)
    return [(dict(g["where"]), int(k)) for g, k in zip(groups, counts, strict=True)]


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UserError(f"a group's rows must be a whole number >= 0, got {value!r}")
    return value


def _share(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise UserError(f"a group's share must be a number > 0, got {value!r}")
    return float(value)


def partial_row_groups(rows: pd.DataFrame, transformer: TableTransformer) -> list[tuple]:
    """Rows of a DataFrame of partial rows grouped by what they fix: [(conditions dict, positions)].
    A missing cell is free; a row with no fixed cell is drawn unconditionally."""
    unknown = [c for c in rows.columns if c not in transformer.encoders]
    if unknown:
        raise UserError(f"conditions name unknown columns: {', '.join(map(str, unknown))}")
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows.itertuples(index=False, name=None)):
        key = tuple(
            (col, value) for col, value in zip(rows.columns, row, strict=True) if not pd.isna(value)
        )
        groups.setdefault(key, []).append(i)
    return [(dict(key), positions) for key, positions in groups.items()]


def pair_counts(matrix: np.ndarray, transformer: TableTransformer, k: int) -> dict[str, list[int]]:
    """How many training rows hold each pair of classes of two discrete blocks (categories, a
    number's modes), within MAX_PAIR_COUNTS counts in all: {"a|b": counts over a's classes x b's,
    flattened}. Counts under `k` are kept as 0, as value protection treats rare values."""
    blocks = [b for b in transformer.layout.discrete if b.n_classes <= MAX_PAIR_CLASSES]
    return {
        key: np.where(counts >= max(k, 1), counts, 0).tolist()
        for key, counts in _pair_tables(matrix, blocks, MAX_PAIR_COUNTS)
    }


def conditional_shares(
    transformer: TableTransformer, conditions: list[Condition], counts: dict[str, list[int]]
) -> dict[int, np.ndarray]:
    """Block index -> the class shares of the training rows that meet a condition on one discrete
    column, for every other block whose counts with it were kept; {} for any other conditions,
    or when fewer than MIN_CONDITION_ROWS training rows meet it."""
    conditions = [c for c in conditions if c.column not in transformer.profiles]  # follow others
    if len(conditions) != 1 or conditions[0].is_range or not counts:
        return {}
    c = conditions[0]
    blocks = transformer.layout.discrete
    own = [j for j, b in enumerate(blocks) if b.column == c.column]
    if (
        len(own) != 1
        or transformer._slices[c.column].stop - transformer._slices[c.column].start != 1
    ):
        return {}  # a number with a continuous part: its value is not one class
    cond = blocks[own[0]]
    classes = sorted({int(v[0]) for v in c.encoded})
    out = {}
    for j, other in enumerate(blocks):
        if j == own[0]:
            continue
        key, first = f"{cond.column}|{other.column}", True
        if key not in counts:
            key, first = f"{other.column}|{cond.column}", False
        if key not in counts:
            continue
        table = np.asarray(counts[key], dtype=np.float64)
        table = (
            table.reshape(cond.n_classes, other.n_classes)
            if first
            else table.reshape(other.n_classes, cond.n_classes).T
        )
        held = table[classes].sum(0)
        if held.sum() >= MIN_CONDITION_ROWS:
            out[j] = held / held.sum()
    return out


@torch.inference_mode()
def conditional_shift(
    model: nn.Module,
    transformer: TableTransformer,
    conditions: list[Condition],
    z: torch.Tensor,
    counts: dict[str, list[int]] | None,
    generator: torch.Generator,
    fixed: dict[int, torch.Tensor],
    precision: str = "auto",
) -> torch.Tensor | None:
    """Class shifts (n_logits,) to draw with instead of the calibration's, so that the rows drawn
    from z get the class shares of the training rows meeting the conditions
    (`conditional_shares`): the calibration's shifts, refitted for those blocks only on up to
    SHARE_ROWS of the z (`calibrate_classes`, then `calibrate_with_exclusions` with the `fixed`
    blocks set, as the marginal calibration does); None where no shares apply."""
    targets = conditional_shares(transformer, conditions, counts or {})
    likelihood = model.likelihood
    if not targets or likelihood.calibration is None:
        return None
    blocks = transformer.layout.discrete
    z = z[:SHARE_ROWS]
    logits_t = torch.empty(likelihood.n_logits, len(z), device=z.device)
    for a, b, out_t in decoded(model, z, precision):
        logits_t[:, a:b] = out_t[: likelihood.n_logits]
    target = torch.zeros(likelihood.n_logits, device=z.device)
    used = torch.zeros(likelihood.n_logits, dtype=torch.bool, device=z.device)
    for j, shares in targets.items():
        span = slice(blocks[j].out_start, blocks[j].out_start + blocks[j].n_classes)
        target[span] = torch.as_tensor(shares, dtype=torch.float32, device=z.device)
        used[span] = True
    shift = likelihood.calibration.logit_shift.clone()
    calibrate_classes(likelihood, logits_t, target, shift, used, rounds=SHARE_ROUNDS)
    if likelihood.exclusions is not None:
        fixed = {j: codes[: len(z)] for j, codes in fixed.items()}
        calibrate_with_exclusions(likelihood, logits_t, target, generator, shift, used, fixed)
    return shift
