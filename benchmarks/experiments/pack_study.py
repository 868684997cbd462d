"""The demo study with and without packing, side by side: same best H, same result files?

    python benchmarks/experiments/pack_study.py                      # demo with pack = 1, 2 and 32: about 12 minutes on 2 cores
    python benchmarks/experiments/pack_study.py --packs 4 --study synth_cub --num-samples 8

Runs `python -m gzsl.tune` on copies of the study, without packing and with each [resources]
pack (max_concurrent scaled by it, so every run uses the same workers), then prints, per run, the
best validation H, the refit's test H, trials by status, trial-epochs and wall time, and
whether trials.parquet, epochs.parquet and final.parquet have the same columns as without packing.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared_runs

from gzsl.studyfile import load_study  # noqa: E402


def variant(study: str, pack: int, folder: Path) -> Path:
    spec = load_study(study)
    text = spec.path.read_text()
    if pack > 1:
        text = re.sub(r"^\[resources\].*$", lambda m: m.group(0) + f"\npack = {pack}", text, count=1, flags=re.M)
        text = re.sub(r"^max_concurrent = (\d+)", lambda m: f"max_concurrent = {int(m.group(1)) * pack}", text,
                      count=1, flags=re.M)
    path = folder / f"{spec.name}_pack{pack}.toml"
    path.write_text(text)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="demo")
    p.add_argument("--packs", type=int, nargs="+", default=[2, 32])
    p.add_argument("--num-samples", type=int)
    p.add_argument("--keep", type=Path, help="keep each run's results in KEEP/results<pack> (default: a temporary folder)")
    args = p.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = args.keep
        for pack in dict.fromkeys((1, *args.packs)):  # pack 1 (no packing) first, once
            results = tmp / f"results{pack}"
            cmd = [sys.executable, "-m", "gzsl.tune", "--study", str(variant(args.study, pack, tmp)),
                   "--results", str(results), "--no-report", "--no-dashboard"]
            cmd += ["--num-samples", str(args.num_samples)] if args.num_samples else []
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"pack {pack}: gzsl.tune failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            runs[pack] = {"seconds": time.perf_counter() - start,
                          **{t: pd.read_parquet(results / f"{t}.parquet") for t in ("trials", "epochs", "final")}}
            print(f"pack {pack}: done in {runs[pack]['seconds']:.0f}s", flush=True)
    print(f"\n{args.study}: without packing (pack 1) and with pack {', '.join(map(str, args.packs))}")
    print(f"{'pack':>4} {'best val H':>10} {'test H (recipe)':>16} {'completed':>9} {'pruned':>6} "
          f"{'trial-epochs':>12} {'seconds':>7}")
    for pack, r in runs.items():
        t, f = r["trials"], r["final"]
        done = t[t.status == "completed"]
        print(f"{pack:4d} {done.last_val_H.max():10.2f} {f.test_H.mean():9.2f} ± {f.test_H.std():4.1f} "
              f"{len(done):9d} {(t.status == 'pruned').sum():6d} {t.epochs_run.sum():12d} {r['seconds']:7.0f}")
    for pack in [p for p in runs if p != 1]:
        same = [t for t in ("trials", "epochs", "final") if list(runs[1][t].columns) == list(runs[pack][t].columns)]
        print(f"pack {pack}: columns the same as pack 1 in {', '.join(same) or 'no table'}"
              + ("" if len(same) == 3 else "  (DIFFERENT elsewhere)"))


if __name__ == "__main__":
    main()
