"""Optuna's side of a study: the search space, the searcher that tells Optuna what ASHA did,
and the storage (its URL, its drivers, trials a killed driver left RUNNING)."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from gzsl import hyperparams
from gzsl.errors import ConfigError
from gzsl.gate import driver_fix
from gzsl.study.trial import METRIC, MODE, trial_status
from gzsl.studyfile import StudySpec


def search_space(spec: StudySpec) -> dict:
    return {p.name: hyperparams.get(p.name).distribution(p.low, p.high, p.log, p.choices) for p in spec.space}


# Signs of life, so that a run never fails another live run's trials (fail_stale_running): each
# Optuna trial records the results folder whose run asked it (user attr "gzsl_owner") and, while
# it is unfinished, the time its driver last saw it alive ("gzsl_seen", refreshed at most every
# HEARTBEAT_S, on every suggestion and result). A live driver can be silent far longer than that:
# while every trial waits for an autoscaler's GPU nodes nothing reports, so STALE_AFTER_S is an hour.
HEARTBEAT_S = 30
STALE_AFTER_S = 3600


@dataclass(frozen=True)
class Asked:
    """An Optuna trial this searcher asked for a Tune trial: its number in the study and its id in
    the storage."""

    number: int
    storage_id: int


class StudySearcher(Searcher):
    """Tune's searcher on Optuna's ask-and-tell: TPE (or any Optuna sampler) proposes, the Optuna
    storage keeps every trial. A trial that ended before the last epoch (and did not diverge) is
    told PRUNED with its intermediate values, never COMPLETE with an early value (which would
    mislead TPE and the importance plots); a completed one is told its H at its best epoch. The
    study's starting points are enqueued (Optuna's enqueue_trial) before TPE proposes. Each trial
    carries its owner and heartbeat (see HEARTBEAT_S).

    Its cap on the trials in flight is Tune's `set_max_concurrency` (what `max_concurrent_trials`
    sets): a packed study proposes only as many configurations as its started executors can train
    (gzsl.study.executors.actors.ExecutorPool raises the cap, from Tune's loop, as executors start),
    so that a cluster still waiting for nodes does not turn TPE into random search by holding
    proposals that no executor can take yet.

    Its saved state (Tune pickles it beside the experiment) holds no storage: the URL may carry a
    password. A restored searcher is `connect`ed to the storage the resuming driver was given, and
    continues the same Optuna study."""

    def __init__(self, space: dict, *, sampler=None, study_name: str, storage, max_epochs: int, owner: str = "",
                 points_to_evaluate: list[dict] = (), metric: str = METRIC, mode: str = MODE):
        super().__init__(metric=metric, mode=mode)
        self.space, self.sampler, self.study_name = space, sampler, study_name
        self.max_epochs, self.owner = max_epochs, owner
        self.asked: dict[str, Asked] = {}  # Tune trial id -> its Optuna trial
        self.told: set[str] = set()  # Tune trial ids whose Optuna trial was told (or is not to be)
        self._points = [dict(p) for p in points_to_evaluate]  # enqueued once, by the first connect
        self._cap: int | None = None
        self._beat_at = 0.0
        self.connect(storage)

    # ------------------------------------------------------------------ the storage, kept out of the pickle

    def connect(self, storage) -> None:
        """Attach to the study in `storage` (created, or loaded when it exists)."""
        self.storage = storage
        self.study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                         direction="maximize", load_if_exists=True)
        self._study_id = storage.get_study_id_from_name(self.study_name)
        for point in self._points:
            self.study.enqueue_trial(point)
        self._points = []
        self._live: dict[str, optuna.Trial] = {}  # Trial objects of this process, by Tune trial id

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("storage", "study", "_study_id", "_live")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.storage = self.study = self._study_id = None
        self._live = {}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's saved bookkeeping (which trial asked what, which were told); the storage, and the
        study in it, stay the ones connected."""
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        state.pop("_cap", None)  # the cap is this run's (set_max_concurrency)
        self.__dict__.update(state)

    # ------------------------------------------------------------------ Tune's Searcher interface

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return metric in (None, self.metric) and mode in (None, self.mode)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """This searcher caps its trials in flight itself (True)."""
        self._cap = max_concurrent
        return True

    def suggest(self, trial_id: str):
        if self._cap is not None and trial_id not in self.asked and \
                sum(t not in self.told for t in self.asked) >= self._cap:
            return None  # Tune asks again on its next step
        if trial_id in self.asked:  # a trial Tune restarts: the same configuration
            return self._trial(trial_id).params
        trial = self.study.ask(fixed_distributions=self.space)
        storage_id = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, trial.number)
        self.asked[trial_id] = Asked(trial.number, storage_id)
        self._live[trial_id] = trial
        trial.set_user_attr("gzsl_owner", self.owner)
        trial.set_user_attr("gzsl_seen", time.time())
        self._heartbeat()
        return dict(trial.params)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if METRIC in result and trial_id in self.asked:  # epochs without evaluation carry no H
            self._report(trial_id, result[METRIC], result["training_iteration"])
        self._heartbeat()

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.told or self._stale(trial_id):
            self.told.add(trial_id)
            return
        if result and METRIC in result and "training_iteration" in result:
            # Tune may hand the last epoch only to on_trial_complete: record it as an intermediate value too.
            self._report(trial_id, result[METRIC], result["training_iteration"])
        trial = self._trial(trial_id)
        trial.set_user_attr("tune_trial_id", trial_id)
        status = trial_status(result, error, self.max_epochs)
        trial.set_user_attr("status", status)
        number = self.asked[trial_id].number
        if status == "pruned":
            self.study.tell(number, state=TrialState.PRUNED)
        elif status == "error":
            self.study.tell(number, state=TrialState.FAIL)
        else:  # completed: H at its best epoch (the epoch a refit scores, selection.chosen_val_H); diverged: 0
            self.study.tell(number, self._best_value(trial_id) if status == "completed" else 0.0)
        self.told.add(trial_id)
        self._live.pop(trial_id, None)

    # ------------------------------------------------------------------ helpers

    def _trial(self, trial_id: str) -> optuna.Trial:
        """The Optuna trial of a Tune trial, as this process holds it (one asked before a resume is
        opened again from the storage)."""
        if trial_id not in self._live:
            self._live[trial_id] = optuna.Trial(self.study, self.asked[trial_id].storage_id)
        return self._live[trial_id]

    def _frozen(self, trial_id: str):
        return self.storage.get_trial(self.asked[trial_id].storage_id)

    def _report(self, trial_id: str, value: float, step: int) -> None:
        """An intermediate value, unless the trial finished before a resume (_stale) or a rerun after
        --resume reports a step again: the first outcome and the first value stay."""
        frozen = self._frozen(trial_id)
        if frozen.state.is_finished() or step in frozen.intermediate_values:
            return
        self._trial(trial_id).report(float(value), int(step))

    def _best_value(self, trial_id: str) -> float:
        return max(self._frozen(trial_id).intermediate_values.values(), default=0.0)

    def _stale(self, trial_id: str) -> bool:
        """After a resume, Tune may rerun a trial whose Optuna twin already finished before the
        crash (the searcher's checkpoint predates it), or one the checkpoint never saw. Optuna
        keeps the first outcome; the rerun is not told again."""
        return trial_id not in self.asked or self._frozen(trial_id).state.is_finished()

    def _heartbeat(self) -> None:
        """Refresh "gzsl_seen" on every unfinished trial of this driver, pending ones included."""
        now = time.time()
        if now - self._beat_at < HEARTBEAT_S:
            return
        self._beat_at = now
        for trial_id, asked in list(self.asked.items()):
            if trial_id not in self.told:
                try:
                    self.storage.set_trial_user_attr(asked.storage_id, "gzsl_seen", now)
                except optuna.exceptions.UpdateFinishedTrialError:  # finished before a resume (_stale)
                    self.told.add(trial_id)


