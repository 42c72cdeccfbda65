"""The media recorder: decides, on the scoring thread, which files an event refers to, and writes them on its own.

Flow::

    reader (capture thread) ──packets──► PacketRing per camera (only cameras with snapshots or clips)
    runner._emit (scoring thread) ──event──► attach(): reference decided now, job queued ──► event goes on
    media writer thread ──► render (decode one GOP / stream copy) ──► MediaStore (atomic, retention)

``attach`` never touches the disk and never waits: it picks the packets a snapshot needs (a walk back over at
most the scoring lag plus one GOP), puts a job on a bounded queue and returns the event with its references.
Events are never delayed or blocked by media; a reference is a promise made before the file exists. The store is
probed at start and after every failure, and while it is unhealthy (unwritable, full) or the queue is full, events
carry null references; a write that fails after its event left leaves a reference to a file that never appears:
logged and counted (``write_failures``), as retention may delete one: consumers treat a missing file as no file.

Snapshots (``<camera>/<event_id>.jpg``): **one file per event**, rewritten (atomically) when the peak moves, so
every message of the event refers to the same path, showing its worst moment so far with its box (audio-only
events: the frame at their peak, no box); at most one render per event waits.

Clips (``<camera>/<event_id>.mkv``, referenced from ``end`` only): the packets from ``start - pre_roll`` (back to
the keyframe before) to ``end + post_roll``. The aggregator decides ``end`` only after ``hold_s`` of quiet, so a
post-roll up to ``hold_s`` is already in the ring; a longer one is waited for on the writer thread (never the
scoring thread), at most ``post_roll_s`` + ``_POST_ROLL_GRACE_S`` of wall time or until the stream ends: the
``end`` event goes out at once referring to the clip, which appears, complete, when written (atomic rename).
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.events import AnomalyEvent, EventType
from pipeline.media.render import Box, snapshot_jpeg, write_clip
from pipeline.media.ring import PacketRing, RingPacket
from pipeline.media.settings import SNAPSHOT_SPAN_S, ClipSettings, MediaSettings, SnapshotSettings
from pipeline.media.store import MediaStore

log = logging.getLogger(__name__)

_POST_ROLL_GRACE_S = 10.0  # beyond post_roll_s of wall time, a clip is written with what has arrived
# A ring fed by a camera's main stream while its detect substream is scored (``PacketRing.tied``) gives a snapshot
# only when that stream's session is open and came within this much of the peak (then its last frame before it), a
# clip only when it reached the event's start: never a picture of another moment (a lost main stream: no media)
_TIED_SLACK_S = 0.2
_RETENTION_EVERY_S = 60.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class CameraMedia:
    """What one camera keeps."""

    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    clips: ClipSettings = field(default_factory=ClipSettings)

    @property
    def enabled(self) -> bool:
        return self.snapshots.enabled or self.clips.enabled


@dataclass(slots=True)
class _SnapshotJob:
    rel: str
    packets: list[RingPacket]
    pts: float
    box: Box | None
    quality: int


@dataclass(slots=True)
class _ClipJob:
    rel: str
    ring: PacketRing
    start: float
    end: float
    give_up_at: float  # monotonic: write with what the ring holds after this


@dataclass(slots=True)
class _EventMedia:
    snapshot: str | None = None
    rendered_pts: float | None = None


@dataclass
class MediaStats:
    snapshots_written: int = 0
    clips_written: int = 0
    refused: int = 0  # events that went out without a reference: store unhealthy or queue full
    render_failures: int = 0
    write_failures: int = 0
    deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


def media_ref(camera_id: str, event_id: str, ext: str) -> str:
    """The reference of an event's file: its path relative to the media directory."""
    cam = _UNSAFE.sub("_", camera_id).lstrip(".") or "_"
    ev = _UNSAFE.sub("_", event_id).lstrip(".") or "_"
    return f"{cam}/{ev}.{ext}"


