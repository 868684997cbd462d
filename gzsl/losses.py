"""The four losses of the Disentangled-VAE (method.md, "Losses").

Each is a pure function of tensors with a leading member axis, (K, B, ·), and returns one
per-batch sum per member, shape (K,): it reduces over every axis but the member axis. Sums,
as CADA-VAE's L1 and KL terms use reduction='sum', so the weights of method.md keep their
meaning at any batch size. Inputs shared by all members (x, c: (B, ·)) broadcast.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


def per_member(t: torch.Tensor) -> torch.Tensor:
    """Sum over every axis but the first: (K, ...) -> (K,)."""
    return t.sum(dim=tuple(range(1, t.dim())))


def reconstruction(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Summed L1 distance (CADA-VAE's reconstruction criterion)."""
    return per_member((x - x_hat).abs())


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed.
    Kingma & Welling 2014, Appendix B: -0.5 * sum(1 + log s^2 - mu^2 - s^2)."""
    return -0.5 * per_member(1 + logvar - mu.pow(2) - logvar.exp())


def vae(x, x_hat, mu_t, logvar_t, mu_p=None, logvar_p=None, alpha=1.0, kl_weight=1.0):
    """L^m_VAE = recon + KL(z^t) + alpha * KL(z^p) for one modality; kl_weight is the warm-up.
    Without z^p (the CADA-VAE ablation) the last term is absent. alpha, kl_weight: floats or (K,)."""
    kl = kl_to_prior(mu_t, logvar_t)
    if mu_p is not None:
        kl = kl + alpha * kl_to_prior(mu_p, logvar_p)
    return reconstruction(x, x_hat) + kl_weight * kl


def shuffling_classification(classifier, z_t, z_p, y, perm) -> torch.Tensor:
    """L_SC for one modality: CE(F(z^t + z^p), y) + CE(F(z^t + z^p[perm]), y), summed over the batch.
    The classifier must succeed whatever z^p it is handed, which pushes class information into z^t.
    z_t, z_p (K, B, L); y (B,) labels shared by the members; perm shuffles the batch."""
    logits = classifier(torch.cat([z_t + z_p, z_t + z_p[:, perm]], 1))  # (K, 2B, classes)
    K, rows = logits.shape[:2]
    ce = F.cross_entropy(logits.reshape(K * rows, -1), y.repeat(2 * K), reduction="none")
    return ce.view(K, rows).sum(1)


def wasserstein(mu_a, logvar_a, mu_b, logvar_b) -> torch.Tensor:
    """2-Wasserstein distance between diagonal Gaussians, per sample, summed over the batch:
    sqrt(|mu_a - mu_b|^2 + |sigma_a - sigma_b|^2) (Givens & Shortt 1984; CADA-VAE's distance)."""
    d2 = (mu_a - mu_b).pow(2).sum(-1) + ((0.5 * logvar_a).exp() - (0.5 * logvar_b).exp()).pow(2).sum(-1)
    # The tiny floor keeps the gradient of sqrt finite when both posteriors coincide.
    return per_member((d2 + 1e-12).sqrt())


def distribution_distance(v, s) -> torch.Tensor:
    """L_DD: Wasserstein between the visual and semantic posteriors, on z^t and (when present) z^p."""
    dd = wasserstein(v.mu_t, v.logvar_t, s.mu_t, s.logvar_t)
    if v.mu_p is not None:
        dd = dd + wasserstein(v.mu_p, v.logvar_p, s.mu_p, s.logvar_p)
    return dd


def cross_reconstruction(x, x_from_s, c, c_from_v) -> torch.Tensor:
    """L_CR = |x - D_v(z_s)|_1 + |c - D_s(z_v)|_1."""
    return reconstruction(x, x_from_s) + reconstruction(c, c_from_v)


class Weights(NamedTuple):
    """The weights of one step: the searched ones and the warm-up factors of this epoch, floats or
    one value per member ((K,) tensors)."""

    alpha: float | torch.Tensor
    gamma: float | torch.Tensor
    lam: float | torch.Tensor
    beta: float | torch.Tensor
    kl: float | torch.Tensor  # KL weight of this epoch: warm-up 0 -> kl_weight (CADA-VAE: 0.25)
    cross: float | torch.Tensor  # cross-reconstruction warm-up, 0 -> 1
    distance: float | torch.Tensor  # distance warm-up, 0 -> 1


def total(model, out, x, c, y, perm, w: Weights) -> dict[str, torch.Tensor]:
    """L = L_VAE + gamma * L_SC + lambda * (L_CR + beta * L_DD), with warm-ups applied, per member.
    `out` is the model's Forward for images x (B, D1), semantics c (B, D2), labels y (B,)
    numbered among the training classes; `perm` shuffles z^p inside the batch."""
    v, s = out.v, out.s
    l_vae = (vae(x, out.x_hat, *v, alpha=w.alpha, kl_weight=w.kl)
             + vae(c, out.c_hat, *s, alpha=w.alpha, kl_weight=w.kl))
    l_cr = cross_reconstruction(x, out.x_from_s, c, out.c_from_v)
    l_dd = distribution_distance(v, s)
    loss = l_vae + w.lam * (w.cross * l_cr + w.beta * w.distance * l_dd)
    terms = {"vae": l_vae, "cr": l_cr, "dd": l_dd}
    if out.z_p_v is not None:
        l_sc = (shuffling_classification(model.classifier_v, out.z_t_v, out.z_p_v, y, perm)
                + shuffling_classification(model.classifier_s, out.z_t_s, out.z_p_s, y, perm))
        loss = loss + w.gamma * l_sc
        terms["sc"] = l_sc
    terms["total"] = loss
    return terms
