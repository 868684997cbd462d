"""The study's early-stopping policy, without Ray or torch: where the rungs sit, when a rung may
judge, and whom it stops. The scheduler (gzsl.study.scheduler) adapts it to Tune, the report draws
its rungs, and the replayer (gzsl.replay, benchmarks/replay.py) feeds it recorded learning curves.

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020): a trial that
reaches a rung is recorded there and goes on (is promoted) if it ranks in the top 1/eta of the
values recorded at that rung so far; otherwise it stops. A promotion is never taken back: a trial is
judged once per rung, on the first evaluation at or after the rung's epoch.

**Rungs decided from data.** Where H starts to rank configurations depends on the data: on
synth-cub validation H at 20% of the run already ranks like the final H (Spearman 0.89), on
cub-sim, which learns as slowly as real CUB, only from 30-40% (0.87, 0.93; 0.77 at 25%), and on
synth-small, whose best configuration dips during the warm-ups and overtakes the rest late, not
before 80% (0.85). A fixed fraction is either wasteful on one or reckless on another. So a study
lays out candidate rungs (`rung_epochs`: the first evaluation after the alignment warm-ups end, and
its divisions by eta down to `grace_period`, as ASHA spaces rungs), and a rung judges only once
the study's own trials show that its order agrees with the end. This is the idea of PASHA (Bohdal
et al., "PASHA: Efficient HPO and NAS with Progressive Resource Allocation", ICLR 2023): let the
stability of the ranking between consecutive rungs, measured on the trials run so far, decide how
much budget a ranking needs, instead of a fixed schedule. PASHA uses it to grow the maximum
budget; here it decides the earliest rung at which stopping is safe.

A rung is **trusted** (then for good):

- the highest: once `trust_trials` trials have reached it (they go on unjudged). Its agreement
  with the end is the lower confidence bound of the Spearman correlation of H there with the final
  H over every trial that reached the end: mostly its survivors, so an order that is stable among
  the good trials, which is what a lower rung's stop must not disturb.
- a lower one: when the rung above it is trusted and, over the trials it let pass unjudged that
  reached the rung above (at least `trust_trials`), (a) the lower confidence bound of the Spearman
  correlation of their H here and there, times the agreement of the rung above with the end, is at
  least `trust` (along a Markov chain of rankings correlations multiply), and (b) its stop rule,
  with its current cutoff, would stop none of those within `h_noise` of the best H above: it would
  not have cut a winner. Trials that passed unjudged are the evidence: once a rung judges, the
  trials above it are its survivors, whose order says little about the ones it stopped.

The confidence bound (one-sided, `z`) keeps a small sample's lucky order from earning trust. No rule
on a sample can see a late bloomer the sample does not hold: benchmarks/replay.py prices what slips
through on recorded curves (docs/benchmarks.md, "Early stopping").

**Noise guards** (kept from the fixed-rung ASHA this replaces), at every rung:

- floor: a rung whose best H is below `h_floor` stops nobody. Early in a run on slow data every
  trial sits at H 0-3 and the order among them is noise.
- noise: a trial is stopped only when its H is below the rung's cutoff (the top 1/eta quantile) by
  more than `h_noise`, the seed-to-seed spread of H. The leader of a rung is never stopped.

The rung table is plain Python: Tune saves no scheduler state, so a resumed run refills it from
epochs.parquet (`Halving.record`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from gzsl.defaults import alignment_on

CONTINUE, STOP = "CONTINUE", "STOP"

H_FLOOR = 5.0  # a rung whose best H is below it stops nobody
H_NOISE = 2.0  # the seed-to-seed spread of H: a stop needs a gap beyond it
TRUST = 0.8  # the Spearman correlation with the final H a rung must show before it judges
TRUST_TRIALS = 6  # ... over at least this many trials it let pass unjudged (the highest rung: judges after them)
CONFIDENCE_Z = 1.28  # trust needs the correlation's one-sided 90% lower bound above `trust`
LOWEST_FRACTION = 0.1  # the lowest candidate rung's default, as a fraction of the run


AUDIT = 0.125  # one stop in eight is retrained to the end (gzsl.study.audit) ...
AUDIT_CAP = 0.1  # ... within this fraction of the study's trial-epochs (an audit at 1 audits every stop)


def audited(stops: list[str], trained_epochs: int, epochs: int, fraction: float = AUDIT,
            cap: float = AUDIT_CAP) -> list[str]:
    """Which stops (trial ids, in the order they stopped) an audit retrains to the end: every k-th,
    k = round(1 / fraction), each costing a whole run of `epochs`, while their epochs stay within
    `cap` of the study's `trained_epochs`; the cap wins, so a small study may audit none. fraction 0:
    none; 1: every stop, whatever it costs."""
    if fraction <= 0 or not stops:
        return []
    if fraction >= 1:
        return list(stops)
    k = max(1, round(1 / fraction))
    most = int(cap * trained_epochs // max(1, epochs))
    return [t for i, t in enumerate(stops) if (i + 1) % k == 0][:most]


def wrongful(audit_h: dict[str, float], chosen_h: float, h_noise: float) -> list[str]:
    """The audited stops whose H to the end beats the chosen trial's by more than h_noise: the
    rungs stopped a trial that would have won."""
    return [t for t, h in audit_h.items() if h is not None and h == h and h > chosen_h + h_noise]


def on_grid(epoch: float, eval_every: int, epochs: int) -> int:
    """The first evaluated epoch at or after `epoch` (a trial evaluates every `eval_every` epochs
    and at the last): where a rung at `epoch` is judged."""
    e = max(1, math.ceil(epoch - 1e-9))
    if eval_every > 1:
        e = -(-e // eval_every) * eval_every
    return min(e, epochs)


def alignment_rung(epochs: int, eval_every: int) -> int:
    """The first evaluated epoch after the alignment warm-ups end (gzsl.defaults.alignment_on):
    the highest candidate rung, which needs no agreement to be shown, only `trust_trials` trials."""
    return on_grid(max(1, alignment_on(epochs)), eval_every, epochs)


def lowest_rung(epochs: int, eval_every: int) -> int:
    """The default lowest candidate rung (a study's asha.grace_period): 10% of the run."""
    return on_grid(LOWEST_FRACTION * epochs, eval_every, epochs)


def rung_epochs(epochs: int, eval_every: int, reduction_factor: int = 3, grace_period: int | None = None) -> list[int]:
    """The candidate rungs, lowest first: the alignment rung and, as ASHA spaces them, its
    divisions by the reduction factor down to `grace_period`, each on the evaluation grid. A grace
    period at or past the alignment rung gives that one rung."""
    grace = lowest_rung(epochs, eval_every) if grace_period is None else grace_period
    top = alignment_rung(epochs, eval_every)
    if grace >= top:
        return [min(grace, epochs)] if grace < epochs else []
    rungs, m = {top}, top / reduction_factor
    while m >= grace - 1e-9:
        rungs.add(on_grid(m, eval_every, epochs))
        m /= reduction_factor
    return sorted(r for r in rungs if r < epochs)


def recipe_epochs(epochs: int, eval_every: int, rungs: list[int], peak_every: int = 0) -> tuple[int, ...]:
    """The epochs a trial scores validation H with the recipe: where a decision needs it (each
    candidate rung, judged on its first evaluated epoch; the last epoch, which TPE and the ranking
    read) and, for the refit epoch's peak, every `peak_every` epochs (0: nowhere else). One recipe
    costs about ten GPU epochs (docs/benchmarks.md, "Evaluation only where needed"), so an H that
    no decision reads is not computed."""
    points = {on_grid(r, eval_every, epochs) for r in rungs} | {epochs}
    if peak_every > 0:
        points |= set(range(peak_every, epochs + 1, peak_every))
    return tuple(sorted(p for p in points if 0 < p <= epochs))


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (ties take their mean rank); nan when either side is constant."""
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else math.nan


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman_lower(a: list[float], b: list[float], z: float) -> float:
    """A lower confidence bound on Spearman's correlation over these pairs: Fisher's z-transform
    with the standard error 1.06 / sqrt(n - 3) of Fieller, Hartley and Pearson (Biometrika, 1957);
    `z` is the normal quantile (1.28: one-sided 90%). A small sample's lucky order earns no trust."""
    rho, n = spearman(a, b), len(a)
    if n <= 3 or math.isnan(rho):
        return math.nan
    return math.tanh(math.atanh(max(-0.999999, min(0.999999, rho))) - z * 1.06 / math.sqrt(n - 3))


def quantile(values: list[float], q: float) -> float:
    """The q-quantile with linear interpolation (numpy's default)."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def would_stop(values: list[float], h: float, eta: int, h_floor: float, h_noise: float) -> bool:
    """ASHA's rule with the noise guards: stop `h` against the values a rung holds (h among them)
    only when the rung says something (its best reaches h_floor) and h is below the top-1/eta
    cutoff by more than h_noise. The leader is never stopped."""
    best = max(values)
    if h >= best or best < h_floor:
        return False
    return h < quantile(values, 1 - 1 / eta) - h_noise


class StoppingRule(Protocol):
    """What a study asks its early stopping (the scheduler seam): Tune's adapter
    (gzsl.study.scheduler.RuleScheduler) feeds a rule every evaluated epoch and acts on its answer.
    Halving (ASHA over data-trusted rungs) is the study's rule; NoStopping trains every trial to the
    end. Another rule (a Hyperband bracket, a median rule) is one more class with these members."""

    rungs: list[int]  # the epochs where it may stop a trial (the report draws them)
    recorded: dict[int, dict[str, float]]  # rung -> trial -> the H it was judged on
    stopped: dict[str, int]  # trial -> the rung that stopped it

    def on_result(self, trial_id: str, epoch: int, h: float) -> str:
        """An evaluated epoch of a trial: CONTINUE or STOP."""

    def record(self, trial_id: str, curve: list[tuple[int, float]], stopped: bool = False) -> None:
        """A trial that ended before a resume, with its evaluated (epoch, H): Tune saves no
        scheduler state, so a resumed run refills the rule from epochs.parquet."""

    @property
    def judging(self) -> list[int]:
        """The rungs that may stop trials now (the driver announces each once)."""

    def agreement(self, rung: int) -> float:
        """How far a judging rung's order agrees with the end (nan when unknown)."""

    def describe(self) -> str:
        """One line for Tune's status: each rung and what it holds."""


@dataclass
class NoStopping:
    """Every trial trains to the end: a FIFO search (the efficiency benchmark's baseline)."""

    rungs: list[int] = field(default_factory=list)
    recorded: dict[int, dict[str, float]] = field(default_factory=dict)
    stopped: dict[str, int] = field(default_factory=dict)

    def on_result(self, trial_id: str, epoch: int, h: float) -> str:
        return CONTINUE

    def record(self, trial_id: str, curve: list[tuple[int, float]], stopped: bool = False) -> None:
        pass

    @property
    def judging(self) -> list[int]:
        return []

    def agreement(self, rung: int) -> float:
        return math.nan

    def describe(self) -> str:
        return "none (every trial to the end)"


@dataclass
class Halving:
    """The policy of one study: asynchronous successive halving over data-trusted rungs.

    Feed it every evaluated epoch (`on_result`, which answers CONTINUE or STOP) and each trial's
    final H when it reaches the last epoch (`on_complete`)."""

    epochs: int
    eval_every: int = 1
    reduction_factor: int = 3
    h_floor: float = H_FLOOR
    h_noise: float = H_NOISE
    trust: float = TRUST
    trust_trials: int = TRUST_TRIALS
    grace_period: int | None = None
    z: float = CONFIDENCE_Z
    rungs: list[int] = field(init=False)
    recorded: dict[int, dict[str, float]] = field(init=False)  # rung -> trial -> H it was judged on
    final: dict[str, float] = field(init=False)  # trial -> H at the last epoch
    stopped: dict[str, int] = field(init=False)  # trial -> rung that stopped it
    _unjudged: dict[int, set[str]] = field(init=False)  # rung -> trials it recorded before it trusted itself
    _trusted: dict[int, float] = field(init=False)  # rung -> its agreement with the end, once trusted

    def __post_init__(self):
        self.rungs = rung_epochs(self.epochs, self.eval_every, self.reduction_factor, self.grace_period)
        self.recorded = {m: {} for m in self.rungs}
        self.final, self.stopped = {}, {}
        self._unjudged, self._trusted = {m: set() for m in self.rungs}, {}

    def on_result(self, trial_id: str, epoch: int, h: float) -> str:
        """An evaluated epoch of a trial: at the highest rung it has reached and not yet been
        judged at, record its H and decide; lower rungs it skipped are not judged. Any other
        epoch: CONTINUE."""
        if epoch >= self.epochs:
            self.on_complete(trial_id, h)
            return CONTINUE
        for m in reversed(self.rungs):
            if epoch >= m:
                if trial_id in self.recorded[m]:
                    return CONTINUE
                values = [*self.recorded[m].values(), h]
                self.recorded[m][trial_id] = h
                if not self.trusted(m):
                    self._unjudged[m].add(trial_id)  # passed unjudged: its later H is unbiased evidence
                    return CONTINUE
                if would_stop(values, h, self.reduction_factor, self.h_floor, self.h_noise):
                    self.stopped[trial_id] = m
                    return STOP
                return CONTINUE
        return CONTINUE

    def on_complete(self, trial_id: str, h: float) -> None:
        """A trial reached the last epoch with this H."""
        self.final[trial_id] = h

    def trusted(self, rung: int) -> bool:
        """May this rung stop trials now? The highest rung once it has recorded `trust_trials`
        trials (which go on unjudged: their final H measures its agreement with the end); a lower
        one once its order has been seen to agree with the end through the rungs above it (module
        docstring). Trust, once given, is kept."""
        if rung in self._trusted:
            return True
        if rung == self.rungs[-1]:
            if len(self._unjudged[rung]) >= self.trust_trials:
                self._trusted[rung] = math.nan  # trusted a priori; its agreement is measured as trials end
                return True
            return False
        above = self.rungs[self.rungs.index(rung) + 1]
        reach = self.agreement(above)
        pairs = [(self.recorded[rung][t], self.recorded[above][t]) for t in self._unjudged[rung]
                 if t in self.recorded[above]]
        if not reach >= self.trust or len(pairs) < self.trust_trials:
            return False
        here, there = [p[0] for p in pairs], [p[1] for p in pairs]
        agreement = spearman_lower(here, there, self.z) * reach
        values, best = list(self.recorded[rung].values()), max(there)
        if not agreement >= self.trust or any(
                would_stop(values, h, self.reduction_factor, self.h_floor, self.h_noise)
                for h, later in pairs if later >= best - self.h_noise):
            return False
        self._trusted[rung] = agreement
        return True

    def agreement(self, rung: int) -> float:
        """A trusted rung's estimated rank correlation with the final H (nan while unknown): for the
        highest, measured over the trials that reached the end (a lower confidence bound); below it, the
        product of the correlations along the chain of rungs above (for a Markov chain of rankings,
        the correlation of its ends)."""
        if rung not in self._trusted:
            return math.nan
        if rung != self.rungs[-1]:
            return self._trusted[rung]
        pairs = [(self.recorded[rung][t], self.final[t]) for t in self.recorded[rung] if t in self.final]
        if len(pairs) < self.trust_trials:
            return math.nan
        return spearman_lower([p[0] for p in pairs], [p[1] for p in pairs], self.z)

    def trusted_rungs(self) -> list[int]:
        """The rungs that may judge now, testing the untrusted ones on the evidence so far (which may
        trust them): the state at a study's end, as the report shows it."""
        return [m for m in self.rungs if self.trusted(m)]

    @property
    def judging(self) -> list[int]:
        """The rungs trusted so far, without testing any: what a trial arriving now meets. Read-only,
        so a reader (the scheduler's progress lines) never trusts a rung earlier than a replay would."""
        return [m for m in self.rungs if m in self._trusted]

    def record(self, trial_id: str, curve: list[tuple[int, float]], stopped: bool = False) -> None:
        """A trial that ended before a resume, with its evaluated (epoch, H): at each rung it
        reached, the first H at or after the rung's epoch, as on_result recorded it; its final H
        when it reached the last epoch; the highest rung it reached as its stop when `stopped`. Each
        counts as evidence (as if it passed unjudged), though some were judged before the
        interruption: their order is survivors', which agrees less, so a resumed study trusts no
        more than it did."""
        curve = sorted(curve)
        for m in self.rungs:
            reached = [h for e, h in curve if e >= m]
            if reached and trial_id not in self.recorded[m]:
                self.recorded[m][trial_id] = reached[0]
                self._unjudged[m].add(trial_id)
        if curve and curve[-1][0] >= self.epochs:
            self.final[trial_id] = curve[-1][1]
        elif stopped and curve:
            rung = max((m for m in self.rungs if curve[-1][0] >= m), default=None)
            if rung is not None:
                self.stopped[trial_id] = rung

    def describe(self) -> str:
        trusted = set(self.judging)
        return ", ".join(f"{m}{'' if m in trusted else ' (untrusted)'}: {len(self.recorded[m])}" for m in self.rungs)

# --------------------------------------------------------------------------- the choice
# Which trial a study chooses and where its refit stops, from trials.parquet and confirm.parquet's
# rows (pandas tables; the scheduler, the confirmation, the refit, the report and the replayer all
# read these rules here).


def chosen_val_H(trial: dict) -> float:
    """The validation H a trial is ranked by: its best scored epoch's (best_val_H, at best_epoch).
    The refit stops at that epoch and scores it there (validation-chosen stopping), so this is the
    number its test score is set beside."""
    return trial["best_val_H"]


def refit_epoch(trial: dict, h_noise: float) -> int:
    """Where a refit (and a confirmation) of the trial stops and scores: its best validation epoch
    when H there is ahead of its last epoch's by more than h_noise, a peak the seed noise of H does
    not explain (docs/benchmarks.md, "Where validation H peaks": chosen configurations can lose 3 to
    13 H after their peak); otherwise the last epoch it trained, as the method's schedule scores. A
    peak within the noise of the end is no evidence for stopping early: the argmax of a flat, noisy
    curve is one more winner's curse. 0 (the schedule's last epoch) where the trial recorded none."""
    best, last = _epoch(trial.get("best_epoch")), _epoch(trial.get("epochs_run"))
    best_h, last_h = trial.get("best_val_H"), trial.get("last_val_H")
    if best and last > best and not _missing(best_h) and not _missing(last_h) and best_h - last_h <= h_noise:
        return last
    return best


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _epoch(epoch) -> int:
    return 0 if _missing(epoch) else int(epoch)


def ranked_trials(trials):
    """The trials a study may choose, best first: completed trials by validation H at their best
    epoch (ties: the earlier trial); pruned trials only when none completed."""
    done = trials[trials.status == "completed"]
    pool = done if not done.empty else trials[trials.status == "pruned"]
    pool = pool.dropna(subset=["best_val_H"])
    return pool.sort_values(["best_val_H", "trial_number"], ascending=[False, True])


def best_trial(trials) -> dict | None:
    """The search's best trial (the first of ranked_trials), None when no trial has a score."""
    pool = ranked_trials(trials)
    return pool.iloc[0].to_dict() if len(pool) else None


def finalists(trials, top: int) -> list[dict]:
    """The trials a study confirms on fresh validation splits: the `top` best of ranked_trials, and
    the defaults' trial wherever it ranks (it has a score unless it diverged or failed)."""
    pool = ranked_trials(trials)
    chosen = [r for _, r in pool.head(top).iterrows()]
    defaults = trials[(trials.start == "defaults") & trials.best_val_H.notna()]
    if len(defaults) and defaults.trial_id.iloc[0] not in {r["trial_id"] for r in chosen}:
        chosen.append(defaults.iloc[0])
    return [r.to_dict() for r in chosen]


def confirmed(trials, confirm, h_noise: float) -> tuple[dict | None, dict]:
    """The trial a study chooses, and each finalist's mean validation H over the fresh splits.

    Without confirmation rows: the search's best trial. With them, the defaults are the incumbent
    (SMAC's intensification, Hutter et al. 2011): the finalist with the best mean H over the
    splits every finalist completed replaces them only when ahead by more than h_noise, the
    study's seed noise of H; a finalist that diverged on a split is out. The search's own
    validation H is left out of the means: it is the maximum over the trials and over epochs,
    biased upward by that choice (the winner's curse of docs/benchmarks.md)."""
    if confirm is None or confirm.empty:
        return best_trial(trials), {}
    splits = sorted(confirm.val_split.unique())
    means = {}
    for tid, rows in confirm.groupby("trial_id"):
        if sorted(rows.val_split) == splits and (rows.status == "completed").all():
            means[tid] = float(rows.val_H.mean())
    if not means:
        return best_trial(trials), {}
    by_id = {r["trial_id"]: r for r in trials.to_dict("records")}
    defaults = next((t for t in means if by_id.get(t, {}).get("start") == "defaults"), None)
    challenger = max((t for t in means if t != defaults), key=lambda t: means[t], default=None)
    if defaults is None or (challenger is not None and means[challenger] > means[defaults] + h_noise):
        return by_id[challenger], means
    return by_id[defaults], means
