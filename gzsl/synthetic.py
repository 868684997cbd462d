"""A seeded synthetic GZSL benchmark with the shapes of the xlsa17 files.

Each class k has hidden factors u_k. Its attribute vector is a noisy, squashed
view of u_k (unit L2 norm, like xlsa17's `att`); its images are a linear image
of u_k plus a strong class-independent nuisance (pose, background: what z^p
should absorb) plus noise, through a ReLU like ResNet pool features. Semantics
explain the classes only in part, so unseen classes are genuinely harder.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gzsl.data import RawBenchmark


@dataclass(frozen=True)
class SyntheticSpec:
    name: str
    n_seen: int  # classes with training images
    n_unseen: int  # test-unseen classes
    n_val: int  # seen classes set aside as validation classes (train_loc / val_loc)
    feature_dim: int  # D1
    semantic_dim: int  # D2
    images_per_class: int
    test_seen_fraction: float  # share of seen images in test_seen (xlsa17: 20%)
    factor_dim: int = 24  # hidden class factors u_k
    nuisance_dim: int = 8  # class-independent factors of variation
    nuisance_scale: float = 2.0  # nuisance spread relative to the class signal
    noise: float = 0.5  # per-feature noise
    within_class: float = 0.6  # per-image jitter of u_k: makes neighbouring classes overlap
    private: float = 0.5  # class appearance that no attribute describes
    attribute_noise: float = 0.6  # how much of an attribute vector is not u_k
    seed: int = 0
    # Hidden widths the model uses by default on this preset (CADA-VAE's for CUB-sized data).
    hidden: tuple[int, int, int, int] = (1560, 1660, 1450, 665)


PRESETS = {
    # Seconds to train: tests and the demo study.
    "synth-small": SyntheticSpec("synth-small", n_seen=32, n_unseen=8, n_val=8, feature_dim=512,
                                 semantic_dim=40, images_per_class=60, test_seen_fraction=0.2,
                                 hidden=(512, 512, 256, 128)),
    # CUB's shapes: 200 classes (150 / 50), 312 attributes, 2048 features, 11788 images
    # (trainval 7057, test_seen 1764, test_unseen 2967), 50 validation classes.
    "synth-cub": SyntheticSpec("synth-cub", n_seen=150, n_unseen=50, n_val=50, feature_dim=2048,
                               semantic_dim=312, images_per_class=59, test_seen_fraction=0.2,
                               nuisance_dim=16, nuisance_scale=3.0, within_class=1.0, private=1.0,
                               attribute_noise=1.5),
}


@lru_cache(maxsize=4)
def generate(name: str) -> RawBenchmark:
    """The preset's benchmark; same name, same arrays."""
    return make(PRESETS[name])


def make(spec: SyntheticSpec) -> RawBenchmark:
    rng = np.random.default_rng(spec.seed)
    n_classes = spec.n_seen + spec.n_unseen
    u = rng.standard_normal((n_classes, spec.factor_dim))

    # Attributes: squashed noisy projections of u_k, non-negative, unit L2 norm per class.
    to_att = rng.standard_normal((spec.factor_dim, spec.semantic_dim)) / np.sqrt(spec.factor_dim)
    logits = u @ to_att + spec.attribute_noise * rng.standard_normal((n_classes, spec.semantic_dim))
    att = 1.0 / (1.0 + np.exp(-2.0 * logits))
    att /= np.linalg.norm(att, axis=1, keepdims=True)

    labels = np.repeat(np.arange(n_classes), spec.images_per_class)
    n = len(labels)
    to_visual = rng.standard_normal((spec.factor_dim, spec.feature_dim)) / np.sqrt(spec.factor_dim)
    to_nuisance = rng.standard_normal((spec.nuisance_dim, spec.feature_dim)) / np.sqrt(spec.nuisance_dim)
    nuisance = spec.nuisance_scale * rng.standard_normal((n, spec.nuisance_dim))
    private = spec.private * rng.standard_normal((n_classes, spec.feature_dim))
    jitter = spec.within_class * rng.standard_normal((n, spec.factor_dim))
    features = ((u[labels] + jitter) @ to_visual + private[labels] + nuisance @ to_nuisance
                + spec.noise * rng.standard_normal((n, spec.feature_dim)) + 1.0)
    features = np.maximum(features, 0.0).astype(np.float32)

    # Splits like xlsa17's: class ids are shuffled so seen/unseen are not contiguous.
    order = rng.permutation(n_classes)
    seen = order[spec.n_unseen:]  # the first n_unseen classes of the order are unseen
    val_classes = seen[: spec.n_val]
    is_seen = np.isin(labels, seen)
    seen_images = np.flatnonzero(is_seen)
    test_seen = np.sort(rng.choice(seen_images, size=int(round(spec.test_seen_fraction * len(seen_images))),
                                   replace=False))
    trainval = np.setdiff1d(seen_images, test_seen)
    is_val = np.isin(labels[trainval], val_classes)
    return RawBenchmark(
        name=spec.name, features=features, labels=labels.astype(np.int64),
        semantics=att.astype(np.float32), trainval=trainval, test_seen=test_seen,
        test_unseen=np.flatnonzero(~is_seen), train=trainval[~is_val], val=trainval[is_val],
    )
