"""The Disentangled-VAE (method.md, "Model"): one VAE per modality, each latent split into
a category-distilling factor z^t and a category-dispersing factor z^p.

`disentangle=False` is the CADA-VAE ablation: no z^p, no shuffling classifier.

Every tensor carries a leading member axis: a model holds K members (gzsl.layers), each with
its own weights, latent size and sampling, and a model built from one ModelConfig is K = 1.
Members narrower than the model's latent width are zero-padded and masked: their extra
dimensions hold exactly 0 (zero weights whose gradient is exactly 0), so each member computes
what its own model would, up to the order of floating-point sums.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gzsl.layers import MemberLinear

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


# sigma = exp(scale * logvar): CADA-VAE's code uses exp(logvar) (method.md's default), the textbook exp(logvar / 2).
SIGMA_SCALE = {"cada": 1.0, "textbook": 0.5}
SAMPLING = tuple(SIGMA_SCALE)


def noise(sampling: str, rows: tuple[int, ...], latent_size: int, generator: torch.Generator | None = None,
          device=None) -> torch.Tensor:
    """eps ~ N(0, 1) for `rows` latents of one member: (*rows, 1) with CADA-VAE's sampling (one draw
    per row, shared by its dimensions), (*rows, latent_size) with the textbook's."""
    return torch.randn((*rows, 1 if sampling == "cada" else latent_size), generator=generator, device=device)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor, sigma_scale) -> torch.Tensor:
    """z = mu + sigma * eps, sigma = exp(sigma_scale * logvar) (SIGMA_SCALE; eps from `noise`)."""
    return mu + torch.exp(sigma_scale * logvar) * eps


def sample(mu: torch.Tensor, logvar: torch.Tensor, sampling: str) -> torch.Tensor:
    """z for latents (..., L) of one member, its noise drawn from torch's global stream."""
    eps = noise(sampling, mu.shape[:-1], mu.shape[-1], device=mu.device)
    return reparameterize(mu, logvar, eps, SIGMA_SCALE[sampling])


class Posterior(NamedTuple):
    """Gaussian posteriors of one modality, (K, B, L) each; mu_p/logvar_p are None without disentangling."""

    mu_t: torch.Tensor
    logvar_t: torch.Tensor
    mu_p: torch.Tensor | None
    logvar_p: torch.Tensor | None


