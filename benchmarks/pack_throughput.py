"""Packed trials: configuration-epochs per second of a pack of K members against K separate solo
trainers on the same device and threads, and the operators dispatched per configuration-step.

    python benchmarks/pack_throughput.py                                  # CPU, synth-cub shapes, K = 1..8
    python benchmarks/pack_throughput.py --ks 1 2 4 8 16 32 --latents 16 32 64 128
    python benchmarks/pack_throughput.py --device cuda --ks 1 2 4 8 16 32 64

Members differ as a study's trials do (learning rate, alpha, gamma, lam, latent size, sampling);
a pack pads every latent to its widest. Times are of whole training steps (forward, four losses,
backward, Adam) after warm-up steps, each K measured packed and solo side by side in one run.
Operators are the aten operators the torch profiler records for one step, over K: what a GPU
pays for in launches, and what a CPU run can count.

With --fractional N, also N solo trainers in N processes side by side on the device, as N
trials of `gpu = 1/N` run today: their summed configuration-epochs per second.

Then the final classifier (CADA-VAE's recipe, --classifier-epochs of its 23 epochs): the K
members' classifiers fit at once (gzsl.evaluation.compare_many, as a pack evaluates) against
one member after another (as solo trials do), latents sampling and scoring included.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gzsl.datasets import load  # noqa: E402
from gzsl.evaluation import CADA_RECIPE, compare_many  # noqa: E402
from gzsl.pack_training import PackTrainer, pack_shape  # noqa: E402
from gzsl.training import (TrainConfig, build_model, default_hidden, make_optimizer, train_step,  # noqa: E402
                           training_tensors, weights)


def members(k: int, latents: list[int], hidden, device: str) -> list[TrainConfig]:
    return [TrainConfig(lr=1.5e-4 * (1 + i % 3), alpha=0.5 + i % 4, gamma=1.0 + i % 2, lam=1.0 + i % 5,
                        latent_size=latents[i % len(latents)], sampling=("textbook", "cada")[i % 2],
                        hidden=hidden, device=device) for i in range(k)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def batches(data, bs: int, device: str):
    """Endless minibatches (x, c, y) of the training images, as the trainers draw them."""
    x_all, c_all, y_all = training_tensors(data)
    while True:
        order = torch.randperm(len(y_all), device=device)
        for i in range(0, len(order) - bs + 1, bs):
            idx = order[i:i + bs]
            yield x_all[idx], c_all[idx], y_all[idx]


SCALAR_READS = ("aten::item", "aten::_local_scalar_dense")


def count_ops(fn) -> tuple[int, int]:
    """aten operators the profiler records for fn (nested ones included), and the same without
    host-side scalar reads: torch's CPU fused Adam reads each tensor's step count with .item()
    (20 per member here), which its CUDA kernel does on the device."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    names = [e.name for e in prof.events() if e.name.startswith("aten::")]
    return len(names), sum(1 for n in names if n not in SCALAR_READS)


def measure_packed(data, configs, steps: int, warmup: int, device: str):
    pack = PackTrainer(data, pack_shape(data, configs[0], max(c.latent_size for c in configs)), device)
    for i, c in enumerate(configs):
        pack.join(str(i), c)
    m, lr, feed = pack.member_tensors(), pack.learning_rates(), batches(pack.data, configs[0].batch_size, device)
    step = lambda: pack.step(*next(feed), m, lr)  # noqa: E731
    for _ in range(warmup):
        step()
    ops = count_ops(step)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - t) / steps
    mem = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    return seconds, ops, mem


def profile_step(data, configs, device: str, steps: int = 5, top: int = 12) -> None:
    """Where the device time of a pack's step goes: its kernels, largest total first."""
    pack = PackTrainer(data, pack_shape(data, configs[0], max(c.latent_size for c in configs)), device)
    for i, c in enumerate(configs):
        pack.join(str(i), c)
    m, lr, feed = pack.member_tensors(), pack.learning_rates(), batches(pack.data, configs[0].batch_size, device)
    for _ in range(3):
        pack.step(*next(feed), m, lr)
    sync(device)
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device != "cpu" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            pack.step(*next(feed), m, lr)
        sync(device)
    key = "self_device_time_total" if device != "cpu" else "self_cpu_time_total"
    print(f"\nK = {len(configs)}: {steps} steps, top kernels by device time")
    print(prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60))


def measure_solo(data, configs, steps: int, warmup: int, device: str):
    """K separate trainers, one step each per round, on the same device and threads."""
    trainers = []
    for c in configs:
        torch.manual_seed(c.seed)
        model = build_model(data, c).to(device)
        trainers.append((model, make_optimizer(model, c), weights(c, 30)))
    feed = batches(data, configs[0].batch_size, device)

    def round_():
        x, c, y = next(feed)
        for model, opt, w in trainers:
            train_step(model, opt, x, c, y, w)
    for _ in range(warmup):
        round_()
    model, opt, w = trainers[0]
    x, c, y = next(feed)
    ops = count_ops(lambda: train_step(model, opt, x, c, y, w))  # one solo step
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        round_()
    sync(device)
    return (time.perf_counter() - t) / steps, ops


def measure_classifier(data, configs, epochs: int, device: str) -> tuple[float, float]:
    """Seconds per member to score K members with the recipe (fit for `epochs` epochs): all
    K classifiers fit at once, and one member after another."""
    pack = PackTrainer(data, pack_shape(data, configs[0], max(c.latent_size for c in configs)), device)
    for i, c in enumerate(configs):
        pack.join(str(i), c)
    recipe = {"cada": dataclasses.replace(CADA_RECIPE, epochs=epochs)}
    requests = [(mb.evaluator, pack.model(mb.key), recipe) for mb in pack.members]
    compare_many(requests[:1])  # warm-up: the first fit pays for allocations and kernel choice
    times = []
    for run in (lambda: compare_many(requests), lambda: [compare_many([r]) for r in requests]):
        sync(device)
        t = time.perf_counter()
        run()
        sync(device)
        times.append((time.perf_counter() - t) / len(configs))
    return times[0], times[1]


