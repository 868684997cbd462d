"""Where does validation H peak, and how much of it is lost by the last epoch?

    python benchmarks/experiments/peak_epoch.py --study demo --configs 8           # synth-small, 30 epochs: minutes
    python benchmarks/experiments/peak_epoch.py --study synth_cub --configs 2      # synth-cub, 100 epochs: ~30 min a run on a core

Trains, on the validation split, method.md's default configuration and `--configs` random
configurations of a study's search space (seeded draws, the study's fixed settings: its sampling,
epochs and classifier), scoring validation H with CADA-VAE's recipe every `--curve-every` epochs
(the study's `eval_every` by default), and prints per configuration the best epoch, the best H,
the last H and the H lost by the end. A study's refit scores the last epoch: if H falls after its
peak, that number is below what the search saw. Runs go one per core; each result is appended to
--out as it ends, and a rerun skips what is there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared_runs

from shared_runs import run_all, suffix, workers_default  # noqa: E402
from val_test_agreement import draw_configs  # noqa: E402

from gzsl.studyfile import load_study  # noqa: E402
from gzsl.trainer import TrainConfig  # noqa: E402

DEFAULT = {k: getattr(TrainConfig, k) for k in ("alpha", "gamma", "lam", "latent_size", "lr")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="demo", help="whose space, dataset, epochs and fixed settings")
    p.add_argument("--dataset", help="default: the study's")
    p.add_argument("--configs", type=int, default=8, help="random configurations beside the default one")
    p.add_argument("--epochs", type=int, help="default: the study's")
    p.add_argument("--curve-every", type=int, help="default: the study's eval_every")
    p.add_argument("--seed", type=int, default=0, help="draws the configurations; every run trains with seed 0")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=workers_default(),
                   help="processes side by side; 0 runs nothing and prints what --out holds")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    spec = load_study(args.study)
    dataset, epochs = args.dataset or spec.dataset, args.epochs or spec.epochs
    every = args.curve_every or spec.eval_every
    out = args.out or Path(__file__).parent / "measured" / f"peak-{dataset}-{epochs}ep{suffix(args.device)}.jsonl"
    fixed = {"sampling": TrainConfig.sampling, **{k: v for k, v in spec.fixed.items() if k != "classifier"},
             "batch_size": spec.batch_size,
             **({} if args.device == "cpu" else {"device": args.device})}
    configs = [DEFAULT] + draw_configs(args.study, args.configs, args.seed)
    jobs = [{"dataset": dataset, "split": "val", "curve": spec.fixed.get("classifier", "cada"),
             "config": {**c, **fixed, "epochs": epochs, "eval_every": every}} for c in configs]
    results = run_all(jobs, out, args.workers)

    print(f"\n{dataset}, validation split, {epochs} epochs, H every {every} epochs "
          f"({jobs[0]['curve']} classifier), sampling {fixed['sampling']}: where validation H peaks")
    print(f"{'alpha':>7} {'gamma':>7} {'lam':>6} {'latent':>6} {'lr':>8} | {'best epoch':>10} {'best H':>7} "
          f"{'last H':>7} {'lost':>6}")
    lost, peaks = [], []
    for c, r in zip(configs, results):
        if r is None:
            continue
        curve = r["per_epoch"]
        best_epoch, best_h = max(curve, key=lambda eh: (eh[1], -eh[0]))
        last_h = curve[-1][1]
        lost.append(best_h - last_h)
        peaks.append(best_epoch)
        tag = "  (method.md's default)" if c is DEFAULT else ""
        print(f"{c['alpha']:7.3g} {c['gamma']:7.3g} {c['lam']:6.3g} {c['latent_size']:6d} {c['lr']:8.2g} | "
              f"{best_epoch:10d} {best_h:7.1f} {last_h:7.1f} {best_h - last_h:6.1f}{tag}")
    if lost:
        print(f"\n{len(lost)} configurations: H lost by the end, mean {np.mean(lost):.1f}, median "
              f"{np.median(lost):.1f}, max {np.max(lost):.1f}; {sum(x >= 2 for x in lost)} lose 2 H or more; "
              f"best epoch median {np.median(peaks):.0f} of {epochs}")


if __name__ == "__main__":
    main()
