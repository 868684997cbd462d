"""Test-only fault injection, loaded by every Python process started with this folder on PYTHONPATH
(the study's driver, and Ray's workers, which inherit its environment). Once gzsl.trainer is
imported, Pack.run_epoch raises the way a CUDA out-of-memory would for the members
GZSL_INJECT_FAULT names:
    first   the first member this process trains, in every epoch it is in the pack
    marked  every member whose key contains "bad"
    every   every member, in every epoch (executors go out of rotation until Ray's restarts are spent)
    latent-N  every member of latent size N (a configuration that cannot be allocated, within the bounds)
or, for GZSL_INJECT_FAULT=wrong-epoch-graph, training epochs are "captured" on the CPU by a wrong
stand-in for a CUDA graph (its replays reuse the inputs it was captured with), which the fast
paths' self-check (gzsl.fastpaths) must catch.

Holds, which make a test's order of events certain whatever the machine's speed (each waits at most
HOLD_LIMIT seconds, then lets go):
    hold-after      while the file GZSL_INJECT_HOLD_AFTER holds a number N: once the folder
                    GZSL_INJECT_HOLD (a study's trials.parquet) has N parts, epochs wait: a study
                    cannot end before the test has stopped it. (A file, not the environment: a
                    test may set it after its Ray's workers have started.)
    hold-while      every epoch waits while the file GZSL_INJECT_HOLD exists, first writing
                    GZSL_INJECT_HOLD.held-<pid> (the test sees which processes wait)
    hold-first-pack the first process to train an epoch waits while the file GZSL_INJECT_HOLD exists;
                    any other deletes it at its first epoch: the second executor trains a member
                    before the first can finish the study
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
    if MODE == "every":
        return bool(keys)
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


HOLD_LIMIT = 600.0


def _hold_while(condition) -> None:
    import time
    deadline = time.monotonic() + HOLD_LIMIT
    while condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def _number(path: str) -> float:
    try:
        with open(path) as f:
            return float(f.read())
    except (OSError, ValueError):  # gone, or being written
        return float("inf")


def _held(module) -> None:
    run_epoch, first = module.Pack.run_epoch, []
    hold = os.environ["GZSL_INJECT_HOLD"]

    def parts() -> int:
        return len([f for f in os.listdir(hold) if f.startswith("part-")]) if os.path.isdir(hold) else 0

    def run_epoch_held(self, *args, **kwargs):
        if MODE == "hold-after":
            _hold_while(lambda: parts() >= _number(os.environ["GZSL_INJECT_HOLD_AFTER"]))
        elif MODE == "hold-while":
            if os.path.exists(hold):
                open(f"{hold}.held-{os.getpid()}", "w").close()
            _hold_while(lambda: os.path.exists(hold))
        elif self.members:
            if not first:  # this process's first epoch: is it the first process to train?
                try:
                    os.close(os.open(hold + ".first", os.O_CREAT | os.O_EXCL))
                    first.append(True)
                except FileExistsError:
                    first.append(False)
            if first[0]:
                _hold_while(lambda: os.path.exists(hold))
            elif os.path.exists(hold):
                os.remove(hold)
        return run_epoch(self, *args, **kwargs)

    module.Pack.run_epoch = run_epoch_held


def _patch(module) -> None:
    if MODE == "wrong-epoch-graph":
        return _wrong_epoch_graph(module)
    if MODE.startswith("hold"):
        return _held(module)
    run_epoch, seen = module.Pack.run_epoch, []

    def run_epoch_with_fault(self, *args, **kwargs):
        if _faulty([m.key for m in self.members], seen) or (
                MODE.startswith("latent-") and any(m.config.latent_size == int(MODE[7:]) for m in self.members)):
            raise RuntimeError(MESSAGE)
        return run_epoch(self, *args, **kwargs)

    module.Pack.run_epoch = run_epoch_with_fault


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "gzsl.trainer":
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
