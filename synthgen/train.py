"""Training loop shared by both models: AdamW, KL warm-up, early stopping, checkpoints that resume.

The encoded table is one tensor (on the GPU when training there); batches are shuffled index slices
of it, not a per-row DataLoader. The forward pass runs under bf16 autocast on CUDA, and on CPUs
whose bf16 matrix products are faster than float32 ones (AVX512-BF16/AMX). On CUDA each step is
replayed from a captured CUDA graph (`_TrainStep`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from synthgen.config import ModelSettings
from synthgen.dp import Budget, private_gaussian
from synthgen.io import atomic_path
from synthgen.runtime import fast_bf16, resolve_device, torch_threads, training_threads
from synthgen.split import split_rows

log = logging.getLogger("synthgen")

# Default training length: about ROW_VISITS rows seen, within [30, MAX_EPOCHS] epochs, and at least
# MIN_STEPS optimizer steps (up to 300 epochs) so that a table of a few batches still gets enough
# updates.
ROW_VISITS = 5_500_000
MAX_EPOCHS = 180
MIN_STEPS = 600
# A table of a few batches needs fewer epochs: at most EPOCHS_PER_BATCH per batch in an epoch (from
# 8 batches on, MAX_EPOCHS is the cap that binds). docs/design.md, "Learning rate"
EPOCHS_PER_BATCH = 24


@dataclass
class TrainResult:
    device: str
    epochs_planned: int
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    best_val_loss: float | None
    seconds: float
    train_rows: int
    val_rows: int
    resumed_from_epoch: int | None = None
    precision: str = "fp32"
    graphed_steps: int = 0  # steps that ran as replays of a captured CUDA graph
    cpu_threads: int | None = None  # torch threads the CPU training ran with
    column_val_loss: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    privacy: dict[str, Any] | None = None  # DP mode: what DP-SGD (and the prior) spent
    prior_fit: dict[str, Any] | None = None  # prior="learned": how its flow was fitted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def epoch_rows(n_rows: int, batch: int) -> int:
    """Rows an epoch trains on: all but a last partial batch under half a batch (a noisy step)."""
    rest = n_rows % batch
    return n_rows - rest if rest < batch // 2 and n_rows > batch else n_rows


def auto_epochs(n_rows: int, batch: int) -> int:
    steps_per_epoch = max(1, math.ceil(epoch_rows(n_rows, batch) / batch))
    cap = min(MAX_EPOCHS, max(30, EPOCHS_PER_BATCH * steps_per_epoch))
    epochs = int(np.clip(round(ROW_VISITS / max(n_rows, 1)), 30, cap))
    return max(epochs, min(300, math.ceil(MIN_STEPS / steps_per_epoch)))


def learning_rate(settings: ModelSettings, epoch: int, epochs: int) -> float:
    """Constant, or cosine decay from `lr` to 5% of it over the planned epochs."""
    if settings.lr_schedule == "constant" or epochs <= 1:
        return settings.lr
    progress = (epoch - 1) / (epochs - 1)
    return settings.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    model: nn.Module,
    matrix: np.ndarray,
    settings: ModelSettings,
    *,
    checkpoint_dir: str | Path | None = None,
    fingerprint: str = "",
    progress: bool | None = None,
    budget: dict[str, Budget] | None = None,
) -> TrainResult:
    """Fit `model` on the encoded table `matrix`; returns what happened. Restores the best
    epoch's weights. With `budget` (DP mode, synthgen.dp.split_budget) it trains with DP-SGD
    instead (`_train_private`)."""
    device = resolve_device(settings.device)
    threads = training_threads(model, settings.cpu_threads, device)
    with torch_threads(threads):
        if budget is not None:
            return _train_private(model, matrix, settings, device, budget, progress)
        return _train(
            model,
            matrix,
            settings,
            device,
            checkpoint_dir=checkpoint_dir,
            fingerprint=fingerprint,
            progress=progress,
        )


def _train(
    model: nn.Module,
    matrix: np.ndarray,
    settings: ModelSettings,
    device: torch.device,
    *,
    checkpoint_dir: str | Path | None,
    fingerprint: str,
    progress: bool | None,
) -> TrainResult:
    torch.manual_seed(settings.seed)
    train_idx, val_idx = split_rows(len(matrix), settings.val_fraction, settings.seed)
    data = torch.from_numpy(matrix).to(device)
    x_train, x_val = (
        data[torch.from_numpy(train_idx).to(device)],
        data[torch.from_numpy(val_idx).to(device)],
    )
    del data
    model.to(device)
    optimizer = _adamw(list(model.parameters()), settings.lr, settings.weight_decay)
    batch = min(settings.batch_size, len(x_train))
    epochs = settings.epochs or auto_epochs(len(x_train), batch)
    rows_per_epoch = epoch_rows(len(x_train), batch)
    mixed = settings.precision == "bf16" or (
        settings.precision == "auto" and fast_bf16(device.type)
    )
    # a captured CUDA graph must not reuse autocast's cache of cast weights across replays
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=device.type != "cuda")
        if mixed
        else _null_context()
    )
    n_threads = torch.get_num_threads()
    where = (
        f"{device}, {n_threads} thread{'' if n_threads == 1 else 's'}"
        if device.type == "cpu"
        else str(device)
    )
    log.info(
        "training %s on %s (%s): %d rows (%d for validation), up to %d epochs, batch %d, "
        "%d parameters",
        type(model).__name__,
        where,
        "bf16 mixed precision" if mixed else "float32",
        len(x_train),
        len(x_val),
        epochs,
        batch,
        sum(p.numel() for p in model.parameters()),
    )

    step = _TrainStep(model, optimizer, x_train, batch, autocast)
    state = _TrainState(best_val=math.inf)
    ckpt = _Checkpoint(Path(checkpoint_dir), fingerprint) if checkpoint_dir else None
    if ckpt and ckpt.exists():
        with step.cuda_rng():  # restores the CUDA generator's state
            state = ckpt.load(model, optimizer, device)
        log.info("resuming from the checkpoint of epoch %d in %s", state.epoch, ckpt.dir)
    resumed_from = state.epoch if state.epoch else None

    bar = _ProgressBar(epochs, enabled=sys.stderr.isatty() if progress is None else progress)
    started = time.perf_counter() - state.seconds
    log_every = max(1, epochs // 20)
    try:
        for epoch in range(state.epoch + 1, epochs + 1):
            beta = (
                settings.beta * min(1.0, epoch / settings.kl_warmup_epochs)
                if settings.kl_warmup_epochs
                else settings.beta
            )
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(settings, epoch, epochs)
            t0 = time.perf_counter()
            model.train()
            step.sums.zero_()
            n_batches = 0
            perm = step.permutation()
            for start in range(0, rows_per_epoch, batch):
                step(perm[start : start + batch], beta)
                n_batches += 1
            loss_, rec_, kl_ = (step.sums / max(n_batches, 1)).tolist()
            with step.cuda_rng():  # the VAE draws z for validation too
                val_loss, val_parts = (
                    _evaluate(model, x_val, settings.beta, batch * 8, autocast)
                    if len(x_val)
                    else (loss_, None)
                )
            seconds = time.perf_counter() - t0
            row = {
                "epoch": epoch,
                "loss": loss_,
                "reconstruction": rec_,
                "kl": kl_,
                "beta": beta,
                "val_loss": val_loss,
                "rows_per_s": len(x_train) / seconds,
            }
            state.history.append(row)
            state.epoch = epoch
            if val_loss < state.best_val - 1e-4 * abs(state.best_val) or epoch == 1:
                state.best_val, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
                state.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if val_parts is not None:
                    state.column_val_loss = dict(
                        zip(model.likelihood.columns, val_parts, strict=False)
                    )
            # the objective moves during warm-up: do not count it
            elif epoch > settings.kl_warmup_epochs:
                state.bad_epochs += 1
            bar.update(row)
            if epoch % log_every == 0 or epoch == epochs:
                log.info(
                    "epoch %d/%d  loss %.3f  reconstruction %.3f  kl %.3f  val %.3f  %.0f rows/s",
                    epoch,
                    epochs,
                    loss_,
                    rec_,
                    kl_,
                    val_loss,
                    row["rows_per_s"],
                )
            if not math.isfinite(loss_):
                raise RuntimeError(
                    f"training diverged at epoch {epoch} (loss {loss_}); try a lower lr"
                )
            state.seconds = time.perf_counter() - started
            if ckpt and epoch % settings.checkpoint_every == 0 and epoch < epochs:
                with step.cuda_rng():  # reads the CUDA generator's state
                    ckpt.save(model, optimizer, state)
            if len(x_val) and state.bad_epochs >= settings.patience:
                log.info(
                    "early stop at epoch %d: validation loss has not improved for %d epochs "
                    "(best %.3f at epoch %d)",
                    epoch,
                    settings.patience,
                    state.best_val,
                    state.best_epoch,
                )
                break
    finally:
        bar.close()
        step.release()

    if step.graphed_steps:
        log.info(
            "%d of the training steps ran as replays of a captured CUDA graph", step.graphed_steps
        )
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    model.eval()
    prior_fit = None
    if model.prior.kind == "fitted":
        codes, variances = _codes(model, x_train, batch * 8, autocast)
        model.prior.fit(codes, variances)
        log.info(
            "generation draws z from a Gaussian fitted to the %s of %d training rows",
            "training codes" if variances is None else "aggregate posterior",
            len(codes),
        )
    elif model.prior.kind == "learned":
        codes, variances = _codes(model, x_train, batch * 8, autocast)
        model.prior.fit(codes, variances)  # the Gaussian too: prior="fitted" as a contrast
        prior_fit = fit_flow(model.prior.flow, codes, variances, settings, batch, autocast)
    hardest = sorted(state.column_val_loss.items(), key=lambda kv: -kv[1])[:3]
    if hardest:
        log.info(
            "hardest columns (validation loss per row): %s",
            ", ".join(f"{k} {v:.3f}" for k, v in hardest),
        )
    return TrainResult(
        device=str(device),
        epochs_planned=epochs,
        epochs_run=state.epoch,
        best_epoch=state.best_epoch,
        stopped_early=state.epoch < epochs,
        best_val_loss=state.best_val if len(x_val) else None,
        seconds=time.perf_counter() - started,
        train_rows=len(x_train),
        val_rows=len(x_val),
        resumed_from_epoch=resumed_from,
        precision="bf16 mixed" if mixed else "fp32",
        graphed_steps=step.graphed_steps,
        cpu_threads=n_threads if device.type == "cpu" else None,
        column_val_loss=state.column_val_loss,
        history=state.history,
        prior_fit=prior_fit,
    )


# The learned prior's fit: about FLOW_ROW_VISITS code draws seen, within [FLOW_MIN_STEPS,
# FLOW_MAX_STEPS] optimizer steps; its learning rate decays (cosine) to 5% of FLOW_LR.
FLOW_ROW_VISITS, FLOW_MIN_STEPS, FLOW_MAX_STEPS = 4_000_000, 1_000, 8_000
FLOW_LR = 1e-3


def flow_epochs(n_rows: int, batch: int) -> int:
    steps_per_epoch = max(1, math.ceil(n_rows / batch))
    steps = int(np.clip(FLOW_ROW_VISITS // batch, FLOW_MIN_STEPS, FLOW_MAX_STEPS))
    return max(1, round(steps / steps_per_epoch))


def fit_flow(
    flow: nn.Module,
    codes: torch.Tensor,
    variances: torch.Tensor | None,
    settings: ModelSettings,
    batch: int,
    autocast,
) -> dict[str, Any]:
    """Fit the learned prior (models.nets.LatentFlow) to the training codes (N, latent): for the
    VAE, a fresh draw from each row's posterior q(z|x) every time (the aggregate posterior the
    decoder was trained on), for the AE the codes themselves."""
    started = time.perf_counter()
    std = variances.sqrt() if variances is not None else None
    spread = codes.var(0) + (variances.mean(0) if variances is not None else 0.0)
    flow.mean.copy_(codes.mean(0))
    flow.scale.copy_(spread.sqrt().clamp_min(1e-6))
    epochs = settings.prior_epochs or flow_epochs(len(codes), batch)
    optimizer = _adamw(list(flow.parameters()), FLOW_LR, 0.0)
    generator = torch.Generator(device=codes.device).manual_seed(settings.seed)
    flow.train()
    steps_per_epoch = max(1, math.ceil(len(codes) / batch))
    total, step, losses = epochs * steps_per_epoch, 0, []
    log.info(
        "fitting the learned prior to %d codes: %d epochs, %d steps, %d parameters",
        len(codes),
        epochs,
        total,
        sum(p.numel() for p in flow.parameters()),
    )
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(codes), generator=generator, device=codes.device)
        running = torch.zeros((), device=codes.device)  # summed on the device: no sync per step
        for a in range(0, len(codes), batch):
            idx = perm[a : a + batch]
            z = codes[idx]
            if std is not None:
                z = z + std[idx] * torch.randn(
                    z.shape, generator=generator, device=z.device, dtype=z.dtype
                )
            for group in optimizer.param_groups:
                group["lr"] = FLOW_LR * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / total)))
            with autocast:
                loss = flow.loss(z)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach()
            step += 1
        losses.append(float(running) / steps_per_epoch)
        if epoch % max(1, epochs // 5) == 0 or epoch == epochs:
            log.info("learned prior: epoch %d/%d  loss %.4f", epoch, epochs, losses[-1])
    flow.eval()
    return {
        "epochs": epochs,
        "steps": total,
        "loss": losses[-1],
        "seconds": time.perf_counter() - started,
        "ode_steps": flow.steps,
    }


# DP mode: each row's gradient is clipped to this L2 norm before the noise (Opacus' max_grad_norm)
MAX_GRAD_NORM = 1.0
DP_EPOCHS = 15  # DP mode's default training length: fewer steps, less noise in each
DP_ACCOUNTANT = "rdp"


def dp_epochs(settings: ModelSettings) -> int:
    return settings.epochs or DP_EPOCHS


def _train_private(
    model: nn.Module,
    matrix: np.ndarray,
    settings: ModelSettings,
    device: torch.device,
    budget: dict[str, Budget],
    progress: bool | None,
) -> TrainResult:
    """DP-SGD through Opacus: every row's gradient clipped to MAX_GRAD_NORM, Gaussian noise on their
    sum, batches by Poisson sampling (each row in each batch with probability batch / rows). The
    noise is the least that keeps the planned steps within budget["training"] under the RDP
    accountant, and training stops at the last step the accountant allows. Every row trains: no
    validation rows, no early stopping (choosing an epoch on rows would spend budget too), float32,
    no checkpoints."""
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier
    from torch.utils.data import DataLoader, TensorDataset

    spend = budget["training"]
    torch.manual_seed(settings.seed)
    x = torch.from_numpy(matrix)
    batch = max(1, min(settings.batch_size, len(x) // 2))
    sample_rate = batch / len(x)
    epochs = dp_epochs(settings)
    steps_per_epoch = max(1, round(1 / sample_rate))
    planned = epochs * steps_per_epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about its own secure-RNG default
        noise = get_noise_multiplier(
            target_epsilon=spend.epsilon,
            target_delta=spend.delta,
            sample_rate=sample_rate,
            steps=planned,
            accountant=DP_ACCOUNTANT,
        )
        allowed = _steps_within(spend, sample_rate, noise, planned)
        model.to(device).train()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        engine = PrivacyEngine(accountant=DP_ACCOUNTANT)
        private, optimizer, loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=DataLoader(TensorDataset(x), batch_size=batch),
            noise_multiplier=noise,
            max_grad_norm=MAX_GRAD_NORM,
            poisson_sampling=True,
        )
    log.info(
        "training %s with DP-SGD on %s: %d rows, %d epochs of %d Poisson batches of about %d rows, "
        "noise multiplier %.3f, clipping %.1f, budget epsilon %.3g delta %.2g (%s accountant)",
        type(model).__name__,
        device,
        len(x),
        epochs,
        steps_per_epoch,
        batch,
        noise,
        MAX_GRAD_NORM,
        spend.epsilon,
        spend.delta,
        DP_ACCOUNTANT.upper(),
    )
    bar = _ProgressBar(epochs, enabled=sys.stderr.isatty() if progress is None else progress)
    started, steps, history = time.perf_counter(), 0, []
    with warnings.catch_warnings():
        # Opacus' hooks on a first layer whose inputs need no gradient: expected, harmless
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        try:
            for epoch in range(1, epochs + 1):
                beta = (
                    settings.beta * min(1.0, epoch / settings.kl_warmup_epochs)
                    if settings.kl_warmup_epochs
                    else settings.beta
                )
                sums, n_batches, t0 = torch.zeros(3), 0, time.perf_counter()
                for (xb,) in loader:
                    if steps >= allowed:
                        break
                    optimizer.zero_grad(set_to_none=True)
                    if len(xb):
                        loss, parts = private(xb.to(device), beta)
                        loss.backward()
                        sums += torch.tensor(
                            [
                                float(loss.detach()),
                                float(parts["reconstruction"].detach()),
                                float(parts["kl"].detach()) if "kl" in parts else 0.0,
                            ]
                        )
                        n_batches += 1
                    optimizer.step()  # an empty batch still takes its noisy step
                    steps += 1
                loss_, rec_, kl_ = (sums / max(n_batches, 1)).tolist()
                if not math.isfinite(loss_):
                    raise RuntimeError(f"training diverged at epoch {epoch}; try a lower lr")
                row = {"epoch": epoch, "loss": loss_, "reconstruction": rec_, "kl": kl_}
                row.update(beta=beta, rows_per_s=len(x) / (time.perf_counter() - t0))
                history.append(row)
                bar.update({**row, "val_loss": loss_})
                if epoch % max(1, epochs // 10) == 0 or epoch == epochs:
                    log.info(
                        "epoch %d/%d  loss %.3f  reconstruction %.3f  kl %.3f  epsilon spent %.3f",
                        epoch,
                        epochs,
                        loss_,
                        rec_,
                        kl_,
                        engine.get_epsilon(spend.delta),
                    )
                if steps >= allowed:
                    break
        finally:
            bar.close()
            private._close()  # Opacus' hooks off the model
    spent = float(engine.get_epsilon(spend.delta))
    model.eval()
    privacy = {
        "mechanism": "DP-SGD (Opacus): per-row clipping, Poisson sampling, Gaussian noise",
        "accountant": DP_ACCOUNTANT.upper(),
        "noise_multiplier": noise,
        "max_grad_norm": MAX_GRAD_NORM,
        "sample_rate": sample_rate,
        "steps": steps,
        "epsilon": spent,
        "delta": spend.delta,
        "budget_epsilon": spend.epsilon,
    }
    log.info(
        "DP-SGD spent epsilon %.3f of %.3f (delta %.2g) in %d steps",
        spent,
        spend.epsilon,
        spend.delta,
        steps,
    )
    if model.prior.kind == "fitted":
        privacy["prior"] = _fit_private_prior(model, x.to(device), batch, budget["prior"], settings)
    return TrainResult(
        device=str(device),
        epochs_planned=epochs,
        epochs_run=len(history),
        best_epoch=len(history),
        stopped_early=steps < planned,
        best_val_loss=None,
        seconds=time.perf_counter() - started,
        train_rows=len(x),
        val_rows=0,
        cpu_threads=torch.get_num_threads() if device.type == "cpu" else None,
        history=history,
        privacy=privacy,
    )


def _steps_within(spend: Budget, sample_rate: float, noise: float, planned: int) -> int:
    """The most steps, up to `planned`, whose epsilon stays within the budget (RDP accountant)."""
    from opacus.accountants import RDPAccountant

    def epsilon(steps: int) -> float:
        accountant = RDPAccountant()
        accountant.history = [(noise, sample_rate, steps)]
        return accountant.get_epsilon(spend.delta)

    low, high = 0, planned
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if epsilon(mid) <= spend.epsilon else (low, mid - 1)
    return low


def _fit_private_prior(
    model: nn.Module, x: torch.Tensor, batch: int, spend: Budget, settings: ModelSettings
) -> dict[str, Any]:
    """The fitted prior's mean and covariance, (epsilon, delta)-DP (synthgen.dp.private_gaussian).
    A VAE's codes are one draw from each row's posterior, whose covariance is the aggregate
    posterior's."""
    means, variances = _codes(model, x, batch * 8, _null_context())
    codes = means if variances is None else means + variances.sqrt() * torch.randn_like(means)
    mean, cov, note = private_gaussian(codes.double().cpu().numpy(), spend, settings.seed)
    model.prior.set(torch.from_numpy(mean), torch.from_numpy(cov))
    log.info(
        "generation draws z from a Gaussian fitted to the training codes with epsilon %.3g "
        "(clip radius %g)",
        spend.epsilon,
        note["clip_radius"],
    )
    return note


