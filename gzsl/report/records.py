"""What each section of a report shows, computed from the Parquet tables alone
(no Ray, no torch): plain records first, figures elsewhere."""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import optuna
import pandas as pd

from gzsl import hyperparams, registry, selection
from gzsl.errors import NoResultsYet
from gzsl.results import ResultStore
from gzsl.selection import confirmed


def references(dataset: str) -> dict:
    """Published (U, S, H) per method on this dataset (docs/method.md, "Reference numbers"; the
    registry's row): none for a synthetic one."""
    row = registry.get(dataset)
    return dict(row.references) if row is not None else {}


class StudyResults(NamedTuple):
    name: str
    meta: dict  # the latest row of study.parquet (settings), {} when absent
    trials: pd.DataFrame
    epochs: pd.DataFrame
    final: pd.DataFrame
    confirm: pd.DataFrame = pd.DataFrame()  # the finalists on fresh validation splits (gzsl.study.confirm); empty: none
    audit: pd.DataFrame = pd.DataFrame()  # stopped trials retrained to the end (gzsl.study.audit); empty: none


def read_results(uri: str, name: str | None = None) -> StudyResults:
    store = ResultStore(uri)
    store.check_version()
    trials = store.read("trials")
    if trials.empty:
        raise NoResultsYet(f"{uri}: no trials.parquet results there; run a study first "
                        "(python -m gzsl.tune --study NAME) or pass --results to its folder")
    meta_df = store.read("study")
    meta = meta_df.sort_values("started_at").iloc[-1].to_dict() if not meta_df.empty else {}
    for key in ("space", "resources"):
        meta[key] = json.loads(meta[key]) if isinstance(meta.get(key), str) else {}
    trials = trials.sort_values("trial_number").reset_index(drop=True)
    epochs = store.read("epochs")
    epochs = epochs[epochs.trial_id.isin(trials.trial_id)]  # a trial's row commits its epochs (callback)
    return StudyResults(name or meta.get("study") or uri.rstrip("/").rsplit("/", 1)[-1], meta, trials,
                        epochs.sort_values(["trial_id", "epoch"]), store.read("final"),
                        store.read("confirm"), store.read("audit"))


class Summary(NamedTuple):
    study: str
    dataset: str
    split: str
    counts: dict  # status -> trials
    n_trials: int
    wall_seconds: float
    trial_epochs: int  # epochs actually trained
    full_epochs: int  # what every trial run to the end would have cost
    best: dict | None  # the chosen trial's row (selection.confirmed), None if no score
    defaults: dict | None  # the trial of method.md's defaults (the study's first), None if not run yet
    confirmed: dict  # trial id -> mean validation H over the fresh splits, {} without confirmation


def summary(r: StudyResults) -> Summary:
    t = r.trials
    max_epochs = int(r.meta.get("epochs") or t.epochs_run.max())
    wall = (t.ended_at.max() - t.started_at.min()).total_seconds() if len(t) else 0.0
    best, means = confirmed(t, r.confirm, noise(r.meta))
    return Summary(r.name, r.meta.get("dataset", "?"), r.meta.get("split", "?"),
                   t.status.value_counts().to_dict(), len(t), wall, int(t.epochs_run.sum()),
                   len(t) * max_epochs, best, defaults_trial(t), means)


class Cost(NamedTuple):
    """What the study spent, in trial-seconds (a packed trial counts its share of its executor's
    epochs: the epoch's seconds over the members training in it), and what stopping saved."""

    train_s: float  # the search's training
    eval_s: float  # the search's validation H
    saved_epochs: int  # trial-epochs the stopped trials did not train
    saved_s: float  # estimated: each stopped trial's remaining epochs and evaluations at its own mean cost
    confirm_s: float  # the confirmation's trainings
    refit_s: float  # the refit's
    audit_s: float = 0.0  # the audit's

    @property
    def spent_s(self) -> float:
        return self.train_s + self.eval_s


