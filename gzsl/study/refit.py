"""After the search: the chosen configuration retrained on trainval with several seeds, as Ray
tasks, and scored once on the test split."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace

import torch

from gzsl import hyperparams, modelfile
from gzsl.evaluation import FAST_CLASSIFIER
from gzsl.results import ResultStore
from gzsl.selection import chosen_val_H, confirmed, refit_epoch
from gzsl.study.tasks import gather
from gzsl.study.trial import cap_gpu_memory, train_config, trial_device
from gzsl.studyfile import StudySpec
from gzsl.trainer import MAIN, classifier_config, train

_log = logging.getLogger(__name__)  # progress lines: gzsl.tune prints the `gzsl` logger


def best_params(store: ResultStore, h_noise: float = 0.0) -> dict | None:
    """The configuration to refit (selection.confirmed: the search's best trial, or the finalist the
    confirmation chose), its validation H and the epoch the refit stops and scores at (refit_epoch)."""
    best, _ = confirmed(store.read("trials"), store.read("confirm"), h_noise)
    return None if best is None else trial_params(best, h_noise)


def trial_params(trial: dict, h_noise: float = 0.0) -> dict:
    """A trials.parquet row as the parameters a refit or a confirmation trains: the searched values,
    the trial's id, its validation H and the epoch they stop and score at (refit_epoch)."""
    return {**hyperparams.cast(trial), "trial_id": trial["trial_id"], "val_H": float(chosen_val_H(trial)),
            "epoch": refit_epoch(trial, h_noise)}


def model_path(seed: int) -> str:
    """Where the refit saves a seed's model, relative to the results folder (final.parquet's `model`)."""
    return f"models/seed{seed}.pt"


def _refit_one(spec: StudySpec, params: dict, data, seed: int) -> dict:
    """One seed of the refit, scored on test twice on the same latents of the final model: with
    CADA-VAE's classifier recipe (test_*, the numbers published rows report) and with the fast
    classifier (fast_test_*), whichever of them drove validation H. Runs on any node of a cluster,
    which need share no filesystem with the driver: the model file (gzsl.modelfile, with its
    recipe's classifier; None if it diverged) comes back as bytes in "model_bytes", and the driver
    writes it into the results."""
    import ray

    torch.set_num_threads(max(1, int(spec.resources.get("cpu", 1))))
    # Test is scored the published way whatever classifier validation H used, the fast one beside it,
    # at refit_epoch: where the chosen trial peaked on validation, unless the peak is within the noise
    # of its last epoch (the full schedule's warm-ups up to there).
    device = trial_device(ray.get_gpu_ids())
    cap_gpu_memory(spec, device)
    cfg = replace(train_config(spec, params, seed=seed, device=device), eval_every=0,
                  classifier="cada", score_epoch=params["epoch"])
    start = time.perf_counter()
    last = None
    for last in train(data, cfg, recipes={"fast": FAST_CLASSIFIER}):
        pass
    cada, fast = last.recipe_scores[MAIN], last.recipe_scores["fast"]
    saved, model_bytes = None, None
    if last.trained is not None:
        saved, model_bytes = model_path(seed), modelfile.to_bytes(last.trained, cfg, data, cada, last.epoch)
    return {"model_bytes": model_bytes, "seed": seed, **hyperparams.of(cfg), "kl_weight": cfg.kl_weight, "epochs": cfg.epochs,
            "scored_epoch": last.epoch,
            "classifier_epochs": classifier_config(cfg, data.name).epochs, "test_U": cada.U, "test_S": cada.S, "test_H": cada.H,
            "fast_test_U": fast.U, "fast_test_S": fast.S, "fast_test_H": fast.H,
            "model": saved, "seconds": time.perf_counter() - start, "status": last.status}


def final_refit(spec: StudySpec, params: dict, test_data, store: ResultStore, log=_log.info):
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
    results = store.uri if "://" in store.uri else os.path.abspath(store.uri)

    def written(row: dict) -> None:
        model_bytes = row.pop("model_bytes")
        if model_bytes is not None:  # the driver writes it: the task's node may not see the results folder
            modelfile.write(f"{results.rstrip('/')}/{row['model']}", model_bytes)
        store.write_part("final", f"seed{row['seed']}", [row])
        log(f"final refit seed {row['seed']}: test U {row['test_U']:.2f} S {row['test_S']:.2f} "
            f"H {row['test_H']:.2f} (CADA-VAE classifier recipe, {row['classifier_epochs']} epochs); U {row['fast_test_U']:.2f} "
            f"S {row['fast_test_S']:.2f} H {row['fast_test_H']:.2f} (fast classifier) "
            f"(epoch {row['scored_epoch']} of {row['epochs']}, {row['seconds']:.0f}s, {row['status']})"
            + (f"; model {store.uri.rstrip('/')}/{row['model']}" if row["model"] else ""))

    gather(store, "final", [(f"seed{s}", lambda s=s: task.remote(spec, params, data_ref, s)) for s in todo],
           written, log, "final refit")
    return store.read("final")
