"""The driver-side callback that writes each finished trial to Parquet and prints its line."""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from pathlib import Path

from ray import tune

from gzsl import hyperparams
from gzsl.results import ResultStore
from gzsl.study.trial import METRIC, train_config, trial_status
from gzsl.studyfile import StudySpec, start_label

# Progress lines go to the `gzsl` logger, which gzsl.tune prints on standard output; a logger's
# bound method pickles by the logger's name (Tune pickles the callbacks that hold one).
_log = logging.getLogger(__name__)


class ParquetCallback(tune.Callback):
    """Runs in the driver: collects each trial's per-epoch results and writes its rows
    when it ends (completed, pruned, diverged or errored). Prints a progress line."""

    def __init__(self, store: ResultStore, spec: StudySpec, log=_log.info):
        self.store, self.spec, self.log = store, spec, log
        self.epochs: dict[str, dict[int, dict]] = {}
        self.started: dict[str, float] = {}
        self.first_result: dict[str, float] = {}
        self.numbers: dict[str, int] = {}
        self.best: tuple[float, dict] | None = None
        self.finished = 0

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started.setdefault(trial.trial_id, time.time())
        self.numbers.setdefault(trial.trial_id, proposal_number(trial, trials))

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.on_trial_start(iteration, trials, trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed attempt that Tune retries (max_failures): its row and epochs will be the new
        attempt's, which starts again from epoch 1."""
        for kept in (self.epochs, self.started, self.first_result):
            kept.pop(trial.trial_id, None)
        failures = getattr(trial, "num_failures", None)
        self.log(f"trial {trial.trial_id} retried" + (f" (failure {failures} of up to {self.spec.max_failures})"
                                                      if failures else "") + f": {_last_error(trial)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.first_result.setdefault(trial.trial_id, time.time())
        # Keyed by epoch: a trial restarted after a crash or resume overwrites, never duplicates.
        self.epochs.setdefault(trial.trial_id, {})[result["epoch"]] = result

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, error=None)

    def on_trial_error(self, iteration, trials, trial, **info):
        err = getattr(trial, "error_file", None)
        text = _last_error(trial)
        # Tune keeps the traceback in the trial's folder under --results (the local copy is temporary).
        kept = f"{trial.path}/error.txt" if getattr(trial, "path", None) else err
        self._finish(trial, error=text, traceback_file=kept)

    def _finish(self, trial, error: str | None, traceback_file: str | None = None):
        tid = trial.trial_id
        epochs = [self.epochs.get(tid, {})[k] for k in sorted(self.epochs.get(tid, {}))]
        last = epochs[-1] if epochs else {}
        status = trial_status(last, error is not None, self.spec.epochs)
        evaluated = [e for e in epochs if METRIC in e]
        best = max(evaluated, key=lambda e: e[METRIC]) if evaluated else {}
        scored = evaluated[-1] if evaluated else {}  # last_val_*: a trial stopped at an epoch without H keeps its last H
        started = self.started.get(tid, time.time())
        ended = time.time()
        used = train_config(self.spec, trial.config, seed=self.spec.seed)  # searched values plus defaults
        params = hyperparams.of(used)
        row = {
            "trial_id": tid, "trial_number": self.numbers.get(tid, -1), "status": status, **params,
            "best_val_H": best.get("val_H"), "best_val_U": best.get("val_U"), "best_val_S": best.get("val_S"),
            "best_epoch": best.get("epoch"), "last_val_H": scored.get("val_H"), "last_val_U": scored.get("val_U"),
            "last_val_S": scored.get("val_S"), "epochs_run": last.get("epoch", 0), "seconds": ended - started,
            "started_at": datetime.fromtimestamp(started, timezone.utc),
            "ended_at": datetime.fromtimestamp(ended, timezone.utc),
            "node_id": last.get("node_id"), "node_ip": last.get("node_ip"), "gpu_id": last.get("gpu_id", ""),
            "executor_id": last.get("executor_id", ""),
            "gpu_mem_mb": max((e.get("gpu_mem_mb") or 0 for e in epochs), default=None) if any(
                "gpu_mem_mb" in e for e in epochs) else None,
            "seed": self.spec.seed, "error": error,
            # Trial start to its first reported epoch, less that epoch's own time: the scheduling overhead.
            "startup_seconds": (self.first_result[tid] - started - epochs[0].get("epoch_seconds", 0.0))
            if tid in self.first_result and epochs else None,
            "start": start_label(self.spec, params),
            "path": last.get("path", ""),
        }
        if status == "diverged":
            row["best_val_H"] = row["last_val_H"] = 0.0
        epoch_rows = [{"trial_id": tid, "epoch": e["epoch"], "seconds": e.get("epoch_seconds"),
                       "eval_seconds": e.get("eval_seconds"),
                       **{k: e.get(k) for k in ("loss_total", "loss_vae", "loss_sc", "loss_cr", "loss_dd")},
                       **({"val_U": e["val_U"], "val_S": e["val_S"], "val_H": e["val_H"]} if e.get("evaluated")
                          else {})} for e in epochs]
        # The trial's row is the commit: written last, and a trial with one is recorded whole. A kill
        # between the two parts leaves epochs without a row, which readers ignore (records.load) and
        # the rerun replaces with its own.
        if self.store.has_part("trials", tid):
            return
        self.store.write_part("epochs", tid, epoch_rows, replace=True)
        self.store.write_part("trials", tid, [row])
        self.finished += 1
        h = row["best_val_H"] if row["best_val_H"] is not None else float("nan")
        last_h = row["last_val_H"] if row["last_val_H"] is not None else float("nan")
        if status == "completed" and not math.isnan(h) and (self.best is None or h > self.best[0]):
            self.best = (h, params)  # the study chooses among completed trials (selection.best_trial)
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in params.items()) + (f" ({row['start']})" if row["start"] else "")
        best = f"best so far H {self.best[0]:.2f}" if self.best else "none completed yet"
        at = f" (epoch {row['best_epoch']})" if row["best_epoch"] is not None else ""
        self.log(f"[{self.finished}/{self.spec.num_samples}] {tid} {status:9s} best H {h:5.2f}{at} last {last_h:5.2f} "
                 f"epochs {row['epochs_run']:>3} {shown}  | {best}" + (f"  error: {error}" if error else "")
                 + (f" (traceback: {traceback_file})" if traceback_file else "")
                 + (f"  path: {row['path']}" if row["path"] not in ("", "eager") else ""))


def proposal_number(trial, trials) -> int:
    """The order in which the searcher proposed the trial (0-based): the counter that starts Tune's
    experiment tag ("3_alpha=..."), which a resume restores and a retry keeps. Tune moves a retried
    trial to the end of its list, so the list's order serves only a trial without that tag."""
    head = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return int(head) - 1 if head.isdigit() else trials.index(trial)


def _last_error(trial) -> str:
    """The last line of the trial's error (Tune's error.txt of the trial)."""
    err = getattr(trial, "error_file", None)
    lines = Path(err).read_text().strip().splitlines() if err and Path(err).is_file() else []
    return lines[-1].strip() if lines else "trial raised"


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
