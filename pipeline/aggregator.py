"""The temporal aggregator: calibrated scores of one camera in, anomaly events (new / end) out.

Driven by stream time only (each score's ``pts``), so a replay decides exactly what a live run decides and tests
drive it with exact score sequences and no sleeping. Per camera:

1. each modality's latest calibrated score holds until that modality's next score (or goes stale after
   ``stale_s``, so a modality whose stream stopped cannot keep an event open);
2. the fused score is the maximum over the fresh modalities;
3. a hysteresis state machine: the fused score must stay at or above ``threshold`` for ``min_duration_s`` to open an
   event (``new``); the event ends (``end``, reason ``quiet``) once the score stayed below ``threshold`` for
   ``hold_s``. A stream that ends or is lost, and a shutdown, end the open event with that reason.

The watermark (latest pts seen) never goes backwards: a late score updates its modality but is evaluated at the
watermark.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from pipeline.events import AnomalyEvent, EndReason, EventType, ModalityScore
from pipeline.frames import Score


class AggregatorSettings(BaseModel):
    """Per-camera event decisions; the daemon's config embeds this block as ``events:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(3.0, gt=0, le=10, description="Calibrated score that counts as anomalous "
                             "(3.0: exceeded by 1 in 1000 normal frames or windows)")
    min_duration_s: float = Field(0.4, ge=0, le=60, description="Time above threshold before an event opens")
    hold_s: float = Field(2.0, ge=0, le=600, description="Time below threshold before an event ends")
    stale_s: float = Field(1.5, gt=0, le=60, description="A modality's last score counts this long")


@dataclass(slots=True)
class _Latest:
    score: Score


@dataclass(slots=True)
class _Open:
    event_id: str
    seq: int
    start_time: datetime
    start_pts: float
    peak: Score
    modalities: dict[str, ModalityScore] = field(default_factory=dict)


def _uuid() -> str:
    return uuid.uuid4().hex


