"""The event store beside the outbox: details, verdicts, queries, and one retention for all of it."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from support.alert_messages import MODEL, T0, lifecycle, message

from alerts.outbox import Outbox
from alerts.schema import EventMessage
from alerts.store import EventNotFoundError, EventQuery, EventStore


class Wall:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fill(box: Outbox) -> None:
    for msg in lifecycle("ev-a", "door", updates=1) + lifecycle("ev-b", "yard", updates=0):
        box.put(msg)
    box.put(message("ev-c", 0, "door"))  # still open


def test_events_newest_first_with_their_latest_message_and_filters(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", local_only=True) as box:
        fill(box)
        with EventStore(box.path) as store:
            got = store.events()
            assert [(e.message.event_id, e.message.type) for e in got] == [
                ("ev-c", "new"),
                ("ev-b", "end"),
                ("ev-a", "end"),
            ]
            assert [e.message.event_id for e in store.events(EventQuery(camera_id="door"))] == ["ev-c", "ev-a"]
            assert [e.message.event_id for e in store.events(EventQuery(state="open"))] == ["ev-c"]
            assert store.events(EventQuery(modality="temporal")) == []
            assert len(store.events(EventQuery(modality="video"))) == 3
            start = T0 + timedelta(seconds=10)
            assert len(store.events(EventQuery(since=start, until=start))) == 3
            assert store.events(EventQuery(since=start + timedelta(seconds=1))) == []
            assert [e.message.event_id for e in store.events(EventQuery(limit=1, before="ev-c"))] == ["ev-b"]
            stored, messages = store.event("ev-a") or (None, [])
            assert stored is not None and [m.seq for m in messages] == [0, 1, 2] and stored.message.seq == 2
            assert store.event("nope") is None


def test_verdicts_are_stored_replaced_filtered_and_refused_for_unknown_events(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", local_only=True) as box:
        fill(box)
        with EventStore(box.path, wall_clock=Wall()) as store:
            store.set_verdict("ev-a", "real")
            record = store.set_verdict("ev-a", "normal", "the van parks there", source="cli")
            assert (record.verdict, record.note, record.source) == ("normal", "the van parks there", "cli")
            assert [e.message.event_id for e in store.events(EventQuery(verdict="normal"))] == ["ev-a"]
            assert [e.message.event_id for e in store.events(EventQuery(verdict="none"))] == ["ev-c", "ev-b"]
            assert [e.message.event_id for e in store.verdicts("door", "normal")] == ["ev-a"]
            with pytest.raises(EventNotFoundError):
                store.set_verdict("nope", "normal")
            for bad in (("maybe", None), ("real", "x" * 501), ("real", "a\x1b[31m")):
                with pytest.raises(ValueError):
                    store.set_verdict("ev-a", *bad)


def test_details_and_verdicts_go_with_the_last_row_of_their_event(tmp_path: Path) -> None:
    wall = Wall()
    with Outbox(tmp_path / "o.db", local_only=True, retention_s=100.0, wall_clock=wall) as box:
        for msg in lifecycle("old", "door", updates=0):
            box.put(msg)
        with EventStore(box.path) as store:
            store.save_detail("old", "door", {"series": {"fused": [[1.0, 4.0]]}})
            store.set_verdict("old", "normal")
            wall.now += 50
            for msg in lifecycle("new", "door", updates=0):
                box.put(msg)
            store.save_detail("new", "door", {"series": {}})
            wall.now += 60  # "old" is past the retention, "new" is not
            assert box.prune() == 2
            assert store.detail("old") is None and store.events(EventQuery(verdict="normal")) == []
            assert store.detail("new") == {"series": {}}


def test_cameras_and_open_outages(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", local_only=True) as box:
        fill(box)
        down = EventMessage.camera_offline(
            event_id="out-1",
            camera_id="gate",
            site="s",
            since=T0,
            since_pts=0.0,
            state="backoff",
            model=MODEL,
            decided_at=T0,
        )
        box.put(down)
        with EventStore(box.path) as store:
            assert [m.event_id for m in store.open_outages()] == ["out-1"]
            cams = {c.camera_id: c for c in store.cameras()}
            assert set(cams) == {"door", "yard", "gate"} and cams["door"].events == 2 and cams["gate"].events == 0
            assert cams["gate"].last_status == down and cams["door"].last_event is not None
            assert store.events(EventQuery(camera_id="gate")) == []  # status alerts are no events
            box.put(down.back_online(at=T0 + timedelta(seconds=5), decided_at=T0 + timedelta(seconds=5)))
            assert store.open_outages() == []
            assert box.unfinished(camera_ids=["gate"]) == []


def test_a_reader_of_a_store_nobody_wrote_verdicts_to_reads_events(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", local_only=True) as box:
        fill(box)
    with EventStore(tmp_path / "o.db", readonly=True) as store:
        assert len(store.events()) == 3 and store.detail("ev-a") is None
        assert store.events(EventQuery(verdict="normal")) == []
    with pytest.raises(FileNotFoundError):
        EventStore(tmp_path / "absent.db")


def test_alerts_tail_since_reads_the_history(tmp_path: Path) -> None:
    wall = Wall(time.time() - 3 * 3600)
    with Outbox(tmp_path / "o.db", local_only=True, wall_clock=wall) as box:
        box.put(message("old", 0, "door"))
        wall.now = time.time()
        box.put(message("recent", 0, "door"))

    def tail(*args: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "alerts.cli", "tail", "--outbox", str(tmp_path / "o.db"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    assert len(tail()) == 2
    assert [line.split()[3] for line in tail("--since", "1h")] == ["recent#0"]
    assert len(tail("--since", "4h")) == 2
    assert tail("--since", "2999-01-01T00:00:00") == []
    proc = subprocess.run(
        [sys.executable, "-m", "alerts.cli", "tail", "--since", "yesterday"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "neither a duration" in proc.stderr
