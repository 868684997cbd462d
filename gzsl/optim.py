"""Adam over the member axis: one optimizer for K members, each with its own learning rate.

HFTA's idea (hfta/optim/adam.py): an optimizer of a fused model takes one learning rate per
member. A per-member learning rate cannot be folded into the loss: Adam is invariant to the
scale of a gradient. Two ways to apply it, the same update to float rounding:

- per member (`one_call=False`, the CPU's default): torch's own fused Adam kernel
  (`torch._fused_adam_`, as `torch.optim.Adam(fused=True)` calls it) over each member's slices of
  every parameter, with its learning rate and step count: K calls a step. On a CPU each is one
  pass over memory and the calls cost little beside it.
- one call (`one_call=True`, CUDA's default): the update written once over the member axis, the
  learning rates and bias corrections as (K, 1, 1) tensors, compiled by torch.compile into one
  kernel per parameter (Triton on a GPU, C++ on a CPU): a step's launches no longer grow with K,
  which on a GPU is what a pack's step is made of at K = 64. Compiling costs seconds once per
  process (and once more the first time K > 1); its first step in a process is checked against
  the per-member update (gzsl.fastpaths); if it fails to compile or to agree, the process says so
  once and goes on per member.
"""

from __future__ import annotations

import functools
import torch

from gzsl import fastpaths
from gzsl.fastpaths import ONE_CALL_ADAM

STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def adam_update(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step_size, bias_correction2_sqrt,
                beta1: float, beta2: float, eps: float) -> None:
    """torch.optim.Adam's amsgrad update (its single-tensor form) of tensors with a member axis,
    in place; step_size (lr / bias_correction1) and bias_correction2_sqrt broadcast per member,
    computed outside, once per step (docs/benchmarks.md, "Fewer launches on a GPU")."""
    for p, g, m, v, v_max in zip(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs):
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        torch.maximum(v_max, v, out=v_max)
        p.sub_(m / (v_max.sqrt() / bias_correction2_sqrt + eps) * step_size)


@functools.cache  # a cache: torch.compile once per process
def compiled_update():
    """adam_update compiled (once per process), its member axis dynamic."""
    return torch.compile(adam_update, dynamic=True)