class CameraAggregator:
    """Aggregates one camera's scores. Not thread-safe: one per camera, fed from one thread."""

    def __init__(
        self, camera_id: str, settings: AggregatorSettings, *, new_id: Callable[[], str] = _uuid
    ) -> None:
        self.camera_id = camera_id
        self.settings = settings
        self._new_id = new_id
        self._latest: dict[str, _Latest] = {}
        self._watermark = -float("inf")
        self._above_since: Score | None = None  # first score of the current run at/above threshold
        self._below_since: Score | None = None  # first score of the current run below threshold
        self._open: _Open | None = None
        self._run_peak: Score | None = None
        self._run_modalities: dict[str, ModalityScore] = {}

    @property
    def watermark(self) -> float:
        return self._watermark

    @property
    def event_open(self) -> bool:
        return self._open is not None

    def push(self, score: Score) -> list[AnomalyEvent]:
        """Take one score; return the events it decided (usually none)."""
        if score.camera_id != self.camera_id:
            raise ValueError(f"score for {score.camera_id!r} pushed to aggregator of {self.camera_id!r}")
        self._latest[score.modality.value] = _Latest(score)
        self._watermark = max(self._watermark, score.pts)
        now = self._watermark
        fresh = [
            latest.score
            for latest in self._latest.values()
            if now - latest.score.pts <= self.settings.stale_s
        ]
        if not fresh:
            return []
        top = max(fresh, key=lambda s: s.calibrated)
        # the evaluation happens at the watermark, carrying the top score's value and the latest clocks
        at = score if score.pts >= now else replace(top, pts=now)
        above = top.calibrated >= self.settings.threshold
        events: list[AnomalyEvent] = []
        if above:
            if self._above_since is None:
                self._above_since = at
                self._run_peak = top
                self._run_modalities = {}
            self._below_since = None
            for s in fresh:
                if s.calibrated >= self.settings.threshold:
                    self._note_modality(s)
            if self._run_peak is None or top.calibrated > self._run_peak.calibrated:
                self._run_peak = top
            if self._open is None and now - self._above_since.pts >= self.settings.min_duration_s:
                events.append(self._open_event(at))
            elif self._open is not None:
                self._fold_run_into_open()
        else:
            if self._above_since is not None:
                # the run above threshold lasted until now: it may be long enough to open an event
                if self._open is None and now - self._above_since.pts >= self.settings.min_duration_s:
                    events.append(self._open_event(score))
                elif self._open is not None:
                    self._fold_run_into_open()
                self._above_since = None
                self._below_since = at
            elif self._below_since is None:
                self._below_since = at
            if (
                self._open is not None
                and self._below_since is not None
                and now - self._below_since.pts >= self.settings.hold_s
            ):
                events.append(
                    self._end_event_at(
                        self._below_since.pts, self._below_since.wall_time, EndReason.QUIET, score.monotonic_ns
                    )
                )
        return events

    def end_stream(self, pts: float, wall_time: datetime, reason: EndReason) -> list[AnomalyEvent]:
        """The stream ended, was lost, or the daemon stops: close the open event with ``reason``."""
        self._watermark = max(self._watermark, pts)
        events: list[AnomalyEvent] = []
        if self._open is None and self._above_since is not None:
            if self._watermark - self._above_since.pts >= self.settings.min_duration_s:
                events.append(self._open_event(self._above_since))
        if self._open is not None:
            if self._above_since is not None:
                self._fold_run_into_open()
            end_at = self._below_since
            end_pts, end_wall = (end_at.pts, end_at.wall_time) if end_at is not None else (pts, wall_time)
            events.append(self._end_event_at(end_pts, end_wall, reason, 0))
        self._latest.clear()
        self._above_since = self._below_since = None
        return events

    # -- internals -------------------------------------------------------------------------------------------
    def _note_modality(self, s: Score) -> None:
        name = s.modality.value
        cur = self._run_modalities.get(name)
        if cur is None or s.calibrated > cur.peak:
            self._run_modalities[name] = ModalityScore(s.calibrated, s.wall_time, s.pts)

    def _fold_run_into_open(self) -> None:
        assert self._open is not None
        if self._run_peak is not None and self._run_peak.calibrated > self._open.peak.calibrated:
            self._open.peak = self._run_peak
        for name, ms in self._run_modalities.items():
            cur = self._open.modalities.get(name)
            if cur is None or ms.peak > cur.peak:
                self._open.modalities[name] = ms

    def _open_event(self, trigger: Score) -> AnomalyEvent:
        assert self._above_since is not None and self._run_peak is not None
        start = self._above_since
        self._open = _Open(
            event_id=self._new_id(),
            seq=0,
            start_time=start.wall_time,
            start_pts=start.pts,
            peak=self._run_peak,
            modalities=dict(self._run_modalities),
        )
        return self._message(EventType.NEW, decided_from=trigger.monotonic_ns)

    def _end_event_at(self, pts: float, wall: datetime, reason: EndReason, decided_from: int) -> AnomalyEvent:
        assert self._open is not None
        self._open.seq += 1
        msg = self._message(EventType.END, end=(pts, wall), reason=reason, decided_from=decided_from)
        self._open = None
        return msg

    def _message(
        self,
        type_: EventType,
        *,
        end: tuple[float, datetime] | None = None,
        reason: EndReason | None = None,
        decided_from: int,
    ) -> AnomalyEvent:
        o = self._open
        assert o is not None
        return AnomalyEvent(
            event_id=o.event_id,
            seq=o.seq,
            type=type_,
            camera_id=self.camera_id,
            start_time=o.start_time,
            start_pts=o.start_pts,
            peak_score=o.peak.calibrated,
            peak_time=o.peak.wall_time,
            peak_pts=o.peak.pts,
            modalities=dict(o.modalities),
            end_time=end[1] if end else None,
            end_pts=end[0] if end else None,
            reason=reason,
            box=o.peak.box,
            decided_from_monotonic_ns=decided_from,
        )
