#!/usr/bin/env bash
# Train synthgen's VAE on diamonds on CUDA; print epoch time, rows/s and the device. Fails loudly without CUDA.
#   bash benchmarks/gpu_check.sh [path/to/diamonds.parquet]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/datasets/diamonds.parquet}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
"$PY" - "$DATA" <<'PY'
import sys, time, torch
if not torch.cuda.is_available():
    sys.exit("FAIL: CUDA is not available (torch %s, built for CUDA %s)" % (torch.__version__, torch.version.cuda))
from synthgen import Synthesizer
import pandas as pd
df = pd.read_parquet(sys.argv[1])
t0 = time.perf_counter()
synth = Synthesizer("vae", epochs=60, device="cuda", patience=1000).fit(df, progress=False)
fit_s = time.perf_counter() - t0
device = next(synth.net.parameters()).device
if device.type != "cuda" or synth.training.device.split(":")[0] != "cuda":
    sys.exit(f"FAIL: trained on {synth.training.device}, parameters on {device}")
hist = synth.training.history
epoch_s = [synth.training.train_rows / h["rows_per_s"] for h in hist[1:]]
epoch_s.sort()
median = epoch_s[len(epoch_s) // 2]
torch.cuda.synchronize()
t0 = time.perf_counter(); rows = synth.sample(2_000_000, seed=0); sample_s = time.perf_counter() - t0
print(f"device {torch.cuda.get_device_name(0)} ({synth.training.device}); torch {torch.__version__}")
print(f"fit {fit_s:.1f}s for {synth.training.epochs_run} epochs; median epoch {median:.3f}s; "
      f"{synth.training.train_rows / median:,.0f} train rows/s; peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
print(f"sampling {len(rows) / sample_s:,.0f} rows/s into a DataFrame")
PY
