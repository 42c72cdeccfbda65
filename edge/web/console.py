"""The console's state shared by its pages and API: the event store, the media directory, caches.

Media are found through the event, never through a path in the URL: ``/media/<event_id>/snapshot.jpg`` reads
the event's latest message, whose ``snapshot`` reference the schema limits to ``camera/event.jpg``, and the file
must resolve inside the media directory. Heat-maps are drawn on request and kept (the last 64); clips are remuxed
to MP4 once into a private cache folder, removed when the console stops.
"""

from __future__ import annotations

import collections
import logging
import shutil
import tempfile
import threading
from pathlib import Path

from alerts.store import EventStore
from edge.web.context import ConsoleContext

log = logging.getLogger(__name__)

_HEAT_CACHE = 64


class Console:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx
        self.store = EventStore(ctx.store_path)
        self.media_dir = ctx.media_dir.resolve()
        self._cache_dir: Path | None = None
        self._lock = threading.Lock()
        self._heat: collections.OrderedDict[tuple[str, float, str], bytes] = collections.OrderedDict()

    @property
    def live(self) -> bool:
        """Inside a running daemon (live tiles), rather than over a finished run's store."""
        return self.ctx.live is not None

    def media_file(self, reference: str | None) -> Path | None:
        """The file an event's media reference names, if it is inside the media directory and exists."""
        if not reference:
            return None
        path = (self.media_dir / reference).resolve()
        if not path.is_relative_to(self.media_dir) or not path.is_file():
            return None
        return path

    def cache_dir(self) -> Path:
        with self._lock:
            if self._cache_dir is None:
                self._cache_dir = Path(tempfile.mkdtemp(prefix="lepton-console-"))  # 0700
            return self._cache_dir

    def cached_heat(self, key: tuple[str, float, str]) -> bytes | None:
        with self._lock:
            data = self._heat.get(key)
            if data is not None:
                self._heat.move_to_end(key)
            return data

    def keep_heat(self, key: tuple[str, float, str], data: bytes) -> None:
        with self._lock:
            self._heat[key] = data
            while len(self._heat) > _HEAT_CACHE:
                self._heat.popitem(last=False)

    def close(self) -> None:
        self.store.close()
        if self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
