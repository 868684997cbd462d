"""method.md's schedule, without torch: the warm-ups, and the epoch after which they have switched
modality alignment on. `gzsl.trainer.TrainConfig` takes its warm-ups from here, and so does a study's
stopping policy (gzsl.selection: its highest rung comes after them), so both read one table. The
searched hyperparameters' defaults are in gzsl.hyperparams."""

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
