"""The media directory: atomic writes, retention, and what happens when the disk says no.

Layout: ``<root>/<camera_id>/<event_id>.jpg`` and ``.mkv``. Events refer to a file by that path relative to the
root (``cam1/3f2a….jpg``): stable when the directory moves, and never holding a URL, so never a credential.

* **Atomic**: a file is written under a temporary name in its final folder and renamed into place, so a reader
  (or a crash) sees the whole old file, the whole new one, or none.
* **Retention**: the store knows every file it holds (scanned once at start, then kept up to date), and after
  each write deletes the oldest files, by modification time, while the total exceeds ``max_total_bytes`` or a file
  is older than ``max_age_s`` (checked again every minute when idle). The file just written is never the victim.
* **Failures**: a write that fails (disk full, read-only, permissions) is logged once, counted, and marks the
  store unhealthy: while unhealthy, events carry null references (``healthy`` is what the recorder asks before
  promising a file) and nothing is written; a probe every ``recheck_s`` turns it healthy again. The start runs
  the same probe, so an unwritable directory means null references from the first event, never a failed start.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_TMP_PREFIX = ".tmp-"


class MediaStore:
    """One media directory. Not thread-safe: only the media writer thread writes; ``healthy`` may be read by any."""

    def __init__(
        self,
        root: str | Path,
        *,
        max_total_bytes: int,
        max_age_s: float | None,
        recheck_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.max_total_bytes = max_total_bytes
        self.max_age_s = max_age_s
        self.recheck_s = recheck_s
        self._clock = clock
        self._wall = wall
        self.healthy = False
        self.written = 0
        self.write_failures = 0
        self.deleted = 0
        self.total_bytes = 0
        self._files: dict[str, tuple[float, int]] = {}  # relative path -> (mtime, size)
        self._probed_at = -float("inf")
        self._logged_failure = False

    # -- health ----------------------------------------------------------------------------------------------
    def open(self) -> bool:
        """Probe the directory and index what it holds; False (logged once) when it cannot be written."""
        if self.probe():
            self._scan()
        return self.healthy

    def probe(self) -> bool:
        """Create the directory and a small file in it; sets ``healthy``."""
        self._probed_at = self._clock()
        probe = self.root / f"{_TMP_PREFIX}probe-{uuid.uuid4().hex[:8]}"
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"probe")
            probe.unlink()
        except OSError as exc:
            self._failed(f"media directory {self.root} is not writable", exc, write=False)
            return False
        if not self.healthy and self._logged_failure:
            log.warning("media directory %s is writable again: snapshots and clips resume", self.root)
            self._logged_failure = False
        self.healthy = True
        return True

    def maybe_recover(self) -> None:
        if not self.healthy and self._clock() - self._probed_at >= self.recheck_s:
            self.probe()

    def _failed(self, what: str, exc: OSError, *, write: bool = True) -> None:
        self.healthy = False
        if write:
            self.write_failures += 1
        if not self._logged_failure:
            self._logged_failure = True
            log.error(
                "%s (%s): events go out without snapshots and clips until it is; retried every %.0f s",
                what,
                exc.strerror or exc,
                self.recheck_s,
            )
        else:
            log.debug("%s: %s", what, exc)

    # -- writing ---------------------------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, produce: Callable[[Path], None]) -> bool:
        """Write ``rel`` atomically: ``produce(tmp)`` writes the temporary file, which then replaces ``rel``."""
        final = self.root / rel
        tmp = final.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}")
        try:
            final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            produce(tmp)
            os.chmod(tmp, 0o600)  # what an encoder created follows the umask: pictures of a site are private
            os.replace(tmp, final)
            st = final.stat()
        except OSError as exc:
            _unlink_quietly(tmp)
            self._failed(f"cannot write {final}", exc)
            return False
        except BaseException:
            _unlink_quietly(tmp)
            raise
        self.written += 1
        self._forget(rel)
        self._files[rel] = (st.st_mtime, st.st_size)
        self.total_bytes += st.st_size
        self.enforce_retention(keep=rel)
        return True

    def write_bytes(self, rel: str, data: bytes) -> bool:
        def produce(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                f.write(data)

        return self.write(rel, produce)

    # -- retention -------------------------------------------------------------------------------------------
    def enforce_retention(self, keep: str | None = None) -> None:
        """Delete the oldest files while over the size limit, and every file past the age limit."""
        if not self._files:
            return
        oldest_first = sorted(self._files.items(), key=lambda item: item[1][0])
        too_old = self._wall() - self.max_age_s if self.max_age_s is not None else -float("inf")
        for rel, (mtime, _size) in oldest_first:
            if self.total_bytes <= self.max_total_bytes and mtime >= too_old:
                break
            if rel == keep:
                continue
            try:
                (self.root / rel).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("retention: cannot delete %s: %s", self.root / rel, exc.strerror or exc)
                continue
            self.deleted += 1
            self._forget(rel)

    def _forget(self, rel: str) -> None:
        old = self._files.pop(rel, None)
        if old is not None:
            self.total_bytes -= old[1]

    def _scan(self) -> None:
        self._files.clear()
        self.total_bytes = 0
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                full = Path(dirpath) / name
                if name.startswith(_TMP_PREFIX):
                    _unlink_quietly(full)  # left by a crash mid-write
                    continue
                try:
                    st = full.stat()
                except OSError:
                    continue
                rel = full.relative_to(self.root).as_posix()
                self._files[rel] = (st.st_mtime, st.st_size)
                self.total_bytes += st.st_size
        self.enforce_retention()

    def files(self) -> list[str]:
        """Relative paths of the files kept, oldest first."""
        return [rel for rel, _ in sorted(self._files.items(), key=lambda item: item[1][0])]


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
