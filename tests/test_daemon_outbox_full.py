"""A full disk must not lose events: the daemon holds what the outbox refuses, in order, and retries."""

from __future__ import annotations

import errno
import itertools
from datetime import datetime, timedelta, timezone

from alerts.errors import OutboxError
from alerts.schema import ModelProvenance
from edge.config import EdgeConfig
from edge.daemon import Daemon
from pipeline.events import AnomalyEvent, EndReason, EventType

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FlakyOutbox:
    """The part of ``alerts.outbox.Outbox`` the daemon writes through; refuses ``put`` while ``full``."""

    def __init__(self) -> None:
        self.full = False
        self.rows: list[tuple[str, int]] = []

    def put(self, msg, *, capture_monotonic_ns=None) -> int:
        if self.full:
            raise OutboxError(errno.ENOSPC, "database or disk is full")
        self.rows.append((msg.event_id, msg.seq))
        return len(self.rows)


def event(n: int) -> AnomalyEvent:
    t = T0 + timedelta(seconds=n)
    kind = EventType.NEW if n % 2 == 0 else EventType.END
    return AnomalyEvent(
        event_id=f"ev{n // 2}",
        seq=n % 2,
        type=kind,
        camera_id="cam1",
        start_time=t,
        start_pts=float(n),
        peak_score=5.0,
        peak_time=t,
        peak_pts=float(n),
        end_time=t if kind is EventType.END else None,
        end_pts=float(n) if kind is EventType.END else None,
        reason=EndReason.QUIET if kind is EventType.END else None,
    )


def test_events_refused_by_a_full_outbox_are_written_in_order_once_it_has_room() -> None:
    daemon = Daemon(EdgeConfig.model_validate({"cameras": [{"id": "cam1", "url": "x.mkv"}]}))
    outbox = FlakyOutbox()
    daemon._outbox = outbox  # type: ignore[assignment]
    daemon._provenance = ModelProvenance(package_id="p", version="1", engine="onnxruntime", calibration="c")
    counter = itertools.count()
    daemon._on_event(event(next(counter)))
    outbox.full = True
    for _ in range(3):
        daemon._on_event(event(next(counter)))  # refused: held, no exception reaches the scoring thread
    assert outbox.rows == [("ev0", 0)] and daemon.outbox_write_failures == 3
    outbox.full = False
    daemon._on_event(event(next(counter)))
    assert outbox.rows == [("ev0", 0), ("ev0", 1), ("ev1", 0), ("ev1", 1), ("ev2", 0)]
