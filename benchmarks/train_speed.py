"""Training speed of one Disentangled-VAE, measured against the bare matrix products it needs.

    python benchmarks/train_speed.py                    # synth-cub, CPU, about 4 minutes on 2 cores
    python benchmarks/train_speed.py --device cuda
    python benchmarks/train_speed.py --threads 2 --baseline ../other-checkout   # this tree vs another's

Prints, all measured side by side in this run:
  1. epoch time at batch 50 vs the same GEMMs alone (ratio; targets 1.5x, stretch 1.3x),
     and the split of a step: matmuls, optimizer, the rest;
  2. one validation-H evaluation (classifier fit + scoring) as a share of an epoch (target <= 15%),
     and its H vs CADA-VAE's classifier recipe on the same latents (target: within 1 point).

With --baseline PATH (another checkout, e.g. the commit before a change), instead: seconds per
training epoch of one configuration (K = 1) on the test split, this tree's and PATH's, each run
through its own `gzsl.trainer.train` in a subprocess that imports that tree's gzsl, the two
alternating round after round (the machine's speed drifts).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gzsl.datasets import load  # noqa: E402
from gzsl.evaluation import CADA_RECIPE, FAST_CLASSIFIER, Evaluator, fit_classifier  # noqa: E402
from gzsl.datasets import default_hidden  # noqa: E402
from gzsl.trainer import Pack, TrainConfig, classifier_config  # noqa: E402

RUN = "run"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_shapes(cfg: TrainConfig, d1: int, d2: int, classes: int, batch: int):
    """(rows, in, out, needs input grad) of every Linear a step runs, as the model wires them."""
    L, (h1, h2, h3, h4) = cfg.latent_size, cfg.hidden
    heads = (4 if cfg.disentangle else 2) * L
    shapes = [(batch, d1, h1, False), (batch, h1, heads, True), (batch, d2, h3, False), (batch, h3, heads, True),
              (2 * batch, L, h2, True), (2 * batch, h2, d1, True), (2 * batch, L, h4, True), (2 * batch, h4, d2, True)]
    if cfg.disentangle:
        shapes += [(2 * batch, L, classes, True)] * 2
    return shapes


def bare_matmuls(shapes, device):
    """A function running `steps` repetitions of each layer's forward GEMM and its backward GEMMs."""
    ops = []
    for rows, n_in, n_out, needs_dx in shapes:
        x, w, dy = (torch.randn(rows, n_in, device=device), torch.randn(n_out, n_in, device=device),
                    torch.randn(rows, n_out, device=device))
        ops.append((x, w, dy, needs_dx, torch.empty(rows, n_out, device=device),
                    torch.empty(n_out, n_in, device=device), torch.empty(rows, n_in, device=device)))

    def run(steps):
        for _ in range(steps):
            for x, w, dy, needs_dx, y, dw, dx in ops:
                torch.mm(x, w.t(), out=y)  # forward
                torch.mm(dy.t(), x, out=dw)  # weight gradient
                if needs_dx:
                    torch.mm(dy, w, out=dx)  # input gradient
        sync(device)

    run(5)
    return run


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def optimizer_epoch(data, cfg: TrainConfig, steps: int, device) -> float:
    """Seconds for `steps` optimizer updates of the real model's parameters."""
    pack = one_member(data, cfg)
    for p in pack.model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    for _ in range(5):
        pack.optimizer.step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        pack.optimizer.step()
    sync(device)
    return time.perf_counter() - start


def one_member(data, cfg: TrainConfig) -> Pack:
    """The trainer of one configuration, as gzsl.trainer.train runs it."""
    pack = Pack(data, cfg)
    pack.join(RUN, cfg)
    return pack


