"""Scoring whole files offline, and the labels to judge the scores by.

``score_media`` decodes one clip, audio file or image sequence with ``read_media`` at the package's rates and
scores it through the runtime path (``StreamScorer``: motion gate, engine, calibration), exactly as the daemon
would: every video frame is scored from the first, with no per-clip normalisation. It backs ``edge score``
(``write_scores_csv``: one row per input frame, the frames between two scored ones holding the latest scores) and
``edge eval`` (``pipeline.quality``).

Ground truth is ``<clip>.json`` beside the clip: ``{"anomalies": [{"start", "end", "modalities": [...], "kind"}]}``
or ``{"frame_labels": [0, 1, ...]}`` (one per input frame). Labels:

- video (and temporal): a video frame is anomalous when its pts lies in an interval whose modalities include video;
- audio: a window is anomalous when the span its score describes (its newest ``scored_samples``) overlaps an audio
  interval by at least half of the shorter of the two;
- fused: a video frame is anomalous when its pts lies in any interval: the fused score is what a
  ``CameraAggregator`` holds once the frame's scores are in (an audio window counts from its end, when a live
  stream would have it); audio-only packages use the audio windows.

The trivial baselines are scored alongside: frame difference (mean absolute change to the previous scored frame)
for video, the RMS level of the scored span for audio. Events: the calibrated streams go through
``pipeline.aggregator.CameraAggregator``; an anomaly (an interval, or a run of 1s in ``frame_labels``) is recalled
when an event overlaps it (up to ``EVENT_LATE_S`` after its end); an event that overlaps none is a false alarm.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.events import AnomalyEvent
from pipeline.frames import AudioWindow, Modality, Score, VideoFrame
from pipeline.scoring_model import PackageScorer
from pipeline.stream_scoring import StreamScorer

CSV_HEADER = ("frame", "pts", "video", "temporal", "audio", "fused")
# An event that starts this long after an anomaly ended still counts as detecting it (aggregation delay).
EVENT_LATE_S = 1.0
# Image sequences carry no timing. Without --fps, training takes them as 10 fps video, and scoring at the rate the
# package was trained at (``ModelPackage.trained_fps``; this default for older packages): assuming 10 costs little
# either way, where assuming 25 for 10 fps frames makes the model step 0.5 s between the frames it compares
# (benchmarks/image_rate.py).
DEFAULT_IMAGE_FPS = 10.0
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); nan without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average rank over each run of tied scores
    bounds = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(s)]))
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def is_image_source(path: str) -> bool:
    from pipeline.sources.spec import SourceKind, classify

    return classify(path) is SourceKind.IMAGES


@dataclass
class MediaScores:
    """Scores of one input. Video arrays have one entry per sampled frame (from the first: see ``WindowRing``);
    audio arrays one per window."""

    name: str
    frame_pts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    video_raw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    video: np.ndarray = field(default_factory=lambda: np.zeros(0))  # calibrated
    video_gated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    video_boxes: list[tuple[float, float, float, float] | None] = field(default_factory=list)
    baseline: np.ndarray = field(default_factory=lambda: np.zeros(0))  # frame difference per scored frame
    temporal: np.ndarray = field(default_factory=lambda: np.zeros(0))  # calibrated, NaN where absent
    audio_start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    audio_end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    audio_raw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0))  # calibrated
    audio_baseline: np.ndarray = field(default_factory=lambda: np.zeros(0))  # window RMS level (dBFS) per window
    has_video: bool = False
    has_audio: bool = False
    # every decoded input frame (the model scores a subset at its own rate): its index in the input, source time (NaN
    # without one), and the scored frame whose scores it holds (-1 before the first)
    input_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    input_pts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    input_sample: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    temporal_every: int = 1  # the temporal model scores every n-th scored frame (its score holds until the next)

    @property
    def audio_centre(self) -> np.ndarray:
        centre: np.ndarray = (self.audio_start + self.audio_end) / 2
        return centre

    @property
    def duration_s(self) -> float:
        ends = [float(self.frame_pts.max()) if len(self.frame_pts) else 0.0]
        if len(self.audio_end):
            ends.append(float(self.audio_end.max()))
        return max(ends)

    def temporal_held(self) -> np.ndarray:
        """The temporal score at each scored frame, a score holding until the next one is due (``temporal_every``
        scored frames later), as the aggregator holds it."""
        out = self.temporal.copy()
        last, age = math.nan, self.temporal_every
        for i, x in enumerate(self.temporal.tolist()):
            if math.isfinite(x):
                last, age = x, 0
            else:
                age += 1
                if age < self.temporal_every:
                    out[i] = last
        return out

    def audio_at_frames(self) -> np.ndarray:
        """Calibrated score of the audio window covering each scored video frame (of those covering it, the one
        whose centre is nearest, the earlier on a tie), NaN where no window covers it."""
        return self.audio_at(self.frame_pts)

    def audio_at(self, t: np.ndarray) -> np.ndarray:
        """``audio_at_frames`` for any times ``t`` (NaN times get NaN)."""
        n = len(t)
        out = np.full(n, np.nan)
        if not len(self.audio) or not n:
            return out
        centres = self.audio_centre
        idx = np.searchsorted(centres, t)
        best = np.full(n, np.inf)
        for cand in (np.clip(idx - 1, 0, len(centres) - 1), np.clip(idx, 0, len(centres) - 1)):
            dist = np.abs(centres[cand] - t)
            better = (self.audio_start[cand] <= t) & (t < self.audio_end[cand]) & (dist < best)
            out = np.where(better, self.audio[cand], out)
            best = np.where(better, dist, best)
        return out

    def fused_at_frames(self, settings: Any = None) -> np.ndarray:
        """Per video frame: the fused score the aggregator (``settings``, default ``AggregatorSettings``) holds
        once the frame's scores are in (fusion and smoothing included; NaN where nothing is fused yet)."""
        return aggregate(self, settings)[1]


