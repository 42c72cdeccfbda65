"""Ending what a killed daemon left open: an ``end`` with reason ``restart``, same event, next seq, in order."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
from support.alert_messages import T0, message

from alerts.outbox import Outbox
from alerts.recovery import end_interrupted, end_message, interrupted_events
from alerts.schema import EventMessage

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "alerts" / "event.schema.json").read_text())


def test_open_events_get_an_end_with_the_next_seq_after_everything_else(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        box.put(message("ev-a", 0, "cam-1"))
        box.put(message("ev-a", 1, "cam-1"))
        box.put(message("ev-b", 0, "cam-2"))
        box.put(message("ev-c", 0, "cam-2"))
        box.put(message("ev-c", 1, "cam-2", end=True))
        later = T0 + timedelta(minutes=5)
        ends = end_interrupted(box, site="test-site", decided_at=later)
        assert [(e.event_id, e.seq, e.type, e.reason) for e in ends] == [
            ("ev-a", 2, "end", "restart"),
            ("ev-b", 1, "end", "restart"),
        ]
        rows = box.read()
        assert [(r.event_id, r.seq) for r in rows[-2:]] == [("ev-a", 2), ("ev-b", 1)]  # behind the rest
        assert all(r.pending for r in rows[-2:])
        assert [EventMessage.from_json(r.payload) for r in rows[-2:]] == ends
        for end in ends:
            jsonschema.validate(json.loads(end.to_json()), SCHEMA)
        # done once: a second start finds nothing left open
        assert end_interrupted(box, site="test-site", decided_at=later) == []
        assert interrupted_events(box, site="test-site") == []


def test_other_sites_are_left_alone(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        box.put(message("ev-a", 0))
        assert end_interrupted(box, site="another-site", decided_at=T0) == []
        assert len(box.unfinished()) == 1


def test_the_end_time_is_the_last_moment_the_event_was_known_open() -> None:
    last = message("ev-a", 3)  # an update: start T0+10 s, peak T0+14 s, decided T0+15 s
    end = end_message(last, reason="restart", decided_at=T0 + timedelta(hours=1))
    assert end.end_time == last.decided_at == T0 + timedelta(seconds=15)
    assert end.end_pts == last.start_pts + 5.0
    assert (end.peak_score, end.modalities, end.model, end.start_time) == (
        last.peak_score,
        last.modalities,
        last.model,
        last.start_time,
    )
    assert end.decided_at == T0 + timedelta(hours=1) and end.update_reason is None
