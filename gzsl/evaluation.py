"""Final softmax classifier and GZSL scores (method.md, "Final classifier", "Metric").

After the VAEs train, the classifier learns from sampled z^t: seen classes from
their images' posteriors, unseen classes from their semantic posteriors. Images
are then classified from mu^t among ALL classes; U, S are per-class top-1
accuracies averaged over classes, H their harmonic mean.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gzsl import fastpaths, graphs, registry
from gzsl.data import GZSLData
from gzsl.model import sample


@dataclass(frozen=True)
class ClassifierConfig:
    seen_visual_samples: int = 200  # z^t per seen class from its images (CADA-VAE, CUB)
    seen_semantic_samples: int = 0  # z^t per seen class from its semantics (CADA-VAE uses 0 on CUB)
    unseen_semantic_samples: int = 400  # z^t per unseen class from its semantics
    # The fit: CADA-VAE's recipe, batch 32, lr 1e-3, 23 epochs on CUB (about 36k tiny steps; cada_recipe).
    epochs: int = 23
    batch_size: int = 32
    lr: float = 1e-3
    beta1: float = 0.5
    encode_batch: int = 4096  # rows per encoder call when encoding images (no grad)


CADA_RECIPE = ClassifierConfig()  # what published rows report, and what validation H uses (CUB's epochs)


def cada_recipe(dataset: str) -> ClassifierConfig:
    """CADA-VAE's final classifier recipe with the dataset's number of epochs (method.md; the
    registry's classifier_epochs): an attribute preset takes its source benchmark's (cub-sim CUB's),
    a synthetic preset the recipe's own."""
    row = registry.settings_of(dataset)
    epochs = row.classifier_epochs if row is not None and row.classifier_epochs else CADA_RECIPE.epochs
    return replace(CADA_RECIPE, epochs=epochs)
# 60-75 large steps: a few times cheaper, but it does not rank configurations as the recipe does
# (benchmarks/val_test_agreement.py: Spearman 0.63 on synth-small's validation split), so it is
# only a cheap option (`classifier = "fast"`) and the second number of the final refit.
FAST_CLASSIFIER = ClassifierConfig(epochs=3, batch_size=2048, lr=5e-2)
CLASSIFIERS = {"cada": CADA_RECIPE, "fast": FAST_CLASSIFIER}


class Scores(NamedTuple):
    U: float  # per-class accuracy on unseen-class images, %
    S: float  # per-class accuracy on seen-class images, %
    H: float  # harmonic mean, %


class LatentClassifier(NamedTuple):
    """A fitted final classifier: logits over all classes (Evaluator.classes' order) from mu^t."""

    weight: torch.Tensor  # (L, C)
    bias: torch.Tensor  # (C,)

    def __call__(self, mu: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, mu, self.weight)


def harmonic_mean(u: float, s: float) -> float:
    return 0.0 if u + s == 0 else 2 * u * s / (u + s)


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Top-1 accuracy per class present in y, averaged over those classes, in %."""
    total = torch.bincount(y, minlength=num_classes)
    correct = torch.bincount(y[pred == y], minlength=num_classes)
    present = total > 0
    return 100.0 * (correct[present].double() / total[present].double()).mean().item()


class Evaluator:
    """Scores a model on one split's eval sets. Built once per run: the class
    numbering and which training images feed each seen class's samples are fixed
    up front, so each evaluation is a few large matmuls and a short classifier fit."""

    def __init__(self, data: GZSLData, config: ClassifierConfig = ClassifierConfig(), seed: int = 0):
        self.data, self.config = data, config
        device = data.train.x.device
        self.classes = torch.cat([data.seen_classes, data.unseen_classes])  # local id -> class id
        to_local = torch.full((len(data.semantics),), -1, dtype=torch.long, device=device)
        to_local[self.classes] = torch.arange(len(self.classes), device=device)
        self.seen_y = to_local[data.eval_seen.y]
        self.unseen_y = to_local[data.eval_unseen.y]
        rng = np.random.default_rng(seed)
        idx, y = _cycle_per_class(data.train.y.cpu().numpy(), to_local.cpu().numpy(),
                                  config.seen_visual_samples, rng)
        self.visual_idx = torch.from_numpy(idx).to(device)  # rows of train.x, repeated for small classes
        self.visual_y = torch.from_numpy(y).to(device)
        self.seed = seed

    @torch.no_grad()
    def latent_training_set(self, model) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled z^t and local labels for the final classifier of a one-member model."""
        c, data = self.config, self.data
        sampling = model.config.sampling
        # Encode each training image once; repetition only redraws the noise.
        mu, logvar = _encode_t(model.encoder_v, data.train.x, c.encode_batch)
        parts = [(sample(mu[self.visual_idx], logvar[self.visual_idx], sampling), self.visual_y)]
        n_seen = len(data.seen_classes)
        for classes, n, offset in ((data.seen_classes, c.seen_semantic_samples, 0),
                                   (data.unseen_classes, c.unseen_semantic_samples, n_seen)):
            if n == 0:
                continue
            mu_s, logvar_s = _encode_t(model.encoder_s, data.semantics[classes], c.encode_batch)
            local = torch.arange(len(classes), device=mu_s.device) + offset
            parts.append((sample(mu_s.repeat_interleave(n, 0), logvar_s.repeat_interleave(n, 0), sampling),
                          local.repeat_interleave(n)))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def __call__(self, model) -> Scores:
        """Fit the final classifier on sampled latents and score the eval sets. Runs on a forked,
        seeded random stream: evaluating (or not) never changes the training that follows."""
        return self.compare(model, {"main": self.config})["main"]

    def compare(self, model, recipes: dict[str, ClassifierConfig]) -> dict[str, Scores]:
        """Scores of several classifier recipes fit on the SAME sampled latents (the sample sizes
        come from this evaluator's config), e.g. {"cada": CADA_RECIPE, "fast": FAST_CLASSIFIER}."""
        return compare_many([(self, model, recipes)])[0]

    @torch.no_grad()
    def score(self, model, classifier) -> Scores:
        """U, S, H of images classified from mu^t (no noise) among all classes."""
        k = len(self.classes)
        s = per_class_accuracy(predict(model, classifier, self.data.eval_seen.x, self.config.encode_batch), self.seen_y, k)
        u = per_class_accuracy(predict(model, classifier, self.data.eval_unseen.x, self.config.encode_batch),
                               self.unseen_y, k)
        return Scores(U=u, S=s, H=harmonic_mean(u, s))


@torch.no_grad()
def logits(model, classifier, x: torch.Tensor, batch: int = CADA_RECIPE.encode_batch) -> torch.Tensor:
    """Each image's scores over all classes (columns in Evaluator.classes' order), from mu^t: what
    `predict` takes the argmax of, and what a calibration (a constant off the seen columns) shifts."""
    return classifier(_encode_t(model.encoder_v, x, batch)[0])


@torch.no_grad()
def predict(model, classifier, x: torch.Tensor, batch: int = CADA_RECIPE.encode_batch) -> torch.Tensor:
    """Each image's class among all classes (its position in Evaluator.classes), from mu^t."""
    return logits(model, classifier, x, batch).argmax(1)


Request = tuple[Evaluator, nn.Module, dict[str, ClassifierConfig]]


def compare_many(requests: list[Request]) -> list[dict[str, Scores]]:
    """Evaluator.compare for many models at once (a pack's members): fit_many, then each model
    scored with each of its classifiers."""
    fitted = fit_many(requests)
    return [{name: ev.score(model, fitted[i][name]) for name in recipes}
            for i, (ev, model, recipes) in enumerate(requests)]


def fit_many(requests: list[Request]) -> list[dict[str, LatentClassifier]]:
    """The final classifiers of many models at once (a pack's members): each model's latents are
    sampled on a stream seeded by its evaluator's seed, as alone; then each classifier that
    several models need (same name and recipe) is fit for all of them together, one fused fit
    (fit_classifiers): their starting weights and shared minibatch order continue the stream,
    classifier after classifier, so one request is the solo evaluation, and adding a recipe
    never changes the scores of those before it. Runs on a forked random stream: evaluating
    never changes the training that follows."""
    device = requests[0][0].data.train.x.device
    modes = [model.training for _, model, _ in requests]
    for _, model, _ in requests:
        model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            latents, groups = [], {}
            for i, (ev, model, recipes) in enumerate(requests):
                torch.manual_seed(ev.seed)
                latents.append(ev.latent_training_set(model))
                for name, recipe in recipes.items():
                    groups.setdefault((name, recipe, ev.config), []).append(i)
            fitted = [{} for _ in requests]
            for (name, recipe, _), members in groups.items():
                num_classes = len(requests[members[0]][0].classes)
                for i, classifier in zip(members, _fit_together([latents[i] for i in members], num_classes, recipe)):
                    fitted[i][name] = classifier
            return fitted
    finally:
        for (_, model, _), mode in zip(requests, modes):
            model.train(mode)


def _fit_together(latents: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int, recipe: ClassifierConfig):
    """One classifier per (z, y) in `latents` (same y), fit at once: narrower latents are padded
    with zero dimensions, which leave their weights at exactly 0, as the narrower model's."""
    width = max(z.shape[1] for z, _ in latents)
    pad = lambda t: F.pad(t, (0, width - t.shape[-1]))  # noqa: E731
    start = [_initial_classifier(z.shape[1], num_classes, z.device) for z, _ in latents]
    w, b = fit_classifiers(torch.stack([pad(z) for z, _ in latents]), latents[0][1], recipe,
                           torch.stack([pad(w0).t() for w0, _ in start]), torch.stack([b0 for _, b0 in start])[:, None])
    return [LatentClassifier(w[k, :z.shape[1]], b[k, 0]) for k, (z, _) in enumerate(latents)]


def fit_classifier(z: torch.Tensor, y: torch.Tensor, num_classes: int, config: ClassifierConfig) -> nn.Linear:
    """Softmax classifier Linear(latent, classes) trained with Adam on (z, y): fit_classifiers
    for one model."""
    w, b = _initial_classifier(z.shape[1], num_classes, z.device)
    w, b = fit_classifiers(z[None], y, config, w.t()[None], b[None, None])
    classifier = nn.Linear(z.shape[1], num_classes).to(z.device)
    with torch.no_grad():
        classifier.weight.copy_(w[0].t())
        classifier.bias.copy_(b[0, 0])
    return classifier.eval()


def fit_classifiers(z: torch.Tensor, y: torch.Tensor, config: ClassifierConfig, w: torch.Tensor,
                    b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K softmax classifiers trained with Adam at once, one per model: z (K, N, latent) the
    models' sampled latents, y (N,) their shared labels, w (K, latent, classes) and b (K, 1,
    classes) the starting weights. Every step is one baddbmm for all K, so K fits dispatch the
    operators of one. Returns the trained (w, b).

    The cross-entropy gradient is written out (softmax minus one-hot) instead of going through
    autograd: the same steps, in less time (docs/benchmarks.md), and this runs every epoch."""
    with _one_cpu_thread(z.device):
        return _fit(z, y, config, w.contiguous().clone(), b.contiguous().clone())


@contextmanager
def _one_cpu_thread(device: torch.device):
    """On a CPU, the classifier's steps are too small to share between threads: each operator's
    thread barrier costs more than it saves, and when another process holds a core the barrier
    waits for it (benchmarks/pack_throughput.py, the classifier table beside a busy core: 25x
    slower on 2 threads than on 1). torch's thread count is the process's; this is restored after."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit(z: torch.Tensor, y: torch.Tensor, config: ClassifierConfig, w: torch.Tensor, b: torch.Tensor):
    """fit_classifiers' steps, on w and b (copies) in place: each epoch a new random order of the
    rows (torch's stream on z's device), then its minibatches; on CUDA each epoch replays as one
    captured graph (gzsl.graphs)."""
    n, device = len(y), z.device
    adam = _Adam([w, b], config)
    minus_one = torch.full((len(z), config.batch_size, 1), -1.0, device=device)

    @torch.no_grad()
    def epoch(perm: torch.Tensor) -> None:
        """One pass over the rows `perm` in that order: no host sync, so a graph can capture it."""
        for i in range(0, len(perm), config.batch_size):
            idx = perm[i:i + config.batch_size]
            z_b, y_b = z[:, idx], y[idx]
            rows = len(y_b)
            grad = torch.softmax(torch.baddbmm(b, z_b, w), dim=2)  # d(mean CE)/d(logits) * batch
            # minus one at each row's label: one operator, the same float as grad[k, r, y] -= 1
            grad.scatter_add_(2, y_b.view(1, rows, 1).expand(len(z), rows, 1), minus_one[:, :rows])
            grad /= rows
            adam.step([torch.bmm(z_b.transpose(1, 2), grad), grad.sum(1, keepdim=True)])

    with graphs.on_device(device):
        run = _captured_epoch(epoch, n, config.batch_size, adam.tensors()) \
            if graphs.wanted(device, CLASSIFIER_EPOCH) else None
        for _ in range(config.epochs):
            perm = torch.randperm(n, device=device)
            if run is not None and fastpaths.due(CLASSIFIER_EPOCH):  # its first use: checked on this epoch
                scores = lambda: torch.baddbmm(b, z[:, :config.batch_size], w)  # noqa: E731
                fastpaths.run(CLASSIFIER_EPOCH, adam.tensors(), lambda: (run(perm), scores())[1],
                              lambda: (epoch(perm), scores())[1])
                run = run if fastpaths.usable(CLASSIFIER_EPOCH) else None
            else:
                (run or epoch)(perm)
    return w, b


CLASSIFIER_EPOCH = fastpaths.CLASSIFIER_GRAPH  # a captured classifier epoch (gzsl.graphs, gzsl.fastpaths)


def _captured_epoch(epoch, n: int, batch_size: int, state: list[torch.Tensor]) -> "graphs.Graph | None":
    """`epoch` captured as a CUDA graph (None where it cannot be). A step of each batch shape runs
    first, on a side stream, as a warm-up, and `state` (every tensor an epoch changes) is put back
    after it: the fit starts where it would have."""
    saved = [t.clone() for t in state]
    perm = torch.arange(n, device=state[0].device)
    graphs.on_side_stream(lambda: (epoch(perm[:batch_size]), epoch(perm[:n % batch_size])))
    for t, before in zip(state, saved):
        t.copy_(before)
    return graphs.Graph.capture(CLASSIFIER_EPOCH, epoch, [perm])


class _Adam:
    """torch.optim.Adam (fused kernel, no amsgrad) on the classifier's tensors, its state made up
    front: the same kernel and steps as `torch.optim.Adam([w, b], fused=True)`, whose lazy first
    step a CUDA graph could not capture."""

    def __init__(self, params: list[torch.Tensor], config: ClassifierConfig):
        self.params, self.config = params, config
        self.exp_avgs = [torch.zeros_like(p) for p in params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in params]
        self.steps = [torch.zeros((), device=p.device) for p in params]  # as fused Adam keeps them
        fused = params[0].device.type in ("cpu", "cuda")  # where torch has the fused kernel
        self.fallback = None if fused else torch.optim.Adam(params, lr=config.lr, betas=(config.beta1, 0.999))

    def tensors(self) -> list[torch.Tensor]:
        """Everything a step changes."""
        return [*self.params, *self.exp_avgs, *self.exp_avg_sqs, *self.steps]

    def step(self, grads: list[torch.Tensor]) -> None:
        if self.fallback is not None:  # a device without torch's fused Adam
            for p, g in zip(self.params, grads):
                p.grad = g
            self.fallback.step()
            return
        torch._foreach_add_(self.steps, 1)
        torch._fused_adam_(self.params, grads, self.exp_avgs, self.exp_avg_sqs, [], self.steps, amsgrad=False,
                           lr=self.config.lr, beta1=self.config.beta1, beta2=0.999, weight_decay=0.0, eps=1e-8,
                           maximize=False)


def _initial_classifier(latent: int, num_classes: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear's initial (weight, bias), drawn on the CPU stream as nn.Linear draws them."""
    init = nn.Linear(latent, num_classes)
    return init.weight.detach().to(device), init.bias.detach().to(device)


def _encode_t(encoder, x: torch.Tensor, batch: int):
    """(mu^t, logvar^t), (N, L) each, of a one-member model's encoder, `batch` rows at a time."""
    if len(encoder.hidden.weight) != 1:
        raise ValueError(f"evaluation scores one member, got {len(encoder.hidden.weight)}: use model.member(i)")
    outs = [encoder.encode_t(x[None, i:i + batch]) for i in range(0, len(x), batch)]
    return torch.cat([o[0][0] for o in outs]), torch.cat([o[1][0] for o in outs])


def _cycle_per_class(labels: np.ndarray, to_local: np.ndarray, per_class: int, rng: np.random.Generator):
    """For each class, `per_class` image rows: a random order of its images, repeated as needed
    (CADA-VAE draws without replacement from big classes and repeats small ones)."""
    idx, ys = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        idx.append(np.resize(rows, per_class))
        ys.append(np.full(per_class, to_local[c]))
    return np.concatenate(idx).astype(np.int64), np.concatenate(ys).astype(np.int64)
