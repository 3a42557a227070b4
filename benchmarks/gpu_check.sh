#!/usr/bin/env bash
# Train synthgen's VAE on diamonds on CUDA; print epoch time, rows/s and the device. Fails loudly without CUDA.
# Also times the same fit with eager steps (SYNTHGEN_CUDA_GRAPH=0) beside the default CUDA-graph replays,
# and the VAE and the AE with the learned prior (prior="learned": its flow's fit, and sampling through its ODE).
#   bash benchmarks/gpu_check.sh [path/to/diamonds.parquet]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/datasets/diamonds.parquet}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
"$PY" - "$DATA" <<'PY'
import os, sys, time, torch
if not torch.cuda.is_available():
    sys.exit("FAIL: CUDA is not available (torch %s, built for CUDA %s)" % (torch.__version__, torch.version.cuda))
from synthgen import Synthesizer
import pandas as pd
df = pd.read_parquet(sys.argv[1])


def fit(epochs: int):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    synth = Synthesizer("vae", epochs=epochs, device="cuda", patience=1000).fit(df, progress=False)
    fit_s = time.perf_counter() - t0
    device = next(synth.net.parameters()).device
    if device.type != "cuda" or synth.training.device.split(":")[0] != "cuda":
        sys.exit(f"FAIL: trained on {synth.training.device}, parameters on {device}")
    epoch_s = sorted(synth.training.train_rows / h["rows_per_s"] for h in synth.training.history[1:])
    return synth, fit_s, epoch_s[len(epoch_s) // 2]


torch.cuda.reset_peak_memory_stats()
synth, fit_s, median = fit(60)
tr = synth.training
print(f"device {torch.cuda.get_device_name(0)} ({tr.device}); torch {torch.__version__}; {tr.precision}")
print(f"fit {fit_s:.1f}s for {tr.epochs_run} epochs; median epoch {median:.3f}s; {tr.train_rows / median:,.0f} train rows/s; "
      f"{tr.graphed_steps} steps replayed from a CUDA graph; peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
torch.cuda.synchronize()
t0 = time.perf_counter(); rows = synth.sample(2_000_000, seed=0); sample_s = time.perf_counter() - t0
print(f"sampling {len(rows) / sample_s:,.0f} rows/s into a DataFrame")
os.environ["SYNTHGEN_CUDA_GRAPH"] = "0"
_, eager_fit_s, eager_median = fit(20)
print(f"eager steps (SYNTHGEN_CUDA_GRAPH=0): median epoch {eager_median:.3f}s, {tr.train_rows / eager_median:,.0f} train rows/s; "
      f"CUDA graphs {eager_median / median:.1f}x faster per epoch")
del os.environ["SYNTHGEN_CUDA_GRAPH"]
for model in ("vae", "ae"):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    learned = Synthesizer(model, epochs=60, device="cuda", patience=1000, prior="learned").fit(df, progress=False)
    fit_s, pf = time.perf_counter() - t0, learned.training.prior_fit
    torch.cuda.synchronize()
    t0 = time.perf_counter(); rows = learned.sample(2_000_000, seed=0); sample_s = time.perf_counter() - t0
    print(f"{model} prior learned: fit {fit_s:.1f}s, of which the flow {pf['seconds']:.1f}s ({pf['steps']} steps, loss {pf['loss']:.3f}); "
          f"sampling {len(rows) / sample_s:,.0f} rows/s with {pf['ode_steps']} midpoint ODE steps")
PY
