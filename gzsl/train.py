"""Train one Disentangled-VAE and print its GZSL scores.

    python -m gzsl.train --dataset synth-small --split test
    python -m gzsl.train --dataset CUB --data-root ~/xlsa17 --split val --alpha 2 --gamma 1 --lam 2.37
    python -m gzsl.train --dataset cub-sim --data-root ~/xlsa17 --split test
    python -m gzsl.train --dataset synth-small --split test --save model.pt   # then: python -m gzsl.predict --model model.pt

One progress line per epoch on stderr, then one JSON line on stdout:
{"U": .., "S": .., "H": .., "epochs": .., "seconds": .., "status": ..} (percentages).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from gzsl import hyperparams, registry
from gzsl.errors import GzslError


def bounded_int(key: str):
    """argparse's `type` for an integer within the study files' LIMITS[key] (gzsl.studyfile)."""
    from gzsl.studyfile import LIMITS

    low, high = LIMITS[key]

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            why = " (numpy seeds are unsigned 32-bit)" if key == "study.seed" else ""
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}]{why}, got {text}")
        return value
    return parse


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    from gzsl.trainer import TrainConfig

    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m gzsl.train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="synth-small",
                      help=f"{', '.join(registry.names('synthetic'))} (generated), "
                           f"{', '.join(registry.names('attributes'))} (a real benchmark's attributes and class "
                           f"split, generated features; needs --data-root), or an xlsa17 benchmark: "
                           f"{', '.join(registry.names('xlsa17'))}")
    data.add_argument("--data-root", help="the xlsa17 folder, holding <DATASET>/res101.mat and att_splits.mat "
                                          "(an attribute preset reads its benchmark's att_splits.mat only)")
    data.add_argument("--split", choices=("val", "test"), default="val",
                      help="val: train on training classes, score on validation classes (tuning); "
                           "test: train on trainval, score on test_seen/test_unseen")
    hp = p.add_argument_group("searched hyperparameters")
    for h in hyperparams.SEARCHED:
        hp.add_argument(h.flag, type=h.parse, default=h.default, metavar="{" + ",".join(h.choices) + "}" if h.choices else None, help=h.help)
    hp.add_argument("--kl-weight", type=positive_float, default=d.kl_weight,
                    help="end value of the KL warm-up (CADA-VAE: 0.25; 1 collapses the posteriors)")
    hp.add_argument("--classifier", choices=("cada", "fast"), default=d.classifier,
                    help="final classifier: cada (CADA-VAE's recipe, 23 epochs at batch 32: what published rows "
                         "report) or fast (3 epochs at batch 2048: a quick look)")
    run = p.add_argument_group("training")
    run.add_argument("--epochs", type=bounded_int("training.epochs"), default=d.epochs)
    run.add_argument("--batch-size", type=bounded_int("training.batch_size"), default=d.batch_size)
    run.add_argument("--hidden", type=bounded_int("training.hidden"), nargs=4, metavar=("ENC_V", "DEC_V", "ENC_S", "DEC_S"),
                     help="hidden widths (default: CADA-VAE's 1560 1660 1450 665; smaller on synthetic presets)")
    run.add_argument("--eval-every", type=int, default=d.eval_every,
                     help="compute H every n epochs (0: only after the last)")
    run.add_argument("--seed", type=bounded_int("study.seed"), default=d.seed, help="seeds weights, batches, noise and the val split")
    run.add_argument("--no-disentangle", action="store_true", help="CADA-VAE ablation: no z^p, no L_SC")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    run.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    run.add_argument("--save", metavar="PATH", help="write the trained model (weights, configuration, final "
                     "classifier, data fingerprint) to PATH, for python -m gzsl.predict")
    return p


def config_from_args(args):
    from gzsl.datasets import default_hidden
    from gzsl.trainer import TrainConfig, resolve_device

    return TrainConfig(
        **{h.name: getattr(args, h.name) for h in hyperparams.SEARCHED},
        kl_weight=args.kl_weight, classifier=args.classifier,
        epochs=args.epochs, batch_size=args.batch_size, eval_every=args.eval_every, seed=args.seed,
        disentangle=not args.no_disentangle, device=resolve_device(args.device),
        hidden=tuple(args.hidden) if args.hidden else default_hidden(args.dataset),
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import torch

        from gzsl.datasets import load
        from gzsl.trainer import train

        if args.threads:
            torch.set_num_threads(args.threads)
        config = config_from_args(args)
        data = load(args.dataset, args.split, args.data_root, seed=args.seed)
        print(f"{data.name} split={data.split}: {len(data.train)} training images, "
              f"{len(data.eval_seen)} seen / {len(data.eval_unseen)} unseen eval images, "
              f"{len(data.seen_classes)} + {len(data.unseen_classes)} classes, device {config.device}",
              file=sys.stderr)
        start = time.perf_counter()
        result = None
        for result in train(data, config):
            print(progress_line(result, config.epochs), file=sys.stderr, flush=True)
        if args.save and result.trained is not None:
            from gzsl import modelfile

            modelfile.save(args.save, result.trained, config, data, result.scores, result.epoch)
            print(f"model saved to {args.save} (python -m gzsl.predict --model {args.save})", file=sys.stderr)
        elif args.save:
            print(f"model not saved to {args.save}: the run {result.status}", file=sys.stderr)
    except GzslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scores = result.scores
    print(json.dumps({"U": round(scores.U, 2), "S": round(scores.S, 2), "H": round(scores.H, 2),
                      "epochs": result.epoch, "seconds": round(time.perf_counter() - start, 2),
                      "status": result.status}))
    return 0 if result.status == "completed" else 1


def progress_line(r, epochs: int) -> str:
    width = len(str(epochs))
    losses = " ".join(f"{k} {v:.3g}" for k, v in r.losses.items())
    line = f"epoch {r.epoch:>{width}}/{epochs} {losses} ({r.seconds:.2f}s)"
    if r.scores is not None:
        line += f"  U {r.scores.U:.1f} S {r.scores.S:.1f} H {r.scores.H:.1f}"
    if r.status == "diverged":
        line += "  DIVERGED (non-finite loss)"
    return line


if __name__ == "__main__":
    sys.exit(main())
