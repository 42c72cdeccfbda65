"""A corrupt outbox: ``edge doctor`` says so, and the daemon moves it aside, recovers what rows it can read into a
new one, says how many, and starts (pending rows recovered are still sent)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEFAULT_MODEL, ROOT, SAMPLES
from support.alert_messages import lifecycle

from alerts.outbox import Outbox
from alerts.salvage import open_checked, salvage

PAGE = 4096


def filled_outbox(path: Path, events: int = 80) -> list[int]:
    """An outbox of ``events`` x 3 rows (new, update, end); the first half delivered. Returns the row ids."""
    ids = []
    with Outbox(path) as box:
        for n in range(events):
            ids += [box.put(m) for m in lifecycle(f"ev-{n}", f"cam-{n % 3}", updates=1)]
        box.mark_acked(ids[: len(ids) // 2])
    return ids


def damage_pages(path: Path, pages: list[int]) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(7)
    for p in pages:
        data[p * PAGE : (p + 1) * PAGE] = rng.randbytes(PAGE)
    path.write_bytes(bytes(data))


def test_a_sound_outbox_opens_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    ids = filled_outbox(path, events=5)
    box, report = open_checked(path)
    with box:
        assert report is None and box.stats().last_id == ids[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]


def test_a_damaged_outbox_is_moved_aside_and_its_readable_rows_recovered(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    ids = filled_outbox(path)
    pages = path.stat().st_size // PAGE
    damage_pages(path, [pages // 3, pages // 2])
    box, report = open_checked(path)
    assert report is not None
    with box:
        stats = box.stats()
        rows = box.read(after_id=0, limit=10_000)
        assert box.quick_check() == []
    assert report.moved_to.name.startswith("outbox.db.corrupt-") and report.moved_to.exists()
    # most rows survive two bad pages; none is invented; every one recovered is a valid message in its old place
    assert len(ids) * 0.6 < report.recovered < len(ids)
    assert stats.pending + stats.delivered == report.recovered == len(rows)
    assert {r.id for r in rows} < set(ids) and all(r.message().event_id.startswith("ev-") for r in rows)
    assert 0 < report.pending == stats.pending and all(r.pending == (r.id > ids[len(ids) // 2 - 1]) for r in rows)


def test_a_file_that_is_no_database_at_all_starts_an_empty_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    filled_outbox(path, events=3)
    damage_pages(path, [0])  # the header: "file is not a database"
    box, report = open_checked(path)
    with box:
        assert report is not None and report.recovered == 0 and box.stats().last_id == 0
        box.put(lifecycle("ev-new", "cam-1")[0])
    assert report.moved_to.exists()


def test_salvage_keeps_rows_still_in_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    for m in lifecycle("ev-1", "cam-1"):
        box.put(m)
    # the daemon was killed -9: its rows are in the WAL, not yet in the file; salvage moves both and reads both
    report = salvage(path)
    box.close()
    assert report.recovered == 3


def edge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def corrupt_site(tmp_path: Path) -> tuple[Path, Path, int]:
    outbox = tmp_path / "state" / "outbox.db"
    outbox.parent.mkdir()
    ids = filled_outbox(outbox)
    damage_pages(outbox, [outbox.stat().st_size // PAGE // 2])
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        json.dumps(
            {
                "model": str(DEFAULT_MODEL),
                "outbox": {"path": str(outbox)},
                "cameras": [{"id": "m", "url": str(SAMPLES / "tamper_moved.mkv"), "replay": "fast"}],
            }
        )
    )
    return cfg, outbox, len(ids)


def test_doctor_fails_on_a_corrupt_outbox_instead_of_saying_ready(corrupt_site: tuple[Path, Path, int]) -> None:
    cfg, outbox, _ = corrupt_site
    proc = edge("doctor", "-c", str(cfg), cwd=cfg.parent)
    assert proc.returncode == 1 and "-- ready" not in proc.stdout
    [line] = [ln for ln in proc.stdout.splitlines() if " outbox " in ln]
    assert line.startswith("[FAIL]") and "is corrupt" in line and "move it aside" in line


def test_the_daemon_salvages_a_corrupt_outbox_and_starts(corrupt_site: tuple[Path, Path, int]) -> None:
    cfg, outbox, rows = corrupt_site
    proc = edge("run", "-c", str(cfg), "-q", "--json", cwd=cfg.parent)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if "was corrupt" in ln]
    assert "moved aside to" in line and "row(s) recovered into a new outbox" in line
    recovered = int(line.split("; ")[1].split()[0])
    assert 0 < recovered < rows
    [aside] = [p for p in outbox.parent.iterdir() if p.name.startswith("outbox.db.corrupt-")]
    with Outbox(outbox, readonly=True) as box:
        assert box.quick_check() == []
        assert box.stats().pending + box.stats().delivered >= recovered  # and the new run's events
    proc = edge("doctor", "-c", str(cfg), cwd=cfg.parent)
    assert proc.returncode == 0 and "-- ready" in proc.stdout and "sound" in proc.stdout, proc.stdout
    assert aside.exists()
