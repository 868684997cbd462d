"""The fast paths compute what the plain ones do: the final classifier's fit is torch's Adam step
for step, its epochs and a training step never wait for the device (so CUDA can run them ahead
and a graph can capture them), and on a GPU a captured epoch and the one-call Adam give the eager
numbers (those two run only where CUDA is)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gzsl.evaluation as evaluation
from gzsl import fastpaths, graphs
from gzsl.datasets import load
from gzsl.evaluation import ClassifierConfig, Evaluator, fit_classifiers
from gzsl.datasets import default_hidden
from gzsl.trainer import Pack, TrainConfig

SMALL = TrainConfig(hidden=default_hidden("synth-small"), lr=1e-3, latent_size=16, eval_every=1, epochs=2)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def reference_fit(z, y, config, w, b):
    """The classifier's fit as it was written before its CUDA graphs: torch.optim.Adam, fused."""
    w, b = w.clone(), b.clone()
    opt = torch.optim.Adam([w, b], lr=config.lr, betas=(config.beta1, 0.999), fused=True)
    n, bs = len(y), config.batch_size
    with torch.no_grad():
        for _ in range(config.epochs):
            perm = torch.randperm(n, device=z.device)
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                z_b, y_b = z[:, idx], y[idx]
                grad = torch.softmax(torch.baddbmm(b, z_b, w), dim=2)
                grad[:, torch.arange(len(y_b), device=z.device), y_b] -= 1.0
                grad /= len(y_b)
                w.grad, b.grad = torch.bmm(z_b.transpose(1, 2), grad), grad.sum(1, keepdim=True)
                opt.step()
    return w, b


def classifier_problem(device="cpu", k=3, n=250, latent=6, classes=5):
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(k, n, latent, generator=g), torch.randint(0, classes, (n,), generator=g)
    w, b = 0.1 * torch.randn(k, latent, classes, generator=g), torch.zeros(k, 1, classes)
    return z.to(device), y.to(device), w.to(device), b.to(device)


def test_the_classifier_fit_is_torch_adams_fit_bit_for_bit():
    z, y, w0, b0 = classifier_problem()
    config = ClassifierConfig(epochs=3, batch_size=32, lr=5e-2)  # 250 rows: a last batch of 26
    torch.manual_seed(7)
    w, b = fit_classifiers(z, y, config, w0, b0)
    torch.manual_seed(7)
    w_ref, b_ref = reference_fit(z, y, config, w0, b0)
    assert (w - w0).abs().max() > 0.05  # it did move
    assert torch.equal(w, w_ref) and torch.equal(b, b_ref)


# Operators that make the host wait for the device: reading a value (item, bool, tolist all end in
# _local_scalar_dense), or an output whose size depends on the values.
HOST_SYNCS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select", "_unique2",
              "unique_dim", "unique_consecutive", "allclose"}


class Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_classifier_epochs_and_training_steps_never_wait_for_the_device():
    z, y, w0, b0 = classifier_problem()
    with Recorder() as fit:
        fit_classifiers(z, y, ClassifierConfig(epochs=2, batch_size=32), w0, b0)
    data = load("synth-small", "val")
    pack = Pack(data, SMALL)
    pack.join("a", SMALL)
    pack.join("b", TrainConfig(**{**SMALL.__dict__, "lr": 3e-4, "sampling": "textbook", "seed": 1}))
    w, bs = pack.loss_weights(), SMALL.batch_size
    eps = pack.epoch_noise(1)
    with Recorder() as step:
        pack.step(pack.x[:bs], pack.c[:bs], pack.y[:bs], eps[:, 0], w)
    assert fit.ops.count("_fused_adam_") == 2 * 8 and step.ops.count("_fused_adam_") == 2  # what ran was seen
    assert step.ops.count("bmm") >= 10  # the backward's too
    assert HOST_SYNCS.isdisjoint(fit.ops), sorted(HOST_SYNCS.intersection(fit.ops))
    assert HOST_SYNCS.isdisjoint(step.ops), sorted(HOST_SYNCS.intersection(step.ops))


