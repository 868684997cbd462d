"""Replay recorded learning curves through the stopping policy (gzsl.selection), with trials
arriving asynchronously, to price a rule in trial-epochs and in the H it loses before any study
runs. No Ray, no torch: a replay of a 64-trial study takes milliseconds.

Curves file format (JSON lines, one configuration per line; benchmarks/record_curves.py writes it):

    {"params": {"alpha": 1.0, "lam": 2.37, ...}, "curve": [[5, 0.0], [10, 13.4], ..., [100, 59.6]]}

`curve` is validation H at each evaluated epoch, every `k` epochs (2, 5, 10, ...), ending at the
last epoch of the run; other keys (dataset, val_split, seed, seconds) are kept but not read. A rung
between evaluations is judged on the next evaluation at or after it, as the live scheduler judges.

A replay resamples a study of `trials` configurations (with replacement), starts them in that
order on `slots` parallel slots, each trial at its own speed (an arrival order), and lets the
policy stop them. It reports:

- cost: trial-epochs trained divided by those of no stopping;
- regret: the best final H among the study's configurations minus the final H of the one the
  policy keeps with the highest H at its last evaluated epoch (the trials that reached the end; no
  confirmation in a replay); never negative;
- wrongful stops: stopped trials whose final H beats that kept one's by more than h_noise.
"""

from __future__ import annotations

import heapq
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gzsl.errors import ConfigError
from gzsl.selection import AUDIT_CAP, STOP, Halving, audited, wrongful


@dataclass(frozen=True)
class Curve:
    params: dict
    points: tuple[tuple[int, float], ...]  # (epoch, validation H), epochs increasing

    @property
    def epochs(self) -> int:
        return self.points[-1][0]

    @property
    def final(self) -> float:
        return self.points[-1][1]

    @property
    def every(self) -> int:
        return self.points[1][0] - self.points[0][0] if len(self.points) > 1 else self.points[0][0]


def read_curves(path: str | Path) -> list[Curve]:
    """A curves file; a line that does not hold a curve is refused, naming file and line."""
    curves = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            points = tuple((int(e), float(h)) for e, h in row["curve"])
            params = dict(row.get("params", {}))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}:{n}: not a curve line ({e}); expected "
                              '{"params": {...}, "curve": [[epoch, H], ...]}') from None
        if not points or any(b[0] <= a[0] for a, b in zip(points, points[1:])):
            raise ConfigError(f"{path}:{n}: curve epochs must be given and increase")
        curves.append(Curve(params, points))
    if not curves:
        raise ConfigError(f"{path}: no curves")
    if len({c.epochs for c in curves}) > 1:
        raise ConfigError(f"{path}: curves end at different epochs {sorted({c.epochs for c in curves})}")
    return curves


@dataclass(frozen=True)
class Outcome:
    cost: float  # trial-epochs / trial-epochs without stopping
    regret: float  # best final H in the study minus the kept choice's final H
    wrongful: int  # stopped trials whose final H beats the kept choice's by more than h_noise
    stopped: int
    chosen_final: float
    best_final: float
    stop_epochs: tuple[int, ...]  # the epoch each stopped trial stopped at
    audited: int = 0  # stops retrained to the end by the audit (gzsl.selection.audited)
    audit_found: int = 0  # of those, the ones whose final H beats the kept choice's by more than h_noise
    audit_cost: float = 0.0  # the audit's trial-epochs over those of no stopping (included in cost)


def replay(curves: list[Curve], policy: Callable[[int, int], Halving], trials: int = 64, slots: int = 4,
           seed: int = 0, audit: float = 0.0, audit_cap: float = AUDIT_CAP, order: list[int] | None = None,
           speeds: list[float] | None = None) -> Outcome:
    """One study: `trials` configurations resampled from `curves` with `seed`, on `slots` slots.
    `policy(epochs, eval_every)` builds the policy (a fresh one per replay). `audit`: the fraction
    of stops retrained to the end after the search (gzsl.selection.audited), their epochs counted
    in the cost, their final H compared with the kept choice's. `order` (indices into `curves`, in
    the order trials start) and `speeds` (epochs per time unit, one a trial) replace the draws: an
    arrival order written out by hand."""
    rng = random.Random(seed)
    study = [curves[i] for i in order] if order is not None else [rng.choice(curves) for _ in range(trials)]
    trials = len(study)
    speed = list(speeds) if speeds is not None else [rng.uniform(0.7, 1.3) for _ in range(trials)]
    epochs, every = study[0].epochs, min(c.every for c in curves)
    halving = policy(epochs, every)
    events: list[tuple[float, int, int]] = []  # (time, trial, index of the point it reaches)
    started = trained = 0
    ended_at: dict[int, int] = {}
    stop_order: list[int] = []

    def start(i: int, now: float) -> None:
        e0 = study[i].points[0][0]
        heapq.heappush(events, (now + e0 / speed[i], i, 0))

    while started < min(slots, trials):
        start(started, 0.0)
        started += 1
    while events:
        now, i, k = heapq.heappop(events)
        epoch, h = study[i].points[k]
        if halving.on_result(str(i), epoch, h) == STOP or k + 1 == len(study[i].points):
            ended_at[i] = epoch
            if k + 1 < len(study[i].points):
                stop_order.append(i)
            trained += epoch
            if started < trials:
                start(started, now)
                started += 1
            continue
        nxt = study[i].points[k + 1][0]
        heapq.heappush(events, (now + (nxt - epoch) / speed[i], i, k + 1))

    kept = [i for i in range(trials) if ended_at[i] == epochs]
    chosen = max(kept, key=lambda i: study[i].final)
    best = max(c.final for c in study)
    stops = [i for i in range(trials) if ended_at[i] < epochs]
    wrongs = sum(study[i].final > study[chosen].final + halving.h_noise for i in stops)
    picked = [int(t) for t in audited([str(i) for i in stop_order], trained, epochs, audit, audit_cap)]
    found = wrongful({str(i): study[i].final for i in picked}, study[chosen].final, halving.h_noise)
    full = trials * epochs
    return Outcome((trained + len(picked) * epochs) / full, best - study[chosen].final, wrongs, len(stops),
                   study[chosen].final, best, tuple(ended_at[i] for i in stops), len(picked), len(found),
                   len(picked) * epochs / full)


@dataclass(frozen=True)
class Summary:
    orders: int
    cost: float  # mean over orders
    cost_max: float
    regret: float  # mean
    regret_max: float
    wrongful: int  # over all orders
    orders_wrongful: int  # orders with at least one wrongful stop
    stopped: float  # mean stopped trials per study


def summarize(curves: list[Curve], policy: Callable[[int, int], Halving], orders: int = 200, trials: int = 64,
              slots: int = 4, seed: int = 0) -> Summary:
    """`orders` replays (seeds seed, seed + 1, ...): each resamples its study and arrival order."""
    out = [replay(curves, policy, trials, slots, seed + s) for s in range(orders)]
    return Summary(orders, sum(o.cost for o in out) / orders, max(o.cost for o in out),
                   sum(o.regret for o in out) / orders, max(o.regret for o in out),
                   sum(o.wrongful for o in out), sum(o.wrongful > 0 for o in out),
                   sum(o.stopped for o in out) / orders)
