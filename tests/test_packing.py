"""Packs (gzsl.trainer.Pack): K configurations trained as one model. A member must train as its
own run would, whatever the others do; `train` is the pack of one."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from gzsl import evaluation
from gzsl.datasets import load
from gzsl.evaluation import ClassifierConfig, fit_classifiers
from gzsl.trainer import Pack, TrainConfig, build_model, train_pack

TINY = (64, 64, 32, 32)


@pytest.fixture(scope="module")
def data():
    return load("synth-small", "val")


def trained(data, configs: dict[str, TrainConfig], epochs: int, width: int | None = None):
    """A pack of `configs` after `epochs` epochs, and each member's losses per epoch."""
    first = next(iter(configs.values()))
    pack = Pack(data, first, width or max(c.latent_size for c in configs.values()))
    for key, config in configs.items():
        pack.join(key, config)
    history = [pack.train_epoch() for _ in range(epochs)]
    return pack, {key: [h[key] for h in history] for key in configs}


def assert_same_weights(a, b, atol=0.0):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if atol == 0.0:
            assert torch.equal(p, q), name
        else:
            torch.testing.assert_close(p, q, atol=atol, rtol=0, msg=name)


def test_a_run_repeats_bit_for_bit_and_another_seed_differs(data):
    cfg = TrainConfig(epochs=3, hidden=TINY, latent_size=16, lr=1e-3, seed=4)
    (a, la), (b, lb), (c, lc) = (trained(data, {"m": s}, 2) for s in (cfg, cfg, replace(cfg, seed=5)))
    assert la == lb and la["m"][1]["total"] != lc["m"][1]["total"]
    assert_same_weights(a.member("m"), b.member("m"))


@pytest.mark.parametrize("sampling", ["cada", "textbook"])
def test_a_padded_latent_is_exactly_the_narrower_model(data, sampling):
    """A latent-16 member of a pack of latent width 64 draws its own noise at its own size and
    follows its own run (a pack of one at width 16); its extra dimensions stay exactly 0."""
    cfg = TrainConfig(epochs=2, hidden=TINY, latent_size=16, lr=1e-3, sampling=sampling)
    alone, alone_losses = trained(data, {"a": cfg}, 1)
    padded, padded_losses = trained(data, {"a": cfg}, 1, width=64)
    assert padded_losses["a"][0] == pytest.approx(alone_losses["a"][0], rel=1e-6)
    # Equal up to the order of float sums over 64 instead of 16 dimensions (Adam then amplifies it).
    assert_same_weights(alone.member("a"), padded.member("a"), atol=1e-6)
    heads = padded.model.encoder_v.heads.weight[0].view(TINY[0], 4, 64)  # mu_t, logvar_t, mu_p, logvar_p
    assert heads[..., :16].abs().max() > 0 and torch.equal(heads[..., 16:], torch.zeros(TINY[0], 4, 48))
    assert torch.equal(padded.model.decoder_s.hidden.weight[0, 16:], torch.zeros(48, TINY[3]))


def test_each_member_trains_as_its_own_run(data):
    """Three members with their own learning rate, alpha, gamma, lam, KL weight, sampling and
    latent size: after an epoch together, each is where its own run is."""
    base = TrainConfig(epochs=2, hidden=TINY, latent_size=32)
    cfgs = {"a": replace(base, lr=1e-3, alpha=0.5, gamma=2.0, lam=1.0, latent_size=16),
            "b": replace(base, lr=3e-4, alpha=4.0, gamma=0.3, lam=6.0, kl_weight=1.0, sampling="textbook"),
            "c": replace(base, lr=2e-3, latent_size=24)}
    pack, packed = trained(data, cfgs, 1)
    for key, cfg in cfgs.items():
        alone, losses = trained(data, {key: cfg}, 1)
        assert packed[key][0] == pytest.approx(losses[key][0], rel=1e-5), key
        assert_same_weights(alone.member(key), pack.member(key), atol=1e-6)


