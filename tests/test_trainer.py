"""Training one model through the public generator: repeatability, reporting, divergence,
the schedule. Whether the model learns is guarded in test_science.py; the method's claim
(disentangling beats its CADA-VAE ablation) is measured by benchmarks/preset_science.py."""

import numpy as np
import pytest
import torch

from gzsl.datasets import load
from gzsl.evaluation import ClassifierConfig, _cycle_per_class, fit_classifier, harmonic_mean, per_class_accuracy
from gzsl.datasets import default_hidden
from gzsl.trainer import TrainConfig, ramp, train, weights

# The fast final classifier: these tests check the loop's mechanics; the recipe's H is the guard's (test_science).
SMALL = TrainConfig(hidden=default_hidden("synth-small"), lr=1e-3, classifier="fast")


@pytest.fixture(scope="module")
def small_val():
    return load("synth-small", "val")


def run(data, **overrides):
    return list(train(data, TrainConfig(**{**SMALL.__dict__, **overrides})))


def test_same_seed_same_result_other_seed_other_result(small_val):
    a = run(small_val, epochs=3, eval_every=0, seed=5)
    b = run(small_val, epochs=3, eval_every=0, seed=5)
    c = run(small_val, epochs=3, eval_every=0, seed=6)
    assert [r.losses for r in a] == [r.losses for r in b]
    assert a[-1].scores == b[-1].scores
    assert a[-1].losses != c[-1].losses


def test_evaluating_does_not_change_the_training(small_val):
    every = run(small_val, epochs=3, eval_every=1, seed=2)
    once = run(small_val, epochs=3, eval_every=0, seed=2)
    assert [r.losses for r in every] == [r.losses for r in once]
    assert every[-1].scores == once[-1].scores


def test_one_result_per_epoch_scored_every_n_and_after_the_last(small_val):
    results = run(small_val, epochs=5, eval_every=2)
    assert [r.epoch for r in results] == [1, 2, 3, 4, 5]
    assert [r.scores is not None for r in results] == [False, True, False, True, True]
    assert [r.status for r in results] == ["running"] * 4 + ["completed"]
    assert set(results[0].losses) == {"vae", "sc", "cr", "dd", "total"}
    assert all(r.seconds > 0 for r in results)
    u, s, h = results[-1].scores
    assert 0 <= u <= 100 and 0 <= s <= 100 and h == pytest.approx(harmonic_mean(u, s))


def test_eval_at_scores_only_its_epochs_of_the_grid_and_the_last(small_val):
    results = run(small_val, epochs=6, eval_every=2, eval_at=(3, 4), seed=2)
    assert [r.epoch for r in results if r.scores is not None] == [4, 6]  # 3 is off the grid of 2
    assert sum(r.eval_seconds > 0 for r in results) == 2
    every = run(small_val, epochs=6, eval_every=2, seed=2)
    assert results[3].scores == every[3].scores and results[-1].scores == every[-1].scores


def test_a_run_scored_at_an_earlier_epoch_stops_there_on_the_full_schedule(small_val):
    # The refit's validation-chosen stopping: score_epoch 3 of a 6-epoch schedule trains the first 3
    # epochs of the 6-epoch run (its warm-ups, not a 3-epoch run's) and scores epoch 3.
    full = run(small_val, epochs=6, eval_every=0, seed=1)
    stopped = run(small_val, epochs=6, eval_every=0, seed=1, score_epoch=3)
    short = run(small_val, epochs=3, eval_every=0, seed=1)
    assert [r.epoch for r in stopped] == [1, 2, 3] and [r.status for r in stopped] == ["running"] * 2 + ["completed"]
    assert [r.losses for r in stopped] == [r.losses for r in full[:3]]
    assert stopped[-1].losses != short[-1].losses  # a 3-epoch schedule warms up faster
    assert stopped[-1].scores is not None and [r.scores for r in stopped[:2]] == [None, None]


def test_the_classifier_recipe_takes_the_datasets_epochs():
    from gzsl.trainer import classifier_config

    recipe = {name: classifier_config(SMALL.__class__(classifier="cada"), name).epochs
              for name in ("CUB", "SUN", "AWA1", "AWA2", "synth-small", "synth-cub")}
    assert recipe == {"CUB": 23, "SUN": 21, "AWA1": 33, "AWA2": 29, "synth-small": 23, "synth-cub": 23}
    assert classifier_config(SMALL, "AWA1").epochs == 3  # the fast classifier is the same everywhere


