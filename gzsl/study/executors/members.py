"""An executor's core, free of Ray: its members trained as one pack
(gzsl.trainer.Pack) in a thread, joining and leaving between epochs, each member's epochs
queued for its trial.

Faults: a member's error fails its trial only; an executor that cannot go on (MAX_STRIKES
failed epochs in a row) is out of rotation. gzsl.study.executors.actors makes it a Ray actor.
"""

from __future__ import annotations

import threading
import uuid

import torch

from gzsl.study.trial import cap_gpu_memory, epoch_metrics, train_config
from gzsl.studyfile import StudySpec
from gzsl.trainer import Pack, TrainConfig

LEFT = "left"  # next_result's answer to a member that is no longer in the pack
MAX_STRIKES = 3  # epochs failed in a row, none trained in between: the executor cannot go on


def max_latent(spec: StudySpec) -> int:
    """The widest latent a trial of this study can have: the pack pads every member to it."""
    return int(spec.largest("latent_size"))


class MemberError(RuntimeError):
    """What a member's trial fails with, in one line: its epoch raised, or its executor cannot go on."""


def member_key(trial_id: str) -> str:
    """A trial attempt's key in a pack: a retried trial (max_failures) is a new member, never handed
    the epochs of its old one."""
    return f"{trial_id}@{uuid.uuid4().hex[:8]}"