def cost(r: StudyResults) -> Cost:
    max_epochs = int(r.meta.get("epochs") or (r.trials.epochs_run.max() if len(r.trials) else 0))
    every = int(r.meta.get("eval_every") or 1)
    # The epochs a trial scores H: the study's eval_at, or (written before it) every eval_every.
    evaluated = (set(json.loads(r.meta["eval_at"])) if r.meta.get("eval_at")
                 else {k for k in range(every, max_epochs + 1, every)} | {max_epochs})
    e = _shared_epochs(r)
    train_s = float((e.seconds - e.eval_seconds).clip(lower=0).sum()) if not e.empty else 0.0
    eval_s = float(e.eval_seconds.sum()) if not e.empty else 0.0
    by_trial = dict(tuple(e.groupby("trial_id"))) if not e.empty else {}
    saved_epochs, saved_s = 0, 0.0
    for _, t in r.trials[r.trials.status == "pruned"].iterrows():
        left = max(0, max_epochs - int(t.epochs_run))
        mine = by_trial.get(t.trial_id)
        if not left or mine is None:
            continue
        evals_left = sum(1 for k in evaluated if k > int(t.epochs_run))
        per_eval = mine.eval_seconds[mine.eval_seconds > 0].mean() if (mine.eval_seconds > 0).any() else 0.0
        saved_epochs += left
        saved_s += left * float((mine.seconds - mine.eval_seconds).clip(lower=0).mean()) + evals_left * float(per_eval)
    seconds = lambda df: float(df.seconds.sum()) if not df.empty and "seconds" in df else 0.0  # noqa: E731
    return Cost(train_s, eval_s, saved_epochs, saved_s, seconds(r.confirm), seconds(r.final), seconds(r.audit))


class Audit(NamedTuple):
    audited: int  # stops retrained to the end
    found: list[str]  # of those, the trials that would have beaten the chosen one's val H by more than h_noise
    stops: int


def audit(r: StudyResults) -> Audit:
    stops = int((r.trials.status == "pruned").sum())
    best, _ = confirmed(r.trials, r.confirm, noise(r.meta))
    if r.audit.empty or best is None:
        return Audit(len(r.audit), [], stops)
    return Audit(len(r.audit), selection.wrongful(dict(zip(r.audit.trial_id, r.audit.best_val_H)), best["best_val_H"],
                                        noise(r.meta)), stops)


def _shared_epochs(r: StudyResults) -> pd.DataFrame:
    """epochs.parquet's seconds and eval_seconds, a packed trial's divided by the members of its
    executor training at that epoch's end (trials of the executor whose run spans that moment)."""
    e = r.epochs[["trial_id", "epoch", "seconds", "eval_seconds"]].copy() if not r.epochs.empty else r.epochs
    if e.empty or "executor_id" not in r.trials or not r.trials.executor_id.fillna("").astype(bool).any():
        return e.fillna({"seconds": 0.0, "eval_seconds": 0.0}) if not e.empty else e
    e = e.fillna({"seconds": 0.0, "eval_seconds": 0.0}).sort_values(["trial_id", "epoch"])
    t = r.trials.set_index("trial_id")
    start = e.trial_id.map(t.started_at)
    e["at"] = start + pd.to_timedelta(e.groupby("trial_id").seconds.cumsum(), unit="s")
    executor = e.trial_id.map(t.executor_id).fillna("")
    members = pd.Series(1, index=e.index)
    for ex, rows in e[executor != ""].groupby(executor[executor != ""]):
        peers = t[t.executor_id == ex]
        at = rows["at"].to_numpy()[:, None]  # each epoch's end against each member's run, at once
        spans = (peers.started_at.to_numpy()[None, :] <= at) & (peers.ended_at.to_numpy()[None, :] >= at)
        members[rows.index] = spans.sum(axis=1).clip(min=1)
    e["seconds"] /= members
    e["eval_seconds"] /= members
    return e.drop(columns="at")


def noise(meta: dict) -> float:
    """The study's h_noise, the margin by which a finalist must beat the defaults (selection.confirmed)."""
    h = meta.get("h_noise")
    return 2.0 if h is None or h != h else float(h)


