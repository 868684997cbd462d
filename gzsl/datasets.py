"""Datasets by name: an xlsa17 benchmark read from files (gzsl.data), a synthetic preset, or an
attribute preset (real attributes and class split from the xlsa17 att_splits.mat, generated
features; gzsl.synthetic), built into a `GZSLData` with a split protocol."""

from __future__ import annotations

import os

from gzsl import registry, synthetic
from gzsl.data import GZSLData, build, read_xlsa17
from gzsl.errors import DataError
from gzsl.model import CADA_HIDDEN


def load(name: str, split: str = "val", data_root: str | os.PathLike | None = None, seed: int = 0,
         val_split: int = 0) -> GZSLData:
    """Load a dataset by name: an xlsa17 benchmark (needs data_root), a synthetic preset, or an
    attribute preset such as cub-sim (needs data_root: the xlsa17 folder with CUB/att_splits.mat).
    `val_split`: which set of validation classes (gzsl.data.build)."""
    row = registry.get(name)
    if row is None:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(registry.names())} (a synthetic preset's "
                        "other draws: synth-small@1, ...)")
    if row.source == "synthetic":  # synth-small, or another draw of it: synth-small@1
        return build(synthetic.generate(name), split, seed, val_split)
    if row.source == "attributes":
        return build(synthetic.generate_from_attributes(row.name, data_root), split, seed, val_split)
    if data_root is None:
        raise DataError(f"dataset {name} needs --data-root pointing at the xlsa17 folder "
                        f"(containing {row.name}/res101.mat)")
    return build(read_xlsa17(data_root, row.name), split, seed, val_split)


def default_hidden(name: str) -> tuple[int, int, int, int]:
    """The model's hidden widths for a dataset: CADA-VAE's on real data, the preset's on synthetic
    and attribute presets (cub-sim: CUB's)."""
    return synthetic.hidden(name) or CADA_HIDDEN