STORAGE_ENV = "GZSL_OPTUNA_STORAGE"  # the storage URL, instead of --optuna-storage (keeps it out of `ps`)


class Storage(optuna.storages.RDBStorage):
    """Optuna's RDB storage that never carries its URL, database password included, into a pickle:
    the searcher leaves it out of what Tune saves, and should anything else pickle it, the URL is
    dropped and the copy cannot be used (a searcher is connected again instead)."""

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "url": None}

    def __setstate__(self, state: dict) -> None:
        raise ConfigError("an Optuna storage was restored from a pickle, which never holds its URL: connect the "
                          f"searcher to the storage given by --optuna-storage (or {STORAGE_ENV})")


def optuna_storage(url: str):
    """The Optuna RDB storage; a URL whose database driver is missing (psycopg or psycopg2 for
    postgresql://, which the `cluster` extra installs), malformed or unreachable is a ConfigError,
    not a traceback; its password is never shown, nor pickled (Storage)."""
    import sqlalchemy.exc

    try:
        return Storage(url, engine_kwargs={"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {})
    except ImportError as exc:
        scheme = url.split(":", 1)[0]
        missing = exc.__cause__ or exc
        raise ConfigError(f"--optuna-storage {shown_url(url)}: no database driver for {scheme}:// ({missing}); "
                          f"{driver_fix(scheme)}") from None
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.OperationalError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--optuna-storage {shown_url(url)}: cannot open it ({first})") from None


def shown_url(url: str) -> str:
    """A storage URL fit for a message: its password hidden."""
    import sqlalchemy.engine

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://..."


def fail_stale_running(storage, study_name: str, owner: str | None = None, stale_after: float = STALE_AFTER_S) -> int:
    """Trials a killed driver left RUNNING in Optuna: mark them FAIL (their Tune trials rerun
    under new Optuna trials). Only those no live run can own: this results folder's (`owner`;
    called once its study has finished, so none of its trials is still in flight), and any
    other whose heartbeat ("gzsl_seen") is older than `stale_after` seconds. Another run's live
    trials, and trials without a heartbeat (not asked by gzsl), are left alone. Returns how many."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return 0
    now, trials = time.time(), study.get_trials(deepcopy=False)
    # A driver killed between Optuna's ask and labelling the trial leaves it unlabelled: one asked
    # before this folder's newest trial was asked amid this folder's own run.
    newest = max((t.number for t in trials if owner is not None and t.user_attrs.get("gzsl_owner") == owner),
                 default=-1)
    stale = [t for t in trials if t.state == TrialState.RUNNING and (
        (owner is not None and t.user_attrs.get("gzsl_owner", owner if t.number < newest else None) == owner)
        or now - t.user_attrs.get("gzsl_seen", now) > stale_after)]
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    return len(stale)


def default_optuna_url(results_uri: str) -> str:
    if "://" in results_uri and not results_uri.startswith("file://"):
        raise ConfigError(f"--results {results_uri} is remote: give --optuna-storage an RDB URL "
                          "(e.g. postgresql://...) for the Optuna study")
    path = Path(results_uri.removeprefix("file://")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'optuna.db'}"
