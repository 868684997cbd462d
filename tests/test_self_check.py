"""The fast paths check themselves the first time they run in a process (gzsl.fastpaths): run
beside the eager path on the same state, a wrong one is caught, the process goes on eagerly from
the eager result, and the fallback reaches the user (the trial's path in Parquet, the driver's
line, the report). No GPU here: the wrong paths are CPU stand-ins with a real GPU path's mistakes."""

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from gzsl import evaluation, fastpaths, graphs, optim, trainer
from gzsl.evaluation import ClassifierConfig
from gzsl.optim import MemberAdam, adam_update
from tests.test_fast_paths import six_epochs_captured_and_eager
from tests.test_pack_faults import TINY
from tests.test_study import INJECT, tune_cmd, write_study


class StaleGraph:
    """A captured graph whose replays forget to refill their inputs: each reruns the work on the
    inputs it was captured with (gzsl.graphs.Graph's contract, broken)."""

    def __init__(self, fn, inputs):
        self.fn, self.inputs = fn, [t.clone() for t in inputs]

    @classmethod
    def capture(cls, what, fn, inputs):
        return cls(fn, inputs)

    def __call__(self, *inputs):
        return self.fn(*self.inputs)


def capture_on_cpu(monkeypatch, what, graph=StaleGraph):
    """`what` captured on the CPU by `graph`, as on CUDA, while its self-check has not failed."""
    monkeypatch.setattr(graphs, "wanted", lambda device, w: w == what and fastpaths.usable(w))
    monkeypatch.setattr(graphs, "on_side_stream", lambda fn, *args: fn(*args))
    monkeypatch.setattr(graphs, "Graph", graph)


def test_a_training_graph_that_replays_stale_inputs_is_caught_and_the_pack_trains_as_eager(monkeypatch):
    capture_on_cpu(monkeypatch, trainer.TRAINING_EPOCH)
    with pytest.warns(UserWarning, match=r"^epoch-graph: differs from the eager path, output tensor \d+ off by "
                                         r"\S+ \(tolerance 0.001\); running it eagerly in this process$"):
        runs = six_epochs_captured_and_eager(monkeypatch, lambda pack: (pack.train_epoch(), pack.path()))
    assert runs[True][0] == runs[False][0]  # the eager losses throughout, bit for bit
    assert all(torch.equal(p, q) for p, q in zip(runs[True][1], runs[False][1]))
    paths = runs[True][2]
    assert paths[0] == "epoch-graph"  # the first epoch is the graph's warm-up, eager; the second is checked
    assert all(p.startswith("eager; fell back: epoch-graph (differs from the eager path, output tensor ")
               for p in paths[1:]), paths


def test_a_right_training_graph_passes_its_check_once_per_process(monkeypatch):
    from tests.test_fast_paths import StandInGraph

    capture_on_cpu(monkeypatch, trainer.TRAINING_EPOCH, StandInGraph)
    checked = []
    run = fastpaths.run
    monkeypatch.setattr(fastpaths, "run", lambda what, *a: (checked.append(what), run(what, *a))[1])
    runs = six_epochs_captured_and_eager(monkeypatch, lambda pack: (pack.train_epoch(), pack.path()))
    assert checked == [trainer.TRAINING_EPOCH] and fastpaths.fallbacks() == {}  # two captures, one check
    assert runs[True][2] == ["epoch-graph"] * 6
    assert runs[True][0] == runs[False][0]


def one_call_and_member_by_member(monkeypatch, update, steps=3):
    """A one-call MemberAdam whose update is `update` beside a per-member one, on the same grads."""
    monkeypatch.setattr(optim, "compiled_update", lambda: update)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(3, 5, 4, generator=g)
    p, alone = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    opt = MemberAdam([p], lr=[1e-2, 2e-3, 5e-3], one_call=True)
    ref = MemberAdam([alone], lr=[1e-2, 2e-3, 5e-3], one_call=False)
    for _ in range(steps):
        p.grad = alone.grad = torch.randn(3, 5, 4, generator=g)
        opt.step()
        ref.step()
    return opt, ref, p, alone