def _adamw(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where this torch has one for the device (CPU since torch 2.4):
    one op per step instead of about ten per tensor. On CUDA it is also capturable (its step count
    lives on the GPU), so that a CUDA graph can hold the whole step."""
    cuda = bool(params) and params[0].device.type == "cuda"
    try:
        return torch.optim.AdamW(
            params, lr=lr, weight_decay=weight_decay, fused=True, capturable=cuda
        )
    except RuntimeError:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, capturable=cuda)


class _TrainStep:
    """One optimizer step on the training rows `rows`; adds (loss, reconstruction, kl) to `sums`.

    On CUDA a full-size step is captured once as a CUDA graph and then replayed, with bit-identical
    weights. These models are small, so an eager step there is launch overhead for some 400 small
    kernels, not arithmetic. The learning rate and the KL weight are constants inside the graph, so
    it is captured again whenever either changes (the KL warm-up epochs, a cosine schedule): one
    capture costs about one eager step. SYNTHGEN_CUDA_GRAPH=0 turns this off; a capture that fails
    falls back to eager steps with a warning.
    """

    # eager steps before the first capture: the optimizer's state and cuBLAS set themselves up
    WARMUP_STEPS = 3

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x_train: torch.Tensor,
        batch: int,
        autocast,
    ) -> None:
        self.model, self.optimizer, self.x_train, self.autocast = (
            model,
            optimizer,
            x_train,
            autocast,
        )
        self.cuda = x_train.device.type == "cuda"
        # loss, reconstruction, kl: summed over the epoch's steps
        self.sums = torch.zeros(3, device=x_train.device)
        self.use_graph = self.cuda and os.environ.get("SYNTHGEN_CUDA_GRAPH", "1") != "0"
        self.static_x = x_train.new_empty(batch, x_train.shape[1]) if self.use_graph else None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_key: tuple[float, float] | None = None
        self.eager_steps = self.graphed_steps = 0

    def cuda_rng(self):
        """Hold this around anything that draws from the default CUDA generator during training."""
        return _CUDA_RNG if self.cuda else _null_context()

    def permutation(self) -> torch.Tensor:
        with self.cuda_rng():
            return torch.randperm(len(self.x_train), device=self.x_train.device)

    def _step(self, xb: torch.Tensor, beta: float) -> None:
        with self.autocast:
            loss, parts = self.model(xb, beta=beta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.optimizer.step()
        kl = parts.get("kl", torch.zeros((), device=xb.device))
        self.sums += torch.stack([loss.detach(), parts["reconstruction"].detach(), kl.detach()])

    def __call__(self, rows: torch.Tensor, beta: float) -> None:
        if not self.cuda:
            self._step(self.x_train[rows], beta)
            return
        # streams and captures belong to the table's GPU
        with _CUDA_RNG, torch.cuda.device(self.x_train.device):
            if self.use_graph and len(rows) == len(self.static_x):
                self._graph_step(rows, beta)
            else:  # graphs off, or the epoch's odd-sized last batch
                self._step(self.x_train[rows], beta)

    def _graph_step(self, rows: torch.Tensor, beta: float) -> None:
        torch.index_select(self.x_train, 0, rows, out=self.static_x)
        key = (beta, self.optimizer.param_groups[0]["lr"])
        if self.graph_key != key:
            if self.eager_steps < self.WARMUP_STEPS:
                self._warmup_step(beta)
                return
            self._capture(beta, key)
            if self.graph is None:
                self._step(self.static_x, beta)
                return
        self.graph.replay()
        self.graphed_steps += 1

    def _warmup_step(self, beta: float) -> None:
        # as torch.cuda.graph's documentation asks: warm-up iterations run on a side stream
        side = self._stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._step(self.static_x, beta)
        torch.cuda.current_stream().wait_stream(side)
        self.eager_steps += 1

    def _capture(self, beta: float, key: tuple[float, float]) -> None:
        self.release()  # the previous graph, and its gradients: the capture must start without any
        graph, stream = torch.cuda.CUDAGraph(), torch.cuda.current_stream()
        try:
            # thread_local: another thread (flows run tasks in threads) may use the GPU while this
            # one captures, each thread on a capture stream of its own
            with torch.cuda.graph(graph, stream=self._stream(), capture_error_mode="thread_local"):
                # recorded, not run: zero_grad inside leaves fresh gradients
                self._step(self.static_x, beta)
        except Exception as exc:
            # any capture failure: keep training, eagerly
            log.warning(
                "could not capture the training step as a CUDA graph (%s); "
                "training with eager steps",
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            torch.cuda.set_stream(stream)  # a failed capture leaves its stream current
            _end_generator_capture()
            self.use_graph = False
            self.release()
            return
        self.graph, self.graph_key = graph, key

    def _stream(self) -> torch.cuda.Stream:
        return _thread_stream(self.x_train.device, threading.get_ident())

    def release(self) -> None:
        """Drop the graph, and the gradients that live in its memory pool."""
        self.graph = self.graph_key = None
        self.optimizer.zero_grad(set_to_none=True)


# While a graph is being captured, torch marks the default CUDA generator as capturing, and any draw
# from it elsewhere (another fit's shuffle, noise or graph replay) raises. Fits in threads take
# turns through this.
_CUDA_RNG = threading.RLock()


def _end_generator_capture() -> None:
    """After a failed capture the default CUDA generator still thinks it is capturing, and every
    later draw from it raises: give it a fresh copy of its own state (same seed and offset) that is
    not."""
    gen = torch.cuda.default_generators[torch.cuda.current_device()]
    try:
        gen.graphsafe_set_state(gen.clone_state())
    except (AttributeError, RuntimeError) as exc:  # torch < 2.4 keeps no such state
        log.warning("could not reset the CUDA generator after the failed capture: %s", exc)


@functools.cache
def _thread_stream(device: torch.device, thread: int) -> torch.cuda.Stream:
    """The stream a thread warms up and captures on, one per device and thread for the whole
    process: cuBLAS keeps a workspace for every stream it has run on, so a new stream per fit grew
    GPU memory with every fit."""
    return torch.cuda.Stream(device)


@torch.no_grad()
def _evaluate(
    model: nn.Module, x: torch.Tensor, beta: float, batch: int, autocast
) -> tuple[float, list[float]]:
    model.eval()
    total, parts_sum = 0.0, None
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        with autocast:
            loss, parts = model(xb, beta=beta)
        total += float(loss) * len(xb)
        parts_sum = (
            parts["parts"] * len(xb) if parts_sum is None else parts_sum + parts["parts"] * len(xb)
        )
    return total / len(x), (parts_sum / len(x)).tolist()


@torch.no_grad()
def _codes(
    model: nn.Module, x: torch.Tensor, batch: int, autocast
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every row's code (N, latent), and its posterior variance where the model has one."""
    means, variances = [], []
    for start in range(0, len(x), batch):
        with autocast:
            mean, variance = model.codes(x[start : start + batch])
        means.append(mean.float())
        if variance is not None:
            variances.append(variance.float())
    return torch.cat(means), (torch.cat(variances) if variances else None)


class _null_context:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@dataclass
class _TrainState:
    best_val: float
    epoch: int = 0
    best_epoch: int = 0
    bad_epochs: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    column_val_loss: dict[str, float] = field(default_factory=dict)
    best_weights: dict[str, torch.Tensor] | None = None


class _Checkpoint:
    """Weights, optimizer and RNG state as safetensors, counters as JSON, written atomically."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.dir = directory
        self.fingerprint = fingerprint
        self.tensors, self.meta = (
            directory / "checkpoint.safetensors",
            directory / "checkpoint.json",
        )

    def exists(self) -> bool:
        if not (self.tensors.exists() and self.meta.exists()):
            return False
        try:
            meta = json.loads(self.meta.read_text())
        except json.JSONDecodeError:
            return False
        if meta.get("fingerprint") != self.fingerprint:
            log.info(
                "ignoring the checkpoint in %s: it belongs to other data or settings", self.dir
            )
            return False
        return True

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: _TrainState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
        }
        if state.best_weights is not None:
            tensors.update(
                {f"best.{k}": v.detach().cpu().contiguous() for k, v in state.best_weights.items()}
            )
        opt = optimizer.state_dict()
        for idx, per_param in opt["state"].items():
            for name, value in per_param.items():
                tensors[f"opt.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        meta = {
            "fingerprint": self.fingerprint,
            "param_groups": opt["param_groups"],
            **{k: v for k, v in asdict(state).items() if k != "best_weights"},
        }
        with atomic_path(self.tensors) as tmp:
            save_file(tensors, str(tmp))
        with atomic_path(self.meta) as tmp:
            tmp.write_text(json.dumps(meta))

    def load(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
    ) -> _TrainState:
        tensors = load_file(str(self.tensors))
        meta = json.loads(self.meta.read_text())
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, idx, name = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = (
                    value.to(device) if name != "step" else value
                )
        groups = meta.pop("param_groups")
        # a checkpoint resumes on another device
        for saved, current in zip(groups, optimizer.param_groups, strict=False):
            saved.update(
                {k: current[k] for k in ("fused", "capturable", "foreach") if k in current}
            )
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")} or None
        meta.pop("fingerprint", None)
        return _TrainState(**meta, best_weights=best)


class _ProgressBar:
    def __init__(self, epochs: int, enabled: bool) -> None:
        self.progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("epoch"),
                MofNCompleteColumn(),
                BarColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.progress.add_task("train", total=epochs, stats="")
            self.progress.start()

    def update(self, row: dict[str, float]) -> None:
        if self.progress is not None:
            stats = (
                f"loss {row['loss']:.3f} rec {row['reconstruction']:.3f} kl {row['kl']:.3f} "
                f"val {row['val_loss']:.3f} {row['rows_per_s']:.0f} rows/s"
            )
            self.progress.update(self.task, completed=row["epoch"], stats=stats)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
