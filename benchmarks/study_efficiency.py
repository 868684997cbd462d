"""What ASHA + TPE saves over FIFO random search, side by side in one run.

    python benchmarks/study_efficiency.py                 # the demo study (synth-small), ~5 minutes on 2 cores
    python benchmarks/study_efficiency.py --study synth_cub --num-samples 20

Both searches use the same study, seed, trial count and resources. Prints the best
validation H each found (best completed trial's final H), the trial-epochs and wall
time each used, their ratios (target: ASHA+TPE within 1 point of FIFO's H using at
most 35% of its trial-epochs and wall time), and the per-trial overhead with
reuse_actors (trial start to first reported epoch, less that epoch; target < 1 s).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "4")

import ray  # noqa: E402

from gzsl.datasets import load  # noqa: E402
from gzsl.studyfile import load_study  # noqa: E402
from gzsl.study import run_study  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="demo")
    p.add_argument("--num-samples", type=int, help="trials per search (default: the study's)")
    p.add_argument("--num-cpus", type=int, default=2)
    args = p.parse_args()
    spec = load_study(args.study)
    if args.num_samples:
        spec = replace(spec, num_samples=args.num_samples)
    data = load(spec.dataset, spec.split, spec.data_root, seed=spec.seed)
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, sampler, early in (("ASHA + TPE", "tpe", True), ("FIFO random", "random", False)):
            start, cpu = time.time(), _driver_cpu()
            store = run_study(replace(spec, name=spec.name + ("_asha" if early else "_fifo")), data,
                              f"{tmp}/{label.split()[0]}", sampler=sampler, early_stopping=early, log=lambda _: None)
            wall, cpu = time.time() - start, _driver_cpu() - cpu
            t = store.read("trials")
            first, last = (t.started_at.min().timestamp() - start), (start + wall - t.ended_at.max().timestamp())
            done = t[t.status == "completed"]
            rows[label] = {"best_H": done.last_val_H.max() if not done.empty else float("nan"),
                           "best_any_H": t.best_val_H.max(), "trial_epochs": int(t.epochs_run.sum()),
                           "wall": wall, "startup": t.startup_seconds.median(), "startup_max": t.startup_seconds.max(),
                           "counts": t.status.value_counts().to_dict(), "driver_cpu": cpu,
                           "fixed": first + last, "first": first, "last": last}
    a, f = rows["ASHA + TPE"], rows["FIFO random"]
    print(f"# study {spec.name} ({spec.dataset}), {spec.num_samples} trials x up to {spec.epochs} epochs, "
          f"{args.num_cpus} CPUs, resources/trial {spec.resources}")
    for label, r in rows.items():
        print(f"{label:12s} best val H {r['best_H']:6.2f} (best at any epoch {r['best_any_H']:6.2f})  "
              f"trial-epochs {r['trial_epochs']:4d}  wall {r['wall']:6.1f} s  trials {r['counts']}")
    print(f"H difference ASHA+TPE - FIFO   {a['best_H'] - f['best_H']:+.2f} points (target >= -1)")
    print(f"trial-epochs ASHA / FIFO       {a['trial_epochs'] / f['trial_epochs']:.0%} (target <= 35%)")
    print(f"wall time ASHA / FIFO          {a['wall'] / f['wall']:.0%} (target <= 35%)")
    for label, r in rows.items():
        print(f"{label:12s} Tune start-up {r['first']:.1f} s + shutdown {r['last']:.1f} s of the wall; "
              f"driver CPU {r['driver_cpu']:.1f} s")
    fixed = a["fixed"], f["fixed"]
    print(f"wall time less start-up/shutdown ASHA / FIFO {(a['wall'] - fixed[0]) / (f['wall'] - fixed[1]):.0%}")
    print(f"per-trial overhead (reuse_actors): median {a['startup']:.2f} s, max {a['startup_max']:.2f} s "
          "(target < 1 s)")


def _driver_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


if __name__ == "__main__":
    main()