# Run in a subprocess by --baseline, with argv: tree, dataset, device, threads, epochs. Only the
# public API that both trees share: train() yields each epoch's EpochResult with its seconds.
EPOCH_SECONDS = """
import json, sys
tree, dataset, device, threads, epochs = sys.argv[1:]
sys.path.insert(0, tree)
import torch
torch.set_num_threads(int(threads))
import gzsl
try:
    from gzsl.datasets import load
except ImportError:  # before gzsl.datasets
    from gzsl.data import load
try:
    from gzsl.trainer import TrainConfig, train
except ImportError:  # before gzsl.training was renamed gzsl.trainer
    from gzsl.training import TrainConfig, train
try:
    from gzsl.datasets import default_hidden
except ImportError:  # before default_hidden moved to gzsl.datasets
    from gzsl.training import default_hidden
config = TrainConfig(epochs=int(epochs) + 2, eval_every=0, classifier="fast", hidden=default_hidden(dataset),
                     device=device)
seconds = [r.seconds for r in train(load(dataset, "test"), config)]
print(json.dumps({"gzsl": gzsl.__file__, "seconds": seconds[1:-1]}))
"""


def tree_epoch_seconds(tree: Path, args, threads: int) -> tuple[str, list[float]]:
    """Seconds per epoch of `tree`'s trainer (its first epoch and its last, scored, left out)."""
    argv = [str(tree), args.dataset, args.device, str(threads), str(args.epochs)]
    p = subprocess.run([sys.executable, "-c", EPOCH_SECONDS, *argv], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)
    if p.returncode:
        raise SystemExit(f"{tree}: training failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    if Path(out["gzsl"]).resolve().parents[1] != tree:
        raise SystemExit(f"{tree}: the subprocess imported {out['gzsl']} instead")
    return out["gzsl"], out["seconds"]


def compare_with(baseline: str, args) -> None:
    """This tree's and another's K = 1 seconds per epoch, alternating, round after round."""
    trees = {"this tree": Path(__file__).resolve().parents[1], "baseline": Path(baseline).resolve()}
    threads = args.threads or torch.get_num_threads()
    seconds = {name: [] for name in trees}
    for r in range(args.rounds):
        for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            _, s = tree_epoch_seconds(trees[name], args, threads)
            seconds[name] += s
            print(f"round {r + 1}: {name:9s} {', '.join(f'{x:.2f}' for x in s)} s", flush=True)
    print(f"\n## K = 1, {args.dataset} test split, device {args.device}, {threads} thread(s): seconds per epoch")
    print(f"{'tree':9s} {'best':>6} {'median':>7}  path")
    for name, tree in trees.items():
        print(f"{name:9s} {min(seconds[name]):6.2f} {statistics.median(seconds[name]):7.2f}  {tree}")
    ratio = statistics.median(seconds["this tree"]) / statistics.median(seconds["baseline"])
    best = min(seconds["this tree"]) / min(seconds["baseline"])
    print(f"this tree / baseline: {ratio:.3f} (medians), {best:.3f} (best epochs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synth-cub")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=3, help="timed training epochs (each next to a timed bare-GEMM epoch)")
    p.add_argument("--quality-epochs", type=int, default=25,
                   help="epochs trained before comparing classifier recipes")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--baseline", metavar="PATH", help="another checkout: time its K = 1 epochs beside this tree's")
    p.add_argument("--rounds", type=int, default=3, help="with --baseline: rounds of --epochs epochs per tree")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.baseline:
        return compare_with(args.baseline, args)
    device = torch.device(args.device)
    cfg = TrainConfig(device=args.device, hidden=default_hidden(args.dataset))
    print(f"# {args.dataset}, device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    # 1. Epoch time vs bare matmuls, on the test split (all of trainval), batch 50.
    data = load(args.dataset, "test")
    n = len(data.train)
    steps = math.ceil(n / cfg.batch_size)
    shapes = gemm_shapes(cfg, data.feature_dim, data.semantic_dim, len(data.seen_classes), cfg.batch_size)
    # The machine's speed drifts: alternate the bare GEMMs and real epochs, keep the best of each.
    bare = bare_matmuls(shapes, device)
    pack = one_member(data, cfg)  # train()'s own trainer
    pack.train_epoch()  # the first epoch pays one-time allocations
    t_mm, t_epoch = math.inf, math.inf
    for _ in range(args.epochs):
        t_mm = min(t_mm, timed(bare, steps))
        t_epoch = min(t_epoch, timed(lambda: (pack.train_epoch(), sync(device))))
    t_opt = optimizer_epoch(data, cfg, steps, device)
    rest = t_epoch - t_mm - t_opt
    print(f"\n## epoch, {n} images, batch {cfg.batch_size}, {steps} steps")
    print(f"epoch time            {t_epoch:7.2f} s")
    print(f"bare matmuls          {t_mm:7.2f} s")
    print(f"ratio epoch / matmuls {t_epoch / t_mm:7.2f}x   (target <= 1.5x, stretch 1.3x)")
    print(f"split of a step       matmuls {t_mm / steps * 1e3:.1f} ms ({t_mm / t_epoch:.0%}), "
          f"optimizer {t_opt / steps * 1e3:.1f} ms ({t_opt / t_epoch:.0%}), "
          f"rest {rest / steps * 1e3:.1f} ms ({rest / t_epoch:.0%})")

    # 2. Validation evaluation cost and quality, on the val split the study uses.
    val = load(args.dataset, "val")
    # The first epochs of a standard 100-epoch run (warm-ups at their usual pace): a model that
    # classifies, not a finished one, is what the study's per-epoch evaluations see.
    pack = one_member(val, cfg)
    evaluator = Evaluator(pack.data, classifier_config(cfg, val.name), seed=0)
    # The machine's speed drifts: time one evaluation right after each of the last epochs and
    # compare it with that epoch (the evaluation runs on its own random stream: training is unchanged).
    val_epochs, times = [], []
    for i in range(args.quality_epochs):
        t_epoch = timed(lambda: (pack.train_epoch(), sync(device)))
        if i >= args.quality_epochs - 5:
            val_epochs.append(t_epoch)
            times.append(timed(lambda: (evaluator(pack.member(RUN)), sync(device))))
    t_val_epoch, t_eval = statistics.median(val_epochs), statistics.median(times)
    share = statistics.median(e / ep for e, ep in zip(times, val_epochs))
    print(f"\n## validation H, val split: {len(val.train)} training images, "
          f"{len(val.eval_seen)} + {len(val.eval_unseen)} eval images")
    print(f"epoch time (val split)   {t_val_epoch:6.2f} s")
    print(f"one evaluation           {t_eval:6.2f} s = {share:.0%} of an epoch (median over the last 5 epochs, "
          f"each timed with the evaluation after it; target <= 15%)")

    model = pack.member(RUN).eval()
    z, y = evaluator.latent_training_set(model)
    k = len(evaluator.classes)
    h = {}
    for name, recipe in (("fast", FAST_CLASSIFIER), ("CADA-VAE", CADA_RECIPE)):
        runs, t = [], []
        for seed in range(3):
            torch.manual_seed(seed)
            start = time.perf_counter()
            clf = fit_classifier(z, y, k, recipe)
            t.append(time.perf_counter() - start)
            runs.append(evaluator.score(model, clf).H)
        h[name] = statistics.mean(runs)
        print(f"classifier {name:9s} {recipe.epochs:2d} epochs, batch {recipe.batch_size:3d}, lr {recipe.lr:g}: "
              f"H {h[name]:5.2f} (seeds {', '.join(f'{r:.1f}' for r in runs)}), fit {statistics.median(t):.2f} s")
    print(f"H difference fast - CADA-VAE recipe: {h['fast'] - h['CADA-VAE']:+.2f} points "
          f"(model after {args.quality_epochs} of 100 epochs; target within 1 point)")


if __name__ == "__main__":
    main()
