"""Normal footage for training: each input probed (``probe_input``), the amount kept planned (``plan_footage``)
and decoded (``read_footage``, ``decode_pieces``) into ``NormalInput``: luma frames at the model's size and mono audio.

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
given without ``--fps``. A live camera (RTSP) is recorded to a file first (``pipeline.sources.record``), which
is then read like any other input and stays to evaluate or retrain with.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import sys
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.engines.cache import file_sha256
from pipeline.frames import AudioWindow, VideoFrame
from pipeline.models.package import SourceInfo
from pipeline.models.recipe import FPS, HEIGHT, OVERSAMPLE, SAMPLE_RATE, WIDTH
from pipeline.sources.spec import SourceSpec, expand_folders

log = logging.getLogger(__name__)

# Training decodes audio in chunks of this much (the last part shorter than a chunk is left out); a power of two, so
# that chunk times add up exactly and fall into the right ``PIECE_S`` piece.
AUDIO_CHUNK_S = 1.0
# How much normal footage training holds in memory (frames, their embeddings, the patch statistics: a minute of video
# at the full rate costs ~170 MB, docs/decisions/0002): hours of recordings would not fit a small machine, and a
# budget of minutes could not use them anyway. Up to FULL_RATE_MAX_S of video every phase is kept; up to
# MAX_FOOTAGE_S, frames at the model's rate (one phase: 5x less); beyond, evenly spaced pieces of PIECE_S,
# MAX_FOOTAGE_S in all.
FULL_RATE_MAX_S = 20 * 60.0
MAX_FOOTAGE_S = 3600.0
PIECE_S = 60.0


@dataclass
class NormalInput:
    """One decoded normal input."""

    source: SourceInfo
    frames: np.ndarray  # uint8 (N, HEIGHT, WIDTH) at FPS * OVERSAMPLE, or slower (see step)
    audio: np.ndarray  # float32 (M,) at SAMPLE_RATE
    step: int = OVERSAMPLE  # decoded frames per model period (1 / FPS)
    # what training does with it (pipeline.models.recipe.split_roles): "tail" learns from all before the gap and
    # holds out its last HOLDOUT; "train" learns from all of it; "heldout" is kept whole for the calibration
    role: str = "tail"


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
            return (
                f"{what}: training on {_span(MAX_FOOTAGE_S)} of it, {PIECE_S:g} s pieces spread evenly over "
                f"every input" + (f", video at {FPS:g} fps" if self.kind == "video" else "")
            )
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


def is_live(path: str) -> bool:
    """Whether a normal input is a live camera (RTSP), recorded before training learns from it."""
    return SourceSpec(camera_id="file", url=path).live


def _live_refusal(path: str) -> ValueError:
    from pipeline.redact import redact_url

    return ValueError(
        f"{redact_url(path)} is a live camera: training learns from recorded footage. Record a few minutes of it "
        "first (edge record <url> --minutes 5 --out normal.mkv), then train on the file"
    )


def probe_input(path: str, input_fps: float | None = None) -> tuple[float | None, bool]:
    """(the length of a normal input in seconds, whether it has video), from its container (or its frame count for
    an image sequence) without decoding it; the length is None where the container does not say. A live camera is
    refused (``read_footage`` records it first). A file that cannot be opened, or frames that cannot be read in
    order, raise their clear error here, before hours of other inputs are decoded."""
    import av

    from pipeline.evaluation import DEFAULT_IMAGE_FPS, is_image_source
    from pipeline.sources.reader import open_error
    from pipeline.sources.spec import image_sequence

    if is_image_source(path):
        return len(image_sequence(path).files) / (input_fps or DEFAULT_IMAGE_FPS), True
    if is_live(path):
        raise _live_refusal(path)
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


def read_footage(
    normal: Sequence[str],
    *,
    video: bool,
    audio: bool,
    input_fps: float | None,
    record_s: float,
    progress: bool,
    record_dir: Path,
    recordings: dict[str, str],
) -> tuple[list[NormalInput], dict[str, FootagePlan]]:
    """The normal inputs (files, image sequences, folders of them, live cameras) as the stretches training keeps of
    them, and the plan of each kind ("video", "audio": audio-only inputs). Every file is probed before any camera
    is recorded or any input decoded, so that one that is not media fails at once; a live camera is recorded for
    ``record_s`` into ``record_dir`` (``pipeline.sources.record``) and learnt from that file, which stays there to
    evaluate or retrain with (``recordings`` lists them, camera URL without its password -> file); an input none
    of whose pieces is kept is not decoded."""
    from pipeline.redact import redact_url
    from pipeline.sources.record import record_camera, recording_name

    paths = expand_folders(list(normal))
    probed = {p: probe_input(p, input_fps) for p in paths if not is_live(p)}
    recorded: dict[str, str] = {}
    for p in dict.fromkeys(p for p in paths if is_live(p)):
        recorded[p] = str(record_camera(p, record_dir / recording_name(p), record_s, progress=progress).path)
        log.info("%s recorded to %s", redact_url(p), recorded[p])
        probed[recorded[p]] = probe_input(recorded[p], input_fps)
    recordings.update({redact_url(p): f for p, f in recorded.items()})
    paths = [recorded.get(p, p) for p in paths]
    probes = [probed[p] for p in paths]
    # video footage and audio-only footage (a day of a microphone beside a few clips) are each kept to the bound
    kinds = ["video" if video and has_video else "audio" for _, has_video in probes]
    plans = {
        k: plan_footage([n for (n, _), kind in zip(probes, kinds, strict=True) if kind == k], k)
        for k in ("video", "audio")
    }
    for plan in plans.values():
        if plan.reduced:
            log.warning("%s", plan.describe())
    inputs: list[NormalInput] = []
    # frames: the most either bound keeps, a guard for inputs whose length could not be read
    budget = round(max(FULL_RATE_MAX_S * FPS * OVERSAMPLE, MAX_FOOTAGE_S * FPS) * 1.05)
    first_piece = {"video": 0, "audio": 0}
    for p, (length, _), kind in zip(
        tqdm(paths, desc="decode", unit="input", disable=not progress or len(paths) < 2, file=sys.stderr, leave=False),
        probes,
        kinds,
        strict=True,
    ):
        plan, first = plans[kind], first_piece[kind]
        count = max(1, round((length or 0) / PIECE_S))
        first_piece[kind] += count
        if length is not None and not any(_kept(first + k, plan.keep) for k in range(count)):
            continue  # none of it is kept: not even decoded
        stretches = decode_pieces(
            p,
            video=video,
            audio=audio,
            input_fps=input_fps,
            fps=plans["video"].fps,
            keep=plan.keep,
            first_piece=first,
            pieces=count,
            max_frames=max(0, budget),
        )
        budget -= sum(len(x.frames) for x in stretches)
        inputs += stretches
    return inputs, plans


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
) -> list[NormalInput]:
    """One normal input as the contiguous stretches training keeps of it: all of it (``keep`` 1), or the pieces of
    ``PIECE_S`` that spread ``keep`` of all inputs evenly (pieces are counted over all inputs, this one's from
    ``first_piece``, so that of many short clips every few is kept; ``pieces``: how many this input counts, a shorter
    last part joining the one before; each run of kept pieces is its own stretch: no training sequence spans a
    gap). Video at ``fps``; at most ``max_frames`` frames (the rest is not read: a guard for an input whose length
    was unknown). Every stretch carries the whole input's ``SourceInfo``. A live camera is refused: it is recorded
    first (``read_footage``)."""
    from pipeline.evaluation import DEFAULT_IMAGE_FPS, is_image_source
    from pipeline.sources import read_media

    if is_live(path):
        raise _live_refusal(path)
    image = is_image_source(path)
    if input_fps is None and image:
        input_fps = DEFAULT_IMAGE_FPS
    timed = [0, math.inf, -math.inf]  # every decoded input frame, sampled or not: count, first and last time

    def seen(_index: int, t: float | None, _sampled: bool) -> None:
        if t is not None:
            timed[0] += 1
            timed[1], timed[2] = min(timed[1], t), max(timed[2], t)

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
    stretches, last_pts = _read_stretches(
        items,
        path,
        video=video,
        audio=audio,
        keep=keep,
        first_piece=first_piece,
        pieces=pieces,
        max_frames=max_frames,
    )
    vid_all = sum(len(f) for f, _, _ in stretches.values())
    aud_all = sum(sum(len(c) for c in a) for _, _, a in stretches.values())
    duration = max(last_pts, vid_all / fps, aud_all / SAMPLE_RATE)
    rate = None
    if vid_all:  # the input's own frame rate: the given one for frames, else from its frames' times
        count, t_first, t_last = timed
        rate = input_fps if image else round((count - 1) / (t_last - t_first), 3) if t_last > t_first else None
    source = SourceInfo(name=path, sha256=source_sha256(path), duration_s=round(duration, 3), fps=rate)
    return _inputs_of(source, stretches, fps)


def _inputs_of(source: SourceInfo, stretches: Stretches, fps: float) -> list[NormalInput]:
    """One ``NormalInput`` per stretch, in order (one empty one when nothing was read)."""
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


def _read_stretches(
    items: Generator[VideoFrame | AudioWindow, None, None],
    path: str,
    *,
    video: bool,
    audio: bool,
    keep: float,
    first_piece: int,
    pieces: int | None,
    max_frames: int | None,
) -> tuple[Stretches, float]:
    """The items of one input that training keeps, by stretch (see ``decode_pieces``), and the source time its
    media reached; ``items`` is read to its end and closed."""
    stretches: Stretches = {}
    first: float | None = None
    last_pts = 0.0
    kept_frames = 0
    try:
        for item in items:
            if not (video if isinstance(item, VideoFrame) else audio):
                continue
            first = item.pts if first is None else first
            last_pts = max(last_pts, item.pts + item.duration if isinstance(item, AudioWindow) else item.pts)
            if isinstance(item, VideoFrame) and max_frames is not None and kept_frames >= max_frames:
                log.warning(
                    "%s: stopped reading at %.0f min: training keeps at most %d frames of normal video",
                    path,
                    (item.pts - first) / 60,
                    kept_frames,
                )
                break
            if _keep_item(item, first, first_piece, pieces, keep, stretches) and isinstance(item, VideoFrame):
                kept_frames += 1
    finally:
        items.close()
    return stretches, last_pts


Stretches = dict[int, tuple[list[np.ndarray], list[float], list[np.ndarray]]]  # by first piece: frames, times, audio


def _keep_item(
    item: VideoFrame | AudioWindow,
    first: float,
    first_piece: int,
    pieces: int | None,
    keep: float,
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
