"""The durable outbox: written before sending, pending until acknowledged, bounded, clear errors."""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.alert_messages import lifecycle, message

from alerts.errors import AlertsError, OutboxError, OutboxNotFoundError
from alerts.outbox import DEFAULT_OUTBOX_PATH, Outbox
from alerts.schema import SCHEMA_VERSION


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state" / "outbox.db")
    yield box
    box.close()


def test_default_path_is_relative_to_the_working_directory() -> None:
    assert DEFAULT_OUTBOX_PATH == Path(".lepton/outbox.db")
    assert not DEFAULT_OUTBOX_PATH.is_absolute()


def test_put_is_durable_wal_full_sync_and_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "outbox.db"
    with Outbox(path) as box:
        row_id = box.put(message(), capture_monotonic_ns=42)
        assert box._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert box._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        # Committed: another connection sees it while the writer is still open.
        other = sqlite3.connect(path)
        assert other.execute("SELECT id, event_id, seq, acked_at FROM outbox").fetchall() == [(row_id, "ev-1", 0, None)]
        other.close()


def test_pending_in_id_order_until_acked(outbox: Outbox) -> None:
    msgs = lifecycle("ev-1", "cam-1", updates=2) + lifecycle("ev-2", "cam-2")
    ids = [outbox.put(m) for m in msgs]
    assert ids == sorted(ids)
    pending = outbox.pending(limit=100)
    assert [r.id for r in pending] == ids
    assert [(r.event_id, r.seq, r.type, r.camera_id) for r in pending] == [
        (m.event_id, m.seq, m.type, m.camera_id) for m in msgs
    ]
    assert pending[0].message() == msgs[0]
    assert pending[0].schema_version == SCHEMA_VERSION
    assert [r.id for r in outbox.pending(limit=2)] == ids[:2]

    assert outbox.mark_acked(ids[:3]) == 3
    assert outbox.mark_acked(ids[:3]) == 0  # already delivered
    assert [r.id for r in outbox.pending()] == ids[3:]
    stats = outbox.stats()
    assert (stats.pending, stats.delivered, stats.last_id) == (len(ids) - 3, 3, ids[-1])
    # read() is the local bus: it returns delivered rows too.
    assert [r.id for r in outbox.read()] == ids
    assert [r.id for r in outbox.read(after_id=ids[4], limit=2)] == ids[5:7]
    assert outbox.read()[0].acked_at is not None and outbox.read()[-1].pending


def test_same_event_and_seq_is_stored_once(outbox: Outbox) -> None:
    first = outbox.put(message("ev-1", 0))
    assert outbox.put(message("ev-1", 0)) == first
    assert outbox.put(message("ev-1", 1)) == first + 1
    assert outbox.stats().pending == 2


