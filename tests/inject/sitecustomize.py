"""Test-only fault injection, loaded by every Python process started with this folder on PYTHONPATH
(the study's driver, and Ray's workers, which inherit its environment). Once gzsl.training is
imported, Pack.run_epoch raises the way a CUDA out-of-memory would for the members
GZSL_INJECT_FAULT names:
    first   the first member this process trains, in every epoch it is in the pack
    marked  every member whose key contains "bad"
or, for GZSL_INJECT_FAULT=wrong-epoch-graph, training epochs are "captured" on the CPU by a wrong
stand-in for a CUDA graph (its replays reuse the inputs it was captured with), which the fast
paths' self-check (gzsl.fastpaths) must catch.
"""

import importlib.abc
import importlib.util
import os
import sys

MODE = os.environ.get("GZSL_INJECT_FAULT", "")
MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (injected by tests/inject)"


def _faulty(keys: list[str], seen: list[str]) -> bool:
    if MODE == "first":
        if not seen and keys:
            seen.append(keys[0])
        return bool(seen) and seen[0] in keys
    return MODE == "marked" and any("bad" in k for k in keys)


class _StaleGraph:
    """A CUDA graph's mistake on a CPU: replays rerun the work on the inputs of the capture."""

    def __init__(self, fn, inputs):
        self.fn, self.inputs = fn, [t.clone() for t in inputs]

    @classmethod
    def capture(cls, what, fn, inputs):
        return cls(fn, inputs)

    def __call__(self, *inputs):
        return self.fn(*self.inputs)


def _wrong_epoch_graph(module) -> None:
    graphs, fastpaths = module.graphs, module.fastpaths
    graphs.wanted = lambda device, what: what == module.TRAINING_EPOCH and fastpaths.usable(what)
    graphs.on_side_stream = lambda fn, *args: fn(*args)
    graphs.Graph = _StaleGraph


def _patch(module) -> None:
    if MODE == "wrong-epoch-graph":
        return _wrong_epoch_graph(module)
    run_epoch, seen = module.Pack.run_epoch, []

    def run_epoch_with_fault(self, *args, **kwargs):
        if _faulty([m.key for m in self.members], seen):
            raise RuntimeError(MESSAGE)
        return run_epoch(self, *args, **kwargs)

    module.Pack.run_epoch = run_epoch_with_fault


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "gzsl.training":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


if MODE:
    sys.meta_path.insert(0, _PatchOnImport())
