"""Faults a pack of trials must survive (gzsl.study.executors): a member's error fails its trial only,
an executor that cannot go on is taken out of rotation and replaced, a dead executor is skipped,
a retried trial starts clean. Faults are injected in Ray's worker processes by
tests/inject/sitecustomize.py (Pack.run_epoch raises a CUDA out-of-memory for the members
GZSL_INJECT_FAULT names); every wait is bounded and no assertion depends on which member ends first."""

import os
import subprocess
import time
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from tests.test_study import INJECT, TINY, optuna_states, tune_cmd, write_study
PARAMS = {"alpha": 1.0, "gamma": 1.0, "latent_size": 16, "lr": 2e-3}


def packed_spec(tmp_path, pack=2, epochs=3, cpu=1):
    from gzsl.studyfile import load_study

    study = write_study(tmp_path, name="faults", epochs=epochs, grace=epochs, eval_every=epochs, latent="[16]",
                        training_extra=TINY)
    study.write_text(study.read_text().replace("cpu = 1\n", f"cpu = {cpu}\npack = {pack}\n"))
    return load_study(str(study))


def wait_for(what, limit=120.0):
    """what() once it is truthy, polled; fails after `limit` seconds (generous: the machine may be busy)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"not true within {limit:.0f} s: {what}")


# --------------------------------------------------------------------------- a study, end to end


def test_a_member_that_fails_in_its_epoch_fails_its_trial_only(tmp_path):
    """One worker trains up to 3 configurations as one pack; the first member it trains raises a
    CUDA out-of-memory in its epoch. That trial is recorded as an error with the message; the
    executor goes on, and every other trial trains to the end in it."""
    study, results = write_study(tmp_path, name="oom", epochs=3, samples=4, final_seeds=0, grace=3, eval_every=3,
                                 latent="[16]", training_extra=TINY), tmp_path / "results"
    study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 2\npack = 3\n")
                     .replace("max_concurrent = 2", "max_concurrent = 3"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
           "GZSL_INJECT_FAULT": "first"}
    p = subprocess.run(tune_cmd(study, results), capture_output=True, text=True, timeout=400, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    trials = pd.read_parquet(results / "trials.parquet")
    assert len(trials) == 4 and sorted(trials.status) == ["completed"] * 3 + ["error"], trials[["status", "error"]]
    failed = trials[trials.status == "error"].iloc[0]
    assert "CUDA out of memory" in failed.error and "\n" not in failed.error
    assert (trials[trials.status == "completed"].epochs_run == 3).all()
    assert trials.executor_id[trials.status == "completed"].nunique() == 1  # the same executor went on
    states, _ = optuna_states(results, "oom")
    assert sorted(states) == ["COMPLETE"] * 3 + ["FAIL"]


def test_a_packed_study_whose_executors_are_all_gone_fails_in_one_line(tmp_path):
    """Every epoch fails (tests/inject "every"): the one executor goes out of rotation, Ray starts it
    again until its restarts are spent ([resources] restarts = 1: two lives), and then nothing can
    train. Without executors the searcher has no room and proposes nothing: the study must fail in
    one line naming them, not wait forever, and the trials that ran stay recorded."""
    from gzsl.study.executors.members import MAX_STRIKES

    study, results = write_study(tmp_path, name="gone", epochs=2, samples=60, final_seeds=0, grace=2, eval_every=2,
                                 latent="[16]", training_extra=TINY), tmp_path / "results"
    study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 2\npack = 2\nrestarts = 1\n"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
           "GZSL_INJECT_FAULT": "every"}
    p = subprocess.run(tune_cmd(study, results), capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 2, p.stdout[-3000:] + p.stderr[-3000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: every executor of study gone is gone (gzsl-gone-") and "--resume" in last, \
        p.stderr[-3000:]
    assert "each started 2 times" in last, last
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "restarts spent (0 of 1 up)" in p.stdout
    trials = pd.read_parquet(results / "trials.parquet")
    # Each of the executor's two lives fails at least MAX_STRIKES trials before it goes out of rotation.
    assert len(trials) >= MAX_STRIKES * 2 and (trials.status == "error").all()
    assert trials.error.str.contains("CUDA out of memory|out of rotation").all(), trials.error
    assert len(trials) < 60


# --------------------------------------------------------------------------- the executor's rules, without Ray


@pytest.fixture(scope="module")
def data():
    from gzsl.datasets import load

    return load("synth-small", "val", seed=0)


def plain_executor(tmp_path, monkeypatch, data, fails, pack=3, epochs=3):
    """An Executor driven by run_epoch() in this process; an epoch raises a CUDA out-of-memory whenever
    fails(keys of the members in it)."""
    from gzsl.trainer import Pack
    from gzsl.study.executors.members import Executor

    run_epoch = Pack.run_epoch

    def run_epoch_with_fault(self, *args, **kwargs):
        if fails([m.key for m in self.members]):
            raise RuntimeError("CUDA out of memory (injected)")
        return run_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Pack, "run_epoch", run_epoch_with_fault)
    return Executor(packed_spec(tmp_path, pack=pack, epochs=epochs), data, "cpu", {"executor_id": "p0"}, run=False)


def run_out(executor, limit=30):
    """run_epoch() until nothing is left to train (at most `limit` epochs)."""
    for _ in range(limit):
        if not executor.run_epoch():
            return
    pytest.fail(f"still training after {limit} epochs")


def taken(executor, key):
    """What member `key`'s trial is handed: its epochs, then its error's text (None if it did not fail)."""
    from gzsl.study.executors.members import LEFT, MemberError

    rows = []
    while True:
        try:
            row = executor.next_result(key, 0)
        except MemberError as exc:
            return rows, str(exc)
        if row in (LEFT, None):
            return rows, None
        rows.append(row)


def test_members_that_join_together_are_told_apart_when_their_epoch_fails(tmp_path, monkeypatch, data):
    """Three members join at one boundary and the epoch raises: they rejoin one at a time, so the bad
    one fails alone; the good ones train epochs 1, 2, 3 and complete."""
    executor = plain_executor(tmp_path, monkeypatch, data, fails=lambda keys: "bad@a" in keys)
    for key in ("good1@a", "bad@a", "good2@a"):
        assert executor.try_join(key, PARAMS)
    run_out(executor)
    assert taken(executor, "bad@a") == ([], "its first epoch in executor p0 failed: RuntimeError: CUDA out of memory "
                                            "(injected)")
    for key in ("good1@a", "good2@a"):
        rows, error = taken(executor, key)
        assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["status"] == "completed" and error is None
    assert executor.load() == 0 and executor.members() == []


def test_a_pack_that_fails_with_no_new_member_starts_again_and_one_that_keeps_failing_stops(tmp_path, monkeypatch,
                                                                                          data):
    from gzsl.study.executors.members import MAX_STRIKES, MemberError

    fault = {"on": False}
    executor = plain_executor(tmp_path, monkeypatch, data, fails=lambda keys: fault["on"], epochs=5)
    for key in ("a@1", "b@1"):
        executor.try_join(key, PARAMS)
    assert executor.run_epoch()  # epoch 1 of both
    fault["on"] = True
    assert executor.run_epoch()  # no member is new: the pack's fault; both fail and it starts again, empty
    for key in ("a@1", "b@1"):  # the epoch each trained, then the error
        rows, error = taken(executor, key)
        assert [r["epoch"] for r in rows] == [1] and error.startswith("an epoch of executor p0 failed: RuntimeError")
        executor.leave(key)
    assert executor.members() == [] and executor.load() == 0
    for i in range(1, MAX_STRIKES):  # epochs keep failing, whoever trains
        executor.try_join(f"c{i}@1", PARAMS)
        run_out(executor)
        rows, error = taken(executor, f"c{i}@1")
        assert rows == [] and "CUDA out of memory" in error
    assert error.startswith(f"executor p0 is out of rotation: {MAX_STRIKES} epochs in a row failed")
    assert executor.load() is None and not executor.try_join("late@1", PARAMS)
    with pytest.raises(MemberError, match="out of rotation"):
        executor.next_result("late@1", 0)


# --------------------------------------------------------------------------- executors in a local Ray


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray whose workers inject a CUDA out-of-memory into the epochs of members keyed "bad"."""
    import ray

    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "GZSL_INJECT_FAULT")}
    os.environ.update(PYTHONPATH=os.pathsep.join([INJECT, saved["PYTHONPATH"] or ""]), GZSL_INJECT_FAULT="marked")
    ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False, include_dashboard=False)
    yield ray
    ray.shutdown()
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def started_pool(spec, data, experiment):
    from gzsl.study.executors.actors import ExecutorPool, executor_names

    pool = ExecutorPool(spec, executor_names(experiment, 1), elastic=False)
    assert pool.start(data, searcher=None, log=lambda *_: None) == 1
    return pool


