"""The demo study with and without packing, side by side: same best H, same result files?

    python benchmarks/pack_study.py                 # demo, pack = 1 then pack = 2: about 10 minutes on 2 cores
    python benchmarks/pack_study.py --pack 4 --study synth_cub --num-samples 8

Runs `python -m gzsl.tune` twice on copies of the study (the second with [resources] pack set,
and max_concurrent scaled by it, so both runs use the same workers), then prints, per run, the
best validation H, the refit's test H, trials by status, trial-epochs and wall time, and
whether trials.parquet, epochs.parquet and final.parquet have the same columns.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gzsl.studies import load_study  # noqa: E402


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
    p.add_argument("--pack", type=int, default=2)
    p.add_argument("--num-samples", type=int)
    args = p.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for pack in (1, args.pack):
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
    print(f"\n{args.study}: pack 1 vs pack {args.pack}")
    print(f"{'pack':>4} {'best val H':>10} {'test H (recipe)':>16} {'completed':>9} {'pruned':>6} "
          f"{'trial-epochs':>12} {'seconds':>7}")
    for pack, r in runs.items():
        t, f = r["trials"], r["final"]
        done = t[t.status == "completed"]
        print(f"{pack:4d} {done.last_val_H.max():10.2f} {f.test_H.mean():9.2f} ± {f.test_H.std():4.1f} "
              f"{len(done):9d} {(t.status == 'pruned').sum():6d} {t.epochs_run.sum():12d} {r['seconds']:7.0f}")
    for table in ("trials", "epochs", "final"):
        same = list(runs[1][table].columns) == list(runs[args.pack][table].columns)
        print(f"{table}.parquet columns: {'the same' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
