"""The xlsa17 benchmark files and the split protocols of method.md.

Everything a run needs is built into one `GZSLData`: the training images, the
two evaluation sets (seen and unseen images of the chosen split), and the
semantic vector of every class. `split="val"` is the tuning protocol of
method.md and never reads a test image; `split="test"` trains on all of
trainval and scores on test_seen / test_unseen. A benchmark reaches `build` as a
`RawBenchmark`, read from files here or generated (gzsl.synthetic); gzsl.datasets.load picks
one by name. This module imports neither.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gzsl.errors import DataError
from gzsl.registry import get as registered

VAL_SEEN_FRACTION = 0.2  # stratified share of the training classes' images held out as "val seen"


@dataclass(frozen=True)
class ImageSet:
    """A set of images: features (N, D1) float32, class ids (N,) int64, and
    each image's column in the source file (for leakage checks)."""

    x: torch.Tensor
    y: torch.Tensor
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class GZSLData:
    name: str
    split: str  # "val" or "test": what eval_seen / eval_unseen hold
    semantics: torch.Tensor  # (num_classes, D2) float32, one row per class id
    seen_classes: torch.Tensor  # class ids with training images
    unseen_classes: torch.Tensor  # class ids known only by their semantics
    train: ImageSet
    eval_seen: ImageSet  # images of seen classes never trained on
    eval_unseen: ImageSet  # images of unseen classes
    provenance: dict = field(default_factory=dict)  # how the split was made (seeds, derived classes)
    class_names: tuple[str, ...] = ()  # one per class id
    # Features are scaled as (raw - feature_min) / feature_span, fit on the training images: what a
    # saved model applies to new images.
    feature_min: np.ndarray | None = None
    feature_span: np.ndarray | None = None
    fingerprint: str = ""  # of the benchmark's arrays (features, labels, attributes, splits): RawBenchmark.fingerprint
    # Minibatch draws per training epoch: trainval's image count in both protocols. The val protocol
    # trains on fewer images (the training classes less a holdout), so its epochs repeat images to
    # take as many optimizer steps as the refit on trainval will: a configuration is searched with the
    # number of updates, at the same schedule, that it is retrained with. 0: one pass over `train`.
    epoch_images: int = 0

    @property
    def feature_dim(self) -> int:
        return self.train.x.shape[1]

    @property
    def semantic_dim(self) -> int:
        return self.semantics.shape[1]

    def to(self, device: str | torch.device) -> "GZSLData":
        def move(s: ImageSet) -> ImageSet:
            return ImageSet(s.x.to(device), s.y.to(device), s.index)

        return replace(self, semantics=self.semantics.to(device), seen_classes=self.seen_classes.to(device),
                       unseen_classes=self.unseen_classes.to(device), train=move(self.train),
                       eval_seen=move(self.eval_seen), eval_unseen=move(self.eval_unseen))


# --------------------------------------------------------------------------- raw benchmark


@dataclass(frozen=True)
class RawBenchmark:
    """A benchmark as the xlsa17 files describe it, indices already 0-based."""

    name: str
    features: np.ndarray  # (N, D1) float32, rows are images
    labels: np.ndarray  # (N,) int64, 0-based class ids
    semantics: np.ndarray  # (C, D2) float32
    trainval: np.ndarray
    test_seen: np.ndarray
    test_unseen: np.ndarray
    train: np.ndarray | None  # train_loc ∩ trainval_loc, when the file has it
    val: np.ndarray | None  # val_loc ∩ trainval_loc, when the file has it
    class_names: tuple[str, ...] = ()  # att_splits.mat's allclasses_names; empty: "class <id + 1>"

    def fingerprint(self) -> str:
        """A hash of every array a split is built from: a saved model names the data it was trained
        on, and refuses data that differs."""
        h = hashlib.blake2b(digest_size=16)
        for a in (self.features, self.labels, self.semantics, self.trainval, self.test_seen, self.test_unseen,
                  self.train, self.val):
            a = np.zeros(0) if a is None else np.ascontiguousarray(a)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.data)
        return h.hexdigest()


