"""The durable outbox: every event message is committed here before anything tries to send it.

One SQLite file in WAL mode with ``synchronous=FULL``: ``put`` returns only after the row is on disk, so a
daemon killed at any point loses no event it reported as decided. The Kafka publisher reads unacknowledged
rows in id order and marks them acknowledged only after Kafka confirmed them; until then they stay (broker
down for hours, daemon restarted: the next publisher sends them). Without Kafka configured the outbox *is* the
bus: the daemon opens it with ``local_only=True`` so that rows are stored as delivered, and ``alerts tail``
reads them.

Retention (what keeps the file bounded):
  * pending rows (not yet acknowledged by Kafka) are never deleted;
  * delivered rows are kept ``retention_s`` (default 7 days) and at most ``max_delivered_rows`` (default
    100 000, ~100 MB) of them, newest kept; they are pruned at most once a minute, on ``put``/``mark_acked``;
  * the whole file is capped at ``max_bytes`` (default 1 GiB): a ``put`` that would pass it first prunes every
    delivered row and then fails with ``OutboxError`` (errno ENOSPC), as a full disk does. The caller (daemon)
    logs and counts that; the outbox never drops a pending event to make room.

Row ids come from ``AUTOINCREMENT``: never reused, even after pruning, so ``read(after_id=...)`` cursors of
``alerts tail --follow`` stay valid. ``(event_id, seq)`` is unique: putting the same message twice returns the
first row's id.

Thread safety: one connection guarded by a lock; other processes (``alerts tail``) open their own read-only
connection, which WAL lets run beside the writer. The event store (``alerts.store``: what the console shows and the
operator's verdicts) keeps its tables in the same file; a corrupt file is salvaged by ``alerts.salvage``.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from alerts.errors import OutboxCorruptError, OutboxError, OutboxNotFoundError
from alerts.schema import EventMessage

log = logging.getLogger(__name__)

DEFAULT_OUTBOX_PATH = Path(".lepton/outbox.db")
"""Relative to the working directory; the daemon and ``alerts tail`` share this default."""

DEFAULT_RETENTION_S = 7 * 24 * 3600.0
DEFAULT_MAX_DELIVERED_ROWS = 100_000
DEFAULT_MAX_BYTES = 1 << 30
_PRUNE_INTERVAL_S = 60.0
_SCHEMA_USER_VERSION = 1
_SCHEMA_WAIT_S = 2.0
"""How long a reader waits for an empty outbox file, just created by a writer, to receive its schema."""

_DDL = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema_version TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    acked_at REAL,
    writer TEXT NOT NULL,
    capture_monotonic_ns INTEGER,
    UNIQUE (event_id, seq)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE acked_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_acked ON outbox (acked_at) WHERE acked_at IS NOT NULL;
"""

