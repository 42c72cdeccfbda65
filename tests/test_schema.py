"""The wire message: built from aggregator events, strict, UTC, and equal to the committed JSON Schema."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError
from support.alert_messages import MODEL, T0, anomaly, lifecycle, message

from alerts.errors import MessageFormatError
from alerts.schema import SCHEMA_VERSION, EventMessage, json_schema, json_schema_text
from pipeline.events import EndReason

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "alerts" / "event.schema.json"


def test_committed_schema_file_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text() == json_schema_text(), (
        "alerts/event.schema.json is stale: run `python -m alerts.schema > alerts/event.schema.json`"
    )


def test_messages_of_a_whole_event_validate_against_the_committed_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for msg in lifecycle("ev-7", "cam-3", updates=2):
        validator.validate(json.loads(msg.to_json()))


def test_committed_schema_rejects_unknown_and_missing_fields() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    wire = json.loads(message().to_json())
    assert not list(validator.iter_errors(wire))
    assert list(validator.iter_errors({**wire, "extra": 1}))
    assert list(validator.iter_errors({k: v for k, v in wire.items() if k != "end_time"}))
    assert list(validator.iter_errors({**wire, "type": "opened"}))


def test_from_anomaly_maps_every_field() -> None:
    ev = anomaly("ev-1", 3, "cam-9", end=True)
    decided = datetime(2026, 5, 1, 14, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    msg = EventMessage.from_anomaly(ev, site="lobby", model=MODEL, decided_at=decided)
    assert msg.schema_version == SCHEMA_VERSION == "1.3"
    assert (msg.event_id, msg.seq, msg.type, msg.camera_id, msg.site) == ("ev-1", 3, "end", "cam-9", "lobby")
    assert (msg.start_time, msg.end_time) == (ev.start_time, ev.end_time)
    assert (msg.start_pts, msg.end_pts) == (10.0, 30.0)
    assert (msg.peak_score, msg.peak_time) == (ev.peak_score, ev.peak_time)
    assert msg.modalities["video"].peak == ev.modalities["video"].peak
    assert msg.modalities["audio"].peak_time == ev.modalities["audio"].peak_time
    assert msg.reason == "quiet"
    assert msg.box == (0.1, 0.2, 0.5, 0.6)
    assert msg.model == MODEL
    assert msg.snapshot is None and msg.clip is None
    assert msg.decided_at == decided and msg.decided_at.utcoffset() == timedelta(0)


def test_times_are_utc_iso8601_on_the_wire() -> None:
    wire = json.loads(message().to_json())
    for name in ("start_time", "peak_time", "decided_at"):
        assert wire[name].endswith("Z"), wire[name]
        assert datetime.fromisoformat(wire[name].replace("Z", "+00:00")).tzinfo is not None
    assert wire["end_time"] is None and wire["reason"] is None and wire["end_pts"] is None


def test_round_trip_through_json() -> None:
    msg = message("ev-2", 2, end=True)
    assert EventMessage.from_json(msg.to_json()) == msg


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        EventMessage.from_anomaly(anomaly(), site="s", model=MODEL, decided_at=datetime(2026, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"type": "update", "seq": 0}, "seq"),
        ({"type": "new", "seq": 2}, "seq"),
        ({"type": "end", "seq": 2}, "end_time is required"),
        ({"reason": "quiet"}, "reason is only allowed"),
        ({"end_time": T0}, "end_time is only allowed"),
        ({"peak_score": float("nan")}, "finite"),
        ({"box": (0.1, 0.2, 1.5, 0.6)}, "less than or equal"),
        ({"event_id": ""}, "at least 1"),
        ({"reason": "boredom", "type": "end", "seq": 1, "end_time": T0, "end_pts": 1.0}, "reason"),
    ],
)
def test_inconsistent_messages_are_rejected(changes: dict[str, object], problem: str) -> None:
    data = {**message().model_dump(), **changes}
    with pytest.raises(ValidationError, match=problem):
        EventMessage.model_validate(data)


def test_unknown_fields_are_rejected_and_the_message_is_frozen() -> None:
    data = {**message().model_dump(), "colour": "red"}
    with pytest.raises(ValidationError, match="Extra inputs"):
        EventMessage.model_validate(data)
    with pytest.raises(ValidationError, match="frozen"):
        message().seq = 5  # type: ignore[misc]


def test_from_json_turns_garbage_into_message_format_error() -> None:
    with pytest.raises(MessageFormatError, match="not a valid event message"):
        EventMessage.from_json(b'{"schema_version": "1.0"}')
    with pytest.raises(ValueError):  # MessageFormatError is a ValueError too
        EventMessage.from_json(b"\xff not json")


def test_schema_names_its_version() -> None:
    schema = json_schema()
    assert schema["$id"].endswith(SCHEMA_VERSION)
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert schema["additionalProperties"] is False


# -- version 1.1: restart, update_reason, continues; 1.0 still readable ---------------------------------------


def test_updates_name_their_reason_and_only_updates_do() -> None:
    update = message("ev-1", 1)
    assert update.type == "update" and update.update_reason == "peak"
    data = update.model_dump()
    with pytest.raises(ValidationError, match="update_reason is required"):
        EventMessage.model_validate({**data, "update_reason": None})
    with pytest.raises(ValidationError, match="update_reason is only allowed"):
        EventMessage.model_validate({**message().model_dump(), "update_reason": "peak"})
    with pytest.raises(ValidationError, match="update_reason"):
        EventMessage.model_validate({**data, "update_reason": "boredom"})


def test_continues_and_the_restart_reason_are_on_the_wire() -> None:
    ev = anomaly("ev-2", 0)
    msg = EventMessage.from_anomaly(replace(ev, continues="ev-1"), site="s", model=MODEL, decided_at=T0)
    assert json.loads(msg.to_json())["continues"] == "ev-1"
    end = msg.ended(reason="restart", end_time=T0 + timedelta(seconds=30), end_pts=40.0, decided_at=T0)
    assert (end.type, end.seq, end.reason, end.continues, end.event_id) == ("end", 1, "restart", "ev-1", "ev-2")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    validator.validate(json.loads(end.to_json()))


def test_a_version_1_0_message_is_still_read() -> None:
    wire = json.loads(message("ev-1", 1).to_json())
    del wire["update_reason"], wire["continues"]
    wire["schema_version"] = "1.0"
    msg = EventMessage.from_json(json.dumps(wire))
    assert (msg.schema_version, msg.type, msg.update_reason) == ("1.0", "update", None)
    # ...but the published JSON Schema is the current version's only
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    assert list(validator.iter_errors(wire))
    with pytest.raises(MessageFormatError, match="schema_version"):
        EventMessage.from_json(json.dumps({**wire, "schema_version": "0.9"}))


def test_every_aggregator_message_becomes_a_valid_wire_message() -> None:
    from pipeline.aggregator import AggregatorSettings, CameraAggregator
    from pipeline.frames import Modality, Score

    agg = CameraAggregator(
        "cam-1",
        AggregatorSettings(min_duration_s=0.2, hold_s=0.4, max_duration_s=2.0, update_interval_s=0.5),
    )
    events = []
    for i in range(40):
        pts = i * 0.2
        value = 6.0 + i % 3 if 5 <= i < 30 else 0.5
        modality = Modality.AUDIO if i % 4 == 0 else Modality.VIDEO
        wall = T0 + timedelta(seconds=pts)
        events += agg.push(Score("cam-1", modality, pts, i, wall, value / 10, value, (0.1, 0.1, 0.5, 0.5)))
    events += agg.end_stream(8.0, T0 + timedelta(seconds=8), EndReason.SHUTDOWN)
    assert {e.type.value for e in events} == {"new", "update", "end"}
    validator = jsonschema.Draft202012Validator(
        json.loads(SCHEMA_FILE.read_text()), format_checker=jsonschema.FormatChecker()
    )
    for ev in events:
        msg = EventMessage.from_anomaly(ev, site="s", model=MODEL, decided_at=T0)
        validator.validate(json.loads(msg.to_json()))


# -- version 1.2: label (the kind of tampering); 1.1 still readable ------------------------------------------


def test_a_label_is_on_the_wire_and_a_version_1_1_message_is_still_read() -> None:
    msg = EventMessage.from_anomaly(replace(anomaly("ev-3", 0), label="covered"), site="s", model=MODEL, decided_at=T0)
    wire = json.loads(msg.to_json())
    assert (wire["schema_version"], wire["label"]) == ("1.3", "covered")
    end = msg.ended(reason="quiet", end_time=T0 + timedelta(seconds=5), end_pts=9.0, decided_at=T0)
    assert end.label == "covered"
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    validator.validate(json.loads(end.to_json()))
    old = {k: v for k, v in wire.items() if k != "label"} | {"schema_version": "1.1"}
    assert EventMessage.from_json(json.dumps(old)).label is None
    with pytest.raises(MessageFormatError, match="label came with schema version 1.2"):
        EventMessage.from_json(json.dumps({**old, "label": "covered"}))


# -- text from the network: printable, and media references that stay in the media directory ----------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("camera_id", "cam\x1b[2J\x1b[31mALL CLEAR"),
        ("camera_id", "cam\nsecond line"),
        ("site", "site\x9b31m"),
        ("site", "site\x07"),
        ("event_id", "ev/../../x"),
        ("label", "covered\x1b]0;title\x07"),
        ("snapshot", "../../etc/shadow"),
        ("snapshot", "/etc/shadow.jpg"),
        ("snapshot", "cam-1/../../ev.jpg"),
        ("snapshot", "cam-1/ev-1.sh"),
        ("clip", "cam-1/..mkv"),
        ("clip", "../cam/ev.mkv"),
    ],
)
def test_control_characters_and_escaping_paths_are_rejected(field: str, value: str) -> None:
    data = {**message().model_dump(), field: value}
    if field == "clip":
        data = {**message("ev-1", 1, end=True).model_dump(), field: value}
    with pytest.raises(ValidationError, match="pattern"):
        EventMessage.model_validate(data)


def test_a_modality_name_with_escapes_is_rejected() -> None:
    data = message().model_dump()
    data["modalities"] = {"video\x1b[2J": data["modalities"]["video"]}
    with pytest.raises(ValidationError, match="pattern"):
        EventMessage.model_validate(data)


def test_what_the_edge_writes_still_validates_and_the_schema_file_says_so() -> None:
    msg = message("ev-1", 1, end=True).model_copy(update={"snapshot": "cam-1/ev-1.jpg", "clip": "cam-1/ev-1.mkv"})
    assert EventMessage.model_validate(msg.model_dump()) == msg
    committed = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(json.loads(msg.to_json()), committed)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**json.loads(msg.to_json()), "snapshot": "../../etc/shadow"}, committed)
