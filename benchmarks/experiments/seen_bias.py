"""Would a choice rule that discounts seen bias have chosen better on synth-small? (issue 26)

    python benchmarks/experiments/seen_bias.py 0,1,2,3,4     # five draws, about 25 minutes on 2 cores (one thread)

On draw 0 of synth-small every validation split prefers a seen-biased configuration (the one a
16-trial study chose there) that its test classes do not (docs/benchmarks.md). A calibration-free
score might tell a configuration whose latent space serves unseen classes well from one that only
leans towards the seen classes: calibrated stacking (Chao et al., 2016) subtracts a constant gamma
from every seen class's logit; sweeping gamma traces the seen-unseen accuracy curve, whose area is
AUSUC and whose best harmonic mean is "calibrated H". For the defaults and that configuration,
on the val and the test split of each draw, this prints H (the protocol's score), calibrated H and
AUSUC (seed 1000, 100 epochs, last epoch). A rule is worth building only if a validation score
ranks the two as their test H does on more draws than validation H does.
"""

import sys

import torch

from gzsl.evaluation import harmonic_mean, logits
from synth_small_draws import runs


def per_class(correct: torch.Tensor, y: torch.Tensor) -> float:
    """Per-class mean of a boolean `correct` over labels y, in %."""
    classes = torch.unique(y)
    return 100.0 * torch.stack([correct[y == c].double().mean() for c in classes]).mean().item()


def seen_unseen_curve(trained, data) -> tuple[float, float, float]:
    """(H at gamma 0, calibrated H, AUSUC) of a trained member on its split's eval sets."""
    n_seen = len(data.seen_classes)
    to_local = {int(c): i for i, c in enumerate(trained.classes)}
    scores, ys = {}, {}
    for k, part in (("S", data.eval_seen), ("U", data.eval_unseen)):
        scores[k] = logits(trained.model, trained.classifier, part.x, 4096)
        ys[k] = torch.tensor([to_local[int(c)] for c in part.y])
    # An image's margin (best seen logit - best unseen logit): a gamma above it makes it unseen.
    margins = torch.cat([lg[:, :n_seen].max(1).values - lg[:, n_seen:].max(1).values for lg in scores.values()])
    gammas = torch.cat([torch.quantile(margins, torch.linspace(0, 1, 401)) + d for d in (-1e-4, 1e-4)])
    def point(g: float) -> tuple[float, float]:
        acc = {}
        for k in ("S", "U"):
            lg = scores[k].clone()
            lg[:, :n_seen] -= g
            acc[k] = per_class(lg.argmax(1) == ys[k], ys[k])
        return acc["S"], acc["U"]
    points = sorted(point(g) for g in [margins.min().item() - 1, *gammas.tolist(), margins.max().item() + 1])
    ausuc = sum((s2 - s1) * (u1 + u2) / 2 for (s1, u1), (s2, u2) in zip(points, points[1:])) / 100.0
    s0, u0 = point(0.0)
    return harmonic_mean(u0, s0), max(harmonic_mean(u, s) for s, u in points), ausuc


if __name__ == "__main__":
    draws = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "0,1,2").split(",")]
    for name, split, label, data, last, secs in runs(draws, ("val", "test")):
        s = last.scores
        h0, h_cal, ausuc = seen_unseen_curve(last.trained, data)
        assert abs(h0 - s.H) < 0.05, (h0, s.H)  # gamma 0 is the protocol's own prediction
        draw = name.partition("@")[2] or "0"
        print(f"draw {draw} {split} {label}: H {s.H:.1f} (U {s.U:.1f} S {s.S:.1f}) calibrated H {h_cal:.1f} "
              f"AUSUC {ausuc:.1f} ({secs:.0f}s)", flush=True)
