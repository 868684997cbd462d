"""Tune's side of a study's early stopping: RuleScheduler feeds a stopping rule
(gzsl.selection.StoppingRule: Halving, ASHA over data-trusted rungs with the noise guards, or
NoStopping) each evaluated epoch and stops the trials it stops. The rule is plain Python: Tune
saves no scheduler state, so a resumed run refills it from epochs.parquet (`restore_rungs`)."""

from __future__ import annotations

import logging
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from gzsl.selection import STOP, Halving, StoppingRule
from gzsl.study.trial import METRIC

_log = logging.getLogger(__name__)  # progress lines: gzsl.tune prints the `gzsl` logger

CONTINUE = TrialScheduler.CONTINUE


class RuleScheduler(FIFOScheduler):
    """Reads validation H from each result (epochs without evaluation carry none and pass) and
    stops the trials the rule stops."""

    def __init__(self, rule: StoppingRule, time_attr: str = "training_iteration", metric: str = METRIC):
        super().__init__()
        self.policy = rule
        self.time_attr, self.metric_name = time_attr, metric
        self.announced: set[int] = set()

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return metric in (None, self.metric_name) and mode in (None, "max")

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.metric_name not in result:
            return CONTINUE
        decision = self.policy.on_result(trial.trial_id, int(result[self.time_attr]), float(result[self.metric_name]))
        for rung in set(self.policy.judging) - self.announced:
            self.announced.add(rung)
            a = self.policy.agreement(rung)
            _log.info(f"ASHA: rung {rung} now judges ({len(self.policy.recorded[rung])} trials reached it"
                + (f"; its order agrees with the end: Spearman >= {a:.2f}" if a == a else "") + ")")
        return TrialScheduler.STOP if decision == STOP else CONTINUE

    def debug_string(self) -> str:
        return f"{type(self.policy).__name__}: rungs (epoch: trials) {self.policy.describe()}; stopped {len(self.policy.stopped)}"

    def restore_rungs(self, epochs, ended: set[str], stopped: set[str] = frozenset()) -> int:
        """Refill the rule from epochs.parquet after a resume with each trial that `ended`
        (trials.parquet; `stopped`: those it stopped). Returns how many trials."""
        scored = epochs[epochs.trial_id.isin(ended)].dropna(subset=[METRIC])
        for trial_id, e in scored.groupby("trial_id"):
            self.policy.record(trial_id, list(zip(e.epoch.astype(int), e[METRIC].astype(float))),
                               stopped=trial_id in stopped)
        return scored.trial_id.nunique()


def NoiseAwareASHA(*, max_t: int, eval_every: int, reduction_factor: int, h_floor: float, h_noise: float,
                   grace_period: int | None = None) -> RuleScheduler:
    """The study's scheduler: ASHA over data-trusted rungs with the noise guards (gzsl.selection.Halving)."""
    return RuleScheduler(Halving(max_t, eval_every, reduction_factor, h_floor, h_noise, grace_period=grace_period))
