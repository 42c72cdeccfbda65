"""The training recipe: the models' input size and rates, the audio windows, the model settings, the held-out split
and the learning-rate schedule the three training loops share.

Every stage of ``edge train`` reads these (``footage`` decodes at them, ``train_video`` / ``train_temporal`` /
``train_audio`` learn with them, ``packaging`` writes them into the package's specs); the runtime reads them back
from the package, never from here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # footage imports this module
    from pipeline.models.footage import NormalInput

# Model input: 256x144 luma keeps 16:9 (the samples and most cameras) with sides divisible by 16 (three stride-2
# stages and the 2x2-pooled embedding); a person 30 m away in a 720p frame is still ~4x5 px here. 5 fps with 4 past
# frames gives 0.8 s of motion context. Why these values and the others below: docs/decisions/0002.
WIDTH, HEIGHT, CONTEXT, FPS = 256, 144, 4, 5.0
# The video score (see pipeline.models.video and pipeline.scorer.worst_cell): the prediction error of each patch in
# one unit for the whole picture (UNIFORM_SCALE; no per-patch level, no division by the change a patch saw), the raw
# score the mean of the worst POOL_FRACTION of the patches: 5 %, about the patches one person or bike touches at the
# model's resolution (8-pixel patches every 4 pixels), so a whole object counts rather than its worst few patches.
COPY_WEIGHT = 0.0
UNIFORM_SCALE = True
POOL_FRACTION = 0.05
DECODER = "light"  # see pipeline.models.video.DECODERS
# A shaking camera's error explained by its measured move (see pipeline.models.video).
SHAKE_WEIGHT = 2.0
PATCH, PATCH_STRIDE = 8, 4
OVERSAMPLE = 5
SAMPLE_RATE = 16000
# Audio windows of 0.8 s every 0.2 s: a sound is scored at most 0.2 s after it starts (a window is scored when it
# ends) and every frame the video model scores (5 per second) sees a fresh window.
WINDOW_S, HOP_S = 0.8, 0.2
# The audio GRU starts each window from nothing: training leaves its first WARMUP_FRAMES errors (0.1 s) out of the
# loss. Scoring leaves out more: a window's first SCORE_SKIP_FRAMES (0.4 s of its 0.8 s; 78 frames) are the GRU's
# context and its newest 38 frames (~0.4 s) are scored, so a sound stops counting 0.4 s after it ends and each
# moment is scored by two windows. ``edge eval``'s audio column labels a window by the whole 0.8 s, of which the
# oldest half counts for nothing: it reads lower than what the fused score takes from audio.
WARMUP_FRAMES, SCORE_SKIP_FRAMES, TOP_K = 10, 40, 5
AUDIO_HEAD = "gauss"  # see pipeline.models.audio: energy above normal, one-sided, averaged over the scored span
HOLDOUT = 0.2
# Between each input's training part and its held-out last HOLDOUT, a gap of this fraction is used for neither: the
# footage right before the held-out part shows the same people and sounds, and would make it look more familiar than
# new footage is.
GAP = 0.05
TEMPORAL_WINDOW, TEMPORAL_SCORE_STEPS = 10, 3  # 2 s of embeddings at 5 fps; the last 0.6 s scored
TEMPORAL_COPY_WEIGHT = 0.5
TEMPORAL_GLOBAL_WEIGHT = 4.0  # a shaking camera moves every cell at once: see pipeline.models.temporal
# Each cell's embeddings as changes from the window's first (pipeline.models.temporal, docs/decisions/0001).
TEMPORAL_RELATIVE = True
# Score every 2nd window (2.5 per second): the GRU re-reads its whole 2 s window for each score, a cost (edge bench)
# that scoring at every frame would pay for a score that follows motion over seconds.
TEMPORAL_SCORE_EVERY = 2


def trained_part(n: int) -> int:
    """How many of an input's ``n`` items (frames, samples) training learns from: all before the gap."""
    return int(n * (1 - HOLDOUT - GAP))


# With this many inputs of a kind or more, the calibration holds out whole inputs (every HOLDOUT_EVERY-th, from the
# middle one of each run) instead of each input's tail: other recordings (or blocks of a long one) are what new
# footage looks like, where the tail of a recording shows the same people and sounds as the part trained on.
WHOLE_INPUTS_MIN, HOLDOUT_EVERY = 8, 5


def split_roles(inputs: Sequence[NormalInput]) -> list[NormalInput]:
    """``inputs`` with their ``role`` set for one model: with ``WHOLE_INPUTS_MIN`` or more, one in
    ``HOLDOUT_EVERY`` held out whole and the others trained on whole; else each split at its tail."""
    if len(inputs) < WHOLE_INPUTS_MIN:
        return [replace(x, role="tail") for x in inputs]
    mid = HOLDOUT_EVERY // 2
    return [replace(x, role="heldout" if i % HOLDOUT_EVERY == mid else "train") for i, x in enumerate(inputs)]


def whole_inputs_held(inputs: Sequence[NormalInput]) -> bool:
    """Whether ``inputs`` (after ``split_roles``) hold out whole inputs rather than tails."""
    return any(x.role == "heldout" for x in inputs)


def train_end(x: NormalInput, n: int) -> int:
    """How many of input ``x``'s first ``n`` items (frames, samples, embeddings) training learns from."""
    return 0 if x.role == "heldout" else n if x.role == "train" else trained_part(n)


def heldout_start(x: NormalInput, n: int) -> int:
    """Where the held-out part of input ``x``'s ``n`` items starts (``n``: none held out)."""
    return 0 if x.role == "heldout" else n if x.role == "train" else int(n * (1 - HOLDOUT))


def _lr_at(frac: float, base: float) -> float:
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _spread(idx: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """About ``n`` of the indices of all inputs together: every k-th of each input's (one k for all)."""
    every = max(1, sum(len(i) for i in idx) // max(n, 1))
    return [i[::every] for i in idx]


def _in_batches(idx: np.ndarray, size: int = 64) -> Iterator[np.ndarray]:
    for k in range(0, len(idx), size):
        yield idx[k : k + size]
