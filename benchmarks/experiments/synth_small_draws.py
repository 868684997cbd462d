"""The defaults and one seen-biased configuration on other draws of synth-small, test and val split.

    python benchmarks/experiments/synth_small_draws.py 1,2      # draws synth-small@1 and @2, about 10 minutes on 2 cores

The configuration is the one a 16-trial study chose on synth-small (docs/benchmarks.md, "A study
against its defaults"): is it worse than the defaults on every draw of the preset, or only on the
test classes of draw 0? Prints test and validation U/S/H of each (seed 1000, 100 epochs, last epoch).
"""

import sys
import time

import torch

from gzsl.datasets import default_hidden, load
from gzsl.trainer import TrainConfig, train

CONFIGS = {"defaults": {}, "chosen on draw 0": dict(alpha=1.013, gamma=0.425, lam=0.986, latent_size=128, lr=0.000852)}


def runs(draws: list[int], splits: tuple[str, ...]):
    """Train each of CONFIGS on each split of each draw; yield (name, split, label, data, last step, seconds)."""
    torch.set_num_threads(1)
    for draw in draws:
        name = f"synth-small@{draw}" if draw else "synth-small"
        for split in splits:
            data = load(name, split, seed=0)
            for label, kw in CONFIGS.items():
                start = time.time()
                cfg = TrainConfig(epochs=100, eval_every=100, seed=1000, hidden=default_hidden(name), **kw)
                for last in train(data, cfg):
                    pass
                yield name, split, label, data, last, time.time() - start


if __name__ == "__main__":
    draws = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "1,2").split(",")]
    for name, split, label, _, last, secs in runs(draws, ("test", "val")):
        s = last.scores
        print(f"{name} {split} {label}: H {s.H:.1f} U {s.U:.1f} S {s.S:.1f} ({secs:.0f}s)", flush=True)
