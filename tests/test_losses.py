"""Each loss of method.md on inputs whose value can be worked out by hand."""

import math

import pytest
import torch

from gzsl import losses
from gzsl.model import DisentangledVAE, ModelConfig, Posterior


def test_reconstruction_is_summed_l1():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    x_hat = torch.tensor([[0.5, 2.0], [1.0, 1.0]])
    assert losses.reconstruction(x, x_hat).item() == pytest.approx(0.5 + 0 + 1 + 2)


def test_kl_is_zero_at_the_prior_and_known_elsewhere():
    zeros = torch.zeros(3, 4)
    assert losses.kl_to_prior(zeros, zeros).item() == pytest.approx(0.0)
    # KL(N(1, e^1) || N(0, 1)) per dimension = 0.5 * (e + 1 - 1 - 1) = 0.5 * (e - 1)
    mu, logvar = torch.ones(2, 3), torch.ones(2, 3)
    assert losses.kl_to_prior(mu, logvar).item() == pytest.approx(6 * 0.5 * (math.e - 1), rel=1e-6)


def test_vae_loss_weights_the_dispersing_kl_by_alpha():
    x = torch.zeros(1, 2)
    zero, one = torch.zeros(1, 2), torch.ones(1, 2)
    kl_p = losses.kl_to_prior(one, zero).item()  # mu 1, var 1: 0.5 per dim -> 1.0
    base = losses.vae(x, x, zero, zero, one, zero, alpha=0.0).item()
    assert base == pytest.approx(0.0)
    assert losses.vae(x, x, zero, zero, one, zero, alpha=3.0).item() == pytest.approx(3.0 * kl_p)
    assert losses.vae(x, x, zero, zero, one, zero, alpha=3.0, kl_weight=0.5).item() == pytest.approx(1.5 * kl_p)
    # The ablation has no z^p term at all.
    assert losses.vae(x, x + 1, one, zero).item() == pytest.approx(2.0 + kl_p)


def test_wasserstein_is_zero_for_equal_gaussians_and_known_for_two():
    mu, logvar = torch.randn(5, 8), torch.randn(5, 8)
    assert losses.wasserstein(mu, logvar, mu, logvar).item() == pytest.approx(0.0, abs=1e-5)
    # N(0, 1) vs N(3, 4) in 1-d: sqrt((3-0)^2 + (2-1)^2) = sqrt(10), per sample, summed over 2 samples.
    a_mu, a_lv = torch.zeros(2, 1), torch.zeros(2, 1)
    b_mu, b_lv = torch.full((2, 1), 3.0), torch.full((2, 1), math.log(4.0))
    assert losses.wasserstein(a_mu, a_lv, b_mu, b_lv).item() == pytest.approx(2 * math.sqrt(10), rel=1e-6)


def test_distribution_distance_uses_both_parts_when_present():
    z, o = torch.zeros(1, 1), torch.ones(1, 1)
    v = Posterior(z, z, z, z)
    s = Posterior(o, z, 2 * o, z)  # t means differ by 1, p means by 2
    assert losses.distribution_distance(v, s).item() == pytest.approx(3.0, rel=1e-5)
    assert losses.distribution_distance(Posterior(z, z, None, None), Posterior(o, z, None, None)).item() == \
        pytest.approx(1.0, rel=1e-5)


def test_cross_reconstruction_sums_both_directions():
    x, c = torch.ones(2, 3), torch.zeros(2, 2)
    assert losses.cross_reconstruction(x, x * 0, c, c + 0.5).item() == pytest.approx(6 + 2)


def test_shuffling_changes_the_classification_loss_only_through_z_p():
    torch.manual_seed(0)
    clf = torch.nn.Linear(4, 3)
    z_t, z_p, y = torch.randn(6, 4), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    identity, perm = torch.arange(6), torch.tensor([1, 2, 3, 4, 5, 0])
    unshuffled = losses.shuffling_classification(clf, z_t, z_p, y, identity)
    shuffled = losses.shuffling_classification(clf, z_t, z_p, y, perm)
    assert shuffled.item() != pytest.approx(unshuffled.item())
    # With z^p constant across the batch, a permutation has nothing to change.
    const = z_p[:1].expand(6, 4)
    assert losses.shuffling_classification(clf, z_t, const, y, perm).item() == pytest.approx(
        losses.shuffling_classification(clf, z_t, const, y, identity).item(), rel=1e-6)
    # Unshuffled, both terms are the same CE: 2x the plain summed CE.
    ce = torch.nn.functional.cross_entropy(clf(z_t + z_p), y, reduction="sum")
    assert unshuffled.item() == pytest.approx(2 * ce.item(), rel=1e-6)


@pytest.mark.parametrize("disentangle", [True, False])
def test_total_loss_has_the_terms_of_the_variant(disentangle):
    torch.manual_seed(0)
    model = DisentangledVAE(ModelConfig(feature_dim=6, semantic_dim=3, num_train_classes=2, latent_size=2,
                                        visual_encoder_hidden=8, visual_decoder_hidden=8,
                                        semantic_encoder_hidden=8, semantic_decoder_hidden=8,
                                        disentangle=disentangle))
    x, c, y = torch.rand(4, 6), torch.rand(4, 3), torch.tensor([0, 1, 0, 1])
    out = model(x, c)
    w = losses.Weights(alpha=1, gamma=2, lam=0.5, beta=3, kl=1, cross=1, distance=1)
    perm = torch.tensor([2, 0, 3, 1])
    terms = losses.total(model, out, x, c, y, perm, w)
    assert ("sc" in terms) == disentangle
    expected = terms["vae"] + 0.5 * (terms["cr"] + 3 * terms["dd"]) + (2 * terms["sc"] if disentangle else 0)
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    # Warm-ups at zero remove the alignment terms.
    cold = losses.total(model, out, x, c, y, perm, w._replace(cross=0, distance=0))
    assert cold["total"].item() == pytest.approx((terms["total"] - 0.5 * (terms["cr"] + 3 * terms["dd"])).item(),
                                                 rel=1e-5)
