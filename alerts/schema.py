"""The versioned wire message of an anomaly event, and its JSON Schema.

``EventMessage`` is what leaves the edge: the aggregator's ``pipeline.events.AnomalyEvent`` plus the site, the
model provenance and the time it was decided. It is written to the outbox, sent to Kafka as UTF-8 JSON (key =
``camera_id``, headers ``schema_version`` and ``type``) and parsed back by consumers. Every time is UTC
ISO-8601; ``*_pts`` are stream seconds of the camera's own clock.

Rules the JSON Schema cannot express, checked here: a ``new`` message has ``seq`` 0 and every later message of
the event a higher one; ``end_time``, ``end_pts`` and ``reason`` are set on ``end`` and only there;
``update_reason`` on ``update`` and only there. Duplicates (after a broker outage or a restart) carry the same
``event_id`` + ``seq``: consumers drop them by that pair.

The committed ``alerts/event.schema.json`` is generated from this module (``python -m alerts.schema >
alerts/event.schema.json``); a test keeps the two equal. A change that adds, removes or retypes a field
changes ``SCHEMA_VERSION``: messages are validated with ``extra="forbid"``, so consumers reject what they do
not know rather than silently dropping it.

Versions (each one a consumer of the one before would reject, hence the version): 1.0 the first; 1.1 end reason
``restart``, ``update_reason``, ``continues``; 1.2 ``label`` (what the event is, a tampering event's kind); 1.3
camera status alerts, types ``offline`` (seq 0) and ``online`` (seq 1, the same ``event_id``), without scores.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from alerts.errors import MessageFormatError
from pipeline.events import AnomalyEvent, EventType
from pipeline.strict import StrictModel

SCHEMA_VERSION: Final = "1.3"
READABLE_VERSIONS: Final = ("1.3", "1.2", "1.1", "1.0")  # what EventMessage accepts: this version and the older ones
SCHEMA_ID = "urn:lepton-edge:schema:event:" + SCHEMA_VERSION

MessageType = Literal["new", "update", "end", "offline", "online"]
STATUS_TYPES: Final = ("offline", "online")  # camera status alerts (1.3), not anomaly events
EndReasonName = Literal["quiet", "max_duration", "stream_lost", "shutdown", "eof", "restart"]
UpdateReasonName = Literal["peak", "modality", "interval"]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _current_version_only(schema: dict[str, Any]) -> None:
    # The model also reads older versions; the published JSON Schema is that of the current one.
    schema.pop("enum", None)
    schema["const"] = SCHEMA_VERSION


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC (serialised as ``...Z``); naive datetimes are rejected."""

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]

# Text a consumer prints or uses as a path comes from the network: no control characters (C0, DEL, C1: terminal
# escapes), and media references are relative paths in the form the edge writes them (camera/event.ext: no
# "..", no leading "/" or ".").
_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]+$"
_ID = r"^[A-Za-z0-9_.:-]+$"
_MEDIA_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
ModalityName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]


class ModalityPeak(StrictModel):
    """The peak of one modality's calibrated score over the event so far."""

    model_config = ConfigDict(allow_inf_nan=False)

    peak: float = Field(description="Highest calibrated score of this modality during the event.")
    peak_time: UtcDatetime = Field(description="Capture time (UTC) of the frame or window that scored the peak.")


class ModelProvenance(StrictModel):
    """Which model package decided the event, so a consumer can tell events of different models apart."""

    package_id: str = Field(min_length=1, max_length=200, description="Model package id (directory name or hash).")
    version: str = Field(min_length=1, max_length=100, description="Model package version.")
    engine: str = Field(
        min_length=1, max_length=100, description="Inference backend that scored it, e.g. 'onnxruntime-cpu'."
    )
    calibration: str = Field(
        max_length=200, description="Identifier of the score calibration in use (fitted on normal footage)."
    )


