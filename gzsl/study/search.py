"""Optuna's side of a study: the search space, the searcher that tells Optuna what ASHA did,
and the storage (its URL, its drivers, trials a killed driver left RUNNING)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from gzsl import hyperparams
from gzsl.errors import ConfigError
from gzsl.gate import driver_fix
from gzsl.study.internals import asked, optuna_study, stored, told
from gzsl.study.trial import METRIC, trial_status
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


class PrunedAwareOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch tells Optuna that an ASHA-stopped trial COMPLETEd with its
    early value, which misleads TPE and the importance plots. Here a trial that
    ended before the last epoch (and did not diverge) is recorded as PRUNED, with
    its intermediate values (reported each epoch by on_trial_result). Each trial
    carries its owner and heartbeat (see HEARTBEAT_S).

    Its cap on the trials in flight is Tune's `set_max_concurrency` (what a ConcurrencyLimiter,
    and so `max_concurrent_trials`, sets): a packed study proposes only as many configurations as
    its started executors can train (gzsl.study.executors.actors.ExecutorPool raises the cap, from Tune's loop, as
    executors start), so that a cluster still waiting for nodes does not turn TPE into random
    search by holding proposals that no executor can take yet."""

    def __init__(self, *args, max_epochs: int, owner: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.owner = owner
        self._cap: int | None = None
        self._beat_at = 0.0

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Tune's Searcher API: this searcher caps its trials in flight itself (True)."""
        self._cap = max_concurrent
        return True

    def suggest(self, trial_id: str):
        if self._cap is not None and trial_id not in asked(self) and \
                sum(t not in told(self) for t in asked(self)) >= self._cap:
            return None  # Tune asks again on its next step
        config = super().suggest(trial_id)
        ot_trial = asked(self)[trial_id]
        ot_trial.set_user_attr("gzsl_owner", self.owner)
        ot_trial.set_user_attr("gzsl_seen", time.time())
        self._heartbeat()
        return config

    def _heartbeat(self) -> None:
        """Refresh "gzsl_seen" on every unfinished trial of this driver, pending ones included."""
        now = time.time()
        if now - self._beat_at < HEARTBEAT_S:
            return
        self._beat_at = now
        for trial_id, ot_trial in list(asked(self).items()):
            if trial_id not in told(self):
                try:
                    ot_trial.set_user_attr("gzsl_seen", now)
                except optuna.exceptions.UpdateFinishedTrialError:  # finished before a resume (_stale)
                    told(self).add(trial_id)

    def _stale(self, trial_id: str) -> bool:
        """After a resume, Tune may rerun a trial whose Optuna twin already finished before the
        crash (the searcher's checkpoint predates it), or one the checkpoint never saw. Optuna
        keeps the first outcome; the rerun is not told again."""
        ot_trial = asked(self).get(trial_id)
        return ot_trial is None or stored(optuna_study(self), ot_trial).state.is_finished()

    def on_trial_result(self, trial_id: str, result: dict):
        if METRIC in result and not self._stale(trial_id):  # epochs without evaluation carry no H
            with warnings.catch_warnings():
                # A trial rerun after --resume reports its epochs again; Optuna keeps the first
                # value of a step and warns about each repeat.
                warnings.filterwarnings("ignore", message="The reported value is ignored", category=UserWarning)
                super().on_trial_result(trial_id, result)
        self._heartbeat()

    def _best_value(self, ot_trial) -> float:
        values = stored(optuna_study(self), ot_trial).intermediate_values.values()
        return max(values, default=0.0)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in told(self) or self._stale(trial_id):
            told(self).add(trial_id)
            return
        ot_trial = asked(self)[trial_id]
        if result and METRIC in result and "training_iteration" in result:
            # Tune may hand the last epoch only to on_trial_complete: record it as an intermediate
            # value too (Optuna ignores, with a warning we silence, a step already reported).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ot_trial.report(result[METRIC], result["training_iteration"])
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        status = trial_status(result, error, self.max_epochs)
        ot_trial.set_user_attr("status", status)
        if status == "pruned":
            optuna_study(self).tell(ot_trial, state=TrialState.PRUNED)
        elif status == "error":
            optuna_study(self).tell(ot_trial, state=TrialState.FAIL)
        else:  # completed: H at its best epoch (the epoch a refit scores, selection.chosen_val_H); diverged: 0
            optuna_study(self).tell(ot_trial, self._best_value(ot_trial) if status == "completed" else 0.0)
        told(self).add(trial_id)


STORAGE_ENV = "GZSL_OPTUNA_STORAGE"  # the storage URL, instead of --optuna-storage (keeps it out of `ps`)
# The one value kept per process on purpose: the storage URL this driver was given, which a restored
# storage reconnects to. Tune unpickles the searcher (and its storage) inside Tuner.restore and again
# inside fit(), where no argument reaches it; the URL may hold a password, so it is neither pickled
# nor put in the environment, which Ray's workers inherit.
_url: list[str] = []


class Storage(optuna.storages.RDBStorage):
    """Optuna's RDB storage without its URL in its pickle. Tune pickles the searcher, and the
    storage in it, under the results folder (possibly S3): RDBStorage's pickle holds the URL,
    database password included. This one drops it, and a restored copy (--resume) reconnects to
    the URL the resuming driver was given."""

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "url": None}

    def __setstate__(self, state: dict) -> None:
        if not _url:
            raise ConfigError("a saved Optuna searcher was restored before its storage URL was given: "
                              f"pass --optuna-storage (or {STORAGE_ENV}) as the run was started")
        super().__setstate__({**state, "url": _url[-1]})


def optuna_storage(url: str):
    """The Optuna RDB storage; a URL whose database driver is missing (psycopg or psycopg2 for
    postgresql://, which the `cluster` extra installs), malformed or unreachable is a ConfigError,
    not a traceback; its password is never shown, nor pickled (Storage)."""
    import sqlalchemy.exc

    _url[:] = [url]
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
