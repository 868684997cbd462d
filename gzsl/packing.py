"""Packed members: K configurations of the Disentangled-VAE as one fused model.

Every layer of the solo model (gzsl.model) becomes one stacked weight (K, in, out), so one
`baddbmm` serves all members: the forward and backward passes dispatch the same operators
for K members as for one.

Members differ in alpha, gamma, lam, KL weight, warm-up progress, learning rate, sampling and
latent size. A latent narrower than the pack's `max_latent` is padded: its extra encoder
outputs are held at exactly 0 (zero weights that receive zero gradient), which makes their
KL and distance terms exactly 0, and the sampled z is masked there, so the decoders and the
shuffling classifiers see the narrower model's inputs. Each member is the solo model it was
copied from, up to the order of floating-point sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gzsl.model import DisentangledVAE


@dataclass(frozen=True)
class PackShape:
    """What members of one pack must share: the data's widths and the study's fixed settings."""

    feature_dim: int  # D1
    semantic_dim: int  # D2
    num_train_classes: int
    hidden: tuple[int, int, int, int]  # visual encoder, visual decoder, semantic encoder, semantic decoder
    max_latent: int  # widest latent a member may have
    disentangle: bool = True

    def layers(self) -> dict[str, tuple[int, int, str, str]]:
        """name -> (in, out, the solo model's Linear, which side is padded to max_latent)."""
        he_v, hd_v, he_s, hd_s = self.hidden
        heads = (4 if self.disentangle else 2) * self.max_latent
        L, D1, D2 = self.max_latent, self.feature_dim, self.semantic_dim
        layers = {
            "enc_v.hidden": (D1, he_v, "encoder_v.hidden.0", ""),
            "enc_v.heads": (he_v, heads, "encoder_v.heads", "out"),
            "enc_s.hidden": (D2, he_s, "encoder_s.hidden.0", ""),
            "enc_s.heads": (he_s, heads, "encoder_s.heads", "out"),
            "dec_v.hidden": (L, hd_v, "decoder_v.0", "in"),
            "dec_v.out": (hd_v, D1, "decoder_v.2", ""),
            "dec_s.hidden": (L, hd_s, "decoder_s.0", "in"),
            "dec_s.out": (hd_s, D2, "decoder_s.2", ""),
        }
        if self.disentangle:
            layers["cls_v"] = (L, self.num_train_classes, "classifier_v", "in")
            layers["cls_s"] = (L, self.num_train_classes, "classifier_s", "in")
        return layers

    def names(self) -> list[str]:
        return list(self.layers())

    def offsets(self) -> dict[str, tuple[int, int]]:
        """name -> where its weight and its bias start in a member's row (weight first)."""
        out, at = {}, 0
        for name, (i, o, _, _) in self.layers().items():
            out[name] = (at, at + i * o)
            at += i * o + o
        return out

    @property
    def row_size(self) -> int:
        return sum(i * o + o for i, o, _, _ in self.layers().values())


class StackedWeights:
    """K members' weights in one (K, row_size) buffer, a row per member, and their gradients in
    another of the same layout. Each layer is a view of the buffer: a (K, in, out) weight and a
    (K, 1, out) bias. A member's row is contiguous, so its Adam update is one fused call over one
    tensor; each layer's backward writes its gradients straight into the gradient buffer
    (`_StackedLinear`): no gradient is allocated, zeroed or accumulated per step."""

    def __init__(self, shape: PackShape, flat: torch.Tensor):
        self.shape, self.flat = shape, flat.detach().contiguous()
        self.grad = torch.zeros_like(self.flat)
        K, offsets = len(self.flat), shape.offsets()
        self.w, self.b, self.w_grad, self.b_grad = {}, {}, {}, {}
        for name, (i, o, _, _) in shape.layers().items():
            wo, bo = offsets[name]
            # requires_grad only so that autograd records the layers; their gradients go to `grad`.
            self.w[name] = self.flat[:, wo:wo + i * o].view(K, i, o).requires_grad_()
            self.b[name] = self.flat[:, bo:bo + o].view(K, 1, o).requires_grad_()
            self.w_grad[name] = self.grad[:, wo:wo + i * o].view(K, i, o)
            self.b_grad[name] = self.grad[:, bo:bo + o].view(K, 1, o)

    @classmethod
    def empty(cls, shape: PackShape, device) -> "StackedWeights":
        return cls(shape, torch.zeros(0, shape.row_size, device=device))

    def linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x (K, B, in) -> (K, B, out), every member through its own weights. Each layer is used
        once per step: its backward overwrites the layer's gradients."""
        return _StackedLinear.apply(x, self.w[name], self.b[name], self.w_grad[name], self.b_grad[name])

    def with_member(self, row: torch.Tensor) -> "StackedWeights":
        """These members and one more (its row from member_row), as new buffers."""
        return StackedWeights(self.shape, torch.cat([self.flat, row[None]]))

    def select(self, keep: list[int]) -> "StackedWeights":
        return StackedWeights(self.shape, self.flat[keep])


class _StackedLinear(torch.autograd.Function):
    """baddbmm(b, x, w) whose backward writes dL/dw and dL/db into the pack's gradient buffer
    and returns only dL/dx: the weights are plain tensors, updated by the pack's Adam."""

    @staticmethod
    def forward(ctx, x, w, b, w_grad, b_grad):
        ctx.save_for_backward(x, w)
        ctx.grads = (w_grad, b_grad)
        return torch.baddbmm(b, x, w)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        w_grad, b_grad = ctx.grads
        w_grad.copy_(torch.bmm(x.transpose(1, 2), grad))  # views into the pack's gradient buffer
        b_grad.copy_(grad.sum(1, keepdim=True))
        grad_x = torch.bmm(grad, w.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None, None


def member_row(shape: PackShape, model: DisentangledVAE) -> torch.Tensor:
    """A solo model's weights as one row of the pack, latent dimensions padded to max_latent."""
    L, Lmax = model.config.latent_size, shape.max_latent
    if L > Lmax:
        raise ValueError(f"latent size {L} exceeds the pack's max_latent {Lmax}")
    modules, offsets = dict(model.named_modules()), shape.offsets()
    row = torch.zeros(shape.row_size)
    for name, (i, o, solo, pad) in shape.layers().items():
        lin = modules[solo]
        w, b = lin.weight.detach().t(), lin.bias.detach()  # (in, out), as the pack multiplies
        if pad == "out":  # heads: blocks [mu_t, logvar_t, mu_p, logvar_p], each L wide, into Lmax-wide blocks
            w = _pad_blocks(w, o // Lmax, L, Lmax, dim=1)
            b = _pad_blocks(b, o // Lmax, L, Lmax, dim=0)
        elif pad == "in":
            w = torch.cat([w, w.new_zeros(Lmax - L, o)])
        wo, bo = offsets[name]
        row[wo:wo + i * o] = w.reshape(-1)
        row[bo:bo + o] = b
    return row


def solo_model(weights: StackedWeights, index: int, model: DisentangledVAE) -> DisentangledVAE:
    """Write member `index` of the pack into a solo model of its latent size (in place)."""
    shape = weights.shape
    L, Lmax = model.config.latent_size, shape.max_latent
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, (i, o, solo, pad) in shape.layers().items():
            w, b = weights.w[name][index], weights.b[name][index, 0]
            if pad == "out":
                keep = torch.cat([torch.arange(L) + k * Lmax for k in range(o // Lmax)]).to(w.device)
                w, b = w[:, keep], b[keep]
            elif pad == "in":
                w = w[:L]
            modules[solo].weight.copy_(w.t())
            modules[solo].bias.copy_(b)
    return model


def _pad_blocks(t: torch.Tensor, blocks: int, L: int, Lmax: int, dim: int) -> torch.Tensor:
    parts = t.split(L, dim=dim)
    assert len(parts) == blocks
    padded = []
    for p in parts:
        shape = list(p.shape)
        shape[dim] = Lmax - L
        padded += [p, p.new_zeros(shape)]
    return torch.cat(padded, dim=dim)


@dataclass
class MemberTensors:
    """Per-member settings of one step, as (K, 1, 1) tensors that broadcast over (K, B, ·)."""

    alpha: torch.Tensor
    gamma: torch.Tensor
    lam: torch.Tensor
    beta: torch.Tensor
    kl: torch.Tensor  # this epoch's KL weight (warm-up applied)
    cross: torch.Tensor
    distance: torch.Tensor
    sigma_scale: torch.Tensor  # 0.5: textbook sampling, sigma = exp(0.5 logvar); 1.0: CADA-VAE's, exp(logvar)
    one_eps_per_row: torch.Tensor  # bool: CADA-VAE's sampling draws one noise value per row
    mask: torch.Tensor  # (K, 1, max_latent): 1 on the member's latent dimensions
    eps_per_row: str = "none"  # which members draw one noise value per row: "all", "none" or "some" (no device sync per step)


def sample(mu, logvar, m: MemberTensors) -> torch.Tensor:
    """z = mu + sigma * eps per member (gzsl.model.reparameterize), masked to each latent size.
    Draws as the solo model does when all members sample alike, so a 1-member pack draws the
    same numbers."""
    if m.eps_per_row == "all":
        eps = torch.randn_like(mu[..., :1])
    else:
        eps = torch.randn_like(mu)
        if m.eps_per_row == "some":
            eps = torch.where(m.one_eps_per_row, eps[..., :1], eps)
    return (mu + torch.exp(m.sigma_scale * logvar) * eps) * m.mask


def member_losses(W: StackedWeights, x, c, y, m: MemberTensors) -> dict[str, torch.Tensor]:
    """The losses of gzsl.losses.total for every member at once, each a (K,) vector of batch sums.
    x (B, D1) and c (B, D2) are shared by all members; y (B,) training-class labels. The
    permutation that shuffles z^p is drawn after the sampling noise, as the solo trainer draws
    it, and shared by the members."""
    K, disentangle = m.alpha.shape[0], W.shape.disentangle
    L = W.shape.max_latent
    hv = F.relu(W.linear("enc_v.hidden", x.expand(K, *x.shape)))
    hs = F.relu(W.linear("enc_s.hidden", c.expand(K, *c.shape)))
    v = W.linear("enc_v.heads", hv).split(L, dim=2)  # mu_t, logvar_t[, mu_p, logvar_p]
    s = W.linear("enc_s.heads", hs).split(L, dim=2)
    z_t_v, z_t_s = sample(v[0], v[1], m), sample(s[0], s[1], m)
    if disentangle:
        z_p_v, z_p_s = sample(v[2], v[3], m), sample(s[2], s[3], m)
        z_v, z_s = z_t_v + z_p_v, z_t_s + z_p_s
    else:
        z_v, z_s = z_t_v, z_t_s
    perm = torch.randperm(len(y), device=y.device)
    x_hat, x_from_s = W.linear("dec_v.out", F.relu(W.linear("dec_v.hidden", torch.cat([z_v, z_s], 1)))).chunk(2, 1)
    c_hat, c_from_v = W.linear("dec_s.out", F.relu(W.linear("dec_s.hidden", torch.cat([z_s, z_v], 1)))).chunk(2, 1)

    l1 = lambda a, b: (a - b).abs().sum((1, 2))  # noqa: E731  (K,)
    kl = lambda mu, lv: -0.5 * (1 + lv - mu.pow(2) - lv.exp()).sum((1, 2))  # noqa: E731
    kl_v, kl_s = kl(v[0], v[1]), kl(s[0], s[1])
    dd = _wasserstein(v[0], v[1], s[0], s[1])
    if disentangle:
        alpha = m.alpha.view(K)
        kl_v, kl_s = kl_v + alpha * kl(v[2], v[3]), kl_s + alpha * kl(s[2], s[3])
        dd = dd + _wasserstein(v[2], v[3], s[2], s[3])
    kw = m.kl.view(K)
    l_vae = (l1(x, x_hat) + kw * kl_v) + (l1(c, c_hat) + kw * kl_s)
    l_cr = l1(x, x_from_s) + l1(c, c_from_v)
    loss = l_vae + m.lam.view(K) * (m.cross.view(K) * l_cr + m.beta.view(K) * m.distance.view(K) * dd)
    terms = {"vae": l_vae, "cr": l_cr, "dd": dd}
    if disentangle:
        l_sc = _shuffling(W, "cls_v", z_t_v, z_p_v, y, perm) + _shuffling(W, "cls_s", z_t_s, z_p_s, y, perm)
        loss = loss + m.gamma.view(K) * l_sc
        terms["sc"] = l_sc
    terms["total"] = loss
    return terms


def _wasserstein(mu_a, logvar_a, mu_b, logvar_b) -> torch.Tensor:
    d2 = (mu_a - mu_b).pow(2).sum(2) + ((0.5 * logvar_a).exp() - (0.5 * logvar_b).exp()).pow(2).sum(2)
    return (d2 + 1e-12).sqrt().sum(1)


def _shuffling(W: StackedWeights, name: str, z_t, z_p, y, perm) -> torch.Tensor:
    K, B = z_t.shape[:2]
    logits = W.linear(name, torch.cat([z_t + z_p, z_t + z_p[:, perm]], 1))  # (K, 2B, classes)
    ce = F.cross_entropy(logits.reshape(K * 2 * B, -1), y.repeat(2).repeat(K), reduction="none")
    return ce.view(K, 2 * B).sum(1)
