"""What evaluating only where a decision needs it saves, and what the refit epoch loses by it.

    python benchmarks/eval_share.py                        # the demo study (synth-small): ~3 minutes on 2 cores
    python benchmarks/eval_share.py --study cub_full --dataset cub-sim --data-root ../shared/data/xlsa17 --configs 1

1. Measured: method.md's defaults and `--configs - 1` random configurations of the study's space,
   each trained twice one after the other on this machine, identically but for the evaluation
   schedule: CADA-VAE's recipe on every `eval_every` epoch (before) and only at the study's
   `eval_at` (the rungs, the last epoch, the peak grid: now). Prints per schedule the evaluations
   per trial, training and evaluation seconds and the evaluation's share. Checks that both runs
   trained the same (equal losses) and scored the same H where both scored.
2. Estimated for a GPU: the same schedules priced with the H200 figures of docs/benchmarks.md
   ("Fewer launches on a GPU": a captured synth-cub epoch 0.13 s, one captured recipe 1.43 s);
   a device run measures it (`--device cuda`).
3. The refit epoch on recorded curves (benchmarks/measured/curves-*.jsonl): the refit rule
   (gzsl.selection.refit_epoch) applied to each curve with H at every recorded epoch and with H
   only at eval_at plus a peak grid of `peak_every`; prints the H lost at the chosen epoch (mean,
   and for the five configurations with the highest H, those a study chooses). The dense grid's
   own choice is winner's-cursed (the argmax of a noisy curve), so the loss is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gzsl import hyperparams  # noqa: E402
from gzsl.datasets import default_hidden, load  # noqa: E402
from gzsl.selection import refit_epoch  # noqa: E402
from gzsl.selection import recipe_epochs, rung_epochs  # noqa: E402
from gzsl.study.search import search_space  # noqa: E402
from gzsl.studyfile import load_study  # noqa: E402
from gzsl.trainer import TrainConfig, train  # noqa: E402

GPU_EPOCH_S, GPU_RECIPE_S = 0.13, 1.43  # H200, synth-cub, captured (docs/benchmarks.md)
MEASURED = Path(__file__).parent / "measured"


def configs(spec, n: int) -> list[dict]:
    """method.md's defaults, then n - 1 draws of Optuna's seeded random sampler over the space."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.seed))
    out = [dict(spec.start[0][1])]
    for _ in range(n - 1):
        t = study.ask(search_space(spec))
        out.append(t.params)
        study.tell(t, 0.0)
    return out


def run(data, cfg: TrainConfig) -> dict:
    rs = list(train(data, cfg))
    evaluated = [r for r in rs if r.scores is not None]
    return {"losses": [r.losses for r in rs], "H": {r.epoch: r.scores.H for r in evaluated},
            "evals": len(evaluated), "eval_s": sum(r.eval_seconds for r in rs),
            "train_s": sum(r.seconds - r.eval_seconds for r in rs)}


def measure(spec, args) -> None:
    data = load(spec.dataset, spec.split, spec.data_root, seed=spec.seed)
    torch.set_num_threads(args.threads)
    print(f"1. measured: {spec.dataset}, {spec.epochs} epochs, grid every {spec.eval_every}, eval_at {list(spec.eval_at)}, "
          f"{args.device}, {args.threads} threads")
    totals = {"every eval_every": [0, 0.0, 0.0], "eval_at": [0, 0.0, 0.0]}
    for i, params in enumerate(configs(spec, args.configs)):
        base = TrainConfig(**{**spec.fixed, **hyperparams.cast(params)}, epochs=spec.epochs, batch_size=spec.batch_size,
                           eval_every=spec.eval_every, seed=spec.seed, hidden=spec.hidden or default_hidden(spec.dataset),
                           device=args.device)
        before, now = run(data, base), run(data, replace(base, eval_at=spec.eval_at))
        same_training = before["losses"] == now["losses"]
        same_h = all(before["H"][e] == h for e, h in now["H"].items())
        print(f"  config {i}: {params}\n    before: {before['evals']} evaluations, train {before['train_s']:.1f} s, "
              f"eval {before['eval_s']:.1f} s | now: {now['evals']} evaluations, train {now['train_s']:.1f} s, "
              f"eval {now['eval_s']:.1f} s | same training: {same_training}, same H where both scored: {same_h}")
        for name, r in (("every eval_every", before), ("eval_at", now)):
            totals[name][0] += r["evals"]
            totals[name][1] += r["train_s"]
            totals[name][2] += r["eval_s"]
    print("  | schedule | evaluations per trial | training s | evaluation s | evaluation's share |")
    for name, (evals, train_s, eval_s) in totals.items():
        print(f"  | {name} | {evals / args.configs:.1f} | {train_s:.1f} | {eval_s:.1f} | {eval_s / (train_s + eval_s):.0%} |")
    b, n = totals["every eval_every"], totals["eval_at"]
    print(f"  trial-seconds now / before: {(n[1] + n[2]) / (b[1] + b[2]):.2f}")


