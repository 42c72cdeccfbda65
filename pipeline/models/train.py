"""Train a model package on normal footage: ``train_package`` and ``python -m pipeline.models.train``. Needs
torch.

    decode each normal input (pipeline.sources.read_media) ─► last ``holdout`` of each input kept aside
    train the video predictor and the audio predictor on the rest, within the time budget (fixed seeds)
    export both to ONNX ─► score the held-out part through the runtime path (VideoScorer / AudioScorer on the
    onnxruntime engine) ─► fit the calibrations ─► write the package atomically (tmp dir, then rename)

Video is decoded at ``OVERSAMPLE`` times the model's rate so that every phase of the 5 fps sampling becomes a
training sequence: five times the data from the same footage, and the calibration sees every phase a live
camera's sampling could land on. A source slower than that (a 10 fps camera, a 2 fps snapshot sequence) gives
what it has: each input's ``step`` (decoded frames per model period, measured from its timestamps) keeps the
context frames one model period apart, as the runtime's sampling does.

Hours of recordings are kept to a bounded amount (``FootagePlan``): every frame up to 20 min of video, frames at
the model's rate up to 1 h, evenly spaced pieces beyond.

Inputs may be clips, audio files (WAV, FLAC, OGG...: audio-only packages), image-sequence patterns or folders of
frames (``input_fps``, default ``DEFAULT_IMAGE_FPS``, says the rate they were taken at: video-only packages). Each
input's frame rate is recorded in the package (``SourceInfo.fps``): ``edge score`` assumes it for an image sequence
given without ``--fps``.
"""

from __future__ import annotations

import argparse
import errno
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
import torch.nn.functional as F
from tqdm import tqdm

import pipeline
from pipeline.calibration import Calibration
from pipeline.engines.cache import file_sha256
from pipeline.engines.ort import OrtEngine
from pipeline.features import LogMelConfig, log_mel
from pipeline.frames import AudioWindow, VideoFrame
from pipeline.models.audio import AudioPredictor
from pipeline.models.export import OPSET, export_onnx
from pipeline.models.package import (
    AudioModelSpec,
    LogMelSpec,
    ModelPackage,
    SourceInfo,
    TemporalModelSpec,
    TensorSpec,
    TrainedOn,
    VideoModelSpec,
)
from pipeline.models.temporal import TemporalPredictor
from pipeline.models.video import VideoPredictor, grid_shape
from pipeline.scorer import AudioScorer, TemporalScorer, VideoScorer
from pipeline.sources.spec import expand_folders

log = logging.getLogger(__name__)

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
# Training decodes audio in chunks of this much (the last part shorter than a chunk is left out); a power of two, so
# that chunk times add up exactly and fall into the right ``PIECE_S`` piece.
AUDIO_CHUNK_S = 1.0
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
# The generalisation margin of the calibration (see ``_calibrate``): held-out vs training-part raw scores compared at
# this quantile, the ratio capped at MAX_MARGIN.
MARGIN_QUANTILE, MAX_MARGIN = 0.99, 4.0
# Between each input's training part and its held-out last HOLDOUT, a gap of this fraction is used for neither: the
# footage right before the held-out part shows the same people and sounds, and would make it look more familiar than
# new footage is.
GAP = 0.05


def trained_part(n: int) -> int:
    """How many of an input's ``n`` items (frames, samples) training learns from: all before the gap."""
    return int(n * (1 - HOLDOUT - GAP))
MIN_CALIBRATION = 20  # held-out scores a calibration needs at least
# Held-out normal footage (per kind) below which a calibrated 3 ("1 in 1000 normal frames") is extrapolated from the
# tail of few, overlapping scores: trained on 40 s of a real scene (8 s held out), 0-8 % of its normal frames reached 3
# on one model (benchmarks/real_scene.py). edge train says so.
FEW_HELDOUT_S = 30.0
# How much normal footage training holds in memory. A minute of video at FPS * OVERSAMPLE costs ~170 MB while training
# (frames, their embeddings, the patch statistics; 16 min of clips peaked at 3.8 GB, 32 min at 6.7 GB) and ~6 s of
# the patch-statistics pass: hours of recordings would not fit a small machine, and a budget of minutes could not
# use them anyway. Up to FULL_RATE_MAX_S of video every phase is kept; up to MAX_FOOTAGE_S, frames at the model's
# rate (one phase: 5x less); beyond, evenly spaced pieces of PIECE_S, MAX_FOOTAGE_S in all (2.3 h of clips: 3.1 GB).
FULL_RATE_MAX_S = 20 * 60.0
MAX_FOOTAGE_S = 3600.0
PIECE_S = 60.0
# The video model stops after this many passes over its training sequences, or at its time budget if that comes
# first. Few minutes of footage are otherwise passed over hundreds of times and learnt by heart: PETS 2009 (40 s
# of a real forecourt, benchmarks/real_scene.py, seeds 0-2) scored video AUC 0.927 / 0.925 / 0.935 / 0.927 / 0.923
# after 25 / 34 / 51 / 68 / 102 passes and 0.907 after 170 (fused 0.912, the default 5-minute budget then). The bundled
# samples' 16 minutes are passed over about twice in that budget: unaffected.
MAX_VIDEO_EPOCHS = 50
# The same for the temporal model (passes over its 2 s training windows; at ~50 steps a second its share of the
# budget passed over PETS's 40 s 127 times). Retrained alone on the capped video models of seeds 0-2 there: 9 / 18 /
# 34 / 66 / 127 passes gave temporal AUC 0.853 / 0.847 / 0.846 / 0.831 / 0.793 (seed 2: 0.783 ... 0.631), fused
# 0.945 / 0.945 / 0.944 / 0.942 / 0.937. The samples' windows are passed over ~1.5 times: unaffected.
MAX_TEMPORAL_EPOCHS = 25
VIDEO_SHARE = 0.75  # of the time budget, when both models train (the temporal model's share included)
TEMPORAL_SHARE = 0.15  # of the video share
TEMPORAL_WINDOW, TEMPORAL_SCORE_STEPS = 10, 3  # 2 s of embeddings at 5 fps; the last 0.6 s scored
TEMPORAL_COPY_WEIGHT = 0.5
TEMPORAL_GLOBAL_WEIGHT = 4.0  # a shaking camera moves every cell at once: see pipeline.models.temporal
# Each cell's embeddings as changes from the window's first (pipeline.models.temporal, docs/decisions/0001).
TEMPORAL_RELATIVE = True
# Score every 2nd window (2.5 per second): the GRU re-reads its whole 2 s window for each score, and scoring it at
# every frame cost 3 % of the pipeline's throughput (edge bench) for a score that follows motion over seconds.
TEMPORAL_SCORE_EVERY = 2


