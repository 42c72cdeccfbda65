"""The anomaly event as the aggregator decides it.

An event has a stable ``event_id`` for its whole life and a ``seq`` that increases with each message about it:
``new`` (seq 0), then ``update``\\ s, then exactly one ``end``. Every message carries the event's summary
so far (start, peak, modalities), so a consumer that sees only the latest message knows everything.
``alerts.schema`` turns this into the versioned wire message (adding site and model provenance); nothing
downstream changes a decided event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum


class EventType(str, Enum):
    NEW = "new"
    UPDATE = "update"
    END = "end"


class EndReason(str, Enum):
    QUIET = "quiet"  # scores stayed below the exit threshold for the hold time (and the merge gap)
    MAX_DURATION = "max_duration"  # the event reached max_duration_s; a new one continues it if still anomalous
    STREAM_LOST = "stream_lost"
    SHUTDOWN = "shutdown"
    EOF = "eof"  # a replayed file ended
    # The daemon stopped without ending the event (killed, power loss) and ended it when it started again.
    RESTART = "restart"


class UpdateReason(str, Enum):
    PEAK = "peak"  # the peak rose by at least the configured margin since the last message
    MODALITY = "modality"  # a modality joined the event
    INTERVAL = "interval"  # no message about the event for the configured interval


@dataclass(frozen=True, slots=True)
class ModalityScore:
    peak: float  # calibrated
    peak_time: datetime
    peak_pts: float


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    event_id: str
    seq: int
    type: EventType
    camera_id: str
    start_time: datetime
    start_pts: float
    peak_score: float
    peak_time: datetime
    peak_pts: float
    modalities: dict[str, ModalityScore] = field(default_factory=dict)
    end_time: datetime | None = None
    end_pts: float | None = None
    reason: EndReason | None = None
    update_reason: UpdateReason | None = None
    # event_id of the event this one continues: that one ended with max_duration while still anomalous
    continues: str | None = None
    box: tuple[float, float, float, float] | None = None  # worst region at the peak, fractions of the frame
    # what the event is, when its scores name it: the label its leading scores carried most often while at or
    # above the enter threshold (a tampering event: blackout, covered, defocus or moved)
    label: str | None = None
    # monotonic time of the capture of the frame that decided this message: latency is measured from here
    decided_from_monotonic_ns: int = 0
    # paths relative to the media directory (``pipeline.media``): set by the media recorder when kept
    snapshot: str | None = None
    clip: str | None = None
