"""method.md's schedule, without torch: the warm-ups, and the first epoch a study's ASHA rung may
judge. `gzsl.trainer.TrainConfig` takes its warm-ups from here, and so does a study (its first ASHA
rung comes after them), so both read one table. The searched hyperparameters' defaults are in
gzsl.hyperparams."""

from __future__ import annotations

import math

# Linear warm-ups as (start, end) fractions of the run (CADA-VAE's epochs 0-93, 21-75, 6-22 of 100).
KL_WARMUP = (0.0, 0.93)
CROSS_WARMUP = (0.21, 0.75)
DISTANCE_WARMUP = (0.06, 0.22)


def alignment_on(epochs: int) -> int:
    """The first epoch after which every loss term that the warm-ups switch on (the distance and the
    cross-reconstruction of modality alignment) has its full weight: the end of the later of the two
    warm-ups. Before it, unseen classes are known only through an alignment still being built, so
    validation H (U especially) measures how far the ramp has got, not the configuration. The KL
    weight's ramp is left out: it anneals over the whole run (to 93%), by design, rather than
    switching a term on."""
    return math.ceil(max(CROSS_WARMUP[1], DISTANCE_WARMUP[1]) * epochs)


def first_rung(epochs: int, eval_every: int) -> int:
    """ASHA's first rung (grace period) for a schedule of `epochs`: the first evaluated epoch at or
    after `alignment_on` (a rung between evaluations would judge on the next evaluated epoch)."""
    on = max(1, alignment_on(epochs))
    if eval_every > 1:
        on = -(-on // eval_every) * eval_every
    return min(on, epochs)
