"""The training recipe: the models' input size and rates, the audio windows, the model settings, the held-out split
and the learning-rate schedule the three training loops share.

Every stage of ``edge train`` reads these (``footage`` decodes at them, ``train_video`` / ``train_temporal`` /
``train_audio`` learn with them, ``packaging`` writes them into the package's specs); the runtime reads them back
from the package, never from here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

# Model input: 256x144 luma keeps 16:9 (the samples and most cameras) with sides divisible by 16 (three stride-2
# stages and the 2x2-pooled embedding). A person 30 m away in a 720p frame (~10x25 px) is still ~4x5 px here, where
# 160x96 left 2x3 px: measured on the samples, video AUC 0.899 → 0.920 (far scooter clip 0.73 → 0.78), for 2.4x the
# compute (~1.6 ms per frame with ONNX Runtime on one core: ~8 ms per camera-second at 5 fps). 5 fps with 4 past
# frames gives 0.8 s of motion context.
WIDTH, HEIGHT, CONTEXT, FPS = 256, 144, 4, 5.0
# The video score (see pipeline.models.video and pipeline.scorer.worst_cell): the prediction error of each patch in
# one unit for the whole picture (UNIFORM_SCALE; no per-patch level, no division by the change a patch saw), the raw
# score the mean of the worst POOL_FRACTION of the patches: 5 %, about the patches one person or bike touches at the
# model's resolution (8-pixel patches every 4 pixels), so a whole object counts rather than its worst few patches.
COPY_WEIGHT = 0.0
UNIFORM_SCALE = True
POOL_FRACTION = 0.05
DECODER = "light"  # see pipeline.models.video.DECODERS
# A shaking camera's error explained by its measured move (see pipeline.models.video). On the weights shipped before
# it: 0 / 0.5 / 1 / 2 / 4 → video AUC on the samples 0.928 / 0.928 / 0.928 / 0.927 / 0.927, frames of normal_eval
# shaken by up to 0.5 model px (2.5 px at 720p) scoring above its steady maximum 93 / 40 / 16 / 7 / 5 % (the move
# measured at full resolution then; the pooled estimate shipped: AUC 0.003 lower, shakes discounted a bit more).
SHAKE_WEIGHT = 2.0
PATCH, PATCH_STRIDE = 8, 4
OVERSAMPLE = 5
SAMPLE_RATE = 16000
# Audio windows of 0.8 s every 0.2 s: a sound is scored at most 0.2 s after it starts (a window is scored when it
# ends) and every frame the video model scores (5 per second) sees a fresh window. Measured on the same weights,
# recalibrated (fused frame AUC, 1 s every 0.5 s → 1 s every 0.2 s → 0.8 s every 0.2 s): the samples 0.932 → 0.937 →
# 0.937; benchmarks/robustness.py's variants as_is 0.908 → 0.914 → 0.915, noisy 0.898 → 0.913 → 0.912, gray43_10fps
# 0.905 → 0.912 → 0.912, dusk_lowbit 0.887 → 0.892 → 0.889; recall the same, false alarms the same but one more on
# as_is at 1 s every 0.2 s. 1 s every 0.1 s read 0.939 on the samples, every 0.25 s 0.936, every 0.3 s 0.926 (off
# the 0.2 s frame grid). Cost: 1.9 instead of 1.05 CPU ms per second of audio (1 s every 0.2 s: 2.1; 0.1 s: ~4), about
# 1.6 % of a camera's pipeline.
WINDOW_S, HOP_S = 0.8, 0.2
# The audio GRU starts each window from nothing: training leaves its first WARMUP_FRAMES errors (0.1 s) out of the
# loss. Scoring leaves out more: a window's first SCORE_SKIP_FRAMES (0.4 s of its 0.8 s; 78 frames) are the GRU's
# context and its newest 38 frames (~0.4 s) are scored, so a sound stops counting 0.4 s after it ends (it counted
# for 0.7 s) and each moment is scored by two windows. Measured on the same weights, recalibrated, fused frame AUC
# with skip 10 → 40 (top 5): the samples 0.948 → 0.954; benchmarks/robustness.py's variants as_is 0.923 → 0.925,
# gray43_10fps 0.911 → 0.914, noisy 0.926 → 0.925, dusk_lowbit 0.870 → 0.872; recall and false alarms the same.
# What counts is the scored span, not the context: 0.6 s windows skipping 20 and 1 s windows skipping 60 read the
# same (0.954 / 0.955 on the samples); 20 (0.6 s scored) 0.951, 30 0.951. The audio column of ``edge eval`` reads
# lower (0.927 → 0.902): it labels a window by the whole 0.8 s, of which the oldest half now counts for nothing.
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
# Score every 2nd window (2.5 per second): the GRU re-reads its whole 2 s window for each score, and scoring it at
# every frame cost 3 % of the pipeline's throughput (edge bench) for a score that follows motion over seconds.
TEMPORAL_SCORE_EVERY = 2


def trained_part(n: int) -> int:
    """How many of an input's ``n`` items (frames, samples) training learns from: all before the gap."""
    return int(n * (1 - HOLDOUT - GAP))


# With this many inputs of a kind or more, the calibration holds out whole inputs (every HOLDOUT_EVERY-th, from the
# middle one of each run) instead of each input's tail: other recordings (or blocks of a long one) are what new
# footage looks like, where the tail of a recording shows the same people and sounds as the part trained on.
WHOLE_INPUTS_MIN, HOLDOUT_EVERY = 8, 5


def split_roles(inputs: Sequence[Any]) -> list[Any]:
    """``inputs`` (NormalInput) with their ``role`` set for one model: with ``WHOLE_INPUTS_MIN`` or more, one in
    ``HOLDOUT_EVERY`` held out whole and the others trained on whole; else each split at its tail."""
    if len(inputs) < WHOLE_INPUTS_MIN:
        return [replace(x, role="tail") for x in inputs]
    mid = HOLDOUT_EVERY // 2
    return [replace(x, role="heldout" if i % HOLDOUT_EVERY == mid else "train") for i, x in enumerate(inputs)]


def whole_inputs_held(inputs: Sequence[Any]) -> bool:
    """Whether ``inputs`` (after ``split_roles``) hold out whole inputs rather than tails."""
    return any(x.role == "heldout" for x in inputs)


def train_end(x: Any, n: int) -> int:
    """How many of input ``x``'s first ``n`` items (frames, samples, embeddings) training learns from."""
    return 0 if x.role == "heldout" else n if x.role == "train" else trained_part(n)


def heldout_start(x: Any, n: int) -> int:
    """Where the held-out part of input ``x``'s ``n`` items starts (``n``: none held out)."""
    return 0 if x.role == "heldout" else n if x.role == "train" else int(n * (1 - HOLDOUT))


def _lr_at(frac: float, base: float) -> float:
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _progress(start: float, seconds: float, steps: int, max_steps: int) -> float:
    """How far a training run is, 0..1 and beyond: the time budget or the passes (MAX_*_EPOCHS), whichever ends
    first. The learning rate anneals over it and the run ends at 1."""
    return max((time.monotonic() - start) / seconds, steps / max_steps)


def _spread(idx: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """About ``n`` of the indices of all inputs together: every k-th of each input's (one k for all)."""
    every = max(1, sum(len(i) for i in idx) // max(n, 1))
    return [i[::every] for i in idx]


def _in_batches(idx: np.ndarray, size: int = 64) -> Iterator[np.ndarray]:
    for k in range(0, len(idx), size):
        yield idx[k : k + size]