@needs_cuda
def test_captured_classifier_epochs_fit_and_score_as_eager_ones(monkeypatch):
    z, y, w0, b0 = classifier_problem("cuda", k=4, n=1000)
    config = ClassifierConfig(epochs=4, batch_size=32, lr=1e-2)
    results = {}
    for captured in (True, False):
        monkeypatch.setattr(graphs, "ENABLED", captured)
        torch.manual_seed(3)
        results[captured] = fit_classifiers(z, y, config, w0, b0)
    assert not graphs.failed(evaluation.CLASSIFIER_EPOCH), "the capture failed (see the warning); the fit ran eagerly"
    assert fastpaths.fallbacks() == {}  # the first captured epoch passed its self-check
    torch.testing.assert_close(results[True], results[False], rtol=1e-5, atol=1e-6)

    data = load("synth-small", "val").to("cuda")
    on_cuda = TrainConfig(**{**SMALL.__dict__, "device": "cuda"})  # a pack's device is its config's
    model = Pack(data, on_cuda)
    model.join("a", on_cuda)
    for _ in range(2):
        model.train_epoch()
    scores = {}
    for captured in (True, False):
        monkeypatch.setattr(graphs, "ENABLED", captured)
        scores[captured] = Evaluator(data, evaluation.CADA_RECIPE, seed=5)(model.member("a"))
    assert scores[True] == pytest.approx(scores[False], abs=1e-3)


