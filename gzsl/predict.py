"""Use a saved model: score it again on its split, or name the classes of new images.

    python -m gzsl.predict --model results/demo/models/seed1000.pt                 # U/S/H again
    python -m gzsl.predict --model cub.pt --data-root ~/xlsa17 --split test
    python -m gzsl.predict --model cub.pt --features new_images.npy                # class names

Scoring prints one JSON line {"U": .., "S": .., "H": .., "epoch": ..} (percentages, the same
numbers the refit or `gzsl.train --save` recorded, on the same device) and, on stderr, the
numbers saved in the file beside it. --features takes an .npy array of raw ResNet-101 features,
(images, 2048) for the xlsa17 benchmarks, and prints one line per image: its row and the
predicted class name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gzsl import registry
from gzsl.errors import GzslError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gzsl.predict", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="a model file (results/<study>/models/seed<N>.pt, or a URI)")
    rooted = [d.name for d in registry.DATASETS.values() if d.needs_data_root]
    p.add_argument("--data-root", help=f"xlsa17 folder, for a model of {', '.join(rooted)}")
    p.add_argument("--dataset", help="score on this dataset (default: the model's; another is refused)")
    p.add_argument("--split", choices=("val", "test"), help="the split to score (default: the model's)")
    p.add_argument("--features", metavar="FILE.npy", help="name the classes of these images instead of scoring")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from gzsl import modelfile

        saved = modelfile.load(args.model)
        if args.features:
            for i, name in enumerate(saved.predict(read_features(args.features), args.features)):
                print(f"{i}\t{name}")
            return 0
        print(json.dumps(score(saved, args)))
    except GzslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def score(saved, args) -> dict:
    """The saved model's U/S/H on its split's evaluation sets, as it was scored when saved."""
    from gzsl.datasets import load
    from gzsl.evaluation import Evaluator
    from gzsl.trainer import resolve_device

    device = resolve_device(args.device)
    data = load(args.dataset or saved.dataset, args.split or saved.split, args.data_root, seed=saved.split_seed)
    saved.check(data, args.model)
    data = data.to(device)
    model = saved.model.to(device)
    classifier = type(saved.classifier)(*(t.to(device) for t in saved.classifier))
    s = Evaluator(data).score(model, classifier)
    was = saved.scores
    print(f"{args.model}: {saved.dataset} split {saved.split}, epoch {saved.epoch}; saved with U {was.U:.2f} "
          f"S {was.S:.2f} H {was.H:.2f}", file=sys.stderr)
    return {"U": round(s.U, 2), "S": round(s.S, 2), "H": round(s.H, 2), "epoch": saved.epoch}


def read_features(path: str):
    import numpy as np

    from gzsl.errors import DataError

    if not Path(path).is_file():
        raise DataError(f"{path}: file not found; --features takes an .npy array (images, feature width)")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for a file it cannot read
        raise DataError(f"{path}: not a readable .npy array ({type(exc).__name__}); save one with numpy.save") from None
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: a {x.dtype} array; --features takes numbers")
    return x.astype(np.float32, copy=False)


if __name__ == "__main__":
    sys.exit(main())
