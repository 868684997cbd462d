"""Adam over the member axis: one optimizer for K members, each with its own learning rate.

HFTA's idea (hfta/optim/adam.py): an optimizer of a fused model takes one learning rate per
member. Here each member's update is torch's own fused Adam kernel (`torch._fused_adam_`, as
`torch.optim.Adam(fused=True)` calls it) over that member's slices of every parameter, with
its learning rate and its own step count (members join at different times). A per-member
learning rate cannot be folded into the loss: Adam is invariant to the scale of a gradient.
"""

from __future__ import annotations

import torch

STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


class MemberAdam(torch.optim.Optimizer):
    """Adam with amsgrad (CADA-VAE's optimizer) for parameters whose first axis is the member axis.
    `lr`: one learning rate per member. `add_members` and `select` follow the model's members."""

    def __init__(self, params, lr: list[float], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, dict(lr=list(lr), betas=betas, eps=eps))
        if len(self.param_groups) != 1:
            raise ValueError("MemberAdam takes one group of parameters")
        for p in self.params:
            if len(p) != len(lr):
                raise ValueError(f"a parameter of shape {tuple(p.shape)} for {len(lr)} learning rates")
            self.state[p] = {name: torch.zeros_like(p, memory_format=torch.contiguous_format) for name in STATE}
        device = self.params[0].device if self.params else None
        self.steps = torch.zeros(len(lr), device=device)  # per member, a float as torch.optim.Adam keeps it
        self._views = None

    @property
    def params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    @property
    def lr(self) -> list[float]:
        return self.param_groups[0]["lr"]

    def add_members(self, lr: list[float]) -> None:
        """Fresh state for members appended to the parameters (they already hold them)."""
        n = len(lr)
        for p in self.params:
            for name in STATE:
                t = self.state[p][name]
                self.state[p][name] = torch.cat([t, t.new_zeros(n, *t.shape[1:])])
        self.steps = torch.cat([self.steps, self.steps.new_zeros(n)])
        self.param_groups[0]["lr"] = self.lr + list(lr)
        self._views = None

    def select(self, keep: list[int]) -> None:
        """Keep the state of the members `keep`, in that order (the parameters did so too)."""
        for p in self.params:
            for name in STATE:
                self.state[p][name] = self.state[p][name][keep].contiguous()
        self.steps = self.steps[keep].contiguous()
        self.param_groups[0]["lr"] = [self.lr[i] for i in keep]
        self._views = None

    def _member_views(self) -> list[tuple[list, ...]]:
        """Per member: its slices of the parameters and of the state, made once per membership."""
        state = [[self.state[p][name] for p in self.params] for name in STATE]
        per_tensor = [p.detach().unbind(0) for p in self.params], *[[t.unbind(0) for t in ts] for ts in state]
        steps = self.steps.unbind(0)
        return [(*([views[k] for views in kind] for kind in per_tensor), [steps[k]] * len(self.params))
                for k in range(len(self.lr))]

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("MemberAdam takes no closure")
        if self._views is None or self._views_of != [p.data_ptr() for p in self.params]:
            self._views, self._views_of = self._member_views(), [p.data_ptr() for p in self.params]
        beta1, beta2 = self.param_groups[0]["betas"]
        eps = self.param_groups[0]["eps"]
        self.steps.add_(1)  # counted before the update, as torch.optim.Adam does
        grads = zip(*(p.grad.unbind(0) for p in self.params))
        for (params, exp_avg, exp_avg_sq, max_exp_avg_sq, steps), member_grads, lr in zip(self._views, grads, self.lr):
            torch._fused_adam_(params, list(member_grads), exp_avg, exp_avg_sq, max_exp_avg_sq, steps, amsgrad=True,
                               lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps, maximize=False)
