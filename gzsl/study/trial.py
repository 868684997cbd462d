"""The trial: one configuration trained by gzsl.trainer.train inside a Tune function trainable,
reporting every epoch; its device is what Ray assigned it."""

from __future__ import annotations

import functools
import torch
from ray import tune

from gzsl import hyperparams
from gzsl.datasets import default_hidden
from gzsl.errors import ConfigError
from gzsl.studyfile import StudySpec
from gzsl.trainer import EpochResult, TrainConfig, train

METRIC, MODE = "val_H", "max"


def train_config(spec: StudySpec, values: dict, seed: int, device: str = "cpu") -> TrainConfig:
    """A trial's TrainConfig: the study's fixed settings plus the searched parameters (a refit's
    values, from trials.parquet, may repeat a fixed `sampling`: the recorded value is used)."""
    return TrainConfig(
        **{**spec.fixed, **hyperparams.cast(values)}, epochs=spec.epochs, batch_size=spec.batch_size, eval_every=spec.eval_every,
        eval_at=spec.eval_at, seed=seed, hidden=spec.hidden or default_hidden(spec.dataset), device=device,
    )


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


def gpu_memory_share(spec: StudySpec, device: str) -> float | None:
    """The share of its GPU's memory a process of this study may allocate ([resources] gpu, at most
    the whole GPU), or None on a CPU, where nothing is capped."""
    if torch.device(device).type != "cuda":
        return None
    return min(1.0, spec.resources.get("gpu", 1.0) or 1.0)


def cap_gpu_memory(spec: StudySpec, device: str) -> float | None:
    """Several processes share a GPU (a trial, a pack's executor, a refit or confirmation task, each
    with [resources] gpu < 1): cap this one's allocations at its share, so one cannot starve the
    others; the peak is counted from here. Returns the share set (None: nothing to cap)."""
    share = gpu_memory_share(spec, device)
    if share is not None:
        torch.cuda.set_per_process_memory_fraction(share, torch.device(device))
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    return share


def objective(config: dict, data=None, spec: StudySpec = None) -> None:
    """Function trainable: train one model, report every epoch to Tune."""
    import ray

    cpus = spec.resources.get("cpu", 1)
    torch.set_num_threads(max(1, int(cpus)))  # exactly the CPUs Tune gave us: no OpenMP oversubscription
    gpu_ids = ray.get_gpu_ids()
    device = trial_device(gpu_ids)
    cap_gpu_memory(spec, device)
    where = placement(gpu_ids)
    cfg = train_config(spec, config, seed=spec.seed, device=device)
    for r in train(data, cfg):
        gpu_mem = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
        report(epoch_metrics(r, where, gpu_mem), spec)


@functools.cache  # a cache: Ray's metrics are registered once per process
def _gauges() -> dict:
    from ray.util.metrics import Gauge

    tags = ("study", "trial", "executor")
    return {"epoch": Gauge("gzsl_trial_epoch", "epochs a gzsl trial has trained", tag_keys=tags),
            "val_H": Gauge("gzsl_trial_val_h", "validation H (%) of a gzsl trial's last evaluated epoch", tag_keys=tags)}


def report(row: dict, spec: StudySpec) -> None:
    """tune.report, and the trial's epoch and validation H as Ray metrics (gauges gzsl_trial_epoch
    and gzsl_trial_val_h, tagged study, trial and executor: the one that trains it, "" alone) for
    a Prometheus/Grafana that scrapes Ray."""
    tune.report(row)
    try:
        gauges = _gauges()
        tags = {"study": spec.name, "trial": tune.get_context().get_trial_id(), "executor": row.get("executor_id", "")}
        gauges["epoch"].set(row["epoch"], tags=tags)
        if METRIC in row:
            gauges["val_H"].set(row[METRIC], tags=tags)
    except Exception:  # metrics are for watching: never a reason for a trial to fail
        pass


def placement(gpu_ids: list) -> dict:
    """Where a trial (or a pack's executor) runs, as trials.parquet records it."""
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "gpu_id": ",".join(str(g) for g in gpu_ids)}


def epoch_metrics(r: EpochResult, where: dict, gpu_mem_mb: float | None = None) -> dict:
    """One epoch of a trial as reported to Tune. H only on the epochs that computed it
    (eval_every): a repeated older H would be compared by ASHA's rungs and recorded by Optuna
    as if it were this epoch's."""
    scores = {"val_U": r.scores.U, "val_S": r.scores.S, "val_H": r.scores.H} if r.scores is not None else {}
    metrics = {"epoch": r.epoch, "status": r.status, "epoch_seconds": r.seconds, "eval_seconds": r.eval_seconds,
               "evaluated": r.scores is not None, "path": r.path,
               **{f"loss_{k}": v for k, v in r.losses.items()}, **scores, **where}
    if gpu_mem_mb is not None:
        metrics["gpu_mem_mb"] = gpu_mem_mb
    return metrics


def trial_status(result: dict | None, error: bool, max_epochs: int) -> str:
    if error or not result:
        return "error"
    if result.get("status") == "diverged":
        return "diverged"
    return "completed" if result.get("epoch", 0) >= max_epochs else "pruned"
