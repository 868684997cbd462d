"""Does validation H predict test H? The premise of every study, checked.

    python benchmarks/val_test_agreement.py                  # 10 configurations, synth-cub, 30 epochs
    python benchmarks/val_test_agreement.py --configs 12 --study cub_full --dataset synth-cub
    python benchmarks/val_test_agreement.py --dataset cub-sim --data-root ../shared/data/xlsa17 \
        --epochs 100 --configs 12 --with-defaults --curve-every 10     # headroom above the defaults

Draws random configurations from a study's search space (seeded), trains each with
`--split val` and with `--split test` at the same seed, and prints:
  1. the (val H, test H) pairs and their Spearman correlation (target >= 0.6);
  2. the Spearman correlation between our fast final classifier and CADA-VAE's recipe
     over the same configurations (same latents; target >= 0.8): the fast one may drive
     validation H only if it ranks configurations as the published recipe does;
  3. with --with-defaults (method.md's defaults trained as configuration 0): the headroom a study
     has, how many random configurations score a test H above the defaults' and by how much, and
     what a choice on validation H alone would have scored on test;
  4. the Spearman correlation between validation H at each evaluated epoch (every --curve-every,
     with the classifier that drives a study's validation H: the recipe) and final validation
     H: where ASHA's first rung can judge (target >= 0.7), as a fraction of the run.
Runs go one per core; each result is appended to --out as it ends, and a rerun skips
what is there (delete the file to start over).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared_runs import run_all, suffix, workers_default  # noqa: E402

from gzsl import hyperparams  # noqa: E402
from gzsl.studyfile import load_study  # noqa: E402

RECIPES = ["cada", "cada_redraw", "b256", "b1024"]


def draw_configs(study: str, n: int, seed: int) -> list[dict]:
    """n configurations drawn uniformly (log-uniform where the study says log) from its space: the
    five hyperparameters of the method; a searched `sampling` is left out (each job names the
    sampling it trains with), so the draws do not depend on it."""
    rng = np.random.default_rng(seed)
    configs = []
    for _ in range(n):
        c = {}
        for p in load_study(study).space:
            if p.name == "sampling":
                continue
            if p.choices is not None:
                c[p.name] = p.choices[rng.integers(len(p.choices))]
            elif p.log:
                c[p.name] = float(np.exp(rng.uniform(np.log(p.low), np.log(p.high))))
            else:
                c[p.name] = float(rng.uniform(p.low, p.high))
        configs.append(c)
    return configs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="cub_full", help="whose search space to draw from")
    p.add_argument("--dataset", default="synth-cub")
    p.add_argument("--configs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0, help="draws the configurations; every run trains with seed 0")
    p.add_argument("--curve", choices=("cada", "fast"), default="cada",
                   help="classifier of the validation runs' per-epoch H (cada: what studies use)")
    p.add_argument("--curve-every", type=int, default=3, help="evaluate the validation runs every n epochs")
    p.add_argument("--device", default="cpu", help="cpu, or cuda: every run on the GPU (one process per worker)")
    p.add_argument("--workers", type=int, default=workers_default(),
                   help="processes side by side; 0 runs nothing and prints what --out holds")
    p.add_argument("--recipes", action="store_true",
                   help=f"also fit {', '.join(RECIPES[1:])} on the same latents (the noise floor of the ranking, "
                        "and classifiers between the fast one and the recipe)")
    p.add_argument("--sampling", choices=("cada", "textbook"), help="default: the study's (CADA-VAE's)")
    p.add_argument("--with-defaults", action="store_true",
                   help="train method.md's defaults too, as configuration 0, and print the headroom above them")
    p.add_argument("--data-root", help="the xlsa17 folder (real datasets, attribute presets such as cub-sim)")
    p.add_argument("--out", type=Path, help="JSON-lines results (default: benchmarks/measured/agreement-<dataset>-<epochs>ep.jsonl)")
    args = p.parse_args()
    out = args.out or Path(__file__).parent / "measured" / f"agreement-{args.dataset}-{args.epochs}ep{suffix(args.device)}.jsonl"
    configs = draw_configs(args.study, args.configs, args.seed)
    if args.with_defaults:
        configs = [{k: v for k, v in hyperparams.defaults().items() if k != "sampling"}] + configs
    sampling = args.sampling or load_study(args.study).fixed.get("sampling", "cada")
    device = {} if args.device == "cpu" else {"device": args.device}
    jobs = [{"dataset": args.dataset, "split": split, **({"recipes": RECIPES} if args.recipes else {"recipe": True}),
             **({"curve": args.curve} if split == "val" else {}),
             "config": {**c, "sampling": sampling, "epochs": args.epochs,
                        "eval_every": args.curve_every if split == "val" else 0, **device}}
            for c in configs for split in ("val", "test")]
    results = run_all(jobs, out, args.workers, data_root=args.data_root)
    pairs = [(c, v, t) for c, v, t in zip(configs, results[0::2], results[1::2]) if v and t]
    has_defaults = args.with_defaults and bool(pairs) and pairs[0][0] is configs[0]
    configs, val, test = [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]

    what = f"method.md's defaults and {len(pairs) - 1} random" if has_defaults else f"{len(pairs)} random"
    print(f"\n{what} configurations of {args.study}'s space on {args.dataset}, "
          f"{args.epochs} epochs (H: fast classifier / CADA-VAE recipe)")
    print(f"{'alpha':>7} {'gamma':>7} {'lam':>7} {'latent':>6} {'lr':>9} | {'val H':>13} | {'test H':>13}")
    for i, (c, v, t) in enumerate(zip(configs, val, test)):
        mark = "  <- method.md's defaults" if has_defaults and i == 0 else ""
        print(f"{c['alpha']:7.3g} {c['gamma']:7.3g} {c['lam']:7.3g} {c['latent_size']:6d} {c['lr']:9.3g} | "
              f"{v['fast_H']:5.1f} / {v['cada_H']:5.1f} | {t['fast_H']:5.1f} / {t['cada_H']:5.1f}{mark}")
    if has_defaults:
        headroom(val, test)
    rho = lambda a, b: spearmanr(a, b).statistic  # noqa: E731
    vf, tf = [r["fast_H"] for r in val], [r["fast_H"] for r in test]
    vc, tc = [r["cada_H"] for r in val], [r["cada_H"] for r in test]
    print(f"\nSpearman val H vs test H: fast classifier {rho(vf, tf):.3f}, CADA-VAE recipe {rho(vc, tc):.3f}"
          "  (target >= 0.6)")
    print(f"Spearman fast vs CADA-VAE recipe over the configurations: val {rho(vf, vc):.3f}, test {rho(tf, tc):.3f}"
          "  (target >= 0.8)")
    extra = [name for name in RECIPES[1:] if f"{name}_H" in val[0]]
    for name in extra:
        v, t = [r[f"{name}_H"] for r in val], [r[f"{name}_H"] for r in test]
        print(f"  {name:>11} vs recipe: val {rho(v, vc):.3f}, test {rho(t, tc):.3f};"
              f" val vs test {rho(v, t):.3f}; mean H val {np.mean(v):.1f}, test {np.mean(t):.1f}")
    print(f"mean H, fast minus recipe: val {np.mean(np.subtract(vf, vc)):+.2f}, test {np.mean(np.subtract(tf, tc)):+.2f}")

    print(f"\nSpearman of validation H at epoch e with final validation H ({args.curve} classifier), "
          f"over {len(pairs)} configurations:")
    by_epoch = {e: [] for e, _ in val[0]["per_epoch"]}
    for r in val:
        for e, h in r["per_epoch"]:
            by_epoch[e].append(h)
    final = by_epoch[args.epochs]
    print("  epoch  fraction  Spearman   mean H")
    for e, hs in by_epoch.items():
        print(f"  {e:5d}  {e / args.epochs:8.2f}  {rho(hs, final):8.3f}  {np.mean(hs):7.1f}")


def headroom(val: list[dict], test: list[dict]) -> None:
    """What a study could gain over the defaults (configuration 0) in this space, and what a choice
    on validation H alone would have got (CADA-VAE's recipe, one seed per configuration)."""
    vc, tc = [r["cada_H"] for r in val], [r["cada_H"] for r in test]
    others = range(1, len(tc))
    above = sorted((tc[i] - tc[0] for i in others if tc[i] > tc[0]), reverse=True)
    best_test = max(others, key=lambda i: tc[i]) if len(tc) > 1 else 0
    chosen = max(range(len(vc)), key=lambda i: vc[i])
    print(f"\nheadroom (recipe, one seed each): defaults test H {tc[0]:.1f} (val {vc[0]:.1f});"
          f" {len(above)} of {len(tc) - 1} random configurations above them on test"
          + (f", by {', '.join(f'{d:+.1f}' for d in above)}" if above else ""))
    print(f"  the best random one on test: configuration {best_test}, test H {tc[best_test]:.1f}, val H {vc[best_test]:.1f}")
    print(f"  chosen on validation H: configuration {chosen}"
          f"{' (the defaults)' if chosen == 0 else ''}, val H {vc[chosen]:.1f}, test H {tc[chosen]:.1f}"
          f" ({tc[chosen] - tc[0]:+.1f} against the defaults)")


if __name__ == "__main__":
    main()