class _Collected:
    """What ``score_media`` gathers while the items stream through ``StreamScorer`` (batched by ``batch``)."""

    def __init__(self, scorer: PackageScorer, batch: int, baseline: bool) -> None:
        self.stream = StreamScorer(scorer)
        self.batch, self.baseline = batch, baseline
        self.scored_span = scorer.audio_scored_samples if scorer.has_audio else 0
        self.audio_n = scorer.audio_n_samples if scorer.has_audio else 0
        self.frames: list[VideoFrame] = []  # every scored frame, in order
        self.index: dict[int, int] = {}  # id of a scored frame -> its place in ``frames``
        self.video_scores: list[Score] = []
        self.gated: list[bool] = []
        self.temporal: dict[int, float] = {}
        self.base: list[float] = []
        self.pending: list[VideoFrame] = []
        self.a_span: list[tuple[float, float]] = []
        self.a_scores: list[Score] = []
        self.a_base: list[float] = []
        self.windows: list[AudioWindow] = []
        self.in_index: list[int] = []
        self.in_pts: list[float] = []
        self.in_sample: list[int] = []

    def seen(self, i: int, t: float | None, sampled: bool) -> None:
        """Every decoded input frame (``read_media``'s ``on_video_frame``): the scored frame that holds its scores."""
        self.in_index.append(i)
        self.in_pts.append(math.nan if t is None else t)
        self.in_sample.append(len(self.frames) if sampled else len(self.frames) - 1)  # a sampled one comes next

    def video(self, item: VideoFrame) -> None:
        if self.baseline:
            self.base.append(frame_difference(self.frames[-1].luma if self.frames else item.luma, item.luma))
        self.index[id(item)] = len(self.frames)
        self.frames.append(item)
        self.pending.append(item)
        if len(self.pending) >= self.batch:
            self.flush_video()

    def audio(self, item: AudioWindow) -> None:
        if len(item.samples) != self.audio_n:
            return
        self.windows.append(item)
        self.a_span.append((item.pts, item.pts + item.duration))
        if self.baseline:
            self.a_base.append(window_rms_db(item.samples, self.scored_span))
        if len(self.windows) >= self.batch:
            self.flush_audio()

    def flush_video(self) -> None:
        if self.pending:
            result = self.stream.score_video(self.pending)
            self.video_scores.extend(result.video)
            self.gated.extend(result.gated)
            self.temporal.update((self.index[id(f)], s.calibrated) for f, s in result.temporal)
            self.pending.clear()

    def flush_audio(self) -> None:
        if self.windows:
            self.a_scores.extend(self.stream.score_audio(self.windows))
            self.windows.clear()

    def scores(self, name: str, temporal_every: int) -> MediaScores:
        self.flush_video()
        self.flush_audio()
        n = len(self.frames)
        out = MediaScores(name)
        out.frame_pts = np.asarray([f.pts for f in self.frames], dtype=np.float64)
        out.video_raw = np.asarray([s.raw for s in self.video_scores], dtype=np.float64)
        out.video = np.asarray([s.calibrated for s in self.video_scores], dtype=np.float64)
        out.video_gated = np.asarray(self.gated, dtype=bool)
        out.video_boxes = [s.box for s in self.video_scores]
        out.baseline = np.asarray(self.base, dtype=np.float64) if self.baseline else np.full(n, np.nan)
        out.temporal = np.full(n, np.nan)
        for i, c in self.temporal.items():
            out.temporal[i] = c
        spans = np.asarray(self.a_span, dtype=np.float64).reshape(-1, 2)
        out.audio_start, out.audio_end = spans[:, 0], spans[:, 1]
        out.audio_raw = np.asarray([s.raw for s in self.a_scores], dtype=np.float64)
        out.audio = np.asarray([s.calibrated for s in self.a_scores], dtype=np.float64)
        out.audio_baseline = (
            np.asarray(self.a_base, dtype=np.float64) if self.baseline else np.full(len(self.a_scores), np.nan)
        )
        out.has_video = n > 0
        out.has_audio = len(self.a_scores) > 0
        out.input_index = np.asarray(self.in_index, dtype=np.int64)
        out.input_pts = np.asarray(self.in_pts, dtype=np.float64)
        out.input_sample = np.minimum(np.asarray(self.in_sample, dtype=np.int64), n - 1)
        out.temporal_every = temporal_every
        return out


