"""Each loss of method.md on inputs whose value can be worked out by hand. Inputs carry the
member axis first, (K, B, ·); every loss returns one value per member, (K,)."""

import math

import pytest
import torch

from gzsl import losses
from gzsl.layers import MemberLinear
from gzsl.model import DisentangledVAE, ModelConfig, Posterior


def test_reconstruction_is_summed_l1():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]])  # (B, D): shared by the members
    x_hat = torch.tensor([[[0.5, 2.0], [1.0, 1.0]], [[1.0, 2.0], [0.0, -4.0]]])  # (K=2, B, D)
    assert losses.reconstruction(x, x_hat).tolist() == pytest.approx([0.5 + 0 + 1 + 2, 3.0])


def test_kl_is_zero_at_the_prior_and_known_elsewhere():
    zeros = torch.zeros(1, 3, 4)
    assert losses.kl_to_prior(zeros, zeros).item() == pytest.approx(0.0)
    # KL(N(1, e^1) || N(0, 1)) per dimension = 0.5 * (e + 1 - 1 - 1) = 0.5 * (e - 1); member 1 sits at the prior
    mu, logvar = torch.stack([torch.ones(2, 3), torch.zeros(2, 3)]), torch.stack([torch.ones(2, 3), torch.zeros(2, 3)])
    assert losses.kl_to_prior(mu, logvar).tolist() == pytest.approx([6 * 0.5 * (math.e - 1), 0.0], rel=1e-6)


def test_vae_loss_weights_the_dispersing_kl_by_alpha():
    x = torch.zeros(1, 2)
    zero, one = torch.zeros(1, 1, 2), torch.ones(1, 1, 2)
    kl_p = losses.kl_to_prior(one, zero).item()  # mu 1, var 1: 0.5 per dim -> 1.0
    base = losses.vae(x, x, zero, zero, one, zero, alpha=0.0).item()
    assert base == pytest.approx(0.0)
    assert losses.vae(x, x, zero, zero, one, zero, alpha=3.0).item() == pytest.approx(3.0 * kl_p)
    assert losses.vae(x, x, zero, zero, one, zero, alpha=3.0, kl_weight=0.5).item() == pytest.approx(1.5 * kl_p)
    # The ablation has no z^p term at all.
    assert losses.vae(x, x[None] + 1, one, zero).item() == pytest.approx(2.0 + kl_p)
    # Per-member weights: (K,) tensors weigh each member's own KL.
    two = lambda t: torch.cat([t, t])  # noqa: E731
    per = losses.vae(x, two(x[None]), two(zero), two(zero), two(one), two(zero), alpha=torch.tensor([1.0, 3.0]),
                     kl_weight=torch.tensor([1.0, 0.5]))
    assert per.tolist() == pytest.approx([kl_p, 1.5 * kl_p])


def test_wasserstein_is_zero_for_equal_gaussians_and_known_for_two():
    mu, logvar = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    assert losses.wasserstein(mu, logvar, mu, logvar).item() == pytest.approx(0.0, abs=1e-5)
    # N(0, 1) vs N(3, 4) in 1-d: sqrt((3-0)^2 + (2-1)^2) = sqrt(10), per sample, summed over 2 samples;
    # a second member whose posteriors coincide: 0.
    a_mu, a_lv = torch.zeros(2, 2, 1), torch.zeros(2, 2, 1)
    b_mu = torch.stack([torch.full((2, 1), 3.0), torch.zeros(2, 1)])
    b_lv = torch.stack([torch.full((2, 1), math.log(4.0)), torch.zeros(2, 1)])
    assert losses.wasserstein(a_mu, a_lv, b_mu, b_lv).tolist() == pytest.approx([2 * math.sqrt(10), 0.0], abs=1e-5)


def test_distribution_distance_uses_both_parts_when_present():
    z, o = torch.zeros(1, 1, 1), torch.ones(1, 1, 1)
    v = Posterior(z, z, z, z)
    s = Posterior(o, z, 2 * o, z)  # t means differ by 1, p means by 2
    assert losses.distribution_distance(v, s).item() == pytest.approx(3.0, rel=1e-5)
    assert losses.distribution_distance(Posterior(z, z, None, None), Posterior(o, z, None, None)).item() == \
        pytest.approx(1.0, rel=1e-5)


def test_cross_reconstruction_sums_both_directions():
    x, c = torch.ones(2, 3), torch.zeros(2, 2)
    assert losses.cross_reconstruction(x, x[None] * 0, c, c[None] + 0.5).item() == pytest.approx(6 + 2)


def test_shuffling_changes_the_classification_loss_only_through_z_p():
    torch.manual_seed(0)
    clf = MemberLinear(4, 3)
    clf.reset_parameters(gain=1.0)
    z_t, z_p, y = torch.randn(1, 6, 4), torch.randn(1, 6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    identity, perm = torch.arange(6), torch.tensor([1, 2, 3, 4, 5, 0])
    unshuffled = losses.shuffling_classification(clf, z_t, z_p, y, identity)
    shuffled = losses.shuffling_classification(clf, z_t, z_p, y, perm)
    assert shuffled.item() != pytest.approx(unshuffled.item())
    # With z^p constant across the batch, a permutation has nothing to change.
    const = z_p[:, :1].expand(1, 6, 4)
    assert losses.shuffling_classification(clf, z_t, const, y, perm).item() == pytest.approx(
        losses.shuffling_classification(clf, z_t, const, y, identity).item(), rel=1e-6)
    # Unshuffled, both terms are the same CE: 2x the plain summed CE.
    ce = torch.nn.functional.cross_entropy(clf(z_t + z_p)[0], y, reduction="sum")
    assert unshuffled.item() == pytest.approx(2 * ce.item(), rel=1e-6)


def test_shuffling_classification_of_two_members_is_each_members_own():
    torch.manual_seed(1)
    clfs = [MemberLinear(4, 3) for _ in range(2)]
    for clf in clfs:
        clf.reset_parameters(gain=1.0)
    both = MemberLinear(4, 3)
    both.assign(torch.cat([c.weight.detach() for c in clfs]), torch.cat([c.bias.detach() for c in clfs]))
    z_t, z_p, y = torch.randn(2, 6, 4), torch.randn(2, 6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    alone = [losses.shuffling_classification(clfs[k], z_t[k:k + 1], z_p[k:k + 1], y, perm).item() for k in range(2)]
    assert alone[0] != pytest.approx(alone[1])
    assert losses.shuffling_classification(both, z_t, z_p, y, perm).tolist() == pytest.approx(alone, rel=1e-6)


@pytest.mark.parametrize("disentangle", [True, False])
def test_total_loss_has_the_terms_of_the_variant(disentangle):
    torch.manual_seed(0)
    model = DisentangledVAE(ModelConfig(feature_dim=6, semantic_dim=3, num_train_classes=2, latent_size=2,
                                        visual_encoder_hidden=8, visual_decoder_hidden=8,
                                        semantic_encoder_hidden=8, semantic_decoder_hidden=8,
                                        disentangle=disentangle))
    x, c, y = torch.rand(4, 6), torch.rand(4, 3), torch.tensor([0, 1, 0, 1])
    out = model(x, c, torch.randn(1, model.noise_sites, 4, 1))
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
