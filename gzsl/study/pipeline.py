"""A study from start to end, in the order it runs: the search, the audit of its stops, the
finalists confirmed on fresh validation splits, the choice, the refit on trainval scored once on
test, and the report. `gzsl.tune` checks the input (gzsl.gate), starts Ray, calls `run` and says
how it ended; the rules each step applies are gzsl.selection's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from gzsl.results import ResultStore
from gzsl.selection import alignment_rung, best_trial, confirmed, finalists, wrongful
from gzsl.study.audit import audit
from gzsl.study.confirm import confirm
from gzsl.study.driver import run_study
from gzsl.study.refit import best_params, final_refit
from gzsl.studyfile import StudySpec

_log = logging.getLogger(__name__)  # progress lines: gzsl.tune prints the `gzsl` logger


@dataclass(frozen=True)
class Steps:
    """What a run does beyond the search, and how (gzsl.tune's flags)."""

    num_samples: int | None = None  # the trial budget (None: the study file's, or the resumed run's)
    max_concurrent: int | None = None
    optuna_url: str | None = None  # None: the results folder's SQLite
    resume: bool = False
    cluster: bool = False  # Ray is a cluster that may grow (--address)
    experiment: str | None = None  # Tune's folder, from check_start (already checked before Ray started)
    confirm: bool = True  # retrain the finalists on fresh validation splits ([confirm] of the study file)
    refit: bool = True
    report: str | None = "reports"  # the report's folder; None: no report


@dataclass
class StudyResult:
    """How a run ended, and what it left in its results folder (`store`)."""

    store: ResultStore
    searched: int  # trials recorded
    budget: int  # trials this run was to record
    chosen: dict | None = None  # the refit's parameters (gzsl.study.refit.best_params); None: nothing scored
    final: pd.DataFrame = field(default_factory=pd.DataFrame)  # final.parquet: one row per refit seed
    seeds: int = 0  # refit seeds asked for
    report: str | None = None  # the page written, if any

    @property
    def interrupted(self) -> bool:
        return self.searched < self.budget

    @property
    def seeds_failed(self) -> int:
        return self.seeds - len(self.final) if self.seeds else 0


def run(spec: StudySpec, load: Callable, results: str, steps: Steps = Steps(), data=None, log=_log.info) -> StudyResult:
    """The study in `spec`, its results in `results`; `load(dataset, split, data_root, seed=, val_split=)`
    reads a split (gzsl.datasets.load); `data`: the search's split, where the caller loaded it
    already. Needs a running Ray (ray.init)."""
    data = data if data is not None else load(spec.dataset, spec.split, spec.data_root, seed=spec.seed)
    store = run_study(spec, data, results, num_samples=steps.num_samples, max_concurrent=steps.max_concurrent,
                      optuna_url=steps.optuna_url, resume=steps.resume, cluster=steps.cluster,
                      experiment=steps.experiment, log=log)
    trials = store.read("trials")
    budget = int(store.read("study").sort_values("started_at").num_samples.iloc[-1])  # this run's budget
    result = StudyResult(store, len(trials), budget)
    if result.interrupted:
        return result
    log("trials: " + ", ".join(f"{k} {v}" for k, v in sorted(trials.status.value_counts().to_dict().items())))
    audit_stops(spec, store, data, log)
    if steps.confirm and spec.confirm_top > 0 and spec.confirm_splits > 0:
        confirm_finalists(spec, store, load, log)
    result.chosen = best_params(store, spec.h_noise)
    if result.chosen is None:
        return result
    log("best configuration: " + params_line(result.chosen))
    if steps.refit and spec.final_seeds > 0:
        test_data = load(spec.dataset, "test", spec.data_root, seed=spec.seed)  # the first use of test images
        result.final, result.seeds = final_refit(spec, result.chosen, test_data, store, log), spec.final_seeds
        if result.final.empty:
            return result
        log_test_scores(result.final, store, log)
    if steps.report:
        result.report = write_report(spec.name, results, steps.report, log)
    return result


def params_line(params: dict) -> str:
    """Parameters as the driver's lines show them: name=value, floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def audit_stops(spec: StudySpec, store: ResultStore, data, log=_log.info) -> None:
    """The stops the policy audits, retrained to the end (gzsl.study.audit), and the verdict:
    a warning, with what to change, when a stop cost the study a better trial."""
    trials = store.read("trials")
    rows = audit(spec, trials, data, store, log)
    best = best_trial(trials)
    if rows.empty or best is None:
        return
    found = wrongful(dict(zip(rows.trial_id, rows.best_val_H)), best["best_val_H"], spec.h_noise)
    log(f"stops audited: {len(rows)}; would have beaten the search's best (val H {best['best_val_H']:.2f}) by more "
        f"than h_noise = {spec.h_noise:g}: {len(found)}")
    if found:
        log(f"warning: the rungs stopped {len(found)} trial(s) that would have won ({', '.join(found)}; "
            "audit.parquet): this data ranks late; raise selection.h_noise, or set asha.grace_period = "
            f"{alignment_rung(spec.epochs, spec.eval_every)} (one rung, after the warm-ups), and --resume or rerun")


def confirm_finalists(spec: StudySpec, store: ResultStore, load: Callable, log=_log.info) -> None:
    """The finalists retrained on fresh validation splits (gzsl.study.confirm), and the table of
    what that showed."""
    trials = store.read("trials")
    chosen = finalists(trials, spec.confirm_top)
    if not chosen:
        return
    splits = range(1, spec.confirm_splits + 1)
    log(f"confirming {len(chosen)} finalists (the best {spec.confirm_top} and the defaults) on "
        f"{spec.confirm_splits} fresh validation splits: {len(chosen) * spec.confirm_splits} trainings")
    data = {k: load(spec.dataset, spec.split, spec.data_root, seed=spec.seed, val_split=k) for k in splits}
    rows = confirm(spec, chosen, data, store, log)
    pick, means = confirmed(trials, rows, spec.h_noise)
    for f in chosen:
        tid = f["trial_id"]
        label = f" ({f['start']})" if f.get("start") else ""
        mean = f"{means[tid]:.2f}" if tid in means else "incomplete"
        log(f"  trial {tid}{label}: search val H {f['best_val_H']:.2f}; fresh splits mean {mean}"
            + ("  <- chosen" if pick is not None and pick["trial_id"] == tid else ""))
    log(f"(a finalist replaces the defaults only when ahead of them by more than selection.h_noise = {spec.h_noise:g} H)")


def log_test_scores(final: pd.DataFrame, store: ResultStore, log=_log.info) -> None:
    """The refit's test U, S, H (mean ± std over its seeds) with each classifier, and its models."""
    for prefix, label in (("test_", "CADA-VAE classifier recipe"), ("fast_test_", "fast classifier")):
        if len(final) == 1:
            log(f"test (1 seed), {label}: " + "  ".join(f"{k} {final[prefix + k].iloc[0]:.2f}" for k in "USH"))
        else:
            log(f"test (mean ± std over {len(final)} seeds), {label}: " + "  ".join(
                f"{k} {final[prefix + k].mean():.2f} ± {final[prefix + k].std():.2f}" for k in "USH"))
    saved = final.dropna(subset=["model"]).sort_values("seed")
    if len(saved):
        root = store.uri.rstrip("/")
        log(f"models: {len(saved)} in {root}/models/ (python -m gzsl.predict --model {root}/{saved.model.iloc[0]})")


def write_report(name: str, results: str, folder: str, log=_log.info) -> str | None:
    """The study's HTML report in `folder`; a report that fails is one line, never a failed study:
    the results are safe in Parquet."""
    from gzsl import report

    try:
        path = report.write_report(results, os.path.join(folder, f"{name}.html"), study=name)
    except Exception as exc:
        log(f"report not written ({type(exc).__name__}: {exc}); results are in {results}, "
            f"retry with python -m gzsl.report --results {results}")
        return None
    log(f"report: {path}")
    return str(path)
