"""Files that hold events or pictures of a site are their owner's only: created 0600 in 0700 folders, whatever
the umask says (outbox with its WAL and shared memory, snapshots and clips, dead letters and JSON-lines sinks)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.alert_messages import message

from alerts.outbox import Outbox
from alerts.sinks import DeadLetterFile
from pipeline.media.store import MediaStore


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: files 0644, folders 0755
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_outbox_its_wal_and_its_folder_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db"
    with Outbox(path) as box:
        box.put(message("ev-1"))
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["outbox.db", "outbox.db-shm", "outbox.db-wal"]
        assert {p.name: mode(p) for p in path.parent.iterdir()} == {name: 0o600 for name in files}
    assert mode(path.parent) == 0o700


def test_an_existing_outbox_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    Outbox(path).close()
    path.chmod(0o640)  # shared with a reader's group on purpose
    Outbox(path).close()
    assert mode(path) == 0o640


def test_snapshots_clips_and_their_folders_are_private(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media", max_total_bytes=10**6, max_age_s=None)
    assert store.open()
    assert store.write_bytes("cam-1/ev-1.jpg", b"\xff\xd8jpeg")

    def encoder(tmp: Path) -> None:  # as PyAV's muxer does: an ordinary open(), under the umask
        tmp.write_bytes(b"matroska")

    assert store.write("cam-1/ev-1.mkv", encoder)
    media = tmp_path / "media"
    assert mode(media) == 0o700 and mode(media / "cam-1") == 0o700
    assert mode(media / "cam-1" / "ev-1.jpg") == 0o600 and mode(media / "cam-1" / "ev-1.mkv") == 0o600


def test_dead_letters_are_private(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "dl" / "dead.jsonl")
    dead.put(message("ev-1"), sink="webhook:https://h/***", error="HTTP 500", attempts=1)
    dead.close()
    assert mode(tmp_path / "dl") == 0o700 and mode(tmp_path / "dl" / "dead.jsonl") == 0o600
