"""A ``MediaReader`` in a child process (``isolation: process``): a segfault or a hang inside FFmpeg's C code ends
one camera's session, never the daemon or the other cameras.

``ProcessReader`` offers ``CaptureReader``'s interface, so ``CaptureWorker`` runs it exactly as it runs a
``MediaReader`` — same states, watchdog, back-off with jitter, bounded buffers and stats; only demuxing and
decoding move out. Each session (connection) is one child process, forked from multiprocessing's fork server
(never ``fork`` of the threaded daemon itself; ``_CTX``). One duplex pipe carries the child's items, logs, end or
error to the parent and the parent's start and stop to the child (the messages: ``_child_main``); every message is
redacted at its source, so credentials never cross. The ``StreamTimeline`` is the parent's: the child maps pts
with a copy whose counters come back with every item, so pts keep increasing across a crash as across a reconnect.

The parent watches the child. It waits for "opened" at most ``open_timeout_s + SPAWN_ALLOWANCE_S`` and for each
item at most ``stall_timeout_s + STALL_GRACE_S`` (files: at least two sampling periods): the child's own
watchdog, which names the cause, speaks first while it still runs Python; past that the parent kills the child
(SIGKILL reaches a hang in C code and a stopped process alike) and raises ``SourceStalledError``. A child that
dies raises ``SourceCrashedError`` naming the signal (``killed by SIGSEGV``); the worker counts a crash and
restarts it after back-off. Closing asks the child to stop, drains the pipe so that it cannot block on a send,
and kills it after ``STOP_TIMEOUT_S``. No orphans: a child exits as soon as its pipe to the parent closes (the
daemon died, however), and children are daemonic (multiprocessing ends them at a normal exit).

Snapshots and clips: when the camera has a ``PacketRing``, the child's reader feeds a ``_PipeSink`` that sends its
packets on the same pipe, so a frame's packet is in the parent's ring before the frame reaches the scorer, as in
thread mode. Extra pipe traffic: the stream's bit rate. A camera's main stream runs the same way (``tie``).
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import Connection
from typing import Any

import av

from pipeline.errors import (
    SourceConnectionError,
    SourceCrashedError,
    SourceError,
    SourceFormatError,
    SourceNotFoundError,
)
from pipeline.frames import AudioWindow, VideoFrame
from pipeline.redact import redact_text
from pipeline.sources.main_stream import MainStreamReader
from pipeline.sources.reader import MediaReader, SourceStalledError
from pipeline.sources.spec import SourceSpec
from pipeline.sources.timeline import StreamTimeline

log = logging.getLogger(__name__)

# A child's start: a fork of the fork server, whose first start (Python + numpy + PyAV) takes ~0.15 s on an idle
# machine, far more on a loaded one.
SPAWN_ALLOWANCE_S = 10.0
# Past the stall timeout, how long the parent leaves the child's own watchdog to report before killing it.
STALL_GRACE_S = 0.5
STOP_TIMEOUT_S = 2.0
_POLL_S = 0.1
# Children are forked from multiprocessing's fork server: one single-threaded process, a fresh interpreter (never a
# fork of the threaded daemon), that imported this module (PyAV, numpy) once. A child then costs a fork instead of
# an interpreter's start and those imports, which on 2 cores made a dozen cameras connecting at once overrun
# their open timeouts.
_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload([__name__])
# The SourceErrors a child may report, rebuilt by name (never unpickled: the parent decides what it raises).
_ERRORS: dict[str, type[SourceError]] = {
    cls.__name__: cls
    for cls in (SourceError, SourceNotFoundError, SourceFormatError, SourceConnectionError, SourceStalledError)
}

_TimelineState = tuple[float | None, float | None, int, int, int]


def _timeline_state(tl: StreamTimeline) -> _TimelineState:
    return tl.latest, tl.latest_at, tl.discontinuities, tl.video_seq, tl.audio_seq


def _apply_timeline(tl: StreamTimeline, state: _TimelineState) -> None:
    tl.latest, tl.latest_at, tl.discontinuities, tl.video_seq, tl.audio_seq = state


class ProcessReader:
    """``MediaReader(spec, **options)`` run in a child process, one per session; see the module docstring. With
    ``tie`` (a camera's ``StreamTie``) the child runs a ``MainStreamReader`` instead: the camera's main stream,
    demuxed into ``packet_sink`` (its ``PacketRing``), its packets placed on the detect stream's time line here,
    by the tie, from the arrival times the child measures.

    ``container`` is not None once the child opened the source (the worker's "already open" test); ``pid`` is the
    child's while it runs.
    """

    def __init__(self, spec: SourceSpec, **options: Any) -> None:
        options = dict(options)
        self._ring: Any = options.pop("packet_sink", None)  # the camera's PacketRing, fed from the child's packets
        self._tie: Any = options.pop("tie", None)  # a main stream's StreamTie
        self._offset: float | None = None  # a main stream's offset onto the detect stream, once the tie has it
        if "clock" in options:
            raise ValueError("a ProcessReader's child keeps time with time.monotonic")
        if self._tie is not None and self._ring is None:
            raise ValueError("a main stream in a process needs the camera's packet ring")
        self.spec = spec
        self._options = options
        self.container: object | None = None
        self.decode_errors = 0
        self._proc: Any = None  # multiprocessing's ForkServerProcess
        self._conn: Connection | None = None
        fps = float(options.get("fps", 1.0))
        self._stall_limit = spec.stall_timeout_s + STALL_GRACE_S
        if not spec.live:
            self._stall_limit = max(self._stall_limit, 2.0 / fps)  # a slow paced replay is not a hang

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    # -- the interface the worker uses -------------------------------------------------------------------------
    def open(self) -> None:
        parent, child = _CTX.Pipe(duplex=True)
        level = logging.getLogger("pipeline").getEffectiveLevel()
        proc = _CTX.Process(
            target=_child_main,
            args=(child, self.spec, self._options, level, self._ring is not None, self._tie is not None),
            name=f"capture-{self.spec.camera_id}",
            daemon=True,
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        try:
            msg = self._receive(self.spec.open_timeout_s + SPAWN_ALLOWANCE_S, None, "answered nothing while opening")
            if msg is None or msg[0] != "opened":
                raise self._failure(msg)
        except BaseException:
            self.close()
            raise
        self.container = proc

    def items(
        self, stop: threading.Event | None = None, *, timeline: StreamTimeline | None = None
    ) -> Generator[VideoFrame | AudioWindow, None, None]:
        if self._conn is None:
            self.open()
        tl = timeline if timeline is not None else StreamTimeline()
        if self._tie is not None:  # a new connection of the main stream: its offset is measured again
            self._tie.main_session()
            self._offset = None
        self._send(("start", tl))
        try:
            yield from self._items(stop, tl)
        finally:
            if self._ring is not None:
                self._ring.end_session()

    def _items(
        self, stop: threading.Event | None, tl: StreamTimeline
    ) -> Generator[VideoFrame | AudioWindow, None, None]:
        while True:
            msg = self._receive(self._stall_limit, stop, "delivered nothing")
            if msg is None:
                return  # stopping
            if msg[0] == "item":
                _, item, state, self.decode_errors = msg
                _apply_timeline(tl, state)
                yield item  # the stall clock starts again when the worker asks for the next one
            elif msg[0] == "end":
                _apply_timeline(tl, msg[1])
                self.decode_errors = msg[2]
                return
            else:
                if msg[0] == "error" and msg[3] is not None:
                    _apply_timeline(tl, msg[3])
                    self.decode_errors = msg[4]
                raise self._failure(msg)

    def close(self) -> None:
        conn, proc = self._conn, self._proc
        self._conn = self._proc = self.container = None
        if conn is not None:
            try:
                conn.send(("stop",))
                # drain: a child blocked on a full pipe would never read "stop"
                deadline = time.monotonic() + STOP_TIMEOUT_S
                while time.monotonic() < deadline and conn.poll(max(0.0, deadline - time.monotonic())):
                    conn.recv()
            except (EOFError, OSError):
                pass  # the child is gone: nothing to drain
            conn.close()
        if proc is not None:
            proc.join(_POLL_S)
            if proc.exitcode is None:
                log.warning(
                    "camera %s: capture process %s did not stop in %.0f s; killed",
                    self.spec.camera_id,
                    proc.pid,
                    STOP_TIMEOUT_S,
                )
                proc.kill()
                proc.join(STOP_TIMEOUT_S)
            proc.close()

    # -- the pipe ----------------------------------------------------------------------------------------------
    def _send(self, msg: tuple[Any, ...]) -> None:
        assert self._conn is not None
        try:
            self._conn.send(msg)
        except OSError:
            raise self._died() from None

    def _receive(self, limit_s: float, stop: threading.Event | None, silent: str) -> tuple[Any, ...] | None:
        """The next message that is not a log line; None when ``stop`` is set. A child silent for ``limit_s``
        is killed (``SourceStalledError``); one that died raises ``SourceCrashedError``."""
        conn = self._conn
        assert conn is not None
        deadline = time.monotonic() + limit_s
        while True:
            if stop is not None and stop.is_set():
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                pid = self.pid
                self._proc.kill()
                self._proc.join(STOP_TIMEOUT_S)
                raise SourceStalledError(
                    f"{self.spec.safe_url}: the capture process (pid {pid}) {silent} for {limit_s:.1f} s; killed it"
                )
            try:
                if not conn.poll(min(_POLL_S, left)):
                    continue
                msg = conn.recv()
            except (EOFError, OSError):
                raise self._died() from None
            kind = msg[0]
            if kind.startswith("ring_"):
                self._apply_ring(msg)
                continue
            if kind != "log":
                return msg  # type: ignore[no-any-return]
            _, level, name, text = msg
            logging.getLogger(name).log(level, "camera %s: %s", self.spec.camera_id, text)

    def _apply_ring(self, msg: tuple[Any, ...]) -> None:
        ring = self._ring
        if ring is None:
            return
        if msg[0] == "ring_packet":
            offset, sample = msg[3], msg[4]
            if self._tie is not None:  # a main stream: placed here, by the camera's tie
                if sample is not None and self._offset is None:
                    self._offset = self._tie.main_offset(*sample)
                offset = self._offset
            ring.add(msg[2], msg[1], offset)
        elif msg[0] == "ring_begin":
            with av.open(io.BytesIO(msg[1]), "r", format="nut") as header:
                ring.begin_session([s for s in header.streams if s.type in ("video", "audio")])
        elif msg[0] == "ring_end":
            ring.end_session()

    def _died(self) -> SourceCrashedError:
        proc = self._proc
        proc.join(1.0)
        code = proc.exitcode
        if code is None:
            proc.kill()
            proc.join(STOP_TIMEOUT_S)
            how = "closed its pipe"
        elif code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return SourceCrashedError(f"{self.spec.safe_url}: the capture process (pid {proc.pid}) {how}")

    def _failure(self, msg: tuple[Any, ...] | None) -> SourceError:
        if msg is not None and msg[0] == "error":
            return _ERRORS.get(msg[1], SourceError)(redact_text(msg[2]))
        if msg is not None and msg[0] == "crash":
            return SourceCrashedError(f"{self.spec.safe_url}: the capture process crashed: {redact_text(msg[1])}")
        return SourceCrashedError(f"{self.spec.safe_url}: the capture process sent {msg and msg[0]!r}")


# -- the child ---------------------------------------------------------------------------------------------------


class _PipeLogHandler(logging.Handler):
    """The child's log records, sent to the parent as text (redacted again: a stray URL never crosses)."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self._send(("log", record.levelno, record.name, redact_text(text)))
        except Exception:  # noqa: BLE001 - a log line must never take the capture down
            self.handleError(record)


def _watch_parent(conn: Connection, stop: threading.Event) -> None:
    """In the child: "stop" ends the stream; a closed pipe means the parent is gone, and so is the child."""
    try:
        while conn.recv()[0] != "stop":
            pass
        stop.set()
        conn.recv()  # the parent closes its end once it has drained us
    except (EOFError, OSError):
        pass
    if not stop.is_set():
        os._exit(0)  # the parent died: no orphan, however busy the main thread is
    stop.set()


@dataclass(frozen=True, slots=True)
class PlainPacket:
    """A demuxed packet as plain, picklable data: what ``PacketRing.add`` reads of an ``av.Packet``."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int | None
    time_base: Fraction | None
    is_keyframe: bool

    @property
    def size(self) -> int:
        return len(self.data)

    def __bytes__(self) -> bytes:
        return self.data


def stream_header(streams: Sequence[Any]) -> bytes:
    """A header-only NUT file with ``streams``' codec parameters (NUT keeps extradata verbatim, Matroska would
    convert Annex B H.264 to avcC). One dummy byte per stream follows the header: a demuxer needs a packet to
    find the streams; the parent never reads it."""
    buf = io.BytesIO()
    out = av.open(buf, "w", format="nut")
    try:
        outs = [out.add_stream_from_template(s) for s in streams if s.type in ("video", "audio")]
        out.start_encoding()
        for o in outs:
            pkt = av.Packet(b"\0")
            pkt.stream = o
            pkt.time_base = o.time_base
            pkt.pts = pkt.dts = 0
            out.mux(pkt)
    finally:
        out.close()
    return buf.getvalue()


class _PipeTie:
    """In the child of a main stream: takes the place of the camera's ``StreamTie``, which is the parent's. It
    records what ``MainStreamReader`` measures of a video packet (raw pts, arrival, RTCP start) for ``_PipeSink``
    to send with that packet; the parent's tie computes the offset (the child's offset stays None)."""

    def __init__(self) -> None:
        self.sample: tuple[float, float, float | None] | None = None

    def main_session(self) -> None:
        self.sample = None

    def main_offset(self, raw: float, arrival_s: float, rtcp_s: float | None) -> None:
        self.sample = (raw, arrival_s, rtcp_s)  # CLOCK_MONOTONIC: the same clock in every process


class _PipeSink:
    """In the child: the reader's packet sink, sent to the parent's ``PacketRing`` as plain data (with a main
    stream's ``_PipeTie`` sample of the packet, when it took one)."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None], tie: _PipeTie | None = None) -> None:
        self._send = send
        self._tie = tie

    def begin_session(self, streams: Sequence[Any]) -> None:
        self._send(("ring_begin", stream_header(streams)))

    def add(self, packet: Any, kind: str, offset: float | None) -> None:
        if packet.size == 0 or packet.time_base is None:
            return  # a demuxer's flush packet: the ring would skip it too
        plain = PlainPacket(
            bytes(packet), packet.pts, packet.dts, packet.duration, Fraction(packet.time_base), bool(packet.is_keyframe)
        )
        sample = None
        if self._tie is not None:
            sample, self._tie.sample = self._tie.sample, None
        self._send(("ring_packet", kind, plain, offset, sample))

    def end_session(self) -> None:
        self._send(("ring_end",))


def _child_main(
    conn: Connection, spec: SourceSpec, options: dict[str, Any], log_level: int, ring: bool = False, main: bool = False
) -> None:
    """The child's side of the pipe. It sends, child → parent::

        ("opened",)                                         the source is open
        ("item", item, timeline, decode_errors)             a VideoFrame (model-size luma) or an AudioWindow, with
                                                            the time line's counters after it
        ("log", level, logger, message)                     the reader's log lines (already credential-free)
        ("end", timeline, decode_errors)                    the stream ended (a file's end, a camera that hung up)
        ("error", class, message, timeline, decode_errors)  a SourceError, raised again as its class in the parent
        ("crash", message)                                  any other exception in the child, with its traceback

    and receives ``("start", timeline)`` once the worker began the session on its time line, ``("stop",)`` to
    finish. With ``ring``, ``_PipeSink`` adds ``("ring_begin", header)`` (a header-only NUT file holding the
    session's codec parameters, extradata verbatim), ``("ring_packet", kind, PlainPacket, offset, sample)``
    (``sample``: a main stream's ``_PipeTie`` sample, else None) and ``("ring_end",)``, which the parent applies
    to the camera's ring as it reads the pipe. A main stream's items are ``Demuxed`` markers, one per video
    packet.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent decides
    lock = threading.Lock()

    def send(msg: tuple[Any, ...]) -> None:
        with lock:
            conn.send(msg)

    root = logging.getLogger()
    root.addHandler(_PipeLogHandler(send))
    root.setLevel(log_level)
    stop = threading.Event()
    reader: MediaReader | MainStreamReader | None = None
    try:
        if main:  # a camera's main stream: demuxed into the parent's ring, one Demuxed item per video packet
            tie = _PipeTie()
            reader = MainStreamReader(spec, ring=_PipeSink(send, tie), tie=tie)  # type: ignore[arg-type]
        else:
            reader = MediaReader(spec, **options, packet_sink=_PipeSink(send) if ring else None)
        try:
            reader.open()
        except SourceError as exc:
            send(("error", type(exc).__name__, redact_text(str(exc)), None, reader.decode_errors))
            return
        send(("opened",))
        msg = conn.recv()
        if msg[0] != "start":
            return
        tl = msg[1]
        threading.Thread(target=_watch_parent, args=(conn, stop), name="parent-watch", daemon=True).start()
        try:
            for item in reader.items(stop, timeline=tl):
                send(("item", item, _timeline_state(tl), reader.decode_errors))
        except SourceError as exc:
            send(("error", type(exc).__name__, redact_text(str(exc)), _timeline_state(tl), reader.decode_errors))
            return
        send(("end", _timeline_state(tl), reader.decode_errors))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent went away
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which counts it as a crash
        text = redact_text("".join(traceback.format_exception(exc)).rstrip())
        try:
            send(("crash", f"{type(exc).__name__}: {redact_text(str(exc))}\n{text}"))
        except OSError:
            pass
    finally:
        if reader is not None:
            reader.close()