def test_a_one_call_update_that_disagrees_is_caught_and_the_optimizer_goes_on_member_by_member(monkeypatch):
    def doubled_step(params, grads, m, v, v_max, step_size, *rest):  # a wrong bias correction, say
        adam_update(params, grads, m, v, v_max, 2 * step_size, *rest)
    with pytest.warns(UserWarning, match=r"^one-call-adam: differs from the eager path, state tensor 0 off by "
                                         r"\S+ \(tolerance 0.01\); running it eagerly in this process$") as said:
        opt, ref, p, alone = one_call_and_member_by_member(monkeypatch, doubled_step)
    assert len(said) == 1 and not opt.one_call and not fastpaths.usable(fastpaths.ONE_CALL_ADAM)
    assert torch.equal(p, alone) and all(torch.equal(a, b) for a, b in zip(opt.tensors(), ref.tensors()))


def test_a_one_call_update_that_fails_halfway_in_its_check_is_not_applied_twice(monkeypatch):
    def fails_halfway(params, grads, *rest):
        params[0].sub_(1.0)  # a tensor updated, then the device fails
        raise torch.OutOfMemoryError("CUDA out of memory")
    with pytest.warns(UserWarning, match=r"^one-call-adam: failed: OutOfMemoryError: CUDA out of memory; "):
        opt, ref, p, alone = one_call_and_member_by_member(monkeypatch, fails_halfway)
    assert torch.equal(p, alone) and not opt.one_call


def test_a_right_one_call_update_passes_its_check(monkeypatch):
    opt, ref, p, alone = one_call_and_member_by_member(monkeypatch, adam_update)
    assert opt.one_call and fastpaths._verdicts == {fastpaths.ONE_CALL_ADAM: "ok"}
    torch.testing.assert_close(p, alone, rtol=1e-6, atol=1e-7)


def fit(monkeypatch, graph):
    """A classifier fit of two models at once, its epochs captured by `graph` (None: eager)."""
    if graph is None:
        monkeypatch.setattr(graphs, "wanted", lambda device, what: False)
    else:
        capture_on_cpu(monkeypatch, evaluation.CLASSIFIER_EPOCH, graph)
    g = torch.Generator().manual_seed(5)
    z, y = torch.randn(2, 200, 8, generator=g), torch.randint(0, 6, (200,), generator=g)
    w, b = torch.randn(2, 8, 6, generator=g) * 0.1, torch.zeros(2, 1, 6)
    torch.manual_seed(0)  # the fit's row orders
    return evaluation.fit_classifiers(z, y, ClassifierConfig(epochs=3, batch_size=32), w, b)


def test_a_classifier_graph_that_replays_stale_inputs_is_caught_and_the_fit_is_the_eager_one(monkeypatch):
    with pytest.warns(UserWarning, match=r"^classifier-graph: differs from the eager path, output tensor 0 off by "):
        caught = fit(monkeypatch, StaleGraph)
    eager = fit(monkeypatch, None)
    assert all(torch.equal(a, b) for a, b in zip(caught, eager))
    assert list(fastpaths.fallbacks()) == [evaluation.CLASSIFIER_EPOCH]


def test_a_study_says_which_trials_fell_back_in_parquet_its_trial_lines_and_its_report(tmp_path):
    """Ray's workers capture training epochs with the stale stand-in (tests/inject): each trial's
    process catches it at its first captured epoch and trains on eagerly, and the user is told."""
    study, results = write_study(tmp_path, name="fellback", epochs=4, samples=2, final_seeds=0, grace=4, eval_every=4,
                                 latent="[16]", training_extra=TINY), tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
           "GZSL_INJECT_FAULT": "wrong-epoch-graph"}
    p = subprocess.run(tune_cmd(study, results), capture_output=True, text=True, timeout=400, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    report = subprocess.run([sys.executable, "-m", "gzsl.report", "--results", str(results), "--out",
                             str(tmp_path / "report.html")], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    trials = pd.read_parquet(results / "trials.parquet")
    assert (trials.status == "completed").all() and len(trials) == 2
    said = "eager; fell back: epoch-graph (differs from the eager path, output tensor "
    assert trials.path.str.startswith(said).all(), trials.path.tolist()
    lines = [line for line in p.stdout.splitlines() if line.startswith("[") and " completed " in line]
    assert len(lines) == 2 and all(f"path: {said}" in line for line in lines), p.stdout
    html = (tmp_path / "report.html").read_text()
    assert "A fast path fell back to eager</b>" in html and "epoch-graph (differs from the eager path" in html
