"""A per-camera ring of **encoded** packets: the raw material of event snapshots and clips.

The reader hands every demuxed packet of a camera that keeps snapshots or clips to :meth:`PacketRing.add`, before
decoding it (so the packet of a frame is in the ring before the frame reaches the scorer). Nothing is decoded or
re-encoded here: a packet costs one copy of its bytes and a deque append, a small fraction of decoding it; memory is
the stream's bit rate. Cameras without snapshots or clips have no ring and the reader skips the call.

Bounds
    * **Seconds**, measured back from the *scoring* position (``consumed``, set by the runner as it scores each
      item), not from the newest packet: a replay's capture runs up to its buffer ahead of scoring, and the
      packets of the moment an event is decided must still be here. The ring always starts at a video
      keyframe at or before ``consumed - span_s``: whole GOPs are dropped from the front, never part of one, so
      whatever is cut from the ring decodes from its first packet.
    * **Bytes**, a hard cap: past ``max_bytes`` whole GOPs go from the front even inside the seconds bound
      (the latest GOP always stays). A camera whose bitrate or GOP is larger than planned gets shorter clips,
      never more memory.

Time
    Packets are placed on the source time line of ``pipeline.sources.timeline.StreamTimeline`` (the ``pts`` of
    frames and events): ``source = raw + offset`` of the stream's current segment. At the start of a session
    the offset is not known until the first frame is decoded; packets wait in a small pending list until it is.
    Packets within the decoder's delay of a mid-session timestamp jump take the offset of before the jump (a
    glitch of a few frames in a clip across the jump). Each session has its own codec parameters (``StreamSession``).
"""

from __future__ import annotations

import collections
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av

_KINDS = ("video", "audio")
_EPS = 1e-6  # container timestamps are rounded; equal within this counts as equal


class StreamSession:
    """Codec parameters of one reader session: one template stream per kind (video and/or audio), copied while the
    input is open into streams of an unopened in-memory output container, so they outlive the input and serve as
    templates for stream copy and as decoder parameters. Packets keep a reference to their session."""

    def __init__(self, streams: Sequence[Any]) -> None:
        # Never written to: its streams hold copies of the input's codec parameters (extradata included).
        self._holder = av.open(io.BytesIO(), "w", format="matroska")
        self.templates: dict[str, Any] = {}
        self.codec_names: dict[str, str] = {}
        for s in streams:
            if s.type in _KINDS and s.type not in self.templates:
                self.templates[s.type] = self._holder.add_stream_from_template(s)
                # the template's own context is an encoder (e.g. libx264); decoding needs the decoder's name
                self.codec_names[s.type] = s.codec_context.name

    @property
    def has_video(self) -> bool:
        return "video" in self.templates


@dataclass(frozen=True, slots=True)
class RingPacket:
    """One encoded packet on the source time line (seconds)."""

    kind: str  # "video" | "audio"
    data: bytes
    pts: float
    dts: float
    duration: float
    keyframe: bool
    session: StreamSession


@dataclass(frozen=True, slots=True)
class _Raw:
    kind: str
    data: bytes
    pts: float
    dts: float
    duration: float
    keyframe: bool


