"""ASHA that re-checks the rungs a trial passed, and refills them after a resume."""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from gzsl.study.trial import METRIC


class RungCheckedASHA(ASHAScheduler):
    """ASHA that keeps a trial going only while it ranks in the top 1/reduction_factor of the
    highest rung it has reached.

    Ray's asynchronous ASHA judges a trial once, when it reaches a rung, against the trials
    recorded there so far: the first trials of a study pass against one or two rivals (or none)
    and then run to the end even when the rung, filled later, shows them to be in its bottom two
    thirds. ASHA's rule (Li et al., 2020) promotes only the top 1/eta of a rung; here each result
    re-checks the trial's highest rung with everything recorded there since, and stops it once it
    has fallen below the cutoff. Lower rungs are never re-checked: ASHA promotes from a rung and
    never demotes a trial that has since proved itself higher up (a trial good late and middling
    early is not stopped because later trials filled its first rung with better early values),
    and the trial that leads its highest rung is never stopped."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action != TrialScheduler.CONTINUE or trial.trial_id not in self._trial_info:
            return action
        bracket = self._trial_info[trial.trial_id]
        highest = next((recorded for _, recorded in bracket._rungs if trial.trial_id in recorded), None)
        if highest is None:  # rungs run from the highest milestone down
            return action
        mine = highest[trial.trial_id]
        leads = mine >= max(highest.values())
        if not leads and mine < bracket.cutoff(highest):
            self._num_stopped += 1
            return TrialScheduler.STOP
        return action

    def restore_rungs(self, epochs, ended: set[str]) -> int:
        """Refill the rungs from epochs.parquet after a resume: Tune saves no scheduler state, so a
        restored ASHA starts with empty rungs and the trials it reruns pass them with no rival.
        Each trial that `ended` (trials.parquet) is recorded at every rung it reached, with the
        first H at or after the rung's epoch, as ASHA recorded it. Returns how many trials."""
        scored = epochs[epochs.trial_id.isin(ended)].dropna(subset=[METRIC]).sort_values("epoch")
        for bracket in self._brackets:
            for milestone, recorded in bracket._rungs:
                reached = scored[scored.epoch >= milestone].groupby("trial_id")[METRIC].first()
                for trial_id, h in reached.items():
                    recorded.setdefault(trial_id, self._metric_op * float(h))
        return scored.trial_id.nunique()
