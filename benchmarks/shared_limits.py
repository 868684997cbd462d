"""The physical limit of a configuration-epoch (one member's epoch of training steps) on a device.

Work: the floating-point operations of one real training step, counted by torch's
FlopCounterMode (the matrix products, forward and backward), times the steps of an epoch.
Memory traffic, the least a step can move: each fp32 parameter is read by the forward and by the
backward, its gradient written by the backward, and Adam (amsgrad) reads the parameter, its
gradient and its three moments and writes the parameter and the three moments: 12 x 4 bytes
per parameter per step (activations, a few MB a step, are left out).
Against a device's datasheet peaks: fp32 without tensor cores (TF32 stays off), and memory
bandwidth. The limit is the slower of the two.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from gzsl.trainer import Pack, TrainConfig

BYTES_PER_PARAMETER_STEP = 12 * 4
# name fragment -> (fp32 FLOP/s, memory bytes/s), SXM datasheets
PEAKS = {"H200": (67e12, 4.8e12), "H100": (67e12, 3.35e12), "A100": (19.5e12, 2.04e12)}


def config_epoch_cost(data, config: TrainConfig) -> tuple[float, float]:
    """(FLOPs, bytes) of one configuration-epoch of `config` on `data` (counted on the CPU)."""
    config = replace(config, device="cpu")
    pack = Pack(data.to("cpu"), config)
    pack.join("one", config)
    bs = config.batch_size
    eps = pack.epoch_noise(1)
    with FlopCounterMode(display=False) as counter:
        pack.step(pack.x[:bs], pack.c[:bs], pack.y[:bs], eps[:, 0], pack.loss_weights())
    steps = math.ceil(len(pack.y) / bs)
    params = sum(p.numel() for p in pack.model.parameters())
    return counter.get_total_flops() * steps, BYTES_PER_PARAMETER_STEP * params * steps


def device_peaks(device: str) -> tuple[str, float, float] | None:
    """(name, FLOP/s, bytes/s) of a CUDA device named in PEAKS; None otherwise (a CPU)."""
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, (flops, bandwidth) in PEAKS.items():
        if key in name:
            return name, flops, bandwidth
    return None


def limit(cost: tuple[float, float], peaks: tuple[str, float, float] | None) -> str:
    """A line: the cost of a configuration-epoch and, on a known device, its limit in cfg-epochs/s."""
    flops, traffic = cost
    line = f"a configuration-epoch: {flops / 1e12:.3f} TFLOP, {traffic / 1e9:.1f} GB of parameter traffic"
    if peaks is None:
        return line
    name, peak_flops, bandwidth = peaks
    seconds = max(flops / peak_flops, traffic / bandwidth)
    bound = "compute" if flops / peak_flops >= traffic / bandwidth else "memory"
    return (f"{line}; on {name} ({peak_flops / 1e12:.0f} TFLOP/s fp32, {bandwidth / 1e12:.2f} TB/s) at least "
            f"{seconds * 1e3:.1f} ms ({bound}-bound): at most {1 / seconds:.0f} cfg-epochs/s")


def share(rate: float, cost: tuple[float, float], peaks) -> str:
    """How far a measured rate (cfg-epochs/s) is from the limit, e.g. '4.1% of the limit'."""
    if peaks is None:
        return ""
    _, peak_flops, bandwidth = peaks
    best = 1 / max(cost[0] / peak_flops, cost[1] / bandwidth)
    return f"{100 * rate / best:.1f}% of the limit"