def test_recipes_score_the_final_model_on_the_same_latents_without_changing_scores(small_val):
    other = ClassifierConfig(epochs=1, batch_size=64, lr=1e-3)  # cheaper than CADA_RECIPE, same mechanism
    cfg = TrainConfig(**{**SMALL.__dict__, "epochs": 3, "eval_every": 2, "seed": 4})
    plain = list(train(small_val, cfg))
    with_recipes = list(train(small_val, cfg, recipes={"other": other}))
    assert [r.recipe_scores for r in with_recipes[:-1]] == [None, None] and plain[-1].recipe_scores is None
    by_recipe = with_recipes[-1].recipe_scores
    assert list(by_recipe) == ["main", "other"]
    # config.classifier's scores are exactly those of a run without recipes: the same model, latents, classifier.
    assert by_recipe["main"] == with_recipes[-1].scores == plain[-1].scores
    assert [r.scores for r in with_recipes] == [r.scores for r in plain]
    u, s, h = by_recipe["other"]
    assert u != by_recipe["main"].U and 0 < u <= 100 and 0 <= s <= 100 and h == pytest.approx(harmonic_mean(u, s))
    with pytest.raises(ValueError, match="'main' is taken"):
        next(train(small_val, cfg, recipes={"main": other}))


def test_a_non_finite_loss_ends_the_run_as_diverged(small_val):
    results = run(small_val, epochs=20, eval_every=0, lr=1e6)
    assert results[-1].status == "diverged"
    assert len(results) < 20
    assert results[-1].scores.H == 0.0
    assert all(r.status == "running" for r in results[:-1])


def test_warmups_follow_the_method():
    assert ramp(0.0, 0.21, 0.75) == 0.0 and ramp(0.48, 0.21, 0.75) == pytest.approx(0.5)
    assert ramp(0.9, 0.21, 0.75) == 1.0
    w = weights(TrainConfig(epochs=100), 14)
    assert w.kl == pytest.approx(0.25 * 14 / 93) and w.cross == 0.0 and w.distance == pytest.approx(0.5)
    assert weights(TrainConfig(epochs=100), 99).kl == 0.25  # CADA-VAE's KL factor ends at 0.25, not 1
    assert weights(TrainConfig(epochs=100, kl_weight=1.0), 99).kl == 1.0


def test_per_class_accuracy_averages_over_classes_not_images():
    y = torch.tensor([0, 0, 0, 0, 1])
    pred = torch.tensor([0, 0, 0, 0, 0])  # class 0 all right, class 1 all wrong
    assert per_class_accuracy(pred, y, num_classes=3) == pytest.approx(50.0)
    assert harmonic_mean(50.0, 100.0) == pytest.approx(200 / 3)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_classifier_samples_repeat_small_classes_and_subsample_big_ones():
    labels = np.array([3] * 5 + [7] * 500)
    to_local = np.full(10, -1)
    to_local[[3, 7]] = [0, 1]
    idx, y = _cycle_per_class(labels, to_local, 200, np.random.default_rng(0))
    assert np.bincount(y).tolist() == [200, 200]
    small = idx[y == 0]
    assert set(small) == set(range(5)) and np.bincount(small).tolist() == [40] * 5
    big = idx[y == 1]
    assert len(set(big)) == 200 and big.min() >= 5


def test_classifier_fit_takes_the_steps_of_cross_entropy_with_adam():
    # fit_classifier writes the softmax gradient out; it must move exactly as autograd would.
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(300, 8, generator=g), torch.randint(0, 5, (300,), generator=g)
    config = ClassifierConfig(epochs=3, batch_size=64, lr=5e-2)
    torch.manual_seed(1)
    fitted = fit_classifier(z, y, 5, config)

    torch.manual_seed(1)
    ref = torch.nn.Linear(8, 5)
    start = ref.weight.detach().clone()
    opt = torch.optim.Adam(ref.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
    for _ in range(config.epochs):
        perm = torch.randperm(300)
        for i in range(0, 300, 64):
            loss = torch.nn.functional.cross_entropy(ref(z[perm][i:i + 64]), y[perm][i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert (ref.weight - start).abs().max() > 0.05  # it did move
    assert torch.allclose(fitted.weight, ref.weight, atol=1e-5)
    assert torch.allclose(fitted.bias, ref.bias, atol=1e-5)


def test_an_epoch_of_the_val_protocol_takes_the_steps_of_its_refit(small_val):
    """The val protocol trains on fewer images than the refit on trainval (the training classes less
    a holdout): its epochs draw trainval's image count, each pass a permutation, so a configuration
    is searched with the updates its refit will take. On trainval an epoch is one pass, as before."""
    from gzsl.trainer import Pack

    test = load("synth-small", "test")
    assert small_val.epoch_images == test.epoch_images == len(test.train) > len(small_val.train)
    pack = Pack(small_val, SMALL)
    n, m = len(small_val.train), small_val.epoch_images
    order = pack.epoch_order(pack.epoch_images)
    assert len(order) == m and m < 2 * n
    assert sorted(order[:n].tolist()) == list(range(n))  # the first pass: every image once
    assert len(set(order[n:].tolist())) == m - n  # the second, cut short: no image twice
    counted = []
    pack.step = lambda x, *args: counted.append(len(x)) or {"total": torch.zeros(1)}  # counts the draws
    pack.join("a", SMALL)
    pack.train_epoch()
    assert sum(counted) == m and len(counted) == -(-m // SMALL.batch_size)
    assert Pack(test, SMALL).epoch_images == len(test.train)
