"""Ending the events a crashed daemon left open.

A daemon killed with an event open (``kill -9``, power loss) wrote that event's ``new`` (and maybe updates) to
the outbox but never its ``end``. At its next start, before anything else is decided, the daemon calls
``end_interrupted``: for each such event of its site it puts an ``end`` with reason ``restart``, the same
``event_id`` and the next ``seq``, behind the event's earlier rows, so consumers see a complete lifecycle in
order. Consumers can tell a restart from a camera failure (``stream_lost``): the camera may have been fine.

When did it end? Nobody saw it end. ``end_time`` is the latest moment the last message proves the event was
still open: the latest of its start, peak and modality peak times and the time that message was decided (the
edge's wall clock, the same clock as the capture times except with cameras that send RTCP time); interval
updates (``events.update_interval_s``) keep that close to the crash. ``end_pts`` is placed on the stream clock at
the same distance from ``start_pts``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from alerts.errors import MessageFormatError
from alerts.outbox import Outbox
from alerts.schema import EndReasonName, EventMessage

log = logging.getLogger(__name__)


def interrupted_events(outbox: Outbox, *, site: str, camera_ids: Iterable[str] | None = None) -> list[EventMessage]:
    """The latest message of each event of ``site`` (and ``camera_ids``) that the outbox holds without an end."""
    found = []
    for row in outbox.unfinished(site=site, camera_ids=camera_ids):
        try:
            found.append(row.message())
        except MessageFormatError as exc:
            log.warning("outbox row %d (event %s) is unreadable, cannot end it: %s", row.id, row.event_id, exc)
    return found


def end_message(last: EventMessage, *, reason: EndReasonName, decided_at: datetime) -> EventMessage:
    """The ``end`` that follows ``last`` when nobody saw the event end (see the module docstring)."""
    seen = [last.start_time, last.peak_time, last.decided_at, *(m.peak_time for m in last.modalities.values())]
    end_time = max(seen)
    end_pts = last.start_pts + (end_time - last.start_time).total_seconds()
    return last.ended(reason=reason, end_time=end_time, end_pts=end_pts, decided_at=decided_at)


def end_interrupted(
    outbox: Outbox,
    *,
    site: str,
    decided_at: datetime,
    camera_ids: Iterable[str] | None = None,
    reason: EndReasonName = "restart",
) -> list[EventMessage]:
    """Put an ``end`` for every event of ``site`` left open in ``outbox``; return the ends, in outbox order.

    Call it once at start, before the pipeline decides anything. Raises ``OutboxError`` when the outbox cannot
    be written (the events stay unfinished and the next start tries again).
    """
    ends = []
    for last in interrupted_events(outbox, site=site, camera_ids=camera_ids):
        end = end_message(last, reason=reason, decided_at=decided_at)
        outbox.put(end)
        log.warning(
            "event %s of camera %s was open when the daemon stopped without ending it: ended (%s, seq %d)",
            end.event_id,
            end.camera_id,
            reason,
            end.seq,
        )
        ends.append(end)
    return ends