def rows_until_end(executor, key, limit=120.0):
    """The epochs the executor hands member `key` until its trial would end, as the trial takes them
    (gzsl.study.executors.actors.next_row: MemberError when the member failed)."""
    from gzsl.study.executors.members import LEFT
    from gzsl.study.executors.actors import next_row

    rows, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline:
        row = next_row(executor, key)
        if row == LEFT:
            return rows
        if row is not None:
            rows.append(row)
            if row["status"] != "running":
                return rows
    pytest.fail(f"member {key} still training after {limit:.0f} s: {rows}")


def test_trials_skip_a_dead_executor_and_find_the_next(local_ray):
    ray = local_ray
    from gzsl.study.executors.actors import StartedExecutors

    @ray.remote(num_cpus=0)
    class Stub:
        def __init__(self, name):
            self.name = name

        def members(self):
            return []

        def who(self):
            return self.name

    dead, alive = (Stub.options(name=n).remote(n) for n in ("faults-dead", "faults-alive"))
    ray.get([dead.members.remote(), alive.members.remote()])
    ray.kill(dead)

    def gone(name):
        try:
            ray.get_actor(name)
            return False
        except ValueError:  # what Ray raises for a dead named actor, as for one never started
            return True

    wait_for(lambda: gone("faults-dead"))
    executors = StartedExecutors(["faults-dead", "faults-alive"])
    found = wait_for(executors.ready, limit=30)
    assert [ray.get(h.who.remote()) for h in found] == ["faults-alive"]
    ray.kill(alive)


