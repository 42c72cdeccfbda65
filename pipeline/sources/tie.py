"""A camera's two streams tied together: where the main stream's packets lie on the detect stream's time line.

A camera with ``detect_url`` is scored on its detect substream: events, peaks and boxes are on that stream's
source time line (``pipeline.sources.timeline``). Its main stream is only demuxed into the packet ring of its
snapshots and clips (``pipeline.sources.main_stream``), and each of its packets needs a place on that same time
line: ``source = raw pts + offset``. The two streams are separate RTSP sessions: their raw pts start at 0 at
different moments, so the offset has to be measured, once per connection of the main stream.

* **RTCP** (preferred): when both streams' sender reports arrived, each raw pts has a wall time on the camera's
  own clock (``start_time_realtime`` + raw pts, see ``pipeline.sources.reader``), and the camera stamps both
  streams with the same clock. The detect stream's frames give ``anchor = source pts - wall time`` (median of
  the last ``history``); a main packet's source time is its wall time + that anchor.
* **Arrival** (fallback): both streams are stamped with the host's monotonic clock; the detect stream's anchor is
  ``source pts - arrival`` (``pipeline.pairing.CameraClock``), the main stream's ``arrival - raw pts`` (median of
  its first video packets). Detect frames are stamped after decoding, main packets when demuxed, so main packets
  land up to the detect decoder's delay (2 frames with frame threads) early.

Bounded: the RTCP offset is used only when it agrees with the arrival estimate within ``max_disagreement_s``
(a camera whose streams carry unsynchronised sender reports is tied by arrival, with one warning). The offset is
measured once the main stream has sent ``samples`` video packets, waiting up to ``rtcp_wait_s`` of its packets for
both streams' sender reports; until then its packets wait in the ring's pending list. It then stays fixed for the
main stream's connection: both streams follow the camera's clock, so it does not drift, and a fixed offset keeps
the ring's timestamps in order. Thread-safe: the scoring thread observes detect frames, the main stream's
capture thread asks for offsets.
"""

from __future__ import annotations

import collections
import logging
import statistics
import threading

from pipeline.frames import VideoFrame, WallClock
from pipeline.pairing import CameraClock

log = logging.getLogger(__name__)

MAX_DISAGREEMENT_S = 1.0
TIE_SAMPLES = 10  # main-stream video packets measured before the offset is fixed (0.4 s at 25 fps)
RTCP_WAIT_S = 3.0  # of main-stream time: how long a tie by arrival waits for both streams' sender reports


class StreamTie:
    """The main stream's offset onto the detect stream's source time line (see the module docstring)."""

    def __init__(
        self,
        camera_id: str,
        *,
        history: int = 25,
        samples: int = TIE_SAMPLES,
        rtcp_wait_s: float = RTCP_WAIT_S,
        max_disagreement_s: float = MAX_DISAGREEMENT_S,
    ) -> None:
        self.camera_id = camera_id
        self.samples = max(1, samples)
        self.rtcp_wait_s = rtcp_wait_s
        self.max_disagreement_s = max_disagreement_s
        self._lock = threading.Lock()
        self._arrival = CameraClock(history=history)  # detect: source pts - monotonic
        self._rtcp: collections.deque[float] = collections.deque(maxlen=history)  # detect: source pts - wall
        # this main session: arrival - raw pts of its latest video packets until the offset is fixed (bounded: the
        # detect stream may be down for hours while the main one streams)
        self._main: collections.deque[float] = collections.deque(maxlen=max(self.samples, 250))
        self._first_raw: float | None = None
        self._warned = False
        self.offset: float | None = None  # of the current main session, once measured
        self.method: str | None = None  # "rtcp" | "arrival"
        self.disagreement_s: float | None = None  # |rtcp - arrival| estimate when both were there

    # -- detect stream (scoring thread) ----------------------------------------------------------------------
    def observe(self, frame: VideoFrame) -> None:
        """A detect-stream frame: its source pts against its arrival and (RTCP) wall time."""
        with self._lock:
            self._arrival.observe(frame)
            if frame.clock is WallClock.RTCP:
                self._rtcp.append(frame.pts - frame.wall_time.timestamp())

    def detect_lost(self) -> None:
        """The detect stream's connection ended: its next one has a sender-report base of its own."""
        with self._lock:
            self._rtcp.clear()

    # -- main stream (its capture thread) --------------------------------------------------------------------
    def main_session(self) -> None:
        """A new connection of the main stream: its raw pts start again, its offset is measured again."""
        with self._lock:
            self._main.clear()
            self._first_raw = None
            self.offset = None
            self.method = None

    def main_offset(self, raw: float, arrival_s: float, rtcp_s: float | None) -> float | None:
        """The offset (``source = raw + offset``) for the main stream's packets, given one of its video packets
        (``raw`` pts, host monotonic ``arrival_s``, the session's RTCP start in seconds or None); None until it
        is measured."""
        with self._lock:
            if self.offset is not None:
                return self.offset
            if self._first_raw is None:
                self._first_raw = raw
            self._main.append(arrival_s - raw)
            anchor = self._arrival.anchor
            if anchor is None or len(self._main) < self.samples:
                return None
            by_arrival = statistics.median(self._main) + anchor
            if rtcp_s is not None and self._rtcp:
                by_rtcp = rtcp_s + statistics.median(self._rtcp)
                self.disagreement_s = abs(by_rtcp - by_arrival)
                if self.disagreement_s <= self.max_disagreement_s:
                    return self._fix(by_rtcp, "rtcp")
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "camera %s: the main and detect streams' sender reports disagree with their arrival "
                        "by %.2f s; tying them by arrival",
                        self.camera_id,
                        self.disagreement_s,
                    )
                return self._fix(by_arrival, "arrival")
            if raw - self._first_raw < self.rtcp_wait_s:
                return None  # sender reports usually come within a second or two: wait for them
            return self._fix(by_arrival, "arrival")

    def _fix(self, offset: float, method: str) -> float:
        self.offset, self.method = offset, method
        log.info(
            "camera %s: main stream tied to the detect stream by %s (offset %.3f s)", self.camera_id, method, offset
        )
        return offset
