"""Decode one source with PyAV into the model's inputs: sampled luma frames and 16 kHz mono audio windows.

This is the one place where media is decoded, for the daemon, ``edge score`` and training alike, so that a model
sees at run time exactly what it was trained on. Work nobody needs is skipped: video frames between detection
samples are decoded (H.264 needs them as references) but never converted, and the kept ones go straight from the
decoder's YUV to a scaled luma plane with one swscale call, never through RGB.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import av
import av.error
import numpy as np

from pipeline.errors import SourceConnectionError, SourceError, SourceFormatError, SourceNotFoundError
from pipeline.frames import AudioWindow, VideoFrame, WallClock, utc_now
from pipeline.redact import redact_text
from pipeline.sources.spec import SourceKind, SourceSpec, first_image, image_pattern

log = logging.getLogger(__name__)

# Cameras may send a keyframe as several slices that decode to frames sharing one pts (see FACTS.md);
# a repeated or backward pts is dropped rather than scored twice.
_PTS_EPS = 1e-6
# This many undecodable packets in a row means the stream is garbage, not a glitch.
_MAX_CONSECUTIVE_DECODE_ERRORS = 50
# Container timestamps are rounded (ms in MKV): a frame this close before its due time counts as due.
_SAMPLE_TOLERANCE_S = 0.005


class MediaReader:
    """Open a source and iterate over :class:`VideoFrame` and :class:`AudioWindow` items in stream order.

    ``fps`` is the detection rate video is sampled to; ``width`` x ``height`` the model's luma input. Audio is
    resampled to ``sample_rate`` mono and cut into windows of ``audio_window_s`` every ``audio_hop_s``.
    Either modality can be turned off. Not thread-safe: one reader per capture thread.
    """

    def __init__(
        self,
        spec: SourceSpec,
        *,
        width: int,
        height: int,
        fps: float,
        audio_window_s: float = 1.0,
        audio_hop_s: float = 0.5,
        sample_rate: int = 16000,
        video: bool = True,
        audio: bool = True,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.spec = spec
        self.width = width
        self.height = height
        self.fps = fps
        self.window = max(1, int(round(audio_window_s * sample_rate)))
        self.hop = max(1, int(round(audio_hop_s * sample_rate)))
        self.sample_rate = sample_rate
        self.want_video = video
        self.want_audio = audio
        self.container: Any = None
        self.decode_errors = 0
        self.video_frames_decoded = 0

    # -- opening ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        spec = self.spec
        kind = spec.kind
        try:
            if kind is SourceKind.RTSP:
                self.container = av.open(
                    spec.url,
                    options={
                        "rtsp_transport": spec.rtsp_transport,
                        # socket I/O timeout in microseconds: a camera that stops sending ends the read
                        "timeout": str(int(spec.read_timeout_s * 1_000_000)),
                        # probing the default 5 s of stream costs ~1.9 s per (re)connect; this is enough for
                        # H.264/H.265 + one audio stream (FACTS.md)
                        "analyzeduration": "500000",
                        "probesize": "500000",
                    },
                    timeout=(spec.open_timeout_s, spec.read_timeout_s),
                )
            elif kind is SourceKind.IMAGES:
                self.container = self._open_images()
            else:
                if not os.path.exists(spec.url):
                    raise SourceNotFoundError(f"{spec.url}: no such file")
                if os.path.isdir(spec.url):
                    raise SourceFormatError(f"{spec.url}: is a directory without image frames")
                self.container = av.open(spec.url, timeout=(spec.open_timeout_s, spec.read_timeout_s))
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV raises a zoo of errors; each becomes one clear SourceError
            raise _translate(exc, spec) from exc
        if not self._streams():
            self.close()
            raise SourceFormatError(f"{spec.safe_url}: no video or audio stream to decode")

    def _open_images(self) -> Any:
        spec = self.spec
        pattern = image_pattern(spec.url)
        first = first_image(pattern)
        if first is None:
            raise SourceNotFoundError(f"{spec.url}: no image matches")
        options = {"framerate": str(spec.input_fps or self.fps)}
        if "*" in pattern:
            options["pattern_type"] = "glob"
        else:
            digits = "".join(ch for ch in os.path.splitext(os.path.basename(first))[0] if ch.isdigit())
            if digits:
                options["start_number"] = str(int(digits))
        return av.open(pattern, format="image2", options=options)

    def _streams(self) -> list[Any]:
        streams: list[Any] = []
        if self.want_video and self.container.streams.video:
            v = self.container.streams.video[0]
            v.thread_type = "AUTO"
            streams.append(v)
        if self.want_audio and self.container.streams.audio:
            streams.append(self.container.streams.audio[0])
        return streams

    @property
    def has_video(self) -> bool:
        return bool(self.want_video and self.container is not None and self.container.streams.video)

    @property
    def has_audio(self) -> bool:
        return bool(self.want_audio and self.container is not None and self.container.streams.audio)

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - closing a broken stream must not hide the original error
                log.debug("closing %s failed", self.spec.safe_url, exc_info=True)
            self.container = None

    # -- reading ---------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[VideoFrame | AudioWindow]:
        return self.items()

    def items(self, stop: threading.Event | None = None) -> Iterator[VideoFrame | AudioWindow]:
        """Yield items until the stream ends, ``stop`` is set, or a :class:`SourceError` is raised."""
        if self.container is None:
            self.open()
        spec = self.spec
        live = spec.live
        streams = self._streams()
        resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
        audio_buf = np.zeros(0, dtype=np.float32)
        audio_buf_pts: float | None = None
        video_seq = audio_seq = 0
        next_due: float | None = None
        last_video_pts = -float("inf")
        start_wall = utc_now()
        start_mono = time.monotonic()
        first_pts: float | None = None
        consecutive_errors = 0
        period = 1.0 / self.fps

        def wall(pts: float) -> tuple[datetime, WallClock]:
            if live:
                return utc_now(), WallClock.RECEIVE
            return start_wall + timedelta(seconds=pts - (first_pts or 0.0)), WallClock.FILE

        def pace(pts: float) -> bool:
            """Sleep until ``pts`` is due when replaying at real-time pace; False if stopped meanwhile."""
            if not spec.pace or live or first_pts is None:
                return True
            delay = start_mono + (pts - first_pts) - time.monotonic()
            if delay > 0:
                if stop is not None:
                    return not stop.wait(delay)
                time.sleep(delay)
            return True

        try:
            for packet in self.container.demux(streams):
                if stop is not None and stop.is_set():
                    return
                try:
                    frames = packet.decode()
                    consecutive_errors = 0
                except (av.error.InvalidDataError, av.error.UndefinedError, ValueError) as exc:
                    self.decode_errors += 1
                    consecutive_errors += 1
                    log.debug("%s: undecodable packet: %s", spec.safe_url, exc)
                    if consecutive_errors >= _MAX_CONSECUTIVE_DECODE_ERRORS:
                        raise SourceFormatError(
                            f"{spec.safe_url}: {consecutive_errors} undecodable packets in a row"
                        ) from exc
                    continue
                for frame in frames:
                    pts = _seconds(frame)
                    if pts is None:
                        continue
                    if first_pts is None:
                        first_pts = pts
                    if packet.stream.type == "video":
                        self.video_frames_decoded += 1
                        if pts <= last_video_pts + _PTS_EPS:
                            continue
                        last_video_pts = pts
                        if next_due is None or pts - next_due > period or next_due - pts > 2.0:
                            next_due = pts  # first frame, or a jump in the stream: resynchronise
                        if pts < next_due - _SAMPLE_TOLERANCE_S:
                            continue
                        next_due += period
                        if not pace(pts):
                            return
                        luma = frame.to_ndarray(
                            width=self.width, height=self.height, format="gray", interpolation="AREA"
                        )
                        wt, clock = wall(pts)
                        yield VideoFrame(spec.camera_id, video_seq, pts, time.monotonic_ns(), wt, luma, clock)
                        video_seq += 1
                    else:
                        for rf in resampler.resample(frame):
                            chunk = rf.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                            if audio_buf_pts is None:
                                audio_buf_pts = _seconds(rf) if _seconds(rf) is not None else pts
                            audio_buf = np.concatenate((audio_buf, chunk)) if audio_buf.size else chunk.copy()
                        while audio_buf_pts is not None and audio_buf.size >= self.window:
                            window_pts = audio_buf_pts
                            if not pace(window_pts + self.window / self.sample_rate):
                                return
                            wt, clock = wall(window_pts)
                            yield AudioWindow(
                                spec.camera_id, audio_seq, window_pts, time.monotonic_ns(), wt,
                                audio_buf[: self.window].copy(), self.sample_rate, clock,
                            )
                            audio_seq += 1
                            audio_buf = audio_buf[self.hop :]
                            audio_buf_pts += self.hop / self.sample_rate
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - see _translate
            raise _translate(exc, spec) from exc
        if first_pts is None and not live:
            raise SourceFormatError(f"{spec.safe_url}: nothing decodable in it")


def _seconds(frame: Any) -> float | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * frame.time_base)


def _translate(exc: BaseException, spec: SourceSpec) -> SourceError:
    """One clear, credential-free error for whatever PyAV raised."""
    where = spec.safe_url
    detail = redact_text(str(getattr(exc, "strerror", None) or exc)).strip()
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, FileNotFoundError) and spec.kind is not SourceKind.RTSP:
        return SourceNotFoundError(f"{where}: no such file")
    if isinstance(exc, av.error.HTTPError) or "404" in detail or "Not Found" in detail:
        return SourceConnectionError(f"{where}: the server has no such stream ({detail})")
    if isinstance(exc, ConnectionRefusedError):
        return SourceConnectionError(f"{where}: connection refused (nothing listening)")
    if isinstance(exc, TimeoutError) or "timed out" in detail.lower():
        return SourceConnectionError(f"{where}: timed out after {spec.open_timeout_s:g} s")
    if spec.kind is SourceKind.RTSP:
        # a server that accepts and never answers ends in InvalidData once the open timeout expires
        return SourceConnectionError(f"{where}: no usable RTSP answer within {spec.open_timeout_s:g} s ({detail})")
    if isinstance(exc, (av.error.InvalidDataError, av.error.PatchWelcomeError, av.error.DecoderNotFoundError)):
        return SourceFormatError(f"{where}: not a media file we can decode ({detail})")
    return SourceError(f"{where}: {detail or type(exc).__name__}")


def read_media(
    url: str,
    *,
    width: int,
    height: int,
    fps: float,
    audio_window_s: float = 1.0,
    audio_hop_s: float = 0.5,
    sample_rate: int = 16000,
    input_fps: float | None = None,
    video: bool = True,
    audio: bool = True,
    camera_id: str = "file",
) -> Iterator[VideoFrame | AudioWindow]:
    """Decode a file or image sequence as fast as possible (training, ``edge score``)."""
    reader = MediaReader(
        SourceSpec(camera_id=camera_id, url=url, input_fps=input_fps),
        width=width, height=height, fps=fps, audio_window_s=audio_window_s, audio_hop_s=audio_hop_s,
        sample_rate=sample_rate, video=video, audio=audio,
    )
    reader.open()
    try:
        yield from reader.items()
    finally:
        reader.close()
