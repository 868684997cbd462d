"""The study driver: a Tune run of the trial function with Optuna's TPE proposing and ASHA
stopping, as a Ray Tune example would read; the checks before it starts and on resume."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import optuna
import ray
from ray import tune

from gzsl.datasets import default_hidden
from gzsl.errors import ConfigError
from gzsl.gate import fingerprint, resumed_budget
from gzsl.results import SCHEMA_VERSION, ResultStore
from gzsl.study.callback import ParquetCallback
from gzsl.study.internals import restored_parts
from gzsl.study.nodes import NodeWatch
from gzsl.study.executors.actors import ExecutorPool, executor_names, executors_that_fit, packed_objective, trial_resources
from gzsl.selection import NoStopping
from gzsl.study.scheduler import NoiseAwareASHA, RuleScheduler
from gzsl.study.search import (StudySearcher, default_optuna_url, fail_stale_running, optuna_storage,
                               search_space, shown_url)
from gzsl.study.trial import objective
from gzsl.studyfile import StudySpec
from gzsl.trainer import TrainConfig

PENDING_ENV = "TUNE_MAX_PENDING_TRIALS_PG"  # Tune's: trials it may hold waiting for resources (a user's value wins)

_log = logging.getLogger(__name__)  # progress lines: gzsl.tune prints the `gzsl` logger


@dataclass(frozen=True)
class RunPlan:
    """How a run spreads its trials, computed once from the study, the flags and the cluster."""

    num_samples: int  # the trial budget
    executors: int  # a packed study's executors ([resources] pack > 1); 0 when each trial trains alone
    concurrent: int  # trials in flight at most; 0: as many as the resources hold
    pending: int  # trials Tune may hold waiting for resources (PENDING_ENV)


def plan_run(spec: StudySpec, resources: dict, num_samples: int | None = None, max_concurrent: int | None = None,
             cluster: bool = False) -> RunPlan:
    """The run's plan on a Ray of these `resources` (ray.cluster_resources()). Alone, a trial takes
    its [resources] and Tune holds what pending_trials says. Packed, executors take the resources
    and trials wait for a member slot: locally as many executors as fit, on a cluster (which may
    grow) as many as the budget or --max-concurrent can use."""
    num_samples = num_samples or spec.num_samples
    concurrent = max_concurrent if max_concurrent is not None else spec.max_concurrent
    if spec.pack == 1:
        return RunPlan(num_samples, 0, concurrent, pending_trials(spec.resources, resources, num_samples, concurrent,
                                                                  cluster))
    executors = -(-(concurrent or num_samples) // spec.pack) if cluster else executors_that_fit(spec, resources,
                                                                                             concurrent)
    slots = executors * spec.pack
    return RunPlan(num_samples, executors, slots, max(1, min(slots, num_samples)))


def run_study(spec: StudySpec, data, results_uri: str, *, num_samples: int | None = None,
              max_concurrent: int | None = None, optuna_url: str | None = None, resume: bool = False,
              sampler: str = "tpe", early_stopping: bool = True, cluster: bool = False, experiment: str | None = None,
              log=_log.info):
    """Search, then write trials.parquet / epochs.parquet. `data` is the loaded split (the
    driver's copy goes to the object store once, via tune.with_parameters). `sampler="random"`
    and `early_stopping=False` give the plain baseline (random search, every trial to the end).
    `cluster`: Ray is a cluster that may grow (--address); a packed study then asks for all the
    executors it can use, not only those that fit now (gzsl.study.executors.actors.ExecutorPool). `experiment`: what
    check_start returned, where the caller already checked the start (gzsl.tune, before starting Ray)."""
    store = ResultStore(results_uri)
    if resume:
        num_samples = resumed_budget(store, num_samples, results_uri)
    plan = plan_run(spec, ray.cluster_resources(), num_samples, max_concurrent, cluster)
    num_samples = plan.num_samples
    spec = replace(spec, num_samples=num_samples)
    storage_url = optuna_url or default_optuna_url(results_uri)
    storage = optuna_storage(storage_url)
    experiment = experiment or check_start(spec, results_uri, resume)
    pool = None
    if plan.executors:  # executors each train their members as one fused model (gzsl.study.executors)
        pool = ExecutorPool(spec, executor_names(experiment, plan.executors), elastic=cluster)
        trainable = tune.with_resources(tune.with_parameters(packed_objective, spec=spec, names=pool.names),
                                        trial_resources(spec))
    else:
        resources = {k: v for k, v in spec.resources.items() if v > 0}
        trainable = tune.with_resources(tune.with_parameters(objective, data=data, spec=spec), resources)
    if resume:
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=False)
        searcher, scheduler, _ = restored_parts(tuner)  # restored as first built: rungs empty
        searcher.connect(storage)  # its pickle holds no storage (the URL may carry a password)
        ended = store.read("trials")
        n = scheduler.restore_rungs(store.read("epochs"), set(ended.trial_id), set(ended.trial_id[ended.status == "pruned"]))
        if scheduler.policy.rungs:
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
        # The first trials evaluate method.md's defaults and the study's [search] start points
        # (Optuna's enqueue_trial), so a study always measures what tuning must beat.
        searcher = StudySearcher(search_space(spec), sampler=ot_sampler, study_name=spec.name, storage=storage,
                                 max_epochs=spec.epochs, owner=experiment, points_to_evaluate=[p for _, p in spec.start])
        scheduler = (NoiseAwareASHA(max_t=spec.epochs, eval_every=spec.eval_every, reduction_factor=spec.reduction_factor,
                                    h_floor=spec.h_floor, h_noise=spec.h_noise, grace_period=spec.grace_period)
                     if early_stopping else RuleScheduler(NoStopping()))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                        max_concurrent_trials=plan.concurrent or None, reuse_actors=True),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=tune_storage(results_uri), verbose=0,
                callbacks=[ParquetCallback(store, spec, log), NodeWatch(spec.max_failures, spec.pack > 1, log)]
                + ([pool] if pool else []),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures)),
        )
    if pool:  # a resumed run's pool and searcher are the restored ones
        searcher, _, callbacks = restored_parts(tuner)
        pool = next(c for c in callbacks if isinstance(c, ExecutorPool))
        pool.start(data, searcher, log)
    store.write_part("study", f"run-{int(time.time() * 1000)}", [study_row(spec, resume, early_stopping)])
    # Tune reads these from the environment when fit() builds its loop: set for the fit only, where
    # the user did not set them. Epochs without evaluation (eval_every > 1) report no val_H: the
    # rule and the searcher skip them, and Tune must not reject them as missing the metric. Our
    # line per errored trial (ParquetCallback) replaces Tune's traceback of it.
    try:
        with tune_environment({PENDING_ENV: str(plan.pending), "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
                                "TUNE_PRINT_ALL_TRIAL_ERRORS": "0"}):
            tuner.fit()
    finally:
        if pool:
            pool.stop()
    if len(store.part_ids("trials")) >= num_samples:
        # Finished: an Optuna trial still RUNNING was asked by a driver that died before its Tune
        # trial was saved; nothing will ever finish it. (After Ctrl-C they stay RUNNING: --resume
        # continues them.)
        stale = fail_stale_running(storage, spec.name, owner=experiment)
        if stale:
            log(f"marked {stale} Optuna trial(s) left RUNNING by an interrupted driver as FAIL")
    return store


@contextmanager
def tune_environment(values: dict[str, str]):
    """Tune's settings that only the environment carries, for the time of a block; a value the user
    set wins, and the environment is as it was afterwards."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


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
    if resume:
        ResultStore(results_uri).check_version()
        check_unchanged(spec, ResultStore(results_uri), results_uri)
    return experiment


# study.parquet's columns that a resumed run keeps, and the study file key each comes from (the
# budget, num_samples, is resumed_budget's). Tune restores the trials, searcher and scheduler as
# they were built: a file changed since would mix two settings in one study.
RESUMED = {"dataset": "study.dataset", "split": "study.split", "seed": "study.seed", "epochs": "training.epochs",
           "grace_period": "asha.grace_period", "reduction_factor": "asha.reduction_factor",
           "h_floor": "selection.h_floor", "h_noise": "selection.h_noise", "audit": "asha.audit", "start": "search.start",
           "pack": "resources.pack", "resources": "resources", "space": "space", "beta": "training.beta",
           "kl_weight": "training.kl_weight", "sampling": "training.sampling", "classifier": "training.classifier",
           "batch_size": "training.batch_size", "eval_every": "training.eval_every", "peak_every": "training.peak_every",
           "hidden": "training.hidden"}


def check_unchanged(spec: StudySpec, store: ResultStore, results_uri: str) -> None:
    """--resume: the study file must still say what it said when the run started (study.parquet's
    first row); a change is refused, naming the key."""
    runs = store.read("study")
    first = runs[~runs.resumed.astype(bool)].sort_values("started_at")
    if first.empty:
        return
    started, now = first.iloc[0].to_dict(), study_row(spec, resumed=True, early_stopping=True)
    for column, key in RESUMED.items():
        for name, was, is_ in _differences(column, key, started.get(column), now[column]):
            raise ConfigError(f"--resume: {spec.path}: {name} = {is_}, but the run in {results_uri} was started "
                              f"with {was}, which a resumed run keeps; set {name} back"
                              + (f" (or pass --gpu {was})" if name == "resources.gpu" and was != "null" else "")
                              + ", or start a new run with another --results folder")


def _differences(column: str, key: str, was, is_):
    """(key, started, now) of each setting that changed; JSON columns name the entry (space.lr)."""
    if column in ("resources", "space"):
        was, is_ = json.loads(was or "{}"), json.loads(is_)
        return [(f"{key}.{k}", json.dumps(was.get(k)), json.dumps(is_.get(k))) for k in sorted({*was, *is_})
                if was.get(k) != is_.get(k)]
    return [(key, was, is_)] if was != is_ else []


def check_local_gpu(spec: StudySpec, flag: str | None = None) -> None:
    """A local study (no --address) trains on this machine: a GPU it asks for must be one torch can
    use here, or no trial (no executor of a packed study) could ever be placed and it would wait forever.
    flag: the command-line flag that set resources.gpu, if one did (named in the error instead of the file)."""
    import torch

    gpu = spec.resources.get("gpu", 0)
    if gpu > 0 and not torch.cuda.is_available():
        asked = f"{flag} {gpu:g}" if flag else f"{spec.path}: resources.gpu = {gpu:g}"
        raise ConfigError(f"{asked}, but torch sees no GPU on this machine (torch {torch.__version__}, CUDA build: "
                          f"{torch.version.cuda}), where a study without --address runs: pass --gpu 0 (or set "
                          "resources.gpu = 0) to train on CPU, or --address of a Ray cluster with GPUs")


def study_row(spec: StudySpec, resumed: bool, early_stopping: bool) -> dict:
    space = {p.name: ({"choices": list(p.choices)} if p.choices is not None
                      else {"low": p.low, "high": p.high, "log": p.log}) for p in spec.space}
    used = TrainConfig(**spec.fixed)  # the fixed settings, or TrainConfig's defaults
    sampling = "searched" if "sampling" in space else used.sampling
    return {"study": spec.name, "dataset": spec.dataset, "split": spec.split, "epochs": spec.epochs,
            "grace_period": spec.grace_period, "reduction_factor": spec.reduction_factor,
            "h_floor": spec.h_floor, "h_noise": spec.h_noise, "audit": spec.audit,
            "start": json.dumps([list(p) for p in spec.start]),
            "early_stopping": early_stopping, "confirm_top": spec.confirm_top, "confirm_splits": spec.confirm_splits,
            "num_samples": spec.num_samples, "batch_size": spec.batch_size, "eval_every": spec.eval_every,
            "peak_every": spec.peak_every, "eval_at": json.dumps(list(spec.eval_at)), "hidden": json.dumps(list(spec.hidden or default_hidden(spec.dataset))),
            "resources": json.dumps(spec.resources), "pack": spec.pack, "space": json.dumps(space), "beta": used.beta,
            "kl_weight": used.kl_weight, "sampling": sampling, "classifier": used.classifier,
            "seed": spec.seed, "resumed": resumed,
            "started_at": datetime.now(timezone.utc), "schema_version": SCHEMA_VERSION, "fingerprint": fingerprint(spec)}


def tune_storage(results_uri: str) -> str:
    if "://" in results_uri and not results_uri.startswith("file://"):
        return f"{results_uri.rstrip('/')}/tune"
    return str((Path(results_uri.removeprefix("file://")) / "tune").resolve())