def test_a_trial_that_finds_no_live_executor_fails_with_one_line(local_ray):
    from gzsl.study.executors.actors import NoExecutor, StartedExecutors, join_executor

    names = ["faults-never-0", "faults-never-1"]
    start = time.monotonic()
    with pytest.raises(NoExecutor) as err:
        join_executor(StartedExecutors(names), "t1@a", PARAMS, wait_s=2.0)
    assert time.monotonic() - start < 60
    message = str(err.value)
    assert "\n" not in message and "no live executor" in message and "faults-never-0" in message
    assert "none of the 2 executors was found" in message


def test_a_retried_trial_replaces_its_old_member(local_ray, data, tmp_path):
    """Tune retries a trial (max_failures) whose first attempt died without leaving the pack: the new
    attempt, a new member, takes the old one out before it joins, and trains from epoch 1 alone in
    the pack, never handed the old member's epochs."""
    ray = local_ray
    from gzsl.study.executors.actors import StartedExecutors, join_executor, member_key, next_row

    spec = packed_spec(tmp_path, epochs=40)  # the old member would still be training
    pool = started_pool(spec, data, "faults-retry")
    try:
        first_key, second_key = member_key("t1"), member_key("t1")
        assert first_key != second_key and first_key.startswith("t1@")
        executor = join_executor(StartedExecutors(pool.names), first_key, PARAMS, wait_s=60)
        assert wait_for(lambda: next_row(executor, first_key))["epoch"] == 1
        executor = join_executor(StartedExecutors(pool.names), second_key, PARAMS, wait_s=60)
        assert wait_for(lambda: next_row(executor, second_key))["epoch"] == 1
        assert ray.get(executor.members.remote()) == [second_key]
    finally:
        pool.stop()


