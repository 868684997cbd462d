"""Loading CUB from the xlsa17 files: the first load (MATLAB file -> float32 cache) and the second.

    python benchmarks/data_load.py [--att ../shared/data/xlsa17/CUB/att_splits.mat]

Writes a CUB-sized res101.mat (2048 x 11788 float64 features, ~190 MB, random values; the real
ones are not on these machines) beside a real att_splits.mat, then times loading the val split
twice with a fresh cache. Target: the second load under a second.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gzsl import data as gdata  # noqa: E402

DEFAULT_ATT = Path(__file__).resolve().parents[2] / "shared" / "data" / "xlsa17" / "CUB" / "att_splits.mat"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--att", default=str(DEFAULT_ATT), help="a real CUB att_splits.mat")
    args = p.parse_args()
    att = Path(args.att)
    if not att.is_file():
        sys.exit(f"error: {att}: not found; pass --att with CUB's att_splits.mat")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "CUB"
        folder.mkdir()
        rng = np.random.default_rng(0)
        n = 11788
        splits = scipy.io.loadmat(str(att))
        unseen_images = splits["test_unseen_loc"].ravel() - 1
        labels = rng.integers(1, 151, n).astype(float)  # 150 seen classes, 1-based floats as published
        labels[unseen_images] = rng.integers(151, 201, len(unseen_images))
        scipy.io.savemat(str(folder / "res101.mat"), {"features": rng.random((2048, n)), "labels": labels[:, None]})
        os.symlink(att.resolve(), folder / "att_splits.mat")
        os.environ["GZSL_CACHE"] = str(Path(tmp) / "cache")
        size = (folder / "res101.mat").stat().st_size / 2**20
        times = []
        for _ in range(2):
            start = time.perf_counter()
            raw = gdata.read_xlsa17(tmp, "CUB")
            gdata.build(raw, "val")
            times.append(time.perf_counter() - start)
    print(f"res101.mat {size:.0f} MB, {n} images x 2048 features")
    print(f"first load (MATLAB file, writes the float32 cache)  {times[0]:6.2f} s")
    print(f"second load (from the cache)                         {times[1]:6.2f} s  (target < 1 s)")
    print(f"speed-up {times[0] / times[1]:.1f}x")


if __name__ == "__main__":
    main()