class ConfirmRow(NamedTuple):
    trial_id: str
    start: str
    search_H: float  # the trial's validation H in the search (selection.chosen_val_H)
    split_H: dict  # fresh split -> validation H (None: diverged)
    mean: float | None  # over the splits, None when incomplete or diverged


def confirm_rows(r: StudyResults) -> list[ConfirmRow]:
    """The finalists, best mean first: what the fresh splits said about each."""
    if r.confirm.empty:
        return []
    means = confirmed(r.trials, r.confirm, noise(r.meta))[1]
    by_id = r.trials.set_index("trial_id")
    rows = []
    for tid, g in r.confirm.groupby("trial_id"):
        h = {int(k): (float(v) if st == "completed" else None) for k, v, st in zip(g.val_split, g.val_H, g.status)}
        rows.append(ConfirmRow(tid, g.start.iloc[0] or "", float(by_id.best_val_H[tid]), h, means.get(tid)))
    return sorted(rows, key=lambda x: -1 if x.mean is None else x.mean, reverse=True)


def defaults_trial(trials: pd.DataFrame) -> dict | None:
    """The trial that evaluated method.md's defaults (trials.parquet's start == "defaults")."""
    rows = trials[trials.start == "defaults"]
    return rows.iloc[0].to_dict() if len(rows) else None


RECIPE_LABEL = ("test U/S/H, CADA-VAE's classifier recipe ({epochs} epochs, batch 32, the classifier's last epoch scored), "
                "comparable to published rows")
FAST_LABEL = "fast classifier (3 epochs at batch 2048), same latents"


class ScoreRow(NamedTuple):
    label: str
    n_seeds: int
    mean: dict  # U, S, H
    std: dict
    published_recipe: bool  # scored with CADA-VAE's classifier recipe: comparable to published rows


class FinalResult(NamedTuple):
    n_seeds: int
    rows: list[ScoreRow]  # CADA-VAE's recipe, then the fast classifier
    references: dict  # method -> (U, S, H), for real datasets
    settings: dict  # sampling, kl_weight of the refit, where recorded
    seeds: pd.DataFrame  # one row per seed: seed, status, scored epoch, test U/S/H of each classifier
    failed: list[int]  # seeds that did not complete (diverged): in the means as H 0

    def recipe(self) -> ScoreRow:
        """The row to set beside published numbers."""
        return self.rows[0]


def final_result(r: StudyResults) -> FinalResult | None:
    f = r.final
    if f.empty:
        return None
    label = RECIPE_LABEL.format(epochs="/".join(str(int(e)) for e in sorted(set(f.classifier_epochs))))
    rows = [_score_row(label, f, "test_", True), _score_row(FAST_LABEL, f, "fast_test_", False)]
    settings = {"sampling": str(f.sampling.iloc[0]), "kl_weight": float(f.kl_weight.iloc[0]),
                "scored at epoch": f"{int(f.scored_epoch.iloc[0])} of {int(f.epochs.iloc[0])}"}
    seeds = f[["seed", "status", "scored_epoch", "test_U", "test_S", "test_H", "fast_test_H", "model"]]
    seeds = seeds.sort_values("seed").reset_index(drop=True)
    failed = [int(x) for x in seeds.seed[seeds.status != "completed"]]
    return FinalResult(len(f), rows, references(str(r.meta.get("dataset", ""))), settings, seeds, failed)


def _score_row(label: str, f: pd.DataFrame, prefix: str, published_recipe: bool) -> ScoreRow:
    mean = {k: float(f[f"{prefix}{k}"].mean()) for k in "USH"}
    std = {k: float(f[f"{prefix}{k}"].std(ddof=1)) if len(f) > 1 else 0.0 for k in "USH"}
    return ScoreRow(label, len(f), mean, std, published_recipe)


