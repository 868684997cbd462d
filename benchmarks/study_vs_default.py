"""Does a study beat its defaults? A benchmark that can fail.

    python benchmarks/study_vs_default.py --data-root ../shared/data/xlsa17      # synth-small (3 draws) and cub-sim, 2-core CPU
    python benchmarks/study_vs_default.py --presets synth-small --trials 12      # one preset
    python benchmarks/study_vs_default.py --device cuda --workers 8 --data-root ...   # on a GPU machine

For each preset, at the same schedule (method.md's 100 epochs, the shipped studies' length: the
warm-ups are fractions of the run, so a shortened run is not a prefix of a full one):

  defaults  method.md's configuration alone, trained on trainval with the refit's seeds (seed + 1000,
            ...) for the whole schedule and scored once on test at its last epoch, as
            `python -m gzsl.train --split test` does;
  study     `python -m gzsl.tune` on a study of --trials trials (cub_full's space, TPE + ASHA with its
            shipped rules, its first trial the defaults), refit on the same seeds, scored on test.

Both are scored with CADA-VAE's classifier recipe, last classifier epoch. The table gives test
U/S/H (mean ± std over seeds) side by side and two verdicts per preset: the study at least ties the
defaults (its mean H is not below theirs by more than the seed noise), and the study is ahead by
more than the seed noise (the difference of the means exceeds twice its standard error). A preset run
on several draws (synth-small, synth-small@1, ...: other classes in every split) gets the same two
verdicts on the mean over its draws: synth-small has 8 test-unseen classes, and which 8 were drawn
moves test H more than seeds or configurations do. Each run's
numbers are kept under --work (a rerun reuses finished runs) and the table is appended to
benchmarks/measured/study-vs-default[-cuda].txt.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDY = """# written by benchmarks/study_vs_default.py
[study]
dataset = "{dataset}"
{data_root}
seed = 0

[training]
epochs = {epochs}
batch_size = 50
eval_every = 5
sampling = "cada"

[search]
num_samples = {trials}
final_seeds = {seeds}
max_failures = 1

[resources]
cpu = 1
{gpu}

[space]                # cub_full's: log-uniform around method.md's defaults
alpha = {{ low = 0.1, high = 10.0 }}
gamma = {{ low = 0.1, high = 10.0 }}
lam = {{ low = 0.5, high = 10.0 }}
latent_size = {{ choices = [16, 32, 64, 128] }}
lr = {{ low = 5e-5, high = 1e-3 }}
"""


def defaults_job(job: dict) -> dict:
    """method.md's defaults on trainval, scored once on test at the last epoch (recipe and fast)."""
    import torch

    from gzsl.datasets import load
    from gzsl.evaluation import FAST_CLASSIFIER
    from gzsl.datasets import default_hidden
    from gzsl.trainer import MAIN, TrainConfig, train

    torch.set_num_threads(1)  # one process per core
    cfg = TrainConfig(epochs=job["epochs"], eval_every=0, classifier="cada", seed=job["seed"],
                      hidden=default_hidden(job["dataset"]), device=job["device"])
    data = load(job["dataset"], "test", job["data_root"], seed=0)
    start, last = time.perf_counter(), None
    for last in train(data.to(job["device"]) if job["device"] != "cpu" else data, cfg,
                      recipes={"fast": FAST_CLASSIFIER}):
        pass
    cada, fast = last.recipe_scores[MAIN], last.recipe_scores["fast"]
    return {**job, "test_U": cada.U, "test_S": cada.S, "test_H": cada.H, "fast_test_H": fast.H,
            "status": last.status, "seconds": time.perf_counter() - start}


def run_defaults(preset: str, args, work: Path) -> pd.DataFrame:
    out = work / "defaults.jsonl"
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    jobs = [{"dataset": preset, "data_root": args.data_root, "epochs": args.epochs, "seed": 1000 + i,
             "device": args.device} for i in range(args.seeds)]
    todo = [j for j in jobs if not any(all(d.get(k) == v for k, v in j.items()) for d in done)]
    print(f"[{preset}] defaults alone: {len(jobs) - len(todo)} of {len(jobs)} seeds already in {out}", flush=True)
    if todo:
        with mp.get_context("spawn").Pool(min(args.workers, len(todo))) as pool, out.open("a") as f:
            for r in pool.imap_unordered(defaults_job, todo):
                f.write(json.dumps(r) + "\n")
                f.flush()
                done.append(r)
                print(f"[{preset}] defaults seed {r['seed']}: test U {r['test_U']:.2f} S {r['test_S']:.2f} "
                      f"H {r['test_H']:.2f} in {r['seconds']:.0f}s", flush=True)
    rows = [d for d in done if any(all(d.get(k) == v for k, v in j.items()) for j in jobs)]
    return pd.DataFrame(rows)


