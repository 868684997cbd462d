"""Packed trials inside Ray Tune ([resources] pack = K > 1).

An executor actor per worker (a GPU, or a CPU worker: the study's [resources]) owns the data on
its device and trains whatever members are joined as one pack (gzsl.training.Pack). Each Tune
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

from gzsl.studies import StudySpec
from gzsl.study.trial import epoch_metrics, placement, train_config, trial_device
from gzsl.training import Pack, TrainConfig

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
    """The names of a study's executors: all it can use (its concurrency, or its budget, in packs)."""
    import hashlib

    tag = hashlib.sha1(experiment.encode()).hexdigest()[:8]
    return [f"gzsl-pack-{tag}-{i}" for i in range(n)]


def workers_that_fit(spec: StudySpec, cluster: dict, max_concurrent: int = 0, at_least: int = 1) -> int:
    """Workers the cluster holds now (at least `at_least`), fewer when --max-concurrent asks for
    fewer trials at once."""
    res = {k: v for k, v in spec.resources.items() if v > 0}
    fits = min((int(cluster.get(k.upper(), 0) // v) for k, v in res.items()), default=1)
    if max_concurrent:
        fits = min(fits, -(-max_concurrent // spec.pack))
    return max(at_least, fits)


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
        self.pack = Pack(data, first, max_latent(spec))
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


def packed_objective(config: dict, spec: StudySpec = None, names: list = None) -> None:
    """Function trainable of a packed study: join an executor, report each epoch it trains."""
    key = tune.get_context().get_trial_id()
    executors = StartedExecutors(names)
    executor = None
    while executor is None:  # the least loaded pack first; all full: a member leaves at the next epoch boundary
        ready = executors.ready()
        loads = ray.get([e.load.remote() for e in ready])
        for _, i in sorted(zip(loads, range(len(ready)))):
            if ray.get(ready[i].try_join.remote(key, config)):
                executor = ready[i]
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


class StartedExecutors:
    """A trial's view of the study's executors: those started so far (found by name, in the order
    the pool starts them) and, of those, the ones placed and holding their data."""

    def __init__(self, names: list[str]):
        self.names, self.found, self.waiting, self.up = names, 0, {}, []

    def ready(self) -> list:
        for name in self.names[self.found:]:
            try:
                handle = ray.get_actor(name)
            except ValueError:  # not asked for yet
                break
            self.found += 1
            self.waiting[handle.members.remote()] = handle  # answers once the executor is up
        if self.waiting:
            for ref in ray.wait(list(self.waiting), num_returns=len(self.waiting), timeout=0)[0]:
                handle = self.waiting.pop(ref)
                try:
                    ray.get(ref)
                    self.up.append(handle)
                except Exception:  # failed to start: the pool says so; its trials go elsewhere
                    pass
        return self.up


class PackPool(tune.Callback):
    """Runs in the driver: starts the study's executors, gives the searcher room for as many
    trials as the started executors hold, and tells an executor at once when one of its trials
    ended (ASHA stopped it, or it failed), whatever the trial's function is doing.

    Locally, the executors that fit the machine start with the study. On a cluster (`elastic`),
    all the study can use are asked for at once: those that fit nowhere yet are resource demands
    that make an autoscaler add nodes, and each one starts training, and adds its room, as soon
    as a node takes it. The names derive from the experiment, so the trials of a resumed run
    (which restores this callback) find the executors its pool starts."""

    def __init__(self, spec: StudySpec, names: list[str], elastic: bool):
        self.spec, self.names, self.elastic = spec, names, elastic
        self._handles, self._pending, self._searcher, self._log = [], {}, None, print
        self._stopped = threading.Event()

    def __getstate__(self):  # actor handles and object refs belong to one driver session
        return {"spec": self.spec, "names": self.names, "elastic": self.elastic}

    def __setstate__(self, state):
        self.__init__(**state)

    def start(self, data, searcher, log=print) -> int:
        """Start the executors that fit the cluster now and wait for them (and, when elastic, ask
        for the rest); returns how many are up."""
        self._searcher, self._log = searcher, log
        # A cluster may be shared, and may grow: count what its free resources hold now.
        n = min(len(self.names), workers_that_fit(self.spec, ray.available_resources(), at_least=0) if self.elastic
                else workers_that_fit(self.spec, ray.cluster_resources()))
        data_ref = ray.put(data)
        for name in self.names[:len(self.names) if self.elastic else n]:
            handle = PackExecutor.options(name=name, max_concurrency=2 * self.spec.pack + 4,
                                          **executor_resources(self.spec)).remote(self.spec, data_ref, name)
            self._handles.append(handle)
            self._pending[handle.members.remote()] = (name, handle)
        # Locally all fit, and the study waits for them; on a cluster it goes on once those that fit now are up.
        up = ray.wait(list(self._pending), num_returns=n, timeout=60 if self.elastic else None)[0] if n else []
        for ref in up:
            ray.get(ref)  # an executor that failed to start raises here
            del self._pending[ref]
        self._set_room(len(up))
        more = f"; {len(self._pending)} more asked of the cluster as it grows" if self._pending else ""
        log(f"packed trials: {len(up)} worker(s) x {self.spec.pack} configurations, each worker "
            f"{self.spec.resources}{more}")
        threading.Thread(target=self._watch, daemon=True, name="gzsl-pack-pool").start()
        return len(up)

    def _set_room(self, up: int) -> None:
        if self._searcher is not None:
            self._searcher.room = up * self.spec.pack

    def _watch(self) -> None:
        """A driver thread (Tune's loop can block for minutes while the searcher has no room): each
        second, count the executors that are up and give the searcher their room, again each time,
        since a resumed searcher restores the room it saved."""
        while not self._stopped.wait(1.0):
            done = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0)[0] if self._pending else []
            for ref in done:
                name, handle = self._pending.pop(ref)
                try:
                    ray.get(ref)
                except Exception as exc:  # it takes no trials; the study goes on with the others
                    self._handles.remove(handle)
                    self._log(f"packed trials: worker {name} failed to start ({type(exc).__name__}: {exc})")
                    continue
                self._log(f"packed trials: worker {name} started ({len(self._handles) - len(self._pending)} of "
                          f"{len(self._handles)} up)")
            self._set_room(len(self._handles) - len(self._pending))

    def on_trial_complete(self, iteration, trials, trial, **info):
        for name in self.names:
            try:
                ray.get_actor(name).leave.remote(trial.trial_id)
            except ValueError:  # not started (yet), or gone
                pass

    on_trial_error = on_trial_complete

    def stop(self) -> None:
        self._stopped.set()
        for handle in self._handles:
            ray.kill(handle)