class History(NamedTuple):
    trial_number: list[int]
    trial_id: list[str]
    status: list[str]
    value: list[float]  # the trial's val H at its best epoch (selection.chosen_val_H)
    best_so_far: list[float]  # over completed trials, the study's choice (selection.best_trial)
    minutes: list[float]  # when each trial ended, in minutes since the study's first trial started
    ended_minutes: list[float]  # the same, sorted: the x of best_so_far_by_time
    best_so_far_by_time: list[float]
    start: list[str]  # "defaults", "start 1", ... for the study's starting points, "" for TPE's
    defaults_H: float | None  # the defaults' val H at their best epoch: the line tuning must beat


def history(r: StudyResults) -> History:
    t = r.trials
    value = t.best_val_H.fillna(0.0)
    chosen = value.where(t.status == "completed")  # a pruned trial is never the study's choice

    def best_so_far(v: pd.Series) -> list[float]:
        return v.cummax().ffill().fillna(0.0).tolist()

    minutes = (t.ended_at - t.started_at.min()).dt.total_seconds() / 60
    by_time = pd.DataFrame({"m": minutes, "v": chosen}).sort_values("m", kind="stable")
    d = defaults_trial(t)
    return History(t.trial_number.tolist(), t.trial_id.tolist(), t.status.tolist(), value.tolist(),
                   best_so_far(chosen), minutes.tolist(), by_time.m.tolist(), best_so_far(by_time.v),
                   t.start.fillna("").tolist(), None if d is None or pd.isna(d["best_val_H"]) else float(d["best_val_H"]))


class Curve(NamedTuple):
    trial_id: str
    status: str
    epochs: list[int]
    val_H: list[float]


def learning_curves(r: StudyResults) -> list[Curve]:
    status = r.trials.set_index("trial_id").status
    curves = []
    for tid, e in r.epochs.dropna(subset=["val_H"]).groupby("trial_id", sort=False):
        curves.append(Curve(tid, status.get(tid, "?"), e.epoch.tolist(), e.val_H.tolist()))
    return curves


class Rung(NamedTuple):
    epoch: int
    trusted: bool  # whether the rung could stop trials by the study's end


def asha_rungs(r: StudyResults) -> list[Rung]:
    """The study's candidate rungs (gzsl.selection.rung_epochs) and which of them its trials made
    trusted: the study's evaluated epochs fed to the policy again, in the order they happened
    (each trial's start plus its epochs' seconds), as the scheduler saw them."""
    meta = r.meta
    if not meta.get("early_stopping", True) or not meta.get("epochs"):
        return []
    policy = selection.Halving(int(meta["epochs"]), int(meta.get("eval_every") or 1),
                               int(meta.get("reduction_factor") or 3), float(_or(meta.get("h_floor"), selection.H_FLOOR)),
                               float(_or(meta.get("h_noise"), selection.H_NOISE)),
                               grace_period=int(meta["grace_period"]) if meta.get("grace_period") else None)
    start = r.trials.set_index("trial_id").started_at.to_dict() if "started_at" in r.trials else {}
    events = []
    for tid, e in (r.epochs.sort_values("epoch").groupby("trial_id") if not r.epochs.empty else ()):
        t0 = pd.Timestamp(start.get(tid, pd.Timestamp(0, tz="UTC"))).value / 1e9
        at = t0 + (e.seconds.fillna(0) if "seconds" in e else pd.Series(1.0, index=e.index)).cumsum()
        events += [(t, tid, int(ep), float(h)) for t, ep, h in zip(at, e.epoch, e.val_H) if not pd.isna(h)]
    for _, tid, ep, h in sorted(events):
        policy.on_result(tid, ep, h)
    trusted = set(policy.trusted_rungs())
    return [Rung(m, m in trusted) for m in policy.rungs]


def _or(value, default):
    return default if value is None or (isinstance(value, float) and np.isnan(value)) else value


def searched_params(r: StudyResults) -> list[str]:
    names = [p for p in hyperparams.names() if p in r.meta.get("space", {})]
    return names or [p for p in hyperparams.names() if p in r.trials and r.trials[p].nunique() > 1]