class PacketRing:
    """Thread-safe ring of one camera's packets: the capture thread adds, the media writer reads.

    ``span_s`` is how far back from the scoring position packets are kept (see the module docstring);
    ``max_bytes`` the hard cap on the packets' bytes.
    """

    def __init__(self, camera_id: str, *, span_s: float, max_bytes: int) -> None:
        if span_s <= 0 or max_bytes <= 0:
            raise ValueError("span_s and max_bytes must be positive")
        self.camera_id = camera_id
        self.span_s = span_s
        self.max_bytes = max_bytes
        self.consumed = -float("inf")  # scoring position (source time), set by the runner
        self.newest = -float("inf")  # largest pts added
        self.bytes = 0
        self.early_evictions = 0  # GOPs dropped by the byte cap while still inside the seconds bound
        self.live = False  # a session is open (False after end_session: no more packets will come)
        # fed by the camera's main stream while its detect stream is scored (``pipeline.sources.main_stream``): what
        # the ring holds says nothing of the moment scored, so media is made only of a session that reached it
        self.tied = False
        self._lock = threading.Lock()
        self._packets: collections.deque[RingPacket] = collections.deque()
        self._keys: collections.deque[RingPacket] = collections.deque()  # the ring's start points, in order
        self._session: StreamSession | None = None
        self._pending: list[_Raw] = []
        self._need_key = True  # the session has not sent a video keyframe yet
        self._last_dts: dict[str, float] = {}  # raw, per kind: capture thread only

    # -- capture thread ----------------------------------------------------------------------------------------
    def begin_session(self, streams: Sequence[Any]) -> None:
        """A reader opened a connection: remember its codec parameters (``streams`` of the open input)."""
        session = StreamSession(streams)
        with self._lock:
            self._session = session
            self._pending.clear()
            self._need_key = True
            self._last_dts.clear()
            self.live = True

    def end_session(self) -> None:
        with self._lock:
            self._pending.clear()
            self.live = False

    def add(self, packet: Any, kind: str, offset: float | None) -> None:
        """Keep one demuxed packet; ``offset`` maps its raw time to source time (None: not known yet)."""
        if packet.size == 0 or packet.time_base is None:
            return  # a demuxer's flush packet
        raw_ts = packet.pts if packet.pts is not None else packet.dts
        if raw_ts is None:
            return  # cannot be placed in time
        tb = float(packet.time_base)
        pts = raw_ts * tb
        if packet.dts is not None:
            dts = packet.dts * tb
        else:  # Matroska gives B-frame streams' first packets no dts: right after the previous one in decode order
            dts = min(pts, self._last_dts.get(kind, pts))
        self._last_dts[kind] = dts
        raw = _Raw(kind, bytes(packet), pts, dts, (packet.duration or 0) * tb, bool(packet.is_keyframe))
        with self._lock:
            if self._session is None:
                return
            if offset is None:
                if len(self._pending) < 1000:  # bounded even if the offset never comes
                    self._pending.append(raw)
                return
            for p in self._pending:
                self._append(p, offset)
            self._pending.clear()
            self._append(raw, offset)

    def _append(self, raw: _Raw, offset: float) -> None:
        assert self._session is not None
        session = self._session
        start_point = raw.keyframe if raw.kind == "video" else not session.has_video
        if raw.kind == "video":
            if self._need_key and not raw.keyframe:
                return  # no keyframe before it in this session: it could never be decoded
            self._need_key = False
        pkt = RingPacket(raw.kind, raw.data, raw.pts + offset, raw.dts + offset, raw.duration, raw.keyframe, session)
        self._packets.append(pkt)
        if start_point:
            self._keys.append(pkt)
        self.bytes += len(pkt.data)
        self.newest = max(self.newest, pkt.pts)
        self._evict()

    def _evict(self) -> None:
        horizon = min(self.newest, self.consumed) - self.span_s
        while len(self._keys) >= 2:
            over_bytes = self.bytes > self.max_bytes
            if not over_bytes and self._keys[1].pts > horizon:
                break
            if over_bytes and self._keys[1].pts > horizon:
                self.early_evictions += 1
            self._keys.popleft()
            nxt = self._keys[0]
            while self._packets and self._packets[0] is not nxt:
                self.bytes -= len(self._packets.popleft().data)

    # -- readers -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return len(self._packets)

    def packets(self) -> list[RingPacket]:
        with self._lock:
            return list(self._packets)

    def covers(self, pts: float) -> bool:
        """Whether packets up to ``pts`` have arrived (or none will come any more)."""
        with self._lock:
            return self.newest >= pts or not self.live

    def reaches(self, pts: float, slack_s: float) -> bool:
        """Whether a session is open and its packets came up to ``slack_s`` before ``pts``."""
        with self._lock:
            return self.live and self.newest >= pts - slack_s

    def snapshot_packets(self, pts: float) -> list[RingPacket]:
        """The video packets that decode the frame at ``pts``: from the last keyframe at or before it to the
        last packet decoded by then (decoding order respects references, so nothing later is needed).

        Walks back from the newest packet: the cost is the distance from the scoring position to the newest
        packet plus one GOP, not the ring's size. Empty when the ring holds no such keyframe.
        """
        limit = pts + _EPS
        out: list[RingPacket] = []
        with self._lock:
            for p in reversed(self._packets):
                if p.kind != "video" or p.dts > limit:
                    continue
                out.append(p)
                if p.keyframe and p.pts <= limit:
                    break
            else:
                return []
        out.reverse()
        return [p for p in out if p.session is out[0].session]

    def clip_packets(self, start: float, end: float) -> list[RingPacket]:
        """Packets covering [start, end] as far as the ring holds them, all of one session (the one at ``end``).

        From the last start point (video keyframe; any packet of an audio-only camera) at or before ``start``,
        else the session's first, to the last packet decoded by ``end``. Audio before the first video packet
        is left out, so the clip starts with a decodable picture at time 0.
        """
        with self._lock:
            packets = [p for p in self._packets if p.dts <= end + _EPS]
        if not packets:
            return []
        session = packets[-1].session
        packets = [p for p in packets if p.session is session]
        video = session.has_video
        starts = [i for i, p in enumerate(packets) if (p.kind == "video" and p.keyframe) or not video]
        if not starts:
            return []
        first = starts[0]
        for i in starts:
            if packets[i].pts > start + _EPS:
                break
            first = i
        t0 = packets[first].pts
        return [p for p in packets[first:] if p.kind == "video" or p.pts >= t0 - _EPS]