def test_a_member_error_fails_that_member_and_the_others_train_to_the_end(local_ray, data, tmp_path):
    """Two good members and a bad one (its epochs raise a CUDA out-of-memory) join together: the bad
    member's trial gets the error, in one line; the good ones train every epoch, from 1, to the end."""
    ray = local_ray
    from gzsl.study.executors.members import MemberError

    spec = packed_spec(tmp_path, pack=3, epochs=3)
    pool = started_pool(spec, data, "faults-member")
    try:
        executor = ray.get_actor(pool.names[0])
        keys = ["good1@a", "bad@a", "good2@a"]
        assert all(ray.get([executor.try_join.remote(k, PARAMS) for k in keys]))
        with pytest.raises(MemberError, match="CUDA out of memory") as err:
            rows_until_end(executor, "bad@a")
        assert "\n" not in str(err.value)
        for key in ("good1@a", "good2@a"):
            rows = rows_until_end(executor, key)
            assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["status"] == "completed", rows
        assert ray.get(executor.load.remote()) == 0  # still in rotation, empty
    finally:
        pool.stop()


def test_an_executor_that_cannot_go_on_is_replaced(local_ray, data, tmp_path):
    """Epoch after epoch fails (MAX_STRIKES in a row): the executor fails its members, takes no
    more trials, and Ray starts it again under its name; a new trial then trains there to the end."""
    ray = local_ray
    from gzsl.study.executors.members import MAX_STRIKES, MemberError
    from gzsl.study.executors.actors import StartedExecutors, join_executor

    spec = packed_spec(tmp_path, pack=2, epochs=2)
    pool = started_pool(spec, data, "faults-broken")
    try:
        executor = ray.get_actor(pool.names[0])
        errors = []
        for i in range(MAX_STRIKES):
            assert ray.get(executor.try_join.remote(f"bad{i}@a", PARAMS))
            with pytest.raises(MemberError) as err:
                rows_until_end(executor, f"bad{i}@a")
            errors.append(str(err.value))
            executor.leave.remote(f"bad{i}@a")  # as the trial's function does once it has its error
        assert all("CUDA out of memory" in e for e in errors)
        assert "out of rotation" in errors[-1] and f"{MAX_STRIKES} epochs in a row failed" in errors[-1]
        replaced = join_executor(StartedExecutors(pool.names), "good@a", PARAMS, wait_s=120)
        rows = rows_until_end(replaced, "good@a")
        assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["status"] == "completed"
    finally:
        pool.stop()


# --------------------------------------------------------------------------- the Parquet callback


def test_a_recovered_trial_is_recorded_from_its_new_attempt_numbered_by_first_start(tmp_path):
    """Tune retries a trial (max_failures): it calls on_trial_recover, moves the trial to the end of
    its list and starts it again. Its row and epochs come from the new attempt only, and its
    trial_number stays the order in which it was proposed."""
    from gzsl.results import ResultStore
    from gzsl.study import ParquetCallback
    from gzsl.studyfile import load_study

    spec = load_study(str(write_study(tmp_path, epochs=5)))
    store = ResultStore(str(tmp_path / "results"))
    callback = ParquetCallback(store, spec, log=lambda *_: None)
    a, b = (SimpleNamespace(trial_id=t, config=dict(PARAMS), experiment_tag=f"{i + 1}_alpha=1.0", path=None,
                            error_file=None) for i, t in enumerate(("a", "b")))

    def epoch(trial, e, loss):
        callback.on_trial_result(0, trials, trial, {"epoch": e, "status": "running", "loss_total": loss,
                                                    "evaluated": True, "val_U": 1.0, "val_S": 1.0, "val_H": 1.0})

    trials = [a, b]
    callback.on_trial_start(0, trials, a)
    callback.on_trial_start(0, trials, b)
    for e in (1, 2, 3):
        epoch(a, e, 100.0)  # the first attempt, then it fails
    callback.on_trial_recover(0, trials, a)
    trials = [b, a]  # Tune requeues a recovered trial at the end of its list
    callback.on_trial_start(0, trials, a)
    for e in (1, 2):
        epoch(a, e, 1.0)
    callback.on_trial_complete(0, trials, a)
    row = store.read("trials").iloc[0]
    epochs = store.read("epochs")
    assert (row.trial_id, row.trial_number, row.epochs_run) == ("a", 0, 2)
    assert list(epochs.epoch) == [1, 2] and (epochs.loss_total == 1.0).all()


