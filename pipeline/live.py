"""What the console shows of the running pipeline, and what each event keeps of its scores.

The runner's scoring thread feeds a ``RunObserver`` (``Runner(observer=...)``): every scored frame, the video
model's per-patch errors of the frames it ran on and the temporal model's per-cell errors of the windows it scored
(each a map of where in the picture), and every score with the camera's smoothed fused score after it.

* ``LiveView`` keeps, per camera, what the live page reads from its HTTP threads (a lock between them): the last
  frame the model saw (luma at model size: no extra decoding), the measured frame rate, the fused score of the
  last minutes as a sparkline (the highest value of each second), and the last seconds of every score and of the
  per-patch errors (for events to pick from).
* ``EventTraces`` (scoring thread only) follows each open event: its timeline — video, temporal, audio,
  tampering and fused scores from ``pre_s`` before its start to its end, thinned to at most ``max_points`` per
  series by keeping the higher of neighbours — and the maps of the frame at its peak (the frame its snapshot
  shows), each on its model's calibrated scale with its fusion discount: the console's heat-map of where. The
  daemon stores both with each message (``alerts.store``).
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipeline.aggregator import Fusion, MaxFusion
from pipeline.events import AnomalyEvent, EventType
from pipeline.frames import Modality, Score, VideoFrame
from pipeline.models.package import ModelPackage

FUSED = "fused"  # the series name of the smoothed fused score, beside the modalities' names
TAMPERING = Modality.TAMPERING.value
_FRAME_TOLERANCE_S = 0.3  # the kept maps are the peak's when this near it


class RunObserver(Protocol):
    """What the runner tells an observer, on its scoring thread (implementations must be quick)."""

    def frame(self, frame: VideoFrame) -> None:
        """A frame was scored (its luma is the model's input)."""

    def patches(self, frame: VideoFrame, kind: str, errors: np.ndarray) -> None:
        """A model's map of ``frame``, masked cells 0: ``video``, the per-patch errors (gh, gw) of the frames it ran
        on; ``temporal``, the per-cell errors (eh, ew) of the window that ended at the frame."""

    def score(self, score: Score, fused: float | None, fused_pts: float) -> None:
        """A score reached its camera's aggregator; ``fused``: the smoothed fused score after it (None: none), at
        ``fused_pts`` (the aggregator's watermark: an audio window's score lands behind the latest frame's)."""


@dataclass(frozen=True, slots=True)
class PatchGeometry:
    """Where the cells of an error map lie: ``patch`` squares every ``stride`` pixels of a ``width`` x ``height``
    picture (the video model's input; the temporal model's cells tile an eh x ew grid: 1 every 1)."""

    width: int
    height: int
    patch: int
    stride: int


@dataclass(frozen=True, slots=True)
class HeatSource:
    """How one model's maps become heat: where its cells lie, its calibration, and the discount fusion gives it."""

    geometry: PatchGeometry
    calibrate: Callable[[np.ndarray], np.ndarray]
    discount: float = 0.0
    tolerance_s: float = 0.3  # a map this near a frame is that frame's (frames: every 0.2 s at 5 fps)


@dataclass
class _CameraLive:
    last_frame: VideoFrame | None = None
    frame_times: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=64))
    points: collections.deque[tuple[float, str, float]] = field(default_factory=collections.deque)
    maps: dict[str, collections.deque[tuple[float, np.ndarray]]] = field(default_factory=dict)
    spark: collections.deque[tuple[float, float]] = field(default_factory=collections.deque)
    spark_bucket: float = -math.inf  # wall second of the sparkline's last point


