"""The Disentangled-VAE (method.md, "Model"): one VAE per modality, each latent split into
a category-distilling factor z^t and a category-dispersing factor z^p.

`disentangle=False` is the CADA-VAE ablation: no z^p, no shuffling classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn


# CADA-VAE's hidden widths: visual encoder, visual decoder, semantic encoder, semantic decoder.
CADA_HIDDEN = (1560, 1660, 1450, 665)


@dataclass(frozen=True)
class ModelConfig:
    feature_dim: int  # D1, visual features
    semantic_dim: int  # D2, class attributes
    num_train_classes: int  # outputs of the shuffling classifiers F_v, F_s
    latent_size: int = 64
    visual_encoder_hidden: int = CADA_HIDDEN[0]
    visual_decoder_hidden: int = CADA_HIDDEN[1]
    semantic_encoder_hidden: int = CADA_HIDDEN[2]
    semantic_decoder_hidden: int = CADA_HIDDEN[3]
    disentangle: bool = True  # False: CADA-VAE ablation (z^t only)
    sampling: str = "cada"  # reparameterization: CADA-VAE's "cada" or "textbook" (see reparameterize)


class Posterior(NamedTuple):
    """Gaussian posteriors of one modality; mu_p/logvar_p are None without disentangling."""

    mu_t: torch.Tensor
    logvar_t: torch.Tensor
    mu_p: torch.Tensor | None
    logvar_p: torch.Tensor | None


SAMPLING = ("cada", "textbook")


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, sampling: str = "cada") -> torch.Tensor:
    """z = mu + sigma * eps.
    cada (method.md's default, CADA-VAE's code): sigma = exp(logvar), one eps per row, shared by
    all dimensions. textbook: sigma = exp(0.5 * logvar), one eps per dimension."""
    if sampling == "cada":
        return mu + torch.exp(logvar) * torch.randn_like(mu[:, :1])
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _init(module: nn.Module) -> None:
    # CADA-VAE's initialisation: Xavier-uniform with gain 0.5, zero bias.
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight, gain=0.5)
        nn.init.zeros_(module.bias)


class Encoder(nn.Module):
    """Linear -> ReLU -> one Linear for all heads (mu^t, logvar^t[, mu^p, logvar^p])."""

    def __init__(self, in_dim: int, hidden: int, latent_size: int, disentangle: bool):
        super().__init__()
        self.latent_size = latent_size
        self.hidden = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.heads = nn.Linear(hidden, (4 if disentangle else 2) * latent_size)

    def forward(self, x: torch.Tensor) -> Posterior:
        parts = self.heads(self.hidden(x)).split(self.latent_size, dim=1)
        return Posterior(*parts) if len(parts) == 4 else Posterior(*parts, None, None)

    def encode_t(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu^t, logvar^t) only: what the final classifier needs."""
        h = self.hidden(x)
        w, b = self.heads.weight[: 2 * self.latent_size], self.heads.bias[: 2 * self.latent_size]
        return torch.nn.functional.linear(h, w, b).split(self.latent_size, dim=1)


def decoder(latent_size: int, hidden: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(latent_size, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class DisentangledVAE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c, L = config, config.latent_size
        self.encoder_v = Encoder(c.feature_dim, c.visual_encoder_hidden, L, c.disentangle)
        self.encoder_s = Encoder(c.semantic_dim, c.semantic_encoder_hidden, L, c.disentangle)
        self.decoder_v = decoder(L, c.visual_decoder_hidden, c.feature_dim)
        self.decoder_s = decoder(L, c.semantic_decoder_hidden, c.semantic_dim)
        if c.disentangle:
            self.classifier_v = nn.Linear(L, c.num_train_classes)
            self.classifier_s = nn.Linear(L, c.num_train_classes)
        self.apply(_init)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> "Forward":
        """Encode both modalities, sample, and decode each latent with both decoders.
        x: (B, D1) images, c: (B, D2) the semantics of their classes."""
        v, s = self.encoder_v(x), self.encoder_s(c)
        sample = lambda mu, logvar: reparameterize(mu, logvar, self.config.sampling)  # noqa: E731
        z_t_v, z_t_s = sample(v.mu_t, v.logvar_t), sample(s.mu_t, s.logvar_t)
        if self.config.disentangle:
            z_p_v, z_p_s = sample(v.mu_p, v.logvar_p), sample(s.mu_p, s.logvar_p)
            z_v, z_s = z_t_v + z_p_v, z_t_s + z_p_s  # decoders take the sum z^t + z^p
        else:
            z_p_v = z_p_s = None
            z_v, z_s = z_t_v, z_t_s
        # One matmul per decoder for reconstruction and cross-reconstruction: rows [own; other].
        x_hat, x_from_s = self.decoder_v(torch.cat([z_v, z_s])).chunk(2)
        c_hat, c_from_v = self.decoder_s(torch.cat([z_s, z_v])).chunk(2)
        return Forward(v, s, z_t_v, z_p_v, z_t_s, z_p_s, x_hat, x_from_s, c_hat, c_from_v)


class Forward(NamedTuple):
    v: Posterior
    s: Posterior
    z_t_v: torch.Tensor
    z_p_v: torch.Tensor | None
    z_t_s: torch.Tensor
    z_p_s: torch.Tensor | None
    x_hat: torch.Tensor  # D_v(z_v)
    x_from_s: torch.Tensor  # D_v(z_s), cross-reconstruction
    c_hat: torch.Tensor  # D_s(z_s)
    c_from_v: torch.Tensor  # D_s(z_v), cross-reconstruction
