"""What early stopping saves, on the same configurations, and what it costs in the choice.

    python benchmarks/study_efficiency.py                 # the demo study (synth-small): ~15 minutes on 2 cores
    python benchmarks/study_efficiency.py --study cub_full --dataset cub-sim --data-root ../shared/data/xlsa17 \
        --num-samples 16                                  # cub-sim, 100 epochs: about 20 minutes per arm on 2 cores

One after the other, on one local Ray, three searches of the same study, trial budget and seed:

1. random search with the stopping policy (gzsl.selection, the audit included);
2. random search without stopping (FIFO): Optuna's seeded random sampler proposes the same
   configurations in the same order (method.md's defaults first), so only the stopping differs;
3. TPE with the policy, as a study runs.

For each: trial-epochs (the audit's included) and trial-seconds (training and evaluation apart),
wall time, the configuration chosen (the best completed trial; no confirmation here), its refit's
test H (`--final-seeds` seeds) and the audit's verdict. Then the policy's trial-epochs over FIFO's
(target: at most 0.5) and the difference of the refits' test H (target: within h_noise). Every
number comes from the arms' own Parquet files; nothing is assumed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "4")
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's tables off: the arms' lines say it

import ray  # noqa: E402

from gzsl import hyperparams, study  # noqa: E402
from gzsl.datasets import load  # noqa: E402
from gzsl.report import records as rec  # noqa: E402
from gzsl.selection import wrongful  # noqa: E402
from gzsl.studyfile import load_study  # noqa: E402

ARMS = (("random + policy", "random", True), ("random, no stopping", "random", False), ("TPE + policy", "tpe", True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="demo")
    p.add_argument("--dataset", help="default: the study's (cub-sim: CUB's attributes, needs --data-root)")
    p.add_argument("--data-root", help="the xlsa17 folder")
    p.add_argument("--num-samples", type=int, help="trials per search (default: the study's)")
    p.add_argument("--final-seeds", type=int, default=3, help="seeds of each arm's refit")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--arms", default="1,2,3", help="which arms to run (1: random + policy, 2: FIFO, 3: TPE + policy)")
    args = p.parse_args()
    spec = load_study(args.study)
    spec = replace(spec, dataset=args.dataset or spec.dataset, data_root=args.data_root or spec.data_root,
                   num_samples=args.num_samples or spec.num_samples, final_seeds=args.final_seeds,
                   resources={"cpu": spec.resources.get("cpu", 1)}, pack=1)
    data = load(spec.dataset, spec.split, spec.data_root, seed=spec.seed)
    test = load(spec.dataset, "test", spec.data_root, seed=spec.seed)
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    wanted = {int(a) for a in args.arms.split(",")}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, sampler, early) in enumerate(ARMS, 1):
            if i not in wanted:
                continue
            arm = replace(spec, name=f"{spec.name}_arm{i}", audit=spec.audit if early else 0.0)
            results = f"{tmp}/arm{i}"
            print(f"{label}: searching ...", flush=True)
            start = time.time()
            store = study.run_study(arm, data, results, sampler=sampler, early_stopping=early, log=lambda _: None)
            trials = store.read("trials")
            audit = study.audit(arm, trials, data, store, log=lambda _: None) if early else store.read("audit")
            wall = time.time() - start
            best = study.best_params(store, arm.h_noise)
            final = study.final_refit(arm, best, test, store, log=lambda _: None) if best else None
            rows[label] = summary(rec.read_results(results), trials, audit, best, final, wall, arm.epochs)
    report(spec, rows, args)


def summary(r, trials, audit, best, final, wall, epochs) -> dict:
    c = rec.cost(r)
    chosen = trials[trials.trial_id == best["trial_id"]].iloc[0] if best else None
    found = wrongful(dict(zip(audit.trial_id, audit.best_val_H)), chosen.best_val_H, rec.noise(r.meta)) if best else []
    value = lambda v: v if isinstance(v, str) else round(float(v), 6)  # noqa: E731
    return {"configs": sorted(tuple(value(t[p]) for p in hyperparams.names() if p in t and t[p] == t[p])
                              for _, t in trials.iterrows()),
            "trial_epochs": int(trials.epochs_run.sum()) + int(audit.epochs_run.sum()), "full": len(trials) * epochs,
            "audit_epochs": int(audit.epochs_run.sum()), "train_s": c.train_s, "eval_s": c.eval_s, "audit_s": c.audit_s,
            "wall": wall, "counts": trials.status.value_counts().to_dict(),
            "chosen": {p: best[p] for p in hyperparams.names() if p in best} if best else None,
            "val_H": float(chosen.best_val_H) if chosen is not None else float("nan"),
            "test_H": (float(final.test_H.mean()), float(final.test_H.std())) if final is not None else (float("nan"),) * 2,
            "audited": len(audit), "found": len(found)}


def report(spec, rows: dict, args) -> None:
    print(f"\n# study {spec.name} on {spec.dataset}: {spec.num_samples} trials x {spec.epochs} epochs, "
          f"{args.num_cpus} CPUs, H every {spec.eval_every}; refit with {args.final_seeds} seeds")
    print(f"{'arm':22s} {'trial-epochs':>13s} {'train s':>8s} {'eval s':>7s} {'wall s':>7s} | chosen val H | "
          "refit test H   | audited (found) | trials")
    for label, r in rows.items():
        print(f"{label:22s} {r['trial_epochs']:5d} of {r['full']:5d} {r['train_s']:8.0f} {r['eval_s']:7.0f} "
              f"{r['wall']:7.0f} | {r['val_H']:12.2f} | {r['test_H'][0]:5.2f} ± {r['test_H'][1]:4.2f}  | "
              f"{r['audited']:7d} ({r['found']})     | {r['counts']}")
        if r["chosen"]:
            print(f"{'':22s} chosen: " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in r["chosen"].items()))
    a, f = rows.get(ARMS[0][0]), rows.get(ARMS[1][0])
    if a and f:
        same = a["configs"] == f["configs"]
        print(f"\nsame configurations in both random arms: {'yes' if same else 'NO (the comparison is not paired)'}")
        print(f"trial-epochs, policy / no stopping: {a['trial_epochs'] / f['trial_epochs']:.2f} "
              f"(audit included: {a['audit_epochs']} epochs; target <= 0.5)")
        print(f"trial-seconds, policy / no stopping: "
              f"{(a['train_s'] + a['eval_s'] + a['audit_s']) / (f['train_s'] + f['eval_s']):.2f}")
        print(f"refit test H, policy - no stopping: {a['test_H'][0] - f['test_H'][0]:+.2f} "
              f"(target: within h_noise = {spec.h_noise:g})")


if __name__ == "__main__":
    main()
