"""Train one Disentangled-VAE and score it: the trial of a study, usable without Ray.

`train(data, config)` is a generator: it yields one `EpochResult` per epoch, so a
caller (the CLI, a Ray Tune trainable) reports each epoch as it comes and may
stop early. The last result has status "completed" or "diverged".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import torch

from gzsl import losses, synthetic
from gzsl.data import GZSLData
from gzsl.errors import GzslError
from gzsl.evaluation import CLASSIFIERS, ClassifierConfig, Evaluator, Scores, cada_recipe
from gzsl.model import CADA_HIDDEN, DisentangledVAE, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    # The five searched hyperparameters.
    alpha: float = 1.0  # weight of KL(z^p): larger pulls z^p to the prior
    gamma: float = 1.0  # weight of the shuffling classification loss L_SC
    lam: float = 2.37  # weight of modality alignment L_MA (CADA-VAE's cross-reconstruction end value)
    latent_size: int = 64
    lr: float = 1.5e-4  # Adam (amsgrad), CADA-VAE
    # Fixed by the method.
    beta: float = 3.43  # distance weight inside L_MA: CADA-VAE's 8.13 / 2.37
    # End value of the KL warm-up, multiplying KL(z^t) + alpha * KL(z^p). CADA-VAE's 0.25:
    # at 1 the posteriors collapse to the prior on CUB-like data (H 2.6 instead of ~33).
    kl_weight: float = 0.25
    # Reparameterization noise (model.reparameterize): CADA-VAE's "cada" (method.md's default) or "textbook".
    sampling: str = "cada"
    epochs: int = 100
    batch_size: int = 50
    kl_warmup: tuple[float, float] = (0.0, 0.93)  # warm-ups as fractions of the run
    cross_warmup: tuple[float, float] = (0.21, 0.75)
    distance_warmup: tuple[float, float] = (0.06, 0.22)
    disentangle: bool = True  # False: the CADA-VAE ablation
    # Hidden widths: visual encoder, visual decoder, semantic encoder, semantic decoder.
    hidden: tuple[int, int, int, int] = CADA_HIDDEN
    # Running.
    eval_every: int = 10  # compute validation H every n epochs (and always after the last)
    # 0: train all `epochs` and score the last. n: stop after epoch n and score it (a refit scored at
    # the epoch its trial peaked on validation); the warm-ups still follow the full `epochs`.
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
class EpochResult:
    epoch: int  # 1-based
    losses: dict[str, float]  # per-image means over the epoch: total, vae, sc, cr, dd
    scores: Scores | None  # U, S, H on the split's eval sets, when evaluated this epoch
    seconds: float  # wall time of this epoch, evaluation included
    status: str  # "running", "completed" or "diverged"
    # Last result only, when train() was given `recipes`: scores per classifier recipe, MAIN
    # (config.classifier, the same as `scores`) first, all fit on the same sampled latents.
    recipe_scores: dict[str, Scores] | None = None


def default_hidden(dataset: str) -> tuple[int, int, int, int]:
    """Hidden widths for a dataset: CADA-VAE's on real data, the preset's on synthetic ones."""
    spec = synthetic.PRESETS.get(dataset)
    return spec.hidden if spec is not None else CADA_HIDDEN


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible (Tune sets CUDA_VISIBLE_DEVICES per trial), else 'cpu'."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GzslError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
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


def build_model(data: GZSLData, config: TrainConfig) -> DisentangledVAE:
    return DisentangledVAE(ModelConfig(
        feature_dim=data.feature_dim, semantic_dim=data.semantic_dim,
        num_train_classes=len(data.seen_classes), latent_size=config.latent_size,
        visual_encoder_hidden=config.hidden[0], visual_decoder_hidden=config.hidden[1],
        semantic_encoder_hidden=config.hidden[2], semantic_decoder_hidden=config.hidden[3],
        disentangle=config.disentangle, sampling=config.sampling,
    ))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # fused: one kernel over all parameters instead of a chain of per-tensor ops;
    # in a plain implementation Adam's update was 41% of a step.
    fused = torch.device(config.device).type in ("cpu", "cuda")
    return torch.optim.Adam(model.parameters(), lr=config.lr, amsgrad=True, fused=fused)


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
    epochs and after the last, where `recipes` are scored too; none after a non-finite loss."""
    if not math.isfinite(epoch_losses["total"]):
        return {}
    last = epoch == final_epoch(config)
    if last or (config.eval_every > 0 and epoch % config.eval_every == 0):
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


def vae_epochs(model: DisentangledVAE, optimizer: torch.optim.Optimizer, data: GZSLData,
               config: TrainConfig) -> Iterator[dict[str, float]]:
    """The VAE phase: one pass over the training images per epoch, yielding the epoch's
    per-image mean losses. Batches are slices of tensors already on the device."""
    device = data.train.x.device
    x_all, c_all, y_all = training_tensors(data)
    n, bs = len(y_all), config.batch_size
    model.train()
    for epoch in range(config.epochs):
        w = weights(config, epoch)
        sums: dict[str, torch.Tensor] = {}
        order = torch.randperm(n, device=device)
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            terms = train_step(model, optimizer, x_all[idx], c_all[idx], y_all[idx], w)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
        yield {k: v.item() / n for k, v in sums.items()}  # one device sync per epoch


def train_step(model: DisentangledVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, c: torch.Tensor,
               y: torch.Tensor, w: losses.Weights) -> dict[str, torch.Tensor]:
    """One minibatch: forward, the four losses, backward, Adam. Returns the loss terms (batch sums)."""
    terms = losses.total(model, model(x, c), x, c, y, torch.randperm(len(y), device=y.device), w)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    optimizer.step()
    return terms


def train(data: GZSLData, config: TrainConfig,
          recipes: dict[str, ClassifierConfig] | None = None) -> Iterator[EpochResult]:
    """Train on data.train, yielding one EpochResult per epoch; H is scored on the split's
    eval sets every `eval_every` epochs and after the last. Stops at the first non-finite loss.
    `recipes` (name -> classifier recipe, e.g. {"fast": FAST_CLASSIFIER}): the last result also
    carries `recipe_scores`, these recipes and MAIN fit on the same latents of the final model."""
    if recipes and MAIN in recipes:
        raise ValueError(f"recipe name {MAIN!r} is taken by config.classifier")
    classifier = classifier_config(config, data.name)
    torch.manual_seed(config.seed)
    data = data.to(config.device)
    model = build_model(data, config).to(config.device)
    evaluator = Evaluator(data, classifier, seed=config.seed)
    start = time.perf_counter()
    for epoch, epoch_losses in enumerate(vae_epochs(model, make_optimizer(model, config), data, config), 1):
        due = classifiers_due(config, epoch, epoch_losses, classifier, recipes)
        scores = evaluator.compare(model, due) if due else {}
        result = epoch_result(config, epoch, epoch_losses, time.perf_counter() - start, scores, recipes)
        yield result
        if result.status != "running":  # diverged, or the epoch to score reached
            return
        start = time.perf_counter()  # the caller's time between epochs is not ours