def run_study(preset: str, args, work: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, float]:
    results = work / "study"
    final = results / "final.parquet"
    if final.exists() and len(pd.read_parquet(final)) >= args.seeds:
        print(f"[{preset}] study: already run in {results}", flush=True)
    else:
        gpu = f"gpu = {1 / args.workers:.4g}" if args.device == "cuda" else ""
        root = f'data_root = "{os.path.abspath(args.data_root)}"' if args.data_root else ""
        study = work / f"vs_{preset.replace('-', '_').replace('@', '_draw')}.toml"
        study.write_text(STUDY.format(dataset=preset, data_root=root, epochs=args.epochs, trials=args.trials,
                                      seeds=args.seeds, gpu=gpu))
        resume = ["--resume"] if (results / "tune").exists() else []
        cmd = [sys.executable, "-m", "gzsl.tune", "--study", str(study), "--results", str(results),
               "--num-cpus", str(args.workers), "--no-report", "--no-dashboard", *resume]
        print(f"[{preset}] study: {' '.join(cmd)}", flush=True)
        start = time.time()
        with (work / "study.log").open("a") as log:
            p = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        print(f"[{preset}] study: exit {p.returncode} after {time.time() - start:.0f}s (log: {work / 'study.log'})",
              flush=True)
        if p.returncode != 0:
            raise SystemExit(f"[{preset}] the study failed; see {work / 'study.log'}")
    trials = pd.read_parquet(results / "trials.parquet")
    wall = (trials.ended_at.max() - trials.started_at.min()).total_seconds()
    confirm = pd.read_parquet(results / "confirm.parquet") if (results / "confirm.parquet").exists() else pd.DataFrame()
    return trials, confirm, pd.read_parquet(final), wall


H_NOISE = 2.0  # the generated study's asha.h_noise (StudySpec's default): a finalist's margin over the defaults


def mean_std(x: pd.Series) -> str:
    return f"{x.mean():.1f} ± {x.std(ddof=1) if len(x) > 1 else 0.0:.1f}"


def table(preset: str, defaults: pd.DataFrame, trials: pd.DataFrame, confirm: pd.DataFrame, final: pd.DataFrame,
          wall: float) -> tuple[list[str], float, float]:
    from gzsl.selection import best_trial, confirmed

    d, s = defaults.sort_values("seed"), final.sort_values("seed")
    lines = [f"### {preset}", "", "| run | seeds | test U | test S | test H | H per seed |", "| --- | --- | --- | --- | --- | --- |"]
    for name, f in (("defaults alone (method.md)", d), ("study, refit of its choice", s)):
        lines.append(f"| {name} | {len(f)} | {mean_std(f.test_U)} | {mean_std(f.test_S)} | **{mean_std(f.test_H)}** | "
                     + ", ".join(f"{h:.1f}" for h in f.test_H) + " |")
    diff = s.test_H.mean() - d.test_H.mean()
    se = math.sqrt(d.test_H.var(ddof=1) / len(d) + s.test_H.var(ddof=1) / len(s)) if min(len(d), len(s)) > 1 else 0.0
    noise = max(d.test_H.std(ddof=1), s.test_H.std(ddof=1)) if min(len(d), len(s)) > 1 else 0.0
    dflt = trials[trials.get("start", pd.Series("", index=trials.index)) == "defaults"]
    pick, means = confirmed(trials, confirm, H_NOISE)  # the study's own choice (gzsl.results)
    search_best = best_trial(trials)
    params = ("alpha", "gamma", "lam", "latent_size", "lr")
    lines += ["", f"- study: {len(trials)} trials ({', '.join(f'{k} {v}' for k, v in trials.status.value_counts().items())}), "
              f"{int(trials.epochs_run.sum())} of {len(trials) * int(trials.epochs_run.max())} trial-epochs trained, "
              f"{wall / 60:.1f} min of search"]
    if len(dflt):
        lines.append(f"- validation H: defaults {dflt.best_val_H.iloc[0]:.2f} ({dflt.status.iloc[0]}), chosen "
                     f"{pick['best_val_H']:.2f} (trial {int(pick['trial_number'])}"
                     f"{', the defaults' if pick['trial_id'] == dflt.trial_id.iloc[0] else ''}: "
                     + " ".join(f"{k}={pick[k]:.3g}" for k in params) + f", best epoch {int(pick['best_epoch'])}"
                     + (f", refit to epoch {int(s.scored_epoch.iloc[0])}" if "scored_epoch" in s else "") + ")")
    if means:
        shown = ", ".join(f"trial {int(trials.set_index('trial_id').trial_number[t])}"
                          + (" (defaults)" if len(dflt) and t == dflt.trial_id.iloc[0] else "")
                          + (" (search's best)" if t == search_best["trial_id"] else "") + f" {h:.2f}"
                          for t, h in sorted(means.items(), key=lambda x: -x[1]))
        lines.append(f"- fresh validation splits ({confirm.val_split.nunique()}), mean H of each finalist: {shown}")
    lines.append(f"- test H, study - defaults: {diff:+.1f} (standard error {se:.1f}; seed noise, the larger std, {noise:.1f})")
    lines.append(f"- {'PASS' if diff >= -noise else 'FAIL'}: the study at least ties the defaults")
    lines.append(f"- {'PASS' if diff > 2 * se and diff > noise else 'FAIL'}: the study is ahead by more than the seed noise")
    return lines, diff, noise