def score_media(
    path: str,
    scorer: PackageScorer,
    *,
    input_fps: float | None = None,
    batch: int = 32,
    baseline: bool = False,
) -> MediaScores:
    """Score ``path`` causally through ``scorer`` (see the module docstring), on the daemon's scoring path
    (``StreamScorer``: one camera, its items in stream order, batched by ``batch``)."""
    from pipeline.sources import read_media

    got = _Collected(scorer, batch, baseline)
    if input_fps is None and is_image_source(path):
        input_fps = scorer.package.trained_fps or DEFAULT_IMAGE_FPS
    for item in read_media(
        path,
        width=scorer.width,
        height=scorer.height,
        fps=scorer.fps,
        audio_window_s=scorer.audio_window_s,
        audio_hop_s=scorer.audio_hop_s,
        sample_rate=scorer.sample_rate,
        input_fps=input_fps,
        video=scorer.has_video,
        audio=scorer.has_audio,
        on_video_frame=got.seen,
    ):
        if isinstance(item, VideoFrame) and scorer.has_video:
            got.video(item)
        elif isinstance(item, AudioWindow) and scorer.has_audio:
            got.audio(item)
    return got.scores(Path(path).name, scorer.temporal_every)


def frame_difference(previous: np.ndarray, frame: np.ndarray) -> float:
    """The trivial video baseline: mean absolute luma difference between a scored frame and the one scored before
    it (model resolution and rate: the same input the model sees). The first frame scores 0."""
    return float(np.abs(frame.astype(np.float32) - previous.astype(np.float32)).mean())


def window_rms_db(samples: np.ndarray, span: int) -> float:
    """The trivial audio baseline: the RMS level (dBFS) of the newest ``span`` samples of a window, the part the
    audio model scores."""
    x = np.asarray(samples[-span:] if span > 0 else samples, dtype=np.float64)
    return float(10.0 * np.log10(np.mean(x * x) + 1e-12))


# ------------------------------------------------------------------------------------------------------ CSV


