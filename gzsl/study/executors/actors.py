"""Packed trials inside Ray Tune ([resources] pack = K > 1).

An executor actor (the study's [resources]: a GPU or a share of one, or CPUs) owns the data on
its device and trains whatever members are joined as one pack (gzsl.trainer.Pack). Each Tune
trial stays one configuration: a thin function that joins an executor, reports the epochs the
executor hands it, and leaves when it ends or ASHA stops it (the driver's callback tells the
executor, so a stopped member never lingers). The searcher, the stopping rule, the Parquet callback, resume
and the report see what they see without packing.

Faults: a member's error fails its trial only (Executor); an executor that cannot go on is taken
out of rotation and Ray starts it again; trials skip executors that died, and fail in one line
when none is live for NO_EXECUTOR_S; a retried trial joins as a new member.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import ray
import torch
from ray import tune
from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError, RayTaskError

from gzsl.errors import ClusterError
from gzsl.study.executors.members import LEFT, Executor, MemberError, member_key, one_line, trial_of
from gzsl.study.trial import placement, report, trial_device
from gzsl.studyfile import StudySpec

_log = logging.getLogger(__name__)  # progress lines: gzsl.tune prints the `gzsl` logger

STUB_CPU = 0.01  # what one executor's trial functions hold together; the executor holds the rest
TOLD_S = 60.0  # how long an executor out of rotation waits for its members' trials to take their error
NO_EXECUTOR_S = 300.0  # a trial that finds no live executor this long fails
LOOKUP_S = 1.0  # a trial looks up the executors it has not found (yet) this often
ASK_S = 60.0  # a call to an executor that does not answer this long (a node gone): it is dropped


def executor_resources(spec: StudySpec) -> dict:
    res = spec.resources
    return {"num_cpus": max(res.get("cpu", 1) - STUB_CPU, 0), "num_gpus": res.get("gpu", 0)}


def trial_resources(spec: StudySpec) -> dict:
    return {"cpu": STUB_CPU / spec.pack}


def executor_names(experiment: str, n: int) -> list[str]:
    """The names of a study's executors (all it can use: its concurrency, or its budget, in packs),
    as the dashboard's Actors page shows them: the study, a tag of its results folder, a number."""
    import hashlib

    tag = hashlib.sha1(experiment.encode()).hexdigest()[:8]
    study = Path(experiment).name
    return [f"gzsl-{study}-{tag}-executor-{i}" for i in range(n)]