def estimate(spec) -> None:
    grid = len(set(range(spec.eval_every, spec.epochs + 1, spec.eval_every)) | {spec.epochs})
    print(f"2. estimated on a GPU (H200 figures: epoch {GPU_EPOCH_S} s, recipe {GPU_RECIPE_S} s), {spec.epochs} epochs:")
    for name, n in (("every eval_every", grid), ("eval_at", len(spec.eval_at))):
        share = n * GPU_RECIPE_S / (spec.epochs * GPU_EPOCH_S + n * GPU_RECIPE_S)
        print(f"  {name}: {n} evaluations, evaluation's share {share:.0%}")


def rule_on_curves(files: list[Path], h_noise: float, reduction_factor: int) -> None:
    print("3. the refit epoch on recorded curves: H lost at the refit rule's epoch against H at every recorded epoch")
    print("  | curves | peak_every | evaluations per trial | mean loss | top five's losses | max loss |")
    for f in files:
        curves = [json.loads(line)["curve"] for line in f.read_text().splitlines() if line.strip()]
        epochs, every = curves[0][-1][0], curves[0][1][0] - curves[0][0][0]
        rungs = rung_epochs(epochs, every, reduction_factor)
        chosen = lambda c, pts: {e: h for e, h in c}[_refit(c, pts, h_noise)]  # noqa: E731
        dense = [chosen(c, {e for e, _ in c}) for c in curves]
        top = sorted(range(len(curves)), key=lambda i: -max(h for _, h in curves[i]))[:5]
        for peak_every in sorted({0, 2 * every, 4 * every, every}):
            pts = set(recipe_epochs(epochs, every, rungs, peak_every))
            loss = [d - chosen(c, pts) for d, c in zip(dense, curves)]
            print(f"  | {f.name} | {peak_every} | {len(pts)} of {len(curves[0])} | {sum(loss) / len(loss):.2f} | "
                  f"{', '.join(f'{loss[i]:.1f}' for i in top)} | {max(loss):.1f} |")


def _refit(curve, points: set[int], h_noise: float) -> int:
    seen = [(e, h) for e, h in curve if e in points]
    best = max(seen, key=lambda p: (p[1], -p[0]))
    trial = {"best_epoch": best[0], "best_val_H": best[1], "epochs_run": seen[-1][0], "last_val_H": seen[-1][1]}
    return refit_epoch(trial, h_noise)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="demo")
    p.add_argument("--dataset", help="default: the study's (cub-sim needs --data-root)")
    p.add_argument("--data-root")
    p.add_argument("--configs", type=int, default=3, help="configurations measured (the defaults first)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--curves", nargs="*", type=Path, help="default: benchmarks/measured/curves-*.jsonl")
    p.add_argument("--skip-measure", action="store_true", help="only the estimate and the recorded curves")
    args = p.parse_args()
    spec = load_study(args.study)
    spec = replace(spec, dataset=args.dataset or spec.dataset, data_root=args.data_root or spec.data_root)
    if not args.skip_measure:
        measure(spec, args)
    estimate(spec)
    rule_on_curves(args.curves or sorted(MEASURED.glob("curves-*.jsonl")), spec.h_noise, spec.reduction_factor)


if __name__ == "__main__":
    main()
