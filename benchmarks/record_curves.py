"""Record full validation learning curves for the replayer (benchmarks/replay.py).

    python benchmarks/record_curves.py --dataset cub-sim --data-root ../shared/data/xlsa17 --configs 24
    python benchmarks/record_curves.py --dataset cub-sim --data-root ../shared/data/xlsa17 --configs 24 \
        --val-split 1 --seed 1                       # another set of validation classes, other draws
    python benchmarks/record_curves.py --convert benchmarks/measured/peak-synth-small-30ep.jsonl

Trains method.md's defaults and `--configs` random configurations of a study's space (seeded draws,
`val_test_agreement.draw_configs`) on the validation split only, `--epochs` each, scoring validation
H with CADA-VAE's recipe (what a study's rungs judge on) every `--every` epochs, one process per
core. Each run is appended to a runs file as it ends (`benchmarks/measured/runs/`, a rerun skips
what is there); then every finished run is written as one line of the replayer's format
(`gzsl.selection.Curve`, documented in benchmarks/replay.py) to `--out`. `--convert FILE` only
rewrites a runs file that other benchmarks recorded (peak_epoch.py, val_test_agreement.py: their
validation runs) in that format.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared_runs import run_all, workers_default  # noqa: E402
from val_test_agreement import draw_configs  # noqa: E402

from gzsl import hyperparams  # noqa: E402
from gzsl.studyfile import load_study  # noqa: E402

MEASURED = Path(__file__).parent / "measured"


def as_curve(run: dict) -> dict:
    """One runs-file line (gzsl's benchmarks/shared_runs.py) as one replayer line."""
    job = run["job"]
    params = {k: job["config"][k] for k in hyperparams.names() if k in job["config"]}
    return {"params": params, "curve": [[int(e), round(float(h), 3)] for e, h in run["per_epoch"]],
            "dataset": job["dataset"], "val_split": job.get("val_split", 0), "seed": job["config"].get("seed", 0),
            "seconds": round(run["seconds"], 1)}


def write_curves(runs: list[dict], out: Path) -> int:
    lines = [json.dumps(as_curve(r)) for r in runs if r and r["job"]["split"] == "val" and r["per_epoch"]]
    out.write_text("".join(line + "\n" for line in lines))
    return len(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--convert", type=Path, help="only rewrite this runs file in the replayer's format")
    p.add_argument("--study", default="cub_full", help="whose search space to draw from, and its sampling")
    p.add_argument("--dataset", default="cub-sim")
    p.add_argument("--data-root", help="the xlsa17 folder (cub-sim reads CUB/att_splits.mat there)")
    p.add_argument("--configs", type=int, default=24, help="random configurations beside method.md's defaults")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--every", type=int, default=5, help="validation H every n epochs (and at the last)")
    p.add_argument("--val-split", type=int, default=0, help="the validation classes (gzsl.data.build's val_split)")
    p.add_argument("--seed", type=int, default=0, help="draws the configurations; every run trains with seed 0")
    p.add_argument("--workers", type=int, default=workers_default(),
                   help="processes side by side; 0 runs nothing and converts what the runs file holds")
    p.add_argument("--out", type=Path, help="default: benchmarks/measured/curves-<dataset>-<epochs>ep-val<k>.jsonl")
    args = p.parse_args()
    if args.convert:
        out = args.out or MEASURED / f"curves-{args.convert.stem.split('-', 1)[1]}.jsonl"
        runs = [json.loads(line) for line in args.convert.read_text().splitlines()]
        print(f"{write_curves(runs, out)} curves written to {out}")
        return
    name = f"{args.dataset}-{args.epochs}ep-val{args.val_split}"
    out = args.out or MEASURED / f"curves-{name}.jsonl"
    defaults = {k: v for k, v in hyperparams.defaults().items() if k != "sampling"}
    sampling = load_study(args.study).fixed.get("sampling", "cada")
    configs = [defaults] + draw_configs(args.study, args.configs, args.seed)
    jobs = [{"dataset": args.dataset, "split": "val", "curve": "cada", "val_split": args.val_split,
             "config": {**c, "sampling": sampling, "epochs": args.epochs, "eval_every": args.every}}
            for c in configs]
    runs = run_all(jobs, MEASURED / "runs" / f"{name}.jsonl", args.workers, data_root=args.data_root)
    print(f"{write_curves(runs, out)} curves written to {out}")


if __name__ == "__main__":
    main()
