"""The human line of an event message: what ``edge run`` prints as events are decided and ``alerts tail`` prints
from the outbox or the topic. One format for both, built from the wire message alone."""

from __future__ import annotations

from datetime import datetime

from alerts.schema import EventMessage


def format_event(msg: EventMessage) -> str:
    """One line: decision time, camera, type, event#seq, stream time, score, modalities; what the event is
    (``label``), why an update or an end, and the event it continues. A camera status alert: offline since when
    and in which state, or online again after how long."""
    when = _stamp(msg.decided_at)
    if msg.is_status:
        return printable("  ".join(_status_parts(when, msg)))
    span = f"pts {msg.start_pts:.2f}s"
    if msg.type == "end" and msg.end_pts is not None:
        span = f"pts {msg.start_pts:.2f}-{msg.end_pts:.2f}s"
    mods = " ".join(f"{name}={m.peak:.2f}" for name, m in sorted(msg.modalities.items()))
    parts = [
        when,
        msg.camera_id,
        f"{msg.type:<6}",
        f"{msg.event_id[:12]}#{msg.seq}",
        span,
        f"score={msg.peak_score:.2f}",
    ]
    if mods:
        parts.append(mods)
    if msg.label is not None:
        parts.append(f"label={msg.label}")
    if msg.type == "update" and msg.update_reason is not None:
        parts.append(f"update={msg.update_reason}")
    if msg.type == "end" and msg.end_time is not None:
        parts.append(f"reason={msg.reason}")
        parts.append(f"duration={(msg.end_time - msg.start_time).total_seconds():.1f}s")
    if msg.continues is not None:
        parts.append(f"continues={msg.continues[:12]}")
    # validated messages hold no control characters; this line must not carry one whatever reached it
    return printable("  ".join(parts))


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _status_parts(when: str, msg: EventMessage) -> list[str]:
    """A camera status alert: offline since when (and its state), or online again after how long."""
    parts = [when, msg.camera_id, f"{msg.type:<7}", f"{msg.event_id[:12]}#{msg.seq}"]
    if msg.type == "offline":
        parts.append(f"since={_stamp(msg.start_time)}")
        if msg.label is not None:
            parts.append(f"state={msg.label}")
    elif msg.end_time is not None:
        parts.append(f"offline_for={(msg.end_time - msg.start_time).total_seconds():.1f}s")
    return parts


def printable(text: str) -> str:
    """``text`` with every non-printable character (terminal escapes, newlines) written as a Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
