"""Test-only fault injection, loaded by every Python process started with this folder on PYTHONPATH
(the study's driver, and Ray's workers, which inherit its environment). Once gzsl.training is
imported, Pack.run_epoch raises the way a CUDA out-of-memory would for the members
GZSL_INJECT_FAULT names:
    first   the first member this process trains, in every epoch it is in the pack
    marked  every member whose key contains "bad"
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


def _patch(module) -> None:
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
