"""Packed members (gzsl.packing, gzsl.pack_training): K configurations trained as one fused
model must each train as their solo model would."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from gzsl import evaluation
from gzsl.datasets import load
from gzsl.evaluation import ClassifierConfig, fit_classifiers
from gzsl.pack_training import PackTrainer, pack_shape, train_pack
from gzsl.training import TrainConfig, build_model, make_optimizer, train, vae_epochs

TINY = (64, 64, 32, 32)


@pytest.fixture(scope="module")
def data():
    return load("synth-small", "val")


def solo(data, cfg, epochs):
    torch.manual_seed(cfg.seed)
    model = build_model(data, cfg)
    epoch_losses = list(vae_epochs(model, make_optimizer(model, replace(cfg, epochs=epochs)), data,
                                   replace(cfg, epochs=epochs)))
    return model, epoch_losses


def assert_same_weights(a, b, atol=0.0):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if atol == 0.0:
            assert torch.equal(p, q), name
        else:
            torch.testing.assert_close(p, q, atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("sampling,disentangle", [("textbook", True), ("cada", True), ("textbook", False)])
def test_a_one_member_pack_is_the_solo_trainer_bit_for_bit(data, sampling, disentangle):
    cfg = TrainConfig(epochs=3, hidden=TINY, latent_size=16, sampling=sampling, disentangle=disentangle, lr=1e-3)
    model, solo_losses = solo(data, cfg, 3)
    pack = PackTrainer(data, pack_shape(data, cfg, 16))
    pack.join("a", cfg)
    packed_losses = [pack.train_epoch()["a"] for _ in range(3)]
    assert_same_weights(model, pack.model("a"))
    for s, p in zip(solo_losses, packed_losses):
        assert p == pytest.approx(s, rel=1e-5)


def test_a_padded_latent_is_exactly_the_narrower_model(data, monkeypatch):
    """A latent-16 member of a max-latent-64 pack: with the sampling noise switched off (the one
    thing the padding changes is how many noise values are drawn), it follows its solo model."""
    monkeypatch.setattr(torch, "randn_like", lambda t: torch.zeros_like(t))
    cfg = TrainConfig(epochs=2, hidden=TINY, latent_size=16, lr=1e-3)
    model, losses = solo(data, cfg, 1)
    pack = PackTrainer(data, pack_shape(data, cfg, 64))
    pack.join("a", cfg)
    assert pack.train_epoch()["a"] == pytest.approx(losses[0], rel=1e-6)
    # Equal up to the order of float sums over 64 instead of 16 dimensions (Adam then amplifies it).
    assert_same_weights(model, pack.model("a"), atol=1e-6)


def test_each_member_trains_with_its_own_settings(data, monkeypatch):
    """Three members of one pack, each with its own learning rate, alpha, gamma, lam and KL weight:
    with the sampling noise off, every member follows its own solo run."""
    monkeypatch.setattr(torch, "randn_like", lambda t: torch.zeros_like(t))
    base = TrainConfig(epochs=2, hidden=TINY, latent_size=32)
    cfgs = {"a": replace(base, lr=1e-3, alpha=0.5, gamma=2.0, lam=1.0),
            "b": replace(base, lr=3e-4, alpha=4.0, gamma=0.3, lam=6.0, kl_weight=1.0),
            "c": replace(base, lr=2e-3, alpha=1.0, gamma=1.0, lam=2.37, disentangle=True)}
    pack = PackTrainer(data, pack_shape(data, base, 32))
    for k, c in cfgs.items():
        pack.join(k, c)
    packed = pack.train_epoch()
    for k, c in cfgs.items():
        model, losses = solo(data, c, 1)
        assert packed[k] == pytest.approx(losses[0], rel=1e-5), k
        assert_same_weights(model, pack.model(k), atol=1e-6)


def test_a_diverging_or_stopped_member_leaves_the_others_unchanged(data):
    """Member b diverges (a huge learning rate) in one pack and is stopped at the same epoch in
    another: member a ends bit-identical in both, and b's NaNs never reached a."""
    a = TrainConfig(epochs=4, hidden=TINY, latent_size=16, lr=1e-3)
    results = {}
    for b_lr in (1e4, 2e-3):
        pack = PackTrainer(data, pack_shape(data, a, 32))
        pack.join("a", a)
        pack.join("b", replace(a, lr=b_lr, latent_size=32))
        first = pack.train_epoch()
        results[b_lr] = first["b"]["total"]
        pack.leave("b")  # diverged (train_pack removes it so) or stopped by ASHA
        for _ in range(3):
            pack.train_epoch()
        results[b_lr, "a"] = pack.model("a")
    assert not torch.isfinite(torch.tensor(results[1e4])) and torch.isfinite(torch.tensor(results[2e-3]))
    assert_same_weights(results[1e4, "a"], results[2e-3, "a"])
    assert all(torch.isfinite(p).all() for p in results[1e4, "a"].parameters())


