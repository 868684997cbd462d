"""Shared by the science benchmarks: train many configurations, one process per core, each
result appended to a JSON-lines file as it finishes (a rerun skips the jobs already there)."""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def job_key(job: dict) -> str:
    """A job's identity in a results file. Floats count to 9 digits: the configurations Optuna
    draws differ in their last bits between numpy versions (a GPU machine's and this one's)."""
    def rounded(v):
        if isinstance(v, float):
            return float(f"{v:.9g}")
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rounded(x) for x in v]
        return v
    return json.dumps(rounded(job), sort_keys=True)


def suffix(device: str) -> str:
    """Results files name the device when it is not the CPU: -cuda.jsonl."""
    return "" if device == "cpu" else f"-{device.split(':')[0]}"


def with_data_id(job: dict) -> dict:
    """Stamp a synthetic job (a synthetic or an attribute preset, with its "preset" overrides) with
    its preset's fingerprint: a changed preset reruns, never reuses."""
    from gzsl import synthetic

    if synthetic.is_preset(job["dataset"]):
        return {**job, "data_id": synthetic.fingerprint(job["dataset"], job.get("preset"))}
    return job


def load_data(job: dict, seed: int, data_root: str | None = None):
    """A job's data: its dataset by name (data_root: the xlsa17 folder of real datasets and of
    attribute presets such as cub-sim), or, with job["preset"], an attribute preset with those
    settings replaced (a generator sweep). job["val_split"]: another set of validation classes
    (gzsl.data.build), 0 by default."""
    from gzsl import synthetic
    from gzsl.data import build
    from gzsl.datasets import load

    val_split = job.get("val_split", 0)
    if job.get("preset"):
        raw = synthetic.generate_from_attributes(job["dataset"], data_root, **job["preset"])
        return build(raw, job["split"], seed, val_split)
    return load(job["dataset"], job["split"], data_root, seed=seed, val_split=val_split)


def recipes() -> dict:
    """Final-classifier recipes a job may ask for by name, all fit on the same sampled latents:
    CADA-VAE's, the same recipe redrawn (the noise floor of any ranking against it), and
    larger-batch fits between it and the fast one."""
    from gzsl.evaluation import CADA_RECIPE, ClassifierConfig

    return {"cada": CADA_RECIPE, "cada_redraw": CADA_RECIPE,
            "b256": ClassifierConfig(epochs=23, batch_size=256, lr=3e-3),
            "b1024": ClassifierConfig(epochs=23, batch_size=1024, lr=8e-3)}


def run_job(job: dict, data_root: str | None = None) -> dict:
    """job: {"dataset", "split", "config": TrainConfig overrides, "recipes": [names of recipes()],
    "curve": "fast" | "cada", "preset": an attribute preset's overridden settings,
    "val_split": the validation classes (0 by default)} ("recipe": true
    is ["cada"]). Trains one model with gzsl.trainer.train and returns its H at each evaluated
    epoch (`curve`'s classifier, the fast one by default: cheap at every epoch) and its final
    scores: the fast classifier and each recipe, fit on the same latents. data_root: the xlsa17
    folder, for real datasets and attribute presets (not part of the job: results files stay
    comparable across machines)."""
    import torch

    from gzsl.evaluation import FAST_CLASSIFIER
    from gzsl.datasets import default_hidden
    from gzsl.trainer import MAIN, TrainConfig, train

    torch.set_num_threads(1)  # one process per core: OpenMP threads must not fight
    curve = job.get("curve", "fast")
    hidden = tuple(job.get("preset", {}).get("hidden", default_hidden(job["dataset"])))
    cfg = TrainConfig(**{"hidden": hidden, "classifier": curve, **job["config"]})
    data = load_data(job, cfg.seed, data_root)
    start, per_epoch, per_epoch_us = time.perf_counter(), [], []
    names = job.get("recipes", ["cada"] if job.get("recipe") else [])
    wanted = {name: recipes()[name] for name in names if name != curve}
    if curve != "fast":
        wanted["fast"] = FAST_CLASSIFIER
    for r in train(data, cfg, recipes=wanted):
        if r.scores is not None:
            per_epoch.append([r.epoch, r.scores.H])
            per_epoch_us.append([r.epoch, round(r.scores.U, 2), round(r.scores.S, 2)])
    final = {(curve if name == MAIN else name): s for name, s in (r.recipe_scores or {MAIN: r.scores}).items()}
    return {"job": job, "seconds": time.perf_counter() - start, "per_epoch": per_epoch, "per_epoch_us": per_epoch_us,
            **{f"{name}_{k}": round(v, 2) for name, s in final.items() for k, v in s._asdict().items()}}


def run_all(jobs: list[dict], out: Path, workers: int, log=print, data_root: str | None = None) -> list[dict | None]:
    """Run the jobs not yet in `out` on `workers` processes; return every job's result.
    workers = 0 runs nothing: the results already in `out`, None for the others (tables of a
    partial run, e.g. one cut short on a lent GPU machine). data_root: the xlsa17 folder, for
    real datasets and attribute presets (cub-sim)."""
    jobs = [with_data_id(j) for j in jobs]
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done[job_key(r["job"])] = r
    todo = [j for j in jobs if job_key(j) not in done]
    log(f"{len(jobs) - len(todo)} of {len(jobs)} runs already in {out}; {len(todo)} to go on {workers} process(es)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if todo and workers > 0:
        with mp.get_context("spawn").Pool(workers) as pool, out.open("a") as f:
            for r in pool.imap_unordered(partial(run_job, data_root=data_root), todo):
                f.write(json.dumps(r) + "\n")
                f.flush()
                done[job_key(r["job"])] = r
                log(f"  {describe(r['job'])}: H {r['fast_H']:.1f} (U {r['fast_U']:.1f} S {r['fast_S']:.1f})"
                    f" in {r['seconds']:.0f}s")
    return [done.get(job_key(j)) for j in jobs]


def describe(job: dict) -> str:
    cfg = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in job["config"].items())
    return f"{job['dataset']} {job['split']} {cfg}"


def workers_default() -> int:
    import os

    return max(1, min(len(os.sched_getaffinity(0)), 8))


