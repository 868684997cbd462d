"""End to end: configuration-epochs per second of a whole study, evaluation included, solo
trials against packed ones, and where the time goes.

    python benchmarks/study_throughput.py                              # CPU: the demo, solo and pack 4 / 8
    python benchmarks/study_throughput.py --device cuda --study synth_cub --num-samples 64 \\
        --epochs 100 --packs 16 32 64 --solo-gpu 0.25                  # a cub_full-shaped slice on one GPU

Each variant runs `python -m gzsl.tune` on a copy of the study (ASHA on, the refit and report
off): (a) solo trials, [resources] as the study has them (on CUDA: --solo-gpu of a GPU each),
(b) packed, pack = K, one worker holding all the study's CPUs (or one GPU). From its Parquet:

- wall: the study's first trial start to its last trial end (Ray's start and the driver's
  imports left out, as a long study amortises them);
- cfg-epochs/s: configuration-epochs trained (ASHA-stopped trials count what they trained) over
  wall, every evaluation included;
- train / eval / other: shares of the workers' time (wall x workers) spent in training steps,
  in evaluation (validation H with the study's classifier), and in neither: Tune and Ray (trial
  start, reporting, scheduling), the searcher, and workers left idle;
- peak memory per member (GPU only: the trials' peak CUDA memory over their pack's members);
- on a known GPU, each rate as a share of the training's physical limit (benchmarks/shared_limits.py:
  a configuration-epoch's FLOPs and parameter traffic against the device's peaks; evaluation
  is not in that limit, so the share says how far the whole study is from training alone at
  the limit).

A packed trial's epoch row carries its pack's epoch time (all members): rows of one pack epoch
are counted once (same pack, same seconds).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_limits import config_epoch_cost, device_peaks, limit, share  # noqa: E402
from gzsl.datasets import load  # noqa: E402
from gzsl.study.trial import train_config  # noqa: E402
from gzsl.studyfile import load_study  # noqa: E402


def variant(study: str, folder: Path, pack: int, device: str, cpus: int, solo_gpu: float, epochs: int | None,
            max_concurrent: int) -> Path:
    """The study file of one variant: solo (pack 1) or packed, on the device."""
    spec = load_study(study)
    text = spec.path.read_text()
    if pack > 1:  # one worker: all the CPUs (or one GPU) for the pack
        res = f"[resources]\ncpu = {cpus}\ngpu = {1 if device == 'cuda' else 0}\npack = {pack}\n"
        concurrent = pack
    else:
        res = f"[resources]\ncpu = 1\ngpu = {solo_gpu if device == 'cuda' else 0}\n"
        concurrent = max_concurrent
    text = re.sub(r"^\[resources\][^\[]*", res + "\n", text, count=1, flags=re.M)
    text = re.sub(r"^max_concurrent = \d+", f"max_concurrent = {concurrent}", text, count=1, flags=re.M)
    if epochs:  # ASHA's grace scaled with the run, on an evaluated epoch where it can be
        grace = max(1, round(spec.grace_period * epochs / spec.epochs))
        every = max(1, spec.eval_every)
        grace = max(every, grace // every * every) if every < epochs else grace
        text = re.sub(r"^epochs = \d+", f"epochs = {epochs}", text, count=1, flags=re.M)
        text = re.sub(r"^grace_period = \d+", f"grace_period = {grace}", text, count=1, flags=re.M)
    path = folder / f"{spec.name}_pack{pack}.toml"
    path.write_text(text)
    return path


def shares(trials: pd.DataFrame, epochs: pd.DataFrame, workers: int) -> dict:
    """Wall time, configuration-epochs per second and the shares of the workers' time."""
    wall = (trials.ended_at.max() - trials.started_at.min()).total_seconds()
    e = epochs.merge(trials[["trial_id", "executor_id"]], on="trial_id")
    solo = e[e.executor_id.fillna("") == ""]
    packed = e[e.executor_id.fillna("") != ""].drop_duplicates(["executor_id", "seconds", "eval_seconds"])
    busy = pd.concat([solo, packed])
    evaluating = busy.eval_seconds.fillna(0).sum()
    training = busy.seconds.sum() - evaluating
    total = wall * workers
    mem = (trials.gpu_mem_mb.dropna() if "gpu_mem_mb" in trials else pd.Series([], dtype=float))
    return {"wall": wall, "cfg_epochs": int(trials.epochs_run.sum()), "rate": trials.epochs_run.sum() / wall,
            "train": training / total, "eval": evaluating / total, "other": 1 - (training + evaluating) / total,
            "mem_per_member": mem.max() if len(mem) else float("nan"), "trials": len(trials),
            "completed": int((trials.status == "completed").sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="demo")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--packs", type=int, nargs="+", default=[4, 8])
    p.add_argument("--num-samples", type=int, help="trials per variant (default: the study's)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the study's)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs Ray may use (all to the pack's worker)")
    p.add_argument("--solo-gpu", type=float, default=0.25, help="GPU share of a solo trial on CUDA")
    p.add_argument("--keep", type=Path, help="keep each variant's results under KEEP/")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = {}
        for pack in (1, *args.packs):
            solo_workers = int(1 / args.solo_gpu) if args.device == "cuda" else args.cpus
            study = variant(args.study, folder, pack, args.device, args.cpus, args.solo_gpu, args.epochs, solo_workers)
            results = folder / f"results-pack{pack}"
            cmd = [sys.executable, "-m", "gzsl.tune", "--study", str(study), "--results", str(results),
                   "--no-refit", "--no-report", "--no-dashboard", "--num-cpus", str(args.cpus)]
            cmd += ["--num-samples", str(args.num_samples)] if args.num_samples else []
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"pack {pack}: gzsl.tune failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            trials, epochs = (pd.read_parquet(results / f"{t}.parquet") for t in ("trials", "epochs"))
            rows[pack] = {**shares(trials, epochs, 1 if pack > 1 else solo_workers),
                          "process": time.perf_counter() - start}
            print(f"pack {pack}: done in {rows[pack]['process']:.0f} s", flush=True)
    print(f"\n{args.study} on {args.device}: solo trials (pack 1, {solo_workers} at once) and packed "
          f"(one worker of {args.cpus} CPUs{' and 1 GPU' if args.device == 'cuda' else ''})")
    print(f"{'pack':>4} {'trials':>6} {'completed':>9} {'cfg-epochs':>10} {'wall s':>7} {'cfg-ep/s':>8} "
          f"{'vs solo':>7} {'train':>6} {'eval':>6} {'other':>6} {'MB/member':>9} {'process s':>9}")
    for pack, r in rows.items():
        print(f"{pack:4d} {r['trials']:6d} {r['completed']:9d} {r['cfg_epochs']:10d} {r['wall']:7.0f} "
              f"{r['rate']:8.2f} {r['rate'] / rows[1]['rate']:7.2f} {r['train']:6.0%} {r['eval']:6.0%} "
              f"{r['other']:6.0%} {r['mem_per_member']:9.0f} {r['process']:9.0f}")
    print("train / eval / other: shares of wall x workers (other: Tune and Ray, the searcher, idle workers)")
    spec = load_study(args.study)
    cost = config_epoch_cost(load(spec.dataset, spec.split, spec.data_root), train_config(spec, {"latent_size": 64}, 0))
    peaks = device_peaks(args.device)
    print(f"{limit(cost, peaks)} (latent size 64)")
    for pack, r in rows.items() if peaks else ():
        print(f"pack {pack}: {r['rate']:.2f} cfg-epochs/s, evaluation included, is {share(r['rate'], cost, peaks)}")


if __name__ == "__main__":
    main()
