"""The final classifier's fit alone: seconds per epoch of CADA-VAE's recipe (batch 32) for K
classifiers fit at once, on random latents of a CUB-like size (N rows, 200 classes), best of
--repeats. With --baseline PATH, each K is also timed by another checkout's gzsl (a subprocess
that imports that tree), alternating, so the two are measured side by side.

    python benchmarks/experiments/classifier_fit.py                          # K = 1 4 16, this tree
    python benchmarks/experiments/classifier_fit.py --baseline /tmp/before   # beside another checkout
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seconds_per_epoch(k: int, rows: int, latent: int, classes: int, repeats: int, threads: int) -> float:
    import torch

    from gzsl.evaluation import ClassifierConfig, fit_classifiers
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(k, rows, latent, generator=g), torch.randint(0, classes, (rows,), generator=g)
    w, b = 0.1 * torch.randn(k, latent, classes, generator=g), torch.zeros(k, 1, classes)
    config = ClassifierConfig(epochs=2)
    fit_classifiers(z[:, :3000], y[:3000], config, w, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fit_classifiers(z, y, config, w, b)
        best = min(best, time.perf_counter() - t)
    return best / config.epochs


def measure(tree: Path, k: int, args) -> float:
    """Seconds per epoch as `tree`'s gzsl fits them, in a fresh process."""
    cmd = [sys.executable, __file__, "--one", str(k), "--rows", str(args.rows), "--latent", str(args.latent),
           "--classes", str(args.classes), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)
    if out.returncode:
        sys.exit(f"{tree}: {out.stderr[-2000:]}")
    return float(out.stdout.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--rows", type=int, default=30000, help="sampled latents (CUB's recipe: 150 x 200 seen)")
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baseline", type=Path, help="another checkout, timed right after this tree for each K")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a subprocess: print one K's figure
    args = p.parse_args()
    if args.one:
        print(seconds_per_epoch(args.one, args.rows, args.latent, args.classes, args.repeats, args.threads))
        return
    print(f"classifier fit, {args.rows} rows, latent {args.latent}, {args.classes} classes, batch 32, "
          f"{args.threads} thread(s) (the fit itself runs on one): seconds per epoch, best of {args.repeats}")
    print(f"{'K':>3} {'this tree':>10}" + (f" {'baseline':>9} {'speed-up':>8}" if args.baseline else ""))
    for k in args.ks:
        mine = measure(ROOT, k, args)
        if args.baseline:
            theirs = measure(args.baseline.resolve(), k, args)
            print(f"{k:3d} {mine:10.3f} {theirs:9.3f} {theirs / mine:8.2f}", flush=True)
        else:
            print(f"{k:3d} {mine:10.3f}", flush=True)


if __name__ == "__main__":
    main()
