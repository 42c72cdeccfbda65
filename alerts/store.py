"""The event store: decided events as the console and the operator see them, in the outbox's SQLite file.

The outbox's rows are the events' messages (``alerts.outbox``); delivered ones stay there for the retention
(``outbox.retention_h``, ``outbox.max_messages``), so they are the history. Beside them this store keeps, per
event, what the wire message does not carry:

* ``event_detail``: the timeline of its scores (video, temporal, audio, tampering, fused; the thresholds) and the
  per-patch errors of the frame at its peak (the heat-map), written by the daemon with each message;
* ``verdict``: the operator's verdict (``normal``: it was nothing; ``real``: it was an anomaly) with a note, from
  the console or ``edge feedback``; ``edge recalibrate`` reads the ``normal`` ones.

Both go when the last of the event's rows goes (a trigger on the outbox table): one retention for everything.
Queries (``events``, ``event``, ``cameras``) read the latest message of each event; anomaly events and camera
status alerts (``offline`` / ``online``) are told apart by type. Each store holds its own connection (WAL lets it
read beside the daemon's writer); ``readonly`` opens for reading only.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from alerts.errors import OutboxError, OutboxNotFoundError
from alerts.schema import STATUS_TYPES, EventMessage

Verdict = Literal["normal", "real"]
VERDICTS: tuple[Verdict, ...] = ("normal", "real")
MAX_NOTE = 500

_DDL = """
CREATE TABLE IF NOT EXISTS event_detail (
    event_id TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS verdict (
    event_id TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('normal', 'real')),
    note TEXT,
    decided_at REAL NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verdict_camera ON verdict (camera_id, verdict);
CREATE TRIGGER IF NOT EXISTS outbox_forget_event AFTER DELETE ON outbox
WHEN NOT EXISTS (SELECT 1 FROM outbox WHERE event_id = OLD.event_id)
BEGIN
    DELETE FROM event_detail WHERE event_id = OLD.event_id;
    DELETE FROM verdict WHERE event_id = OLD.event_id;
END;
"""

_EVENT_TYPES = "('new', 'update', 'end')"
_STATUS_TYPES = "(" + ", ".join(f"'{t}'" for t in STATUS_TYPES) + ")"
# the latest row of each event (of the types given); ``first`` is the id of its earliest row kept (its opening)
_LATEST = """
SELECT o.payload, (SELECT MIN(f.id) FROM outbox AS f WHERE f.event_id = o.event_id) AS first,
       v.verdict, v.note, v.decided_at, v.source
FROM outbox AS o LEFT JOIN verdict AS v ON v.event_id = o.event_id
WHERE o.type IN {types} AND o.seq = (SELECT MAX(m.seq) FROM outbox AS m WHERE m.event_id = o.event_id)
"""


class EventNotFoundError(KeyError):
    """No event of that id is in the store (never decided here, or gone with the retention)."""


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    verdict: Verdict
    note: str | None
    decided_at: float  # wall time (Unix s)
    source: str  # console, cli

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "note": self.note, "decided_at": self.decided_at, "source": self.source}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store knows it: its latest message, and the operator's verdict."""

    message: EventMessage
    verdict: VerdictRecord | None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters of ``EventStore.events``; None: any. Times compare with the event's start."""

    camera_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    modality: str | None = None
    state: Literal["open", "ended"] | None = None
    verdict: Verdict | Literal["none"] | None = None
    limit: int = 200
    before: str | None = None  # an event id: only events that opened before it (the next page)


@dataclass(frozen=True, slots=True)
class CameraRecord:
    """A camera as the store knows it: its last event and its last status alert."""

    camera_id: str
    events: int
    last_event: EventMessage | None
    last_status: EventMessage | None


class EventStore:
    """See the module docstring. ``path`` is the outbox file; it must exist (the daemon creates it)."""

    def __init__(
        self, path: str | Path, *, readonly: bool = False, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._wall = wall_clock
        self._lock = threading.Lock()
        if not self.path.is_file():
            raise OutboxNotFoundError(errno.ENOENT, "no event store (the outbox a daemon writes)", str(self.path))
        mode = "ro" if readonly else "rw"
        try:
            self._conn = sqlite3.connect(
                f"file:{quote(self.path.resolve().as_posix())}?mode={mode}",
                uri=True,
                timeout=10.0,
                isolation_level=None,
                check_same_thread=False,
            )
            self._conn.execute("PRAGMA busy_timeout = 10000")
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "outbox" not in tables:
                raise OutboxError(errno.EINVAL, "not an outbox: the database has no outbox table", str(self.path))
            if not readonly:
                self._conn.executescript(f"BEGIN IMMEDIATE;\n{_DDL}\nCOMMIT;")
            self._has_tables = readonly is False or {"event_detail", "verdict"} <= tables
        except sqlite3.Error as exc:
            raise OutboxError(errno.EIO, f"cannot open the event store ({exc})", str(self.path)) from exc

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise OutboxError(errno.EIO, f"event store: {exc}", str(self.path)) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------------------------
    def save_detail(self, event_id: str, camera_id: str, detail: dict[str, Any]) -> None:
        """Store (replace) what the console shows of an event beside its messages: timeline, heat-map."""
        text = json.dumps(detail, separators=(",", ":"), allow_nan=False)
        with self._locked() as conn:
            conn.execute(
                "INSERT INTO event_detail (event_id, camera_id, detail, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO UPDATE SET detail = excluded.detail,"
                " updated_at = excluded.updated_at",
                (event_id, camera_id, text, self._wall()),
            )

    def set_verdict(
        self, event_id: str, verdict: Verdict, note: str | None = None, *, source: str = "console"
    ) -> VerdictRecord:
        """Store the operator's verdict on an event (replacing an earlier one). ``EventNotFoundError`` when the
        store has no such event; ``ValueError`` for a verdict other than normal / real, or a note too long."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        if note is not None and (len(note) > MAX_NOTE or not note.isprintable()):
            raise ValueError(f"a note is printable text of at most {MAX_NOTE} characters")
        record = VerdictRecord(verdict, note or None, self._wall(), source)
        with self._locked() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                f"SELECT camera_id FROM outbox WHERE event_id = ? AND type IN {_EVENT_TYPES} LIMIT 1", (event_id,)
            ).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                raise EventNotFoundError(event_id)
            conn.execute(
                "INSERT INTO verdict (event_id, camera_id, verdict, note, decided_at, source)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET verdict = excluded.verdict,"
                " note = excluded.note, decided_at = excluded.decided_at, source = excluded.source",
                (event_id, row[0], verdict, record.note, record.decided_at, source),
            )
            conn.execute("COMMIT")
        return record

    # -- reading ------------------------------------------------------------------------------------------------
    def events(self, query: EventQuery | None = None) -> list[StoredEvent]:
        """Anomaly events, newest first (by when they opened), with their latest message and verdict."""
        q = query or EventQuery()
        where: list[str] = []
        args: list[Any] = []
        if q.camera_id is not None:
            where.append("o.camera_id = ?")
            args.append(q.camera_id)
        if q.since is not None:
            where.append("julianday(json_extract(o.payload, '$.start_time')) >= julianday(?)")
            args.append(q.since.isoformat())
        if q.until is not None:
            where.append("julianday(json_extract(o.payload, '$.start_time')) <= julianday(?)")
            args.append(q.until.isoformat())
        if q.modality is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(o.payload, '$.modalities') WHERE key = ?)")
            args.append(q.modality)
        if q.state is not None:
            where.append("o.type = 'end'" if q.state == "ended" else "o.type != 'end'")
        if q.verdict is not None and self._has_tables:
            where.append("v.verdict IS NULL" if q.verdict == "none" else "v.verdict = ?")
            args += [] if q.verdict == "none" else [q.verdict]
        elif q.verdict not in (None, "none"):
            return []  # a store no one wrote a verdict to
        sql = _LATEST.format(types=_EVENT_TYPES) if self._has_tables else _LATEST_NO_VERDICTS.format(types=_EVENT_TYPES)
        sql += "".join(f" AND {w}" for w in where)
        if q.before is not None:
            sql = f"SELECT * FROM ({sql}) WHERE first < (SELECT MIN(id) FROM outbox WHERE event_id = ?)"
            args.append(q.before)
        sql += " ORDER BY first DESC LIMIT ?"
        args.append(max(1, min(q.limit, 1000)))
        with self._locked() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_stored(r) for r in rows]

    def event(self, event_id: str) -> tuple[StoredEvent, list[EventMessage]] | None:
        """An event's latest message and verdict, and all its messages kept (oldest first); None if unknown."""
        with self._locked() as conn:
            rows = conn.execute(
                f"SELECT payload FROM outbox WHERE event_id = ? AND type IN {_EVENT_TYPES} ORDER BY seq", (event_id,)
            ).fetchall()
            verdict = self._verdict(conn, event_id)
        if not rows:
            return None
        messages = [EventMessage.from_json(r[0]) for r in rows]
        return StoredEvent(messages[-1], verdict), messages

    def _verdict(self, conn: sqlite3.Connection, event_id: str) -> VerdictRecord | None:
        if not self._has_tables:
            return None
        row = conn.execute(
            "SELECT verdict, note, decided_at, source FROM verdict WHERE event_id = ?", (event_id,)
        ).fetchone()
        return VerdictRecord(row[0], row[1], float(row[2]), row[3]) if row is not None else None

    def detail(self, event_id: str) -> dict[str, Any] | None:
        """The stored timeline and heat-map of an event (None: none stored)."""
        if not self._has_tables:
            return None
        with self._locked() as conn:
            row = conn.execute("SELECT detail FROM event_detail WHERE event_id = ?", (event_id,)).fetchone()
        return json.loads(row[0]) if row is not None else None

    def verdicts(self, camera_id: str, verdict: Verdict) -> list[StoredEvent]:
        """The events of a camera with this verdict, oldest first (what ``edge recalibrate`` folds in)."""
        found = [e for e in self.events(EventQuery(camera_id=camera_id, verdict=verdict, limit=1000))]
        return found[::-1]

    def open_outages(self) -> list[EventMessage]:
        """Camera offline alerts without their online one (a previous run stopped during the outage)."""
        with self._locked() as conn:
            rows = conn.execute(
                _LATEST_NO_VERDICTS.format(types=_STATUS_TYPES) + " AND o.type = 'offline' ORDER BY o.id"
            ).fetchall()
        return [EventMessage.from_json(r[0]) for r in rows]

    def cameras(self) -> list[CameraRecord]:
        """Every camera with an event or a status alert kept, by id."""
        with self._locked() as conn:
            counts = dict(
                conn.execute(
                    f"SELECT camera_id, COUNT(DISTINCT event_id) FROM outbox WHERE type IN"
                    f" {_EVENT_TYPES} GROUP BY camera_id"
                ).fetchall()
            )
            ids = [r[0] for r in conn.execute("SELECT DISTINCT camera_id FROM outbox ORDER BY camera_id")]
            last: dict[str, dict[str, EventMessage]] = {}
            for kind, types in (("event", _EVENT_TYPES), ("status", _STATUS_TYPES)):
                for cam, payload in conn.execute(
                    f"SELECT camera_id, payload FROM outbox WHERE id IN (SELECT MAX(id) FROM outbox WHERE type"
                    f" IN {types} GROUP BY camera_id)"
                ):
                    last.setdefault(cam, {})[kind] = EventMessage.from_json(payload)
        return [
            CameraRecord(cam, int(counts.get(cam, 0)), last.get(cam, {}).get("event"), last.get(cam, {}).get("status"))
            for cam in ids
        ]


_LATEST_NO_VERDICTS = """
SELECT o.payload, (SELECT MIN(f.id) FROM outbox AS f WHERE f.event_id = o.event_id) AS first,
       NULL, NULL, NULL, NULL
FROM outbox AS o
WHERE o.type IN {types} AND o.seq = (SELECT MAX(m.seq) FROM outbox AS m WHERE m.event_id = o.event_id)
"""


def _stored(row: tuple[Any, ...]) -> StoredEvent:
    payload, _first, verdict, note, decided_at, source = row
    record = VerdictRecord(verdict, note, float(decided_at), source) if verdict is not None else None
    return StoredEvent(EventMessage.from_json(payload), record)
