"""Packed trials inside Ray Tune ([resources] pack = K > 1).

An executor actor per worker (a GPU, or a CPU worker: the study's [resources]) owns the data on
its device and trains whatever members are joined as one pack (gzsl.pack_training). Each Tune
trial stays one configuration: a thin function that joins an executor, reports the epochs the
executor hands it, and leaves when it ends or ASHA stops it (the driver's callback tells the
executor, so a stopped member never lingers). OptunaSearch, ASHA, the Parquet callback, resume
and the report see what they see without packing.
"""

from __future__ import annotations

import threading
import time

import ray
import torch
from ray import tune

from gzsl.pack_training import PackTrainer, pack_shape
from gzsl.studies import StudySpec
from gzsl.study.trial import epoch_metrics, placement, train_config, trial_device
from gzsl.training import TrainConfig

LEFT = "left"  # next_result's answer to a member that is no longer in the pack
STUB_CPU = 0.01  # what one worker's trial functions hold together; its executor holds the rest


def max_latent(spec: StudySpec) -> int:
    """The widest latent a trial of this study can have: the pack pads every member to it."""
    for p in spec.space:
        if p.name == "latent_size":
            return int(max(p.choices)) if p.choices is not None else int(p.high)
    return int(spec.fixed.get("latent_size", TrainConfig.latent_size))


def executor_resources(spec: StudySpec) -> dict:
    res = spec.resources
    return {"num_cpus": max(res.get("cpu", 1) - STUB_CPU, 0), "num_gpus": res.get("gpu", 0)}


def trial_resources(spec: StudySpec) -> dict:
    return {"cpu": STUB_CPU / spec.pack}


def executor_names(experiment: str, n: int) -> list[str]:
    import hashlib

    tag = hashlib.sha1(experiment.encode()).hexdigest()[:8]
    return [f"gzsl-pack-{tag}-{i}" for i in range(n)]


def workers_that_fit(spec: StudySpec, cluster: dict, max_concurrent: int = 0) -> int:
    """Executors to start: as many workers as the cluster holds now (at least one), fewer when
    --max-concurrent asks for fewer trials at once."""
    res = {k: v for k, v in spec.resources.items() if v > 0}
    fits = min((int(cluster.get(k.upper(), 0) // v) for k, v in res.items()), default=1)
    if max_concurrent:
        fits = min(fits, -(-max_concurrent // spec.pack))
    return max(1, fits)


@ray.remote
class PackExecutor:
    """Trains the joined members between epochs of the pack; joins and leaves wait for the next
    epoch boundary. Results wait in a queue per member until its trial takes them."""

    def __init__(self, spec: StudySpec, data, name: str):
        torch.set_num_threads(max(1, int(spec.resources.get("cpu", 1))))
        gpu_ids = ray.get_gpu_ids()
        self.spec, self.device = spec, trial_device(gpu_ids)
        self.where = {**placement(gpu_ids), "pack_id": name}
        first = train_config(spec, {}, seed=spec.seed, device=self.device)
        self.pack = PackTrainer(data, pack_shape(data, first, max_latent(spec)), self.device)
        self.cv = threading.Condition()
        self.joining: dict[str, TrainConfig] = {}
        self.leaving: set[str] = set()
        self.queues: dict[str, list[dict]] = {}
        self.error: str | None = None
        threading.Thread(target=self._loop, daemon=True).start()

    def try_join(self, key: str, params: dict) -> bool:
        """Take `key` at the next epoch boundary if this pack will have room then."""
        with self.cv:
            if self.load() >= self.spec.pack:
                return False
            self.joining[key] = train_config(self.spec, params, seed=self.spec.seed, device=self.device)
            self.queues[key] = []
            self.cv.notify_all()
            return True

    def leave(self, key: str) -> None:
        with self.cv:
            self.queues.pop(key, None)
            if self.joining.pop(key, None) is None and any(m.key == key for m in self.pack.members):
                self.leaving.add(key)

    def next_result(self, key: str, timeout: float = 30.0) -> dict | str | None:
        """The member's next epoch (metrics as a solo trial reports them), None after `timeout`,
        or LEFT once the member has left (ASHA stopped its trial)."""
        with self.cv:
            self.cv.wait_for(lambda: self.error or self.queues.get(key) or key not in self.queues, timeout)
            if self.error:
                raise RuntimeError(f"pack executor {self.where['pack_id']} failed: {self.error}")
            if key not in self.queues:
                return LEFT
            queue = self.queues[key]
            return queue.pop(0) if queue else None

    def members(self) -> list[str]:
        return [m.key for m in self.pack.members]

    def load(self) -> int:
        """Members that will train after the next epoch boundary (leaves are applied before joins)."""
        with self.cv:
            return len(self.pack.members) + len(self.joining) - len(self.leaving)

    def _loop(self) -> None:
        try:
            while True:
                with self.cv:
                    for key in self.leaving:
                        if any(m.key == key for m in self.pack.members):
                            self.pack.leave(key)
                    self.leaving.clear()
                    for key, config in self.joining.items():
                        self.pack.join(key, config)
                    self.joining.clear()
                    if not self.pack.members:
                        self.cv.wait(timeout=1.0)
                        continue
                cuda = self.device == "cuda"
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                n = len(self.pack.members)
                results = self.pack.run_epoch()  # outside the lock: trials may join and leave meanwhile
                gpu_mem = torch.cuda.max_memory_allocated() / 2**20 / n if cuda else None
                with self.cv:
                    for key, r in results.items():
                        if key in self.queues:
                            self.queues[key].append(epoch_metrics(r, self.where, gpu_mem))
                    self.cv.notify_all()
        except Exception as exc:  # every waiting trial fails with it, instead of waiting forever
            with self.cv:
                self.error = f"{type(exc).__name__}: {exc}"
                self.cv.notify_all()


def packed_objective(config: dict, spec: StudySpec = None, executors: list = None) -> None:
    """Function trainable of a packed study: join an executor, report each epoch it trains."""
    key = tune.get_context().get_trial_id()
    executor = None
    while executor is None:  # the least loaded pack first; all full: a member leaves at the next epoch boundary
        loads = ray.get([e.load.remote() for e in executors])
        for _, i in sorted(zip(loads, range(len(executors)))):
            if ray.get(executors[i].try_join.remote(key, config)):
                executor = executors[i]
                break
        else:
            time.sleep(0.2)
    try:
        while True:
            row = ray.get(executor.next_result.remote(key))
            if row == LEFT:
                return
            if row is None:  # the pack's epoch is still running
                continue
            tune.report(row)
            if row["status"] != "running":
                return
    finally:
        executor.leave.remote(key)


class LeaveOnStop(tune.Callback):
    """Runs in the driver: a trial that ended (ASHA stopped it, or it failed) leaves its pack at
    once, whatever its trial function is doing. Holds the executors' names, not handles: a
    resumed run restores this callback and finds the executors it started."""

    def __init__(self, names: list[str]):
        self.names = names

    def on_trial_complete(self, iteration, trials, trial, **info):
        for name in self.names:
            try:
                ray.get_actor(name).leave.remote(trial.trial_id)
            except ValueError:  # that executor is gone
                pass

    on_trial_error = on_trial_complete