def test_train_pack_ends_each_member_at_its_own_epochs_and_reports_a_diverged_one(data):
    cfgs = {"short": TrainConfig(epochs=2, hidden=TINY, latent_size=16, classifier="fast", eval_every=1),
            "long": TrainConfig(epochs=4, hidden=TINY, latent_size=32, classifier="fast", eval_every=2),
            "bad": TrainConfig(epochs=4, hidden=TINY, latent_size=16, classifier="fast", lr=1e4)}
    seen = {k: [] for k in cfgs}
    for results in train_pack(data, cfgs):
        for k, r in results.items():
            seen[k].append((r.epoch, r.status, r.scores is not None))
    assert seen["short"] == [(1, "running", True), (2, "completed", True)]
    assert seen["long"] == [(1, "running", False), (2, "running", True), (3, "running", False), (4, "completed", True)]
    assert seen["bad"] == [(1, "diverged", True)]


def test_a_late_member_starts_its_warmups_at_its_own_epoch_0(data):
    early = TrainConfig(epochs=4, hidden=TINY, latent_size=16)
    pack = PackTrainer(data, pack_shape(data, early, 16))
    pack.join("early", early)
    pack.train_epoch()
    pack.train_epoch()
    pack.join("late", early)
    m = pack.member_tensors()
    assert m.kl.view(-1).tolist() == pytest.approx([0.25 * (2 / 4) / 0.93, 0.0])
    # The late member's fresh weights are its solo model's initialisation for its seed.
    torch.manual_seed(early.seed)
    assert_same_weights(build_model(data, early), pack.model("late"))


def test_evaluating_a_member_never_changes_the_packs_training(data):
    """As in the solo trainer: scoring a member (its solo copy is built on a forked random stream)
    leaves the noise the pack draws next, and so every member's weights, as they were."""
    cfgs = {"a": TrainConfig(epochs=3, hidden=TINY, latent_size=16, classifier="fast"),
            "b": TrainConfig(epochs=3, hidden=TINY, latent_size=32, classifier="fast", lr=1e-3)}
    packs = []
    for every in (0, 1):
        pack = PackTrainer(data, pack_shape(data, cfgs["a"], 32))
        for k, c in cfgs.items():
            pack.join(k, replace(c, eval_every=every))
        for _ in range(2):
            pack.run_epoch()
        packs.append(pack)
    for k in cfgs:
        assert_same_weights(packs[0].model(k), packs[1].model(k))


def test_classifiers_fit_at_once_are_each_models_own_fit():
    """fit_classifiers: K final classifiers in one fused fit, each the fit of its model alone (same
    start, same minibatch order); a narrower latent, zero-padded, keeps exactly 0 weights there."""
    g = torch.Generator().manual_seed(0)
    n, classes, widths = 300, 5, [8, 5, 8]
    y = torch.randint(0, classes, (n,), generator=g)
    zs = [torch.randn(n, w, generator=g) + torch.randn(classes, w, generator=g)[y] for w in widths]
    starts = [(0.1 * torch.randn(w, classes, generator=g), 0.1 * torch.randn(1, classes, generator=g)) for w in widths]
    config = ClassifierConfig(epochs=3, batch_size=64, lr=5e-2)
    torch.manual_seed(1)
    w, b = fit_classifiers(torch.stack([F.pad(z, (0, 8 - z.shape[1])) for z in zs]), y, config,
                           torch.stack([F.pad(w0, (0, 0, 0, 8 - len(w0))) for w0, _ in starts]),
                           torch.stack([b0 for _, b0 in starts]))
    for k, (z, (w0, b0)) in enumerate(zip(zs, starts)):
        torch.manual_seed(1)
        alone_w, alone_b = fit_classifiers(z[None], y, config, w0[None], b0[None])
        assert (alone_w[0] - w0).abs().max() > 0.05  # it did move
        torch.testing.assert_close(w[k, :len(w0)], alone_w[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(b[k], alone_b[0], atol=1e-6, rtol=0)
    assert torch.equal(w[1, 5:], torch.zeros(3, classes))


def test_a_pack_fits_its_members_classifiers_at_once_and_one_member_scores_as_alone(data, monkeypatch):
    fits = []
    fused = evaluation.fit_classifiers
    monkeypatch.setattr(evaluation, "fit_classifiers", lambda z, *a: fits.append(len(z)) or fused(z, *a))
    quick = {"quick": ClassifierConfig(epochs=1, batch_size=256, lr=1e-2)}
    cfg = TrainConfig(epochs=2, hidden=TINY, latent_size=16, classifier="fast", eval_every=1, seed=3)
    alone = list(train(data, cfg, recipes=quick))
    packed = [r["a"] for r in train_pack(data, {"a": cfg}, recipes=quick)]
    assert [r.scores for r in packed] == [r.scores for r in alone] and alone[0].scores.U > 0
    assert packed[-1].recipe_scores == alone[-1].recipe_scores
    fits.clear()
    cfgs = {"a": cfg, "b": replace(cfg, latent_size=32, lr=2e-3), "c": replace(cfg, epochs=1)}
    for _ in train_pack(data, cfgs, recipes=quick):
        pass
    # epoch 1: a and b (fast), c ends (fast, quick); epoch 2: a and b end (fast, quick)
    assert fits == [3, 1, 2, 2]
