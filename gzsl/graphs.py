"""CUDA graphs: work of fixed shapes captured once and replayed, one launch for its many kernels.

A training epoch (a step is some 400 small kernels) and a classifier epoch (1,500 steps of about
ten) are launch-bound on a GPU: the device waits for Python. A captured graph replays the same
kernels on the same memory, so it computes exactly what the eager code does; its inputs are
static tensors that each replay refills. Capture only records: nothing runs until the first
replay. Work to be captured must never wait for the device (no .item(), no value-dependent
shapes; tests/test_fast_paths.py checks that) and must have run once before (warm-up), so that
no lazy initialisation happens while capturing.

`GZSL_CUDA_GRAPHS=0` in the environment turns capture off (every step then launches from Python).
Where a capture fails, the caller runs that work eagerly and tries again later (a pack at its next
membership: an out-of-memory just after a pack grew may not recur); after GIVE_UP_AFTER failures
of one kind of work, it is not tried again in this process. Each failure is said. A capture that
succeeds is checked against the eager steps the first time (gzsl.fastpaths).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Callable

import torch

from gzsl import fastpaths

ENABLED = os.environ.get("GZSL_CUDA_GRAPHS", "1") != "0"
GIVE_UP_AFTER = 3  # failed captures of one kind of work, after which it runs eagerly for good
# A cache, per process (CUDA graphs belong to a process's CUDA context): failed captures of each
# kind of work so far.
_failures: dict[str, int] = {}


def wanted(device: torch.device | str, what: str) -> bool:
    """Whether work `what` on `device` is to be captured: CUDA, enabled, and not given up on."""
    return torch.device(device).type == "cuda" and ENABLED and fastpaths.usable(what) and not gave_up(what)


def failed(what: str) -> bool:
    """Whether a capture of `what` has failed in this process (it may be tried again)."""
    return _failures.get(what, 0) > 0


def gave_up(what: str) -> bool:
    return _failures.get(what, 0) >= GIVE_UP_AFTER


def on_device(device: torch.device | str):
    """The CUDA device of the work as the current one, for its warm-up, capture and replays:
    torch.cuda.graph and a new side stream belong to the current device, and with tensors on
    cuda:1 while cuda:0 is current the capture records nothing (torch only warns). A no-op off CUDA."""
    device = torch.device(device)
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def on_side_stream(fn: Callable, *args):
    """fn(*args) on a fresh side stream, ordered after and before the current stream's work:
    how a graph's warm-up runs (torch.cuda.graphs' recipe)."""
    side, current = torch.cuda.Stream(), torch.cuda.current_stream()
    side.wait_stream(current)
    with torch.cuda.stream(side):
        out = fn(*args)
    current.wait_stream(side)
    return out


class Graph:
    """fn(*inputs) captured: calling it with new inputs of the same shapes copies them into its
    static inputs, replays, and returns its (static) outputs."""

    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: list[torch.Tensor], outputs):
        self.graph, self.inputs, self.outputs = graph, inputs, outputs

    @classmethod
    def capture(cls, what: str, fn: Callable, inputs: list[torch.Tensor]) -> "Graph | None":
        """Capture fn on static copies of `inputs`; None where it cannot be (warned once)."""
        static = [t.clone() for t in inputs]
        stream = torch.cuda.current_stream() if torch.cuda.is_available() else None
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = fn(*static)
        except Exception as e:  # noqa: BLE001 - any failure leaves the eager path, the reference
            _failures[what] = _failures.get(what, 0) + 1
            if stream is not None:  # a capture that fails to end leaves its own stream current
                torch.cuda.set_stream(stream)
                torch.cuda.synchronize()
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if gave_up(what):
                fastpaths.fail(what, f"could not be captured as a CUDA graph {GIVE_UP_AFTER} times (last: {why})")
            else:
                warnings.warn(f"{what}: could not be captured as a CUDA graph ({why}); running it step by step, "
                              f"tried again later (failure {_failures[what]} of {GIVE_UP_AFTER})", stacklevel=2)
            return None
        return cls(graph, static, outputs)

    def __call__(self, *inputs: torch.Tensor):
        for static, t in zip(self.inputs, inputs):
            static.copy_(t)
        self.graph.replay()
        return self.outputs