def optuna_study(r: StudyResults, statuses=("completed",), values: dict | None = None) -> optuna.Study:
    """An in-memory Optuna study of the chosen trials, for Optuna's evaluators and plots.
    `values` (trial_id -> H) replaces each trial's own H; trials it lacks are left out."""
    study = optuna.create_study(direction="maximize", study_name=r.name)
    dists = distributions(r)
    for _, row in r.trials[r.trials.status.isin(statuses)].iterrows():
        params = {p: hyperparams.get(p).cast(row[p]) for p in dists}
        if values is not None and row.trial_id not in values:
            continue
        value = values[row.trial_id] if values is not None else row.best_val_H
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  value=float(0.0 if pd.isna(value) else value),
                                                  user_attrs={"trial_id": row.trial_id}))
    return study


def distributions(r: StudyResults) -> dict:
    space = r.meta.get("space", {})
    dists = {}
    for p in searched_params(r):
        spec, h = space.get(p), hyperparams.get(p)
        if spec:
            dists[p] = h.distribution(spec.get("low"), spec.get("high"), spec.get("log", True), spec.get("choices"))
        elif h.categorical:  # a results folder without its space: the values the trials took
            dists[p] = h.distribution(choices=sorted(r.trials[p].dropna().unique()))
        else:
            lo, hi = float(r.trials[p].min()), float(r.trials[p].max())
            dists[p] = h.distribution(lo, hi * (1 + 1e-9) + 1e-12, log=lo > 0)
    return dists


class Importance(NamedTuple):
    params: list[str]
    importance: list[float]
    note: str  # why it is missing, when it is
    basis: str = ""  # which H the importance explains


FINAL_H = "completed trials, H at their best epoch"


def importance(r: StudyResults) -> Importance:
    """fANOVA importance of each searched parameter for the final H of completed trials. When
    ASHA let fewer than 3 trials complete (common in small studies), it explains H at the lowest
    trusted rung instead, over every trial that reached it: the value the rung itself decided on."""
    study, basis = optuna_study(r), FINAL_H
    n = len(study.trials)
    rung = next((g.epoch for g in asha_rungs(r) if g.trusted), None)
    if n < 3 and rung is not None and not r.epochs.empty:
        at_rung = r.epochs[(r.epochs.epoch == rung) & r.epochs.val_H.notna()]
        values = dict(zip(at_rung.trial_id, at_rung.val_H))
        early = optuna_study(r, statuses=tuple(r.trials.status.unique()), values=values)
        if len(early.trials) >= 3:
            study = early
            basis = f"H at epoch {rung} (the lowest trusted rung) of all {len(early.trials)} trials; {n} completed"
    if len(study.trials) < 3:
        return Importance([], [], f"needs at least 3 completed trials, this study has {n}")
    values = np.array([t.value for t in study.trials])
    if np.ptp(values) == 0:
        return Importance([], [], f"every trial scored the same H ({basis})")
    imp = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    return Importance(list(imp), [float(v) for v in imp.values()], "", basis)


class TimelineBar(NamedTuple):
    trial_id: str
    lane: str  # node (and GPU, and executor) that ran it, and the slot on it: trials that overlapped get separate slots
    start: pd.Timestamp
    end: pd.Timestamp
    status: str


def timeline(r: StudyResults) -> list[TimelineBar]:
    bars, lanes = [], {}  # where -> end time of the last trial in each slot
    for _, row in r.trials.sort_values("started_at").iterrows():
        node = row.node_ip or (row.node_id or "?")[:8]
        where = f"{node} gpu {row.gpu_id}" if isinstance(row.gpu_id, str) and row.gpu_id else f"{node} cpu"
        if isinstance(row.get("executor_id"), str) and row.executor_id:  # a pack's members: its slots
            where += f" executor {row.executor_id.rsplit('-', 1)[-1]}"
        ends = lanes.setdefault(where, [])
        slot = next((i for i, end in enumerate(ends) if end <= row.started_at), len(ends))
        if slot == len(ends):
            ends.append(row.ended_at)
        ends[slot] = row.ended_at
        bars.append(TimelineBar(row.trial_id, f"{where} slot {slot + 1}", row.started_at, row.ended_at, row.status))
    return bars
