#!/usr/bin/env bash
# The prepared run for a lent GPU machine: one call of at most 10 minutes on one H100 or H200.
#   1. one synth-cub trial alone on the GPU: steps per second as before (Adam per member, no
#      graphs), with Adam in one call, and with its epochs captured too (today's default); an
#      evaluation with each classifier with and without CUDA graphs; peak memory (skipped with
#      GPU_CHECK_SOLO=0);
#   2. the suite's GPU tests (captured classifier epochs and one-call Adam = eager; a --device cuda training; studies whose trials and refit train on
#      the GPU Ray assigned them, fractional and packed), beside 4 when it runs;
#   3. packed trials on the GPU: pack_throughput.py --device cuda (K = 1..64, packed vs solo,
#      operators and GPU memory per member, Adam's milliseconds in one call and per member and
#      its share of a step, the physical limit; the final classifier of K members fit at once,
#      with and without CUDA graphs; four fractional trials side by side);
#   5. a study end to end, evaluation included (benchmarks/study_throughput.py --device cuda): a
#      synth_cub slice (8 configurations, 10 epochs) as 4 fractional trials (gpu = 0.25) and packed (pack = 8), when
#      GPU_CHECK_STUDY=1 (default); its size is GPU_CHECK_STUDY_ARGS;
#   4. the science benchmarks of synth-cub on the GPU (when GPU_CHECK_SCIENCE=1; measured once,
#      see docs/benchmarks.md), in the background from before 2, one process per worker:
#      preset_science.py (default and ablation x 3 seeds, KL 1, lam 0, CADA-VAE sampling; 100
#      epochs, test split) and val_test_agreement.py (12 configurations of cub_full's space, 30
#      epochs, val and test). Each run is appended to $OUT/*.jsonl as it ends, so a run cut
#      short still returns what finished; the tables are printed from those files.
# Steps 1, 2, 3 and 5 together stay under 10 minutes (their timeouts: 100 + 200 + 130 + 150 s); GPU_CHECK_SOLO=0 or
# GPU_CHECK_STUDY=0 leave a step out.
# Usage, from the repository root, with a python3 whose torch sees CUDA:
#   bash benchmarks/gpu_check.sh                   # results in $OUT, or ./gpu-check-out
# Where the machine cannot install packages, a folder .whl/ of wheels (ray, optuna and their
# needs) is installed to /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_SECONDS:-400}  # the science benchmarks stop after this many seconds
CONFIGS=${GPU_CHECK_CONFIGS:-10}  # configurations of the agreement benchmark (at least 10)
CURVE_EVERY=${GPU_CHECK_CURVE_EVERY:-6}  # the agreement's validation runs score H every n epochs
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)"
$PY -c "import ray, optuna; print('ray', ray.__version__, 'optuna', optuna.__version__)" || echo "no ray/optuna: the study test will fail"

if [ "${GPU_CHECK_SOLO:-1}" = 1 ]; then
echo "## 1. one synth-cub trial alone on the GPU: steps per second as before, with Adam in one call, and with captured epochs too; one evaluation with each classifier, captured and not"
timeout 100 $PY - <<'PY' 2>&1 | grep -v USDT | tee "$OUT/solo.txt"
import json, time, torch
import gzsl.evaluation as evaluation
from gzsl import graphs
from gzsl.datasets import load
from gzsl.evaluation import CADA_RECIPE, FAST_CLASSIFIER, Evaluator
from gzsl import trainer
from gzsl.datasets import default_hidden
from gzsl.trainer import Pack, TrainConfig
d = load("synth-cub", "test").to("cuda")
cfg = TrainConfig(device="cuda", epochs=10, hidden=default_hidden("synth-cub"))
res = {}
for name, one_call, captured in (("plain", False, False), ("one_call", True, False), ("one_call_graphs", True, True)):
    graphs.ENABLED = captured  # plain: as before these changes; one_call_graphs: the default now
    pack = Pack(d, cfg)  # train()'s own trainer, a pack of one
    pack.optimizer.one_call = one_call
    pack.join("run", cfg)
    for e in range(3):  # warm-up: the allocator, kernels, the compiled update; eager, then captured epoch
        pack.train_epoch()
    torch.cuda.synchronize(); t = time.perf_counter()
    for e in range(5):
        pack.train_epoch()
    torch.cuda.synchronize(); per_epoch = (time.perf_counter() - t) / 5
    res[f"{name}_steps_per_second"] = round(len(d.train.y) / cfg.batch_size / per_epoch)
    res[f"{name}_fell_back"] = (one_call and not pack.optimizer.one_call) or graphs.failed(trainer.TRAINING_EPOCH)