def test_a_stopped_finished_or_diverged_member_leaves_the_others_unchanged(data):
    """Member b is stopped after epoch 1, or finishes then, or diverges in it (NaN weights): member
    a's losses and weights are bit-identical in all three packs, and b's NaNs never reached a.
    Beside b training on, or with no b at all, a differs at most by the order of float sums. (a's
    schedule is long enough that its 3 epochs come before the cross-reconstruction warm-up: where a
    loss term switches on, training is chaotic for an epoch, and float-order differences of 1e-8
    grow to 1e-3 in the weights, measured with a 5-epoch schedule.)"""
    a = TrainConfig(epochs=20, hidden=TINY, latent_size=16, lr=1e-3, eval_every=0, classifier="fast")
    fates = {"stopped": replace(a, latent_size=32, lr=2e-3), "finished": replace(a, latent_size=32, epochs=1),
             "diverged": replace(a, latent_size=32, lr=1e4), "trains on": replace(a, latent_size=32, lr=2e-3)}
    runs = {}
    for fate, b in [*fates.items(), ("no b", None)]:
        pack = Pack(data, a, width=32)
        pack.join("a", a)
        if b is not None:
            pack.join("b", b)
        epochs = [pack.run_epoch()]
        if fate == "stopped":
            pack.leave("b")
        epochs += [pack.run_epoch() for _ in range(2)]
        runs[fate] = ([e["a"].losses for e in epochs], pack.member("a"), epochs[0].get("b"))
    assert runs["stopped"][2].status == "running" and runs["finished"][2].status == "completed"
    assert runs["diverged"][2].status == "diverged" and not math.isfinite(runs["diverged"][2].losses["total"])
    for fate in ("finished", "diverged"):
        assert runs[fate][0] == runs["stopped"][0], fate
        assert_same_weights(runs[fate][1], runs["stopped"][1])
    for fate in ("trains on", "no b"):
        for mine, theirs in zip(runs[fate][0], runs["stopped"][0]):
            assert mine == pytest.approx(theirs, rel=1e-5), fate
        assert_same_weights(runs[fate][1], runs["stopped"][1], atol=1e-5)
    assert all(torch.isfinite(p).all() for p in runs["diverged"][1].parameters())


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


def test_a_late_member_starts_its_warmups_and_weights_at_its_own_epoch_0(data):
    early = TrainConfig(epochs=4, hidden=TINY, latent_size=16)
    pack, _ = trained(data, {"early": early}, 2)
    pack.join("late", replace(early, seed=7))
    assert pack.loss_weights().kl.tolist() == pytest.approx([0.25 * (2 / 4) / 0.93, 0.0])
    # The late member's fresh weights are its own run's initial weights for its seed.
    assert_same_weights(build_model(data, replace(early, seed=7)), pack.member("late"))


def test_a_member_that_does_not_fit_is_refused(data):
    cfg = TrainConfig(hidden=TINY, latent_size=16)
    pack = Pack(data, cfg, width=32)
    pack.join("a", cfg)
    with pytest.raises(ValueError, match="already in the pack"):
        pack.join("a", cfg)
    for other in (replace(cfg, latent_size=64), replace(cfg, hidden=(64, 64, 32, 16)),
                  replace(cfg, disentangle=False), replace(cfg, batch_size=64)):
        with pytest.raises(ValueError, match="does not fit this pack"):
            pack.join("b", other)
    assert [m.key for m in pack.members] == ["a"] and len(pack.model.encoder_v.hidden.weight) == 1


def test_evaluating_a_member_never_changes_the_packs_training(data):
    """Scoring a member (a copy of it, its classifier fit on torch's forked global stream) leaves
    every member's training as it was."""
    cfgs = {"a": TrainConfig(epochs=3, hidden=TINY, latent_size=16, classifier="fast"),
            "b": TrainConfig(epochs=3, hidden=TINY, latent_size=32, classifier="fast", lr=1e-3)}
    packs = []
    for every in (0, 1):
        pack = Pack(data, cfgs["a"], 32)
        for k, c in cfgs.items():
            pack.join(k, replace(c, eval_every=every))
        for _ in range(2):
            pack.run_epoch()
        packs.append(pack)
    for k in cfgs:
        assert_same_weights(packs[0].member(k), packs[1].member(k))


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


def test_a_pack_fits_its_members_classifiers_at_once(data, monkeypatch):
    """Members scored in the same epoch have their classifiers fit in one call, whatever recipes each
    needs; that each fit is the member's own is test_classifiers_fit_at_once_are_each_models_own_fit.
    (A pack of one against train() is no test: train() is the pack of one.)"""
    fits = []
    fused = evaluation.fit_classifiers
    monkeypatch.setattr(evaluation, "fit_classifiers", lambda z, *a: fits.append(len(z)) or fused(z, *a))
    quick = {"quick": ClassifierConfig(epochs=1, batch_size=256, lr=1e-2)}
    cfg = TrainConfig(epochs=2, hidden=TINY, latent_size=16, classifier="fast", eval_every=1, seed=3)
    cfgs = {"a": cfg, "b": replace(cfg, latent_size=32, lr=2e-3), "c": replace(cfg, epochs=1)}
    scored = []
    for results in train_pack(data, cfgs, recipes=quick):
        scored.append({k: (r.scores is not None, sorted(r.recipe_scores or {})) for k, r in results.items()})
    # epoch 1: a and b (fast), c ends (fast, quick); epoch 2: a and b end (fast, quick)
    assert fits == [3, 1, 2, 2]
    assert scored == [{"a": (True, []), "b": (True, []), "c": (True, ["main", "quick"])},  # "main": the recipe a
                      {"a": (True, ["main", "quick"]), "b": (True, ["main", "quick"])}]  # final epoch is scored with
