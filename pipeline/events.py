"""The anomaly event as the aggregator decides it.

An event has a stable ``event_id`` for its whole life and a ``seq`` that increases with each message about it:
``new`` (seq 0), then ``update``\\ s, then exactly one ``end``. ``alerts.schema`` turns this into the versioned wire
message (adding site and model provenance); nothing downstream changes a decided event.
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
    QUIET = "quiet"  # scores stayed below threshold for the hold time
    MAX_DURATION = "max_duration"
    STREAM_LOST = "stream_lost"
    SHUTDOWN = "shutdown"
    EOF = "eof"  # a replayed file ended


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
    box: tuple[float, float, float, float] | None = None  # worst region at the peak, fractions of the frame
    # monotonic time of the capture of the frame that decided this message: latency is measured from here
    decided_from_monotonic_ns: int = 0
