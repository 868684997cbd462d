"""Train Disentangled-VAEs and score them: the trial of a study, usable without Ray.

One trainer for K >= 1 configurations: a `Pack` trains its members, which join and leave
between epochs, as one model with a member axis (gzsl.model) and one optimizer with a
learning rate per member (gzsl.optim). `train(data, config)` is a pack of one, a generator
that yields one `EpochResult` per epoch, so a caller (the CLI, a Ray Tune trainable) reports
each epoch as it comes and may stop early. The last result has status "completed" or
"diverged".

Randomness: a member's initial weights and its sampling noise come from streams of its own
seed, the minibatch order (shared by the members) from the pack's. Training never draws from
torch's global stream, so evaluating (which does, forked) never changes the training, and a
member that joins or leaves never changes the others' draws.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import torch

from gzsl import fastpaths, graphs, hyperparams, losses
from gzsl.data import GZSLData
from gzsl.defaults import CROSS_WARMUP, DISTANCE_WARMUP, KL_WARMUP
from gzsl.errors import GzslError
from gzsl.evaluation import CLASSIFIER_EPOCH, CLASSIFIERS, ClassifierConfig, Evaluator, LatentClassifier, Scores, cada_recipe, fit_many
from gzsl.model import CADA_HIDDEN, DisentangledVAE, ModelConfig, noise
from gzsl.optim import MemberAdam


DEFAULTS = hyperparams.defaults()


@dataclass(frozen=True)
class TrainConfig:
    # The searched hyperparameters of gzsl.hyperparams' table (sampling, the sixth, is below).
    alpha: float = DEFAULTS["alpha"]  # weight of KL(z^p): larger pulls z^p to the prior
    gamma: float = DEFAULTS["gamma"]  # weight of the shuffling classification loss L_SC
    lam: float = DEFAULTS["lam"]  # weight of modality alignment L_MA (CADA-VAE's cross-reconstruction end value)
    latent_size: int = DEFAULTS["latent_size"]
    lr: float = DEFAULTS["lr"]  # Adam (amsgrad), CADA-VAE
    # Fixed by the method.
    beta: float = 3.43  # distance weight inside L_MA: CADA-VAE's 8.13 / 2.37
    # End value of the KL warm-up, multiplying KL(z^t) + alpha * KL(z^p). CADA-VAE's 0.25:
    # at 1 the posteriors collapse to the prior on CUB-like data (H 2.6 instead of ~33).
    kl_weight: float = 0.25
    # Reparameterization noise (model.reparameterize): CADA-VAE's "cada" (method.md's default) or "textbook".
    sampling: str = DEFAULTS["sampling"]
    epochs: int = 100
    batch_size: int = 50
    kl_warmup: tuple[float, float] = KL_WARMUP  # warm-ups as fractions of the run (gzsl.defaults)
    cross_warmup: tuple[float, float] = CROSS_WARMUP
    distance_warmup: tuple[float, float] = DISTANCE_WARMUP
    disentangle: bool = True  # False: the CADA-VAE ablation
    # Hidden widths: visual encoder, visual decoder, semantic encoder, semantic decoder.
    hidden: tuple[int, int, int, int] = CADA_HIDDEN
    # Running.
    eval_every: int = 10  # compute validation H every n epochs (and always after the last)
    # Non-empty: only at these epochs of that grid (and after the last): a study's decision points
    # (gzsl.selection.recipe_epochs). Empty: at every one.
    eval_at: tuple[int, ...] = ()
    # 0: train all `epochs` and score the last. n: stop after epoch n and score it (a refit scored at
    # gzsl.selection.refit_epoch of its trial); the warm-ups still follow the full `epochs`.
    score_epoch: int = 0
    seed: int = 0
    device: str = "cpu"
    # The final classifier of every evaluation: "cada" (CADA-VAE's recipe with the dataset's epochs,
    # evaluation.cada_recipe) or "fast" (evaluation.FAST_CLASSIFIER), or a ClassifierConfig.
    classifier: str | ClassifierConfig = "cada"


MAIN = "main"  # EpochResult.recipe_scores' name for config.classifier, the one `scores` uses


def classifier_config(config: TrainConfig, dataset: str) -> ClassifierConfig:
    """The final classifier of config.classifier on a dataset (CADA-VAE's recipe takes its epochs)."""
    c = config.classifier
    if isinstance(c, ClassifierConfig):
        return c
    if c not in CLASSIFIERS:
        raise GzslError(f"classifier {c!r}: expected one of {', '.join(CLASSIFIERS)}")
    return cada_recipe(dataset) if c == "cada" else CLASSIFIERS[c]


@dataclass(frozen=True)
class Trained:
    """A member that completed: its model (K = 1, on its device) and its final classifier
    (config.classifier) as scored, whose outputs are the classes `classes` (class ids)."""

    model: DisentangledVAE
    classifier: LatentClassifier
    classes: torch.Tensor


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    losses: dict[str, float]  # per-image means over the epoch: total, vae, sc, cr, dd
    scores: Scores | None  # U, S, H on the split's eval sets, when evaluated this epoch
    seconds: float  # wall time of this epoch, evaluation included (a pack's: all its members')
    status: str  # "running", "completed" or "diverged"
    # Last result only, when train() was given `recipes`: scores per classifier recipe, MAIN
    # (config.classifier, the same as `scores`) first, all fit on the same sampled latents.
    recipe_scores: dict[str, Scores] | None = None
    trained: Trained | None = None  # last result of a completed member only (gzsl.modelfile saves it)
    eval_seconds: float = 0.0  # of `seconds`, the evaluation's (the pack's, for all members due)
    path: str = "eager"  # the fast paths the epoch ran with (Pack.path)


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible (Tune sets CUDA_VISIBLE_DEVICES per trial), else 'cpu'."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GzslError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):  # meta holds no numbers; mps and the rest are untested here
        raise GzslError(f"--device {name}: gzsl trains on cpu or cuda (cuda:N) only; use one of them")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GzslError(f"--device {name}: no CUDA device is visible here; use --device cpu")
    return name


def ramp(progress: float, start: float, end: float) -> float:
    """Linear warm-up: 0 before `start`, 1 after `end` (fractions of the run)."""
    if end <= start:
        return float(progress >= start)
    return min(max((progress - start) / (end - start), 0.0), 1.0)


def weights(config: TrainConfig, epoch: int) -> losses.Weights:
    """The loss weights of a (0-based) epoch."""
    p = epoch / config.epochs
    return losses.Weights(
        alpha=config.alpha, gamma=config.gamma, lam=config.lam, beta=config.beta,
        kl=config.kl_weight * ramp(p, *config.kl_warmup), cross=ramp(p, *config.cross_warmup),
        distance=ramp(p, *config.distance_warmup),
    )


def model_config(data: GZSLData, config: TrainConfig) -> ModelConfig:
    return ModelConfig(
        feature_dim=data.feature_dim, semantic_dim=data.semantic_dim,
        num_train_classes=len(data.seen_classes), latent_size=config.latent_size,
        visual_encoder_hidden=config.hidden[0], visual_decoder_hidden=config.hidden[1],
        semantic_encoder_hidden=config.hidden[2], semantic_decoder_hidden=config.hidden[3],
        disentangle=config.disentangle, sampling=config.sampling,
    )


TRAINING_EPOCH = fastpaths.TRAINING_GRAPH  # a captured epoch of steps, as gzsl.graphs and gzsl.fastpaths name it
INIT, ORDER, NOISE = 0, 1, 2  # a run's random streams: initial weights, minibatch order, sampling noise


def stream(seed: int, which: int, device: str = "cpu") -> torch.Generator:
    """One of a seed's independent random streams (numpy's SeedSequence derives them)."""
    state = np.random.SeedSequence([which, seed & (2**64 - 1)]).generate_state(1, np.uint64)[0]
    return torch.Generator(device).manual_seed(int(state))


def build_model(data: GZSLData, config: TrainConfig) -> DisentangledVAE:
    """A configuration's model (one member, on the CPU) with its seed's initial weights."""
    return DisentangledVAE(model_config(data, config), generator=stream(config.seed, INIT))


def training_tensors(data: GZSLData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training images, each image's class semantics (gathered once) and its label numbered
    among the training classes (for the shuffling classifiers), on the data's device."""
    device = data.train.x.device
    to_local = torch.full((len(data.semantics),), -1, dtype=torch.long, device=device)
    to_local[data.seen_classes] = torch.arange(len(data.seen_classes), device=device)
    return data.train.x, data.semantics[data.train.y], to_local[data.train.y]


def final_epoch(config: TrainConfig) -> int:
    """The epoch a run ends on and scores: score_epoch when set, else the last of the schedule."""
    return config.score_epoch or config.epochs


def classifiers_due(config: TrainConfig, epoch: int, epoch_losses: dict[str, float], main: ClassifierConfig,
                    recipes: dict[str, ClassifierConfig] | None = None) -> dict[str, ClassifierConfig]:
    """The classifiers (name -> recipe) an epoch's result is scored with: MAIN every eval_every
    epochs (only those in eval_at, when given) and after the last, where `recipes` are scored too;
    none after a non-finite loss."""
    if not math.isfinite(epoch_losses["total"]):
        return {}
    last = epoch == final_epoch(config)
    on_grid = config.eval_every > 0 and epoch % config.eval_every == 0
    if last or (on_grid and (not config.eval_at or epoch in config.eval_at)):
        return {MAIN: main, **(recipes if last and recipes else {})}
    return {}


def epoch_result(config: TrainConfig, epoch: int, epoch_losses: dict[str, float], seconds: float,
                 scores: dict[str, Scores], recipes: dict[str, ClassifierConfig] | None = None) -> EpochResult:
    """An epoch's EpochResult from the scores of classifiers_due(...): "diverged" at a non-finite
    loss (H 0); the last epoch's result carries every recipe's scores when recipes were asked."""
    if not math.isfinite(epoch_losses["total"]):
        zero = Scores(0.0, 0.0, 0.0)
        by_recipe = {name: zero for name in (MAIN, *recipes)} if recipes else None
        return EpochResult(epoch, epoch_losses, zero, seconds, "diverged", by_recipe)
    last = epoch == final_epoch(config)
    return EpochResult(epoch, epoch_losses, scores.get(MAIN), seconds, "completed" if last else "running",
                       scores if last and recipes else None)


@dataclass
class Member:
    key: str
    config: TrainConfig
    evaluator: Evaluator = field(repr=False)
    noise: torch.Generator = field(repr=False)  # its sampling noise (stream NOISE of its seed)
    epoch: int = 0  # epochs trained


class Pack:
    """Members trained together, one step per minibatch for all: join() and leave() between epochs.

    All members see the same minibatches in the same order; each has its own weights, Adam state
    and step count, learning rate, warm-ups (from its own epoch 0, whenever it joined), noise and
    evaluation. Nothing of one member reaches another: a member whose loss turns non-finite
    diverges alone."""

    def __init__(self, data: GZSLData, config: TrainConfig, width: int | None = None):
        """A pack for members shaped like `config` (the data, hidden widths, ablation, batch size
        and device) whose latent sizes are at most `width` (default: config's); its minibatch
        order follows config.seed."""
        self.config, self.device = config, config.device
        self.width = width or config.latent_size
        self.data = data.to(self.device)
        self.x, self.c, self.y = training_tensors(self.data)
        self.members: list[Member] = []
        with torch.device("meta"):  # the pack's widths and no member: nothing to initialise
            empty = DisentangledVAE(model_config(self.data, replace(config, latent_size=self.width))).select([])
        self.model = empty.to_empty(device=self.device)
        self.optimizer = MemberAdam(self.model.parameters(), lr=[])
        self.order = stream(config.seed, ORDER, self.device)
        self._membership = 0  # counts joins and leaves: a captured epoch holds the tensors of one
        self._warm, self._graph = None, None  # the membership that ran eagerly, its captured epoch

    # ---------------------------------------------------------------- joining and leaving

    def join(self, key: str, config: TrainConfig) -> None:
        """A new member with its seed's initial weights, padded to the pack's latent width."""
        if any(m.key == key for m in self.members):
            raise ValueError(f"member {key} already in the pack")
        self._check_fits(key, config)
        member = Member(key, config, Evaluator(self.data, classifier_config(config, self.data.name), seed=config.seed),
                        stream(config.seed, NOISE, self.device))
        new = build_model(self.data, config).widen(self.width).to(self.device)
        self._membership += 1  # a captured epoch holds the old tensors
        self.model.extend(new)  # whole or not at all, and so the optimizer's state: a failed join
        try:                    # (an out-of-memory) leaves the pack as it was
            self.optimizer.add_members([config.lr])
        except BaseException:
            self.model.select(list(range(len(self.members))))
            raise
        self.members.append(member)

    def snapshot(self) -> dict:
        """The pack at an epoch boundary (weights, Adam state, random streams, epochs) for restore():
        an epoch that fails part-way leaves the survivors as they were before it."""
        return {"model": {k: v.clone() for k, v in self.model.state_dict(keep_vars=False).items()},
                "optimizer": self.optimizer.snapshot(), "order": self.order.get_state(),
                "members": [(m.key, m.noise.get_state(), m.epoch) for m in self.members]}

    def restore(self, snap: dict) -> None:
        """The pack as snapshot() saw it; its members must be the same."""
        if [m.key for m in self.members] != [k for k, _, _ in snap["members"]]:
            raise ValueError("restore: the pack's members changed since the snapshot")
        with torch.no_grad():
            for name, t in self.model.state_dict(keep_vars=True).items():
                t.copy_(snap["model"][name])
        self.optimizer.restore(snap["optimizer"])
        self.order.set_state(snap["order"])
        for m, (_, noise_state, epoch) in zip(self.members, snap["members"]):
            m.noise.set_state(noise_state)
            m.epoch = epoch

    def _check_fits(self, key: str, config: TrainConfig) -> None:
        shape = lambda c: (model_config(self.data, replace(c, latent_size=0, sampling="")),  # noqa: E731
                           c.batch_size, torch.device(c.device))
        if shape(config) != shape(self.config) or config.latent_size > self.width:
            raise ValueError(f"member {key} does not fit this pack: {shape(config)} with latent size "
                             f"{config.latent_size}, the pack {shape(self.config)} up to {self.width}")

    def leave(self, key: str) -> None:
        i = self._index(key)
        keep = [j for j in range(len(self.members)) if j != i]
        self._membership += 1
        self.model.select(keep)
        self.optimizer.select(keep)
        del self.members[i]

    def _index(self, key: str) -> int:
        for i, m in enumerate(self.members):
            if m.key == key:
                return i
        raise KeyError(key)

    def member(self, key: str) -> DisentangledVAE:
        """A copy of a member as a model of its own (K = 1, its own latent size)."""
        return self.model.member(self._index(key))

    # ---------------------------------------------------------------- training

    def loss_weights(self) -> losses.Weights:
        """This epoch's loss weights, (K,) each: every member's at its own epoch."""
        ws = [weights(m.config, m.epoch) for m in self.members]
        return losses.Weights(*(torch.tensor(col, device=self.device) for col in zip(*ws)))

    def epoch_noise(self, steps: int) -> torch.Tensor:
        """(K, steps, noise_sites, batch, 1 or width): an epoch of each member's noise, drawn from
        its own stream at its own latent size, as its own model would draw it (zero beyond)."""
        rows = (steps, self.model.noise_sites, self.config.batch_size)
        draws = [noise(m.config.sampling, rows, m.config.latent_size, m.noise, self.device) for m in self.members]
        width = 1 if all(d.shape[-1] == 1 for d in draws) else self.width
        eps = torch.zeros(len(draws), *rows, width, device=self.device)
        for k, (d, m) in enumerate(zip(draws, self.members)):
            eps[k, ..., :min(width, m.config.latent_size)] = d
        return eps

    @property
    def epoch_images(self) -> int:
        """Minibatch draws per epoch: the data's `epoch_images` (trainval's count, so that a run of
        the val protocol takes the steps of its refit), or one pass over the training images."""
        return max(self.data.epoch_images, len(self.y)) if self.data.epoch_images else len(self.y)

    def epoch_order(self, n: int) -> torch.Tensor:
        """The epoch's minibatch order: passes over the training images in random order, each a
        permutation, cut at n draws (one permutation when n is the image count)."""
        passes = [torch.randperm(len(self.y), generator=self.order, device=self.device)
                  for _ in range(-(-n // len(self.y)))]
        return torch.cat(passes)[:n] if len(passes) > 1 else passes[0][:n]

    def epoch_shuffles(self, n: int) -> torch.Tensor:
        """Each step's permutation of its minibatch (z^p's shuffle), concatenated: all drawn at once
        (a launch or two an epoch, not one per step), a row of uniforms argsorted per step; the last,
        shorter batch sorts its unused places last, so its first entries permute its own rows."""
        bs, steps = self.config.batch_size, -(-n // self.config.batch_size)
        keys = torch.rand(steps, bs, generator=self.order, device=self.device)
        keys[-1, n - (steps - 1) * bs:] = 2.0  # beyond the last batch: after every uniform
        perms = keys.argsort(dim=1)
        return torch.cat([perms[:-1].flatten(), perms[-1, :n - (steps - 1) * bs]])

    def train_epoch(self) -> dict[str, dict[str, float]]:
        """One epoch (`epoch_images` minibatch draws; one pass on trainval) for every member; returns each member's per-image
        mean losses (total, vae, sc, cr, dd). The epoch's randomness is drawn first (the
        minibatch order, then each step's shuffle of z^p, from the pack's stream; each member's
        noise from its own), so the steps themselves are a fixed computation on fixed shapes,
        which on CUDA is captured once per membership and replayed (gzsl.graphs)."""
        if not self.members:
            return {}
        n, bs = self.epoch_images, self.config.batch_size
        eps = self.epoch_noise(-(-n // bs))
        order = self.epoch_order(n)
        shuffles = self.epoch_shuffles(n)
        sums = self._run_steps(order, shuffles, eps, *self.loss_weights())
        per_member = {k: (v / n).tolist() for k, v in sums.items()}  # one device sync per epoch
        for m in self.members:
            m.epoch += 1
        return {m.key: {k: v[i] for k, v in per_member.items()} for i, m in enumerate(self.members)}

    def _steps(self, order: torch.Tensor, shuffles: torch.Tensor, eps: torch.Tensor,
               *weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """An epoch's steps: minibatch `order[i:i + bs]`, its z^p shuffle `shuffles[i:i + bs]`;
        the sums of each loss term, (K,) each."""
        n, bs, w = len(order), self.config.batch_size, losses.Weights(*weights)
        sums: dict[str, torch.Tensor] = {}
        for step, i in enumerate(range(0, n, bs)):
            idx = order[i:i + bs]
            terms = self.step(self.x[idx], self.c[idx], self.y[idx], eps[:, step, :, :len(idx)], w, shuffles[i:i + bs])
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
        return sums

    def _run_steps(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """_steps, on CUDA as a captured graph: the first epoch of a membership runs eagerly (on
        a side stream: the graph's warm-up), the second is captured, then replayed while the
        members, their parameters and the epoch's shapes stay the same."""
        if not graphs.wanted(self.device, TRAINING_EPOCH):
            return self._steps(*inputs)
        with graphs.on_device(self.device):
            return self._run_captured(*inputs)

    def _run_captured(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        key = (self._membership, tuple(t.shape for t in inputs))
        if self._graph is None or self._graph[0] != key:
            self._graph = None  # another membership: its memory goes back
            if self._warm != key:
                self._warm = key
                return graphs.on_side_stream(self._steps, *inputs)
            # Captured on zeros, not on this epoch's inputs: a replay that failed to refill its inputs
            # then differs from the eager epoch that its first use is checked against (gzsl.fastpaths).
            self._graph = (key, graphs.Graph.capture(TRAINING_EPOCH, self._steps, [torch.zeros_like(t) for t in inputs]))
        graph = self._graph[1]
        if graph is None:  # the capture failed: eager for this membership, tried again at the next
            return self._steps(*inputs)
        replay = lambda: {k: v.clone() for k, v in graph(*inputs).items()}  # noqa: E731 - the next replay overwrites them
        if not fastpaths.due(TRAINING_EPOCH):
            return replay()
        sums = fastpaths.run(TRAINING_EPOCH, self._state(), replay, lambda: self._steps(*inputs))
        if not fastpaths.usable(TRAINING_EPOCH):
            self._graph = None  # its memory goes back
        return sums

    def _state(self) -> list[torch.Tensor]:
        """Every tensor an epoch's steps change: the weights and the optimizer's state."""
        return [p.detach() for p in self.model.parameters()] + self.optimizer.tensors()

    def path(self) -> str:
        """The fast paths this pack's epochs and classifiers use (gzsl.fastpaths), "eager" for none."""
        return fastpaths.path([name for name, on in (
            (TRAINING_EPOCH, graphs.wanted(self.device, TRAINING_EPOCH)), (fastpaths.ONE_CALL_ADAM, self.optimizer.one_call),
            (CLASSIFIER_EPOCH, graphs.wanted(self.device, CLASSIFIER_EPOCH))) if on])

    def step(self, x: torch.Tensor, c: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
             w: losses.Weights, shuffle: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One minibatch for every member: forward, the four losses, backward, Adam. Returns the
        loss terms, (K,) batch sums. `shuffle` permutes z^p within the batch, the members' alike
        (default: drawn from the pack's stream)."""
        if shuffle is None:
            shuffle = torch.randperm(len(y), generator=self.order, device=self.device)
        terms = losses.total(self.model, self.model(x, c, eps), x, c, y, shuffle, w)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].sum().backward()  # no weight is shared: each member gets its own loss's gradient
        self.optimizer.step()
        return terms

    def run_epoch(self, recipes: dict[str, ClassifierConfig] | None = None) -> dict[str, EpochResult]:
        """One epoch of every member, then each member's EpochResult: H every eval_every epochs of
        its own and after its last, the classifiers of all the members due fit at once; a member
        that completed or diverged leaves the pack. `recipes`: more classifiers scored after a
        member's last epoch."""
        start = time.perf_counter()
        epoch_losses = self.train_epoch()
        trained_at = time.perf_counter()
        due = {m.key: classifiers_due(m.config, m.epoch, epoch_losses[m.key], m.evaluator.config, recipes)
               for m in self.members}
        scores, trained = self.evaluate({key: classifiers for key, classifiers in due.items() if classifiers})
        end = time.perf_counter()
        results = {}
        for m in list(self.members):
            r = epoch_result(m.config, m.epoch, epoch_losses[m.key], end - start, scores.get(m.key, {}), recipes)
            r = replace(r, eval_seconds=end - trained_at if scores else 0.0, path=self.path())
            results[m.key] = replace(r, trained=trained.get(m.key)) if r.status == "completed" else r
            if r.status != "running":
                self.leave(m.key)
        return results

    def evaluate(self, due: dict[str, dict[str, ClassifierConfig]]) -> tuple[dict, dict[str, Trained]]:
        """Each member's scores (key -> {name: recipe} -> {name: Scores}), each member's classifiers
        fit on its own latents, each classifier fit for all the members that need it at once
        (gzsl.evaluation.fit_many); and each scored member as Trained (its MAIN classifier)."""
        if not due:
            return {}, {}
        evaluators = {m.key: m.evaluator for m in self.members}
        requests = [(evaluators[k], self.member(k), recipes) for k, recipes in due.items()]
        scores, trained = {}, {}
        for key, (ev, model, recipes), fitted in zip(due, requests, fit_many(requests)):
            scores[key] = {name: ev.score(model, fitted[name]) for name in recipes}
            if MAIN in fitted:
                trained[key] = Trained(model, fitted[MAIN], ev.classes)
        return scores, trained


def train(data: GZSLData, config: TrainConfig,
          recipes: dict[str, ClassifierConfig] | None = None) -> Iterator[EpochResult]:
    """Train one configuration on data.train (a pack of one), yielding one EpochResult per epoch;
    H is scored on the split's eval sets every `eval_every` epochs and after the last. Stops at
    the first non-finite loss. `recipes` (name -> classifier recipe, e.g. {"fast":
    FAST_CLASSIFIER}): the last result also carries `recipe_scores`, these recipes and MAIN fit
    on the same latents of the final model."""
    if recipes and MAIN in recipes:
        raise ValueError(f"recipe name {MAIN!r} is taken by config.classifier")
    pack = Pack(data, config)
    pack.join("run", config)
    while pack.members:
        yield pack.run_epoch(recipes)["run"]


def train_pack(data: GZSLData, configs: dict[str, TrainConfig], width: int | None = None,
               recipes: dict[str, ClassifierConfig] | None = None) -> Iterator[dict[str, EpochResult]]:
    """Train `configs` (key -> TrainConfig) as one pack from epoch 0 (its order, device and widths
    the first configuration's), yielding per epoch each active member's EpochResult."""
    first = next(iter(configs.values()))
    pack = Pack(data, first, width or max(c.latent_size for c in configs.values()))
    for key, config in configs.items():
        pack.join(key, config)
    while pack.members:
        yield pack.run_epoch(recipes)