def build(raw: RawBenchmark, split: str, seed: int = 0, val_split: int = 0) -> GZSLData:
    """Apply a split protocol to a raw benchmark (method.md, "Validation protocol"). `val_split`
    (split "val" only): 0 is the validation classes of the file (val_loc), or classes drawn with
    `seed` where it has none; k >= 1 another set of validation classes of the same size, drawn from
    the training classes (see other_val_images): a study confirms its finalists on such splits."""
    if split not in ("val", "test"):
        raise DataError(f"split must be 'val' or 'test', got {split!r}")
    if val_split < 0 or (val_split and split != "val"):
        raise DataError(f"val_split must be 0, or >= 1 with split 'val'; got {val_split} with split {split!r}")
    rng = np.random.default_rng(seed)
    provenance: dict = {"split": split, "seed": seed}
    if split == "test":
        train_idx, seen_idx, unseen_idx = raw.trainval, raw.test_seen, raw.test_unseen
    else:
        train_pool, unseen_idx, derived = _train_val_images(raw, rng)
        if val_split:
            train_pool, unseen_idx = other_val_images(raw, unseen_idx, val_split, seed)
            rng = np.random.default_rng([seed, val_split])  # its own "val seen" images too
            provenance["val_split"] = val_split
        provenance["val_classes_derived"] = derived or bool(val_split)
        train_idx, seen_idx = _stratified_holdout(train_pool, raw.labels, VAL_SEEN_FRACTION, rng)
    provenance["val_classes" if split == "val" else "unseen_classes"] = sorted(
        int(c) for c in np.unique(raw.labels[unseen_idx])
    )

    used = np.concatenate([train_idx, seen_idx, unseen_idx])
    bad = int((~np.isfinite(raw.features[used])).any(axis=1).sum())
    if bad:
        raise DataError(
            f"{raw.name}: {bad} images of the {split} split have non-finite (NaN/inf) features; "
            "fix or drop them in res101.mat"
        )

    train_x = raw.features[train_idx]
    lo, span = _minmax_fit(train_x)  # fit on the training images only (CADA-VAE)
    def image_set(idx: np.ndarray) -> ImageSet:
        x = (raw.features[idx] - lo) / span
        return ImageSet(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                        torch.from_numpy(raw.labels[idx].astype(np.int64)), np.asarray(idx))

    seen = np.unique(raw.labels[train_idx])
    unseen = np.unique(raw.labels[unseen_idx])
    both = np.intersect1d(seen, unseen)
    if both.size:
        raise DataError(f"{raw.name}: {both.size} classes (e.g. class {both[0] + 1}) have images both in training "
                        f"and among the {'validation' if split == 'val' else 'test'}-unseen images; "
                        "check 'labels' in res101.mat against the *_loc splits")
    return GZSLData(
        name=raw.name, split=split, semantics=torch.from_numpy(raw.semantics.astype(np.float32)),
        seen_classes=torch.from_numpy(seen.astype(np.int64)),
        unseen_classes=torch.from_numpy(unseen.astype(np.int64)),
        train=image_set(train_idx), eval_seen=image_set(seen_idx), eval_unseen=image_set(unseen_idx),
        provenance=provenance,
        class_names=raw.class_names or tuple(f"class {i + 1}" for i in range(len(raw.semantics))),
        feature_min=lo.astype(np.float32), feature_span=span.astype(np.float32), fingerprint=raw.fingerprint(),
        epoch_images=int(len(raw.trainval)),
    )


