"""The runner wires the stages: capture workers → bounded buffers → scoring (micro-batched across cameras) →
per-camera aggregators → an event callback (the daemon's outbox).

Sources of their own beside a camera, each with its capture worker, state, back-off and counters; the loss of
either ends nothing (the camera's own loss ends its event as usual):
- a paired microphone (``PairedMicrophone``, ``cam/mic``): its windows are moved onto the camera's stream time
  (``pipeline.pairing``) and scored as the camera's audio (its own audio track is then not decoded); lost, the
  audio modality goes stale;
- a main stream (``SourceSpec.main_url``, ``cam/main``) when ``url`` is the camera's detect substream and it keeps
  snapshots or clips: demuxed into the packet ring, never decoded (``pipeline.sources.main_stream``), placed by the
  detect frames (``pipeline.sources.tie``); lost, events go on without media.

Threads: one capture thread per source (``isolation: process``: it drives a child process that decodes,
``pipeline.sources.isolated``), one scoring thread, which owns the per-camera state (recent luma frames, the
aggregator), so none of it needs a lock. Stop order follows the flow: capture stops first, scoring drains what was
captured, open events end with ``shutdown``, then the media recorder (when given) writes what is still queued.

An observer (``pipeline.live.RunObserver``, optional) sees each scored frame, the video model's per-patch errors
and every score with the fused score after it: the console's live view and each event's timeline and heat-map.

Snapshots and clips (``pipeline.media``): a camera that keeps them has a packet ring its reader feeds; the scoring
thread moves the ring's scoring position as it scores, and every event passes through ``MediaRecorder.attach``
(which only queues work) before ``on_event``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.aggregator import AggregatorSettings, CameraAggregator
from pipeline.errors import SourceError
from pipeline.events import AnomalyEvent, EndReason
from pipeline.frames import AudioWindow, Modality, Score, StreamEnd, VideoFrame, utc_now
from pipeline.live import RunObserver
from pipeline.media import MediaRecorder, PacketRing
from pipeline.pairing import CameraClock, PairedMicrophone
from pipeline.scoring_model import ScoringModel
from pipeline.sources.capture import (
    BoundedBuffer,
    BufferPolicy,
    CaptureReader,
    CaptureStats,
    CaptureWorker,
    SourceState,
)
from pipeline.sources.isolated import ProcessReader
from pipeline.sources.main_stream import MainStreamReader, main_source_id
from pipeline.sources.microphone import MicrophoneReader, MicrophoneSpec
from pipeline.sources.reader import MediaReader
from pipeline.sources.spec import SourceKind, SourceSpec
from pipeline.sources.tie import StreamTie
from pipeline.stream_scoring import StreamScorer, VideoScores
from pipeline.tamper import TamperDetector, TamperSettings

log = logging.getLogger(__name__)

__all__ = ["CameraStats", "Runner", "RunnerSettings", "ScoringModel"]


@dataclass
class CameraStats:
    frames_scored: int = 0
    windows_scored: int = 0
    events: int = 0
    windows_unpaired: int = 0  # a paired microphone's windows dropped: its camera has not sent video yet


@dataclass(frozen=True)
class SourceSnapshot:
    """One source of the runner at one moment, for the daemon's health, metrics, alerts and summary: what it is
    (a camera's stream or a paired microphone; live or replayed; its kind), its capture counters and state, what
    the scoring thread did with its items, and its buffer's depth."""

    capture: CaptureStats
    scoring: CameraStats
    camera: bool  # a camera's stream (else a paired microphone)
    live: bool
    kind: SourceKind | None  # a camera stream's kind (None: a microphone)
    queue_depth: int
    position_s: float  # the stream time scored so far (0 before the first score; microphones: 0)


@dataclass
class RunnerSettings:
    max_batch: int = 8
    # How long a batch with room waits for more frames (other cameras' included) before it is scored. 0 on CPUs,
    # where a batch costs as much per frame as single frames (benchmarks/inference.py); GPUs gain from waiting.
    max_wait_s: float = 0.0
    live_buffer: int = 50  # items; live cameras drop the oldest beyond this
    replay_buffer: int = 200
    idle_wait_s: float = 0.05
    aggregator: AggregatorSettings = field(default_factory=AggregatorSettings)
    tamper: TamperSettings | None = field(default_factory=TamperSettings)  # None: no tampering checks


class Runner:
    """Runs sources through a model into events. ``on_event`` is called on the scoring thread.

    ``microphones`` pair a microphone with a camera of ``sources``; ``microphone_reader`` makes their readers
    (default: :class:`MicrophoneReader` at the model's window geometry; tests give in-memory fakes).
    """

    def __init__(
        self,
        sources: Sequence[SourceSpec],
        model: ScoringModel,
        on_event: Callable[[AnomalyEvent], None],
        settings: RunnerSettings | None = None,
        *,
        on_score: Callable[[Score], None] | None = None,
        observer: RunObserver | None = None,
        media: MediaRecorder | None = None,
        microphones: Sequence[PairedMicrophone] = (),
        microphone_reader: Callable[[MicrophoneSpec], CaptureReader] | None = None,
    ) -> None:
        self.settings = settings or RunnerSettings()
        self.media = media
        self._media_rings: dict[str, PacketRing] = dict(media.rings) if media is not None else {}
        self.model = model
        self.on_event = on_event
        self.on_score = on_score
        self.observer = observer
        self.stop_event = threading.Event()
        self._ready = threading.Event()
        # one decoder thread per camera once cameras outnumber cores (edge bench: cheaper per frame)
        self._decoder_threads = 1 if len(sources) >= (os.cpu_count() or 1) else 0
        self.workers: dict[str, CaptureWorker[Any]] = {}  # cameras, then paired microphones
        self.stats: dict[str, CameraStats] = {}
        self._aggs: dict[str, CameraAggregator] = {}
        # tampering is its own event, decided by its own aggregator, never fused with scene anomalies
        self._tamper: dict[str, TamperDetector] = {}
        self._tamper_aggs: dict[str, CameraAggregator] = {}
        self._scoring = StreamScorer(model, {spec.camera_id: spec.mask for spec in sources})
        self._ended: set[str] = set()
        # id of each collected item not yet scored → its place in the scoring thread's arrival order (each camera's
        # items arrive in its reader's order): scores reach the aggregators in this order, whatever the batching
        self._arrival: dict[int, int] = {}
        self._arrived = 0
        for spec in sources:
            policy = BufferPolicy.DROP_OLDEST if spec.live else BufferPolicy.WAIT
            size = self.settings.live_buffer if spec.live else self.settings.replay_buffer
            buf = BoundedBuffer(size, policy, self._ready)
            self.workers[spec.camera_id] = CaptureWorker(spec, self._reader_for, buf, self.stop_event)
            self.stats[spec.camera_id] = CameraStats()
            self._aggs[spec.camera_id] = CameraAggregator(spec.camera_id, self.settings.aggregator)
            tamper = self.settings.tamper
            if tamper is not None and tamper.enabled and model.has_video and spec.video:
                self._tamper[spec.camera_id] = TamperDetector(tamper)
                self._tamper_aggs[spec.camera_id] = CameraAggregator(spec.camera_id, tamper.aggregator())
        self._cameras = frozenset(self.workers)
        # a paired microphone's source id -> (its camera, the clock that maps its windows onto the camera's)
        self._paired: dict[str, tuple[str, CameraClock]] = {}
        self._clocks: dict[str, CameraClock] = {}  # camera id -> the clock its video frames drive
        self._ties: dict[str, StreamTie] = {}  # camera id -> the tie of its main stream to its detect stream
        self._main_sources: set[str] = set()  # source ids of the main streams (cam/main)
        self._add_main_streams(sources)
        self._add_microphones(microphones, microphone_reader or self._microphone_reader_for)
        self._thread = threading.Thread(target=self._score_loop, name="scoring", daemon=True)
        self._finished = threading.Event()

    def _reader_for(self, spec: SourceSpec) -> MediaReader | ProcessReader:
        m = self.model
        reader = ProcessReader if spec.isolation == "process" else MediaReader
        return reader(
            spec,
            width=m.width,
            height=m.height,
            fps=m.fps,
            audio_window_s=m.audio_window_s,
            audio_hop_s=m.audio_hop_s,
            sample_rate=m.sample_rate,
            video=m.has_video and spec.video,
            audio=m.has_audio and spec.audio and spec.camera_id not in self._clocks,  # a paired microphone wins
            decoder_threads=self._decoder_threads,
            # a camera with a main stream fills its ring from that stream, not from the one it scores
            packet_sink=None if spec.camera_id in self._ties else self._media_rings.get(spec.camera_id),
        )

    def _add_main_streams(self, sources: Sequence[SourceSpec]) -> None:
        for spec in sources:
            ring = self._media_rings.get(spec.camera_id)
            if spec.main_url is None:
                continue
            if ring is None:
                log.info("camera %s keeps no snapshots or clips: its main stream is not opened", spec.camera_id)
                continue
            main = dataclasses.replace(
                spec,
                camera_id=main_source_id(spec.camera_id),
                url=spec.main_url,
                main_url=None,
                isolation=spec.isolation,  # a main stream is demuxed where its camera is decoded
                mask=(),
            )
            tie = self._ties[spec.camera_id] = StreamTie(spec.camera_id)
            ring.tied = True
            buf = BoundedBuffer(self.settings.live_buffer, BufferPolicy.DROP_OLDEST, self._ready)
            reader: Callable[[SourceSpec], CaptureReader] = (
                functools.partial(ProcessReader, packet_sink=ring, tie=tie)
                if spec.isolation == "process"
                else functools.partial(MainStreamReader, ring=ring, tie=tie)
            )
            self.workers[main.camera_id] = CaptureWorker(main, reader, buf, self.stop_event)
            self.stats[main.camera_id] = CameraStats()
            self._main_sources.add(main.camera_id)

    def _microphone_reader_for(self, spec: MicrophoneSpec) -> CaptureReader:
        m = self.model
        return MicrophoneReader(
            spec, audio_window_s=m.audio_window_s, audio_hop_s=m.audio_hop_s, sample_rate=m.sample_rate
        )

    def _add_microphones(
        self, mics: Sequence[PairedMicrophone], factory: Callable[[MicrophoneSpec], CaptureReader]
    ) -> None:
        for mic in mics:
            source = mic.spec.camera_id
            if mic.camera_id not in self._cameras:
                raise ValueError(f"microphone {source}: no camera {mic.camera_id!r} to pair it with")
            if source in self.workers or mic.camera_id in self._clocks:
                raise ValueError(f"microphone {source}: a source of that id, or a second microphone for the camera")
            if not self.model.has_audio:
                log.warning("camera %s: the model has no audio model; its microphone is not opened", mic.camera_id)
                continue
            buf = BoundedBuffer(self.settings.live_buffer, BufferPolicy.DROP_OLDEST, self._ready)
            self.workers[source] = CaptureWorker(mic.spec, factory, buf, self.stop_event)
            self.stats[source] = CameraStats()
            clock = CameraClock(offset_s=mic.offset_s)
            self._paired[source] = (mic.camera_id, clock)
            self._clocks[mic.camera_id] = clock

    def open_sources(self) -> dict[str, SourceError]:
        """Connect every source once, in parallel (each bounded by its timeouts). Returns the failures."""
        errors: dict[str, SourceError] = {}
        lock = threading.Lock()

        def probe(cam: str, worker: CaptureWorker) -> None:
            err = worker.open_first()
            if err is not None:
                with lock:
                    errors[cam] = err

        threads = [threading.Thread(target=probe, args=item, daemon=True) for item in self.workers.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    def start(self) -> None:
        if self.media is not None:
            self.media.start()
        for w in self.workers.values():
            w.start()
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every source ended (replays) or the runner was stopped; True when finished."""
        return self._finished.wait(timeout)

    def join(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for w in self.workers.values():
            w.join(max(0.0, deadline - time.monotonic()))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self.media is not None and not self._thread.is_alive():
            # after scoring: the end events of the shutdown have queued their clips
            self.media.close(max(5.0, deadline - time.monotonic()))

    def states(self) -> dict[str, SourceState]:
        return {cam: w.state for cam, w in self.workers.items()}

    def snapshot(self) -> dict[str, SourceSnapshot]:
        """Every source (cameras, then paired microphones) as it is now; the daemon reads this, never the workers."""
        out: dict[str, SourceSnapshot] = {}
        for cam, worker in list(self.workers.items()):
            camera = isinstance(worker.spec, SourceSpec)
            st = self.stats[cam]
            out[cam] = SourceSnapshot(
                capture=worker.stats(),
                scoring=dataclasses.replace(st),
                camera=camera,
                live=bool(getattr(worker.spec, "live", True)),
                kind=worker.spec.kind if isinstance(worker.spec, SourceSpec) else None,
                queue_depth=len(worker.buffer),
                position_s=self.position(cam) if cam in self._aggs else 0.0,
            )
        return out

    def position(self, camera_id: str) -> float:
        """The camera's stream time scored so far (its aggregator's watermark; 0 before its first score)."""
        mark = self._aggs[camera_id].watermark
        return mark if mark > -float("inf") else 0.0

    # -- scoring thread --------------------------------------------------------------------------------------
    def _score_loop(self) -> None:
        try:
            while True:
                self._ready.clear()
                video, audio, ends = self._collect()
                if video and not ends and self.settings.max_wait_s > 0:
                    self._fill(video, audio, ends)
                if video or audio or ends:
                    self._score(video, audio)
                    for end in ends:
                        self._stream_end(end)
                    continue
                if self.stop_event.is_set() or self._ended >= self._cameras:
                    break
                self._ready.wait(self.settings.idle_wait_s)
            self._shutdown()
        except Exception:
            log.exception("scoring thread failed; stopping the pipeline")
            self.stop_event.set()
            raise
        finally:
            self.stop_event.set()  # every camera ended: their paired microphones stop too
            self._finished.set()

    def _fill(self, video: list[VideoFrame], audio: list[AudioWindow], ends: list[StreamEnd]) -> None:
        """Micro-batching: wait up to ``max_wait_s`` for the video batch to fill (ends a camera's items close it)."""
        deadline = time.monotonic() + self.settings.max_wait_s
        while len(video) < self.settings.max_batch and len(audio) < self.settings.max_batch and not ends:
            left = deadline - time.monotonic()
            if left <= 0 or self.stop_event.is_set():
                return
            self._ready.wait(left)
            self._ready.clear()
            self._collect(video, audio, ends)

    def _collect(
        self,
        video: list[VideoFrame] | None = None,
        audio: list[AudioWindow] | None = None,
        ends: list[StreamEnd] | None = None,
    ) -> tuple[list[VideoFrame], list[AudioWindow], list[StreamEnd]]:
        """Take up to ``max_batch`` items of each modality, round-robin over cameras, in each camera's order
        (appended to the lists given, if any)."""
        video = [] if video is None else video
        audio = [] if audio is None else audio
        ends = [] if ends is None else ends
        cap = self.settings.max_batch
        progress = True
        while progress and len(video) < cap and len(audio) < cap:
            progress = False
            for cam, w in self.workers.items():
                if cam in self._ended:
                    continue
                item = w.buffer.get_nowait()
                if item is None:
                    continue
                progress = True
                if cam in self._main_sources:
                    continue  # a main stream sends only its ends, and its loss ends no event
                if cam in self._paired:
                    window = self._from_microphone(cam, item)
                    if window is not None:
                        self._arrive(window)
                        audio.append(window)
                elif isinstance(item, VideoFrame):
                    clock = self._clocks.get(cam)
                    if clock is not None:
                        clock.observe(item)
                    tie = self._ties.get(cam)
                    if tie is not None:
                        tie.observe(item)
                    self._arrive(item)
                    video.append(item)
                elif isinstance(item, AudioWindow):
                    self._arrive(item)
                    audio.append(item)
                else:
                    ends.append(item)
                    # nothing from this camera after its end in this batch: keep per-camera order
                    if item.lost is False or not w.spec.live:
                        self._ended.add(cam)
            if ends:
                break
        return video, audio, ends

    def _arrive(self, item: VideoFrame | AudioWindow) -> None:
        self._arrival[id(item)] = self._arrived
        self._arrived += 1

    def _from_microphone(self, source: str, item: VideoFrame | AudioWindow | StreamEnd) -> AudioWindow | None:
        """A paired microphone's window moved onto its camera's time line; None when it cannot be (yet)."""
        if isinstance(item, StreamEnd):
            # the microphone's own loss ends nothing: its modality goes stale, the camera's video goes on
            log.debug("microphone %s: stream ended (%s)", source, item.reason)
            return None
        if not isinstance(item, AudioWindow):
            return None
        camera, clock = self._paired[source]
        pts = clock.map(item)
        if pts is None:
            self.stats[source].windows_unpaired += 1
            return None
        self.stats[source].windows_scored += 1
        return dataclasses.replace(item, camera_id=camera, pts=pts)

    def _score(self, video: list[VideoFrame], audio: list[AudioWindow]) -> None:
        scores: list[tuple[int, Score]] = []  # (arrival of the item scored, score)
        arrival = self._arrival
        if self._media_rings:
            items: list[VideoFrame | AudioWindow] = [*video, *audio]
            for item in items:
                ring = self._media_rings.get(item.camera_id)
                if ring is not None:  # what the ring must still hold is measured back from here
                    ring.consumed = max(ring.consumed, item.pts)
        if video:
            self._check_tampering(video)
            result = self._scoring.score_video(video)
            if self.observer is not None:
                self._observe_frames(video, result)
            for f, score in zip(video, result.video, strict=True):
                scores.append((arrival[id(f)], score))
                self.stats[f.camera_id].frames_scored += 1
            scores += [(arrival[id(f)], score) for f, score in result.temporal]
        if audio:
            for w, score in zip(audio, self._scoring.score_audio(audio), strict=True):
                scores.append((arrival[id(w)], score))
                self.stats[w.camera_id].windows_scored += 1
        arrival.clear()  # every collected item is scored by now
        # per camera in arrival order (a video score before its frame's temporal one): an audio window, stamped with
        # its centre, comes after the frames decoded before it was complete, as live; sorting by pts instead made the
        # order depend on where batches cut, and a replay could decide differently from one run to the next
        scores.sort(key=lambda x: (x[1].camera_id, x[0]))
        for _, s in scores:
            if self.on_score is not None:
                self.on_score(s)
            agg = self._aggs[s.camera_id]
            events = agg.push(s)
            if self.observer is not None:  # before the events it decided: a new event's trace includes it
                self.observer.score(s, agg.level, agg.watermark)
            self._emit(events)

    def _observe_frames(self, video: list[VideoFrame], result: VideoScores) -> None:
        """Each frame to the observer, with the video model's per-patch errors when it ran on the frame and the
        temporal model's per-cell errors when a window ended there. They come from the model's scorers
        (``PackageScorer.video.last_maps``: one map per frame not gated, in order; ``.temporal.last_maps``: one
        per window scored); a model without them (a test's fake) gives frames only."""
        assert self.observer is not None
        for f in video:
            self.observer.frame(f)
        ran = [f for f, g in zip(video, result.gated, strict=True) if not g]
        windows = [f for f, _ in result.temporal]
        for kind, frames in (("video", ran), ("temporal", windows)):
            maps = getattr(getattr(self.model, kind, None), "last_maps", None)
            if maps is not None and len(maps) == len(frames):
                for f, errors in zip(frames, maps, strict=True):
                    self.observer.patches(f, kind, errors)

    def _check_tampering(self, video: list[VideoFrame]) -> None:
        for f in video:
            detector = self._tamper.get(f.camera_id)
            if detector is None or not detector.due(f.pts):
                continue
            verdict = detector.check(f.luma, f.pts)
            score = Score(
                f.camera_id,
                Modality.TAMPERING,
                f.pts,
                f.monotonic_ns,
                f.wall_time,
                verdict.moved_fraction,
                verdict.score,
                label=verdict.reason,
            )
            if verdict.reason is not None:
                log.debug("camera %s: %s at %.2f s", f.camera_id, verdict.reason, f.pts)
            events = self._tamper_aggs[f.camera_id].push(score)
            if self.observer is not None:  # its own aggregator: no fused score of the scene's
                self.observer.score(score, None, score.pts)
            self._emit(events)

    def _stream_end(self, end: StreamEnd) -> None:
        reason = EndReason.STREAM_LOST if end.lost else EndReason.EOF
        if end.camera_id in self._tamper:
            self._tamper[end.camera_id].reset()
            self._emit(self._tamper_aggs[end.camera_id].end_stream(end.pts, end.wall_time, reason))
        self._scoring.reset(end.camera_id)
        tie = self._ties.get(end.camera_id)
        if tie is not None:
            tie.detect_lost()
        self._emit(self._aggs[end.camera_id].end_stream(end.pts, end.wall_time, reason))

    def _shutdown(self) -> None:
        now = utc_now()
        for agg in [*self._aggs.values(), *self._tamper_aggs.values()]:
            pts = agg.watermark if agg.watermark > -float("inf") else 0.0
            self._emit(agg.end_stream(pts, now, EndReason.SHUTDOWN))

    def _emit(self, events: list[AnomalyEvent]) -> None:
        for ev in events:
            if self.media is not None:
                try:
                    ev = self.media.attach(ev)
                except Exception:  # noqa: BLE001 - media is an extra: the event goes on without it
                    self.media.stats.refused += 1
                    log.exception("camera %s: attaching media to event %s failed", ev.camera_id, ev.event_id)
            self.stats[ev.camera_id].events += 1
            self.on_event(ev)
