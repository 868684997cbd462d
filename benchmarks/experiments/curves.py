"""Learning curves: validation H by epoch at method.md's defaults, and how far a shorter run gets.

    python benchmarks/experiments/curves.py --dataset cub-sim --data-root ../shared/data/xlsa17    # ~1.5 + 0.5 min on a core
    python benchmarks/experiments/curves.py --dataset cub-sim --dataset synth-cub --workers 0       # the table only

Per dataset, on the validation split with method.md's defaults (CADA-VAE's sampling and classifier
recipe), seed 0: validation H every `--every` epochs of a `--epochs`-epoch run, and the final H
of runs of `--short` epochs (their warm-ups follow their own length, as a study's shorter trial
would). A slow curve stays near 0 for the first epochs, keeps rising to the end, and a short run
ends far below the long one: H early in the run then says little about the final H.

Runs are appended to benchmarks/measured/curve-<dataset>-val.jsonl and a rerun trains only what
is missing. Where peak_epoch.py has already measured the default's curve
(benchmarks/measured/peak-<dataset>-<epochs>ep.jsonl, e.g. synth-cub's, H every 10 epochs, 30 min
a run on a core), that curve is used instead of training it again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared_runs

from shared_runs import run_all, with_data_id, workers_default  # noqa: E402

from gzsl.trainer import TrainConfig  # noqa: E402

MEASURED = Path(__file__).parent / "measured"
DEFAULT = {k: getattr(TrainConfig, k) for k in ("alpha", "gamma", "lam", "latent_size", "lr")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", action="append", help="repeatable (default: cub-sim)")
    p.add_argument("--data-root", help="the xlsa17 folder (cub-sim reads CUB/att_splits.mat)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--every", type=int, default=5, help="validation H every n epochs")
    p.add_argument("--short", type=int, nargs="*", default=[30], help="lengths of the shorter runs")
    p.add_argument("--workers", type=int, default=min(2, workers_default()),
                   help="processes side by side; 0 runs nothing and prints what the files hold")
    args = p.parse_args()
    curves, short = {}, {}
    for dataset in args.dataset or ["cub-sim"]:
        out = MEASURED / f"curve-{dataset}-val.jsonl"
        reused = reused_curve(dataset, args.epochs)
        jobs = [job(dataset, n, args.every) for n in ([] if reused else [args.epochs]) + args.short]
        results = run_all(jobs, out, args.workers, data_root=args.data_root)
        by_epochs = {j["config"]["epochs"]: r for j, r in zip(jobs, results) if r is not None}
        curves[dataset] = reused or (by_epochs[args.epochs]["per_epoch"] if args.epochs in by_epochs else None)
        short[dataset] = {n: by_epochs[n]["per_epoch"][-1][1] for n in args.short if n in by_epochs}

    epochs = sorted({e for c in curves.values() if c for e, _ in c})
    print(f"\nvalidation H by epoch, {args.epochs}-epoch runs, method.md's defaults, seed 0")
    print(f"{'epoch':>5} " + " ".join(f"{d:>10}" for d in curves))
    for e in epochs:
        cells = []
        for c in curves.values():
            h = dict(c or []).get(e)
            cells.append(f"{h:10.1f}" if h is not None else f"{'':>10}")
        print(f"{e:5d} " + " ".join(cells))
    for n in args.short:
        print(f"{f'a {n}-epoch run, last H':>22}: " + ", ".join(
            f"{d} {short[d][n]:.1f}" if n in short[d] else f"{d} (not run)" for d in curves))


def job(dataset: str, epochs: int, every: int) -> dict:
    return {"dataset": dataset, "split": "val", "curve": "cada",
            "config": {**DEFAULT, "sampling": "cada", "seed": 0, "epochs": epochs, "eval_every": every}}


def reused_curve(dataset: str, epochs: int) -> list | None:
    """The default's validation curve from peak_epoch.py's results, when they hold it for the
    dataset as it is now (same preset fingerprint)."""
    path = MEASURED / f"peak-{dataset}-{epochs}ep.jsonl"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        r = json.loads(line)
        c = r["job"]["config"]
        if ({k: c.get(k) for k in DEFAULT} == DEFAULT and c.get("sampling") == "cada" and c.get("seed", 0) == 0
                and r["job"].get("data_id") == with_data_id({"dataset": dataset}).get("data_id")):
            return r["per_epoch"]
    return None


if __name__ == "__main__":
    main()
