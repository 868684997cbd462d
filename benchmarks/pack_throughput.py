"""Packed trials: configuration-epochs per second of a pack of K members against K separate solo
trainers (packs of one) on the same device and threads, and the operators dispatched per
configuration-step.

    python benchmarks/pack_throughput.py                                  # CPU, synth-cub shapes, K = 1..8
    python benchmarks/pack_throughput.py --ks 1 2 4 8 16 32 --latents 16 32 64 128
    python benchmarks/pack_throughput.py --device cuda --ks 1 2 4 8 16 32 64
    python benchmarks/pack_throughput.py --ks 2 4 8 --baseline ../other-checkout   # beside another tree's pack

Members differ as a study's trials do (learning rate, alpha, gamma, lam, latent size, sampling);
a pack pads every latent to its widest. Times are of whole training steps (forward, four losses,
backward, Adam) after warm-up steps, each K measured packed and solo side by side in one run.
Operators are the aten operators the torch profiler records for one step, over K: what a GPU
pays for in launches, and what a CPU run can count. Adam: the milliseconds of the optimizer's
update alone, member by member (torch's fused Adam per member) and in one compiled call
(gzsl.optim), and its share of the step in the mode the step used (--adam; default: the
device's, one call on CUDA, per member on a CPU).

With --baseline PATH, each K's packed rate is also measured by PATH's own copy of this script
(another checkout: its gzsl, its pack) in a subprocess right after, and printed beside.

With --fractional N, also N solo trainers in N processes side by side on the device, as N
trials of `gpu = 1/N` run today: their summed configuration-epochs per second.

Then the final classifier (CADA-VAE's recipe, --classifier-epochs of its 23 epochs): the K
members' classifiers fit at once (gzsl.evaluation.compare_many, as a pack evaluates) against
one member after another (as solo trials do), latents sampling and scoring included; on CUDA
also at once without the captured CUDA graph of each epoch (every step launched from Python).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_limits import config_epoch_cost, device_peaks, limit, share  # noqa: E402
from gzsl import graphs  # noqa: E402
from gzsl.datasets import load  # noqa: E402
from gzsl.evaluation import CADA_RECIPE, compare_many  # noqa: E402
from gzsl.datasets import default_hidden  # noqa: E402
from gzsl.trainer import Pack, TrainConfig, training_tensors  # noqa: E402


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


def packed_step(data, configs, device: str, adam: str = "auto"):
    """A pack of `configs` and a function that runs one training step of all its members, on
    endless minibatches and an epoch's noise drawn once (the members' warm-ups at epoch 0)."""
    pack = Pack(data, configs[0], max(c.latent_size for c in configs))
    if adam != "auto":
        pack.optimizer.one_call = adam == "one-call"
    for i, c in enumerate(configs):
        pack.join(str(i), c)
    w, feed = pack.loss_weights(), batches(pack.data, configs[0].batch_size, device)
    steps = len(pack.y) // configs[0].batch_size
    eps, count = pack.epoch_noise(steps), itertools.count()

    def step():
        return pack.step(*next(feed), eps[:, next(count) % steps], w)
    return pack, step


def measure_packed(data, configs, steps: int, warmup: int, device: str, adam: str = "auto"):
    """Seconds per step, operators, peak GPU MB, and Adam's seconds per update {mode: s} with
    the mode the steps used under "step"."""
    pack, step = packed_step(data, configs, device, adam)
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
    return seconds, ops, mem, time_adam(pack.optimizer, steps, device)


def time_adam(optimizer, steps: int, device: str) -> dict[str, float]:
    """The optimizer's update alone (on the last step's gradients), per member and in one call,
    after warm-up updates (the one call compiles on its first)."""
    used, times = optimizer.one_call, {}
    for name, one_call in (("per-member", False), ("one-call", True)):
        optimizer.one_call = one_call
        for _ in range(3):
            optimizer.step()
        sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            optimizer.step()
        sync(device)
        times[name] = (time.perf_counter() - t) / steps
        if optimizer.one_call != one_call:  # it could not compile
            times[name] = float("nan")
    times["step"] = times["one-call" if used else "per-member"]
    optimizer.one_call = used
    return times


def profile_step(data, configs, device: str, steps: int = 5, top: int = 12) -> None:
    """Where the device time of a pack's step goes: its kernels, largest total first."""
    _, step = packed_step(data, configs, device)
    for _ in range(3):
        step()
    sync(device)
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device != "cpu" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        sync(device)
    key = "self_device_time_total" if device != "cpu" else "self_cpu_time_total"
    print(f"\nK = {len(configs)}: {steps} steps, top kernels by device time")
    print(prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60))