COLUMNS = (
    "id, event_id, seq, type, schema_version, camera_id, payload, created_at, acked_at, writer, capture_monotonic_ns"
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_id: str
    seq: int
    type: str  # new | update | end (Kafka header)
    schema_version: str  # of the payload (Kafka header); rows outlive upgrades
    camera_id: str  # Kafka key
    payload: bytes  # the wire JSON, sent as is
    created_at: float  # wall time (Unix s) of the put; a label, not an interval
    acked_at: float | None  # wall time Kafka acknowledged it (or the put, when local_only); None = pending
    # Monotonic capture time given to ``put``; only set on rows written by this Outbox object, since another
    # process's (or boot's) monotonic clock means nothing here.
    capture_monotonic_ns: int | None

    @property
    def pending(self) -> bool:
        return self.acked_at is None

    def message(self) -> EventMessage:
        return EventMessage.from_json(self.payload)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    delivered: int
    last_id: int  # highest row id ever assigned (0 when empty)
    oldest_pending_created_at: float | None  # wall time (Unix s) of the oldest pending row
    size_bytes: int  # database + WAL
    pruned: int  # delivered rows deleted by retention since this object was opened


class Outbox:
    """Durable SQLite outbox; see the module docstring for the delivery and retention policy."""

    def __init__(
        self,
        path: Path | str = DEFAULT_OUTBOX_PATH,
        *,
        local_only: bool = False,
        retention_s: float = DEFAULT_RETENTION_S,
        max_delivered_rows: int = DEFAULT_MAX_DELIVERED_ROWS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        readonly: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Open (creating it and its folder unless ``readonly``) the outbox at ``path``.

        ``readonly`` is for readers in another process (``alerts tail``): the file must exist
        (``OutboxNotFoundError`` otherwise) and nothing is written. ``local_only`` stores rows as delivered:
        the daemon uses it when no Kafka is configured.
        """
        self.path = Path(path)
        self.local_only = local_only
        self.readonly = readonly
        self._retention_s = retention_s
        self._max_delivered_rows = max_delivered_rows
        self._max_bytes = max_bytes
        self._clock = clock
        self._wall = wall_clock
        self._writer = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._new_row = threading.Condition(self._lock)
        self._last_put_id = 0
        self._next_prune = clock()
        self._pruned = 0
        self._closed = False
        self._conn = self._connect()

    # -- opening --------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            if not self.path.is_file():
                raise OutboxNotFoundError(errno.ENOENT, "no outbox", str(self.path))
            uri = f"file:{quote(self.path.resolve().as_posix())}?mode=ro"
        else:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except FileExistsError as exc:
                raise OutboxError(errno.ENOTDIR, "the outbox folder is not a folder", str(self.path)) from exc
            except OSError as exc:
                raise OutboxError(
                    exc.errno, f"cannot create the outbox folder ({exc.strerror})", str(self.path)
                ) from exc
            try:
                _create_private(self.path)
            except OSError as exc:
                raise OutboxError(exc.errno, f"cannot create the outbox ({exc.strerror})", str(self.path)) from exc
            uri = f"file:{quote(self.path.resolve().as_posix())}?mode=rwc"
        conn: sqlite3.Connection | None = None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every put is exactly one transaction.
            conn = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            if not self.readonly:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise OutboxError(errno.EIO, f"cannot switch the outbox to WAL (got {mode!r})", str(self.path))
                # FULL: the WAL is fsynced at every commit, so a put that returned survives power loss.
                conn.execute("PRAGMA synchronous = FULL")
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {max(16, self._max_bytes // page_size)}")
                # One transaction: a reader opening the file meanwhile sees no schema or all of it.
                conn.executescript(f"BEGIN IMMEDIATE;\n{_DDL}\nPRAGMA user_version = {_SCHEMA_USER_VERSION};\nCOMMIT;")
            else:
                self._wait_for_schema(conn)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise _outbox_error(exc, "cannot open the outbox", self.path) from exc
        except OutboxError:
            if conn is not None:
                conn.close()
            raise
        return conn

    def _wait_for_schema(self, conn: sqlite3.Connection) -> None:
        """A reader may open the file in the instant between a daemon creating it and committing its schema.

        An empty database is given ``_SCHEMA_WAIT_S`` to become an outbox; then, or at once for a database
        holding other tables, the reader fails with a clear error instead of "no such table".
        """
        deadline = time.monotonic() + _SCHEMA_WAIT_S
        while True:
            # one query, one snapshot: two could straddle the daemon's commit and see its tables but no outbox
            entries = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
            if ("table", "outbox") in entries:
                return
            if entries:
                raise OutboxError(errno.EINVAL, "not an outbox: the database has no outbox table", str(self.path))
            if time.monotonic() >= deadline:
                raise OutboxNotFoundError(
                    errno.ENOENT, "no outbox yet: the file is empty (is a daemon still creating it?)", str(self.path)
                )
            time.sleep(0.05)

    def quick_check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check``: [] when the file is sound, else what is wrong (at most 10 lines).
        Reads every page once, so it costs about a read of the file (milliseconds per MB)."""
        with self.locked("cannot check the outbox") as conn:
            found = [str(r[0]) for r in conn.execute("PRAGMA quick_check(10)")]
        return [] if found == ["ok"] else found

    @contextmanager
    def locked(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise OutboxError(errno.EBADF, "outbox is closed", str(self.path))
            try:
                yield self._conn
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        log.warning("outbox %s: rollback failed after %s", self.path, exc)
                raise _outbox_error(exc, what, self.path) from exc

    # -- writing --------------------------------------------------------------------------------------------

    def put(self, msg: EventMessage, *, capture_monotonic_ns: int | None = None) -> int:
        """Commit ``msg`` durably and return its row id (an existing row's id if its event_id + seq is in).

        Raises ``OutboxError`` (an ``OSError``) when it cannot be written: disk full (ENOSPC), read-only
        (EROFS), I/O error. The event is then not stored; the caller decides what to do (log, count, retry).
        """
        payload = msg.to_json()
        try:
            row_id = self._insert(msg, payload, capture_monotonic_ns)
        except OutboxError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            # Full: make room from delivered rows only, then try once more.
            log.warning("outbox %s is full; pruning every delivered row and retrying", self.path)
            self.prune(everything_delivered=True)
            row_id = self._insert(msg, payload, capture_monotonic_ns)
        self._maybe_prune()
        return row_id

    def _insert(self, msg: EventMessage, payload: bytes, capture_monotonic_ns: int | None) -> int:
        now = self._wall()
        with self.locked("cannot write to the outbox") as conn:
            conn.execute("BEGIN IMMEDIATE")
            found = conn.execute(
                "SELECT id FROM outbox WHERE event_id = ? AND seq = ?", (msg.event_id, msg.seq)
            ).fetchone()
            if found is not None:
                row_id = int(found[0])
            else:
                cur = conn.execute(
                    "INSERT INTO outbox (event_id, seq, type, schema_version, camera_id, payload, created_at,"
                    " acked_at, writer, capture_monotonic_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        msg.event_id,
                        msg.seq,
                        msg.type,
                        msg.schema_version,
                        msg.camera_id,
                        payload,
                        now,
                        now if self.local_only else None,
                        self._writer,
                        capture_monotonic_ns,
                    ),
                )
                row_id = int(cur.lastrowid or 0)
            conn.execute("COMMIT")
            self._last_put_id = max(self._last_put_id, row_id)
            self._new_row.notify_all()
        return row_id

    def mark_acked(self, ids: Iterable[int]) -> int:
        """Mark rows as delivered (Kafka acknowledged them); returns how many changed state."""
        id_list = sorted(set(ids))
        if not id_list:
            return 0
        now = self._wall()
        changed = 0
        with self.locked("cannot mark outbox rows acknowledged") as conn:
            conn.execute("BEGIN IMMEDIATE")
            for chunk in _chunks(id_list, 500):
                marks = ",".join("?" * len(chunk))
                cur = conn.execute(
                    f"UPDATE outbox SET acked_at = ? WHERE acked_at IS NULL AND id IN ({marks})",
                    (now, *chunk),
                )
                changed += cur.rowcount
            conn.execute("COMMIT")
        self._maybe_prune()
        return changed

    def prune(self, *, everything_delivered: bool = False) -> int:
        """Apply retention to delivered rows now (``everything_delivered``: all of them); return the count."""
        if self.readonly:
            return 0
        cutoff = self._wall() - self._retention_s
        with self.locked("cannot prune the outbox") as conn:
            conn.execute("BEGIN IMMEDIATE")
            if everything_delivered:
                cur = conn.execute("DELETE FROM outbox WHERE acked_at IS NOT NULL")
                deleted = cur.rowcount
            else:
                cur = conn.execute("DELETE FROM outbox WHERE acked_at IS NOT NULL AND acked_at < ?", (cutoff,))
                deleted = cur.rowcount
                keep_from = conn.execute(
                    "SELECT id FROM outbox WHERE acked_at IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (self._max_delivered_rows,),
                ).fetchone()
                if keep_from is not None:
                    cur = conn.execute(
                        "DELETE FROM outbox WHERE acked_at IS NOT NULL AND id <= ?", (int(keep_from[0]),)
                    )
                    deleted += cur.rowcount
            conn.execute("COMMIT")
            self._pruned += deleted
        if deleted:
            log.info("outbox %s: pruned %d delivered rows", self.path, deleted)
        return deleted

    def _maybe_prune(self) -> None:
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_INTERVAL_S
        self.prune()

    # -- reading --------------------------------------------------------------------------------------------

    def pending(self, limit: int = 500) -> list[OutboxRow]:
        """Unacknowledged rows, oldest first (id order), at most ``limit``."""
        with self.locked("cannot read the outbox") as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM outbox WHERE acked_at IS NULL ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [self._row(r) for r in rows]

    def read(self, after_id: int = 0, limit: int = 1000) -> list[OutboxRow]:
        """Every row (pending or delivered) with id > ``after_id``, in id order (``alerts tail``'s bus)."""
        with self.locked("cannot read the outbox") as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        return [self._row(r) for r in rows]

    def id_before(self, created_since: float) -> int:
        """The id to read after (``read(after_id=...)``) for the rows put at or after ``created_since`` (wall time,
        Unix s): the last id before the first of them, or the last id of all when none is that recent."""
        with self.locked("cannot read the outbox") as conn:
            first = conn.execute("SELECT MIN(id) FROM outbox WHERE created_at >= ?", (created_since,)).fetchone()[0]
            if first is not None:
                return int(first) - 1
            last = conn.execute("SELECT MAX(id) FROM outbox").fetchone()[0]
        return int(last or 0)

    def unfinished(self, *, site: str | None = None, camera_ids: Iterable[str] | None = None) -> list[OutboxRow]:
        """The latest row of each event that has a ``new`` (or ``update``) here but no ``end``, oldest first (camera
        status alerts, ``offline`` without its ``online``, are not events and are not returned).

        After a crash these are the events the daemon left open: ``alerts.recovery`` ends them. ``site`` and
        ``camera_ids`` keep only those events (the site is read from the payload). Rows whose payload does not
        parse are skipped with a warning. An event whose every row was pruned (delivered and older than the
        retention) is not found: interval updates keep a long event's latest row recent.
        """
        cameras = set(camera_ids) if camera_ids is not None else None
        with self.locked("cannot read the outbox") as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM outbox AS o WHERE o.type IN ('new', 'update')"
                " AND o.seq = (SELECT MAX(m.seq) FROM outbox AS m WHERE m.event_id = o.event_id)"
                " ORDER BY o.id"
            ).fetchall()
        found = []
        for r in rows:
            row = self._row(r)
            if cameras is not None and row.camera_id not in cameras:
                continue
            if site is not None:
                try:
                    if row.message().site != site:
                        continue
                except ValueError as exc:  # MessageFormatError: a row this version cannot read
                    log.warning("outbox %s: row %d of event %s is unreadable: %s", self.path, row.id, row.event_id, exc)
                    continue
            found.append(row)
        return found

    @property
    def last_put_id(self) -> int:
        """Highest row id put through this object (0 before the first put)."""
        return self._last_put_id

    def wait_for_put(self, after_id: int, timeout_s: float) -> bool:
        """Block until this object put a row with id > ``after_id`` (True) or ``timeout_s`` passed (False).

        Only sees puts made through this object (the daemon's publisher shares the daemon's outbox); a reader
        in another process polls ``read`` instead.
        """
        with self._new_row:
            return self._new_row.wait_for(lambda: self._last_put_id > after_id or self._closed, timeout_s) and (
                not self._closed
            )

    def stats(self) -> OutboxStats:
        with self.locked("cannot read the outbox") as conn:
            pending, oldest = conn.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE acked_at IS NULL"
            ).fetchone()
            delivered = conn.execute("SELECT COUNT(*) FROM outbox WHERE acked_at IS NOT NULL").fetchone()[0]
            seqrow = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += Path(str(self.path) + suffix).stat().st_size
            except OSError:
                pass
        return OutboxStats(
            pending=int(pending),
            delivered=int(delivered),
            last_id=int(seqrow[0]) if seqrow else 0,
            oldest_pending_created_at=float(oldest) if oldest is not None else None,
            size_bytes=size,
            pruned=self._pruned,
        )

    def close(self) -> None:
        with self._new_row:
            if self._closed:
                return
            self._closed = True
            self._new_row.notify_all()
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row(self, r: tuple[Any, ...]) -> OutboxRow:
        (
            row_id,
            event_id,
            seq,
            type_,
            version,
            camera_id,
            payload,
            created_at,
            acked_at,
            writer,
            capture_ns,
        ) = r
        mine = capture_ns is not None and writer == self._writer
        return OutboxRow(
            id=int(row_id),
            event_id=str(event_id),
            seq=int(seq),
            type=str(type_),
            schema_version=str(version),
            camera_id=str(camera_id),
            payload=bytes(payload),
            created_at=float(created_at),
            acked_at=float(acked_at) if acked_at is not None else None,
            capture_monotonic_ns=int(capture_ns) if mine else None,
        )


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_ERRNO_BY_SQLITE = {
    "SQLITE_FULL": errno.ENOSPC,
    "SQLITE_READONLY": errno.EROFS,
    "SQLITE_READONLY_DBMOVED": errno.EROFS,
    "SQLITE_READONLY_DIRECTORY": errno.EROFS,
    "SQLITE_READONLY_RECOVERY": errno.EROFS,
    "SQLITE_READONLY_CANTINIT": errno.EROFS,
    "SQLITE_CANTOPEN": errno.EACCES,
    "SQLITE_PERM": errno.EACCES,
    "SQLITE_AUTH": errno.EACCES,
    "SQLITE_NOTADB": errno.EINVAL,
    "SQLITE_CORRUPT": errno.EINVAL,
    "SQLITE_BUSY": errno.EBUSY,
    "SQLITE_LOCKED": errno.EBUSY,
}


def _create_private(path: Path) -> None:
    """Create the database file 0600 (whatever the umask) before SQLite opens it: SQLite gives its WAL and
    shared-memory files the database file's mode, so events stay readable by their owner only. An existing file
    keeps its mode (another reader, such as ``alerts tail`` run by another user, may rely on it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _outbox_error(exc: sqlite3.Error, what: str, path: Path) -> OutboxError:
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return OutboxCorruptError(errno.EINVAL, f"{what}: corrupt ({exc})", str(path))
    code = _ERRNO_BY_SQLITE.get(name)
    if code is None:
        code = next((v for k, v in _ERRNO_BY_SQLITE.items() if name.startswith(k + "_")), errno.EIO)
    detail = {
        errno.ENOSPC: "disk or outbox size limit full",
        errno.EROFS: "read-only",
    }.get(code, str(exc))
    return OutboxError(code, f"{what}: {detail}", str(path))
