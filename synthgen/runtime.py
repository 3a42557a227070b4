"""Where and how torch runs: the device, the thread count on a CPU, and whether bf16 pays off."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import nn

from synthgen.errors import UserError

# Below this many parameters a CPU training step is a few hundred small ops, too small to split
# across threads (docs/design.md, "Threads on a CPU").
ONE_THREAD_PARAMS = 1_000_000
T, R = TypeVar("T"), TypeVar("R")


def resolve_device(name: str) -> torch.device:
    """auto (CUDA when available), cpu or cuda; asking for
    CUDA where there is none is the user's error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(name)


def training_threads(model: nn.Module, cpu_threads: int | None, device: torch.device) -> int | None:
    """Torch threads for training on the CPU: `cpu_threads`, else 1 for models under
    ONE_THREAD_PARAMS parameters; None leaves torch's setting (CUDA, large models)."""
    if device.type != "cpu":
        return None
    if cpu_threads:
        return cpu_threads
    return 1 if sum(p.numel() for p in model.parameters()) < ONE_THREAD_PARAMS else None


@functools.cache
def fast_bf16(device_type: str) -> bool:
    """Whether bf16 pays off here: on CUDA, and on CPUs with bf16 units (AVX512-BF16 / AMX), where a
    bf16 matrix product is several times faster than a float32 one. SYNTHGEN_PRECISION=fp32 or bf16
    decides.

    The CPU flags decide where the OS lists them, so a seeded run trains the same model however busy
    the machine is; elsewhere a short timing probe decides, with its own generator (the global RNG
    is seeded).
    """
    choice = os.environ.get("SYNTHGEN_PRECISION", "auto")
    if choice in ("fp32", "bf16"):
        return choice == "bf16"
    if device_type == "cuda":
        return True
    flags = _cpu_flags()
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2048, 256, generator=gen), torch.randn(256, 256, generator=gen)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, w = a.to(dtype), b.to(dtype)
        torch.mm(x, w)
        t0 = time.perf_counter()
        for _ in range(10):
            torch.mm(x, w)
        timings[dtype] = time.perf_counter() - t0
    return timings[torch.bfloat16] < 0.7 * timings[torch.float32]


def in_order(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """fn(item) for each item, in order, computed by `threads` threads with at most `threads`
    results held ahead (ThreadPoolExecutor.map would submit every item at once and hold all results
    a slow consumer has not read)."""
    if threads == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="synthgen") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) == threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # a consumer that stops early does not wait for results nobody will read
            for future in pending:
                future.cancel()


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Torch's thread count set to `n` (None: left alone) for the block, then put back. It is one
    setting for the whole process."""
    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _cpu_flags() -> set[str] | None:
    """The CPU feature flags from /proc/cpuinfo (Linux), or None where there is no such file."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None
