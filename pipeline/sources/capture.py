"""A capture worker: one source on its own thread, reconnecting, watched, feeding a bounded buffer.

States (visible to health and metrics through ``CaptureWorker.state`` and ``stats()``)::

    connecting ──first item──► streaming ──no frame for stall_timeout_s──► stalled
       ▲   │                      │ ended / lost / garbage / crash             │
       │   │ no connection        ▼                                            │
       │   └────────────────► backoff ◄────────────────────────────────────────┘
       │                      (failed instead, after fail_after attempts in a row
       └──── after the wait ──  without a healthy stream; still retrying)

    files: connecting → streaming → stopped (end of file) | failed (unreadable; final)
    any state → stopped when the pipeline stops

The table ``TRANSITIONS`` is the law: any other change is a bug and raises :class:`IllegalTransition`. Each
change is logged once, with its reason.

Live cameras are reconnected forever, after a jittered exponential back-off (``CaptureWorker``); a session that
delivered items and then ended, errored or stalled sends ``StreamEnd(lost=True, reason="stream_lost")`` downstream,
so an open event ends with ``stream_lost``. The worker's ``StreamTimeline`` outlives sessions: pts keep increasing
across outages. Anything raised while one camera is opened or decoded, a bug included, is caught, logged, counted
and answered with a reconnection: it never reaches the other cameras or the scoring thread. A file is read once.
Buffers are bounded: replays ``WAIT``, live cameras ``DROP_OLDEST``, every drop counted. Threads by default;
``isolation: process`` runs the reader in a child (``pipeline.sources.isolated``; docs/decisions/0003).
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, Protocol

from typing_extensions import TypeVar

from pipeline.errors import SourceCrashedError, SourceError, SourceFormatError
from pipeline.frames import AudioWindow, StreamEnd, VideoFrame, utc_now
from pipeline.redact import redact_text
from pipeline.sources.reader import SourceStalledError
from pipeline.sources.spec import SourceSpec
from pipeline.sources.timeline import StreamTimeline

log = logging.getLogger(__name__)

Item = VideoFrame | AudioWindow | StreamEnd


class SourceState(str, Enum):
    CONNECTING = "connecting"  # opening, or connected and waiting for the first item
    STREAMING = "streaming"  # items are flowing
    STALLED = "stalled"  # connected, but no frame for stall_timeout_s: about to reconnect
    BACKOFF = "backoff"  # lost or unreachable, waiting before the next attempt
    FAILED = "failed"  # a file that cannot be read (final); a live camera failing again and again (retrying)
    STOPPED = "stopped"  # the end of a file, or the pipeline stopped


_S = SourceState
TRANSITIONS: Mapping[SourceState, frozenset[SourceState]] = {
    _S.CONNECTING: frozenset({_S.STREAMING, _S.BACKOFF, _S.FAILED, _S.STOPPED}),
    _S.STREAMING: frozenset({_S.STALLED, _S.BACKOFF, _S.FAILED, _S.STOPPED}),
    _S.STALLED: frozenset({_S.BACKOFF, _S.FAILED, _S.STOPPED}),
    _S.BACKOFF: frozenset({_S.CONNECTING, _S.STOPPED}),
    _S.FAILED: frozenset({_S.CONNECTING, _S.STOPPED}),
    _S.STOPPED: frozenset(),
}
_LOG_LEVEL = {
    _S.CONNECTING: logging.DEBUG,
    _S.STREAMING: logging.INFO,
    _S.STALLED: logging.WARNING,
    _S.BACKOFF: logging.WARNING,
    _S.FAILED: logging.ERROR,
    _S.STOPPED: logging.INFO,
}


class CaptureSpec(Protocol):
    """What the worker needs of a source's spec (``SourceSpec``; a microphone's spec must offer the same)."""

    @property
    def camera_id(self) -> str: ...
    @property
    def live(self) -> bool: ...
    @property
    def safe_url(self) -> str: ...
    @property
    def backoff_initial_s(self) -> float: ...
    @property
    def backoff_max_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Demuxed:
    """Progress of a demux-only reader (a camera's main stream, ``pipeline.sources.main_stream``): a video packet
    went to the camera's packet ring. Counted as the source's progress, never passed on (nothing to score)."""


DEMUXED = Demuxed()


class CaptureReader(Protocol):
    """What the worker needs of a reader (``MediaReader``; a microphone's reader must offer the same).

    ``container`` is None until ``open()``; ``items`` maps its pts through ``timeline.map`` so that source time
    continues across reconnections (the worker calls ``timeline.new_session`` before each one);
    ``decode_errors`` counts undecodable input.
    """

    @property
    def container(self) -> Any: ...
    @property
    def decode_errors(self) -> int: ...
    def open(self) -> None: ...
    def items(
        self, stop: threading.Event | None = None, *, timeline: StreamTimeline | None = None
    ) -> Iterator[VideoFrame | AudioWindow | Demuxed]: ...
    def close(self) -> None: ...


SpecT = TypeVar("SpecT", bound=CaptureSpec, default=SourceSpec)


# Source time between the last item of a lost connection and the first of the next, at least.
_MIN_SESSION_GAP_S = 0.001


class IllegalTransition(RuntimeError):
    """A state change the table does not allow: a bug in the worker."""


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


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """A snapshot of one worker for health and metrics; ``last_error`` never carries credentials."""

    camera_id: str
    state: SourceState
    state_age_s: float  # time in the current state
    frames: int  # video frames delivered (sampled); a main stream's video packets demuxed
    audio_windows: int
    reconnects: int  # connection attempts after the first
    stalls: int  # sessions ended by the watchdog
    crashes: int  # sessions ended by an unexpected exception (not a SourceError)
    drops: int  # items dropped by the buffer (live cameras)
    decode_errors: int  # undecodable packets
    discontinuities: int  # timestamp jumps that started a new segment
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON health and metrics (``state`` as its name)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values["state"] = self.state.value
        return values


class _Outcome(Enum):
    EOF = "eof"  # a file ended
    LOST = "lost"  # the connection failed, ended or stalled
    BROKEN = "broken"  # the source sent garbage, or decoding it crashed
    STOPPED = "stopped"  # the pipeline is stopping


class CaptureWorker(Generic[SpecT]):
    """Runs one source's reader (:class:`CaptureReader`, e.g. ``MediaReader``) on a thread. ``open_first()`` may be
    called before ``start()``.

    The wait before attempt *n* of a run of failed attempts is ``min(backoff_max_s, backoff_initial_s * 2**(n-1))``
    scaled by a random factor in [0.5, 1] (jitter: cameras behind one switch do not reconnect in step, and
    ``backoff_max_s`` stays a true maximum). A session that delivered items and then went away (not garbage, not a
    crash; PyAV simply ends the demux when the server dies) resets the run, so a camera that comes back is streaming
    again within one back-off interval plus its connection time.

    Back-off bounds default to the spec's. ``fail_after`` failed attempts in a row (no healthy stream) turn a
    live camera's ``backoff`` into ``failed``. ``clock`` (monotonic seconds) and ``wait`` (sleep until a timeout
    or the stop event; True when stopped) are injectable for tests.
    """

    def __init__(
        self,
        spec: SpecT,
        reader_factory: Callable[[SpecT], CaptureReader],
        buffer: BoundedBuffer,
        stop: threading.Event,
        *,
        backoff_initial_s: float | None = None,
        backoff_max_s: float | None = None,
        fail_after: int = 3,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.spec = spec
        self._factory = reader_factory
        self.buffer = buffer
        self._stop = stop
        self._backoff_initial = spec.backoff_initial_s if backoff_initial_s is None else backoff_initial_s
        self._backoff_max = spec.backoff_max_s if backoff_max_s is None else backoff_max_s
        self._fail_after = max(1, fail_after)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._wait = wait or stop.wait
        self._reader: CaptureReader | None = None  # opened by open_first, handed to the thread
        self._active: CaptureReader | None = None  # the reader of the current session
        self._thread = threading.Thread(target=self._run, name=f"capture-{spec.camera_id}", daemon=True)
        self.timeline = StreamTimeline()
        self.state = SourceState.CONNECTING
        self._state_since = clock()
        self._history: collections.deque[tuple[float, SourceState, SourceState]] = collections.deque(maxlen=256)
        self._history_lock = threading.Lock()
        self._dead = False
        self.last_error: str | None = None
        self.frames = 0
        self.audio_windows = 0
        self.reconnects = 0
        self.stalls = 0
        self.crashes = 0
        self.last_backoff_s: float | None = None
        self._decode_errors = 0  # of finished sessions

    # -- control ---------------------------------------------------------------------------------------------
    def open_first(self) -> SourceError | None:
        """Try the first connection now (bounded by the source's timeouts); return the error, if any."""
        try:
            reader = self._factory(self.spec)
            reader.open()
        except SourceError as exc:
            self.last_error = redact_text(str(exc))
            return exc
        except Exception as exc:  # noqa: BLE001 - isolation: reported like any source failure
            self.last_error = _describe(exc)
            log.error("camera %s: unexpected error opening the source\n%s", self.spec.camera_id, _traceback(exc))
            return SourceError(self.last_error)
        self._reader = reader
        return None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def capture_pid(self) -> int | None:
        """The current session's capture process (``isolation: process``); None on a thread or between sessions."""
        pid = getattr(self._active, "pid", None)
        return pid if isinstance(pid, int) else None

    def transitions(self) -> list[tuple[float, SourceState, SourceState]]:
        """Recent state changes as (monotonic s, from, to), oldest first (the last 256)."""
        with self._history_lock:
            return list(self._history)

    def stats(self) -> CaptureStats:
        reader = self._active
        return CaptureStats(
            camera_id=self.spec.camera_id,
            state=self.state,
            state_age_s=max(0.0, self._clock() - self._state_since),
            frames=self.frames,
            audio_windows=self.audio_windows,
            reconnects=self.reconnects,
            stalls=self.stalls,
            crashes=self.crashes,
            drops=self.buffer.dropped,
            decode_errors=self._decode_errors + (reader.decode_errors if reader is not None else 0),
            discontinuities=self.timeline.discontinuities,
            last_error=self.last_error,
        )

    # -- states ----------------------------------------------------------------------------------------------
    def _set_state(self, state: SourceState, reason: str | None = None) -> None:
        old = self.state
        if state is old:
            return
        if state not in TRANSITIONS[old]:
            raise IllegalTransition(f"camera {self.spec.camera_id}: {old.value} -> {state.value} is not allowed")
        now = self._clock()
        self.state, self._state_since = state, now
        with self._history_lock:
            self._history.append((now, old, state))
        if reason:
            log.log(_LOG_LEVEL[state], "camera %s: %s -> %s (%s)", self.spec.camera_id, old.value, state.value, reason)
        else:
            log.log(_LOG_LEVEL[state], "camera %s: %s -> %s", self.spec.camera_id, old.value, state.value)

    # -- the thread ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - a bug in the worker itself: make it visible, never silent
            self.last_error = _describe(exc)
            log.critical("camera %s: capture worker died\n%s", self.spec.camera_id, _traceback(exc))
            self._dead = True
            with self._history_lock:
                self._history.append((self._clock(), self.state, SourceState.FAILED))
            self.state = SourceState.FAILED  # outside the table on purpose: the worker is gone
            self._end(lost=True, reason="error")
        finally:
            final = self._dead or (self.state is SourceState.FAILED and not self.spec.live)
            if not final:
                self._set_state(SourceState.STOPPED)

    def _loop(self) -> None:
        failures = 0  # attempts in a row that delivered nothing
        while not self._stop.is_set():
            self._set_state(SourceState.CONNECTING)
            outcome, delivered = self._session()
            if outcome is _Outcome.STOPPED:
                return
            if not self.spec.live:
                if outcome is _Outcome.EOF:
                    self._end(lost=False, reason="eof")
                    self._set_state(SourceState.STOPPED, "end of file")
                else:
                    self._end(lost=True, reason="error")
                    self._set_state(SourceState.FAILED, self.last_error)
                return
            if delivered:
                self._end(lost=True, reason="stream_lost")
            # only a session that streamed and then went away proves the camera works: garbage does not
            failures = 0 if delivered and outcome is _Outcome.LOST else failures + 1
            delay = min(self._backoff_max, self._backoff_initial * 2 ** max(0, failures - 1))
            wait = delay * (0.5 + 0.5 * self._rng.random())
            self.last_backoff_s = wait
            reason = f"{self.last_error}; retry in {wait:.2f} s"
            if failures >= self._fail_after:
                self._set_state(SourceState.FAILED, f"{failures} attempts failed: {reason}")
            else:
                self._set_state(SourceState.BACKOFF, reason)
            if self._wait(wait):
                return
            self.reconnects += 1

    def _session(self) -> tuple[_Outcome, bool]:
        """One connection: open, stream until it ends. Returns the outcome and whether anything was delivered."""
        reader, self._reader = self._reader, None
        delivered = False
        outcome = _Outcome.LOST
        items: Iterator[VideoFrame | AudioWindow | Demuxed] | None = None
        try:
            if reader is None:
                reader = self._factory(self.spec)
            self._active = reader
            if reader.container is None:
                reader.open()
            latest_at = self.timeline.latest_at
            # a new connection continues source time after the outage (the first one keeps the source's pts)
            self.timeline.new_session(max(_MIN_SESSION_GAP_S, self._clock() - latest_at) if latest_at else 0.0)
            items = reader.items(self._stop, timeline=self.timeline)
            for item in items:
                if not delivered:
                    delivered = True
                    self._set_state(SourceState.STREAMING)
                passed = self._count(item)
                if passed is not None and not self.buffer.put(passed, self._stop):
                    return _Outcome.STOPPED, delivered
            if self._stop.is_set():
                return _Outcome.STOPPED, delivered
            if not self.spec.live:
                return _Outcome.EOF, delivered
            self.last_error = "the camera ended the stream"
        except Exception as exc:  # noqa: BLE001 - isolation: one camera's crash never reaches the others
            outcome = self._failed(exc, delivered)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # finish the generator before its container goes
            self._active = None
            if reader is not None:
                self._decode_errors += reader.decode_errors
                reader.close()
        if self._stop.is_set():
            return _Outcome.STOPPED, delivered
        return outcome, delivered

    def _count(self, item: VideoFrame | AudioWindow | Demuxed) -> VideoFrame | AudioWindow | None:
        """Count a delivered item; what goes on downstream (None: a demux-only source's progress, counted only)."""
        if isinstance(item, AudioWindow):
            self.audio_windows += 1
            return item
        self.frames += 1  # a demux-only source counts its video packets
        return None if isinstance(item, Demuxed) else item

    def _failed(self, exc: Exception, delivered: bool) -> _Outcome:
        """Count and describe what ended a session: LOST (the connection, a stall: reconnect as usual) or BROKEN
        (garbage, a crash); anything unexpected is logged with its traceback."""
        if isinstance(exc, SourceStalledError):
            self.stalls += 1
            self.last_error = redact_text(str(exc))
            if delivered:
                self._set_state(SourceState.STALLED, self.last_error)
            return _Outcome.LOST
        if isinstance(exc, SourceFormatError):
            self.last_error = redact_text(str(exc))
            return _Outcome.BROKEN
        if isinstance(exc, SourceCrashedError):  # a capture process died (isolation: process): no traceback here
            self.crashes += 1
            self.last_error = redact_text(str(exc))
            log.error("camera %s: %s", self.spec.camera_id, self.last_error)
            return _Outcome.BROKEN
        if isinstance(exc, SourceError):
            self.last_error = redact_text(str(exc))
            return _Outcome.LOST
        self.crashes += 1
        self.last_error = _describe(exc)
        log.error("camera %s: unexpected error while decoding\n%s", self.spec.camera_id, _traceback(exc))
        return _Outcome.BROKEN

    def _end(self, *, lost: bool, reason: str) -> None:
        pts = self.timeline.latest if self.timeline.latest is not None else 0.0
        end = StreamEnd(self.spec.camera_id, pts, time.monotonic_ns(), utc_now(), lost=lost, reason=reason)
        # a stream end is never dropped and must not block a stopping daemon forever
        self.buffer.put(end, self._stop)


def _describe(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")


def _traceback(exc: BaseException) -> str:
    """The traceback as text, credentials redacted (``exc_info`` would print the message as it is)."""
    return redact_text("".join(traceback.format_exception(exc)).rstrip())
