"""The audit of early stopping: a sample of the stopped trials retrained to the end, to say whether
the rungs stopped a trial that would have won. No HPO tool does this; a study that stops trials on
a rule it cannot check cannot say what the rule cost it.

Which stops are audited is the policy's (gzsl.selection.audited: one in eight by default, within
10% of the study's trial-epochs); trials keep no checkpoints, so an audited trial is retrained
from scratch with its own seed and settings (the run it would have had), as a Ray task with a
trial's resources once the search has ended and its slots are free. Each result goes to
audit.parquet as it arrives; an interrupted run does not redo what is there. An audited trial
never becomes the chosen one by itself: the verdict warns, and the confirmation decides.
"""

from __future__ import annotations

import logging
import time

import torch

from gzsl import hyperparams
from gzsl.results import ResultStore
from gzsl.selection import audited
from gzsl.study.tasks import gather
from gzsl.study.trial import cap_gpu_memory, train_config, trial_device
from gzsl.studyfile import StudySpec
from gzsl.trainer import train

_log = logging.getLogger(__name__)  # progress lines: gzsl.tune prints the `gzsl` logger


def _audit_one(spec: StudySpec, trial: dict, data) -> dict:
    """One stopped trial trained to its schedule's end, as its trial trained (the study's seed)."""
    import ray

    torch.set_num_threads(max(1, int(spec.resources.get("cpu", 1))))
    device = trial_device(ray.get_gpu_ids())
    cap_gpu_memory(spec, device)
    cfg = train_config(spec, trial, seed=spec.seed, device=device)
    start = time.perf_counter()
    best, last = (None, 0), None
    for last in train(data, cfg):
        if last.scores is not None and (best[0] is None or last.scores.H > best[0]):
            best = (last.scores.H, last.epoch)
    return {"trial_id": trial["trial_id"], "stopped_epoch": int(trial["epochs_run"]),
            "stopped_val_H": trial.get("last_val_H"), "best_val_H": best[0], "best_epoch": best[1],
            "last_val_H": last.scores.H if last is not None and last.scores is not None else None,
            "epochs_run": last.epoch if last is not None else 0, "seconds": time.perf_counter() - start,
            "status": last.status if last is not None else "error"}


def audit(spec: StudySpec, trials, data, store: ResultStore, log=_log.info):
    """Retrain the stops the policy audits (trials.parquet's pruned trials, in the order they
    ended) on the search's split `data`; returns audit.parquet."""
    import ray

    stops = trials[trials.status == "pruned"].sort_values("ended_at")
    trained = int(trials.epochs_run.sum())
    chosen = audited(list(stops.trial_id), trained, spec.epochs, spec.audit)
    todo = [r for _, r in stops[stops.trial_id.isin(chosen)].iterrows() if not store.has_part("audit", r.trial_id)]
    if chosen:
        log(f"audit: {len(chosen)} of {len(stops)} stopped trials retrained to epoch {spec.epochs} "
            f"({len(todo)} to go; asha.audit = {spec.audit:g})")
    res = spec.resources
    task = ray.remote(num_cpus=res.get("cpu", 1), num_gpus=res.get("gpu", 0))(_audit_one)
    ref = ray.put(data) if todo else None
    left = [len(todo)]

    def written(row: dict) -> None:
        store.write_part("audit", row["trial_id"], [row])
        left[0] -= 1
        h = f"{row['best_val_H']:.2f}" if row["best_val_H"] is not None else "none"
        log(f"audit trial {row['trial_id']}: stopped at epoch {row['stopped_epoch']}; to the end: best H {h} "
            f"(epoch {row['best_epoch']}), {row['seconds']:.0f}s ({left[0]} to go)")

    jobs = [(r.trial_id, lambda r=r: task.remote(spec, {**{k: r[k] for k in hyperparams.names() if k in r},
                                                        "trial_id": r.trial_id, "epochs_run": r.epochs_run,
                                                        "last_val_H": r.last_val_H}, ref)) for r in todo]
    gather(store, "audit", jobs, written, log, "audit trial")
    return store.read("audit")
