"""Does a pack member train as its solo run would? Four configurations of mixed latent sizes
(16, 32, 64, 64) and samplings from the demo's space, trained as one pack (latent width 64)
and each alone (a pack of one), over 3 seeds, scored on validation with CADA-VAE's classifier
recipe.

    python benchmarks/experiments/pack_equivalence.py                  # synth-small, 30 epochs: about 10 minutes on 2 cores
    python benchmarks/experiments/pack_equivalence.py --epochs 8       # a few minutes

A member draws its own sampling noise, as alone, and with one seed for all the pack's
minibatch order is its solo run's too; what differs is the order of floating-point sums (a
padded latent, batched matrix products), which training amplifies. Its H should sit within
the solo runs' seed noise. Prints, per configuration, packed and solo H per seed, the means
and the difference in solo stds.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: shared_runs

from gzsl.datasets import load  # noqa: E402
from gzsl.datasets import default_hidden  # noqa: E402
from gzsl.trainer import TrainConfig, train, train_pack  # noqa: E402

CONFIGS = {  # latent sizes 16-64 in one pack (padded to 64); the rest as a study would draw them
    "L16": dict(latent_size=16, lr=1.2e-3, alpha=0.6, gamma=2.0, lam=3.0),
    "L32": dict(latent_size=32, lr=8e-4, alpha=2.5, gamma=0.5, lam=1.5),
    "L64": dict(latent_size=64, lr=6e-4, alpha=1.0, gamma=1.0, lam=2.37),
    "L64 textb.": dict(latent_size=64, lr=1e-3, alpha=4.0, gamma=3.0, lam=5.0, sampling="textbook"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synth-small")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load(args.dataset, "val")
    base = TrainConfig(epochs=args.epochs, eval_every=0, hidden=default_hidden(args.dataset))
    packed, solo = {k: [] for k in CONFIGS}, {k: [] for k in CONFIGS}
    for seed in range(args.seeds):
        cfgs = {k: replace(base, seed=seed, **v) for k, v in CONFIGS.items()}
        for results in train_pack(data, cfgs):
            for k, r in results.items():
                if r.status != "running":
                    packed[k].append(r.scores.H)
        for k, c in cfgs.items():
            solo[k].append(list(train(data, c))[-1].scores.H)
        print(f"seed {seed}: " + "  ".join(f"{k} packed {packed[k][-1]:.1f} solo {solo[k][-1]:.1f}" for k in CONFIGS),
              flush=True)
    print(f"\n{args.dataset}, {args.epochs} epochs, validation H (CADA-VAE recipe), {args.seeds} seeds")
    print(f"{'config':10s} {'packed mean ± std':>18} {'solo mean ± std':>16} {'difference / solo std':>22}")
    for k in CONFIGS:
        pm, ps, sm, ss = np.mean(packed[k]), np.std(packed[k]), np.mean(solo[k]), np.std(solo[k])
        print(f"{k:10s} {pm:11.1f} ± {ps:4.1f} {sm:9.1f} ± {ss:4.1f} {(pm - sm) / max(ss, 1e-9):22.2f}")


if __name__ == "__main__":
    main()
