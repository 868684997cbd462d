"""Replay recorded learning curves through the study's stopping policy: cost and regret.

    python benchmarks/replay.py benchmarks/measured/curves-cub-sim-100ep-val0.jsonl
    python benchmarks/replay.py benchmarks/measured/curves-*.jsonl --trials 128 --slots 8 --orders 500

For each curves file (format: gzsl.replay's docstring; benchmarks/record_curves.py writes them),
replays `--orders` studies of `--trials` configurations resampled from the file, each with its own
arrival order on `--slots` parallel slots, through:

- fixed: ASHA with the noise guards and one rung at the alignment warm-ups' end (the rule the
  data-decided rungs replace);
- candidates, no evidence: every candidate rung judging from the first trial (what trust buys);
- trusted: the shipped policy (gzsl.selection.Halving: candidate rungs halving down from the
  alignment rung, each judging once the study's trials show its order agrees with the end);
- any --fixed-rungs given (e.g. "20,60": those rungs, trusted without evidence; for comparison).

and prints per policy: cost (trial-epochs / those of no stopping; mean and worst), regret (best
final H in the study minus the final H of the kept trial with the highest last H; mean and worst),
wrongful stops (stopped trials ending more than h_noise above that kept one; total, and the orders
with any) and stops per study. Targets (issue 40): cost <= 0.4, mean regret <= 1 H, no wrongful stop.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gzsl import selection  # noqa: E402
from gzsl.errors import GzslError  # noqa: E402
from gzsl.replay import read_curves, summarize  # noqa: E402


class FixedRungs(selection.Halving):
    """Rungs at the given epochs (on the evaluation grid; default: the candidates), all trusted
    without evidence."""

    def __init__(self, epochs, eval_every, at=None, **kw):
        super().__init__(epochs, eval_every, **kw)
        if at is not None:
            self.rungs = sorted({selection.on_grid(m, eval_every, epochs) for m in at} - {epochs})
            self.recorded = {m: {} for m in self.rungs}

    def trusted(self, rung):
        return True


def policies(args) -> dict:
    guards = {"reduction_factor": args.reduction_factor, "h_floor": args.h_floor, "h_noise": args.h_noise}
    out = {"fixed (alignment rung)": lambda e, k: FixedRungs(e, k, at=[selection.alignment_rung(e, k)], **guards),
           "candidates, no evidence": lambda e, k: FixedRungs(e, k, **guards),
           "trusted (shipped)": lambda e, k: selection.Halving(e, k, trust=args.trust, trust_trials=args.trust_trials,
                                                               **guards)}
    for spec in args.fixed_rungs:
        out[f"fixed {spec}"] = partial(lambda e, k, at: FixedRungs(e, k, at=at, **guards),
                                       at=[int(x) for x in spec.split(",")])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("curves", nargs="+", type=Path, help="curves files (JSON lines)")
    p.add_argument("--trials", type=int, default=64, help="configurations per replayed study (resampled)")
    p.add_argument("--orders", type=int, default=200, help="replayed studies (arrival orders) per file and policy")
    p.add_argument("--slots", type=int, default=4, help="trials in flight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reduction-factor", type=int, default=3)
    p.add_argument("--h-floor", type=float, default=selection.H_FLOOR)
    p.add_argument("--h-noise", type=float, default=selection.H_NOISE)
    p.add_argument("--trust", type=float, default=selection.TRUST)
    p.add_argument("--trust-trials", type=int, default=selection.TRUST_TRIALS)
    p.add_argument("--fixed-rungs", action="append", default=[], help='e.g. "20,60": also replay these rungs')
    args = p.parse_args()
    try:
        sets = [(path, read_curves(path)) for path in args.curves]
    except GzslError as e:
        sys.exit(f"error: {e}")
    for path, curves in sets:
        best = max(curves, key=lambda c: c.final)
        print(f"\n{path.name}: {len(curves)} configurations, {curves[0].epochs} epochs, H every {curves[0].every}; "
              f"best final H {best.final:.1f}; {args.orders} orders of {args.trials} trials on {args.slots} slots")
        rungs = selection.rung_epochs(curves[0].epochs, curves[0].every)
        print(f"candidate rungs {rungs} (the highest judges once {args.trust_trials} trials reached it)")
        print(f"{'policy':<24} {'cost':>5} {'worst':>6} | {'regret':>6} {'worst':>6} | {'wrongful':>8} {'orders':>6}"
              f" | {'stops':>5}")
        for name, policy in policies(args).items():
            s = summarize(curves, policy, args.orders, args.trials, args.slots, args.seed)
            print(f"{name:<24} {s.cost:5.2f} {s.cost_max:6.2f} | {s.regret:6.2f} {s.regret_max:6.2f} | "
                  f"{s.wrongful:8d} {s.orders_wrongful:6d} | {s.stopped:5.1f}")


if __name__ == "__main__":
    main()