def measure_solo(data, configs, steps: int, warmup: int, device: str):
    """K separate trainers (packs of one), one step each per round, on the same device and threads."""
    trainers = [packed_step(data, [c], device)[1] for c in configs]

    def round_():
        for step in trainers:
            step()
    for _ in range(warmup):
        round_()
    ops = count_ops(trainers[0])  # one solo step
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        round_()
    sync(device)
    return (time.perf_counter() - t) / steps, ops


def measure_classifier(data, configs, epochs: int, device: str) -> tuple[float, float, float | None]:
    """Seconds per member to score K members with the recipe (fit for `epochs` epochs): all
    K classifiers fit at once, one member after another, and (on CUDA) all at once with every
    step launched from Python instead of each epoch replayed as a captured graph."""
    pack, _ = packed_step(data, configs, device)
    recipe = {"cada": dataclasses.replace(CADA_RECIPE, epochs=epochs)}
    requests = [(mb.evaluator, pack.member(mb.key), recipe) for mb in pack.members]
    compare_many(requests[:1])  # warm-up: the first fit pays for allocations and kernel choice

    def eager():
        graphs.ENABLED = False
        try:
            compare_many(requests)
        finally:
            graphs.ENABLED = True
    runs = [lambda: compare_many(requests), lambda: [compare_many([r]) for r in requests]]
    times = []
    for run in runs + ([eager] if device.startswith("cuda") else []):
        sync(device)
        t = time.perf_counter()
        run()
        sync(device)
        times.append((time.perf_counter() - t) / len(configs))
    return times[0], times[1], (times[2] if len(times) > 2 else None)


def _solo_process(args) -> float:
    """One solo trainer alone in its process for `seconds`: configuration-epochs per second."""
    dataset, device, seed, seconds = args
    torch.set_num_threads(1)
    data = load(dataset, "val").to(device)
    config = TrainConfig(hidden=default_hidden(dataset), device=device, seed=seed)
    _, step = packed_step(data, [config], device)
    for _ in range(20):
        step()
    sync(device)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            step()
        steps += 20
    sync(device)
    return steps / (time.perf_counter() - start) / math.ceil(len(data.train.y) / config.batch_size)


