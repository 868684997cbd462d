"""A seeded synthetic GZSL benchmark with the shapes, and the difficulties, of real xlsa17 data.

Built so that a broken model fails on it (a benchmark that cannot fail tells nothing):

- Classes resemble each other: each class's hidden factors u_k are its family's centre
  plus a smaller class offset (CUB's 200 birds fall into a few dozen look-alike genera).
- Attributes only partly determine appearance: they are a noisy, squashed view of part of
  u_k; the rest of u_k, and a private per-class look, no attribute describes.
- Appearance is a non-linear function of the factors, so the semantic -> visual map
  cannot be read off linearly.
- A class-independent nuisance (pose, background, lighting: what z^p should absorb)
  dominates the raw features, and a per-image gain makes them heavy-tailed.
- Features are ResNet-pool-like: non-negative, many exact zeros, a long right tail. After
  the MinMax scaling of the loader most values sit near 0, so the reconstruction signal
  per dimension is weak against the KL term, as on real ResNet features; a KL weight of
  1 collapses the posteriors here as it does there.

`cub-sim` (ATTRIBUTE_PRESETS) keeps the same generator but takes its classes from a real file:
CUB's 312 attributes and its proposed class split, read from the xlsa17 `CUB/att_splits.mat`
(gzsl.data.read_att_splits); only the image features are generated, and its look-alike classes
are CUB's own (docs/benchmarks.md, "cub-sim": what it shows and where it falls short).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from gzsl.data import AttSplits, RawBenchmark, read_att_splits
from gzsl.errors import DataError


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
    families: int = 8  # groups of look-alike classes
    class_spread: float = 0.5  # class offset from its family centre (centres have spread 1)
    described: float = 0.75  # share of the factors that attributes describe
    attribute_noise: float = 0.5  # how much of an attribute vector is not u_k
    private: float = 0.3  # class appearance that no attribute describes
    within_class: float = 0.9  # per-image jitter of the class factors
    nuisance_dim: int = 8  # class-independent factors of variation
    nuisance_scale: float = 1.2  # nuisance spread relative to the class signal
    gain_spread: float = 0.25  # log-std of a per-image multiplicative gain (heavy tail)
    sparsity_bias: float = 0.5  # shifts the pre-activations: many exact zeros, below 0 more
    noise: float = 0.6  # per-feature noise
    seed: int = 0
    # Hidden widths the model uses by default on this preset (CADA-VAE's for CUB-sized data).
    hidden: tuple[int, int, int, int] = (1560, 1660, 1450, 665)


PRESETS = {
    # A minute to train at the defaults: tests and the demo study. 100 images per class give
    # an epoch enough steps for method.md's schedule to work at its default learning rate.
    "synth-small": SyntheticSpec("synth-small", n_seen=32, n_unseen=8, n_val=8, feature_dim=512,
                                 semantic_dim=40, images_per_class=100, test_seen_fraction=0.2,
                                 families=6, hidden=(512, 512, 256, 128)),
    # CUB's shapes: 200 classes (150 / 50), 312 attributes, 2048 features, 11800 images
    # (trainval 7080, test_seen 1770, test_unseen 2950), 50 validation classes. The heavier
    # per-image gain puts the MinMax-scaled mean near 0.05, as on ResNet features: with the
    # lighter one of synth-small, 2048 dimensions carried enough class signal that KL weight
    # 1 did not collapse (H 48 vs 48) and S reached 93. A per-image jitter of 1.3 (against 1.0)
    # keeps seen classes' accuracy under 90 (S 91.6 at 1.0): a linear probe on the raw
    # features scores 88% on test_seen (95% at 1.0), and CUB's images vary as much within a class.
    "synth-cub": SyntheticSpec("synth-cub", n_seen=150, n_unseen=50, n_val=50, feature_dim=2048,
                               semantic_dim=312, images_per_class=59, test_seen_fraction=0.2,
                               factor_dim=32, families=30, nuisance_dim=16, nuisance_scale=1.5,
                               within_class=1.3, gain_spread=0.5),
}


def preset(name: str) -> SyntheticSpec | None:
    """A synthetic preset by name, None for a name that is none: "synth-small", or another draw of
    it, "synth-small@3": the same shapes and settings, the generator seeded with 3 (other classes,
    attributes and images). A test H over a few unseen classes depends on which classes were
    drawn; a result on one draw is checked on others (docs/benchmarks.md)."""
    base, at, draw = name.partition("@")
    if base not in PRESETS or (at and not (draw.isdigit() and str(int(draw)) == draw)):
        return None
    return replace(PRESETS[base], name=name, seed=int(draw)) if at else PRESETS[base]


def fingerprint(name: str, overrides: dict | None = None) -> str:
    """A short hash of a preset's settings (a synthetic or an attribute preset, with `overrides`):
    benchmark results name the data they came from. An attribute preset's hash does not cover the
    file it reads."""
    import hashlib

    spec = replace(preset(name) or ATTRIBUTE_PRESETS[name], **(overrides or {}))
    return hashlib.sha1(repr(spec).encode()).hexdigest()[:10]


def is_preset(name: str) -> bool:
    return preset(name) is not None or name in ATTRIBUTE_PRESETS


def hidden(name: str) -> tuple[int, int, int, int] | None:
    """The hidden widths a preset trains with by default; None for a name that is no preset."""
    spec = preset(name) or ATTRIBUTE_PRESETS.get(name)
    return spec.hidden if spec is not None else None


@lru_cache(maxsize=4)
def generate(name: str) -> RawBenchmark:
    """The preset's benchmark (a name `preset` knows); same name, same arrays."""
    return make(preset(name))


