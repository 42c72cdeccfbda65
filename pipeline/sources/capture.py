"""A capture worker: one source on its own thread, reconnecting, feeding a bounded buffer.

States (visible to health and metrics)::

    connecting ──► streaming ──► (end / error) ──► backoff ──► connecting ...
         │                                            │
         └──────────── (file ended) ───────────► stopped     failed: a file that cannot be read

A live camera that ends its stream (PyAV simply ends the demux when the server dies) or errors is reconnected
with exponential back-off and jitter, forever, and a ``StreamEnd(lost=True)`` goes downstream so an open event
ends with ``stream_lost``. A file is read once. Buffers are bounded: replays ``WAIT`` (lose nothing), live cameras
``DROP_OLDEST`` (stay current), and every drop is counted.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from enum import Enum

from pipeline.errors import SourceError
from pipeline.frames import AudioWindow, StreamEnd, VideoFrame, utc_now
from pipeline.sources.reader import MediaReader
from pipeline.sources.spec import SourceSpec

log = logging.getLogger(__name__)

Item = VideoFrame | AudioWindow | StreamEnd


class SourceState(str, Enum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPED = "stopped"


class BufferPolicy(str, Enum):
    WAIT = "wait"  # producer blocks until there is room: files and replays lose nothing
    DROP_OLDEST = "drop_oldest"  # live: the oldest item goes, the newest is kept


class BoundedBuffer:
    """A bounded FIFO with a named policy for when it is full. ``StreamEnd`` items are never dropped."""

    def __init__(self, maxsize: int, policy: BufferPolicy, ready: threading.Event) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0
        self._items: collections.deque[Item] = collections.deque()
        self._cond = threading.Condition()
        self._ready = ready

    def put(self, item: Item, stop: threading.Event) -> bool:
        """Add ``item``; False if ``stop`` was set while waiting for room."""
        with self._cond:
            while len(self._items) >= self.maxsize:
                if self.policy is BufferPolicy.DROP_OLDEST:
                    for i, old in enumerate(self._items):
                        if not isinstance(old, StreamEnd):
                            del self._items[i]
                            self.dropped += 1
                            break
                    else:
                        break
                else:
                    if stop.is_set():
                        return False
                    self._cond.wait(0.1)
            self._items.append(item)
        self._ready.set()
        return True

    def get_nowait(self) -> Item | None:
        with self._cond:
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify()
            return item

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class CaptureWorker:
    """Runs one :class:`MediaReader` on a thread. ``open_first()`` may be called before ``start()``."""

    def __init__(
        self,
        spec: SourceSpec,
        reader_factory: Callable[[SourceSpec], MediaReader],
        buffer: BoundedBuffer,
        stop: threading.Event,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self._factory = reader_factory
        self.buffer = buffer
        self._stop = stop
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._rng = rng or random.Random()
        self._reader: MediaReader | None = None
        self._thread = threading.Thread(target=self._run, name=f"capture-{spec.camera_id}", daemon=True)
        self.state = SourceState.CONNECTING
        self.last_error: str | None = None
        self.frames = 0
        self.audio_windows = 0
        self.reconnects = 0

    def open_first(self) -> SourceError | None:
        """Try the first connection now (bounded by the source's timeouts); return the error, if any."""
        reader = self._factory(self.spec)
        try:
            reader.open()
        except SourceError as exc:
            self.last_error = str(exc)
            return exc
        self._reader = reader
        return None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _set_state(self, state: SourceState) -> None:
        if state is not self.state:
            log.info("camera %s: %s -> %s", self.spec.camera_id, self.state.value, state.value)
            self.state = state

    def _run(self) -> None:
        delay = self._backoff_initial
        try:
            while not self._stop.is_set():
                self._set_state(SourceState.CONNECTING)
                reader, self._reader = self._reader, None
                if reader is None:
                    reader = self._factory(self.spec)
                last_pts = 0.0
                got_any = False
                try:
                    if reader.container is None:
                        reader.open()
                    self._set_state(SourceState.STREAMING)
                    for item in reader.items(self._stop):
                        got_any = True
                        last_pts = item.pts
                        if isinstance(item, VideoFrame):
                            self.frames += 1
                        else:
                            self.audio_windows += 1
                        if not self.buffer.put(item, self._stop):
                            return
                    if not self.spec.live:
                        self._end(last_pts, lost=False, reason="eof")
                        self._set_state(SourceState.STOPPED)
                        return
                    if self._stop.is_set():
                        return
                    self.last_error = "stream ended"
                    log.warning("camera %s: stream ended (%s)", self.spec.camera_id, self.spec.safe_url)
                except SourceError as exc:
                    self.last_error = str(exc)
                    if not self.spec.live:
                        log.error("camera %s: %s", self.spec.camera_id, exc)
                        self._end(last_pts, lost=True, reason="error")
                        self._set_state(SourceState.FAILED)
                        return
                    log.warning("camera %s: %s", self.spec.camera_id, exc)
                finally:
                    reader.close()
                self._end(last_pts, lost=True, reason="stream_lost")
                if got_any:
                    delay = self._backoff_initial
                self._set_state(SourceState.BACKOFF)
                wait = delay * (0.5 + self._rng.random())  # jitter: cameras behind one switch don't reconnect in step
                self.reconnects += 1
                if self._stop.wait(wait):
                    return
                delay = min(delay * 2, self._backoff_max)
        finally:
            if self.state not in (SourceState.FAILED,):
                self._set_state(SourceState.STOPPED)

    def _end(self, pts: float, *, lost: bool, reason: str) -> None:
        end = StreamEnd(self.spec.camera_id, pts, time.monotonic_ns(), utc_now(), lost=lost, reason=reason)
        # a stream end is never dropped and must not block a stopping daemon forever
        self.buffer.put(end, self._stop)