def csv_rows(scores: MediaScores) -> Iterable[tuple[str, ...]]:
    """Rows of ``edge score``'s CSV (see ``CSV_HEADER``): one per input video frame when there is video (``frame``:
    its index in the input, in presentation order), else one per audio window at its centre; calibrated scores,
    empty where a modality is absent.

    The models score the input at their own rate (5 fps): a frame between two scored ones holds the video,
    temporal and fused scores of the latest scored frame at or before it (what a live stream knows then), and
    the audio score of the window covering its own time."""

    def cell(x: float) -> str:
        return "" if x is None or not math.isfinite(x) else f"{x:.4f}"

    if scores.has_video:
        fused = scores.fused_at_frames()
        audio = scores.audio_at(scores.input_pts)
        temporal = scores.temporal_held()
        for k, (index, t, i) in enumerate(
            zip(scores.input_index.tolist(), scores.input_pts.tolist(), scores.input_sample.tolist(), strict=True)
        ):
            held = (scores.video[i], temporal[i], fused[i]) if i >= 0 else (math.nan,) * 3
            yield (
                str(index),
                f"{t:.3f}" if math.isfinite(t) else "",
                cell(held[0]),
                cell(held[1]),
                cell(audio[k]),
                cell(held[2]),
            )
    else:
        for t, a in zip(scores.audio_centre.tolist(), scores.audio.tolist(), strict=True):
            yield ("", f"{t:.3f}", "", "", cell(a), cell(a))


