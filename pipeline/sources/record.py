"""A live camera recorded to disk: its video (and first audio) stream-copied into a Matroska file as it arrives.

``edge train`` learns a live camera from a recording made this way, and ``edge record`` makes one for ``edge eval``
or a later training. Nothing is decoded or re-encoded: a 720p camera costs a demux and a write. Matroska is written
as packets come, so a recorder that is stopped or killed leaves a playable file of what it had recorded. The file
starts at the first video keyframe; a stream that drops after that ends the recording with what it holds (and
says why), one that fails before it is an error and leaves no file. The reader's connect and read timeouts apply,
and a stream whose video stops for ``stall_timeout_s`` (audio still flowing) ends as stalled.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import av.error
from tqdm import tqdm

from pipeline.errors import SourceError, SourceFormatError
from pipeline.sources.container import close_container, open_rtsp
from pipeline.sources.reader import SourceStalledError, _read_error, open_error
from pipeline.sources.spec import SourceSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recording:
    path: Path
    seconds: float  # stream time recorded from the first video keyframe
    stopped_early: str | None  # why it ended before the time asked for; None: it lasted


def recording_name(url: str, now: datetime | None = None) -> str:
    """A file name for a recording of ``url``: host (and port, unless RTSP's 554), path, query (an NVR's channels
    differ only there) and UTC time, never the credentials (``10.0.0.7_stream1_20261207T201500Z.mkv``)."""
    parts = urlsplit(url)
    host = parts.hostname or "camera"
    if parts.port not in (None, 554):
        host = f"{host}-{parts.port}"
    where = "_".join(x for x in (host, *parts.path.split("/"), parts.query) if x)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', where)}_{stamp}.mkv"


def record_camera(
    url: str,
    dest: Path,
    seconds: float,
    *,
    progress: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Recording:
    """Record ``seconds`` of the live camera at ``url`` (its stream time) into ``dest`` (Matroska, not
    overwritten: ``FileExistsError``). Raises a ``SourceError`` when nothing could be recorded."""
    if seconds <= 0:
        raise ValueError("the recording time must be positive")
    spec = SourceSpec(camera_id="record", url=url)
    if not spec.live:
        raise ValueError(f"{spec.safe_url} is not a live camera: there is nothing to record")
    try:
        container = open_rtsp(spec)
    except Exception as exc:  # noqa: BLE001 - PyAV raises a zoo of errors; each becomes one clear SourceError
        raise open_error(exc, spec) from exc
    try:
        if not container.streams.video:
            raise SourceFormatError(f"{spec.safe_url}: no video stream to record")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "xb") as sink:  # exclusive: an earlier recording is never overwritten
            try:
                return _record(container, sink, dest, seconds, spec, progress, clock)
            except BaseException:  # stopped (Ctrl-C) or failed: keep what can be played, drop what cannot
                sink.flush()
                if not _has_keyframe(dest):
                    dest.unlink(missing_ok=True)
                raise
    finally:
        close_container(container, spec.safe_url)


def _record(
    container: Any,
    sink: Any,
    dest: Path,
    seconds: float,
    spec: SourceSpec,
    progress: bool,
    clock: Callable[[], float],
) -> Recording:
    video = container.streams.video[0]
    inputs = [video, *container.streams.audio[:1]]
    out = av.open(sink, "w", format="matroska")
    copy = _Copy(out, inputs, video.index, spec, clock)
    stopped: str | None = None
    bar = tqdm(
        total=round(seconds),
        desc=f"recording {spec.safe_url} to {dest}",
        unit="s",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )
    try:
        for packet in container.demux(inputs):
            if copy.take(packet, seconds):
                bar.update(int(copy.newest) - bar.n)
            elif copy.newest >= seconds:
                break  # the time asked for is recorded
        else:
            if copy.newest < seconds - 1.0:  # a killed server just ends the stream
                stopped = f"{spec.safe_url}: the stream ended after {copy.newest:.0f} s"
    except SourceError as exc:
        if copy.first is None:
            raise
        stopped = str(exc)
    except (av.error.FFmpegError, OSError, EOFError) as exc:
        if copy.first is None:
            raise _read_error(exc, spec) from exc
        stopped = str(_read_error(exc, spec))
    finally:
        bar.close()
        out.close()
    if copy.first is None:
        raise SourceFormatError(stopped or f"{spec.safe_url}: the stream sent no video keyframe to start a recording")
    if stopped:
        log.warning("%s; the recording keeps the %.0f s before it", stopped, copy.newest)
    return Recording(dest, round(copy.newest, 3), stopped)


class _Copy:
    """Stream copy of demuxed packets into ``out``, from the first video keyframe (time 0 of the recording)."""

    def __init__(
        self, out: Any, inputs: list[Any], video_index: int, spec: SourceSpec, clock: Callable[[], float]
    ) -> None:
        self.out = out
        self.streams = {s.index: out.add_stream_from_template(s) for s in inputs}
        self.video_index = video_index
        self.spec = spec
        self.clock = clock
        self.first: float | None = None  # stream time of the first keyframe
        self.newest = 0.0  # recording time of the newest packet written
        self.opened = self.last_video = clock()

    def take(self, packet: Any, seconds: float) -> bool:
        """Write ``packet`` if it belongs in the recording (True); raise ``SourceStalledError`` when the video
        stopped, ``SourceFormatError`` when no keyframe comes."""
        if packet.size == 0 or packet.dts is None or packet.time_base is None:
            return False  # a flush packet, or one that cannot be placed in time
        now = self.clock()
        is_video = packet.stream.index == self.video_index
        if is_video:
            self.last_video = now
        elif now - self.last_video > self.spec.stall_timeout_s:
            raise SourceStalledError(f"{self.spec.safe_url}: no video packet for {now - self.last_video:.1f} s")
        t = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
        if self.first is None:
            if not (is_video and packet.is_keyframe):  # nothing before the first keyframe could be decoded
                if now - self.opened > self.spec.stall_timeout_s:
                    raise SourceFormatError(f"{self.spec.safe_url}: no video keyframe in {now - self.opened:.0f} s")
                return False
            self.first = t
        if t - self.first >= seconds:
            self.newest = max(self.newest, seconds)
            return False
        shift = round(self.first / packet.time_base)  # the recording starts at 0
        packet.pts = packet.pts - shift if packet.pts is not None else None
        packet.dts -= shift
        packet.stream = self.streams[packet.stream.index]
        self.out.mux(packet)
        self.newest = max(self.newest, t - self.first)
        return True


def _has_keyframe(path: Path) -> bool:
    """Whether a (partial) recording holds a video packet: a file that does not is worth nothing."""
    try:
        with av.open(str(path)) as c:
            return any(p.size for p in c.demux(c.streams.video[:1]))
    except (OSError, av.error.FFmpegError, IndexError):
        return False