def trial_of(key: str) -> str:
    return key.rsplit("@", 1)[0]


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class Executor:
    """Trains the joined members between epochs of the pack; joins and leaves wait for the next
    epoch boundary. Results wait in a queue per member until its trial takes them. (ExecutorActor is
    this class as a Ray actor; tests drive it by run_epoch().)

    A member's fault fails its trial only. An epoch that raises is blamed on the members that had
    not finished an epoch in the pack (a configuration that cannot be allocated, a CUDA out-of-memory
    once the pack grew): one such member fails alone; several leave and rejoin one per boundary, so
    that the next failure names one. With no new member the pack itself failed: its members fail
    and it starts again empty. After MAX_STRIKES failed epochs in a row the executor cannot go on:
    its members fail and it takes no more trials (out of rotation)."""

    def __init__(self, spec: StudySpec, data, device: str, where: dict, run: bool = True):
        self.spec, self.device, self.where = spec, device, where
        self.memory_share = cap_gpu_memory(spec, device)  # with gpu = 0.25, four executors share a GPU
        self.first = train_config(spec, {}, seed=spec.seed, device=device)
        self.fused = Pack(data, self.first, max_latent(spec))
        self.data = self.fused.data  # on the device: a pack started again reuses it
        self.cv = threading.Condition()
        self.joining: dict[str, TrainConfig] = {}
        self.held: dict[str, TrainConfig] = {}  # to rejoin one per boundary, after a failed epoch
        self.leaving: set[str] = set()
        self.queues: dict[str, list[dict]] = {}
        self.failed: dict[str, str] = {}  # member -> why, until its trial leaves
        self.configs: dict[str, TrainConfig] = {}  # the members in the pack
        self.new: set[str] = set()  # members that have not finished an epoch in the pack
        self.strikes = 0  # epochs failed in a row
        self.broken: str | None = None  # why this executor cannot go on
        if run:
            threading.Thread(target=self._loop, daemon=True).start()

    # ------------------------------------------------------------------ what trials and the driver call

    def try_join(self, key: str, params: dict) -> bool:
        """Take `key` at the next epoch boundary if this pack will have room then."""
        with self.cv:
            if self.broken or self._load() >= self.spec.pack:
                return False
            self.joining[key] = train_config(self.spec, params, seed=self.spec.seed, device=self.device)
            self.queues[key] = []
            self.cv.notify_all()
            return True

    def leave(self, key: str) -> None:
        with self.cv:
            self.queues.pop(key, None)
            self.failed.pop(key, None)
            self.joining.pop(key, None)
            self.held.pop(key, None)
            if key in self.configs:
                self.leaving.add(key)
            self.cv.notify_all()

    def leave_trial(self, trial_id: str) -> int:
        """Every member of the trial's attempts leaves (it ended, or Tune retries it); how many."""
        with self.cv:
            keys = [k for k in {*self.queues, *self.failed, *self.joining, *self.held, *self.configs}
                    if trial_of(k) == trial_id]
            for key in keys:
                self.leave(key)
            return len(keys)

    def next_result(self, key: str, timeout: float = 30.0) -> dict | str | None:
        """The member's next epoch (metrics as a solo trial reports them), None after `timeout`,
        or LEFT once the member has left (ASHA stopped its trial). MemberError once it failed and its
        trial has taken the epochs it trained."""
        with self.cv:
            self.cv.wait_for(lambda: key in self.failed or self.queues.get(key) or key not in self.queues, timeout)
            if self.queues.get(key):
                return self.queues[key].pop(0)
            if key in self.failed:  # kept until the trial leaves: then it has been told
                raise MemberError(self.failed[key])
            if key not in self.queues:
                if self.broken:
                    raise MemberError(self.broken)
                return LEFT
            return None

    def members(self) -> list[str]:
        return [m.key for m in self.fused.members]

    def load(self) -> int | None:
        """Members that will train after the next epoch boundary; None once out of rotation."""
        with self.cv:
            return None if self.broken else self._load()

    def _load(self) -> int:
        return len(self.configs) + len(self.joining) + len(self.held) - len(self.leaving)

    # ------------------------------------------------------------------ the training thread

    def _loop(self) -> None:
        try:
            while not self.broken:
                if not self.run_epoch():
                    with self.cv:
                        self.cv.wait_for(lambda: self.joining or self.held or self.broken, timeout=1.0)
        except Exception as exc:  # outside any epoch: the executor itself cannot go on
            with self.cv:
                self._break(one_line(exc))
        self.out_of_rotation()

    def out_of_rotation(self) -> None:
        """Called once the executor cannot go on (ExecutorActor: exit, for Ray to start it again)."""

    def run_epoch(self) -> bool:
        """One epoch boundary, then an epoch of the members; False when there was none to train."""
        with self.cv:
            if self.broken:
                return False
            self._boundary()
            if not self.configs:
                return False
            keys = list(self.configs)
            epochs = {m.key: m.epoch for m in self.fused.members}
        cuda = self.device == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        # An epoch with a new member is the one likely to fail (its memory, its configuration): the
        # pack is saved before it, so that the survivors of a failure go on from the boundary.
        saved = self.fused.snapshot() if self.new & set(keys) else None
        try:
            results = self.fused.run_epoch()  # outside the lock: trials may join and leave meanwhile
        except Exception as exc:
            with self.cv:
                self._epoch_failed(keys, epochs, one_line(exc), saved)
            return True
        gpu_mem = torch.cuda.max_memory_allocated() / 2**20 / len(keys) if cuda else None
        with self.cv:
            self.strikes = 0
            self.new.difference_update(keys)
            for key, r in results.items():
                if r.status != "running":  # completed or diverged: it left the pack
                    self._forget(key)
                if key in self.queues:
                    self.queues[key].append(epoch_metrics(r, self.where, gpu_mem))
            self.cv.notify_all()
        return True

    def _boundary(self) -> None:
        """Leaves, then joins: everyone waiting, once the members reach an evaluated epoch
        (_evaluated); after a failed epoch, the survivors first alone, then one member at a time
        (held ones first), so that a failure names its member."""
        for key in self.leaving & set(self.configs):
            self.fused.leave(key)
            self._forget(key)
        self.leaving.clear()
        if not self.strikes and not self.held:
            admitted, self.joining = (self.joining, {}) if self._evaluated() else ({}, self.joining)
        elif self.strikes and self.configs:
            admitted = {}
        else:
            waiting = self.held or self.joining
            admitted = {k: waiting.pop(k) for k in list(waiting)[:1]}
        for key, config in admitted.items():
            try:
                self.fused.join(key, config)
            except Exception as exc:  # its model cannot be made here (e.g. out of memory): it fails alone
                self._fail(key, f"could not join executor {self.where['executor_id']}: {one_line(exc)}")
                continue
            self.configs[key] = config
            self.new.add(key)

    def _evaluated(self) -> bool:
        """Whether the members just reached a point of the evaluation grid (eval_every), or there
        are none. Joins wait for one: every member's epochs then stay on the same grid, so members
        due at the same pack epoch (a rung, the last epoch) fit their final classifiers as one
        (gzsl.evaluation.fit_many), at the cost of a slot left empty up to eval_every - 1 epochs.
        A trial scores H only at its study's eval_at, so members that joined at other times are
        scored at other pack epochs."""
        every = self.first.eval_every
        return every <= 1 or not self.fused.members or any(m.epoch % every == 0 for m in self.fused.members)

    def _epoch_failed(self, keys: list[str], epochs: dict[str, int], why: str, saved: dict | None = None) -> None:
        self.strikes += 1
        new = [k for k in keys if k in self.new and k in self.configs]
        if self.strikes >= MAX_STRIKES:
            self._break(f"{self.strikes} epochs in a row failed, the last with {why}")
        elif not new:
            self._restart(f"an epoch of executor {self.where['executor_id']} failed: {why}")
        else:
            try:
                self.fused.restore(saved)  # the steps and random draws of the failed epoch undone
                self._blame(new, epochs, why)
            except Exception as exc:  # the pack's state is beyond repair
                self._restart(f"an epoch of executor {self.where['executor_id']} failed: {why}; then {one_line(exc)}")
        self.cv.notify_all()

    def _blame(self, new: list[str], epochs: dict[str, int], why: str) -> None:
        for key in new:
            self.fused.leave(key)
            config = self._forget(key)
            if len(new) == 1:
                self._fail(key, f"its first epoch in executor {self.where['executor_id']} failed: {why}")
            else:
                self.held[key] = config
        for m in self.fused.members:  # the others train the failed epoch again: their epochs stay 1, 2, 3...
            m.epoch = epochs[m.key]

    def _restart(self, why: str) -> None:
        """Every member fails with `why`; the pack starts again, empty."""
        for key in list(self.configs):
            self._fail(key, why)
        self.configs.clear()
        self.new.clear()
        self.leaving.clear()
        self.fused = Pack(self.data, self.first, max_latent(self.spec))

    def _break(self, why: str) -> None:
        self.broken = f"executor {self.where['executor_id']} is out of rotation: {why}"
        for key in list(self.queues):
            self._fail(key, self.broken)
        self.joining.clear()
        self.held.clear()
        self.cv.notify_all()

    def _fail(self, key: str, why: str) -> None:
        if key in self.queues:  # its trial still waits for it
            self.failed[key] = why

    def _forget(self, key: str) -> TrainConfig | None:
        self.new.discard(key)
        self.leaving.discard(key)
        return self.configs.pop(key, None)