class EventMessage(StrictModel):
    """One message about an anomaly event: ``new``, then ``update``\\ s, then one ``end``."""

    model_config = ConfigDict(
        allow_inf_nan=False,
        title="Lepton Edge anomaly event message",
        # The schema describes what is on the wire, where every field is present (nulls explicit).
        json_schema_serialization_defaults_required=True,
    )

    schema_version: Literal["1.3", "1.2", "1.1", "1.0"] = Field(
        default=SCHEMA_VERSION,
        description="Version of this message format; changes with any field change.",
        json_schema_extra=_current_version_only,
    )
    event_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=_ID,
        description="Stable id of the event, the same in all of its messages (letters, digits, _ . : -).",
    )
    seq: int = Field(ge=0, description="Number of this message within its event: 0 for new, then increasing.")
    type: MessageType = Field(
        description="new: the event opened; update: it changed or is still going (update_reason); end: it closed."
        " Camera status alerts: offline (the camera has not streamed for the configured time; start_time: when it"
        " stopped; label: its state) and online (it streams again at end_time; the offline's event_id, seq 1)."
    )
    camera_id: str = Field(
        min_length=1,
        max_length=200,
        pattern=_PRINTABLE,
        description="Camera that saw it; also the Kafka key. No control characters.",
    )
    site: str = Field(
        min_length=1,
        max_length=200,
        pattern=_PRINTABLE,
        description="Site (deployment) the edge daemon runs at. No control characters.",
    )
    start_time: UtcDatetime = Field(description="Capture time (UTC) of the first anomalous frame or window.")
    end_time: UtcDatetime | None = Field(
        description="Capture time (UTC) the event ended; null until type=end. On type=online: when the camera"
        " streamed again."
    )
    start_pts: float = Field(description="Stream time (seconds, camera clock) of the start.")
    end_pts: float | None = Field(description="Stream time (seconds) of the end; null until type=end.")
    peak_score: float = Field(description="Highest fused calibrated score so far.")
    peak_time: UtcDatetime = Field(description="Capture time (UTC) of the peak.")
    modalities: dict[ModalityName, ModalityPeak] = Field(
        description="Per modality (e.g. 'video', 'audio', 'motion'): its peak score and when."
    )
    reason: EndReasonName | None = Field(
        description="Why the event ended (quiet, max_duration, stream_lost, shutdown, eof, restart); null unless"
        " type=end."
    )
    update_reason: UpdateReasonName | None = Field(
        default=None,
        description="Why this update was sent: peak (the peak rose by the configured margin), modality (a"
        " modality joined), interval (still going); null unless type=update.",
    )
    continues: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=_ID,
        description="event_id of the event this one continues: that one reached its maximum duration while the"
        " anomaly went on; null otherwise.",
    )
    box: tuple[Fraction, Fraction, Fraction, Fraction] | None = Field(
        default=None, description="Worst region at the peak as (x0, y0, x1, y1), fractions of the frame."
    )
    label: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=_PRINTABLE,
        description="What the event is, when its scores name it: for modality 'tampering' the kind (blackout,"
        " covered, defocus, moved), the one seen most while it held; on type=offline the camera's state"
        " (connecting, backoff, stalled, failed); null otherwise.",
    )
    model: ModelProvenance = Field(description="The model package that decided the event.")
    snapshot: str | None = Field(
        default=None,
        max_length=400,
        pattern=rf"^{_MEDIA_SEGMENT}/{_MEDIA_SEGMENT}\.jpg$",
        description="JPEG of the frame at the peak with the worst region drawn, as a path relative to the edge's"
        " media directory (camera/event_id.jpg; one file per event, rewritten when the peak rises); null when none"
        " is kept.",
    )
    clip: str | None = Field(
        default=None,
        max_length=400,
        pattern=rf"^{_MEDIA_SEGMENT}/{_MEDIA_SEGMENT}\.mkv$",
        description="Matroska clip of the event with pre- and post-roll (stream copy), as a path relative to the"
        " edge's media directory (camera/event_id.mkv); only on type=end; null when none is kept.",
    )
    decided_at: UtcDatetime = Field(description="Wall time (UTC) the edge decided this message.")

    @model_validator(mode="after")
    def _check_lifecycle(self) -> EventMessage:
        if self.type in STATUS_TYPES:
            return self._check_status()
        if (self.type == "new") != (self.seq == 0):
            raise ValueError(f"a {self.type!r} message cannot have seq {self.seq} (seq 0 is the 'new' message)")
        ended = self.type == "end"
        for name in ("end_time", "end_pts", "reason"):
            if (getattr(self, name) is not None) != ended:
                state = "required" if ended else "only allowed"
                raise ValueError(f"{name} is {state} on type='end' messages (this one is {self.type!r})")
        if self.update_reason is not None and self.type != "update":
            raise ValueError(f"update_reason is only allowed on type='update' messages (this one is {self.type!r})")
        if self.type == "update" and self.update_reason is None and self.schema_version != "1.0":
            raise ValueError("update_reason is required on type='update' messages")
        if self.label is not None and self.schema_version in ("1.0", "1.1"):
            raise ValueError(f"label came with schema version 1.2; this message is {self.schema_version}")
        return self

    def _check_status(self) -> EventMessage:
        """offline (seq 0) and online (seq 1, with end_time) of one outage; no scores, no end fields."""
        if self.schema_version not in ("1.3",):
            raise ValueError(f"type {self.type!r} came with schema version 1.3; this message is {self.schema_version}")
        if self.seq != (0 if self.type == "offline" else 1):
            raise ValueError(f"a {self.type!r} message has seq {0 if self.type == 'offline' else 1}, not {self.seq}")
        if (self.end_time is not None) != (self.type == "online"):
            raise ValueError("end_time is required on type='online' messages and not allowed on 'offline'")
        if self.end_pts is not None or self.reason is not None or self.update_reason is not None:
            raise ValueError(f"end_pts, reason and update_reason are not allowed on type={self.type!r} messages")
        if self.modalities or self.peak_score != 0:
            raise ValueError(f"a {self.type!r} message carries no scores (peak_score 0, no modalities)")
        return self

    @property
    def is_status(self) -> bool:
        """A camera status alert (offline / online), not an anomaly event."""
        return self.type in STATUS_TYPES

    @classmethod
    def camera_offline(
        cls,
        *,
        event_id: str,
        camera_id: str,
        site: str,
        since: datetime,
        since_pts: float,
        state: str,
        model: ModelProvenance,
        decided_at: datetime,
    ) -> EventMessage:
        """The alert that a camera has not streamed since ``since`` (its state now: ``state``)."""
        return cls(
            event_id=event_id,
            seq=0,
            type="offline",
            camera_id=camera_id,
            site=site,
            start_time=since,
            end_time=None,
            start_pts=since_pts,
            end_pts=None,
            peak_score=0.0,
            peak_time=since,
            modalities={},
            reason=None,
            label=state,
            model=model,
            decided_at=decided_at,
        )

    def back_online(self, *, at: datetime, decided_at: datetime) -> EventMessage:
        """The ``online`` message that closes this ``offline`` one: the camera streams again since ``at``."""
        data = self.model_dump()
        data.update(seq=1, type="online", end_time=at, label=None, decided_at=decided_at)
        return EventMessage.model_validate(data)

    @classmethod
    def from_anomaly(cls, ev: AnomalyEvent, *, site: str, model: ModelProvenance, decided_at: datetime) -> EventMessage:
        """The wire message of an aggregator event (``pydantic.ValidationError`` if it is inconsistent)."""
        return cls(
            event_id=ev.event_id,
            seq=ev.seq,
            type=EventType(ev.type).value,
            camera_id=ev.camera_id,
            site=site,
            start_time=ev.start_time,
            end_time=ev.end_time,
            start_pts=ev.start_pts,
            end_pts=ev.end_pts,
            peak_score=ev.peak_score,
            peak_time=ev.peak_time,
            modalities={name: ModalityPeak(peak=m.peak, peak_time=m.peak_time) for name, m in ev.modalities.items()},
            reason=ev.reason.value if ev.reason is not None else None,
            update_reason=ev.update_reason.value if ev.update_reason is not None else None,
            continues=ev.continues,
            box=ev.box,
            label=ev.label,
            model=model,
            snapshot=ev.snapshot,
            clip=ev.clip,
            decided_at=decided_at,
        )

    def ended(self, *, reason: EndReasonName, end_time: datetime, end_pts: float, decided_at: datetime) -> EventMessage:
        """The ``end`` message that follows this one: same event and summary, the next ``seq``, this version."""
        data = self.model_dump()
        data.update(
            schema_version=SCHEMA_VERSION,
            seq=self.seq + 1,
            type="end",
            end_time=end_time,
            end_pts=end_pts,
            reason=reason,
            update_reason=None,
            decided_at=decided_at,
        )
        return EventMessage.model_validate(data)

    def to_json(self) -> bytes:
        """The UTF-8 JSON bytes sent on the wire and stored in the outbox."""
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> EventMessage:
        """Parse and validate a wire message; anything else raises ``MessageFormatError``."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise MessageFormatError(f"not a valid event message v{SCHEMA_VERSION}: {_first_errors(exc)}") from exc


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``EventMessage``, as committed in ``alerts/event.schema.json``."""
    schema = EventMessage.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(json_schema_text())
