"""Between the search and the refit: the finalists confirmed on fresh validation splits.

A search ranks its trials on one validation split, and its best trial is the maximum of many
noisy numbers: on synth-small (8 validation classes) the search's choice scored 61.8 on
validation and 44.5 on test, where the defaults scored 50.5 and 54.6 (docs/benchmarks.md, "A
study against its defaults"). So the best `[confirm] top` trials and method.md's defaults are
each retrained, with the epochs and scoring of the refit, on `[confirm] splits` other sets of
validation classes (gzsl.data.build's val_split), and selection.confirmed chooses among them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import torch

from gzsl.results import ResultStore
from gzsl.study.tasks import gather
from gzsl.study.refit import trial_params
from gzsl.study.trial import cap_gpu_memory, train_config, trial_device
from gzsl.studyfile import StudySpec
from gzsl.trainer import train

_log = logging.getLogger(__name__)  # progress lines: gzsl.tune prints the `gzsl` logger


def part(trial_id: str, split: int) -> str:
    return f"{trial_id}-split{split}"


def _confirm_one(spec: StudySpec, params: dict, data, split: int) -> dict:
    """One finalist on one fresh validation split, trained as its trial was (the study's seed
    moved by the split: a new initialisation as well as new classes) and scored where its refit would
    be (refit.refit_epoch)."""
    import ray

    torch.set_num_threads(max(1, int(spec.resources.get("cpu", 1))))
    seed = spec.seed + split
    device = trial_device(ray.get_gpu_ids())
    cap_gpu_memory(spec, device)
    cfg = replace(train_config(spec, params, seed=seed, device=device), eval_every=0, score_epoch=params["epoch"])
    start = time.perf_counter()
    last = None
    for last in train(data, cfg):
        pass
    s = last.scores
    return {"trial_id": params["trial_id"], "start": params["start"], "val_split": split, "seed": seed,
            "scored_epoch": last.epoch, "val_U": s.U if s else None, "val_S": s.S if s else None,
            "val_H": s.H if s else None, "seconds": time.perf_counter() - start,
            "status": "completed" if last.status == "completed" and s is not None else last.status}


def confirm(spec: StudySpec, finalists: list[dict], split_data: dict, store: ResultStore, log=_log.info):
    """Retrain every finalist (trials.parquet rows) on every fresh split (split -> GZSLData), as Ray
    tasks with a trial's resources; each result is written to confirm.parquet as it arrives, and
    pairs already there (an interrupted run) are not redone. Returns confirm.parquet."""
    import ray

    res = spec.resources
    task = ray.remote(num_cpus=res.get("cpu", 1), num_gpus=res.get("gpu", 0))(_confirm_one)
    refs = {k: ray.put(d) for k, d in split_data.items()}
    jobs = [(part(f["trial_id"], k), lambda f=f, k=k: task.remote(
                spec, {**trial_params(f, spec.h_noise), "start": f.get("start") or ""}, refs[k], k))
            for f in finalists for k in sorted(split_data) if not store.has_part("confirm", part(f["trial_id"], k))]
    left = [len(jobs)]

    def written(row: dict) -> None:
        store.write_part("confirm", part(row["trial_id"], row["val_split"]), [row])
        left[0] -= 1
        label = f" ({row['start']})" if row["start"] else ""
        shown = f"U {row['val_U']:.2f} S {row['val_S']:.2f} H {row['val_H']:.2f}" if row["val_H"] is not None else "no score"
        log(f"confirm trial {row['trial_id']}{label} on validation split {row['val_split']}: {shown} "
            f"(epoch {row['scored_epoch']}, {row['seconds']:.0f}s, {row['status']}; {left[0]} to go)")

    gather(store, "confirm", jobs, written, log, "confirmation")
    return store.read("confirm")
