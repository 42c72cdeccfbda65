"""A corrupt outbox: moved aside at start, every row SQLite can still read copied into a new one.

``open_checked`` is how the daemon opens its outbox: ``PRAGMA quick_check`` first; a damaged file is moved aside
(``<name>.corrupt-<UTC time>``, its WAL with it) and ``salvage`` copies its readable rows (ids, states and times
kept: pending rows are still sent) into a fresh outbox at the same path.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alerts.errors import MessageFormatError, OutboxCorruptError
from alerts.outbox import COLUMNS as _COLUMNS
from alerts.outbox import Outbox
from alerts.schema import EventMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SalvageReport:
    moved_to: Path  # where the corrupt file now is (its WAL beside it)
    recovered: int  # rows read back into the new outbox
    pending: int  # of those, not yet acknowledged by Kafka: they will be sent
    unreadable: int  # rows seen whose payload is no valid message (not copied)


def open_checked(path: Path | str, *, local_only: bool = False, **kwargs: Any) -> tuple[Outbox, SalvageReport | None]:
    """Open the daemon's outbox after ``PRAGMA quick_check``. A corrupt one is moved aside (``<name>.corrupt-<UTC
    time>``, its WAL with it), every row still readable is copied into a new outbox at ``path`` (ids, states and
    times kept: pending rows are still sent), and the report says how many. Other errors raise as ``Outbox`` does.
    """
    path = Path(path)
    try:
        box = Outbox(path, local_only=local_only, **kwargs)
        try:
            problems = box.quick_check()
        except OutboxCorruptError:
            box.close()
            raise
        if not problems:
            return box, None
        box.close()
        log.warning("outbox %s fails its integrity check: %s", path, "; ".join(problems[:3]))
    except OutboxCorruptError as exc:
        log.warning("outbox %s is corrupt: %s", path, exc.strerror)
    report = salvage(path)
    return Outbox(path, local_only=local_only, **kwargs), report


def salvage(path: Path | str) -> SalvageReport:
    """Move a corrupt outbox aside and copy what rows it can still read into a new one at ``path``."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):  # the WAL holds committed rows not yet in the file: it moves along
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, f"{aside}{suffix}")
    rows = _readable_rows(aside)
    good: list[tuple[Any, ...]] = []
    for row in rows:
        try:
            EventMessage.from_json(row[6])
        except (MessageFormatError, TypeError):
            continue
        good.append(row)
    with Outbox(path) as fresh, fresh.locked("cannot write the salvaged outbox") as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT OR IGNORE INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            [row[:10] for row in good],
        )
        conn.execute("COMMIT")
    pending = sum(1 for row in good if row[8] is None)
    return SalvageReport(aside, len(good), pending, len(rows) - len(good))


_SALVAGE_MAX_MISSES = 64


def _readable_rows(path: Path) -> list[tuple[Any, ...]]:
    """Every outbox row SQLite can still read from a damaged file, in id order. A read that hits a bad page
    fails: the scan resumes past it, skipping ever further (1, 2, 4 ... ids) until a read succeeds again."""
    try:
        conn = sqlite3.connect(f"file:{quote(path.resolve().as_posix())}?mode=rw", uri=True, isolation_level=None)
    except sqlite3.Error:
        return []
    rows: list[tuple[Any, ...]] = []
    after, skip, misses = 0, 1, 0
    try:
        while misses < _SALVAGE_MAX_MISSES:
            try:
                cur = conn.execute(
                    "SELECT id, event_id, seq, type, schema_version, camera_id, payload, created_at, acked_at, writer"
                    " FROM outbox WHERE id > ? ORDER BY id",
                    (after,),
                )
                for row in cur:  # _COLUMNS' order, without the capture time (another process's clock)
                    rows.append((*row[:6], bytes(row[6]), *row[7:]))
                    after, skip = row[0], 1
                return rows
            except sqlite3.Error:
                misses += 1
                after += skip
                skip *= 2
        return rows
    finally:
        conn.close()