def write_scores_csv(scores: MediaScores, out: IO[str]) -> int:
    """Write the CSV; returns the number of rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    n = 0
    for row in csv_rows(scores):
        writer.writerow(row)
        n += 1
    return n


# -------------------------------------------------------------------------------------------------- quality


def _ground_truth(path: str) -> dict[str, Any]:
    gt = Path(path).with_suffix(".json")
    if not gt.is_file():
        return {}
    data: dict[str, Any] = json.loads(gt.read_text())
    return data


def _intervals(path: str, modalities: Sequence[str] | None = None) -> list[tuple[float, float, str]]:
    return [
        (float(x["start"]), float(x["end"]), str(x.get("kind", "")))
        for x in _ground_truth(path).get("anomalies", [])
        if modalities is None or any(m in x["modalities"] for m in modalities)
    ]


def label_intervals(path: str, scores: MediaScores) -> list[tuple[float, float, str]]:
    """The labelled anomalies of an input as time intervals, whatever the label format: its ``anomalies``, or each
    run of 1s in its ``frame_labels`` (from the run's first input frame to the frame after its last, or one frame
    period past the last frame), which events are matched against and plots shade."""
    per_frame = _ground_truth(path).get("frame_labels")
    if per_frame is None:
        return _intervals(path)
    flags = np.asarray(per_frame, dtype=np.int64) != 0
    pts = np.full(len(flags), np.nan)
    known = scores.input_index < len(flags)
    pts[scores.input_index[known]] = scores.input_pts[known]
    step = np.diff(scores.input_pts)
    period = float(np.median(step)) if np.isfinite(step).any() else 0.0
    out: list[tuple[float, float, str]] = []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    for a, b in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        start, run = pts[a], pts[a:b][np.isfinite(pts[a:b])]
        end = pts[b] if b < len(pts) and math.isfinite(pts[b]) else (run.max() + period if len(run) else math.nan)
        if math.isfinite(start) and math.isfinite(end):
            out.append((float(start), float(end), f"frames {a}-{b - 1}"))
    return out


def frame_labels(path: str, scores: MediaScores, modalities: Sequence[str] | None = None) -> np.ndarray:
    """Per scored video frame: anomalous or not. From ``frame_labels`` in the ground truth (a 0/1 per input frame,
    by its index in the input) when given, else from the ``anomalies`` intervals (a frame's pts inside one whose
    modalities include one of ``modalities``)."""
    per_frame = _ground_truth(path).get("frame_labels")
    if per_frame is None:
        return _frame_labels(scores.frame_pts, _intervals(path, modalities))
    flags = np.asarray(per_frame, dtype=np.int64) != 0
    out = np.zeros(len(scores.frame_pts), dtype=bool)
    first = np.full(len(scores.frame_pts), -1, dtype=np.int64)  # input index of each scored frame
    for i, k in zip(scores.input_index.tolist(), scores.input_sample.tolist(), strict=True):
        if k >= 0 and first[k] < 0:
            first[k] = i
    ok = (first >= 0) & (first < len(flags))
    out[ok] = flags[first[ok]]
    return out


def _frame_labels(pts: np.ndarray, intervals: list[tuple[float, float, str]]) -> np.ndarray:
    return np.array([any(s <= t < e for s, e, _ in intervals) for t in pts.tolist()], dtype=bool)


def _window_labels(start: np.ndarray, end: np.ndarray, intervals: list[tuple[float, float, str]]) -> np.ndarray:
    labels = []
    for a, b in zip(start.tolist(), end.tolist(), strict=True):
        labels.append(any(min(b, e) - max(a, s) >= 0.5 * min(b - a, e - s) for s, e, _ in intervals))
    return np.array(labels, dtype=bool)


def score_stream(scores: MediaScores, camera_id: str = "eval") -> list[tuple[Score, int]]:
    """The calibrated scores in the order a live runner has them: a video (and temporal) score at its frame's
    pts, an audio score when its window is complete (at the window's end, though stamped with its centre); a window
    that ends at a frame's pts comes before that frame (its samples all precede the frame's capture).
    Each comes with its frame index (-1 for audio)."""
    out: list[tuple[float, int, Score, int]] = []

    def add(
        modality: Modality | str, pts: float, cal: float, raw: float, at: float, frame: int, box: Any = None
    ) -> None:
        wall = _EPOCH + timedelta(seconds=pts)
        score = Score(camera_id, modality, pts, 0, wall, float(raw), float(cal), box)  # type: ignore[arg-type]
        out.append((at, len(out), score, frame))

    for t, end, c, r in zip(
        scores.audio_centre.tolist(),
        scores.audio_end.tolist(),
        scores.audio.tolist(),
        scores.audio_raw.tolist(),
        strict=True,
    ):
        add(Modality.AUDIO, t, c, r, end, -1)
    for i, t in enumerate(scores.frame_pts.tolist()):
        if math.isfinite(scores.video[i]):
            add(Modality.VIDEO, t, scores.video[i], scores.video_raw[i], t, i, scores.video_boxes[i])
        if math.isfinite(scores.temporal[i]):
            add("temporal", t, scores.temporal[i], scores.temporal[i], t, i)
    # to the microsecond: a window's end is its first sample's time plus hops added up in floats, a hair either side
    # of the frame time it equals (23.000000000000043 or 22.999999999999954 for 23.0)
    out.sort(key=lambda x: (round(x[0], 6), x[1]))
    return [(score, frame) for _, _, score, frame in out]


def aggregate(scores: MediaScores, settings: Any = None) -> tuple[list[AnomalyEvent], np.ndarray]:
    """Run the score streams through a ``CameraAggregator`` as the daemon would: the events it decides, and the
    fused (smoothed) score it holds at each video frame."""
    from pipeline.aggregator import AggregatorSettings, CameraAggregator
    from pipeline.events import EndReason

    agg = CameraAggregator("eval", settings or AggregatorSettings())
    events: list[AnomalyEvent] = []
    fused = np.full(len(scores.frame_pts), np.nan)
    for score, frame in score_stream(scores):
        events += agg.push(score)
        if frame >= 0 and agg.level is not None:
            fused[frame] = agg.level
    end_pts = max(scores.duration_s, agg.watermark)
    events += agg.end_stream(end_pts, _EPOCH + timedelta(seconds=end_pts), EndReason.EOF)
    return events, fused


def detect_events(scores: MediaScores, settings: Any = None) -> list[tuple[float, float, float, list[str]]]:
    """Events the aggregator decides on the score streams: (start_pts, end_pts, peak, modalities)."""
    return _ended(aggregate(scores, settings)[0], scores.duration_s)


def _ended(events: list[AnomalyEvent], end_pts: float) -> list[tuple[float, float, float, list[str]]]:
    from pipeline.events import EventType

    return [
        (e.start_pts, e.end_pts if e.end_pts is not None else end_pts, e.peak_score, sorted(e.modalities))
        for e in events
        if e.type is EventType.END
    ]