class MemberAdam(torch.optim.Optimizer):
    """Adam with amsgrad (CADA-VAE's optimizer) for parameters whose first axis is the member axis.
    `lr`: one learning rate per member. `add_members` and `select` follow the model's members.
    `one_call`: the update as one compiled call for all members (default: on CUDA), else per member."""

    def __init__(self, params, lr: list[float], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 one_call: bool | None = None):
        super().__init__(params, dict(lr=list(lr), betas=betas, eps=eps))
        if len(self.param_groups) != 1:
            raise ValueError("MemberAdam takes one group of parameters")
        for p in self.params:
            if len(p) != len(lr):
                raise ValueError(f"a parameter of shape {tuple(p.shape)} for {len(lr)} learning rates")
            self.state[p] = {name: torch.zeros_like(p, memory_format=torch.contiguous_format) for name in STATE}
        device = self.params[0].device if self.params else torch.device("cpu")
        self.one_call = device.type == "cuda" and fastpaths.usable(ONE_CALL_ADAM) if one_call is None else one_call
        self.steps = torch.zeros(len(lr), device=device)  # per member, a float as torch.optim.Adam keeps it
        self._lr = torch.tensor(lr, dtype=torch.float64, device=device)  # the one-call update's
        self._views = None

    @property
    def params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    @property
    def lr(self) -> list[float]:
        return self.param_groups[0]["lr"]

    def _set_lr(self, lr: list[float]) -> None:
        self.param_groups[0]["lr"] = lr
        self._lr = torch.tensor(lr, dtype=torch.float64, device=self.steps.device)
        self._views = None

    def add_members(self, lr: list[float]) -> None:
        """Fresh state for members appended to the parameters (they already hold them)."""
        n = len(lr)
        grown = {(p, name): torch.cat([t, t.new_zeros(n, *t.shape[1:])])  # all made before any is kept
                 for p in self.params for name, t in self.state[p].items()}
        steps = torch.cat([self.steps, self.steps.new_zeros(n)])
        for (p, name), t in grown.items():
            self.state[p][name] = t
        self.steps = steps
        self._set_lr(self.lr + list(lr))

    def snapshot(self) -> dict:
        """Copies of the state (each member's moments and step count), for restore()."""
        return {"state": [{name: t.clone() for name, t in self.state[p].items()} for p in self.params],
                "steps": self.steps.clone(), "lr": list(self.lr)}

    def restore(self, snap: dict) -> None:
        """The state of snapshot(), copied into the same tensors (the members are those it saw)."""
        if snap["lr"] != self.lr:
            raise ValueError("restore: the members changed since the snapshot")
        for p, saved in zip(self.params, snap["state"]):
            for name, t in saved.items():
                self.state[p][name].copy_(t)
        self.steps.copy_(snap["steps"])

    def select(self, keep: list[int]) -> None:
        """Keep the state of the members `keep`, in that order (the parameters did so too)."""
        for p in self.params:
            for name in STATE:
                self.state[p][name] = self.state[p][name][keep].contiguous()
        self.steps = self.steps[keep].contiguous()
        self._set_lr([self.lr[i] for i in keep])

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("MemberAdam takes no closure")
        self.steps.add_(1)  # counted before the update, as torch.optim.Adam does
        if self.one_call and fastpaths.due(ONE_CALL_ADAM):  # its first use in this process: checked
            fastpaths.run(ONE_CALL_ADAM, self.tensors(), self._one_call_or_raise, self._step_per_member)
            self.one_call = fastpaths.usable(ONE_CALL_ADAM)
        elif not (self.one_call and self._step_one_call()):
            self._step_per_member()

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor a step changes: the parameters, their moments, the step counts."""
        return [p.detach() for p in self.params] + [t for p in self.params for t in self.state[p].values()] + [self.steps]

    def _one_call_or_raise(self) -> None:
        if not self._step_one_call():
            raise RuntimeError("the one-call update did not compile")

    def _step_one_call(self) -> bool:
        """The update in one compiled call; False (and per member from now on) if it cannot compile."""
        beta1, beta2 = self.param_groups[0]["betas"]
        steps = self.steps.double()  # bias corrections in double, as torch.optim.Adam computes them
        step_size = (self._lr / (1 - beta1 ** steps)).float().view(-1, 1, 1)
        bias_correction2_sqrt = (1 - beta2 ** steps).sqrt().float().view(-1, 1, 1)
        state = [[self.state[p][name] for p in self.params] for name in STATE]
        # Plain tensors, not nn.Parameters, whose sizes the compiler takes as static: each new pack
        # size K would recompile, and past torch's recompile limit run uncompiled without a word.
        params = [p.detach() for p in self.params]
        from torch._dynamo.exc import TorchDynamoException

        try:
            compiled_update()(params, [p.grad for p in self.params], *state, step_size, bias_correction2_sqrt,
                              beta1, beta2, self.param_groups[0]["eps"])
        except TorchDynamoException as e:
            # Raised while tracing or compiling, before the update runs: the step is still to take.
            # Anything else may come after in-place work, and redoing the step would apply it twice.
            fastpaths.fail(ONE_CALL_ADAM, f"did not compile ({type(e).__name__}: "
                                          f"{str(e).splitlines()[0] if str(e) else ''})")
            self.one_call = False
            return False
        return True

    def _member_views(self) -> list[tuple[list, ...]]:
        """Per member: its slices of the parameters and of the state, made once per membership."""
        state = [[self.state[p][name] for p in self.params] for name in STATE]
        per_tensor = [p.detach().unbind(0) for p in self.params], *[[t.unbind(0) for t in ts] for ts in state]
        steps = self.steps.unbind(0)
        return [(*([views[k] for views in kind] for kind in per_tensor), [steps[k]] * len(self.params))
                for k in range(len(self.lr))]

    def _step_per_member(self) -> None:
        if self._views is None or self._views_of != [p.data_ptr() for p in self.params]:
            self._views, self._views_of = self._member_views(), [p.data_ptr() for p in self.params]
        beta1, beta2 = self.param_groups[0]["betas"]
        eps = self.param_groups[0]["eps"]
        grads = zip(*(p.grad.unbind(0) for p in self.params))
        for (params, exp_avg, exp_avg_sq, max_exp_avg_sq, steps), member_grads, lr in zip(self._views, grads, self.lr):
            torch._fused_adam_(params, list(member_grads), exp_avg, exp_avg_sq, max_exp_avg_sq, steps, amsgrad=True,
                               lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps, maximize=False)