def test_rows_survive_reopening_and_capture_time_stays_with_its_writer(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.put(message("ev-1", 0), capture_monotonic_ns=111)
        box.put(message("ev-1", 1))
        assert [r.capture_monotonic_ns for r in box.pending()] == [111, None]
    with Outbox(path) as box:
        rows = box.pending()
        assert [(r.event_id, r.seq) for r in rows] == [("ev-1", 0), ("ev-1", 1)]
        # Another process's (or boot's) monotonic clock means nothing here.
        assert [r.capture_monotonic_ns for r in rows] == [None, None]


def test_local_only_stores_rows_as_delivered(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", local_only=True) as box:
        box.put(message())
        assert box.pending() == []
        assert len(box.read()) == 1
        assert box.stats().delivered == 1


def test_retention_prunes_only_delivered_rows_by_age_and_count(tmp_path: Path) -> None:
    wall = FakeClock(1_000_000.0)
    mono = FakeClock()
    with Outbox(tmp_path / "o.db", retention_s=3600, max_delivered_rows=3, clock=mono, wall_clock=wall) as box:
        old = [box.put(message(f"old-{i}")) for i in range(2)]
        box.mark_acked(old)
        wall.now += 7200  # the old ones are past retention
        new = [box.put(message(f"new-{i}")) for i in range(5)]
        pending = box.put(message("never-acked"))
        box.mark_acked(new)
        assert box.prune() == 2 + 2  # both old ones by age, then the 2 oldest of 5 by count
        assert [r.id for r in box.read()] == new[2:] + [pending]
        assert box.stats().pruned == 4
        assert box.pending()[0].id == pending  # pending rows are never pruned
        # ids are never reused after pruning
        assert box.put(message("later")) > pending


def test_automatic_pruning_runs_at_most_once_a_minute(tmp_path: Path) -> None:
    wall, mono = FakeClock(1_000_000.0), FakeClock()
    with Outbox(tmp_path / "o.db", max_delivered_rows=1, clock=mono, wall_clock=wall) as box:
        ids = [box.put(message(f"e{i}")) for i in range(3)]  # first put pruned (nothing to prune)
        box.mark_acked(ids)
        assert box.stats().delivered == 3  # within the minute: not pruned yet
        mono.now += 61
        box.put(message("e9"))
        assert box.stats().delivered == 1


def test_size_cap_prunes_delivered_rows_then_fails_with_enospc(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=64 * 1024) as box:
        delivered = []
        with pytest.raises(OutboxError) as info:
            for i in range(10_000):
                delivered.append(box.put(message(f"ev-{i:05d}")))
                if i < 20:
                    box.mark_acked([delivered[-1]])
        err = info.value
        assert err.errno == errno.ENOSPC
        assert isinstance(err, OSError) and isinstance(err, AlertsError)
        assert "full" in str(err) and str(tmp_path) in str(err)
        # Making room deleted the delivered rows; every pending row is still there.
        assert box.stats().delivered == 0
        assert box.stats().pending == len(delivered) - 20
        assert len(box.pending(limit=100_000)) == len(delivered) - 20


def test_readonly_reader_sees_new_rows_and_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as writer, Outbox(path, readonly=True) as reader:
        writer.put(message("ev-1", 0))
        assert [r.seq for r in reader.read()] == [0]
        writer.put(message("ev-1", 1))
        assert [r.seq for r in reader.read()] == [0, 1]
        with pytest.raises(OutboxError) as info:
            reader.put(message("ev-2", 0))
        assert info.value.errno == errno.EROFS


def test_a_reader_opening_the_file_while_the_daemon_creates_it_waits_for_the_schema(tmp_path: Path) -> None:
    # The daemon's sqlite3.connect creates the (empty) file before the schema is committed: a reader that opens
    # it in between must wait, not fail with "no such table" (alerts tail started beside the daemon).
    path = tmp_path / "o.db"
    sqlite3.connect(path).close()
    assert path.exists() and path.stat().st_size == 0
    timer = threading.Timer(0.3, lambda: Outbox(path).close())
    timer.start()
    try:
        with Outbox(path, readonly=True) as reader:
            assert reader.read() == []
    finally:
        timer.join()


def test_an_empty_file_nobody_initialises_is_no_outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("alerts.outbox._SCHEMA_WAIT_S", 0.2)
    path = tmp_path / "o.db"
    path.touch()
    with pytest.raises(OutboxNotFoundError, match="no outbox yet"):
        Outbox(path, readonly=True)


def test_a_database_of_something_else_is_not_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x)")
    with pytest.raises(OutboxError, match="not an outbox") as info:
        Outbox(path, readonly=True)
    assert info.value.errno == errno.EINVAL


def test_missing_outbox_for_a_reader_is_a_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(OutboxNotFoundError) as info:
        Outbox(tmp_path / "nope.db", readonly=True)
    assert isinstance(info.value, FileNotFoundError)
    assert not (tmp_path / "nope.db").exists()


def test_unusable_path_is_a_clear_outbox_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutboxError) as info:
        Outbox(tmp_path / "file" / "outbox.db")
    assert info.value.errno == errno.ENOTDIR
    assert "outbox" in str(info.value)


def test_not_a_database_is_a_clear_outbox_error(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="cannot open the outbox"):
        Outbox(path)


def test_closed_outbox_raises(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.close()
    box.close()  # idempotent
    with pytest.raises(OutboxError, match="closed"):
        box.put(message())


def test_concurrent_puts_from_many_threads(outbox: Outbox) -> None:
    def writer(cam: int) -> None:
        for i in range(25):
            outbox.put(message(f"ev-{cam}-{i}", 0, f"cam-{cam}"))

    threads = [threading.Thread(target=writer, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    rows = outbox.pending(limit=1000)
    assert len(rows) == 100
    for cam in range(4):  # each writer's rows keep its order
        mine = [r.event_id for r in rows if r.camera_id == f"cam-{cam}"]
        assert mine == [f"ev-{cam}-{i}" for i in range(25)]


def test_wait_for_put_wakes_on_a_new_row(outbox: Outbox) -> None:
    assert outbox.wait_for_put(outbox.last_put_id, timeout_s=0.01) is False
    seen = outbox.last_put_id
    t = threading.Timer(0.05, lambda: outbox.put(message()))
    t.start()
    assert outbox.wait_for_put(seen, timeout_s=10) is True
    t.join()


# -- events a crash left open ---------------------------------------------------------------------------------


def test_unfinished_finds_the_latest_row_of_each_event_without_an_end(outbox: Outbox) -> None:
    outbox.put(message("ev-done", 0, "cam-1"))
    outbox.put(message("ev-done", 1, "cam-1"))
    outbox.put(message("ev-done", 2, "cam-1", end=True))
    outbox.put(message("ev-open", 0, "cam-1"))
    outbox.put(message("ev-new", 0, "cam-2"))
    outbox.put(message("ev-open", 1, "cam-1"))
    outbox.mark_acked([1, 2, 3, 4])  # delivered or not: what matters is that no end was ever decided
    rows = outbox.unfinished()
    assert [(r.event_id, r.seq, r.type) for r in rows] == [("ev-new", 0, "new"), ("ev-open", 1, "update")]
    assert [r.event_id for r in outbox.unfinished(camera_ids=["cam-1"])] == ["ev-open"]
    assert [r.event_id for r in outbox.unfinished(site="test-site")] == ["ev-new", "ev-open"]
    assert outbox.unfinished(site="elsewhere") == []
