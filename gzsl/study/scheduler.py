"""ASHA that stops no trial on noise: a rung judges only once its H says something.

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020) with
minimum resource r (`grace_period`, in epochs), reduction factor eta and maximum resource R
(`max_t`) has rungs at r * eta^k epochs, k = 0, 1, ... below R. A trial that reaches rung k is
recorded there and goes on (is promoted) if it ranks in the top 1/eta of the values recorded at
rung k so far; otherwise it stops. A promotion is never taken back.

Two guards keep a rung from stopping trials on numbers that do not yet rank them:

- **floor**: a rung whose best H is below `h_floor` stops nobody. Early in a run on slow data
  every trial sits at H 0-3 (a 12-trial, 30-epoch study on a realistic CUB-format set: 9 trials
  stopped at epoch 10 with H between 0.0 and 3.0; method.md's defaults reach H 52 there by epoch
  100), and the order among them is noise.
- **noise**: a trial is stopped only when its H is below the rung's cutoff (the top 1/eta
  quantile) by more than `h_noise`, the seed-to-seed spread of H (identical runs differ by 1-2 H,
  CADA-VAE's authors; docs/benchmarks.md measures it per preset). A rung whose spread is within
  the noise stops nobody; a rung with a clear leader still stops the clearly weak.

The leader of a rung is never stopped. The first rung's default comes after the warm-ups that
switch modality alignment on (`gzsl.defaults.first_rung`). The rung table is this module's own
(`Rungs`, plain Python): Tune saves no scheduler state, so a resumed run refills it from
epochs.parquet (`restore_rungs`).
"""

from __future__ import annotations

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from gzsl.study.trial import METRIC

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


class Rungs:
    """ASHA's rungs and the H each trial recorded at each; decides promotions. No Ray."""

    def __init__(self, grace_period: int, reduction_factor: int, max_t: int, h_floor: float = 0.0,
                 h_noise: float = 0.0):
        self.eta, self.h_floor, self.h_noise = reduction_factor, h_floor, h_noise
        self.milestones = []  # epochs of the rungs, lowest first
        m = grace_period
        while m < max_t:
            self.milestones.append(m)
            m *= reduction_factor
        self.recorded: dict[int, dict[str, float]] = {m: {} for m in self.milestones}
        self.stopped = 0

    def on_result(self, trial_id: str, epoch: int, h: float) -> str:
        """An evaluated epoch of a trial: at the highest rung it has reached and not yet been
        judged at, record its H and decide. Any other epoch: CONTINUE."""
        for m in reversed(self.milestones):
            if epoch >= m:
                if trial_id in self.recorded[m]:
                    return CONTINUE
                action = self.judge(m, h)
                self.recorded[m][trial_id] = h
                self.stopped += action == STOP
                return action
        return CONTINUE

    def judge(self, milestone: int, h: float) -> str:
        """STOP only when the rung says something (its best H, this trial's included, reaches the
        floor) and this H is below the top-1/eta cutoff by more than the noise."""
        values = [*self.recorded[milestone].values(), h]
        if h >= max(values) or max(values) < self.h_floor:
            return CONTINUE
        cutoff = float(np.nanpercentile(values, (1 - 1 / self.eta) * 100))
        return STOP if h < cutoff - self.h_noise else CONTINUE

    def record(self, trial_id: str, epochs_h: list[tuple[int, float]]) -> None:
        """A trial that ended before a resume: at each rung it reached, the first H at or after
        the rung's epoch, as on_result recorded it."""
        for m in self.milestones:
            reached = [h for e, h in sorted(epochs_h) if e >= m]
            if reached:
                self.recorded[m].setdefault(trial_id, reached[0])


class NoiseAwareASHA(FIFOScheduler):
    """Tune's side of `Rungs`: reads validation H from each result (epochs without evaluation
    carry none and pass), stops the trials the rungs stop."""

    def __init__(self, *, max_t: int, grace_period: int, reduction_factor: int, h_floor: float, h_noise: float,
                 time_attr: str = "training_iteration", metric: str = METRIC):
        super().__init__()
        self.rungs = Rungs(grace_period, reduction_factor, max_t, h_floor, h_noise)
        self.time_attr, self.metric_name = time_attr, metric

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return metric in (None, self.metric_name) and mode in (None, "max")

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.metric_name not in result:
            return CONTINUE
        return self.rungs.on_result(trial.trial_id, int(result[self.time_attr]), float(result[self.metric_name]))

    def debug_string(self) -> str:
        filled = ", ".join(f"{m}: {len(r)}" for m, r in self.rungs.recorded.items())
        return f"NoiseAwareASHA: rungs (epoch: trials) {filled}; stopped {self.rungs.stopped}"

    def restore_rungs(self, epochs, ended: set[str]) -> int:
        """Refill the rungs from epochs.parquet after a resume with each trial that `ended`
        (trials.parquet). Returns how many trials."""
        scored = epochs[epochs.trial_id.isin(ended)].dropna(subset=[METRIC])
        for trial_id, e in scored.groupby("trial_id"):
            self.rungs.record(trial_id, list(zip(e.epoch.astype(int), e[METRIC].astype(float))))
        return scored.trial_id.nunique()