graphs.ENABLED = True
model = pack.member("run")
for name, c in (("fast", FAST_CLASSIFIER), ("cada", CADA_RECIPE)):
    for captured in (True, False):
        graphs.ENABLED = captured
        t = time.perf_counter(); s = Evaluator(d, c)(model); torch.cuda.synchronize()
        key = f"{name}{'' if captured else '_no_graph'}"
        res[f"{key}_eval_seconds"], res[f"{key}_H_after_8_epochs"] = round(time.perf_counter() - t, 2), round(s.H, 2)
graphs.ENABLED = True
res["graph_capture_failed"] = graphs.failed(evaluation.CLASSIFIER_EPOCH)
res["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
print(json.dumps(res))
PY
fi

if [ "${GPU_CHECK_SCIENCE:-0}" = 1 ]; then
echo "## 4. science benchmarks on the GPU, in the background, for at most ${BUDGET}s"
timeout "$BUDGET" $PY benchmarks/preset_science.py --dataset synth-cub --device cuda --workers 9 \
  --out "$OUT/science.jsonl" > "$OUT/science.log" 2>&1 &
timeout "$BUDGET" $PY benchmarks/val_test_agreement.py --dataset synth-cub --study cub_full --configs "$CONFIGS" \
  --curve-every "$CURVE_EVERY" --device cuda --workers 8 --out "$OUT/agreement.jsonl" > "$OUT/agreement.log" 2>&1 &
fi

echo "## 2. GPU tests (first: a packed study on the GPU was never yet seen to finish)"
# GPU_CHECK_TESTS: the tests to run (a machine without Ray: leave out test_device.py and test_study.py);
# in one process, one after the other (-o addopts="": no xdist workers, which the machine may lack)
timeout 200 $PY -m pytest -q -o addopts="" --timeout 150 --durations=4 -p no:cacheprovider ${GPU_CHECK_TESTS:-tests/test_fast_paths.py tests/test_device.py \
  tests/test_train_cli.py::test_device_cuda_trains_on_the_gpu \
  tests/test_study.py::test_trials_and_the_refit_train_on_the_gpus_tune_assigned} 2>&1 | tee "$OUT/tests.txt" | tail -40

echo "## 3. packed trials on the GPU"
timeout 130 $PY benchmarks/pack_throughput.py --device cuda --ks 1 2 4 8 16 32 64 --latents 32 64 128 \
  --classifier-ks 1 4 16 --fractional 4 --fractional-seconds 20 \
  2>&1 | grep -v USDT | tee "$OUT/pack_throughput.txt"

if [ "${GPU_CHECK_STUDY:-1}" = 1 ]; then
echo "## 5. a study end to end on the GPU, evaluation included"
timeout 150 $PY benchmarks/study_throughput.py --device cuda --cpus "$(nproc)" \
  ${GPU_CHECK_STUDY_ARGS:---study synth_cub --num-samples 8 --epochs 10 --packs 8} 2>&1 | tee "$OUT/study_throughput.txt" | tail -12
fi

wait
[ "${GPU_CHECK_SCIENCE:-0}" = 1 ] || exit 0
echo "## 4. tables (from what finished)"
$PY benchmarks/preset_science.py --dataset synth-cub --device cuda --workers 0 --out "$OUT/science.jsonl" 2>&1 | tail -16
$PY benchmarks/val_test_agreement.py --dataset synth-cub --study cub_full --configs "$CONFIGS" --curve-every "$CURVE_EVERY" --device cuda --workers 0 \
  --out "$OUT/agreement.jsonl" 2>&1 | tail -40
grep -h "Traceback\|Error" "$OUT"/science.log "$OUT"/agreement.log | sort | uniq -c | head -5