class LiveView:
    """Recent per-camera state for the live page; ``recent_s`` of scores and patch maps (stream time) are kept for
    events to pick from, ``spark_s`` of the fused score (wall time) for the sparkline."""

    def __init__(self, *, recent_s: float = 10.0, spark_s: float = 300.0) -> None:
        self.recent_s = recent_s
        self.spark_s = spark_s
        self._lock = threading.Lock()
        self._cams: dict[str, _CameraLive] = {}

    def _cam(self, camera_id: str) -> _CameraLive:
        cam = self._cams.get(camera_id)
        if cam is None:
            cam = self._cams[camera_id] = _CameraLive()
        return cam

    # -- fed by the scoring thread ------------------------------------------------------------------------------
    def frame(self, frame: VideoFrame) -> None:
        with self._lock:
            cam = self._cam(frame.camera_id)
            cam.last_frame = frame
            cam.frame_times.append(frame.monotonic_ns)

    def patches(self, frame: VideoFrame, kind: str, errors: np.ndarray) -> None:
        with self._lock:
            maps = self._cam(frame.camera_id).maps.setdefault(kind, collections.deque())
            maps.append((frame.pts, errors))
            while maps and maps[0][0] < frame.pts - self.recent_s:
                maps.popleft()

    def score(self, score: Score, fused: float | None, fused_pts: float) -> None:
        with self._lock:
            cam = self._cam(score.camera_id)
            cam.points.append((score.pts, score.modality.value, score.calibrated))
            if fused is not None:
                cam.points.append((fused_pts, FUSED, fused))
                self._spark(cam, score.wall_time.timestamp(), fused)
            while cam.points and cam.points[0][0] < score.pts - self.recent_s:
                cam.points.popleft()

    def _spark(self, cam: _CameraLive, wall: float, fused: float) -> None:
        second = math.floor(wall)
        if second == cam.spark_bucket and cam.spark:
            t, v = cam.spark[-1]
            cam.spark[-1] = (t, max(v, fused))
        elif second > cam.spark_bucket:
            cam.spark.append((float(second), fused))
            cam.spark_bucket = second
        while cam.spark and cam.spark[0][0] < second - self.spark_s:
            cam.spark.popleft()

    # -- read by anyone ---------------------------------------------------------------------------------------
    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._cams)

    def last_frame(self, camera_id: str) -> VideoFrame | None:
        with self._lock:
            cam = self._cams.get(camera_id)
            return cam.last_frame if cam is not None else None

    def fps(self, camera_id: str) -> float | None:
        """Frames scored per second over the last (up to) 64 frames, by their capture times; None: too few."""
        with self._lock:
            cam = self._cams.get(camera_id)
            times = list(cam.frame_times) if cam is not None else []
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / ((times[-1] - times[0]) / 1e9)

    def sparkline(self, camera_id: str) -> list[tuple[float, float]]:
        """(wall time, highest fused score of that second) over the last ``spark_s``, oldest first."""
        with self._lock:
            cam = self._cams.get(camera_id)
            return list(cam.spark) if cam is not None else []

    def recent_points(self, camera_id: str, since_pts: float) -> list[tuple[float, str, float]]:
        """(pts, series, value) of the kept scores at or after ``since_pts``, in arrival order."""
        with self._lock:
            cam = self._cams.get(camera_id)
            return [p for p in cam.points if p[0] >= since_pts] if cam is not None else []

    def patches_at(
        self, camera_id: str, kind: str, pts: float, tolerance_s: float = 0.5
    ) -> tuple[float, np.ndarray] | None:
        """The kept map of ``kind`` nearest ``pts`` (within ``tolerance_s``), with its frame's pts."""
        with self._lock:
            cam = self._cams.get(camera_id)
            maps = list(cam.maps.get(kind, ())) if cam is not None else []
        best = min(maps, key=lambda m: abs(m[0] - pts), default=None)
        return best if best is not None and abs(best[0] - pts) <= tolerance_s else None


@dataclass
class _Trace:
    event_id: str
    camera_id: str
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    best_fused: float = -math.inf  # the highest fused score seen, whose frame's patch map is kept
    heat_pts: float | None = None  # the frame the maps are kept for
    heat: dict[str, tuple[float, np.ndarray]] = field(default_factory=dict)  # kind -> (its frame, raw errors)

    def add(self, pts: float, name: str, value: float, max_points: int) -> None:
        points = self.series.setdefault(name, [])
        points.append((round(pts, 3), round(value, 3)))
        if len(points) > max_points:  # halve: the higher of each pair, at its time (a spike survives)
            self.series[name] = [max(points[i : i + 2], key=lambda p: p[1]) for i in range(0, len(points), 2)]


