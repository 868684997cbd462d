"""The study loop: Ray Tune schedules trials of `gzsl.training.train`, Optuna's TPE
proposes them, ASHA stops weak ones on validation H, and a driver-side callback
writes every finished trial to Parquet. The only module that imports Ray.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from gzsl.errors import ConfigError
from gzsl.evaluation import FAST_CLASSIFIER
from gzsl.results import ResultStore, best_trial, chosen_val_H
from gzsl.studies import SEARCHED, StudySpec
from gzsl.training import MAIN, TrainConfig, default_hidden, train

METRIC, MODE = "val_H", "max"


# --------------------------------------------------------------------------- the trial


def train_config(spec: StudySpec, params: dict, seed: int, device: str = "cpu") -> TrainConfig:
    """A trial's TrainConfig: the study's fixed settings plus the searched parameters (a refit's
    params, from trials.parquet, may repeat a fixed `sampling`: the recorded value is used)."""
    searched = {k: _cast(k, v) for k, v in params.items() if k in SEARCHED}
    return TrainConfig(
        **{**spec.fixed, **searched}, epochs=spec.epochs, batch_size=spec.batch_size, eval_every=spec.eval_every,
        seed=seed, hidden=spec.hidden or default_hidden(spec.dataset), device=device,
    )


def _cast(name: str, value):
    if name == "latent_size":
        return int(value)
    return str(value) if name == "sampling" else float(value)


def trial_device(gpu_ids: list) -> str:
    """The device of a trial or refit task from the GPUs Ray assigned it (`ray.get_gpu_ids()`),
    never from what torch can see: since Ray 2.60 a task that asked for no GPU keeps the node's
    CUDA_VISIBLE_DEVICES, and "cuda" would put every CPU trial on GPU 0. With GPUs assigned,
    Ray sets CUDA_VISIBLE_DEVICES to them, so "cuda" is the first one assigned."""
    if not gpu_ids:
        return "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"Ray assigned GPU(s) {gpu_ids} to this trial, but torch sees no CUDA device "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); install a CUDA build "
                          "of torch on the workers, or set [resources] gpu = 0")
    return "cuda"


def objective(config: dict, data=None, spec: StudySpec = None) -> None:
    """Function trainable: train one model, report every epoch to Tune."""
    import ray

    cpus = spec.resources.get("cpu", 1)
    torch.set_num_threads(max(1, int(cpus)))  # exactly the CPUs Tune gave us: no OpenMP oversubscription
    gpu_ids = ray.get_gpu_ids()
    device = trial_device(gpu_ids)
    if device == "cuda":
        # Several trials share a GPU: cap this one at its share, so one trial cannot starve the others.
        torch.cuda.set_per_process_memory_fraction(min(1.0, spec.resources.get("gpu", 1.0) or 1.0))
        torch.cuda.reset_peak_memory_stats()
    ctx = ray.get_runtime_context()
    where = {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
             "gpu_id": ",".join(str(g) for g in gpu_ids)}
    cfg = train_config(spec, config, seed=spec.seed, device=device)
    for r in train(data, cfg):
        # H only on the epochs that computed it (eval_every): a repeated older H would be compared
        # by ASHA's rungs and recorded by Optuna as if it were this epoch's.
        scores = {"val_U": r.scores.U, "val_S": r.scores.S, "val_H": r.scores.H} if r.scores is not None else {}
        metrics = {"epoch": r.epoch, "status": r.status, "epoch_seconds": r.seconds, "evaluated": r.scores is not None,
                   **{f"loss_{k}": v for k, v in r.losses.items()}, **scores, **where}
        if device == "cuda":
            metrics["gpu_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        tune.report(metrics)


# --------------------------------------------------------------------------- search and scheduling


def search_space(spec: StudySpec) -> dict:
    space = {}
    for p in spec.space:
        if p.choices is not None:
            space[p.name] = optuna.distributions.CategoricalDistribution(list(p.choices))
        else:
            space[p.name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
    return space


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
    carries its owner and heartbeat (see HEARTBEAT_S)."""

    def __init__(self, *args, max_epochs: int, owner: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.owner = owner
        self._beat_at = 0.0

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials[trial_id]
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
        for trial_id, ot_trial in list(self._ot_trials.items()):
            if trial_id not in self._completed_trials:
                try:
                    ot_trial.set_user_attr("gzsl_seen", now)
                except optuna.exceptions.UpdateFinishedTrialError:  # finished before a resume (_stale)
                    self._completed_trials.add(trial_id)

    def _stale(self, trial_id: str) -> bool:
        """After a resume, Tune may rerun a trial whose Optuna twin already finished before the
        crash (the searcher's checkpoint predates it), or one the checkpoint never saw. Optuna
        keeps the first outcome; the rerun is not told again."""
        ot_trial = self._ot_trials.get(trial_id)
        return ot_trial is None or self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished()

    def on_trial_result(self, trial_id: str, result: dict):
        if METRIC in result and not self._stale(trial_id):  # epochs without evaluation carry no H
            super().on_trial_result(trial_id, result)
        self._heartbeat()

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or self._stale(trial_id):
            self._completed_trials.add(trial_id)
            return
        ot_trial = self._ot_trials[trial_id]
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
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        elif status == "error":
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        else:  # completed, or diverged with H 0
            self._ot_study.tell(ot_trial, float(result.get(METRIC, 0.0)) if status == "completed" else 0.0)
        self._completed_trials.add(trial_id)


def trial_status(result: dict | None, error: bool, max_epochs: int) -> str:
    if error or not result:
        return "error"
    if result.get("status") == "diverged":
        return "diverged"
    return "completed" if result.get("epoch", 0) >= max_epochs else "pruned"


def optuna_storage(url: str):
    """The Optuna RDB storage; a URL whose database driver is missing (psycopg or psycopg2 for
    postgresql://, which the `cluster` extra installs), malformed or unreachable is a ConfigError,
    not a traceback; its password is never shown."""
    import sqlalchemy.exc

    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}}
                                          if url.startswith("sqlite") else {})
    except ImportError as exc:
        scheme = url.split(":", 1)[0]
        missing = exc.__cause__ or exc
        fix = ('pip install "gzsl[cluster]"' if scheme.startswith("postgres") else
               "pip install mysqlclient (or PyMySQL with a mysql+pymysql:// URL)" if scheme.startswith("mysql") else
               "install the database driver SQLAlchemy needs for it")
        raise ConfigError(f"--optuna-storage {shown_url(url)}: no database driver for {scheme}:// ({missing}); "
                          f"{fix}") from None
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
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(stale)


