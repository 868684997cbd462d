"""A trained model as one file: what a study's refit and `gzsl.train --save` hand their user, and
what `gzsl.predict` reads back.

The file (torch.save of plain types and tensors, read with weights_only) holds the model's
weights (its state_dict, one member), its TrainConfig, its final classifier as scored and the
classes it predicts, the scores it was saved with, and what the data must be for those numbers
to hold: the dataset's name, the split protocol and its seed, the fingerprint of the benchmark's
arrays and the scaler fit on the training images (which new image features go through).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import zipfile
from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs
import torch

from gzsl.data import GZSLData
from gzsl.errors import DataError, GzslError
from gzsl.evaluation import ClassifierConfig, LatentClassifier, Scores, predict
from gzsl.model import DisentangledVAE, ModelConfig
from gzsl.trainer import Trained, TrainConfig

FORMAT = "gzsl-model"
VERSION = 1


@dataclass(frozen=True)
class SavedModel:
    model: DisentangledVAE  # one member, on the CPU, in eval mode
    classifier: LatentClassifier
    classes: torch.Tensor  # class id of each classifier output
    config: TrainConfig
    dataset: str
    split: str  # the protocol it was trained under: "test" (trainval) or "val"
    split_seed: int  # the seed of that protocol (the validation classes of "val")
    fingerprint: str  # RawBenchmark.fingerprint of the data it was trained on
    class_names: tuple[str, ...]  # one per class id
    feature_min: np.ndarray
    feature_span: np.ndarray
    scores: Scores  # U, S, H of its split's evaluation sets when it was saved
    epoch: int  # the epoch it was scored at

    def check(self, data: GZSLData, path: str) -> None:
        """DataError (one line) unless `data` is what the model was trained and scored on."""
        if data.name != self.dataset:
            raise DataError(f"{path}: the model was trained on {self.dataset}, not {data.name}; "
                            f"score it on {self.dataset} (leave out --dataset)")
        if data.split != self.split:
            raise DataError(f"{path}: the model was trained under split {self.split!r}; scoring it on "
                            f"{data.split!r} would score images it trained on or none it was meant for: "
                            f"use --split {self.split}")
        if data.fingerprint != self.fingerprint:
            raise DataError(f"{path}: the {data.name} data given differ from those the model was trained on "
                            f"(fingerprint {data.fingerprint}, the model's {self.fingerprint}); pass the "
                            "--data-root it was trained with")

    def predict(self, features: np.ndarray, path: str) -> list[str]:
        """The class names of raw image features (N, D1), scaled as the training images were."""
        if features.ndim != 2 or features.shape[1] != len(self.feature_min):
            raise DataError(f"{path}: features of shape {features.shape}; the model takes (images, "
                            f"{len(self.feature_min)}) {self.dataset} features")
        if not np.isfinite(features).all():
            raise DataError(f"{path}: {int((~np.isfinite(features)).any(axis=1).sum())} images have non-finite features")
        x = torch.from_numpy(((features - self.feature_min) / self.feature_span).astype(np.float32))
        local = predict(self.model, self.classifier, x)
        return [self.class_names[int(c)] for c in self.classes[local]]


def save(path: str, trained: Trained, config: TrainConfig, data: GZSLData, scores: Scores, epoch: int) -> None:
    """Write a completed member's model file (any pyarrow filesystem path or URI), atomically: a
    reader sees the whole file or none."""
    write(path, to_bytes(trained, config, data, scores, epoch))


def to_bytes(trained: Trained, config: TrainConfig, data: GZSLData, scores: Scores, epoch: int) -> bytes:
    """A completed member's model file as bytes: what a refit task on any node hands the driver,
    which writes it where the study's results are (`write`)."""
    payload = {
        "format": FORMAT, "version": VERSION,
        "state_dict": {k: v.cpu() for k, v in trained.model.state_dict().items()},
        "model_config": dataclasses.asdict(trained.model.config),
        "train_config": dataclasses.asdict(config),
        "classifier": {"weight": trained.classifier.weight.cpu(), "bias": trained.classifier.bias.cpu(),
                       "classes": trained.classes.cpu()},
        "data": {"dataset": data.name, "split": data.split, "split_seed": int(data.provenance.get("seed", 0)),
                 "fingerprint": data.fingerprint, "class_names": list(data.class_names),
                 "feature_min": torch.from_numpy(np.asarray(data.feature_min)),
                 "feature_span": torch.from_numpy(np.asarray(data.feature_span))},
        "scores": {"U": scores.U, "S": scores.S, "H": scores.H, "epoch": int(epoch)},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def write(path: str, data: bytes) -> None:
    """Bytes of a model file to `path` (a local path or a pyarrow URI), atomically."""
    fs, where = _filesystem(path)
    parent = where.rsplit("/", 1)[0] if "/" in where else "."
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.tmp-{where.rsplit('/', 1)[-1]}"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, where)


def load(path: str) -> SavedModel:
    """A model file written by `save`; GzslError (one line, naming the file) for anything else."""
    fs, where = _filesystem(path)
    try:
        with fs.open_input_stream(where) as f:
            raw = f.read()
    except (FileNotFoundError, OSError) as exc:
        raise GzslError(f"{path}: cannot read the model file ({exc.__class__.__name__}: {str(exc).splitlines()[0]}); "
                        "a study's refit writes them under results/<study>/models/") from None
    _check_archive(raw, path)
    try:
        p = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file it cannot read
        raise GzslError(f"{path}: not a gzsl model file ({type(exc).__name__})") from None
    if not isinstance(p, dict) or p.get("format") != FORMAT:
        raise GzslError(f"{path}: not a gzsl model file")
    if p.get("version") != VERSION:
        raise GzslError(f"{path}: a gzsl model file of version {p.get('version')}; this gzsl reads version "
                        f"{VERSION}: use the gzsl that wrote it")
    try:
        return _saved(p)
    except Exception as exc:  # a crafted or foreign payload: name what is wrong, in one line
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        what = what if isinstance(exc, _Invalid) else f"{type(exc).__name__}: {what}"
        raise GzslError(f"{path}: not a valid gzsl model file ({what}); use one written by a study's refit "
                        "or gzsl.train --save") from None


def _check_archive(raw: bytes, path: str) -> None:
    """Memory bounded by the file's size before torch reads it: torch.save writes a zip archive
    whose entries are stored, never compressed, so an entry that is compressed (a deflated storage
    of a few KB can unpack to gigabytes inside torch.load) or says it is larger than the whole file
    was not written by it."""
    try:
        entries = zipfile.ZipFile(io.BytesIO(raw)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise GzslError(f"{path}: not a gzsl model file (not a zip archive as torch.save writes)") from None
    for e in entries:
        if e.compress_type != zipfile.ZIP_STORED or e.file_size > len(raw):
            raise GzslError(f"{path}: not a gzsl model file (entry {e.filename!r} is compressed or larger than the "
                            "file, which torch.save never writes); use one written by a study's refit or gzsl.train --save")


class _Invalid(Exception):
    """What is wrong with a model file's payload; `load` names the file."""


MAX_WIDTH = 100_000  # any size in a model file's model_config
MAX_PARAMETERS = 10**9
_NUMBER = (int, float)
_SCHEMA = {
    "state_dict": dict, "model_config": dict, "train_config": dict,
    "classifier": {"weight": torch.Tensor, "bias": torch.Tensor, "classes": torch.Tensor},
    "data": {"dataset": str, "split": str, "split_seed": int, "fingerprint": str, "class_names": list,
             "feature_min": torch.Tensor, "feature_span": torch.Tensor},
    "scores": {"U": _NUMBER, "S": _NUMBER, "H": _NUMBER, "epoch": int},
}


def _check(value, schema, key: str = "") -> None:
    """_Invalid unless `value` has the keys and types of `schema` (a type, or a dict of them)."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise _Invalid(f"{key}: expected a dict, got {type(value).__name__}")
        for k, want in schema.items():
            if k not in value:
                raise _Invalid(f"{key + '.' if key else ''}{k}: missing")
            _check(value[k], want, f"{key + '.' if key else ''}{k}")
    elif not isinstance(value, schema) or isinstance(value, bool):
        raise _Invalid(f"{key}: expected {getattr(schema, '__name__', 'a number')}, got {type(value).__name__}")


def _model(p: dict) -> DisentangledVAE:
    """The model of model_config, once its sizes are bounded and its shapes are the state dict's."""
    mc, state = p["model_config"], p["state_dict"]
    for f in dataclasses.fields(ModelConfig):
        v = mc.get(f.name, 1)  # one left out: ModelConfig names it
        if f.type == "int" and (type(v) is not int or not 1 <= v <= MAX_WIDTH):
            raise _Invalid(f"model_config.{f.name}: expected an integer in [1, {MAX_WIDTH}], got {v!r}")
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = DisentangledVAE(ModelConfig(**mc))
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if set(state) != set(want):
        raise _Invalid(f"state_dict: keys {sorted(set(state) ^ set(want))[:3]} missing or unexpected")
    for k, shape in want.items():
        if not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != shape:
            got = tuple(state[k].shape) if isinstance(state[k], torch.Tensor) else type(state[k]).__name__
            raise _Invalid(f"state_dict.{k}: {got}, but model_config makes {shape}")
    if sum(math.prod(shape) for shape in want.values()) > MAX_PARAMETERS:
        raise _Invalid(f"more than {MAX_PARAMETERS:.0e} parameters")
    model = model.to_empty(device="cpu")
    model.load_state_dict(state)
    return model


def _tensor(t: torch.Tensor, key: str, shape: tuple, floating: bool = True) -> torch.Tensor:
    if tuple(t.shape) != shape or t.is_floating_point() != floating or t.is_complex():
        raise _Invalid(f"{key}: a {t.dtype} tensor of shape {tuple(t.shape)}, expected "
                       f"{'floats' if floating else 'integers'} of shape {shape}")
    return t


def _saved(p: dict) -> SavedModel:
    _check(p, _SCHEMA)
    model = _model(p)
    train = dict(p["train_config"])
    if isinstance(train.get("classifier"), dict):
        train["classifier"] = ClassifierConfig(**train["classifier"])
    for key in ("kl_warmup", "cross_warmup", "distance_warmup", "hidden"):
        train[key] = tuple(train[key])
    config = TrainConfig(**train)
    d, s, c = p["data"], p["scores"], p["classifier"]
    names, dim, L = d["class_names"], model.config.feature_dim, model.config.latent_size
    C = len(c["classes"]) if c["classes"].dim() == 1 else 0
    classes = _tensor(c["classes"], "classifier.classes", (C,), floating=False)
    if not (all(isinstance(n, str) for n in names) and C > 0 and classes.min() >= 0 and classes.max() < len(names)):
        raise _Invalid(f"classifier.classes: expected 1 or more ids of data.class_names ({len(names)} names)")
    return SavedModel(
        model=model.eval(), classes=classes, config=config,
        classifier=LatentClassifier(_tensor(c["weight"], "classifier.weight", (L, C)).float(),
                                    _tensor(c["bias"], "classifier.bias", (C,)).float()),
        dataset=d["dataset"], split=d["split"], split_seed=d["split_seed"],
        fingerprint=d["fingerprint"], class_names=tuple(names),
        feature_min=_tensor(d["feature_min"], "data.feature_min", (dim,)).numpy(),
        feature_span=_tensor(d["feature_span"], "data.feature_span", (dim,)).numpy(),
        scores=Scores(s["U"], s["S"], s["H"]), epoch=s["epoch"])


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
