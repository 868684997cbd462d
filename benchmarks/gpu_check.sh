#!/usr/bin/env bash
# GPU check, one short script for a lent GPU machine (about 12 minutes on one GPU):
#   1. one 100-epoch synth-cub trial alone: its time and peak GPU memory;
#   2. a synth_cub study slice with 1, 4 and 8 trials per GPU: trials/hour and GPU memory per trial.
# Usage: bash benchmarks/gpu_check.sh [TRIALS_PER_SLICE]   (run from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-8}
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then $PY -m venv .venv && .venv/bin/pip install -q -e . ; fi
PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "## one synth-cub trial, 100 epochs, alone on the GPU"
$PY - <<'PY'
import json, time, torch
from gzsl.data import load
from gzsl.training import TrainConfig, train
d = load("synth-cub", "test")
torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
for r in train(d, TrainConfig(device="cuda", eval_every=0)):
    pass
print(json.dumps({"seconds": round(time.perf_counter() - t, 1), "H": round(r.scores.H, 2),
                  "peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20)}))
PY
for per_gpu in 1 4 8; do
  gpu=$(python3 -c "print(1 / $per_gpu)")
  dir=$(mktemp -d)
  sed -e "s/^cpu = 1$/cpu = 1\ngpu = $gpu/" -e "s/^num_samples = .*/num_samples = $N/" -e "s/^epochs = 100/epochs = 30/" \
      gzsl/studies/synth_cub.toml > "$dir/gpu_slice_$per_gpu.toml"
  echo "## synth_cub slice: $N trials x 30 epochs, $per_gpu trial(s) per GPU"
  start=$(date +%s)
  $PY -m gzsl.tune --study "$dir/gpu_slice_$per_gpu.toml" --results "$dir/results" --no-refit --no-report \
      --max-concurrent "$per_gpu" > "$dir/log" 2>&1 || tail -5 "$dir/log"
  end=$(date +%s)
  $PY - "$dir/results" "$start" "$end" "$per_gpu" <<'PY'
import sys, pandas as pd
t = pd.read_parquet(sys.argv[1] + "/trials.parquet")
hours = (int(sys.argv[3]) - int(sys.argv[2])) / 3600
print(f"{sys.argv[4]} per GPU: {len(t)} trials ({t.epochs_run.sum()} trial-epochs) in {hours * 3600:.0f} s = "
      f"{len(t) / hours:.0f} trials/hour; GPU memory per trial: median {t.gpu_mem_mb.median():.0f} MB, "
      f"max {t.gpu_mem_mb.max():.0f} MB")
PY
done
