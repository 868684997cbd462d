"""Train a pack of members (gzsl.packing) that join and leave between epochs: the packed twin
of gzsl.training.train, usable without Ray.

All members see the same minibatches in the same order; each has its own weights, Adam state
and step count, its own warm-ups (from its own epoch 0, whenever it joined), its own noise
draws and its own evaluation. A member whose loss turns non-finite diverges alone: its
weights and gradients occupy their own row of the pack's buffers, so nothing of it reaches
the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import torch

from gzsl.data import GZSLData
from gzsl.evaluation import ClassifierConfig, Evaluator, Scores, compare_many
from gzsl.model import DisentangledVAE
from gzsl.packing import MemberTensors, PackShape, StackedWeights, member_losses, member_row, solo_model
from gzsl.training import (EpochResult, TrainConfig, build_model, classifier_config, classifiers_due,
                           epoch_result, training_tensors, weights)

BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as the solo trainer uses them


@dataclass
class Member:
    key: str
    config: TrainConfig
    epoch: int = 0  # epochs trained
    evaluator: Evaluator | None = field(default=None, repr=False)


def pack_shape(data: GZSLData, config: TrainConfig, max_latent: int) -> PackShape:
    return PackShape(feature_dim=data.feature_dim, semantic_dim=data.semantic_dim,
                     num_train_classes=len(data.seen_classes), hidden=tuple(config.hidden),
                     max_latent=max_latent, disentangle=config.disentangle)


class PackTrainer:
    """Members train together, one fused step per minibatch; join() and leave() between epochs."""

    def __init__(self, data: GZSLData, shape: PackShape, device: str = "cpu"):
        self.shape, self.device = shape, device
        self.data = data.to(device)
        self.members: list[Member] = []
        self.weights = StackedWeights.empty(shape, device)
        self.adam = [torch.zeros_like(self.weights.flat) for _ in range(3)]
        self.steps = torch.zeros(0, device=device)  # Adam's step count per member (float, as torch keeps it)
        self.fresh = True  # nothing drawn from the random stream yet
        self.x, self.c, self.y = training_tensors(self.data)

    # ------------------------------------------------------------------ joining and leaving

    def join(self, key: str, config: TrainConfig) -> None:
        """A new member with the solo model's fresh weights for its seed. The first member of a
        fresh pack seeds the pack's random stream as the solo trainer would (torch.manual_seed
        then the model's init), so a 1-member pack draws what a solo run draws; later members
        are initialised on a forked stream and leave the pack's untouched."""
        if any(m.key == key for m in self.members):
            raise ValueError(f"member {key} already in the pack")
        if pack_shape(self.data, config, self.shape.max_latent) != self.shape:
            raise ValueError(f"member {key} does not fit this pack: {pack_shape(self.data, config, self.shape.max_latent)}")
        if self.fresh:
            torch.manual_seed(config.seed)
            model = build_model(self.data, config)
        else:
            with torch.random.fork_rng(devices=self._cuda()):
                torch.manual_seed(config.seed)
                model = build_model(self.data, config)
        row = member_row(self.shape, model).to(self.device)
        adam = [torch.cat([state, torch.zeros_like(row)[None]]) for state in self.adam]
        self._install(self.weights.with_member(row), adam, torch.cat([self.steps, self.steps.new_zeros(1)]))
        evaluator = Evaluator(self.data, classifier_config(config, self.data.name), seed=config.seed)
        self.members.append(Member(key, config, evaluator=evaluator))

    def leave(self, key: str) -> None:
        i = self._index(key)
        keep = [j for j in range(len(self.members)) if j != i]
        self._install(self.weights.select(keep), [state[keep] for state in self.adam], self.steps[keep])
        del self.members[i]

    def _install(self, weights: StackedWeights, adam: list[torch.Tensor], steps: torch.Tensor) -> None:
        """New buffers after a join or a leave. Adam's state (exp_avg, exp_avg_sq, max_exp_avg_sq)
        has the weights' (K, row_size) layout; each member's rows are made once, for its update."""
        self.weights, self.adam, self.steps = weights, [s.contiguous() for s in adam], steps.contiguous()
        self._views = [([weights.flat[i]], [weights.grad[i]], *([s[i]] for s in self.adam), self.steps[i])
                       for i in range(len(self.steps))]

    def _index(self, key: str) -> int:
        for i, m in enumerate(self.members):
            if m.key == key:
                return i
        raise KeyError(key)

    def _cuda(self) -> list:
        return [torch.device(self.device)] if torch.device(self.device).type == "cuda" else []

    # ------------------------------------------------------------------ training

    def member_tensors(self) -> MemberTensors:
        """This epoch's settings of every member, from gzsl.training.weights at its own epoch."""
        ws = [weights(m.config, m.epoch) for m in self.members]
        col = lambda values: torch.tensor(values, device=self.device).view(-1, 1, 1)  # noqa: E731
        mask = torch.zeros(len(ws), 1, self.shape.max_latent, device=self.device)
        for i, m in enumerate(self.members):
            mask[i, :, :m.config.latent_size] = 1.0
        cada = [m.config.sampling == "cada" for m in self.members]
        return MemberTensors(alpha=col([w.alpha for w in ws]), gamma=col([w.gamma for w in ws]),
                             lam=col([w.lam for w in ws]), beta=col([w.beta for w in ws]),
                             kl=col([w.kl for w in ws]), cross=col([w.cross for w in ws]),
                             distance=col([w.distance for w in ws]),
                             sigma_scale=col([1.0 if c else 0.5 for c in cada]),
                             one_eps_per_row=col(cada).bool(), mask=mask,
                             eps_per_row="all" if all(cada) else "some" if any(cada) else "none")

    def train_epoch(self) -> dict[str, dict[str, float]]:
        """One pass over the training images for every member (one minibatch order for all);
        returns each member's per-image mean losses, as gzsl.training.vae_epochs does."""
        if not self.members:
            return {}
        self.fresh = False
        m = self.member_tensors()
        n, bs = len(self.y), self.members[0].config.batch_size
        lr = self.learning_rates()
        sums: dict[str, torch.Tensor] = {}
        order = torch.randperm(n, device=self.device)
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            terms = self.step(self.x[idx], self.c[idx], self.y[idx], m, lr)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
        per_member = {k: (v / n).tolist() for k, v in sums.items()}  # one device sync per epoch
        for mb in self.members:
            mb.epoch += 1
        return {mb.key: {k: v[i] for k, v in per_member.items()} for i, mb in enumerate(self.members)}

    def learning_rates(self) -> list[float]:
        return [mb.config.lr for mb in self.members]

    def step(self, x, c, y, m: MemberTensors, lr: list[float]) -> dict[str, torch.Tensor]:
        """One fused minibatch for every member: forward, losses, backward, Adam."""
        terms = member_losses(self.weights, x, c, y, m)
        terms["total"].sum().backward()  # into the weights' gradient buffers (packing._StackedLinear)
        self._adam_step(lr)
        return terms

    @torch.no_grad()
    def _adam_step(self, lr: list[float]) -> None:
        """torch.optim.Adam(amsgrad=True, fused=True)'s update, member by member: one fused call
        over each member's row, with its own learning rate and step count (a per-member
        learning rate cannot be folded into the loss: Adam is scale-invariant)."""
        self.steps.add_(1)  # torch.optim.Adam counts a step before its update, as here
        for (params, grads, exp_avg, exp_avg_sq, max_sq, step), member_lr in zip(self._views, lr):
            torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, max_sq, [step], amsgrad=True,
                               lr=member_lr, beta1=BETAS[0], beta2=BETAS[1], weight_decay=0.0, eps=EPS,
                               maximize=False)

    def run_epoch(self, recipes: dict[str, ClassifierConfig] | None = None) -> dict[str, EpochResult]:
        """One epoch of every member, then each member's EpochResult as gzsl.training.train yields
        it: H every eval_every epochs of its own and after its last, the classifiers of all the
        members due fit at once (evaluate); a member that completed or diverged leaves the pack.
        `recipes`: more classifiers scored after a member's last epoch."""
        start = time.perf_counter()
        epoch_losses = self.train_epoch()
        due = {mb.key: classifiers_due(mb.config, mb.epoch, epoch_losses[mb.key], mb.evaluator.config, recipes)
               for mb in self.members}
        scores = self.evaluate({key: classifiers for key, classifiers in due.items() if classifiers})
        seconds = time.perf_counter() - start
        results = {}
        for mb in list(self.members):
            results[mb.key] = r = epoch_result(mb.config, mb.epoch, epoch_losses[mb.key], seconds,
                                               scores.get(mb.key, {}), recipes)
            if r.status != "running":  # completed or diverged: it leaves
                self.leave(mb.key)
        return results

    # ------------------------------------------------------------------ the members as solo models

    def model(self, key: str) -> DisentangledVAE:
        """A member as a solo DisentangledVAE (a copy of its weights), e.g. for its evaluation. Built
        on a forked random stream: evaluating (or not) never changes the training that follows."""
        i = self._index(key)
        with torch.random.fork_rng(devices=self._cuda()):
            model = build_model(self.data, self.members[i].config).to(self.device)
        return solo_model(self.weights, i, model)

    def evaluate(self, due: dict[str, dict[str, ClassifierConfig]]) -> dict[str, dict[str, Scores]]:
        """Each member's scores (key -> {name: recipe} -> {name: Scores}), each member's classifiers
        fit on its own latents, and each classifier fit for all the members that need it at once
        (gzsl.evaluation.compare_many)."""
        if not due:
            return {}
        members = {mb.key: mb for mb in self.members}
        requests = [(members[key].evaluator, self.model(key), classifiers) for key, classifiers in due.items()]
        return dict(zip(due, compare_many(requests)))


def train_pack(data: GZSLData, configs: dict[str, TrainConfig], max_latent: int | None = None,
               device: str = "cpu", recipes: dict[str, ClassifierConfig] | None = None,
               ) -> Iterator[dict[str, EpochResult]]:
    """Train `configs` (key -> TrainConfig) as one pack from epoch 0, yielding per epoch each
    active member's EpochResult (see PackTrainer.run_epoch)."""
    first = next(iter(configs.values()))
    pack = PackTrainer(data, pack_shape(data, first, max_latent or max(c.latent_size for c in configs.values())),
                       device)
    for key, config in configs.items():
        pack.join(key, config)
    while pack.members:
        yield pack.run_epoch(recipes)