class EventTraces:
    """Each open event's timeline and peak heat-map (see the module docstring). A ``RunObserver``: it feeds
    ``live`` and adds each score to the open events of its camera. ``heat``: the maps that make the heat-map, by
    kind (video, temporal); without any, events get none."""

    def __init__(
        self, live: LiveView, *, heat: dict[str, HeatSource] | None = None, pre_s: float = 5.0, max_points: int = 2000
    ) -> None:
        self.live = live
        self.heat = dict(heat or {})
        self.pre_s = pre_s
        self.max_points = max_points
        self._open: dict[str, _Trace] = {}  # event id -> trace
        self._by_camera: dict[str, list[_Trace]] = {}

    def frame(self, frame: VideoFrame) -> None:
        self.live.frame(frame)

    def patches(self, frame: VideoFrame, kind: str, errors: np.ndarray) -> None:
        self.live.patches(frame, kind, errors)

    def score(self, score: Score, fused: float | None, fused_pts: float) -> None:
        self.live.score(score, fused, fused_pts)
        for trace in self._by_camera.get(score.camera_id, ()):
            trace.add(score.pts, score.modality.value, score.calibrated, self.max_points)
            if fused is not None:
                trace.add(fused_pts, FUSED, fused, self.max_points)
            if fused is not None and fused > trace.best_fused:
                # where the event's peak will be if none higher comes: keep its frame's map now, while the live
                # view has it (an event's message may come long after its peak)
                trace.best_fused = fused
                self._keep_heat(trace, score.camera_id, fused_pts)

    def message(self, ev: AnomalyEvent) -> dict[str, Any]:
        """The event's trace so far, as stored beside this message: ``series`` (name -> [[pts, value], ...]),
        ``start_pts``, ``end_pts``, ``peak_pts`` and ``heat`` (or None). An ``end`` closes the trace."""
        trace = self._open.get(ev.event_id)
        if trace is None:  # new, or an event that opened before this object was watching (a continued one)
            trace = self._open[ev.event_id] = _Trace(ev.event_id, ev.camera_id)
            self._by_camera.setdefault(ev.camera_id, []).append(trace)
            for pts, name, value in self.live.recent_points(ev.camera_id, ev.start_pts - self.pre_s):
                trace.add(pts, name, value, self.max_points)
        if trace.heat_pts is None or abs(trace.heat_pts - ev.peak_pts) > _FRAME_TOLERANCE_S:
            self._keep_heat(trace, ev.camera_id, ev.peak_pts)
        # a tampering event is judged on its own score, a scene event on the others
        tamper = TAMPERING in ev.modalities
        series = {name: [list(p) for p in pts] for name, pts in trace.series.items() if (name == TAMPERING) == tamper}
        detail = {
            "start_pts": ev.start_pts,
            "end_pts": ev.end_pts,
            "peak_pts": ev.peak_pts,
            "series": series,
            "heat": None if tamper else self._heat(trace),
        }
        if ev.type is EventType.END:
            del self._open[ev.event_id]
            self._by_camera[ev.camera_id].remove(trace)
        return detail

    def _keep_heat(self, trace: _Trace, camera_id: str, pts: float) -> None:
        found = {
            kind: m
            for kind, src in self.heat.items()
            if (m := self.live.patches_at(camera_id, kind, pts, src.tolerance_s))
        }
        if found:  # frames the motion gate skipped have no video map, most frames no temporal one
            trace.heat_pts, trace.heat = pts, found

    def _heat(self, trace: _Trace) -> dict[str, Any] | None:
        """By kind: the calibrated grid, its frame's pts, where its cells lie and its fusion discount."""
        if not trace.heat:
            return None
        out: dict[str, Any] = {}
        for kind, (pts, raw) in trace.heat.items():
            src = self.heat[kind]
            g = src.geometry
            calibrated = np.clip(src.calibrate(np.asarray(raw, dtype=np.float32)), 0.0, None)
            out[kind] = {
                "pts": pts,
                "grid": np.round(calibrated, 2).tolist(),
                "width": g.width,
                "height": g.height,
                "patch": g.patch,
                "stride": g.stride,
                "discount": src.discount,
            }
        return out


def heat_sources(package: ModelPackage, fusion: Fusion | None = None) -> dict[str, HeatSource]:
    """The maps of a model package that make the heat-map: the video model's patches and the temporal model's
    cells, each with its calibration and, under max fusion, its discount (the temporal model's 1 by default)."""
    discount = fusion.discount if isinstance(fusion, MaxFusion) else {}
    out: dict[str, HeatSource] = {}
    v, t = package.video, package.temporal
    if v is not None:
        out["video"] = HeatSource(
            PatchGeometry(v.width, v.height, v.patch, v.patch_stride),
            v.calibration.calibrate,
            discount.get("video", 0.0),
        )
    if t is not None:
        _, eh, ew = t.embedding_shape
        # a window is scored every score_every frames: its map stands for the frames around it
        every = t.score_every / (v.fps if v is not None else 5.0)
        out["temporal"] = HeatSource(
            PatchGeometry(ew, eh, 1, 1),
            t.calibration.calibrate,
            discount.get("temporal", 0.0),
            tolerance_s=max(0.3, every),
        )
    return out