def _solo_process(args) -> float:
    """One solo trainer alone in its process for `seconds`: configuration-epochs per second."""
    dataset, device, seed, seconds = args
    torch.set_num_threads(1)
    data = load(dataset, "val").to(device)
    config = TrainConfig(hidden=default_hidden(dataset), device=device, seed=seed)
    torch.manual_seed(seed)
    model = build_model(data, config).to(device)
    opt, w, feed = make_optimizer(model, config), weights(config, 30), batches(data, config.batch_size, device)
    for _ in range(20):
        train_step(model, opt, *next(feed), w)
    sync(device)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            train_step(model, opt, *next(feed), w)
        steps += 20
    sync(device)
    return steps / (time.perf_counter() - start) / math.ceil(len(data.train.y) / config.batch_size)


def measure_fractional(dataset: str, device: str, n: int, seconds: float) -> list[float]:
    """n solo trainers in n processes at once (as n fractional trials): each one's cfg-epochs/s."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(n) as pool:
        return pool.map(_solo_process, [(dataset, device, seed, seconds) for seed in range(n)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synth-cub")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--latents", type=int, nargs="+", default=[64], help="members' latent sizes, cycled")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads on CPU (default: torch's)")
    p.add_argument("--no-solo", action="store_true", help="packed only (solo rounds of large K are slow)")
    p.add_argument("--fractional", type=int, default=0, metavar="N",
                   help="also time N solo trainers in N processes side by side (N fractional trials)")
    p.add_argument("--fractional-seconds", type=float, default=30.0)
    p.add_argument("--classifier-ks", type=int, nargs="*", default=None,
                   help="K of the final-classifier table (default: --ks); none skips it")
    p.add_argument("--classifier-epochs", type=int, default=1, help="epochs of the recipe's fit in that table")
    p.add_argument("--tf32", action="store_true", help="let CUDA matrix products use TF32 (torch's default: full fp32)")
    p.add_argument("--profile-k", type=int, default=0, metavar="K",
                   help="also print where a step of a K-member pack spends its device time (top kernels)")
    args = p.parse_args()
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load(args.dataset, "val").to(args.device)
    hidden = default_hidden(args.dataset)
    steps_per_epoch = math.ceil(len(data.train.y) / 50)
    print(f"{args.dataset} ({len(data.train.y)} training images, {steps_per_epoch} steps per epoch), device "
          f"{args.device}, {torch.get_num_threads()} thread(s), latents {args.latents}, torch {torch.__version__}")
    print(f"{'K':>3} {'packed cfg-ep/s':>15} {'solo cfg-ep/s':>13} {'packed/solo':>11} "
          f"{'ops/cfg-step packed':>19} {'solo':>5} {'ratio':>6} {'ratio w/o scalar reads':>22}"
          + ("  GPU MB/member" if args.device != "cpu" else ""))
    base = None
    for k in args.ks:
        configs = members(k, args.latents, hidden, args.device)
        t_pack, ops_pack, mem = measure_packed(data, configs, args.steps, args.warmup, args.device)
        pack_rate = k / (t_pack * steps_per_epoch)
        if args.no_solo:
            solo_rate, ops_solo = float("nan"), None
        else:
            t_solo, ops_solo = measure_solo(data, configs, args.steps, args.warmup, args.device)
            solo_rate = k / (t_solo * steps_per_epoch)
        base = base or (ops_solo if ops_solo else ops_pack)
        print(f"{k:3d} {pack_rate:15.3f} {solo_rate:13.3f} {pack_rate / solo_rate:11.2f} {ops_pack[0] / k:19.1f} "
              f"{base[0]:5d} {ops_pack[0] / k / base[0]:6.3f} {ops_pack[1] / k / base[1]:22.3f}"
              + (f"  {mem / k:14.0f}" if mem else ""), flush=True)
    print("ratio: operators per configuration-step, packed, over one solo step's (K = 1's without --no-solo)")
    if args.profile_k:
        profile_step(data, members(args.profile_k, args.latents, hidden, args.device), args.device)
    if args.fractional:
        alone = measure_fractional(args.dataset, args.device, 1, args.fractional_seconds)[0]
        side = measure_fractional(args.dataset, args.device, args.fractional, args.fractional_seconds)
        print(f"\n{args.fractional} solo trainers in {args.fractional} processes at once (fractional trials): "
              f"{sum(side):.3f} cfg-ep/s in all ({', '.join(f'{r:.3f}' for r in side)}); one alone {alone:.3f}")
    ks = args.ks if args.classifier_ks is None else args.classifier_ks
    if ks:
        print(f"\nfinal classifier, CADA-VAE's recipe fit for {args.classifier_epochs} of its {CADA_RECIPE.epochs} "
              f"epochs ({args.dataset}, val split): seconds per member")
        print(f"{'K':>3} {'all at once':>11} {'one by one':>10} {'speed-up':>8}")
        for k in ks:
            fused, alone = measure_classifier(data, members(k, args.latents, hidden, args.device),
                                              args.classifier_epochs, args.device)
            print(f"{k:3d} {fused:11.3f} {alone:10.3f} {alone / fused:8.2f}", flush=True)


if __name__ == "__main__":
    main()
