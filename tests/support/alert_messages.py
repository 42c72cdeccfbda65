"""Building valid ``EventMessage`` s and ``AnomalyEvent`` s for the ``alerts`` tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alerts.schema import EventMessage, ModelProvenance
from pipeline.events import AnomalyEvent, EndReason, EventType, ModalityScore, UpdateReason

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
MODEL = ModelProvenance(package_id="default-ae", version="0.1.0", engine="onnxruntime-cpu", calibration="cal-1")


def anomaly(event_id: str = "ev-1", seq: int = 0, camera_id: str = "cam-1", *, end: bool = False) -> AnomalyEvent:
    start = T0 + timedelta(seconds=10)
    peak = start + timedelta(seconds=1 + seq)
    kind = EventType.END if end else (EventType.NEW if seq == 0 else EventType.UPDATE)
    return AnomalyEvent(
        event_id=event_id,
        seq=seq,
        type=kind,
        camera_id=camera_id,
        start_time=start,
        start_pts=10.0,
        peak_score=0.8 + 0.01 * seq,
        peak_time=peak,
        peak_pts=11.0 + seq,
        modalities={
            "video": ModalityScore(peak=0.8 + 0.01 * seq, peak_time=peak, peak_pts=11.0 + seq),
            "audio": ModalityScore(peak=0.4, peak_time=start, peak_pts=10.0),
        },
        end_time=start + timedelta(seconds=20) if end else None,
        end_pts=30.0 if end else None,
        reason=EndReason.QUIET if end else None,
        update_reason=UpdateReason.PEAK if kind is EventType.UPDATE else None,
        box=(0.1, 0.2, 0.5, 0.6),
        decided_from_monotonic_ns=123,
    )


def message(event_id: str = "ev-1", seq: int = 0, camera_id: str = "cam-1", *, end: bool = False) -> EventMessage:
    return EventMessage.from_anomaly(
        anomaly(event_id, seq, camera_id, end=end),
        site="test-site",
        model=MODEL,
        decided_at=T0 + timedelta(seconds=12 + seq),
    )


def lifecycle(event_id: str, camera_id: str, updates: int = 1) -> list[EventMessage]:
    """new, ``updates`` updates, end: a whole event's messages in order."""
    msgs = [message(event_id, 0, camera_id)]
    msgs += [message(event_id, i, camera_id) for i in range(1, updates + 1)]
    msgs.append(message(event_id, updates + 1, camera_id, end=True))
    return msgs