def test_a_member_joins_when_the_pack_evaluates_so_their_classifiers_fit_at_once(tmp_path, data):
    """eval_every = 2 (and H on every point of that grid, peak_every = 2): a trial that asks to join
    while the pack's member is between evaluations waits for the next evaluated epoch; from then on
    both are scored in the same pack epochs (one fit for both: the same epoch and evaluation seconds)."""
    from gzsl.studyfile import load_study
    from gzsl.study.executors.members import Executor

    study = write_study(tmp_path, name="aligned", epochs=6, grace=6, eval_every=2, latent="[16]",
                        training_extra=TINY + "\npeak_every = 2")
    study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 1\npack = 3\n"))
    executor = Executor(load_study(str(study)), data, "cpu", {"executor_id": "p0"}, run=False)
    assert executor.try_join("a@1", PARAMS)
    executor.run_epoch()  # a: epoch 1
    assert executor.try_join("b@1", PARAMS) and executor.load() == 2
    executor.run_epoch()  # b waits: a is between evaluations; a: epoch 2, evaluated
    assert executor.members() == ["a@1"]
    executor.run_epoch()  # b joins
    assert executor.members() == ["a@1", "b@1"]
    run_out(executor)
    (a, _), (b, _) = taken(executor, "a@1"), taken(executor, "b@1")
    assert [r["epoch"] for r in a] == list(range(1, 7)) and [r["epoch"] for r in b] == list(range(1, 7))
    assert [r["epoch"] for r in a if "val_H" in r] == [2, 4, 6] == [r["epoch"] for r in b if "val_H" in r]
    together = lambda rows, epochs: [(r["epoch_seconds"], r["eval_seconds"]) for r in rows if r["epoch"] in epochs]  # noqa: E731
    assert together(a, (4, 6)) == together(b, (2, 4))  # evaluated in the same pack epochs
    assert all(r["eval_seconds"] > 0 for r in a + b if "val_H" in r)


def test_a_process_sharing_a_gpu_may_allocate_its_share_only(tmp_path):
    """gpu = 0.25: four processes share a GPU and each may allocate a quarter of it; more than one
    GPU, or none given, is the whole GPU; on a CPU nothing is capped. (The cap set for real on a
    GPU: test_a_packed_executor_on_a_gpu_caps_its_memory_at_its_share.)"""
    import dataclasses

    from gzsl.study.trial import gpu_memory_share

    spec = packed_spec(tmp_path, pack=2)
    with_gpu = lambda g: dataclasses.replace(spec, resources={**spec.resources, "gpu": g})  # noqa: E731
    assert gpu_memory_share(with_gpu(0.25), "cuda") == 0.25
    assert gpu_memory_share(with_gpu(0.25), "cuda:1") == 0.25
    assert gpu_memory_share(with_gpu(2.0), "cuda") == 1.0
    assert gpu_memory_share(spec, "cuda") == 1.0  # no gpu key: a whole GPU
    assert gpu_memory_share(with_gpu(0.25), "cpu") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run by the GPU checks)")
def test_a_packed_executor_on_a_gpu_caps_its_memory_at_its_share(tmp_path, data):
    import dataclasses

    from gzsl.study.executors.members import Executor

    spec = packed_spec(tmp_path, pack=2)
    spec = dataclasses.replace(spec, resources={**spec.resources, "gpu": 0.25})
    executor = Executor(spec, data, "cuda", {"executor_id": "p0"}, run=False)
    assert executor.memory_share == 0.25
    assert torch.cuda.get_per_process_memory_fraction(torch.device("cuda")) == pytest.approx(0.25)
    with pytest.raises(torch.OutOfMemoryError):  # 30% of the GPU is more than this process may take
        torch.empty(int(0.3 * torch.cuda.get_device_properties(0).total_memory), dtype=torch.uint8, device="cuda")
    torch.cuda.set_per_process_memory_fraction(1.0)