def class_factors(spec: SyntheticSpec, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """u_k: family centre + class offset, scaled to unit variance per factor."""
    family = rng.integers(spec.families, size=n_classes)
    centres = rng.standard_normal((spec.families, spec.factor_dim))
    u = centres[family] + spec.class_spread * rng.standard_normal((n_classes, spec.factor_dim))
    return u / np.sqrt(1 + spec.class_spread ** 2)


def attributes(spec: SyntheticSpec, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Squashed noisy projections of the described factors; non-negative, unit L2 norm per class
    (like xlsa17's `att`)."""
    d = max(1, int(round(spec.described * spec.factor_dim)))
    to_att = rng.standard_normal((d, spec.semantic_dim)) / np.sqrt(d)
    logits = u[:, :d] @ to_att + spec.attribute_noise * rng.standard_normal((len(u), spec.semantic_dim))
    att = 1.0 / (1.0 + np.exp(-2.0 * (logits - 0.5)))
    return att / np.linalg.norm(att, axis=1, keepdims=True)


def features(spec: SyntheticSpec, u: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ResNet-pool-like image features: a non-linear image of (class factors + jitter), a private
    class look, a dominant nuisance and noise, through a ReLU, times a per-image gain."""
    n, D, k = len(labels), spec.feature_dim, spec.factor_dim
    mix = rng.standard_normal((k, k)) / np.sqrt(k)  # non-linear appearance of the factors
    to_visual = rng.standard_normal((2 * k, D)) / np.sqrt(2 * k)
    to_nuisance = rng.standard_normal((spec.nuisance_dim, D)) / np.sqrt(spec.nuisance_dim)
    private = spec.private * rng.standard_normal((len(u), D))
    share = getattr(spec, "active_share", 1.0)  # AttributeSpec only: the synthetic presets draw as before
    bias = spec.sparsity_bias
    if share < 1:  # the look and the nuisance reach these features only; the others, "off", are mostly 0
        reached = rng.random(D) < share
        to_visual, private, to_nuisance = to_visual * reached, private * reached, to_nuisance * reached
        bias = np.where(reached, spec.sparsity_bias, -spec.noise)  # off: noise below 0, a few small values
    features = np.empty((n, D), dtype=np.float32)
    for rows in np.array_split(np.arange(n), max(1, n // 2048)):  # bounded memory at CUB size
        h = u[labels[rows]] + spec.within_class * rng.standard_normal((len(rows), k))
        look = np.concatenate([h, np.tanh(2.0 * h @ mix)], axis=1)
        nuisance = spec.nuisance_scale * rng.standard_normal((len(rows), spec.nuisance_dim))
        pre = (look @ to_visual + private[labels[rows]] + nuisance @ to_nuisance
               + spec.noise * rng.standard_normal((len(rows), D)) + bias)
        gain = np.exp(spec.gain_spread * rng.standard_normal((len(rows), 1)))
        x = gain * np.maximum(pre, 0.0)
        tail = getattr(spec, "feature_tail", 0.0)  # AttributeSpec only: the synthetic presets draw as before
        if tail:
            x *= np.exp(tail * rng.standard_normal((len(rows), D)) - tail ** 2 / 2)
        features[rows] = x
    return features


def make(spec: SyntheticSpec) -> RawBenchmark:
    rng = np.random.default_rng(spec.seed)
    n_classes = spec.n_seen + spec.n_unseen
    u = class_factors(spec, n_classes, rng)
    att = attributes(spec, u, rng)
    labels = np.repeat(np.arange(n_classes), spec.images_per_class)
    x = features(spec, u, labels, rng)

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
        name=spec.name, features=x, labels=labels.astype(np.int64),
        semantics=att.astype(np.float32), trainval=trainval, test_seen=test_seen,
        test_unseen=np.flatnonzero(~is_seen), train=trainval[~is_val], val=trainval[is_val],
    )


# --------------------------------------------------------------------------- real attributes


@dataclass(frozen=True)
class AttributeSpec:
    """A benchmark whose classes, attributes and class split are a real xlsa17 file's and whose
    image features are generated (by `features`, as the synthetic presets')."""

    name: str
    source: str  # the xlsa17 folder whose att_splits.mat it reads: "CUB"
    n_classes: int  # a seeded subset of the file's classes, keeping its unseen and validation shares
    images_per_class: int
    test_seen_fraction: float = 0.2  # share of each seen class's images in test_seen (xlsa17: 20%)
    # Where the file has no train_loc/val_loc (CUB's): the share of seen classes taken as validation
    # classes (method.md: CUB 50 of 150).
    val_share: float = 1 / 3
    # The source's image order, which lets att_splits.mat's image index arrays name the classes
    # (cub_class_split): classes in the order of the number their name starts with, at most this
    # many images each (CUB-200-2011: 41 to 60).
    max_images_per_class: int = 60
    described_dim: int = 24  # class factors read from the attributes (a projection of the standardised attributes)
    undescribed_dim: int = 8  # class factors no attribute describes
    feature_dim: int = 2048
    private: float = 0.3  # class appearance that no attribute describes, per feature
    within_class: float = 1.0  # per-image jitter of the class factors
    nuisance_dim: int = 16  # class-independent factors of variation
    nuisance_scale: float = 1.5  # nuisance spread relative to the class signal
    gain_spread: float = 0.5  # log-std of a per-image multiplicative gain (heavy tail)
    # log-std of a multiplicative noise per image and feature (mean 1): a heavy right tail in every
    # dimension, as ResNet pool features have, that no latent can encode
    feature_tail: float = 0.0
    # share of the features the image's content (its class's look and the nuisance) reaches: most of
    # ResNet's 2048 ImageNet channels barely respond to birds; the others are noise below 0 (mostly 0)
    active_share: float = 1.0
    sparsity_bias: float = 0.5
    noise: float = 0.6
    seed: int = 0
    hidden: tuple[int, int, int, int] = (1560, 1660, 1450, 665)

    @property
    def factor_dim(self) -> int:  # what `features` reads
        return self.described_dim + self.undescribed_dim


ATTRIBUTE_PRESETS = {
    # Half of CUB's classes (75 seen / 25 unseen, 25 of the seen as validation classes, CUB's proposed
    # split and shares), 25 images each: a default run of 100 epochs on the validation split, H
    # every 5 epochs, takes 86-97 s on one core. Chosen by benchmarks/experiments/cub_sim_sweep.py
    # (docs/benchmarks.md, "cub-sim"): a light per-image gain (0.25) and a per-image jitter of 0.7
    # are where the Disentangled-VAE beats its ablation; with a gain of 0.5 (at any nuisance and
    # jitter tried), a heavy tail per feature or fewer active features, it fell 10-16 H below it. Hidden widths
    # smaller than CUB's: a step costs a third, and at CUB's widths (1560, 1660, 1450, 665) the
    # curve rose faster and S saturated (92.7 on validation) while H declined.
    "cub-sim": AttributeSpec("cub-sim", source="CUB", n_classes=100, images_per_class=25, within_class=0.7,
                             gain_spread=0.25, hidden=(512, 512, 256, 128)),
}


def generate_from_attributes(name: str, data_root: str | os.PathLike | None, **overrides) -> RawBenchmark:
    """An attribute preset's benchmark, built from `<data_root>/<source>/att_splits.mat`; same
    name and file, same arrays. `overrides` replace the preset's settings (a benchmark's sweep).
    DataError (one line naming the file and the fix) without the file."""
    spec = ATTRIBUTE_PRESETS[name]
    fix = (f"{name} is generated from the real {spec.source} attributes: pass --data-root pointing at the "
           f"xlsa17 folder (the one containing {spec.source}/att_splits.mat)")
    if data_root is None:
        raise DataError(f"{spec.source}/att_splits.mat needed: {fix}")
    path = (Path(data_root).expanduser() / spec.source / "att_splits.mat").resolve()
    if not path.is_file():
        raise DataError(f"{path}: file not found; {fix}")
    stat = path.stat()
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}  # from JSON
    return _from_attributes_file(replace(spec, **overrides), str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=2)
def _from_attributes_file(spec: AttributeSpec, path: str, size: int, mtime_ns: int) -> RawBenchmark:
    return from_attributes(spec, read_att_splits(Path(path).parents[1], spec.source))


TRAIN, VAL, UNSEEN = 0, 1, 2  # a class's role in the proposed split (cub_class_split)


def cub_class_split(splits: AttSplits, max_images_per_class: int = 60) -> np.ndarray:
    """Each class's role (TRAIN, VAL or UNSEEN; VAL only where the file has val_loc), from
    att_splits.mat alone. The file holds no labels (res101.mat does), but xlsa17's images follow
    CUB-200-2011's order: class 001's images, then 002's, ...; every class has at most
    `max_images_per_class` images, all of one role. A maximal run of L consecutive images of one
    role then holds at least ceil(L / max) classes, and when these lower bounds add up to the
    number of classes, each run holds exactly that many: the roles of classes 1, 2, ... in order.
    Names ("004.Groove_billed_Ani") give each class's number. DataError where this does not hold."""
    where = f"{splits.path}: cannot tell the classes of the split from the image order"
    n_classes = len(splits.semantics)
    numbers = []
    for name in splits.class_names:
        m = re.match(r"\s*(\d+)\.", name)
        numbers.append(int(m.group(1)) if m else -1)
    if sorted(numbers) != list(range(1, n_classes + 1)):
        raise DataError(f"{where}: 'allclasses_names' should be '<number>.<name>' with numbers 1..{n_classes}")
    seen = np.union1d(splits.trainval, splits.test_seen)
    n_images = 1 + int(max(seen.max(), splits.test_unseen.max()))
    role = np.full(n_images, -1)
    role[seen] = TRAIN
    if splits.val is not None:
        role[np.intersect1d(splits.val, seen)] = VAL
    if np.intersect1d(seen, splits.test_unseen).size:
        raise DataError(f"{where}: test_unseen_loc shares images with trainval_loc/test_seen_loc")
    role[splits.test_unseen] = UNSEEN
    if (role < 0).any():
        raise DataError(f"{where}: {int((role < 0).sum())} images of 1..{n_images} are in no split")
    change = np.flatnonzero(np.diff(role)) + 1
    starts, ends = np.r_[0, change], np.r_[change, n_images]
    per_run = [math.ceil((e - s) / max_images_per_class) for s, e in zip(starts, ends)]
    if sum(per_run) != n_classes:
        raise DataError(f"{where}: its runs of images hold at least {sum(per_run)} classes of at most "
                        f"{max_images_per_class} images, not {n_classes}")
    by_number = np.repeat(role[starts], per_run)  # role of class number 1, 2, ...
    return by_number[np.asarray(numbers) - 1]


def from_attributes(spec: AttributeSpec, splits: AttSplits) -> RawBenchmark:
    """The benchmark: a seeded subset of the file's classes (its unseen and validation shares
    kept), their real attribute vectors and names, and generated features: class factors are a
    projection of the class's standardised attributes plus factors no attribute describes, through
    `features` (non-linear look, private look, jitter, dominant nuisance, ReLU, per-image gain)."""
    rng = np.random.default_rng(spec.seed)
    role = cub_class_split(splits, spec.max_images_per_class)
    att = splits.semantics.astype(np.float64)
    n_all = len(att)
    if not 0 < spec.n_classes <= n_all:
        raise DataError(f"{spec.name}: n_classes {spec.n_classes} not in 1..{n_all}")
    if not (role == VAL).any():  # no val_loc: validation classes drawn from the seen ones (method.md)
        seen = np.flatnonzero(role == TRAIN)
        role[rng.choice(seen, size=int(round(spec.val_share * len(seen))), replace=False)] = VAL
    keep = []
    for r in (TRAIN, VAL, UNSEEN):
        members = np.flatnonzero(role == r)
        n = max(1, int(round(spec.n_classes * len(members) / n_all)))
        keep.append(rng.choice(members, size=n, replace=False))
    classes = np.sort(np.concatenate(keep))  # class id = position among the kept, in the file's order

    # Class factors: the described ones from all the file's classes' attributes (standardised per
    # attribute, randomly projected, each factor scaled to unit variance over the classes), then
    # factors no attribute describes.
    z = (att - att.mean(0)) / np.maximum(att.std(0), 1e-8)
    described = z @ rng.standard_normal((z.shape[1], spec.described_dim))
    described = (described - described.mean(0)) / described.std(0)
    undescribed = rng.standard_normal((n_all, spec.undescribed_dim))
    u = np.concatenate([described, undescribed], axis=1)[classes]

    labels = np.repeat(np.arange(len(classes)), spec.images_per_class)
    x = features(spec, u, labels, rng)
    kept_role = role[classes]
    test_seen = []
    for c in np.flatnonzero(kept_role != UNSEEN):
        members = np.flatnonzero(labels == c)
        test_seen.append(rng.choice(members, size=int(round(spec.test_seen_fraction * len(members))), replace=False))
    test_seen = np.sort(np.concatenate(test_seen))
    seen_images = np.flatnonzero(kept_role[labels] != UNSEEN)
    trainval = np.setdiff1d(seen_images, test_seen)
    is_val = kept_role[labels[trainval]] == VAL
    names = splits.class_names
    return RawBenchmark(
        name=spec.name, features=x, labels=labels.astype(np.int64),
        semantics=np.ascontiguousarray(att[classes], dtype=np.float32), trainval=trainval, test_seen=test_seen,
        test_unseen=np.flatnonzero(kept_role[labels] == UNSEEN), train=trainval[~is_val], val=trainval[is_val],
        class_names=tuple(names[c] for c in classes) if names else (),
    )
