"""Fast paths that check themselves where they first run.

Three ways of computing faster what the eager code computes, on by default on CUDA: a training
epoch and a classifier epoch as captured CUDA graphs (gzsl.graphs), and Adam's update of a pack in
one compiled call (gzsl.optim). They first run on a user's GPU, so the first time each runs in a
process, `run` runs it beside the eager path on the same starting state and compares the two: the
outputs (an epoch's loss sums, a classifier's scores) and every tensor the work changes (weights,
Adam's moments and step counts). On a mismatch or an error the process keeps the eager result and
uses the eager path from then on; `path` says so, and every trial reports its path (its epoch
metrics, trials.parquet's `path`, the driver's trial line, the report).

Tolerance. Both paths do the same arithmetic, but not bit for bit in the same order (a compiled
kernel fuses; a GPU's atomic adds sum in any order), and the differences grow over the steps of an
epoch. A tensor is compared by its change: |after_fast - after_eager| / |after_eager - before| at
most STATE_TOLERANCE (1%); outputs relatively, at most OUTPUT_TOLERANCE (0.1%). Measured where it
can be: the one-call update against torch's per-member kernel agrees to 1e-6 after a step and 1e-3
of the loss after two epochs (tests/test_fast_paths.py). A wrong path misses by far more: an empty
graph or stale inputs change nothing or the wrong thing (ratio ~1), and one step of an epoch's
~150 left out moves its loss sum by ~0.7%.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

STATE_TOLERANCE = 1e-2
OUTPUT_TOLERANCE = 1e-3
TRAINING_GRAPH, CLASSIFIER_GRAPH, ONE_CALL_ADAM = "epoch-graph", "classifier-graph", "one-call-adam"
# A cache, per process (a fast path is checked once in the process that runs it, on its device):
# fast path -> "ok", or why this process runs it eagerly.
_verdicts: dict[str, str] = {}


def due(what: str) -> bool:
    """Whether `what` has yet to be checked in this process (and may be: never while a CUDA graph
    captures, since the check reads values back)."""
    capturing = torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
    return what not in _verdicts and not capturing


def usable(what: str) -> bool:
    """Whether `what` may run: unchecked yet, or checked and found right."""
    return _verdicts.get(what, "ok") == "ok"


def fail(what: str, why: str) -> None:
    """`what` runs eagerly for the rest of the process, because `why` (said once)."""
    if usable(what):
        _verdicts[what] = why
        warnings.warn(f"{what}: {why}; running it eagerly in this process", stacklevel=3)


def fallbacks() -> dict[str, str]:
    """The fast paths this process gave up on, and why."""
    return {what: why for what, why in _verdicts.items() if why != "ok"}


def path(used: list[str]) -> str:
    """A trial's path: the fast paths in `used` joined by "+" ("eager" for none), then what this
    process fell back from, e.g. "one-call-adam+classifier-graph; fell back: epoch-graph (...)"."""
    said = "+".join(used) or "eager"
    fell = fallbacks()
    return said + ("; fell back: " + "; ".join(f"{w} ({why})" for w, why in fell.items()) if fell else "")


def run(what: str, state: list[torch.Tensor], fast: Callable[[], object], eager: Callable[[], object]):
    """fast() checked against eager(): both run from the same `state` (every tensor the work
    changes in place); fast's outputs when they agree, else eager's, with `state` as eager left it
    and `what` given up on in this process. Outputs: a tensor, a dict or list of them, or None."""
    before = _copies(state)
    expected = _copies(eager())
    after_eager = _copies(state)
    _load(state, before)
    try:
        got = fast()
        problem = _difference(_flat(expected), _flat(got), "output", OUTPUT_TOLERANCE, _relative) or \
            _difference(after_eager, list(state), "state", STATE_TOLERANCE, _change(before))
    except Exception as e:  # noqa: BLE001 - any failure of the fast path leaves the eager result
        problem = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if problem is None:
        _verdicts[what] = "ok"
        return got
    _load(state, after_eager)
    fail(what, f"differs from the eager path, {problem}" if not problem.startswith("failed") else problem)
    return expected


def _copies(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, dict):
        return {k: _copies(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_copies(v) for v in x]
    return x


def _flat(x) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, dict):
        return [t for k in sorted(x) for t in _flat(x[k])]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _flat(v)]
    return []


def _load(state: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for t, s in zip(state, saved):
            t.copy_(s)


def _relative(i: int, want: torch.Tensor, got: torch.Tensor) -> float:
    return float((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-12))


def _change(before: list[torch.Tensor]):
    """The error of a changed tensor relative to how much the eager path changed it."""
    def error(i: int, want: torch.Tensor, got: torch.Tensor) -> float:
        moved = (want.double() - before[i].double()).norm()
        scale = torch.maximum(moved, 1e-6 * want.double().norm()).clamp_min(1e-12)
        return float((got.double() - want.double()).norm() / scale)
    return error


def _difference(want: list[torch.Tensor], got: list[torch.Tensor], kind: str, tolerance: float, error) -> str | None:
    """None when every tensor of `got` is within `tolerance` of `want`, else the worst one said."""
    if len(want) != len(got) or any(w.shape != g.shape for w, g in zip(want, got)):
        return f"{kind} shapes {[tuple(w.shape) for w in want]} != {[tuple(g.shape) for g in got]}"
    worst, at = 0.0, -1
    for i, (w, g) in enumerate(zip(want, got)):
        e = error(i, w, g)
        if not e <= worst:  # a NaN is worst of all
            worst, at = e, i
            if e != e:
                break
    if worst <= tolerance:
        return None
    return f"{kind} tensor {at} off by {worst:.2g} (tolerance {tolerance:g})"