def _every_epoch_spec(tmp_path, name):
    from gzsl.studyfile import load_study

    study = write_study(tmp_path, name=name, epochs=3, grace=3, eval_every=1, latent="[16]",
                        training_extra=TINY + "\npeak_every = 1")  # H every epoch
    study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 1\npack = 2\n"))
    return load_study(str(study))


def test_the_survivors_of_a_failed_epoch_train_as_if_the_failing_member_never_joined(tmp_path, monkeypatch, data):
    """b joins a's pack and the epoch fails at its second step (an out-of-memory), after one step
    of both and the epoch's random draws: the pack goes back to the boundary, b fails alone, and a's
    losses are bit for bit those of a pack b never joined."""
    from gzsl.study.executors.members import Executor
    from gzsl.trainer import Pack

    def a_alone():
        ex = Executor(_every_epoch_spec(tmp_path, "clean"), data, "cpu", {"executor_id": "p0"}, run=False)
        assert ex.try_join("a@1", PARAMS)
        run_out(ex)
        return taken(ex, "a@1")[0]
    clean = a_alone()
    step, calls = Pack.step, []

    def step_with_fault(self, *args, **kwargs):
        if "b@1" in [m.key for m in self.members]:
            calls.append(1)
            if len(calls) == 2:
                raise torch.OutOfMemoryError("CUDA out of memory (injected at step 2)")
        return step(self, *args, **kwargs)
    monkeypatch.setattr(Pack, "step", step_with_fault)
    ex = Executor(_every_epoch_spec(tmp_path, "faulty"), data, "cpu", {"executor_id": "p0"}, run=False)
    assert ex.try_join("a@1", PARAMS)
    assert ex.run_epoch()  # a's epoch 1
    assert ex.try_join("b@1", {**PARAMS, "lr": 3e-3})
    run_out(ex)
    rows, error = taken(ex, "a@1")
    assert error is None and len(calls) == 2
    assert taken(ex, "b@1")[1].startswith("its first epoch in executor p0 failed: OutOfMemoryError")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["loss_total"] for r in rows] == [r["loss_total"] for r in clean]
    assert [r["val_H"] for r in rows] == [r["val_H"] for r in clean]


def test_a_join_that_fails_halfway_leaves_the_pack_as_it_was(monkeypatch, data):
    """An out-of-memory while the model grows (at its third layer) or while Adam's state grows:
    the join fails, every layer and the optimizer keep K members, and the next epoch trains as in
    a pack that never saw the join."""
    from gzsl.trainer import Pack, TrainConfig

    config = TrainConfig(hidden=(32, 32, 16, 16), batch_size=512, latent_size=16, lr=2e-3, eval_every=0, epochs=3)
    other = TrainConfig(**{**config.__dict__, "seed": 1})

    def pack_of_a():
        pack = Pack(data, config)
        pack.join("a", config)
        pack.train_epoch()
        return pack
    clean = pack_of_a()
    want = clean.train_epoch()
    cat = torch.cat
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    for where in ("model", "optimizer"):
        pack = pack_of_a()
        calls = []

        def cat_failing_third(tensors, *args, **kwargs):  # the model's third layer
            calls.append(1)
            return oom() if len(calls) == 3 else cat(tensors, *args, **kwargs)
        with monkeypatch.context() as m:
            if where == "model":
                m.setattr(torch, "cat", cat_failing_third)
            else:  # the model grew, then Adam's state cannot
                m.setattr(pack.optimizer, "add_members", oom)
            with pytest.raises(torch.OutOfMemoryError):
                pack.join("b", other)
        assert [m.key for m in pack.members] == ["a"]
        assert all(layer.weight.shape[0] == 1 and layer.bias.shape[0] == 1 for layer in pack.model.layers())
        assert len(pack.model.latent_mask) == 1 and len(pack.optimizer.lr) == 1 and len(pack.optimizer.steps) == 1
        assert pack.train_epoch() == want, where
