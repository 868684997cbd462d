"""Every dataset gzsl knows, one row each: where it comes from, what it needs, and the settings and
published numbers that belong to it. The loader (gzsl.datasets), the split protocol (gzsl.data),
the classifier recipe (gzsl.evaluation), the study file check, the command lines' help and the
report all read these rows; adding a benchmark in the xlsa17 format is adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Scores = tuple[float, float, float]  # published U, S, H


@dataclass(frozen=True)
class Dataset:
    name: str
    # "xlsa17": read from <data_root>/<name>/res101.mat and att_splits.mat (gzsl.data); "synthetic":
    # generated (gzsl.synthetic.PRESETS); "attributes": generated from a real att_splits.mat
    # (gzsl.synthetic.ATTRIBUTE_PRESETS)
    source: str
    needs_data_root: bool = False
    # Validation classes drawn from the training classes where att_splits.mat has no train_loc/val_loc
    # (0: a quarter of them).
    val_classes: int = 0
    classifier_epochs: int | None = None  # CADA-VAE's final classifier's epochs here (None: its recipe's)
    references: dict[str, Scores] = field(default_factory=dict)  # method -> published (U, S, H)
    imitates: str | None = None  # an attribute preset's benchmark, whose per-dataset settings it takes


_XLSA17 = (
    Dataset("CUB", "xlsa17", True, val_classes=50, classifier_epochs=23, references={
        "CADA-VAE": (51.6, 53.5, 52.4), "f-CLSWGAN": (43.7, 57.7, 49.7), "TF-VAEGAN": (52.8, 64.7, 58.1),
        "SDGZSL": (51.4, 57.9, 54.4), "HSVA": (51.9, 59.5, 55.5)}),
    Dataset("AWA1", "xlsa17", True, val_classes=13, classifier_epochs=33, references={
        "CADA-VAE": (57.3, 72.8, 64.1), "HSVA": (61.1, 75.2, 67.4)}),
    Dataset("AWA2", "xlsa17", True, val_classes=13, classifier_epochs=29, references={
        "CADA-VAE": (55.8, 75.0, 63.9), "f-CLSWGAN": (56.1, 65.5, 60.4), "TF-VAEGAN": (59.8, 75.1, 66.6),
        "SDGZSL": (64.6, 73.6, 68.8), "HSVA": (57.8, 79.3, 66.9)}),
    Dataset("SUN", "xlsa17", True, val_classes=65, classifier_epochs=21, references={
        "CADA-VAE": (47.2, 35.7, 40.6), "f-CLSWGAN": (42.6, 36.6, 39.4), "TF-VAEGAN": (45.6, 40.7, 43.0),
        "SDGZSL": (44.9, 37.3, 40.8), "HSVA": (48.6, 39.0, 43.3)}),
)
_GENERATED = (
    Dataset("synth-small", "synthetic"),  # a minute to train: the demo and the tests
    Dataset("synth-cub", "synthetic"),  # CUB's shapes
    Dataset("cub-sim", "attributes", True, imitates="CUB"),  # CUB's attributes and split, generated features
)
DATASETS: dict[str, Dataset] = {d.name: d for d in (*_GENERATED, *_XLSA17)}


def get(name: str) -> Dataset | None:
    """The row of a dataset name: an xlsa17 benchmark in any case ("cub"), a synthetic preset or one
    of its other draws ("synth-small@3"); None for a name that is none."""
    base, at, draw = str(name).partition("@")
    row = DATASETS.get(base)
    if row is None:
        upper = DATASETS.get(base.upper())
        row = upper if upper is not None and upper.source == "xlsa17" else None
    if row is None:
        return None
    if at and (row.source != "synthetic" or not (draw.isdigit() and str(int(draw)) == draw)):
        return None
    return row


def names(source: str | None = None) -> list[str]:
    return [d.name for d in DATASETS.values() if source is None or d.source == source]


def described() -> str:
    """The known names as a message lists them: "synth-small, synth-cub; cub-sim, CUB, ... with data_root"."""
    free = [d.name for d in DATASETS.values() if not d.needs_data_root]
    rooted = [d.name for d in DATASETS.values() if d.needs_data_root]
    return ", ".join(free) + (f"; {', '.join(rooted)} with data_root" if rooted else "")


def settings_of(name: str) -> Dataset | None:
    """The row whose per-dataset settings a dataset takes: its own, or the benchmark it imitates."""
    row = get(name)
    return get(row.imitates) if row is not None and row.imitates else row
