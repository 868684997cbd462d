"""How often MemberAdam's one-call update compiles as a pack grows and shrinks, and what a step costs.

    python benchmarks/experiments/one_call_compiles.py --device cuda      # on a GPU (Triton kernels)
    python benchmarks/experiments/one_call_compiles.py                    # on a CPU (C++ kernels; slow to compile)

For K = 1..12, then back down, one MemberAdam step over a pack-shaped set of parameters (synth-cub's
widths) with one_call=True: prints per K the compiles so far (torch._dynamo's unique graphs), whether
the update still ran in one call, the step's milliseconds, and the largest difference from the
member-by-member update (torch's fused Adam kernel) on the same gradients. Before the update took
detached tensors, each new K compiled again and from K = 9 torch's recompile limit left the update
uncompiled while one_call still said True.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch._dynamo.utils import counters

from gzsl.optim import MemberAdam

SHAPES = [(2048, 1560), (1, 1560), (1560, 128), (1, 128), (312, 1450), (1450, 128)]  # a few of synth-cub's layers


def step_ms(opt: MemberAdam, device: str, repeat: int = 5) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--max-k", type=int, default=12)
    args = p.parse_args()
    g = torch.Generator(device=args.device).manual_seed(0)
    for k in [*range(1, args.max_k + 1), *range(args.max_k - 1, 0, -3)]:
        params = [torch.nn.Parameter(torch.randn(k, *s, device=args.device, generator=g) * 0.05) for s in SHAPES]
        ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
        opt = MemberAdam(params, lr=[1e-3 * (i + 1) for i in range(k)], one_call=True)
        per_member = MemberAdam(ref, lr=[1e-3 * (i + 1) for i in range(k)], one_call=False)
        for p, r in zip(params, ref):
            p.grad = r.grad = torch.randn(p.shape, device=args.device, generator=g)
        opt.step()
        per_member.step()
        diff = max(float((p.detach() - r.detach()).abs().max()) for p, r in zip(params, ref))
        ms = step_ms(opt, args.device)
        print(json.dumps({"K": k, "compiles": counters["stats"]["unique_graphs"], "one_call": opt.one_call,
                          "step_ms": round(ms, 3), "max_abs_diff_vs_per_member": diff}), flush=True)


if __name__ == "__main__":
    main()