# --------------------------------------------------------------------------- driver-side bookkeeping


class ParquetCallback(tune.Callback):
    """Runs in the driver: collects each trial's per-epoch results and writes its rows
    when it ends (completed, pruned, diverged or errored). Prints a progress line."""

    def __init__(self, store: ResultStore, spec: StudySpec, log=print):
        self.store, self.spec, self.log = store, spec, log
        self.epochs: dict[str, dict[int, dict]] = {}
        self.started: dict[str, float] = {}
        self.first_result: dict[str, float] = {}
        self.numbers: dict[str, int] = {}
        self.best: tuple[float, dict] | None = None
        self.finished = 0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.time())
        self.numbers[trial.trial_id] = trials.index(trial)  # creation order, stable across a resume

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.on_trial_start(iteration, trials, trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.first_result.setdefault(trial.trial_id, time.time())
        # Keyed by epoch: a trial restarted after a crash or resume overwrites, never duplicates.
        self.epochs.setdefault(trial.trial_id, {})[result["epoch"]] = result

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        err = getattr(trial, "error_file", None)
        text = Path(err).read_text().strip().splitlines()[-1] if err and Path(err).is_file() else "trial raised"
        self._finish(trial, error=text)

    def _finish(self, trial, error: str | None):
        tid = trial.trial_id
        epochs = [self.epochs.get(tid, {})[k] for k in sorted(self.epochs.get(tid, {}))]
        last = epochs[-1] if epochs else {}
        status = trial_status(last, error is not None, self.spec.epochs)
        evaluated = [e for e in epochs if METRIC in e]
        best = max(evaluated, key=lambda e: e[METRIC]) if evaluated else {}
        started = self.started.get(tid, time.time())
        ended = time.time()
        used = train_config(self.spec, trial.config, seed=self.spec.seed)  # searched values plus defaults
        params = {k: getattr(used, k) for k in SEARCHED}
        row = {
            "trial_id": tid, "trial_number": self.numbers.get(tid, -1), "status": status, **params,
            "best_val_H": best.get("val_H"), "best_val_U": best.get("val_U"), "best_val_S": best.get("val_S"),
            "best_epoch": best.get("epoch"), "last_val_H": last.get("val_H"), "last_val_U": last.get("val_U"),
            "last_val_S": last.get("val_S"), "epochs_run": last.get("epoch", 0), "seconds": ended - started,
            "started_at": datetime.fromtimestamp(started, timezone.utc),
            "ended_at": datetime.fromtimestamp(ended, timezone.utc),
            "node_id": last.get("node_id"), "node_ip": last.get("node_ip"), "gpu_id": last.get("gpu_id", ""),
            "gpu_mem_mb": max((e.get("gpu_mem_mb") or 0 for e in epochs), default=None) if any(
                "gpu_mem_mb" in e for e in epochs) else None,
            "seed": self.spec.seed, "error": error,
            # Trial start to its first reported epoch, less that epoch's own time: the scheduling overhead.
            "startup_seconds": (self.first_result[tid] - started - epochs[0].get("epoch_seconds", 0.0))
            if tid in self.first_result and epochs else None,
        }
        if status == "diverged":
            row["best_val_H"] = row["last_val_H"] = 0.0
        epoch_rows = [{"trial_id": tid, "epoch": e["epoch"], "seconds": e.get("epoch_seconds"),
                       **{k: e.get(k) for k in ("loss_total", "loss_vae", "loss_sc", "loss_cr", "loss_dd")},
                       **({"val_U": e["val_U"], "val_S": e["val_S"], "val_H": e["val_H"]} if e.get("evaluated")
                          else {})} for e in epochs]
        self.store.write_part("epochs", tid, epoch_rows)
        self.store.write_part("trials", tid, [row])
        self.finished += 1
        h = row["best_val_H"] if row["best_val_H"] is not None else float("nan")
        last_h = row["last_val_H"] if row["last_val_H"] is not None else float("nan")
        if not math.isnan(h) and (self.best is None or h > self.best[0]):
            self.best = (h, params)
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        best = f"best so far H {self.best[0]:.2f}" if self.best else "no result yet"
        self.log(f"[{self.finished}/{self.spec.num_samples}] {tid} {status:9s} best H {h:5.2f} last {last_h:5.2f} "
                 f"epochs {row['epochs_run']:>3} {shown}  | {best}" + (f"  error: {error}" if error else ""))


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class RungCheckedASHA(ASHAScheduler):
    """ASHA that keeps a trial going only while it ranks in the top 1/reduction_factor of
    every rung it has passed.

    Ray's asynchronous ASHA judges a trial once, when it reaches a rung, against the
    trials recorded there so far: the first trials of a study pass against one or two
    rivals (or none) and then run to the end even when the rung, filled later, shows
    them to be in its bottom two thirds. ASHA's rule (Li et al., 2020) promotes only
    the top 1/eta of a rung; here each result re-checks the rungs a trial passed with
    everything recorded there since, and stops it once it has fallen below the cutoff."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action != TrialScheduler.CONTINUE or trial.trial_id not in self._trial_info:
            return action
        bracket = self._trial_info[trial.trial_id]
        for _, recorded in bracket._rungs:
            mine = recorded.get(trial.trial_id)
            if mine is not None and mine < bracket.cutoff(recorded):
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


# --------------------------------------------------------------------------- the driver


def run_study(spec: StudySpec, data, results_uri: str, *, num_samples: int | None = None,
              max_concurrent: int | None = None, optuna_url: str | None = None, resume: bool = False,
              sampler: str = "tpe", early_stopping: bool = True, log=print):
    """Search, then write trials.parquet / epochs.parquet. `data` is the loaded split (the
    driver's copy goes to the object store once, via tune.with_parameters). `sampler="random"`
    and `early_stopping=False` give the plain baseline (random search, every trial to the end)."""
    # Epochs without evaluation (eval_every > 1) report no val_H: ASHA and the searcher skip them,
    # and Tune must not reject them as missing the metric.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    store = ResultStore(results_uri)
    if resume:
        num_samples = resumed_budget(store, num_samples, results_uri)
    num_samples = num_samples or spec.num_samples
    spec = replace(spec, num_samples=num_samples)
    concurrent = max_concurrent if max_concurrent is not None else spec.max_concurrent
    storage_url = optuna_url or default_optuna_url(results_uri)
    storage = optuna_storage(storage_url)
    resources = {k: v for k, v in spec.resources.items() if v > 0}
    trainable = tune.with_resources(tune.with_parameters(objective, data=data, spec=spec), resources)
    experiment = check_start(spec, results_uri, resume)
    if resume:
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=False)
        scheduler = tuner._local_tuner._tune_config.scheduler  # restored as first built: rungs empty
        if isinstance(scheduler, RungCheckedASHA):
            n = scheduler.restore_rungs(store.read("epochs"), set(store.read("trials").trial_id))
            log(f"ASHA: rungs rebuilt from the {n} trial(s) that ended before the interruption")
    else:
        if sampler == "tpe":
            # constant_liar: trials still running count as bad guesses, so concurrent proposals spread out.
            ot_sampler = optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True, multivariate=True,
                                                    n_startup_trials=min(10, max(2, num_samples // 4)))
        else:
            ot_sampler = optuna.samplers.RandomSampler(seed=spec.seed)
        try:
            taken = len(optuna.load_study(study_name=spec.name, storage=storage).get_trials(deepcopy=False))
        except KeyError:
            taken = 0
        if taken:  # an existing study's trials: a new run must not silently merge into them
            raise ConfigError(f"study {spec.name} already has {taken} trial(s) in {shown_url(storage_url)} (another "
                              "run's): continue that run with --resume and its --results, or use another "
                              "--optuna-storage or study file name")
        searcher = PrunedAwareOptunaSearch(space=search_space(spec), metric=METRIC, mode=MODE, sampler=ot_sampler,
                                           study_name=spec.name, storage=storage, max_epochs=spec.epochs,
                                           owner=experiment)
        if early_stopping:
            scheduler = RungCheckedASHA(time_attr="training_iteration", metric=METRIC, mode=MODE, max_t=spec.epochs,
                                        grace_period=spec.grace_period, reduction_factor=spec.reduction_factor)
        else:
            scheduler = FIFOScheduler()
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                        max_concurrent_trials=concurrent or None, reuse_actors=True),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=tune_storage(results_uri), verbose=0,
                callbacks=[ParquetCallback(store, spec, log)],
                failure_config=tune.FailureConfig(max_failures=spec.max_failures)),
        )
    store.write_part("study", f"run-{int(time.time() * 1000)}", [study_row(spec, resume, early_stopping)])
    tuner.fit()
    if len(store.part_ids("trials")) >= num_samples:
        # Finished: an Optuna trial still RUNNING was asked by a driver that died before its Tune
        # trial was saved; nothing will ever finish it. (After Ctrl-C they stay RUNNING: --resume
        # continues them.)
        stale = fail_stale_running(storage, spec.name, owner=experiment)
        if stale:
            log(f"marked {stale} Optuna trial(s) left RUNNING by an interrupted driver as FAIL")
    return store


def pending_trials(per_trial: dict, cluster_resources: dict, num_samples: int, max_concurrent: int = 0,
                   cluster: bool = False) -> int:
    """How many trials Tune may keep waiting for resources (TUNE_MAX_PENDING_TRIALS_PG; Tune's
    default with a searcher is 1). Each pending trial already holds a TPE proposal, so locally it is
    what the machine runs at once. On a cluster a pending trial is also a request to the
    autoscaler: twice what fits now, at least 16 (four 4-trial GPU nodes), so that a cluster grows
    by several nodes at a time instead of one."""
    fits = min((int(cluster_resources.get(k.upper(), 0) // v) for k, v in per_trial.items() if v > 0), default=1)
    want = max(16, 2 * fits) if cluster else max(1, fits)
    if max_concurrent:
        want = min(want, max_concurrent)
    return max(1, min(want, num_samples))


def check_start(spec: StudySpec, results_uri: str, resume: bool) -> str:
    """Tune's experiment folder of this study, once it is clear that --resume has a run to continue,
    or that a new run would not land on top of an earlier one. Needs no running Ray."""
    experiment = f"{tune_storage(results_uri)}/{spec.name}"
    if resume and not tune.Tuner.can_restore(experiment):
        raise ConfigError(f"--resume: no interrupted study at {experiment}; run without --resume to start one")
    if not resume and tune.Tuner.can_restore(experiment):
        raise ConfigError(f"{experiment} already holds a run of study {spec.name}; add --resume to continue "
                          "it, or pass another --results folder")
    return experiment


def resumed_budget(store: ResultStore, asked: int | None, results_uri: str) -> int | None:
    """The trial budget of the run being resumed (study.parquet), which Tuner.restore keeps:
    `--num-samples` given at the start need not be repeated, and a different one is refused."""
    runs = store.read("study")
    first = runs[~runs.resumed.astype(bool)].sort_values("started_at")
    if first.empty:
        return asked
    budget = int(first.num_samples.iloc[0])
    if asked is not None and asked != budget:
        raise ConfigError(f"--num-samples {asked}: the run in {results_uri} was started with a budget of {budget} "
                          "trials, which a resumed run keeps; resume without --num-samples")
    return budget


def study_row(spec: StudySpec, resumed: bool, early_stopping: bool) -> dict:
    space = {p.name: ({"choices": list(p.choices)} if p.choices is not None
                      else {"low": p.low, "high": p.high, "log": p.log}) for p in spec.space}
    used = TrainConfig(**spec.fixed)  # the fixed settings, or TrainConfig's defaults
    sampling = "searched" if "sampling" in space else used.sampling
    return {"study": spec.name, "dataset": spec.dataset, "split": spec.split, "epochs": spec.epochs,
            "grace_period": spec.grace_period, "reduction_factor": spec.reduction_factor,
            "early_stopping": early_stopping, "num_samples": spec.num_samples,
            "resources": json.dumps(spec.resources), "space": json.dumps(space), "beta": used.beta,
            "kl_weight": used.kl_weight, "sampling": sampling, "classifier": used.classifier,
            "seed": spec.seed, "resumed": resumed,
            "started_at": datetime.now(timezone.utc)}


def default_optuna_url(results_uri: str) -> str:
    if "://" in results_uri and not results_uri.startswith("file://"):
        raise ConfigError(f"--results {results_uri} is remote: give --optuna-storage an RDB URL "
                          "(e.g. postgresql://...) for the Optuna study")
    path = Path(results_uri.removeprefix("file://")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'optuna.db'}"


def tune_storage(results_uri: str) -> str:
    if "://" in results_uri and not results_uri.startswith("file://"):
        return f"{results_uri.rstrip('/')}/tune"
    return str((Path(results_uri.removeprefix("file://")) / "tune").resolve())


# --------------------------------------------------------------------------- final refit


def best_params(store: ResultStore) -> dict | None:
    """The configuration to refit (see results.best_trial) and its validation H."""
    best = best_trial(store.read("trials"))
    if best is None:
        return None
    h = chosen_val_H(best)
    # Rows written before trials recorded `sampling` have none: the refit then takes the study's.
    sampling = {"sampling": best["sampling"]} if isinstance(best.get("sampling"), str) else {}
    return {"alpha": float(best["alpha"]), "gamma": float(best["gamma"]), "lam": float(best["lam"]),
            "latent_size": int(best["latent_size"]), "lr": float(best["lr"]), **sampling,
            "trial_id": best["trial_id"], "val_H": float(h)}


def _refit_one(spec: StudySpec, params: dict, data, seed: int) -> dict:
    """One seed of the refit, scored on test twice on the same latents of the final model: with
    CADA-VAE's classifier recipe (test_*, the numbers published rows report) and with the fast
    classifier (fast_test_*), whichever of them drove validation H."""
    import ray

    torch.set_num_threads(max(1, int(spec.resources.get("cpu", 1))))
    # Test is scored the published way whatever classifier validation H used, the fast one beside it.
    cfg = replace(train_config(spec, params, seed=seed, device=trial_device(ray.get_gpu_ids())), eval_every=0,
                  classifier="cada")
    start = time.perf_counter()
    last = None
    for last in train(data, cfg, recipes={"fast": FAST_CLASSIFIER}):
        pass
    cada, fast = last.recipe_scores[MAIN], last.recipe_scores["fast"]
    return {"seed": seed, **{k: getattr(cfg, k) for k in SEARCHED}, "kl_weight": cfg.kl_weight, "epochs": last.epoch,
            "test_U": cada.U, "test_S": cada.S, "test_H": cada.H,
            "fast_test_U": fast.U, "fast_test_S": fast.S, "fast_test_H": fast.H,
            "seconds": time.perf_counter() - start, "status": last.status}


def final_refit(spec: StudySpec, params: dict, test_data, store: ResultStore, log=print):
    """Retrain the chosen configuration on all of trainval with `final_seeds` seeds (in
    parallel, as Ray tasks) and score each once on the test split, with CADA-VAE's classifier
    recipe and with the fast classifier (see _refit_one). Seeds already in final.parquet (from
    an interrupted run) are not redone."""
    import ray

    seeds = [spec.seed + 1000 + i for i in range(spec.final_seeds)]
    todo = [s for s in seeds if not store.has_part("final", f"seed{s}")]
    res = spec.resources
    task = ray.remote(num_cpus=res.get("cpu", 1), num_gpus=res.get("gpu", 0))(_refit_one)
    data_ref = ray.put(test_data)
    pending = [task.remote(spec, params, data_ref, s) for s in todo]
    while pending:
        done, pending = ray.wait(pending)
        row = ray.get(done[0])
        store.write_part("final", f"seed{row['seed']}", [row])
        log(f"final refit seed {row['seed']}: test U {row['test_U']:.2f} S {row['test_S']:.2f} "
            f"H {row['test_H']:.2f} (CADA-VAE classifier recipe); U {row['fast_test_U']:.2f} "
            f"S {row['fast_test_S']:.2f} H {row['fast_test_H']:.2f} (fast classifier) "
            f"({row['seconds']:.0f}s, {row['status']})")
    return store.read("final")
