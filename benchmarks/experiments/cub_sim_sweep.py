"""How cub-sim's generator settings were chosen: settings that set its difficulty, each measured
for the behaviour the preset must show.

    python benchmarks/experiments/cub_sim_sweep.py --data-root ../shared/data/xlsa17 --workers 2   # 4 runs per setting
    python benchmarks/experiments/cub_sim_sweep.py --data-root ../shared/data/xlsa17 --workers 0   # the table only

The settings varied, one at a time around the preset's:
  - gain_spread: the per-image gain's heavy tail, which after the MinMax scaling leaves most values
    near 0 (ResNet features' scaled mean is about 0.05);
  - nuisance_scale: the class-independent nuisance (pose, background) that dominates the raw
    features and that z^p should absorb;
  - within_class: per-image jitter of the class factors, which sets how separable the seen classes
    are (S);
  - feature_tail, active_share: other ways to put most scaled values near 0 (a heavy tail per
    feature; features the image does not excite);
  - described_dim / undescribed_dim: the share of a class's look the attributes describe (U);
  - hidden: CUB's widths instead of the preset's.
Per setting, with method.md's defaults and seed 0: validation H every 5 epochs over 100 epochs
(slow start? still rising?), and on the test split at 100 epochs the Disentangled-VAE, its
ablation (--no-disentangle) and KL weight 1. Results go to
benchmarks/measured/cub-sim-sweep.jsonl (a rerun trains only what is missing). About 5 minutes a
setting on one core.

The first grid, which chose the preset's neighbourhood (nuisance x jitter at a per-image gain of
0.5 and 40 images a class, on the 16 CPU cores of a lent GPU machine, before validation epochs
drew trainval's image count), is benchmarks/measured/cub-sim-sweep-explore-h200-cpu.jsonl; its
table and the runs after it are in docs/benchmarks.md ("cub-sim").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared_runs

from shared_runs import run_all, workers_default  # noqa: E402

SETTINGS = [  # overrides of the preset's settings (gzsl.synthetic.ATTRIBUTE_PRESETS["cub-sim"]); {} is the preset
    {},
    {"gain_spread": 0.5},  # a heavier per-image gain: scaled features nearer 0
    {"nuisance_scale": 2.0},
    {"nuisance_scale": 2.5},
    {"within_class": 1.0},
    {"within_class": 0.5},
    {"feature_tail": 0.8},  # a heavy tail per feature
    {"active_share": 0.25},  # a quarter of the features respond to the image, the others are mostly 0
    {"described_dim": 16, "undescribed_dim": 16},
    {"hidden": [1560, 1660, 1450, 665]},  # CUB's widths: a step costs 3 times as much
]
RUNS = {  # name -> (split, TrainConfig overrides, curve classifier)
    "val curve": ("val", {"eval_every": 5}, "cada"),
    "default": ("test", {"eval_every": 0}, "cada"),
    "ablation": ("test", {"eval_every": 0, "disentangle": False}, "cada"),
    "KL weight 1": ("test", {"eval_every": 0, "kl_weight": 1.0}, "cada"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="the xlsa17 folder (holding CUB/att_splits.mat)")
    p.add_argument("--workers", type=int, default=workers_default(),
                   help="processes side by side; 0 runs nothing and prints what --out holds")
    p.add_argument("--only", type=int, nargs="*", help="run only these settings (their row numbers)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--runs", nargs="*", choices=RUNS, default=list(RUNS), help="which runs per setting")
    p.add_argument("--extra", action="append", default=[], metavar="K=V,K=V",
                   help="a further setting beside the grid (e.g. noise=1.2,images_per_class=30)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "measured" / "cub-sim-sweep.jsonl")
    args = p.parse_args()
    extra = [{k: _value(v) for k, v in (kv.split("=") for kv in e.split(","))} for e in args.extra]
    grid = SETTINGS + extra
    chosen = [grid[i] for i in args.only] if args.only is not None else grid
    jobs = [{"dataset": "cub-sim", "split": RUNS[r][0], "curve": RUNS[r][2], "recipe": True, "preset": s,
             "config": {"sampling": "cada", "seed": 0, "epochs": args.epochs, **RUNS[r][1]}}
            for s in chosen for r in args.runs]
    results = run_all(jobs, args.out, args.workers, data_root=args.data_root)
    by = {}
    for j, r in zip(jobs, results):
        if r is not None:
            by[(_key(j["preset"]), _run_name(j))] = r
    print(f"\ncub-sim generator sweep, method.md's defaults, seed 0: validation H by epoch (U/S at the last); "
          f"test U/S/H at {args.epochs} epochs; the ablation's and KL weight 1's test H; seconds of the val run")
    print(f"{'#':>2} {'setting':58s} | {'vH10':>5} {'vH15':>5} {'vH30':>5} {'vH50':>5} {'vHend':>5} "
          f"{'vU':>5} {'vS':>5} | "
          f"{'U':>5} {'S':>5} {'H':>5} | {'abl':>5} {'KL1':>5} | {'sec':>4}")
    for i, s in enumerate(grid):
        k = _key(s)
        v = by.get((k, "val curve"), {})
        curve = dict((e, h) for e, h in v.get("per_epoch", []))
        us = v.get("per_epoch_us", [])
        d, a, kl = by.get((k, "default")), by.get((k, "ablation")), by.get((k, "KL weight 1"))
        cells = [f"{curve[e]:5.1f}" if e in curve else f"{'':5}" for e in (10, 15, 30, 50, args.epochs)]
        cells += [f"{us[-1][1]:5.1f}", f"{us[-1][2]:5.1f}"] if us else [f"{'':5}"] * 2
        test = [f"{d[f'cada_{m}']:5.1f}" if d else f"{'':5}" for m in "USH"]
        other = [f"{r['cada_H']:5.1f}" if r else f"{'':5}" for r in (a, kl)]
        sec = f"{v['seconds']:4.0f}" if v else f"{'':4}"
        print(f"{i:2d} {_describe(s):58s} | {' '.join(cells)} | {' '.join(test)} | {' '.join(other)} | {sec}")


def _run_name(job: dict) -> str:
    for name, (split, overrides, _) in RUNS.items():
        varied = {k: v for k, v in job["config"].items() if k not in ("sampling", "seed", "epochs")}
        if job["split"] == split and varied == overrides:
            return name
    return "?"


def _key(s: dict) -> str:
    return repr(sorted(s.items()))


def _describe(s: dict) -> str:
    short = {"nuisance_scale": "nuis", "within_class": "within", "described_dim": "desc", "undescribed_dim": "undesc",
             "images_per_class": "ipc", "n_classes": "classes", "gain_spread": "gain"}
    text = lambda v: "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
    return " ".join(f"{short.get(k, k)}={text(v)}" for k, v in s.items()) or "(the preset)"


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "x" in text:  # hidden widths: 512x512x256x128
        return [int(t) for t in text.split("x")]
    return text


if __name__ == "__main__":
    main()