def executors_that_fit(spec: StudySpec, cluster: dict, max_concurrent: int = 0, at_least: int = 1) -> int:
    """Executors the cluster holds now (at least `at_least`), fewer when --max-concurrent asks for
    fewer trials at once."""
    res = {k: v for k, v in spec.resources.items() if v > 0}
    fits = min((int(cluster.get(k.upper(), 0) // v) for k, v in res.items()), default=1)
    if max_concurrent:
        fits = min(fits, -(-max_concurrent // spec.pack))
    return max(at_least, fits)


class NoExecutor(RuntimeError):
    """A trial found no executor taking trials for NO_EXECUTOR_S."""


@ray.remote
class ExecutorActor(Executor):
    """An Executor as a Ray actor (its study's [resources]), named so that trials
    find it. Out of rotation, it exits once its members' trials have been told why, and Ray starts
    it again under its name (max_restarts), with a fresh process and device."""

    def __init__(self, spec: StudySpec, data, name: str):
        torch.set_num_threads(max(1, int(spec.resources.get("cpu", 1))))
        gpu_ids = ray.get_gpu_ids()
        self.name = name
        super().__init__(spec, data, trial_device(gpu_ids), {**placement(gpu_ids), "executor_id": name})

    def __repr__(self) -> str:  # the dashboard's "repr" column
        return f"ExecutorActor({self.name}: up to {self.spec.pack} members of study {self.spec.name})"

    def out_of_rotation(self) -> None:
        with self.cv:  # a trial leaves once it has its error (bounded: a trial's process may be gone)
            self.cv.wait_for(lambda: not self.failed, timeout=TOLD_S)
        os._exit(1)


def packed_objective(config: dict, spec: StudySpec = None, names: list = None) -> None:
    """Function trainable of a packed study: join an executor, report each epoch it trains."""
    key = member_key(tune.get_context().get_trial_id())
    executor = join_executor(StartedExecutors(names), key, config)
    try:
        while True:
            row = next_row(executor, key)
            if row == LEFT:
                return
            if row is None:  # the pack's epoch is still running
                continue
            report(row, spec)
            if row["status"] != "running":
                return
    finally:
        executor.leave.remote(key)


def next_row(executor, key: str) -> dict | str | None:
    """executor.next_result, its failures as one line."""
    try:
        return ray.get(executor.next_result.remote(key))
    except MemberError as exc:  # Ray's error: MemberError and RayTaskError, with the executor's traceback
        raise MemberError(exc.cause.args[0] if isinstance(exc, RayTaskError) else str(exc)) from None
    except RayActorError as exc:
        raise MemberError(f"its executor died: {one_line(exc)}") from None


def join_executor(executors: StartedExecutors, key: str, config: dict, wait_s: float = NO_EXECUTOR_S):
    """The executor that took member `key`, the least loaded first (all full: a member leaves at the
    next epoch boundary). Each live executor first drops the trial's earlier attempts, should Tune
    have retried it. NoExecutor, in one line, once none has been live for `wait_s` seconds."""
    since, cleared = time.monotonic(), set()
    while True:
        live = sorted(executors.loads())
        if live:
            since = time.monotonic()
        for _, name in live:
            if name not in cleared and executors.ask(name, "leave_trial", trial_of(key)) is not None:
                cleared.add(name)
        for _, name in live:
            if executors.ask(name, "try_join", key, config):
                return executors.up[name]
        if time.monotonic() - since > wait_s:
            raise NoExecutor(executors.why_none(wait_s))
        time.sleep(0.2)


class StartedExecutors:
    """A trial's view of the study's executors: those found by name (a name not found is an
    executor not started yet, or dead: the others are still looked up, every LOOKUP_S) and, of
    those, the ones placed and holding their data."""

    def __init__(self, names: list[str]):
        self.names, self.found, self.waiting, self.up = names, {}, {}, {}
        self.lost, self.out, self.next_lookup = set(), set(), 0.0

    def ready(self) -> list:
        if time.monotonic() >= self.next_lookup:
            self.next_lookup = time.monotonic() + LOOKUP_S
            for name in self.names:
                if name not in self.found:
                    self._look_up(name)
        if self.waiting:
            for ref in ray.wait(list(self.waiting), num_returns=len(self.waiting), timeout=0)[0]:
                name = self.waiting.pop(ref, None)
                if name not in self.found:  # dropped meanwhile
                    continue
                try:
                    ray.get(ref)
                    self.up[name] = self.found[name]
                except Exception:  # failed to start, or died: looked up again later
                    self.drop(name)
        return list(self.up.values())

    def _look_up(self, name: str) -> None:
        try:
            handle = ray.get_actor(name)
        except ValueError:  # not started yet, or dead
            return
        self.found[name] = handle
        self.waiting[handle.members.remote()] = name  # answers once the executor is up

    def loads(self) -> list[tuple[int, str]]:
        """(load, name) of the executors up and taking trials."""
        self.ready()
        loads = [(self.ask(name, "load"), name) for name in list(self.up)]
        self.out = {name for load, name in loads if load is None and name in self.up}
        return [(load, name) for load, name in loads if load is not None]

    def ask(self, name: str, method: str, *args):
        """A call to an executor that is up; None (and it is looked up again later) when it died."""
        try:
            return ray.get(getattr(self.up[name], method).remote(*args), timeout=ASK_S)
        except (RayActorError, GetTimeoutError):
            self.drop(name)
            return None

    def drop(self, name: str) -> None:
        self.lost.add(name)
        self.found.pop(name, None)
        self.up.pop(name, None)
        self.waiting = {ref: n for ref, n in self.waiting.items() if n != name}

    def why_none(self, wait_s: float) -> str:
        shown = f"{self.names[0]}..{self.names[-1].rsplit('-', 1)[-1]}" if self.names else "none"
        if not self.found and not self.lost:
            detail = f"none of the {len(self.names)} executors was found (not started yet, or dead)"
        else:
            detail = ", ".join(f"{n} {what}" for n, what in (
                (len(self.lost - set(self.found)), "died"), (len(self.out), "out of rotation"),
                (len(set(self.names) - set(self.found) - self.lost), "not found")) if n)
        return (f"no live executor for {wait_s:.0f} s among the study's {len(self.names)} ({shown}): "
                f"{detail}; see the driver's 'packed trials:' lines")


class ExecutorPool(tune.Callback):
    """Runs in the driver: starts the study's executors, gives the searcher room for as many
    trials as the started executors hold, and tells an executor at once when one of its trials
    ended (ASHA stopped it, or it failed), whatever the trial's function is doing.

    Locally, the executors that fit the machine start with the study. On a cluster (`elastic`),
    all the study can use are asked for at once: those that fit nowhere yet are resource demands
    that make an autoscaler add nodes, and each one starts training, and adds its room, as soon
    as a node takes it. An executor out of rotation (or whose process died) is started again by Ray,
    up to [resources] restarts times; one gone for good no longer counts in the room. The names derive from
    the experiment, so the trials of a resumed run (which restores this callback) find the
    executors its pool starts."""

    def __init__(self, spec: StudySpec, names: list[str], elastic: bool):
        self.spec, self.names, self.elastic = spec, names, elastic
        self._handles, self._up, self._pending, self._searcher, self._log = [], {}, {}, None, _log.info
        self._data, self.failure, self._pings, self._deaths = None, None, {}, {}
        self._stopped = threading.Event()

    def __getstate__(self):  # actor handles and object refs belong to one driver session
        return {"spec": self.spec, "names": self.names, "elastic": self.elastic}

    def __setstate__(self, state):
        self.__init__(**state)

    def start(self, data, searcher, log=_log.info) -> int:
        """Start the executors that fit the cluster now and wait for them (and, when elastic, ask
        for the rest); returns how many are up."""
        self._searcher, self._log = searcher, log
        # A cluster may be shared, and may grow: count what its free resources hold now.
        n = min(len(self.names), executors_that_fit(self.spec, ray.available_resources(), at_least=0) if self.elastic
                else executors_that_fit(self.spec, ray.cluster_resources()))
        data_ref = self._data = ray.put(data)  # kept: Ray starts an executor again from it
        for name in self.names[:len(self.names) if self.elastic else n]:
            handle = ExecutorActor.options(name=name, max_concurrency=2 * self.spec.pack + 4,
                                           max_restarts=self.spec.restarts,
                                          **executor_resources(self.spec)).remote(self.spec, data_ref, name)
            self._handles.append(handle)
            self._pending[handle.members.remote()] = (name, handle)
        # Locally all fit, and the study waits for them; on a cluster it goes on once those that fit now are up.
        up = ray.wait(list(self._pending), num_returns=n, timeout=60 if self.elastic else None)[0] if n else []
        for ref in up:
            ray.get(ref)  # an executor that failed to start raises here
            name, handle = self._pending.pop(ref)
            self._up[name] = handle
        self._set_room()
        more = f"; {len(self._pending)} more asked of the cluster as it grows" if self._pending else ""
        log(f"packed trials: {len(up)} executor(s) x {self.spec.pack} members, each executor "
            f"{self.spec.resources}{more}")
        threading.Thread(target=self._watch, daemon=True, name="gzsl-executor-pool").start()
        return len(up)

    def _set_room(self) -> None:
        """The searcher's cap: the member slots of the executors up. Set from Tune's loop (start,
        before fit, and on_step_begin, before each time Tune asks the searcher), never from the
        watching thread; again each step, since a resumed searcher restores the cap it saved."""
        if self._searcher is not None:
            self._searcher.set_max_concurrency(len(self._up) * self.spec.pack)

    def _watch(self) -> None:
        """A driver thread (Tune's loop can block while it waits on its trials): each second, count
        the executors that have started and those gone for good."""
        while not self._stopped.wait(1.0):
            self._started()
            self._gone()

    def _started(self) -> None:
        done = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0)[0] if self._pending else []
        for ref in done:
            name, handle = self._pending.pop(ref)
            try:
                ray.get(ref)
            except Exception as exc:  # it takes no trials; the study goes on with the others
                self._log(f"packed trials: executor {name} failed to start ({type(exc).__name__}: {exc})")
                continue
            self._up[name] = handle
            self._log(f"packed trials: executor {name} started ({len(self._up)} of {len(self._handles)} up)")

    def _gone(self) -> None:
        """Executors dead for good (Ray's restarts spent). When none
        is up or still asked for, the study can go no further (the searcher has no room left):
        the next step of Tune's loop fails it (on_step_begin)."""
        for name, handle in list(self._up.items()):
            ping = self._pings.setdefault(name, handle.load.remote())
            if not ray.wait([ping], timeout=0)[0]:
                continue  # busy, or restarting: Ray runs the call once it is back
            del self._pings[name]
            try:
                ray.get(ping)
                self._deaths.pop(name, None)
            except ActorDiedError:  # a name resolves even then: only a call tells
                # Said of a call its process died in, too: dead for good when the next call is refused.
                self._deaths[name] = self._deaths.get(name, 0) + 1
                if self._deaths[name] >= 2:
                    del self._up[name]
                    self._log(f"packed trials: executor {name} is gone, its restarts spent ({len(self._up)} of "
                              f"{len(self._handles)} up)")
            except RayActorError:  # restarting, or unreachable for now
                pass
        if self._handles and not self._up and not self._pending and self.failure is None:
            names = ", ".join(self.names[:len(self._handles)])
            self.failure = (f"every executor of study {self.spec.name} is gone ({names}), each started "
                            f"{self.spec.restarts + 1} times: see the driver's 'packed trials:' lines and Ray's logs "
                            "(ray logs), then continue with --resume and the same --results")

    def on_step_begin(self, iteration, trials, **info):
        if self.failure is not None:
            raise ClusterError(self.failure)
        self._set_room()

    def on_trial_complete(self, iteration, trials, trial, **info):
        for handle in list(self._up.values()):
            handle.leave_trial.remote(trial.trial_id)

    on_trial_error = on_trial_complete

    def stop(self) -> None:
        self._stopped.set()
        for handle in self._handles:
            ray.kill(handle)