def _train_val_images(raw: RawBenchmark, rng: np.random.Generator):
    """Images of the training classes and of the validation ("unseen") classes,
    both inside trainval. Returns (train_pool, val_images, derived?)."""
    if raw.train is not None and raw.val is not None:
        return raw.train, raw.val, False
    classes = np.unique(raw.labels[raw.trainval])
    row = registered(raw.name)
    n_val = row.val_classes if row is not None else 0  # the usual count of the benchmark (gzsl.registry)
    if not 0 < n_val < len(classes):  # unknown dataset, or too few classes for the usual count
        n_val = max(1, len(classes) // 4)
    val_classes = rng.choice(classes, size=n_val, replace=False)
    is_val = np.isin(raw.labels[raw.trainval], val_classes)
    return raw.trainval[~is_val], raw.trainval[is_val], True


def other_val_images(raw: RawBenchmark, val_images: np.ndarray, k: int, seed: int):
    """Validation split k >= 1: as many validation classes as split 0 has, taken from the
    trainval classes. The classes outside split 0, in a seeded order, are cut into blocks of
    that size and split k takes block k (class-wise cross-validation: on CUB, 150 trainval
    classes and 50 in val_loc, splits 1 and 2 with split 0 partition the classes); past the
    last whole block, a seeded draw from all trainval classes. Returns (train_pool, val_images)."""
    classes = np.unique(raw.labels[raw.trainval])
    first = np.unique(raw.labels[val_images])
    rest = np.random.default_rng([seed, 0]).permutation(np.setdiff1d(classes, first))
    n = len(first)
    if k * n <= len(rest):
        val_classes = rest[(k - 1) * n: k * n]
    else:
        val_classes = np.random.default_rng([seed, k]).choice(classes, size=n, replace=False)
    is_val = np.isin(raw.labels[raw.trainval], val_classes)
    return raw.trainval[~is_val], raw.trainval[is_val]


def _stratified_holdout(idx: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator):
    """Split idx into (kept, held_out) with `fraction` of each class held out (at least one
    image kept per class)."""
    held = []
    for c in np.unique(labels[idx]):
        members = rng.permutation(idx[labels[idx] == c])
        n_out = min(int(round(fraction * len(members))), len(members) - 1)
        held.append(members[:n_out])
    held_out = np.sort(np.concatenate(held))
    return np.setdiff1d(idx, held_out), held_out


def _minmax_fit(x: np.ndarray):
    lo = x.min(axis=0)
    span = x.max(axis=0) - lo
    span[span == 0] = 1.0
    return lo, span


# --------------------------------------------------------------------------- xlsa17 files


def read_xlsa17(root: str | os.PathLike, name: str, cache_dir: str | os.PathLike | None = None) -> RawBenchmark:
    """Read `<root>/<name>/{res101.mat,att_splits.mat}`, handling the pitfalls of method.md."""
    folder = Path(root).expanduser() / name
    res_path, att_path = folder / "res101.mat", folder / "att_splits.mat"
    for path in (res_path, att_path):
        if not path.is_file():
            raise DataError(f"{path}: file not found; expected the xlsa17 layout <root>/{name}/"
                            "{res101.mat,att_splits.mat} (pass --data-root)")
    features, labels = _read_features(res_path, cache_dir)
    att = _loadmat(att_path)
    semantics = _field(att, att_path, "att", ndim=2).T  # (attrs, classes) -> (classes, attrs)
    n = len(labels)
    locs = {key: _locations(att, att_path, key, n) for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc")}
    optional = {key: _locations(att, att_path, key, n) if key in att else None for key in ("train_loc", "val_loc")}
    trainval = locs["trainval_loc"]
    # train_loc ∪ val_loc also covers test_seen: keep only what lies in trainval.
    train = np.intersect1d(optional["train_loc"], trainval) if optional["train_loc"] is not None else None
    val = np.intersect1d(optional["val_loc"], trainval) if optional["val_loc"] is not None else None
    if labels.max() >= len(semantics) or labels.min() < 0:
        raise DataError(f"{res_path}: labels range {labels.min() + 1}..{labels.max() + 1} but "
                        f"{att_path} has {len(semantics)} classes in 'att'")
    return RawBenchmark(name, features, labels, np.ascontiguousarray(semantics, dtype=np.float32),
                        trainval, locs["test_seen_loc"], locs["test_unseen_loc"], train, val,
                        _class_names(att, len(semantics)))


@dataclass(frozen=True)
class AttSplits:
    """What `att_splits.mat` alone holds: the class semantics and names, and the image index
    arrays of the splits (0-based, sorted; train/val None where the file lacks them). Without
    res101.mat's labels the image arrays do not say which class an image is of."""

    path: Path
    semantics: np.ndarray  # (C, D2) float32, one row per class (`att` transposed)
    class_names: tuple[str, ...]
    trainval: np.ndarray
    test_seen: np.ndarray
    test_unseen: np.ndarray
    train: np.ndarray | None
    val: np.ndarray | None


def read_att_splits(root: str | os.PathLike | None, name: str, fix: str = "") -> AttSplits:
    """Read `<root>/<name>/att_splits.mat` only: DataError (one line naming the file, and `fix`)
    where root is None or the file is missing or malformed."""
    if root is None:
        raise DataError(f"<root>/{name}/att_splits.mat is needed and no data root was given; "
                        f"{fix or 'pass --data-root'}")
    path = Path(root).expanduser() / name / "att_splits.mat"
    if not path.is_file():
        fix = fix or f"expected the xlsa17 layout <root>/{name}/att_splits.mat (pass --data-root)"
        raise DataError(f"{path}: file not found; {fix}")
    att = _loadmat(path)
    semantics = np.ascontiguousarray(_field(att, path, "att", ndim=2).T, dtype=np.float32)
    unknown = np.iinfo(np.int64).max  # the number of images is res101.mat's: not checked here
    locs = {key: _locations(att, path, key, unknown) for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc")}
    locs.update({key: _locations(att, path, key, unknown) if key in att else None for key in ("train_loc", "val_loc")})
    return AttSplits(path, semantics, _class_names(att, len(semantics)), locs["trainval_loc"],
                     locs["test_seen_loc"], locs["test_unseen_loc"], locs["train_loc"], locs["val_loc"])


def _class_names(att: dict, n_classes: int) -> tuple[str, ...]:
    """allclasses_names of att_splits.mat ('001.Black_footed_Albatross', ...); empty where absent or odd."""
    names = att.get("allclasses_names")
    try:
        out = tuple(str(np.asarray(n).ravel()[0]) for n in np.asarray(names, dtype=object).ravel())
    except (IndexError, TypeError, ValueError):
        return ()
    return out if len(out) == n_classes else ()


def _loadmat(path: Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a bad file
        raise DataError(f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from None


def _field(mat: dict, path: Path, key: str, ndim: int) -> np.ndarray:
    if key not in mat:
        raise DataError(f"{path}: missing variable '{key}'")
    value = np.asarray(mat[key])
    if value.ndim != ndim or value.size == 0 or not np.issubdtype(value.dtype, np.number):
        raise DataError(f"{path}: '{key}' should be a {ndim}-d numeric array, got shape {value.shape} {value.dtype}")
    return value


def _locations(mat: dict, path: Path, key: str, n_images: int) -> np.ndarray:
    """1-based MATLAB image indices -> sorted 0-based int64."""
    loc = _field(mat, path, key, ndim=2).ravel().astype(np.int64) - 1
    if loc.min() < 0 or loc.max() >= n_images:
        raise DataError(f"{path}: '{key}' indexes images {loc.min() + 1}..{loc.max() + 1} "
                        f"but res101.mat has {n_images} images")
    return np.unique(loc)


def _read_features(path: Path, cache_dir: str | os.PathLike | None):
    """res101.mat -> (features (N, D1) float32, 0-based labels), through a float32 cache."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = Path(cache_dir or os.environ.get("GZSL_CACHE", "~/.cache/gzsl")).expanduser()
    feat_file = cache / f"{path.parent.name}-{key}.features.npy"
    label_file = cache / f"{path.parent.name}-{key}.labels.npy"
    if feat_file.is_file() and label_file.is_file():
        return np.load(feat_file), np.load(label_file)

    mat = _loadmat(path)
    features = _field(mat, path, "features", ndim=2)
    labels = _field(mat, path, "labels", ndim=2).ravel()
    if features.shape[1] != len(labels):
        raise DataError(f"{path}: 'features' has {features.shape[1]} columns (images) but "
                        f"'labels' has {len(labels)} entries; expected features as D x N")
    if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
        raise DataError(f"{path}: 'labels' must hold whole class numbers (1-based)")
    features = np.ascontiguousarray(features.T, dtype=np.float32)
    labels = labels.astype(np.int64) - 1  # stored as 1-based floats
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for file, array in ((feat_file, features), (label_file, labels)):
            tmp = file.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, array)
            os.replace(tmp, file)
    except OSError:
        pass  # a read-only cache only costs speed
    return features, labels