class Encoder(nn.Module):
    """Linear -> ReLU -> one Linear for all heads (mu^t, logvar^t[, mu^p, logvar^p])."""

    def __init__(self, in_dim: int, hidden: int, latent_size: int, disentangle: bool):
        super().__init__()
        self.heads_count = 4 if disentangle else 2
        self.hidden = MemberLinear(in_dim, hidden)
        self.heads = MemberLinear(hidden, self.heads_count * latent_size, latent_blocks=self.heads_count)

    def forward(self, x: torch.Tensor) -> Posterior:
        """x (K, B, in)."""
        parts = self.heads(F.relu(self.hidden(x))).chunk(self.heads_count, dim=2)
        return Posterior(*parts) if len(parts) == 4 else Posterior(*parts, None, None)

    def encode_t(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu^t, logvar^t) only, (K, B, L) each: what the final classifier needs."""
        h = F.relu(self.hidden(x))
        width = self.heads.weight.shape[2] // self.heads_count
        w, b = self.heads.weight[:, :, :2 * width], self.heads.bias[:, :, :2 * width]
        return torch.baddbmm(b, h, w).chunk(2, dim=2)


class Decoder(nn.Module):
    """Linear -> ReLU -> Linear, from the sum z^t + z^p."""

    def __init__(self, latent_size: int, hidden: int, out_dim: int):
        super().__init__()
        self.hidden = MemberLinear(latent_size, hidden, latent_in=True)
        self.out = MemberLinear(hidden, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(z)))


class DisentangledVAE(nn.Module):
    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        """One member of `config`, initialised from `generator` (torch's global stream if None)."""
        super().__init__()
        self.config = config  # the widths all members share; latent_size is the model's latent width
        self.members = [config]  # each member's own configuration
        c, L = config, config.latent_size
        self.encoder_v = Encoder(c.feature_dim, c.visual_encoder_hidden, L, c.disentangle)
        self.encoder_s = Encoder(c.semantic_dim, c.semantic_encoder_hidden, L, c.disentangle)
        self.decoder_v = Decoder(L, c.visual_decoder_hidden, c.feature_dim)
        self.decoder_s = Decoder(L, c.semantic_decoder_hidden, c.semantic_dim)
        if c.disentangle:
            self.classifier_v = MemberLinear(L, c.num_train_classes, latent_in=True)
            self.classifier_s = MemberLinear(L, c.num_train_classes, latent_in=True)
        # Per member, (K, 1, ·) to broadcast over (K, B, L): 1 on its latent dimensions, its sigma's scale.
        self.register_buffer("latent_mask", torch.ones(1, 1, L))
        self.register_buffer("sigma_scale", torch.full((1, 1, 1), SIGMA_SCALE[c.sampling]))
        for layer in self.layers():
            layer.reset_parameters(gain=0.5, generator=generator)  # CADA-VAE's gain

    @property
    def noise_sites(self) -> int:
        """Latents sampled per step: z^t and z^p of each modality (z^t only in the ablation)."""
        return 4 if self.config.disentangle else 2

    def forward(self, x: torch.Tensor, c: torch.Tensor, eps: torch.Tensor) -> "Forward":
        """Encode both modalities, sample, and decode each latent with both decoders.
        x: (B, D1) images and c: (B, D2) the semantics of their classes, the same for every member;
        eps: (K, noise_sites, B, 1 or L), each member's noise for z^t_v, z^t_s[, z^p_v, z^p_s]."""
        K = len(self.members)
        v, s = self.encoder_v(x.expand(K, *x.shape)), self.encoder_s(c.expand(K, *c.shape))
        eps = eps.unbind(1)
        z_t_v, z_t_s = self.sample(v.mu_t, v.logvar_t, eps[0]), self.sample(s.mu_t, s.logvar_t, eps[1])
        if self.config.disentangle:
            z_p_v, z_p_s = self.sample(v.mu_p, v.logvar_p, eps[2]), self.sample(s.mu_p, s.logvar_p, eps[3])
            z_v, z_s = z_t_v + z_p_v, z_t_s + z_p_s  # decoders take the sum z^t + z^p
        else:
            z_p_v = z_p_s = None
            z_v, z_s = z_t_v, z_t_s
        # One matmul per decoder for reconstruction and cross-reconstruction: rows [own; other].
        x_hat, x_from_s = self.decoder_v(torch.cat([z_v, z_s], 1)).chunk(2, 1)
        c_hat, c_from_v = self.decoder_s(torch.cat([z_s, z_v], 1)).chunk(2, 1)
        return Forward(v, s, z_t_v, z_p_v, z_t_s, z_p_s, x_hat, x_from_s, c_hat, c_from_v)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """reparameterize with each member's sampling, masked to each member's latent size."""
        return reparameterize(mu, logvar, eps, self.sigma_scale) * self.latent_mask

    # ---------------------------------------------------------------- the member axis

    def layers(self) -> list[MemberLinear]:
        return [m for m in self.modules() if isinstance(m, MemberLinear)]

    def widen(self, width: int) -> "DisentangledVAE":
        """Pad every member's latent dimensions to `width` (in place)."""
        if width < self.config.latent_size:
            raise ValueError(f"latent width {width} is narrower than the model's {self.config.latent_size}")
        for layer in self.layers():
            layer.assign(*layer.resized(width))
        self.latent_mask = F.pad(self.latent_mask, (0, width - self.config.latent_size))
        self.config = replace(self.config, latent_size=width)
        return self

    def extend(self, other: "DisentangledVAE") -> "DisentangledVAE":
        """Append other's members after these (in place): same widths, latent width included."""
        if replace(other.config, sampling="") != replace(self.config, sampling=""):
            raise ValueError(f"members of {other.config} do not fit a model of {self.config}")
        # Every new tensor first, then assigned: an out-of-memory on the way leaves this model whole.
        grown = [(torch.cat([mine.weight.detach(), theirs.weight.detach()]),
                  torch.cat([mine.bias.detach(), theirs.bias.detach()])) for mine, theirs in zip(self.layers(), other.layers())]
        mask, scale = torch.cat([self.latent_mask, other.latent_mask]), torch.cat([self.sigma_scale, other.sigma_scale])
        for mine, (weight, bias) in zip(self.layers(), grown):
            mine.assign(weight, bias)
        self.latent_mask, self.sigma_scale = mask, scale
        self.members = self.members + other.members
        return self

    def select(self, keep: list[int]) -> "DisentangledVAE":
        """Keep only the members `keep`, in that order (in place)."""
        width = self.config.latent_size
        for layer in self.layers():
            layer.assign(*layer.resized(width, keep))
        self.latent_mask, self.sigma_scale = self.latent_mask[keep], self.sigma_scale[keep]
        self.members = [self.members[i] for i in keep]
        return self

    def member(self, index: int) -> "DisentangledVAE":
        """A copy of one member as a model of its own (K = 1, its own latent size)."""
        config = self.members[index]
        with torch.device("meta"):  # no initialisation: every tensor is copied below
            one = DisentangledVAE(config)
        one = one.to_empty(device=self.latent_mask.device)
        for mine, its in zip(self.layers(), one.layers()):
            its.assign(*mine.resized(config.latent_size, [index]))
        one.latent_mask = self.latent_mask[[index], :, :config.latent_size]
        one.sigma_scale = self.sigma_scale[[index]]
        return one


class Forward(NamedTuple):
    """The model's outputs, (K, B, ·) each."""

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
