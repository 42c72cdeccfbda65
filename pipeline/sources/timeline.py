"""One source's continuous time line (``StreamTimeline``): raw stream timestamps mapped to source time that never goes
back, across timestamp jumps and reconnections.

A camera that restarts its encoder, concatenated recordings and RTP timestamps that reset all make a stream's pts
jump. A jump backwards by more than ``BACKWARD_JUMP_S`` or forwards by more than ``FORWARD_JUMP_S`` starts a new
*segment* placed right after the latest pts seen so far; the other streams join that segment when they jump too,
so audio and video stay aligned. Smaller forward gaps are real gaps (frames lost); smaller backward steps are
repeated or out-of-order frames, which the reader drops. A new connection to a live camera is a new segment placed
after the real outage. The reader (``pipeline.sources.reader``) maps every decoded frame through one.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# Timestamp jumps that start a new segment of the time line (see the module docstring).
BACKWARD_JUMP_S = 0.5
FORWARD_JUMP_S = 5.0


class StreamTimeline:
    """One source's continuous time line across timestamp jumps and reconnections (see the module docstring).

    ``map(kind, raw_pts)`` turns a stream's raw pts into source time. Each stream (``"video"``, ``"audio"``)
    belongs to a segment; a segment is an offset added to raw pts. The time line survives a reader: a capture
    worker keeps one per source and hands it to every reconnection, so pts keep increasing across outages,
    which the aggregator relies on (its watermark never goes back).
    """

    def __init__(self) -> None:
        self.latest: float | None = None  # latest source time handed out
        self.latest_at: float | None = None  # monotonic time (s) of that
        self.discontinuities = 0  # segments started by a jump (not by a reconnection)
        self.video_seq = 0
        self.audio_seq = 0
        self._offsets = [0.0]
        self._streams: dict[str, tuple[int, float]] = {}  # kind -> (segment, last raw pts)
        self._pending_gap: float | None = None

    def new_session(self, gap_s: float) -> None:
        """A new connection: raw pts restart, and the next one maps to ``gap_s`` after the latest."""
        if self.latest is not None:
            self._pending_gap = gap_s
            self._streams.clear()

    def map(self, kind: str, raw: float, *, gap_s: float, now: float) -> float:
        """Source time of ``raw`` on stream ``kind``; a jump starts a segment ``gap_s`` after the latest."""
        state = self._streams.get(kind)
        segment = len(self._offsets) - 1
        if self._pending_gap is not None:
            self._start_segment(raw, self._pending_gap)
            self._pending_gap = None
            segment = len(self._offsets) - 1
        elif state is not None:
            segment, last = state
            if raw < last - BACKWARD_JUMP_S or raw > last + FORWARD_JUMP_S:
                if segment < len(self._offsets) - 1:
                    segment = len(self._offsets) - 1  # another stream already started this stream's segment
                else:
                    self._start_segment(raw, gap_s)
                    self.discontinuities += 1
                    segment = len(self._offsets) - 1
                    log.info(
                        "%s pts jumped from %.3f to %.3f s: new segment at %.3f s",
                        kind,
                        last,
                        raw,
                        raw + self._offsets[segment],
                    )
        self._streams[kind] = (segment, raw)
        out = raw + self._offsets[segment]
        if self.latest is None or out > self.latest:
            self.latest, self.latest_at = out, now
        return out

    def offset(self, kind: str) -> float | None:
        """What stream ``kind``'s raw pts add up to source time right now; None until its first mapping in this
        session (the packet ring places packets with it, see ``pipeline.media.ring``)."""
        state = self._streams.get(kind)
        if state is None or self._pending_gap is not None:
            return None
        return self._offsets[state[0]]

    def segment(self, kind: str) -> int:
        """The segment stream ``kind`` is in (changes when its timestamps jumped or it reconnected)."""
        state = self._streams.get(kind)
        return state[0] if state is not None else -1

    def raw(self, kind: str, out: float) -> float:
        """The raw pts of stream ``kind`` (in its current segment) that maps to source time ``out``."""
        state = self._streams.get(kind)
        return out - self._offsets[state[0] if state is not None else -1]

    def _start_segment(self, raw: float, gap_s: float) -> None:
        base = self.latest if self.latest is not None else raw
        self._offsets.append(base + gap_s - raw)