class MediaRecorder:
    """Snapshots and clips of the cameras in ``cameras`` that enable them; one writer thread for all of them."""

    def __init__(
        self,
        settings: MediaSettings,
        cameras: Mapping[str, CameraMedia],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.cameras = {cam: m for cam, m in cameras.items() if m.enabled}
        self.store = MediaStore(
            settings.path,
            max_total_bytes=int(settings.max_total_mb * 1e6),
            max_age_s=settings.max_age_h * 3600 if settings.max_age_h is not None else None,
            clock=clock,
        )
        self.stats = MediaStats()
        self._clock = clock
        self.rings: dict[str, PacketRing] = {}
        for cam, m in self.cameras.items():
            if m.clips.enabled:
                span = m.clips.pre_roll_s + m.clips.max_s + m.clips.post_roll_s
                max_bytes = m.clips.buffer_mb
            else:
                span, max_bytes = SNAPSHOT_SPAN_S, m.snapshots.buffer_mb
            self.rings[cam] = PacketRing(cam, span_s=span, max_bytes=int(max_bytes * 1e6))
        self._events: dict[str, _EventMedia] = {}  # scoring thread only
        self._cond = threading.Condition()
        self._jobs: collections.OrderedDict[str, _SnapshotJob | _ClipJob] = collections.OrderedDict()
        self._waiting: list[_ClipJob] = []  # clips whose post-roll has not arrived yet
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="media-writer", daemon=True)

    def ring(self, camera_id: str) -> PacketRing | None:
        """The packet ring the camera's reader feeds; None when the camera keeps nothing (zero cost)."""
        return self.rings.get(camera_id)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.store.open():
            log.warning("snapshots and clips are off until %s is writable", self.store.root)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (waiting clips with what their ring holds), within ``timeout``."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "media writer did not finish within %.0f s; %d snapshot(s)/clip(s) not written",
                    timeout,
                    len(self._jobs) + len(self._waiting),
                )
        self.stats.write_failures = self.store.write_failures
        self.stats.deleted = self.store.deleted

    # -- scoring thread --------------------------------------------------------------------------------------
    def attach(self, ev: AnomalyEvent) -> AnomalyEvent:
        """``ev`` with the references of its snapshot and clip; queues their writing. Never blocks."""
        cam = self.cameras.get(ev.camera_id)
        ring = self.rings.get(ev.camera_id)
        if cam is None or ring is None:
            return ev
        snapshot = self._snapshot(ev, cam.snapshots, ring) if cam.snapshots.enabled else None
        clip = None
        if cam.clips.enabled and ev.type is EventType.END and ev.end_pts is not None:
            clip = self._clip(ev, cam.clips, ring)
        if snapshot is None and clip is None:
            return ev
        return replace(ev, snapshot=snapshot, clip=clip)

    def _snapshot(self, ev: AnomalyEvent, settings: SnapshotSettings, ring: PacketRing) -> str | None:
        state = self._events.get(ev.event_id)
        if state is None:
            state = self._events[ev.event_id] = _EventMedia()
        if ev.type is EventType.END:
            del self._events[ev.event_id]
        if state.rendered_pts == ev.peak_pts:
            return state.snapshot
        fresh = not ring.tied or ring.reaches(ev.peak_pts, _TIED_SLACK_S)  # a lost main stream: no snapshot
        packets = ring.snapshot_packets(ev.peak_pts) if self.store.healthy and fresh else []
        if not packets:
            if self.store.healthy:
                log.debug("camera %s: no packets for a snapshot at %.3f s", ev.camera_id, ev.peak_pts)
            if state.snapshot is None:
                self.stats.refused += 1
            return state.snapshot
        rel = media_ref(ev.camera_id, ev.event_id, "jpg")
        box = ev.box if settings.draw_box else None
        if self._submit(_SnapshotJob(rel, packets, ev.peak_pts, box, settings.quality)):
            state.snapshot, state.rendered_pts = rel, ev.peak_pts
        elif state.snapshot is None:
            self.stats.refused += 1
        return state.snapshot

    def _clip(self, ev: AnomalyEvent, settings: ClipSettings, ring: PacketRing) -> str | None:
        assert ev.end_pts is not None
        end = ev.end_pts + settings.post_roll_s
        start = max(ev.start_pts - settings.pre_roll_s, end - ring.span_s)
        rel = media_ref(ev.camera_id, ev.event_id, "mkv")
        job = _ClipJob(rel, ring, start, end, self._clock() + settings.post_roll_s + _POST_ROLL_GRACE_S)
        fresh = not ring.tied or ring.reaches(ev.start_pts, 0.0)  # a main stream lost before the event: no clip
        if self.store.healthy and fresh and self._submit(job):
            return rel
        self.stats.refused += 1
        return None

    def _submit(self, job: _SnapshotJob | _ClipJob) -> bool:
        with self._cond:
            if self._closing and not self._thread.is_alive():
                return False
            if job.rel in self._jobs:  # a newer peak of the same event replaces the unwritten one
                self._jobs[job.rel] = job
            elif len(self._jobs) + len(self._waiting) >= self.settings.queue:
                log.warning("media queue full (%d): %s goes out without it", self.settings.queue, job.rel)
                return False
            else:
                self._jobs[job.rel] = job
            self._cond.notify()
            return True

    # -- writer thread ---------------------------------------------------------------------------------------
    def _loop(self) -> None:
        last_retention = self._clock()
        while True:
            job, done = self._next()
            if done:
                return
            if job is not None:
                self._run(job)
                continue
            self.store.maybe_recover()
            if self._clock() - last_retention >= _RETENTION_EVERY_S:
                last_retention = self._clock()
                self.store.enforce_retention()
                self.stats.deleted = self.store.deleted

    def _next(self) -> tuple[_SnapshotJob | _ClipJob | None, bool]:
        """The next job that can run now; (None, True) once closing and nothing is left."""
        with self._cond:
            now = self._clock()
            for i, clip in enumerate(self._waiting):
                if self._closing or now >= clip.give_up_at or clip.ring.covers(clip.end):
                    return self._waiting.pop(i), False
            while self._jobs:
                _, job = self._jobs.popitem(last=False)
                if isinstance(job, _ClipJob) and not (self._closing or job.ring.covers(job.end)):
                    self._waiting.append(job)
                    continue
                return job, False
            if self._closing:
                return None, not self._waiting
            self._cond.wait(0.1 if self._waiting else 1.0)
            return None, False

    def _run(self, job: _SnapshotJob | _ClipJob) -> None:
        if not self.store.healthy:
            return
        try:
            if isinstance(job, _SnapshotJob):
                data = snapshot_jpeg(job.packets, job.pts, job.box, quality=job.quality)
                if self.store.write_bytes(job.rel, data):
                    self.stats.snapshots_written += 1
            else:
                packets = job.ring.clip_packets(job.start, job.end)
                if not packets:
                    log.warning("no packets left for clip %s (%.2f-%.2f s)", job.rel, job.start, job.end)
                    self.stats.render_failures += 1
                    return
                if self.store.write(job.rel, lambda tmp: _clip_to(packets, tmp)):
                    self.stats.clips_written += 1
        except Exception:  # noqa: BLE001 - one bad render must not stop the writer (and events never wait on it)
            self.stats.render_failures += 1
            log.exception("rendering %s failed", job.rel)
        self.stats.write_failures = self.store.write_failures
        self.stats.deleted = self.store.deleted


def _clip_to(packets: list[RingPacket], tmp: Path) -> None:
    write_clip(packets, tmp)