def measure_fractional(dataset: str, device: str, n: int, seconds: float) -> list[float]:
    """n solo trainers in n processes at once (as n fractional trials): each one's cfg-epochs/s."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(n) as pool:
        return pool.map(_solo_process, [(dataset, device, seed, seconds) for seed in range(n)])


def baseline_rate(tree: str, k: int, args) -> float:
    """Packed cfg-epochs/s of K members as another checkout's own copy of this script measures its
    own pack (in a subprocess that imports that tree's gzsl)."""
    script = Path(tree).resolve() / "benchmarks" / "pack_throughput.py"
    cmd = [sys.executable, str(script), "--dataset", args.dataset, "--device", args.device, "--ks", str(k),
           "--latents", *map(str, args.latents), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--no-solo", "--classifier-ks", *(["--threads", str(args.threads)] if args.threads else [])]
    env = {**os.environ, "PYTHONPATH": str(script.parents[1])}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=script.parents[1])
    row = re.search(rf"^\s*{k}\s+([\d.]+)", out.stdout, re.M)
    if out.returncode or row is None:
        raise SystemExit(f"--baseline {tree}: {script} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return float(row.group(1))


def adam_mode(args) -> bool:
    """Whether the packed steps updated in one call."""
    return args.adam == "one-call" or (args.adam == "auto" and args.device.startswith("cuda"))


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
    p.add_argument("--adam", choices=["auto", "per-member", "one-call"], default="auto",
                   help="how the packed steps update (gzsl.optim.MemberAdam; auto: one call on CUDA)")
    p.add_argument("--tf32", action="store_true", help="let CUDA matrix products use TF32 (torch's default: full fp32)")
    p.add_argument("--profile-k", type=int, default=0, metavar="K",
                   help="also print where a step of a K-member pack spends its device time (top kernels)")
    p.add_argument("--baseline", metavar="PATH",
                   help="another checkout: its pack's rate for each K, measured right after this tree's")
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
          f"{'ops/cfg-step packed':>19} {'solo':>5} {'ratio':>6} {'ratio w/o scalar reads':>22} "
          f"{'Adam ms per-member':>18} {'one-call':>8} {'Adam % of step':>14}"
          + ("  GPU MB/member" if args.device != "cpu" else "")
          + (f"  {'baseline packed':>15} {'packed/baseline':>15}" if args.baseline else ""))
    cost, peaks = config_epoch_cost(data, members(1, args.latents, hidden, "cpu")[0]), device_peaks(args.device)
    base, best = None, 0.0
    for k in args.ks:
        configs = members(k, args.latents, hidden, args.device)
        t_pack, ops_pack, mem, adam = measure_packed(data, configs, args.steps, args.warmup, args.device, args.adam)
        pack_rate = k / (t_pack * steps_per_epoch)
        if args.no_solo:
            solo_rate, ops_solo = float("nan"), None
        else:
            t_solo, ops_solo = measure_solo(data, configs, args.steps, args.warmup, args.device)
            solo_rate = k / (t_solo * steps_per_epoch)
        base = base or (ops_solo if ops_solo else ops_pack)
        before = baseline_rate(args.baseline, k, args) if args.baseline else None
        best = max(best, pack_rate)
        print(f"{k:3d} {pack_rate:15.3f} {solo_rate:13.3f} {pack_rate / solo_rate:11.2f} {ops_pack[0] / k:19.1f} "
              f"{base[0]:5d} {ops_pack[0] / k / base[0]:6.3f} {ops_pack[1] / k / base[1]:22.3f} "
              f"{adam['per-member'] * 1e3:18.2f} {adam['one-call'] * 1e3:8.2f} {100 * adam['step'] / t_pack:14.0f}"
              + (f"  {mem / k:14.0f}" if mem else "")
              + (f"  {before:15.3f} {pack_rate / before:15.2f}" if before else ""), flush=True)
    print("ratio: operators per configuration-step, packed, over one solo step's (K = 1's without --no-solo); "
          f"the packed steps updated {'in one call' if adam_mode(args) else 'member by member'}")
    print(f"{limit(cost, peaks)} (latent size {args.latents[0]})"
          + (f"; the best pack above: {best:.2f} cfg-epochs/s, {share(best, cost, peaks)}" if peaks else ""))
    if args.baseline:
        print(f"baseline: {Path(args.baseline).resolve()}'s pack, measured by its own benchmarks/pack_throughput.py")
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
        cuda = args.device.startswith("cuda")
        print(f"{'K':>3} {'all at once':>11} {'one by one':>10} {'speed-up':>8}"
              + (f" {'at once, no CUDA graph':>22} {'graph speed-up':>14}" if cuda else ""))
        for k in ks:
            fused, alone, eager = measure_classifier(data, members(k, args.latents, hidden, args.device),
                                                     args.classifier_epochs, args.device)
            print(f"{k:3d} {fused:11.3f} {alone:10.3f} {alone / fused:8.2f}"
                  + (f" {eager:22.3f} {eager / fused:14.2f}" if eager else ""), flush=True)


if __name__ == "__main__":
    main()
