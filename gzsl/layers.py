"""A Linear layer with a member axis: K independent copies applied in one call.

HFTA's idea (Wang et al., "Horizontally Fused Training Array", MLSys 2021): K models of the
same architecture become one model whose weights carry a leading member axis, so one
`baddbmm` serves every member and a plain model is the case K = 1.

A layer that touches the latent space says which side is latent (`latent_in`, or the
`latent_blocks` latent-wide blocks of its output). Members narrower than the model's latent
width are zero there: `resized` cuts or pads those dimensions.

Gradients: the layer writes its weight and bias gradients itself, into buffers it keeps from
step to step (torch's autograd would allocate new ones each backward, K times a member's
weights: on a CPU, hundreds of MB a step, each a fresh mmap the kernel zeroes page by page).
The semantics are autograd's: a backward writes `.grad` where it is None (after
`zero_grad(set_to_none=True)`) and adds to it otherwise. A buffer is reused once its `.grad`
was set to None, so a caller must not keep a reference to a `.grad` across steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MemberLinear(nn.Module):
    """K Linear(in, out) layers: weight (K, in, out), bias (K, 1, out); x (K, B, in) -> (K, B, out)."""

    def __init__(self, in_features: int, out_features: int, latent_in: bool = False, latent_blocks: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(1, 1, out_features))
        self.latent_in, self.latent_blocks = latent_in, latent_blocks
        self._grad_buffers: dict[str, torch.Tensor] = {}  # not state: the next .grad of weight and bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (self.weight.requires_grad or self.bias.requires_grad):
            return _Linear.apply(x, self.weight, self.bias, self)
        return torch.baddbmm(self.bias, x, self.weight)

    @torch.no_grad()
    def add_grads(self, x: torch.Tensor, dy: torch.Tensor) -> None:
        """The weight's and bias's gradients of one use of the layer (input x, output gradient dy):
        written into the kept buffers where `.grad` is None, added to `.grad` otherwise."""
        w, b, x_t = self.weight, self.bias, x.transpose(1, 2)
        if w.requires_grad:
            if w.grad is None:
                w.grad = torch.bmm(x_t, dy, out=self._grad_buffer("weight", w))
            else:
                w.grad.baddbmm_(x_t, dy)
        if b.requires_grad:
            if b.grad is None:
                b.grad = torch.sum(dy, 1, keepdim=True, out=self._grad_buffer("bias", b))
            else:
                b.grad.add_(dy.sum(1, keepdim=True))

    def _grad_buffer(self, name: str, p: nn.Parameter) -> torch.Tensor:
        kept = self._grad_buffers.get(name)
        if kept is None or kept.shape != p.shape or kept.device != p.device or kept.dtype != p.dtype:
            kept = self._grad_buffers[name] = torch.empty_like(p, memory_format=torch.contiguous_format)
        return kept

    @torch.no_grad()
    def reset_parameters(self, gain: float, generator: torch.Generator | None = None) -> None:
        """CADA-VAE's initialisation, each member alike: Xavier-uniform weights with `gain`, zero bias."""
        _, n_in, n_out = self.weight.shape
        bound = gain * math.sqrt(6.0 / (n_in + n_out))
        self.weight.uniform_(-bound, bound, generator=generator)
        self.bias.zero_()

    def resized(self, width: int, members: list[int] | slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of `members`, their latent dimensions cut or zero-padded to `width`."""
        w, b = self.weight.detach()[members], self.bias.detach()[members]
        if self.latent_in:
            w = _fit(w, dim=1, blocks=1, width=width)
        if self.latent_blocks:
            w = _fit(w, dim=2, blocks=self.latent_blocks, width=width)
            b = _fit(b, dim=2, blocks=self.latent_blocks, width=width)
        return w, b

    def assign(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """New members' tensors in the same Parameters (an optimizer holding them keeps them)."""
        self.weight.data, self.bias.data = weight.contiguous(), bias.contiguous()


class _Linear(torch.autograd.Function):
    """baddbmm whose backward hands the weight's and bias's gradients to the layer (add_grads)
    instead of returning them to autograd."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        ctx.save_for_backward(x, weight)
        ctx.layer = layer
        return torch.baddbmm(bias, x, weight)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        ctx.layer.add_grads(x, dy)
        dx = torch.bmm(dy, weight.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        return dx, None, None, None


def _fit(t: torch.Tensor, dim: int, blocks: int, width: int) -> torch.Tensor:
    """t with each of its `blocks` equal blocks along `dim` cut or zero-padded to `width`."""
    parts = t.unflatten(dim, (blocks, -1))
    have = parts.shape[dim + 1]
    if width < have:
        parts = parts.narrow(dim + 1, 0, width)
    elif width > have:
        shape = list(parts.shape)
        shape[dim + 1] = width - have
        parts = torch.cat([parts, parts.new_zeros(shape)], dim + 1)
    return parts.flatten(dim, dim + 1)