@needs_cuda
def test_one_call_adam_trains_a_pack_as_member_by_member_on_cuda():
    """One step: the same weights to float rounding (the compiled kernel fuses the update in
    another order than torch's _fused_adam_: about 1 ulp per element). Two epochs (some 100
    steps of a non-convex training) carry those roundings on: the losses agree to 1e-3 (the H200
    measured 2e-4 at lr 2e-3), where a wrong learning rate or step count moves them by percents."""
    data = load("synth-small", "val").to("cuda")
    configs = [TrainConfig(**{**SMALL.__dict__, "device": "cuda", "lr": lr, "seed": i, "latent_size": size})
               for i, (lr, size) in enumerate(((1e-3, 16), (3e-4, 8), (2e-3, 16)))]
    losses, first_step = {}, {}
    for one_call in (True, False):
        pack = Pack(data, configs[0])
        pack.optimizer.one_call = one_call
        for i, c in enumerate(configs):
            pack.join(str(i), c)
        bs = configs[0].batch_size
        pack.step(pack.x[:bs], pack.c[:bs], pack.y[:bs], pack.epoch_noise(1)[:, 0], pack.loss_weights())
        first_step[one_call] = [p.detach().clone() for p in pack.model.parameters()]
        for _ in range(2):
            epoch_losses = pack.train_epoch()
        assert pack.optimizer.one_call == one_call, f"the one-call update fell back: {fastpaths.fallbacks()}"
        losses[one_call] = [epoch_losses[str(i)]["total"] for i in range(len(configs))]
    for a, b in zip(first_step[True], first_step[False]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_an_epoch_drawn_first_then_stepped_trains_as_step_by_step_drawing_did():
    """train_epoch draws the epoch's order and every step's z^p shuffle before its steps (so a
    CUDA graph can capture them), the shuffles all at once; a pack stepped one step() after another
    with the same draws ends bit for bit the same, and every shuffle permutes its own batch."""
    data = load("synth-small", "val")
    configs = {"a": SMALL, "b": TrainConfig(**{**SMALL.__dict__, "lr": 3e-4, "sampling": "textbook", "seed": 1,
                                                 "latent_size": 8})}
    packs = []
    for _ in range(2):
        pack = Pack(data, SMALL)
        for key, c in configs.items():
            pack.join(key, c)
        packs.append(pack)
    new, old = packs
    for _ in range(2):
        new_losses = new.train_epoch()
        n, bs = old.epoch_images, SMALL.batch_size  # the epoch as it was written, one step after another
        w, eps = old.loss_weights(), old.epoch_noise(-(-n // bs))
        order, shuffles = old.epoch_order(n), old.epoch_shuffles(n)
        sums = {}
        for step, i in enumerate(range(0, n, bs)):
            idx, shuffle = order[i:i + bs], shuffles[i:i + bs]
            assert sorted(shuffle.tolist()) == list(range(len(idx)))
            for k, v in old.step(old.x[idx], old.c[idx], old.y[idx], eps[:, step, :, :len(idx)], w, shuffle).items():
                sums[k] = sums.get(k, 0.0) + v.detach()
        for m in old.members:
            m.epoch += 1
        assert [new_losses[key]["total"] for key in configs] == (sums["total"] / n).tolist()
    for p, q in zip(new.model.parameters(), old.model.parameters()):
        assert torch.equal(p, q)


@needs_cuda
def test_captured_training_epochs_train_as_eager_ones(monkeypatch):
    """Epoch 1 of a membership runs eagerly, epoch 2 is captured, epoch 3 replays; a member that
    leaves makes a new membership (eager, captured, replayed again). All as the eager pack."""
    from gzsl import trainer
    data = load("synth-small", "val").to("cuda")
    configs = {key: TrainConfig(**{**SMALL.__dict__, "device": "cuda", "lr": lr, "seed": i, "sampling": sampling})
               for i, (key, lr, sampling) in enumerate((("a", 1e-3, "cada"), ("b", 3e-4, "textbook"), ("c", 2e-3, "cada")))}
    runs = {}
    for captured in (True, False):
        monkeypatch.setattr(graphs, "ENABLED", captured)
        pack = Pack(data, configs["a"])
        for key, c in configs.items():
            pack.join(key, c)
        history = []
        for epoch in range(7):
            if epoch == 3:
                pack.leave("b")
            history.append(pack.train_epoch())
            if captured and epoch in (2, 5):
                assert pack._graph is not None, "no captured epoch replayed"
        runs[captured] = (history, [p.detach().clone() for p in pack.model.parameters()])
    assert not graphs.failed(trainer.TRAINING_EPOCH), "the capture failed (see the warning); epochs ran eagerly"
    assert fastpaths.fallbacks() == {}  # the first replay passed its self-check
    for got, want in zip(runs[True][0], runs[False][0]):
        assert got.keys() == want.keys()
        for key in got:
            assert got[key] == pytest.approx(want[key], rel=1e-5)
    for p, q in zip(runs[True][1], runs[False][1]):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


class StandInGraph:
    """What gzsl.graphs.Graph does, on a CPU: static copies of the inputs that each call refills,
    the work rerun on them, its results written into the same output tensors."""
    captures = 0

    def __init__(self, fn, inputs):
        self.fn, self.inputs, self.outputs = fn, [t.clone() for t in inputs], None
        StandInGraph.captures += 1

    @classmethod
    def capture(cls, what, fn, inputs):
        return cls(fn, inputs)

    def __call__(self, *inputs):
        for static, t in zip(self.inputs, inputs):
            static.copy_(t)
        out = self.fn(*self.inputs)
        if self.outputs is None:
            self.outputs = out
        else:
            for k, v in out.items():
                self.outputs[k].copy_(v)
        return self.outputs


def six_epochs_captured_and_eager(monkeypatch, epoch):
    """Six epochs of a two-member pack (a leaves before the fourth), with gzsl.graphs as the test
    patched it, then with capture off. `epoch(pack)` trains one and returns (losses, a record of it).
    Returns {captured: (losses per epoch, final weights, records)}."""
    data = load("synth-small", "val")
    configs = {"a": SMALL, "b": TrainConfig(**{**SMALL.__dict__, "lr": 3e-4, "seed": 1, "latent_size": 8})}
    runs = {}
    for captured in (True, False):
        if not captured:
            monkeypatch.setattr(graphs, "wanted", lambda device, what: False)
        pack = Pack(data, SMALL)
        for key, c in configs.items():
            pack.join(key, c)
        history, records = [], []
        for i in range(6):
            if i == 3:
                pack.leave("a")
            losses, record = epoch(pack)
            history.append(losses)
            records.append(record)
        runs[captured] = history, [p.detach().clone() for p in pack.model.parameters()], records
    return runs


def test_a_membership_runs_eagerly_then_is_captured_then_replayed(monkeypatch):
    """The pack's use of a captured epoch, with a stand-in for the CUDA graph (no GPU here):
    which epochs run eagerly, which capture, which replay, and that the numbers are the eager ones."""
    from gzsl import trainer
    monkeypatch.setattr(graphs, "wanted", lambda device, what: what == trainer.TRAINING_EPOCH)
    side = []
    monkeypatch.setattr(graphs, "on_side_stream", lambda fn, *args: (side.append(1), fn(*args))[1])
    monkeypatch.setattr(graphs, "Graph", StandInGraph)

    def epoch(pack):
        before = (len(side), StandInGraph.captures)
        losses = pack.train_epoch()
        return losses, {(1, 0): "eager", (0, 1): "captured", (0, 0): "replayed"}[
            (len(side) - before[0], StandInGraph.captures - before[1])]
    runs = six_epochs_captured_and_eager(monkeypatch, epoch)
    assert runs[True][2] == ["eager", "captured", "replayed", "eager", "captured", "replayed"]
    assert runs[False][2] == ["replayed"] * 6  # i.e. neither side stream nor capture: plain steps
    assert runs[True][0] == runs[False][0]
    assert all(torch.equal(p, q) for p, q in zip(runs[True][1], runs[False][1]))


def test_work_that_cannot_be_captured_is_said_each_time_and_given_up_after_three_failures(monkeypatch):
    monkeypatch.setattr(graphs, "_failures", {})
    monkeypatch.setattr(graphs, "ENABLED", True)

    def work(t):  # fails on a GPU too (here, on a CPU, there is nothing to capture on)
        raise RuntimeError("cannot")
    for n in (1, 2):
        with pytest.warns(UserWarning, match=r"^some work: could not be captured as a CUDA graph \(\w+: .*\); "
                                             rf"running it step by step, tried again later \(failure {n} of 3\)$"):
            assert graphs.Graph.capture("some work", work, [torch.zeros(2)]) is None
        assert graphs.failed("some work") and graphs.wanted("cuda", "some work")  # a transient error may pass
    with pytest.warns(UserWarning, match=r"^some work: could not be captured as a CUDA graph 3 times \(last: \w+: .*\); "
                                         r"running it eagerly in this process$"):
        assert graphs.Graph.capture("some work", work, [torch.zeros(2)]) is None
    assert not graphs.wanted("cuda", "some work") and not graphs.failed("other work")
    assert graphs.wanted("cuda", "other work") and not graphs.wanted("cpu", "other work")


def test_a_capture_that_fails_once_runs_that_membership_eagerly_and_is_tried_at_the_next(monkeypatch):
    """An out-of-memory while capturing just after a pack grew: that membership's epochs run
    eagerly (not a capture attempt per epoch), the next membership is captured and replayed, and
    the numbers are the eager ones throughout."""
    from gzsl import trainer
    monkeypatch.setattr(graphs, "wanted", lambda device, what: what == trainer.TRAINING_EPOCH)
    monkeypatch.setattr(graphs, "on_side_stream", lambda fn, *args: fn(*args))
    attempts = []

    class FailsFirst(StandInGraph):
        @classmethod
        def capture(cls, what, fn, inputs):
            attempts.append(what)
            return None if len(attempts) == 1 else cls(fn, inputs)  # Graph.capture's None: it failed
    monkeypatch.setattr(graphs, "Graph", FailsFirst)
    runs = six_epochs_captured_and_eager(
        monkeypatch, lambda pack: (pack.train_epoch(), pack._graph is not None and pack._graph[1] is not None))
    assert len(attempts) == 2  # once per membership: the failed one is not retried every epoch
    assert runs[True][2] == [False, False, False, False, True, True]
    assert runs[True][0] == runs[False][0]
    assert all(torch.equal(p, q) for p, q in zip(runs[True][1], runs[False][1]))