def default_threads() -> int:
    """Torch threads for training: the cores this process may use, at most 8 (these small convolutions and GRUs
    stop gaining beyond that). 2 on the 2-core machines this was sized on; more steps in the same ``--minutes``
    on a bigger machine (the seed still fixes the data order; float sums may differ in the last bits)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    try:  # a container's CPU quota (cgroup v2 "quota period"; "max": none) counts, not the host's cores
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, min(8, cores))


@dataclass
class NormalInput:
    """One decoded normal input."""

    source: SourceInfo
    frames: np.ndarray  # uint8 (N, HEIGHT, WIDTH) at FPS * OVERSAMPLE, or slower (see step)
    audio: np.ndarray  # float32 (M,) at SAMPLE_RATE
    step: int = OVERSAMPLE  # decoded frames per model period (1 / FPS)


def source_sha256(path: str) -> str:
    """sha256 of a media file, or of the files an image-sequence pattern names (in order)."""
    from pipeline.sources.spec import image_sequence

    if os.path.isfile(path):
        return file_sha256(Path(path))
    h = hashlib.sha256()
    for f in image_sequence(path).files:
        h.update(file_sha256(Path(f)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class FootagePlan:
    """How much of the normal footage of one kind (with video, or audio only) training keeps (see
    ``FULL_RATE_MAX_S``)."""

    fps: float  # the rate video is decoded at: FPS * OVERSAMPLE, or FPS for long footage
    keep: float  # the fraction of every input kept, in evenly spaced pieces of PIECE_S (1: all of it)
    total_s: float  # the footage found (inputs whose length could not be read count 0)
    kind: str = "video"  # or "audio": audio-only inputs

    @property
    def reduced(self) -> bool:
        """Whether training keeps less than all of it, at full rate."""
        return self.keep < 1 or (self.kind == "video" and self.fps < FPS * OVERSAMPLE)

    def describe(self) -> str:
        what = f"{_span(self.total_s)} of normal {'footage' if self.kind == 'video' else 'audio-only footage'}"
        if self.keep < 1:
            return (f"{what}: training on {_span(MAX_FOOTAGE_S)} of it, {PIECE_S:g} s pieces spread evenly over "
                    f"every input" + (f", video at {FPS:g} fps" if self.kind == "video" else ""))
        if self.reduced:
            return f"{what}: video kept at the model's {FPS:g} fps (not {FPS * OVERSAMPLE:g}) to bound memory"
        return f"{what}, all of it used"


def _span(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def plan_footage(durations: Sequence[float | None], kind: str = "video") -> FootagePlan:
    """What to keep of inputs of ``kind`` lasting ``durations`` seconds (None: unknown)."""
    total = float(sum(d for d in durations if d))
    if total <= FULL_RATE_MAX_S:
        return FootagePlan(FPS * OVERSAMPLE, 1.0, total, kind)
    return FootagePlan(FPS, min(1.0, MAX_FOOTAGE_S / total), total, kind)


def probe_input(
    path: str, input_fps: float | None = None, record_s: float | None = None
) -> tuple[float | None, bool]:
    """(the length of a normal input in seconds, whether it has video), from its container (or its frame count for
    an image sequence) without decoding it; the length is None where the container does not say. A live camera
    lasts ``record_s`` (None: refused). A file that cannot be opened, or frames that cannot be read in order, raise
    their clear error here, before hours of other inputs are decoded."""
    import av

    from pipeline.evaluation import DEFAULT_IMAGE_FPS, is_image_source
    from pipeline.redact import redact_url
    from pipeline.sources.reader import open_error
    from pipeline.sources.spec import SourceSpec, image_sequence

    if is_image_source(path):
        return len(image_sequence(path).files) / (input_fps or DEFAULT_IMAGE_FPS), True
    if SourceSpec(camera_id="file", url=path).live:
        if record_s is not None:
            return record_s, True
        raise ValueError(
            f"{redact_url(path)} is a live camera: training learns from recorded footage. Record a few minutes of "
            "it first (for instance: ffmpeg -rtsp_transport tcp -i <url> -t 300 -c copy normal.mkv), then train on "
            "the file"
        )
    if not os.path.isfile(path):
        return None, True  # decoding says what it is not
    try:
        with av.open(path) as container:
            has_video = bool(container.streams.video)
            if container.duration:
                return float(container.duration / av.time_base), has_video
            lengths = [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
            return (max(lengths) if lengths else None), has_video
    except (OSError, ValueError, av.error.FFmpegError) as exc:
        raise open_error(exc, SourceSpec(camera_id="file", url=path)) from exc


def decode(path: str, *, video: bool = True, audio: bool = True, input_fps: float | None = None) -> NormalInput:
    """All of one normal input, video at FPS * OVERSAMPLE."""
    return decode_pieces(path, video=video, audio=audio, input_fps=input_fps)[0]


def decode_pieces(
    path: str,
    *,
    video: bool = True,
    audio: bool = True,
    input_fps: float | None = None,
    fps: float = FPS * OVERSAMPLE,
    keep: float = 1.0,
    first_piece: int = 0,
    pieces: int | None = None,
    max_frames: int | None = None,
    record_s: float = 300.0,
    progress: bool = False,
) -> list[NormalInput]:
    """One normal input as the contiguous stretches training keeps of it: all of it (``keep`` 1), or the pieces of
    ``PIECE_S`` that spread ``keep`` of all inputs evenly (pieces are counted over all inputs, this one's from
    ``first_piece``, so that of many short clips every few is kept; ``pieces``: how many this input counts, a shorter
    last part joining the one before; each run of kept pieces is its own stretch: no training sequence spans a
    gap). Video at ``fps``; at most ``max_frames`` frames (the rest is not read: a guard for an input whose length
    was unknown). Every stretch carries the whole input's ``SourceInfo``.

    A live camera (RTSP) is recorded for ``record_s`` seconds of its stream, with the reader's timeouts; if it drops
    out after something was recorded, training goes on with that (and says so). Its name in the package is its
    URL without the password; its sha256 that of what was recorded."""
    from pipeline.errors import SourceError
    from pipeline.evaluation import DEFAULT_IMAGE_FPS, is_image_source
    from pipeline.redact import redact_url
    from pipeline.sources import read_media
    from pipeline.sources.spec import SourceSpec

    image = is_image_source(path)
    if input_fps is None and image:
        input_fps = DEFAULT_IMAGE_FPS
    stretches: Stretches = {}
    first: float | None = None
    last_pts = 0.0
    kept_frames = 0
    timed = [0, math.inf, -math.inf]  # every decoded input frame, sampled or not: count, first and last time

    def seen(_index: int, t: float | None, _sampled: bool) -> None:
        if t is not None:
            timed[0] += 1
            timed[1], timed[2] = min(timed[1], t), max(timed[2], t)

    live = SourceSpec(camera_id="file", url=path).live
    items = read_media(
        path,
        width=WIDTH,
        height=HEIGHT,
        fps=fps,
        audio_window_s=AUDIO_CHUNK_S,
        audio_hop_s=AUDIO_CHUNK_S,  # hop = window: consecutive chunks tile the audio exactly
        sample_rate=SAMPLE_RATE,
        input_fps=input_fps,
        video=video,
        audio=audio,
        on_video_frame=seen,
    )
    recording = tqdm(total=round(record_s), desc=f"recording {redact_url(path)}", unit="s",
                     disable=not (live and progress), file=sys.stderr, leave=False)
    try:
        for item in items:
            if not (video if isinstance(item, VideoFrame) else audio):
                continue
            first = item.pts if first is None else first
            if live:
                if item.pts - first >= record_s:
                    break
                recording.update(int(item.pts - first) - recording.n)
            last_pts = max(last_pts, item.pts + item.duration if isinstance(item, AudioWindow) else item.pts)
            if isinstance(item, VideoFrame) and max_frames is not None and kept_frames >= max_frames:
                log.warning("%s: stopped reading at %.0f min: training keeps at most %d frames of normal video",
                            path, (item.pts - first) / 60, kept_frames)
                break
            if _keep_item(item, first, first_piece, pieces, keep, stretches) and isinstance(item, VideoFrame):
                kept_frames += 1
    except SourceError as exc:
        if not (live and stretches):
            raise
        log.warning("%s; training on the %.0f s recorded before it", exc, last_pts - (first or 0.0))
    else:
        if live and last_pts - (first or 0.0) < record_s - 1.0:  # a killed server just ends the stream
            log.warning("%s: the stream ended after %.0f s of the %.0f s asked for; training on that",
                        redact_url(path), last_pts - (first or 0.0), record_s)
    finally:
        items.close()
        recording.close()
    vid_all = sum(len(f) for f, _, _ in stretches.values())
    aud_all = sum(sum(len(c) for c in a) for _, _, a in stretches.values())
    duration = max(last_pts, vid_all / fps, aud_all / SAMPLE_RATE)
    rate = None
    if vid_all:  # the input's own frame rate: the given one for frames, else from its frames' times
        count, t_first, t_last = timed
        rate = input_fps if image else round((count - 1) / (t_last - t_first), 3) if t_last > t_first else None
    if live:
        digest = hashlib.sha256()
        for frames, _, chunks in stretches.values():
            for a in (*frames, *chunks):
                digest.update(a.tobytes())
        name, sha = redact_url(path), digest.hexdigest()
    else:
        name, sha = path, source_sha256(path)
    source = SourceInfo(name=name, sha256=sha, duration_s=round(duration, 3), fps=rate)
    out = [
        NormalInput(
            source,
            np.stack(frames) if frames else np.zeros((0, HEIGHT, WIDTH), np.uint8),
            np.concatenate(chunks) if chunks else np.zeros(0, np.float32),
            step=frame_step(np.asarray(frame_pts), fps),
        )
        for _, (frames, frame_pts, chunks) in sorted(stretches.items())
    ]
    return out or [NormalInput(source, np.zeros((0, HEIGHT, WIDTH), np.uint8), np.zeros(0, np.float32))]


Stretches = dict[int, tuple[list[np.ndarray], list[float], list[np.ndarray]]]  # by first piece: frames, times, audio


def _keep_item(
    item: VideoFrame | AudioWindow, first: float, first_piece: int, pieces: int | None, keep: float,
    stretches: Stretches,
) -> bool:
    """Add ``item`` to its stretch if its piece is kept (True), else not (False)."""
    piece = int((item.pts - first) // PIECE_S)
    run = _run_start(first_piece + (piece if pieces is None else min(piece, pieces - 1)), keep)
    if run is None:
        return False  # a piece between the kept ones
    if run not in stretches:  # (video and audio arrive interleaved, not in strict time order)
        stretches[run] = ([], [], [])
    frames, frame_pts, chunks = stretches[run]
    if isinstance(item, AudioWindow):
        chunks.append(np.asarray(item.samples, dtype=np.float32))
    else:
        frames.append(item.luma)
        frame_pts.append(item.pts)
    return True


def _kept(piece: int, keep: float) -> bool:
    """Whether piece ``piece`` (counted over all inputs) is one of the evenly spaced ``keep`` of all pieces."""
    return math.floor((piece + 1) * keep + 0.5) > math.floor(piece * keep + 0.5)


@functools.lru_cache(maxsize=256)
def _run_start(piece: int, keep: float) -> int | None:
    """The first piece of the run of kept pieces ``piece`` belongs to (one stretch of footage); None: not kept.
    Asked for every decoded item: cached, as a piece holds thousands."""
    if keep >= 1:
        return 0
    if not _kept(piece, keep):
        return None
    while piece > 0 and _kept(piece - 1, keep):
        piece -= 1
    return piece


def frame_step(pts: np.ndarray, fps: float = FPS * OVERSAMPLE) -> int:
    """Decoded frames per model period, from the frames' timestamps (``fps / FPS`` (OVERSAMPLE) when the source is
    fast enough, fewer for slower sources, 1 for sources at or below the model's rate)."""
    most = max(1, round(fps / FPS))
    if len(pts) < 2:
        return most
    dt = float(np.median(np.diff(pts)))
    if dt <= 0:
        return most
    return int(min(most, max(1, round(1.0 / (FPS * dt)))))