def over_draws(diffs: dict[str, tuple[float, float]]) -> list[str]:
    """A section per preset run on several draws (synth-small, synth-small@1, ...): the mean of study - defaults.

    A draw is the same preset generated with another seed: other classes in each split. Where a split has
    few classes (synth-small: 8 test-unseen), which classes were drawn moves test H by more than the seeds do,
    and a study cannot see the test classes; the mean over draws is what a choice made on validation can
    be held to, with the verdicts of one draw: it ties when not below by more than the seed noise (the
    draws' mean), it is ahead when above by more than twice the standard error over draws.
    """
    by_base: dict[str, list[tuple[float, float]]] = {}
    for preset, diff_noise in diffs.items():
        by_base.setdefault(preset.split("@")[0], []).append(diff_noise)
    lines = []
    for base, runs in by_base.items():
        if len(runs) < 2:
            continue
        d, noise = [r[0] for r in runs], sum(r[1] for r in runs) / len(runs)
        mean, se = statistics.mean(d), statistics.stdev(d) / math.sqrt(len(d))
        lines += [f"### {base}, over {len(d)} draws", "",
                  f"- test H, study - defaults, per draw: {', '.join(f'{x:+.1f}' for x in d)}; mean {mean:+.1f} "
                  f"(standard error over draws {se:.1f}; seed noise, the draws' mean, {noise:.1f})",
                  f"- {'PASS' if mean >= -noise else 'FAIL'}: over draws, the study at least ties the defaults",
                  f"- {'PASS' if mean > 2 * se and mean > noise else 'FAIL'}: over draws, the study is ahead", ""]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--presets", nargs="+", default=["synth-small", "synth-small@1", "synth-small@2", "cub-sim"],
                   help="presets, a draw as synth-small@N (default: synth-small on 3 draws, and cub-sim)")
    p.add_argument("--data-root", help="the xlsa17 folder holding CUB/att_splits.mat (cub-sim's attributes)")
    p.add_argument("--trials", type=int, default=16, help="trials per study")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the defaults and of the study's refit")
    p.add_argument("--epochs", type=int, default=100, help="the schedule of every run (method.md's 100)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                   help="processes side by side (CPU cores; on cuda, trials share the GPU 1/workers each)")
    p.add_argument("--work", type=Path, default=ROOT / "results" / "study-vs-default",
                   help="where the runs are kept (a rerun reuses them)")
    args = p.parse_args()
    if "cub-sim" in args.presets and not args.data_root:
        p.error("cub-sim needs --data-root: the xlsa17 folder holding CUB/att_splits.mat")
    sections, diffs, start = [], {}, time.time()
    for preset in args.presets:
        work = args.work / f"{preset}-{args.epochs}ep-{args.trials}t{'-cuda' if args.device == 'cuda' else ''}"
        work.mkdir(parents=True, exist_ok=True)
        defaults = run_defaults(preset, args, work)
        trials, confirm, final, wall = run_study(preset, args, work)
        lines, *diffs[preset] = table(preset, defaults, trials, confirm, final, wall)
        sections += lines + [""]
    sections += over_draws(diffs)
    header = [f"## study vs defaults: {args.epochs} epochs, {args.trials} trials, {args.seeds} seeds, {args.device}, "
              f"{args.workers} workers ({time.strftime('%Y-%m-%d')}, {time.time() - start:.0f}s)", "",
              f"`python benchmarks/study_vs_default.py --presets {' '.join(args.presets)} --trials {args.trials} "
              f"--device {args.device} --workers {args.workers}`", ""]
    text = "\n".join(header + sections)
    print(text)
    measured = ROOT / "benchmarks" / "measured" / f"study-vs-default{'-cuda' if args.device == 'cuda' else ''}.txt"
    with measured.open("a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
