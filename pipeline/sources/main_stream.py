"""A camera's main stream, demuxed only: every packet into the camera's packet ring, nothing decoded.

A camera with ``detect_url`` is decoded and scored on that substream (e.g. 640x360), and its main stream (``url``,
e.g. 1280x720) is what its snapshots and clips are made of, as Frigate's detect and record roles. Reading it costs
a demux and one copy of each packet (the ring, ``pipeline.media.ring``), no decoding: a snapshot decodes one GOP
of it on the media writer thread, a clip copies its packets.

The reader is driven by a ``CaptureWorker`` like any source (states, back-off with jitter, the watchdog, counters),
under the source id ``cam/main`` (``main_source_id``). It yields a ``Demuxed`` marker per video packet, which the
worker counts as progress and never passes on: nothing of the main stream reaches the scoring thread except its
end, which ends no event (a lost main stream leaves events without media, not without detection). Its packets are
placed on the detect stream's time line by the camera's ``StreamTie`` (``pipeline.sources.tie``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import av
import av.error

from pipeline.errors import SourceError, SourceFormatError
from pipeline.media.ring import PacketRing
from pipeline.sources.capture import DEMUXED, Demuxed
from pipeline.sources.container import close_container, open_rtsp
from pipeline.sources.reader import SourceStalledError, _read_error, open_error
from pipeline.sources.spec import SourceSpec
from pipeline.sources.tie import StreamTie
from pipeline.sources.timeline import StreamTimeline

log = logging.getLogger(__name__)


def main_source_id(camera_id: str) -> str:
    """The source id of a camera's main stream (health, metrics, logs): ``cam/main``; ``/`` is never in a camera
    id, so it cannot collide with another camera."""
    return f"{camera_id}/main"


class MainStreamReader:
    """Opens ``spec.url`` (a live RTSP main stream) and hands its packets to ``ring``, placed by ``tie``."""

    def __init__(
        self, spec: SourceSpec, ring: PacketRing, tie: StreamTie, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spec = spec
        self.ring = ring
        self.tie = tie
        self.container: Any = None
        self.decode_errors = 0  # nothing is decoded here
        self._clock = clock

    def open(self) -> None:
        spec = self.spec
        try:
            self.container = open_rtsp(spec)
        except Exception as exc:  # noqa: BLE001 - PyAV raises a zoo of errors; each becomes one clear SourceError
            raise open_error(exc, spec) from exc
        if not self.container.streams.video:
            self.close()
            raise SourceFormatError(f"{spec.safe_url}: no video stream to record")

    def close(self) -> None:
        close_container(self.container, self.spec.safe_url)
        self.container = None

    def items(
        self, stop: threading.Event | None = None, *, timeline: StreamTimeline | None = None
    ) -> Generator[Demuxed, None, None]:
        """Demux until the stream ends, ``stop`` is set or a ``SourceError`` is raised; a ``Demuxed`` per video
        packet. (``timeline`` is not used: the main stream's packets go on the detect stream's time line.)"""
        if self.container is None:
            self.open()
        streams = [self.container.streams.video[0], *self.container.streams.audio[:1]]
        self.ring.begin_session(streams)
        self.tie.main_session()
        try:
            yield from self._demux(stop, streams)
        finally:
            self.ring.end_session()

    def _demux(self, stop: threading.Event | None, streams: list[Any]) -> Generator[Demuxed, None, None]:
        spec = self.spec
        offset: float | None = None
        last_video = self._clock()
        try:
            for packet in self.container.demux(streams):
                if stop is not None and stop.is_set():
                    return
                now = self._clock()
                video = packet.stream.type == "video" and packet.size > 0
                if video and offset is None and packet.pts is not None and packet.time_base is not None:
                    rtcp_us = self.container.start_time_realtime
                    offset = self.tie.main_offset(
                        float(packet.pts * packet.time_base), now, rtcp_us / 1e6 if rtcp_us is not None else None
                    )
                self.ring.add(packet, packet.stream.type, offset)
                if video:
                    last_video = now
                    yield DEMUXED
                elif now - last_video > spec.stall_timeout_s:
                    raise SourceStalledError(f"{spec.safe_url}: no video packet for {now - last_video:.1f} s")
        except SourceError:
            raise
        except (av.error.FFmpegError, OSError, EOFError) as exc:
            raise _read_error(exc, spec) from exc