# ---------------------------------------------------------------------------------------------------- video


def _stack_indices(n: int, lo: int, hi: int, step: int = OVERSAMPLE) -> np.ndarray:
    """Indices (frame being scored) in [lo, hi) whose whole context lies in [lo, hi)."""
    first = lo + CONTEXT * step
    return np.arange(first, hi) if hi > first else np.zeros(0, np.int64)


def _gather(frames: np.ndarray, idx: np.ndarray, step: int = OVERSAMPLE) -> np.ndarray:
    offsets = np.arange(-CONTEXT, 1) * step
    return frames[idx[:, None] + offsets[None, :]]  # (B, CONTEXT+1, H, W)


def _augment_video(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Lighting drift (gain and offset changing across the stack) and sensor noise, in luma levels."""
    b = batch.shape[0]
    steps = torch.linspace(0, 1, batch.shape[1]).view(1, -1, 1, 1)
    gain0 = 0.75 + 0.5 * torch.rand(b, 1, 1, 1, generator=gen)
    gain1 = gain0 * (1 + 0.06 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5))
    off0 = 30 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    off1 = off0 + 8 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    gain = gain0 + (gain1 - gain0) * steps
    off = off0 + (off1 - off0) * steps
    sigma = 3.0 * torch.rand(b, 1, 1, 1, generator=gen)
    noise = torch.randn(batch.shape, generator=gen) * sigma
    return (batch * gain + off + noise).clamp(0, 255)


def _lr_at(frac: float, base: float) -> float:
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _progress(start: float, seconds: float, steps: int, max_steps: int) -> float:
    """How far a training run is, 0..1 and beyond: the time budget or the passes (MAX_*_EPOCHS), whichever ends
    first. The learning rate anneals over it and the run ends at 1."""
    return max((time.monotonic() - start) / seconds, steps / max_steps)


def train_video(
    inputs: Sequence[NormalInput], seconds: float, *, seed: int, progress: bool, batch: int = 16
) -> tuple[VideoPredictor, dict[str, Any], list[np.ndarray]]:
    """The video predictor, a report, and the embeddings of every frame of each input (what the temporal model
    learns from; zeros before a frame's context is complete)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    frames = [x.frames for x in inputs]
    steps_of = [x.step for x in inputs]
    train_idx = [
        _stack_indices(len(f), 0, trained_part(len(f)), st) for f, st in zip(frames, steps_of, strict=True)
    ]
    pool = [(i, j) for i, idx in enumerate(train_idx) for j in idx.tolist()]
    if len(pool) < batch:
        raise ValueError(f"too little normal video to train on ({len(pool)} sequences)")
    model = VideoPredictor(
        CONTEXT, channels=16, patch=PATCH, stride=PATCH_STRIDE, height=HEIGHT, width=WIDTH, embedding=1,
        copy_weight=COPY_WEIGHT, decoder=DECODER, shake_weight=SHAKE_WEIGHT,
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    losses: list[float] = []
    start = time.monotonic()
    steps = 0
    max_steps = max(1, round(MAX_VIDEO_EPOCHS * len(pool) / batch))
    bar = tqdm(
        total=round(seconds), desc="video", unit="s", disable=not progress, file=sys.stderr, leave=False
    )
    done = False
    while not done:
        order = rng.permutation(len(pool))
        epoch_loss, n = 0.0, 0
        for k in range(0, len(order) - batch + 1, batch):
            frac = _progress(start, seconds, steps, max_steps)
            if frac >= 1.0:
                done = True
                break
            for g in opt.param_groups:
                g["lr"] = _lr_at(frac, 2e-3)
            picks = order[k : k + batch]
            sample = np.stack([_gather(frames[pool[p][0]], np.array([pool[p][1]]), steps_of[pool[p][0]])[0]
                               for p in picks])
            xb = _augment_video(torch.from_numpy(sample).float(), gen)
            loss = model.error_map(xb).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch_loss += loss.item()
            n += 1
            steps += 1
            bar.update(round(time.monotonic() - start) - bar.n)
            if steps % 20 == 0:
                bar.set_postfix(loss=f"{epoch_loss / n:.4f}", epoch=len(losses) + 1)
        if n:
            losses.append(epoch_loss / n)
    bar.close()
    model.eval()
    # one pass over every sequence: per-patch normal error level (training part) and the embeddings the temporal
    # model learns from (all of it)
    t = time.monotonic()
    errs = []
    embeddings: list[np.ndarray] = []
    bar = tqdm(total=sum(len(x.frames) for x in inputs), desc="patch statistics", unit="frame",
               disable=not progress, file=sys.stderr, leave=False)  # (a minute or two on long footage)
    with torch.inference_mode():
        for x in inputs:
            idx = _stack_indices(len(x.frames), 0, len(x.frames), x.step)
            emb = np.zeros((len(x.frames), *model.embed(torch.zeros(1, CONTEXT + 1, HEIGHT, WIDTH)).shape[1:]),
                           np.float32)
            cut = trained_part(len(x.frames))
            for k in range(0, len(idx), 64):
                sub = idx[k : k + 64]
                err_map, e3 = model._run(torch.from_numpy(_gather(x.frames, sub, x.step)))
                emb[sub] = F.avg_pool2d(e3, 2).numpy()
                errs.append(model._patches(err_map)[torch.from_numpy(sub < cut)])
                bar.update(len(sub))
            bar.update(len(x.frames) - len(idx))  # the first frames of each input: context, not scored
            embeddings.append(emb)
    bar.close()
    model.fit_patch_scale(torch.cat(errs), uniform=UNIFORM_SCALE)
    return model, {
        "epoch_losses": [round(v, 6) for v in losses],
        "steps": steps,
        "epochs": round(steps * batch / len(pool), 2),
        "stopped_by": "epochs" if steps >= max_steps else "time",
        "patch_scale_s": round(time.monotonic() - t, 1),
        "sequences": len(pool),
        "seconds": round(time.monotonic() - start, 1),
    }, embeddings


def heldout_video(inputs: Sequence[NormalInput]) -> Iterator[np.ndarray]:
    """Batches of held-out stacks, every phase of the 5 fps sampling."""
    for x in inputs:
        n = len(x.frames)
        idx = _stack_indices(n, int(n * (1 - HOLDOUT)), n, x.step)
        for k in range(0, len(idx), 64):
            yield _gather(x.frames, idx[k : k + 64], x.step)


def _spread(idx: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """About ``n`` of the indices of all inputs together: every k-th of each input's (one k for all)."""
    every = max(1, sum(len(i) for i in idx) // max(n, 1))
    return [i[::every] for i in idx]


def _in_batches(idx: np.ndarray, size: int = 64) -> Iterator[np.ndarray]:
    for k in range(0, len(idx), size):
        yield idx[k : k + size]


def seen_video(inputs: Sequence[NormalInput], n: int) -> Iterator[np.ndarray]:
    """Batches of about ``n`` stacks spread evenly over the part of ``inputs`` the model trained on."""
    idx = [_stack_indices(len(x.frames), 0, trained_part(len(x.frames)), x.step) for x in inputs]
    for x, i in zip(inputs, _spread(idx, n), strict=True):
        for b in _in_batches(i):
            yield _gather(x.frames, b, x.step)


# ------------------------------------------------------------------------------------------------- temporal


def _window_indices(n: int, lo: int, hi: int, step: int) -> np.ndarray:
    """Last frames j in [lo, hi) of temporal windows whose every embedding (frames j-(W-1)*step .. j, each with
    its full video context) lies in [lo, hi)."""
    first = max(lo, CONTEXT * step) + (TEMPORAL_WINDOW - 1) * step
    return np.arange(first, hi) if hi > first else np.zeros(0, np.int64)


def _windows(emb: np.ndarray, idx: np.ndarray, step: int) -> np.ndarray:
    offsets = np.arange(-(TEMPORAL_WINDOW - 1), 1) * step
    return emb[idx[:, None] + offsets[None, :]]  # (B, W, C, eh, ew)


def train_temporal(
    inputs: Sequence[NormalInput],
    embeddings: Sequence[np.ndarray],
    seconds: float,
    *,
    seed: int,
    progress: bool,
    batch: int = 16,
) -> tuple[TemporalPredictor, dict[str, Any]]:
    rng = np.random.default_rng(seed + 2)
    torch.manual_seed(seed + 2)
    train_idx = [
        _window_indices(len(x.frames), 0, trained_part(len(x.frames)), x.step) for x in inputs
    ]
    pool = [(i, j) for i, idx in enumerate(train_idx) for j in idx.tolist()]
    if len(pool) < batch:
        raise ValueError(f"too little normal video to train the temporal model ({len(pool)} windows)")
    _, c, eh, ew = embeddings[0].shape
    model = TemporalPredictor(c, eh, ew, hidden=32, window=TEMPORAL_WINDOW, score_steps=TEMPORAL_SCORE_STEPS,
                              copy_weight=TEMPORAL_COPY_WEIGHT, global_weight=TEMPORAL_GLOBAL_WEIGHT,
                              relative=TEMPORAL_RELATIVE)
    used = np.concatenate([e[CONTEXT * x.step : trained_part(len(e))] for e, x in zip(embeddings, inputs,
                                                                                            strict=True)])
    model.mean.copy_(torch.from_numpy(used.mean(axis=(0, 2, 3))).view(1, 1, c, 1, 1))
    model.std.copy_(torch.from_numpy(np.maximum(used.std(axis=(0, 2, 3)), 1e-4)).view(1, 1, c, 1, 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses: list[float] = []
    start = time.monotonic()
    steps = 0
    max_steps = max(1, round(MAX_TEMPORAL_EPOCHS * len(pool) / batch))
    bar = tqdm(total=round(seconds), desc="temporal", unit="s", disable=not progress, file=sys.stderr, leave=False)
    done = False
    while not done:
        epoch_loss, n = 0.0, 0
        for _ in range(50):
            frac = _progress(start, seconds, steps, max_steps)
            if frac >= 1.0:
                done = True
                break
            for g in opt.param_groups:
                g["lr"] = _lr_at(frac, 3e-3)
            picks = rng.integers(0, len(pool), batch)
            xb = np.stack([_windows(embeddings[pool[p][0]], np.array([pool[p][1]]), inputs[pool[p][0]].step)[0]
                           for p in picks])
            loss = model.step_errors(torch.from_numpy(xb))[:, 2:].mean()  # after a short warm-up of the GRU
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            epoch_loss += loss.item()
            n += 1
            steps += 1
            bar.update(round(time.monotonic() - start) - bar.n)
        if n:
            losses.append(epoch_loss / n)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    model.eval()
    errs = []
    with torch.inference_mode():
        for i, idx in enumerate(train_idx):
            sub = idx[::2]
            for k in range(0, len(sub), 64):
                errs.append(model.cell_errors(torch.from_numpy(_windows(embeddings[i], sub[k : k + 64],
                                                                        inputs[i].step))))
    model.fit_scale(torch.cat(errs))
    return model, {
        "epoch_losses": [round(v, 6) for v in losses],
        "steps": steps,
        "epochs": round(steps * batch / len(pool), 2),
        "stopped_by": "epochs" if steps >= max_steps else "time",
        "windows": len(pool),
        "seconds": round(time.monotonic() - start, 1),
    }


def heldout_temporal(inputs: Sequence[NormalInput], embeddings: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    for x, emb in zip(inputs, embeddings, strict=True):
        n = len(x.frames)
        idx = _window_indices(n, int(n * (1 - HOLDOUT)), n, x.step)
        for k in range(0, len(idx), 64):
            yield _windows(emb, idx[k : k + 64], x.step)


def seen_temporal(inputs: Sequence[NormalInput], embeddings: Sequence[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """Batches of about ``n`` windows spread evenly over the part of ``inputs`` the model trained on."""
    idx = [_window_indices(len(x.frames), 0, trained_part(len(x.frames)), x.step) for x in inputs]
    for x, emb, i in zip(inputs, embeddings, _spread(idx, n), strict=True):
        for b in _in_batches(i):
            yield _windows(emb, b, x.step)


def heldout_seconds(video: Sequence[NormalInput], audio: Sequence[NormalInput]) -> dict[str, float]:
    """Seconds of normal footage held out to calibrate on, per kind that will be trained (video, audio)."""
    held = {"video": HOLDOUT * sum(len(x.frames) / (FPS * x.step) for x in video),
            "audio": HOLDOUT * sum(len(x.audio) for x in audio) / SAMPLE_RATE}
    return {kind: round(s, 1) for kind, s in held.items() if s > 0}


# ---------------------------------------------------------------------------------------------------- audio


def _split_audio(x: NormalInput) -> tuple[np.ndarray, np.ndarray]:
    """The audio trained on and the held-out audio of an input (the gap between them in neither)."""
    return x.audio[: trained_part(len(x.audio))], x.audio[int(len(x.audio) * (1 - HOLDOUT)) :]


def train_audio(
    inputs: Sequence[NormalInput],
    seconds: float,
    *,
    seed: int,
    progress: bool,
    batch: int = 32,
    crop: int = 200,
) -> tuple[AudioPredictor, np.ndarray, np.ndarray, dict[str, Any]]:
    rng = np.random.default_rng(seed + 1)
    torch.manual_seed(seed + 1)
    cfg = LogMelConfig(sample_rate=SAMPLE_RATE)
    mels = [log_mel(_split_audio(x)[0], cfg) for x in inputs]
    mels = [m for m in mels if len(m) > crop + 1]
    if not mels:
        raise ValueError("too little normal audio to train on")
    allm = np.concatenate(mels)
    mean = allm.mean(axis=0)
    std = np.maximum(allm.std(axis=0), 1e-3)
    norm = [((m - mean) / std).astype(np.float32) for m in mels]
    weights = np.array([len(m) - crop for m in norm], dtype=np.float64)
    weights /= weights.sum()
    model = AudioPredictor(cfg.n_mels, hidden=64, head=AUDIO_HEAD)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses: list[float] = []
    start = time.monotonic()
    steps = 0
    per_epoch = max(20, int(sum(len(m) for m in norm) / (batch * crop)))
    bar = tqdm(
        total=round(seconds), desc="audio", unit="s", disable=not progress, file=sys.stderr, leave=False
    )
    while time.monotonic() - start < seconds:
        epoch_loss = 0.0
        for _ in range(per_epoch):
            elapsed = time.monotonic() - start
            for g in opt.param_groups:
                g["lr"] = _lr_at(elapsed / seconds, 3e-3)
            src = rng.choice(len(norm), size=batch, p=weights)
            xs = []
            for s in src:
                o = rng.integers(0, len(norm[s]) - crop)
                xs.append(norm[s][o : o + crop])
            xb = torch.from_numpy(np.stack(xs))
            # level changes of +-3 dB: an offset in the log domain
            xb = xb + (torch.rand(batch, 1, 1) - 0.5) * (2 * math.log(10**0.3)) / torch.from_numpy(std)
            loss = model.loss(xb)[:, WARMUP_FRAMES:].mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            epoch_loss += loss.item()
            steps += 1
            bar.update(round(time.monotonic() - start) - bar.n)
        losses.append(epoch_loss / per_epoch)
        bar.set_postfix(loss=f"{losses[-1]:.4f}", epoch=len(losses))
    bar.close()
    model.eval()
    return (
        model,
        mean,
        std,
        {
            "epoch_losses": [round(v, 6) for v in losses],
            "steps": steps,
            "frames": int(sum(len(m) for m in norm)),
            "seconds": round(time.monotonic() - start, 1),
        },
    )


def heldout_audio(inputs: Sequence[NormalInput], n_samples: int, hop: int) -> Iterator[np.ndarray]:
    for x in inputs:
        held = _split_audio(x)[1]
        starts = np.arange(0, len(held) - n_samples + 1, hop)
        for k in range(0, len(starts), 64):
            yield np.stack([held[s : s + n_samples] for s in starts[k : k + 64]])


def seen_audio(inputs: Sequence[NormalInput], n_samples: int, n: int) -> Iterator[np.ndarray]:
    """Batches of about ``n`` windows spread evenly over the audio the model trained on."""
    seen = [_split_audio(x)[0] for x in inputs]
    total = sum(max(0, len(a) - n_samples) for a in seen)
    hop = max(1, total // max(n, 1))
    for a in seen:
        starts = np.arange(0, len(a) - n_samples + 1, hop)
        for k in range(0, len(starts), 64):
            yield np.stack([a[s : s + n_samples] for s in starts[k : k + 64]])


# ---------------------------------------------------------------------------------------------------- package


def _placeholder_calibration() -> Calibration:
    return Calibration.fit(np.linspace(0.0, 1.0, 100))


def _calibrate(
    score: Callable[[np.ndarray], np.ndarray],
    batches: Iterator[np.ndarray],
    seen: Callable[[int], Iterator[np.ndarray]] | None = None,
) -> tuple[Calibration, dict]:
    """Fit a calibration on the raw scores of held-out normal ``batches``, widened by the generalisation margin.

    The held-out part is footage of the same days as the training part, so the model's scores on it are lower
    than on the weeks that follow. ``seen(n)`` gives about ``n`` items of the training part: the ratio of the
    held-out to the training part's high quantile (``MARGIN_QUANTILE``) is how much the scores grew on footage the
    model had not seen; the fit assumes new footage is as far again from the held-out part and scales the held-out
    scores by that ratio (1 to ``MAX_MARGIN``) before fitting. Little footage, a model that learnt its training part
    by heart: a wide margin; plenty of footage and a model that generalises: close to 1."""
    raw = np.concatenate([score(b) for b in batches])
    margin, seen_q = 1.0, float("nan")
    if seen is not None:
        seen_raw = np.concatenate([score(b) for b in seen(raw.size)])
        seen_q = float(np.quantile(seen_raw, MARGIN_QUANTILE))
        held_q = float(np.quantile(raw, MARGIN_QUANTILE))
        if seen_q > 0 and held_q > seen_q:
            margin = min(MAX_MARGIN, held_q / seen_q)
    cal = Calibration.fit(raw * margin)
    q = np.quantile(raw, [0.5, 0.9, 0.99, 1.0])
    heldout_rate = float(np.mean(cal.calibrate(raw) >= 3.0))
    return cal, {
        "n": int(raw.size),
        "raw_quantiles": {k: float(v) for k, v in zip(("p50", "p90", "p99", "max"), q, strict=True)},
        "seen_quantile": seen_q,
        "margin": round(margin, 4),
        "heldout_rate_ge_3": heldout_rate,
        "raw_threshold_at": {str(c): round(cal.raw_threshold(c), 6) for c in (2.0, 3.0, 4.0)},
        "calibration": cal.describe(),
    }


def _versions() -> dict[str, str | int]:
    import onnx

    return {
        "lepton_edge": pipeline.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "opset": OPSET,
    }


def train_package(
    normal: list[str],
    out: Path,
    *,
    minutes: float = 5,
    seed: int = 0,
    progress: bool = True,
    video: bool = True,
    audio: bool = True,
    package_id: str | None = None,
    threads: int | None = None,
    input_fps: float | None = None,
    temporal: bool = True,
    record_s: float = 300.0,
) -> dict[str, Any]:
    """Train, export, calibrate and write a package to ``out``; returns a report (losses, calibration,
    timings). ``input_fps``: the rate image-sequence inputs were taken at (default ``DEFAULT_IMAGE_FPS``);
    ``record_s``: how much of a live camera's stream to record and learn from."""
    if not normal:
        raise ValueError("no normal inputs given")
    if not (video or audio):
        raise ValueError("nothing to train: both video and audio are off")
    t0 = time.monotonic()
    check_writable(Path(out))  # before minutes of decoding and training, not after
    paths = expand_folders(list(normal))
    probes = [probe_input(p, input_fps, record_s) for p in paths]
    # video footage and audio-only footage (a day of a microphone beside a few clips) are each kept to the bound
    kinds = ["video" if video and has_video else "audio" for _, has_video in probes]
    plans = {k: plan_footage([n for (n, _), kind in zip(probes, kinds, strict=True) if kind == k], k)
             for k in ("video", "audio")}
    for plan in plans.values():
        if plan.reduced:
            log.warning("%s", plan.describe())
    inputs: list[NormalInput] = []
    # frames: the most either bound keeps, a guard for inputs whose length could not be read
    budget = round(max(FULL_RATE_MAX_S * FPS * OVERSAMPLE, MAX_FOOTAGE_S * FPS) * 1.05)
    first_piece = {"video": 0, "audio": 0}
    for p, (length, _), kind in zip(tqdm(paths, desc="decode", unit="input", disable=not progress or len(paths) < 2,
                                         file=sys.stderr, leave=False), probes, kinds, strict=True):
        plan, first = plans[kind], first_piece[kind]
        count = max(1, round((length or 0) / PIECE_S))
        first_piece[kind] += count
        if length is not None and not any(_kept(first + k, plan.keep) for k in range(count)):
            continue  # none of it is kept: not even decoded
        stretches = decode_pieces(p, video=video, audio=audio, input_fps=input_fps, fps=plans["video"].fps,
                                  keep=plan.keep, first_piece=first, pieces=count, max_frames=max(0, budget),
                                  record_s=record_s, progress=progress)
        budget -= sum(len(x.frames) for x in stretches)
        inputs += stretches
    decode_s = time.monotonic() - t0
    report = train_from_inputs(
        inputs,
        out,
        minutes=minutes,
        seed=seed,
        progress=progress,
        video=video,
        audio=audio,
        package_id=package_id,
        threads=threads,
        temporal=temporal,
    )
    report["footage"] = {"found_s": round(plans["video"].total_s, 1), "video_fps": plans["video"].fps,
                         "kept_fraction": round(plans["video"].keep, 4)}
    if plans["audio"].total_s:
        report["footage"].update(audio_only_s=round(plans["audio"].total_s, 1),
                                 audio_only_kept_fraction=round(plans["audio"].keep, 4))
    report["timings_s"]["decode"] = round(decode_s, 1)
    report["timings_s"]["total"] = round(time.monotonic() - t0, 1)
    return report


# What writing a package needs at least: its graphs and weights (1.5 MB for the default) twice (the temporary
# directory, then the old one until it is replaced), with room to spare.
MIN_FREE_BYTES = 16 * 2**20


def check_writable(out: Path) -> None:
    """Raise ``OSError`` with a clear message unless a package can be written at ``out``: its folder made and
    written to, with ``MIN_FREE_BYTES`` free."""
    if out.parent.exists() and not out.parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"cannot write the model package in {out.parent}: a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent) as probe:
            probe.write(b"0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write the model package in {out.parent}: {exc.strerror or exc}") from exc
    free = shutil.disk_usage(out.parent).free
    if free < MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, f"cannot write the model package in {out.parent}: {free / 2**20:.1f} MB free, "
                      f"{MIN_FREE_BYTES / 2**20:.0f} MB needed")


def train_from_inputs(
    inputs: Sequence[NormalInput],
    out: Path,
    *,
    minutes: float = 5,
    seed: int = 0,
    progress: bool = True,
    video: bool = True,
    audio: bool = True,
    package_id: str | None = None,
    threads: int | None = None,
    temporal: bool = True,
) -> dict[str, Any]:
    """``train_package`` after decoding: for inputs already in memory (tests, synthetic footage)."""
    if not (video or audio):
        raise ValueError("nothing to train: both video and audio are off")
    out = Path(out)
    threads = default_threads() if threads is None else max(1, threads)
    torch.set_num_threads(threads)
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"timings_s": timings, "threads": threads}
    t0 = time.monotonic()
    # each model learns from the inputs that have enough of its modality: a WAV beside a clip adds sound only
    v_inputs = [x for x in inputs if len(x.frames) >= (CONTEXT * x.step + 1) / HOLDOUT] if video else []
    a_inputs = [x for x in inputs if len(x.audio) >= SAMPLE_RATE * WINDOW_S / HOLDOUT] if audio else []
    for kind, wanted, used, has in (
        ("video", video, v_inputs, [len(x.frames) > 0 for x in inputs]),
        ("audio", audio, a_inputs, [len(x.audio) > 0 for x in inputs]),
    ):
        short = list(dict.fromkeys(
            x.source.name for x, h in zip(inputs, has, strict=True) if h and all(x is not u for u in used)
        ))
        if wanted and short:
            log.warning("%s of %s too short to learn from (needs %.0f s)", kind, ", ".join(short),
                        (CONTEXT / FPS + 0.2) / HOLDOUT if kind == "video" else WINDOW_S / HOLDOUT)
    held_stacks = sum(len(_stack_indices(len(x.frames), int(len(x.frames) * (1 - HOLDOUT)), len(x.frames), x.step))
                      for x in v_inputs)
    if v_inputs and held_stacks < MIN_CALIBRATION:
        log.warning("not training a video model: the held-out %.0f%% of the video gives %d sequences to calibrate "
                    "on, %d needed (give more footage)", 100 * HOLDOUT, held_stacks, MIN_CALIBRATION)
        v_inputs = []
    do_video, do_audio = bool(v_inputs), bool(a_inputs)
    if not (do_video or do_audio):
        raise ValueError(
            "the normal inputs are too short to train anything (video needs "
            f"{(CONTEXT / FPS + 0.2) / HOLDOUT:.0f} s, audio {WINDOW_S / HOLDOUT:.0f} s)"
            if any(len(x.frames) or len(x.audio) for x in inputs)
            else "the normal inputs have neither video nor audio that this model can learn from"
        )
    report["heldout_s"] = held = heldout_seconds(v_inputs, a_inputs)
    few = {kind: s for kind, s in held.items() if s < FEW_HELDOUT_S}
    if few:
        log.warning("calibrating on %s of held-out normal footage (the last %.0f%% of each input): a calibrated 3 "
                    "(1 in 1000 normal frames) is extrapolated from few scores, and normal footage reaches it more "
                    "often; give %.1f min or more of footage",
                    " and ".join(f"{s:.0f} s of {k}" for k, s in few.items()), 100 * HOLDOUT,
                    FEW_HELDOUT_S / HOLDOUT / 60)
    report["inputs"] = {  # an input kept in pieces (see FootagePlan) is named once
        "video": list(dict.fromkeys(x.source.name for x in v_inputs)),
        "audio": list(dict.fromkeys(x.source.name for x in a_inputs)),
    }
    budget = minutes * 60.0
    video_s = budget * (VIDEO_SHARE if do_audio else 1.0)
    audio_s = budget - video_s if do_video else budget

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        video_spec = audio_spec = temporal_spec = None
        if do_video:
            t = time.monotonic()
            held_windows = sum(len(_window_indices(len(x.frames), int(len(x.frames) * (1 - HOLDOUT)), len(x.frames),
                                                   x.step)) for x in v_inputs)
            if temporal and held_windows < MIN_CALIBRATION:
                log.warning("not training a temporal model: the held-out video gives %d windows of %.0f s to "
                            "calibrate on, %d needed (give more footage)", held_windows, TEMPORAL_WINDOW / FPS,
                            MIN_CALIBRATION)
                temporal = False
            temporal_s = video_s * TEMPORAL_SHARE if temporal else 0.0
            vmodel, report["video"], embeddings = train_video(v_inputs, video_s - temporal_s, seed=seed,
                                                              progress=progress)
            timings["train_video"] = round(time.monotonic() - t, 1)
            video_spec = _export_video(vmodel, tmp, v_inputs, report["video"], timings)
            if temporal:
                t = time.monotonic()
                tmodel, report["temporal"] = train_temporal(v_inputs, embeddings, temporal_s, seed=seed,
                                                            progress=progress)
                timings["train_temporal"] = round(time.monotonic() - t, 1)
                temporal_spec = _export_temporal(tmodel, tmp, v_inputs, embeddings, video_spec, report["temporal"],
                                                 timings)
        if do_audio:
            t = time.monotonic()
            amodel, mean, std, report["audio"] = train_audio(a_inputs, audio_s, seed=seed, progress=progress)
            timings["train_audio"] = round(time.monotonic() - t, 1)
            audio_spec = _export_audio(amodel, mean, std, tmp, a_inputs, report["audio"], timings)
        sources = list({id(x.source): x.source for x in inputs}.values())  # pieces share their input's
        hashes = "".join(
            s.sha256 + s.calibration.describe() for s in (video_spec, audio_spec, temporal_spec) if s is not None
        )
        package = ModelPackage(
            package_id=package_id or out.name,
            version=hashlib.sha256(hashes.encode()).hexdigest()[:12],
            created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            video=video_spec,
            audio=audio_spec,
            temporal=temporal_spec,
            trained_on=TrainedOn(
                sources=sources,
                duration_s=round(sum(x.duration_s for x in sources), 3),
                holdout_fraction=HOLDOUT,
            ),
            versions=_versions(),
        )
        package.save(tmp)
        ModelPackage.load(tmp)  # what we ship must load
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    timings["total"] = round(time.monotonic() - t0, 1)
    report.update(package=str(out), package_id=package.package_id, version=package.version)
    report["size_bytes"] = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return report


def _scratch_package(
    video: VideoModelSpec | None, audio: AudioModelSpec | None, temporal: TemporalModelSpec | None = None
) -> ModelPackage:
    return ModelPackage(
        package_id="calibrating",
        version="0",
        created="",
        video=video,
        audio=audio,
        temporal=temporal,
        trained_on=TrainedOn(sources=[], duration_s=0, holdout_fraction=HOLDOUT),
        versions={},
    )


def _export_video(
    model: VideoPredictor, tmp: Path, inputs: Sequence[NormalInput], report: dict, timings: dict
) -> VideoModelSpec:
    t = time.monotonic()
    graph = export_onnx(
        model,
        torch.zeros(2, CONTEXT + 1, HEIGHT, WIDTH, dtype=torch.uint8),
        tmp / "video.onnx",
        arch="video_predictor",
        input_name="frames",
        output_name=["patch_err", "embedding"] if model.embedding else "patch_err",
    )
    gh, gw = grid_shape(HEIGHT, WIDTH, PATCH, PATCH_STRIDE)
    emb_shape = list(model.embed(torch.zeros(1, CONTEXT + 1, HEIGHT, WIDTH)).shape[1:])
    spec = VideoModelSpec(
        graph=graph.name,
        sha256=file_sha256(graph),
        reference_weights=graph.with_suffix(".pt").name,
        input=TensorSpec(name="frames", dtype="uint8", shape=[None, CONTEXT + 1, HEIGHT, WIDTH]),
        output=TensorSpec(name="patch_err", dtype="float32", shape=[None, gh, gw]),
        calibration=_placeholder_calibration(),
        width=WIDTH,
        height=HEIGHT,
        context=CONTEXT,
        fps=FPS,
        patch=PATCH,
        patch_stride=PATCH_STRIDE,
        pool_fraction=POOL_FRACTION,
        embedding=TensorSpec(name="embedding", dtype="float32", shape=[None, *emb_shape]) if model.embedding else None,
    )
    timings["export_video"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    engine = OrtEngine()
    engine.load(graph)
    scorer = VideoScorer(_scratch_package(spec, None), engine)
    cal, report["calibration"] = _calibrate(lambda b: scorer.score(b)[0], heldout_video(inputs),
                                            lambda n: seen_video(inputs, n))
    engine.close()
    timings["calibrate_video"] = round(time.monotonic() - t, 1)
    return spec.model_copy(update={"calibration": cal})


def _export_temporal(
    model: TemporalPredictor,
    tmp: Path,
    inputs: Sequence[NormalInput],
    embeddings: Sequence[np.ndarray],
    video: VideoModelSpec,
    report: dict,
    timings: dict,
) -> TemporalModelSpec:
    t = time.monotonic()
    c, eh, ew = model.channels, model.grid_h, model.grid_w
    graph = export_onnx(
        model,
        torch.zeros(2, model.window, c, eh, ew),
        tmp / "temporal.onnx",
        arch="temporal_predictor",
        input_name="embeddings",
        output_name="cell_err",
    )
    spec = TemporalModelSpec(
        graph=graph.name,
        sha256=file_sha256(graph),
        reference_weights=graph.with_suffix(".pt").name,
        input=TensorSpec(name="embeddings", dtype="float32", shape=[None, model.window, c, eh, ew]),
        output=TensorSpec(name="cell_err", dtype="float32", shape=[None, eh, ew]),
        calibration=_placeholder_calibration(),
        window=model.window,
        score_steps=model.score_steps,
        score_every=TEMPORAL_SCORE_EVERY,
    )
    timings["export_temporal"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    engine = OrtEngine()
    engine.load(graph)
    scorer = TemporalScorer(_scratch_package(video, None, spec), engine)
    cal, report["calibration"] = _calibrate(lambda b: scorer.score(b)[0], heldout_temporal(inputs, embeddings),
                                            lambda n: seen_temporal(inputs, embeddings, n))
    engine.close()
    timings["calibrate_temporal"] = round(time.monotonic() - t, 1)
    return spec.model_copy(update={"calibration": cal})


def _export_audio(
    model: AudioPredictor,
    mean: np.ndarray,
    std: np.ndarray,
    tmp: Path,
    inputs: Sequence[NormalInput],
    report: dict,
    timings: dict,
) -> AudioModelSpec:
    t = time.monotonic()
    cfg = LogMelConfig(sample_rate=SAMPLE_RATE)
    n_frames = cfg.n_frames(round(WINDOW_S * SAMPLE_RATE))
    graph = export_onnx(
        model,
        torch.zeros(2, n_frames, cfg.n_mels),
        tmp / "audio.onnx",
        arch="audio_predictor",
        input_name="mel",
        output_name="frame_err",
        dynamic_axes=(0, 1),
        output_dynamic_axes=(0, 1),
    )
    spec = AudioModelSpec(
        graph=graph.name,
        sha256=file_sha256(graph),
        reference_weights=graph.with_suffix(".pt").name,
        input=TensorSpec(name="mel", dtype="float32", shape=[None, None, cfg.n_mels]),
        output=TensorSpec(name="frame_err", dtype="float32", shape=[None, None]),
        calibration=_placeholder_calibration(),
        sample_rate=SAMPLE_RATE,
        n_mels=cfg.n_mels,
        window_s=WINDOW_S,
        hop_s=HOP_S,
        features=LogMelSpec(**cfg.to_dict()),
        norm_mean=[float(v) for v in mean],
        norm_std=[float(v) for v in std],
        skip_frames=SCORE_SKIP_FRAMES,
        top_k=TOP_K,
        score="span_mean_excess" if model.head_kind == "gauss" else "topk_mean_frame_mse",
    )
    timings["export_audio"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    spec = calibrate_audio(spec, graph, inputs, report)
    timings["calibrate_audio"] = round(time.monotonic() - t, 1)
    return spec


def calibrate_audio(spec: AudioModelSpec, graph: Path, inputs: Sequence[NormalInput], report: dict) -> AudioModelSpec:
    """``spec`` with its calibration fitted on the held-out part of ``inputs``, scored through ``graph`` as
    ``spec`` says (window, skip, top-k); the fit's figures go in ``report["calibration"]``."""
    engine = OrtEngine()
    engine.load(graph)
    try:
        scorer = AudioScorer(_scratch_package(None, spec), engine)
        # a finer hop than the runtime's: more (overlapping) windows for the tail fit, same per-window
        # computation; finer still for short inputs, so that there are enough windows to fit at all
        held = min(len(_split_audio(x)[1]) for x in inputs)
        finer = round(spec.hop_s * spec.sample_rate / 4)
        hop = max(spec.features.hop_length, min(finer, (held - spec.n_samples) // 40))
        cal, report["calibration"] = _calibrate(scorer.score, heldout_audio(inputs, spec.n_samples, hop),
                                                lambda n: seen_audio(inputs, spec.n_samples, n))
    finally:
        engine.close()
    return spec.model_copy(update={"calibration": cal})


def _replace_dir(tmp: Path, out: Path) -> None:
    """Put ``tmp`` at ``out``; an existing package there is replaced, never left half-written."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.models.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--normal", nargs="+", required=True, help="normal footage (files or image-sequence patterns)"
    )
    parser.add_argument("--out", type=Path, required=True, help="package directory to write")
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget (both models)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=None, help="frame rate of image-sequence inputs (default 10)")
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: usable cores, at most 8)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = train_package(
        args.normal,
        args.out,
        minutes=args.minutes,
        seed=args.seed,
        progress=not args.quiet,
        video=not args.no_video,
        audio=not args.no_audio,
        input_fps=args.fps,
        threads=args.threads,
    )
    print(json.dumps(report, indent=1))  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    sys.exit(main())
