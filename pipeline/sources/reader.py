"""Decode one source with PyAV into the model's inputs: sampled luma frames and 16 kHz mono audio windows.

This is the one place where media is decoded, for the daemon, ``edge score`` and training alike, so that a model
sees at run time exactly what it was trained on. Work nobody needs is skipped: video frames between detection
samples are decoded (H.264 needs them as references) but never converted, and the kept ones go straight from the
decoder's YUV to a scaled luma plane with one swscale call, never through RGB.

Streams that change under us
    * **Resolution or codec parameters change mid-stream** (a new SPS): the decoder follows it and every kept
      frame is scaled to the model's size, so nothing downstream notices.
    * **Timestamps that jump** (a camera that restarts its encoder, concatenated recordings, RTP timestamps
      that reset): every stream's pts goes through a ``StreamTimeline`` (``pipeline.sources.timeline``): one
      continuous source time that never goes back. After a real gap (frames lost) video sampling resynchronises
      at the new pts and audio windows restart there; repeated or slightly backward frames are dropped (sliced
      keyframes, see FACTS.md).
    * **Video-only, audio-only, late or missing audio**: a source decodes whatever it has of what is wanted.
      Audio that starts late is placed on the same time line as the video; audio that never comes is absent.
    * **Codecs**: whatever the FFmpeg inside PyAV decodes (H.264, H.265, AAC, Opus, G.711 A-law and mu-law
      among them); audio is resampled to ``sample_rate`` mono whatever it was.

``pts`` is that time line; ``wall_time`` comes from the camera's RTCP sender reports when it sends any, else from
the receive clock, and counts from the start of a file's replay (``_wall``). A live source is watched: a socket read
is bounded by ``min(read_timeout_s, stall_timeout_s)``, and a stream that stops decoding ends the session
(``_Watchdog``; :class:`SourceStalledError`).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from pipeline.errors import SourceConnectionError, SourceError, SourceFormatError, SourceNotFoundError
from pipeline.frames import AudioWindow, VideoFrame, WallClock, utc_now
from pipeline.redact import redact_text
from pipeline.sources.audio_windows import AudioWindower
from pipeline.sources.container import close_container, open_rtsp
from pipeline.sources.spec import SourceKind, SourceSpec, expand_folders, image_sequence
from pipeline.sources.timeline import StreamTimeline

log = logging.getLogger(__name__)

# Cameras may send a keyframe as several slices that decode to frames sharing one pts (see FACTS.md);
# a repeated or slightly backward pts is dropped rather than scored twice.
_PTS_EPS = 1e-6
# A stream is garbage, not glitching, when at least this fraction of its last packets failed to decode.
_GARBAGE_WINDOW = 50
_GARBAGE_FRACTION = 0.5
# Container timestamps are rounded (ms in MKV): a frame this close before its due time counts as due.
_SAMPLE_TOLERANCE_S = 0.005
# Audio whose pts is this far from where the previous audio ended is a gap (or overlap): windows restart.
_AUDIO_RESYNC_S = 0.1
# Video decoder threads when one camera has cores to spare. Frame threads delay the output: N threads hold N-1
# frames. FFmpeg's own choice is cores + 1 (at most 16): 15 frames on a 16-core host, 0.6 s at 25 fps, beyond the
# latency target, and enough to put a camera's audio windows before the video frames that precede their end, so
# that a replay decides differently there than here. 3 is what FFmpeg picks on 2 cores: 2 frames of delay (80 ms at
# 25 fps) for a faster decode than one thread's (FACTS.md), the same on every machine.
DECODER_THREADS = 3


def set_decoder_threads(stream: Any, threads: int = 0, skip_loop_filter: str = "none") -> None:
    """The reader's decoder settings for a video ``stream`` before it decodes: ``threads`` > 0 plain threads (1 when
    cameras outnumber cores), 0 DECODER_THREADS frame threads; deblocking skipped as ``skip_loop_filter`` says
    (``SourceSpec``). ``edge bench``'s decode-only side uses it too."""
    if threads > 0:
        stream.thread_type = "NONE"
        stream.thread_count = threads
    else:
        stream.thread_type = "AUTO"
        stream.thread_count = DECODER_THREADS
    if skip_loop_filter != "none":
        stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": skip_loop_filter}


# An RTCP wall clock this far from ours is worth one warning: the camera's clock is probably not set.
_RTCP_SKEW_WARN_S = 60.0


class PacketSink(Protocol):
    """Where a reader hands every demuxed packet, undecoded (``pipeline.media.PacketRing``)."""

    def begin_session(self, streams: Sequence[Any]) -> None: ...
    def add(self, packet: Any, kind: str, offset: float | None) -> None: ...
    def end_session(self) -> None: ...


class SourceStalledError(SourceConnectionError, TimeoutError):
    """A live source stopped delivering frames (connection open, nothing decodable arriving)."""


class _Watchdog:
    """Ends a session whose stream stops decoding: garbage (at least ``_GARBAGE_FRACTION`` of a stream's last
    ``_GARBAGE_WINDOW`` packets undecodable), or a live source whose packets keep coming without a frame of its main
    stream (video if any, else audio) for ``stall_timeout_s``; a camera that sends nothing at all ends the socket
    read instead (PyAV's per-read ``timeout``)."""

    def __init__(self, spec: SourceSpec, kinds: Sequence[str], main_kind: str, now: float) -> None:
        self.spec = spec
        self.main_kind = main_kind
        self.progress_at = now
        self.recent: dict[str, collections.deque[bool]] = {
            kind: collections.deque(maxlen=_GARBAGE_WINDOW) for kind in kinds
        }

    def decoded(self, kind: str) -> None:
        self.recent[kind].append(False)

    def undecodable(self, kind: str, exc: Exception) -> None:
        """Count an undecodable packet; raise ``SourceFormatError`` once the stream is garbage."""
        recent = self.recent[kind]
        recent.append(True)
        if len(recent) == recent.maxlen and sum(recent) >= _GARBAGE_FRACTION * len(recent):
            raise SourceFormatError(
                f"{self.spec.safe_url}: garbage {kind}: {sum(recent)} of its last {len(recent)} packets "
                f"were undecodable ({redact_text(str(exc))})"
            ) from exc

    def check(self, kind: str, decoded: bool, now: float) -> None:
        """After each packet: a frame of the main stream is progress; a live source without any for too long ends."""
        spec, main_kind = self.spec, self.main_kind
        if decoded and kind == main_kind:
            self.progress_at = now
        elif spec.live and now - self.progress_at > spec.stall_timeout_s:
            failed = sum(self.recent[main_kind])
            if failed:  # data arrives but does not decode: garbage, not a frozen camera
                raise SourceFormatError(
                    f"{spec.safe_url}: garbage {main_kind}: no decodable frame for "
                    f"{now - self.progress_at:.1f} s, {failed} undecodable packets"
                )
            raise SourceStalledError(f"{spec.safe_url}: no {main_kind} frame for {now - self.progress_at:.1f} s")


class _VideoSampler:
    """Which decoded frames are due at the detection rate (one every ``period`` s of source time): a repeated or
    backward frame never is; the first frame, a gap longer than a period or a new segment resynchronises."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.next_due: float | None = None
        self.segment = -1
        self.last = -float("inf")

    def due(self, out: float, segment: int) -> bool:
        if out <= self.last + _PTS_EPS:
            return False
        self.last = out
        if self.next_due is None or out - self.next_due > self.period or segment != self.segment:
            self.next_due = out  # first frame, a gap or a new segment: resynchronise sampling
            self.segment = segment
        if out < self.next_due - _SAMPLE_TOLERANCE_S:
            return False
        self.next_due += self.period
        return True


@dataclass
class _Session:
    """What one pass over an open container carries from packet to packet."""

    stop: threading.Event | None
    tl: StreamTimeline
    period: float  # of the detection rate, s
    started: float  # the reader's clock at the start
    sampler: _VideoSampler
    windower: AudioWindower  # the audio windows (pipeline.sources.audio_windows)
    start_wall: datetime = field(default_factory=utc_now)
    first_out: float | None = None  # source time of the first frame decoded
    # one scaler for the whole session: frame.to_ndarray(width=...) builds a new swscale context per frame, most of
    # a conversion's cost, holding the GIL (docs/measurements.md)
    scaler: VideoReformatter = field(default_factory=VideoReformatter)
    resampler: Any = None
    audio_next: float | None = None  # source time where the last decoded audio frame ended


class MediaReader:
    """Open a source and iterate over :class:`VideoFrame` and :class:`AudioWindow` items in stream order.

    ``fps`` is the detection rate video is sampled to; ``width`` x ``height`` the model's luma input. Audio is
    resampled to ``sample_rate`` mono and cut into windows of ``audio_window_s`` every ``audio_hop_s``.
    Either modality can be turned off. Not thread-safe: one reader per capture thread. ``clock`` (monotonic
    seconds) drives the stall watchdog.
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
        clock: Callable[[], float] = time.monotonic,
        decoder_threads: int = 0,
        packet_sink: PacketSink | None = None,
        on_video_frame: Callable[[int, float | None, bool], None] | None = None,
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
        self._clock = clock
        self._skew_warned = False
        # 0: DECODER_THREADS frame threads; 1 when cameras outnumber cores: frame threads cost more CPU per frame
        # than one thread (edge bench), a price worth paying only when a core would otherwise sit idle
        self.decoder_threads = decoder_threads
        # the camera's packet ring when it keeps snapshots or clips (pipeline.media); None costs one test per packet
        self.packet_sink = packet_sink
        # ``edge score``'s one row per input frame: (index in the input, source time or None, sampled) for every decoded
        # video frame, sampled or not, before the sampled one is yielded
        self.on_video_frame = on_video_frame

    # -- opening ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        spec = self.spec
        kind = spec.kind
        try:
            if kind is SourceKind.RTSP:
                self.container = open_rtsp(spec)
            elif kind is SourceKind.IMAGES:
                self.container = self._open_images()
            else:
                if not os.path.exists(spec.url):
                    raise SourceNotFoundError(f"{spec.url}: no such file")
                if os.path.isdir(spec.url):
                    raise SourceFormatError(f"{spec.url}: is a directory without image frames")
                if os.path.getsize(spec.url) == 0:
                    raise SourceFormatError(f"{spec.url}: empty file (0 bytes)")
                self.container = av.open(spec.url, timeout=(spec.open_timeout_s, spec.read_timeout_s))
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV raises a zoo of errors; each becomes one clear SourceError
            raise open_error(exc, spec) from exc
        if not self._streams():
            self.close()
            raise SourceFormatError(f"{spec.safe_url}: no video or audio stream to decode")

    def _open_images(self) -> Any:
        spec = self.spec
        seq = image_sequence(spec.url)
        if not seq.files:
            inside = expand_folders([spec.url]) if os.path.isdir(spec.url) else [spec.url]
            if inside != [spec.url]:  # a data set's folder of clips or of frame folders: one input at a time here
                names = ", ".join(os.path.basename(x) for x in inside[:3]) + (", ..." if len(inside) > 3 else "")
                raise SourceNotFoundError(
                    f"{spec.url}: holds recordings or frame folders ({names}), not frames: give one of them"
                )
            raise SourceNotFoundError(f"{spec.url}: no image matches")
        options = {"framerate": str(spec.input_fps or self.fps)}
        if seq.glob:
            options["pattern_type"] = "glob"
        else:
            options["pattern_type"] = "sequence"
            options["start_number"] = str(seq.start_number)
        return av.open(seq.pattern, format="image2", options=options)

    def _streams(self) -> list[Any]:
        streams: list[Any] = []
        if self.want_video and self.container.streams.video:
            v = self.container.streams.video[0]
            set_decoder_threads(v, self.decoder_threads, self.spec.skip_loop_filter)
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
        close_container(self.container, self.spec.safe_url)
        self.container = None

    # -- reading ---------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[VideoFrame | AudioWindow]:
        return self.items()

    def items(
        self, stop: threading.Event | None = None, *, timeline: StreamTimeline | None = None
    ) -> Generator[VideoFrame | AudioWindow, None, None]:
        """Yield items until the stream ends, ``stop`` is set, or a :class:`SourceError` is raised.

        ``timeline`` carries source time across readers: a capture worker keeps one per source and calls its
        ``new_session`` before each reconnection. Without one, pts are the source's own (jumps aside).
        """
        if self.container is None:
            self.open()
        sink = self.packet_sink
        if sink is None:
            yield from self._items(stop, timeline if timeline is not None else StreamTimeline())
            return
        sink.begin_session(self._streams())
        try:
            yield from self._items(stop, timeline if timeline is not None else StreamTimeline())
        finally:
            sink.end_session()

    def _items(
        self, stop: threading.Event | None, tl: StreamTimeline
    ) -> Generator[VideoFrame | AudioWindow, None, None]:
        """Demux and decode: every packet to the packet sink, then decoded; each frame to sampling (video) or
        audio windowing; the watchdog after each packet."""
        spec = self.spec
        streams = self._streams()
        main_kind = "video" if any(s.type == "video" for s in streams) else "audio"
        windower = AudioWindower(spec.camera_id, window=self.window, hop=self.hop, sample_rate=self.sample_rate)
        session = _Session(stop, tl, 1.0 / self.fps, self._clock(), _VideoSampler(1.0 / self.fps), windower)
        watchdog = _Watchdog(spec, [s.type for s in streams], main_kind, session.started)
        sink = self.packet_sink
        last_packet: Any = None  # how far a file got, against what its header declares (truncation)
        try:
            for packet in self.container.demux(streams):
                if stop is not None and stop.is_set():
                    return
                if packet.pts is not None:
                    last_packet = packet
                kind = packet.stream.type
                if sink is not None:
                    # before decoding: a frame's packet is in the ring before the frame reaches the scorer
                    sink.add(packet, kind, tl.offset(kind))
                frames = self._decode(packet, kind, watchdog)
                now = self._clock()
                watchdog.check(kind, bool(frames), now)
                for frame in frames:
                    stage = self._video(session, frame, now) if kind == "video" else self._audio(session, frame, now)
                    if not (yield from stage):
                        return
        except SourceError:
            raise
        except (av.error.FFmpegError, OSError, EOFError) as exc:
            # media and network errors become SourceErrors; anything else is a bug and propagates as it is
            raise _read_error(exc, spec) from exc
        if session.first_out is None and not spec.live:
            raise SourceFormatError(f"{spec.safe_url}: nothing decodable in it")
        if not spec.live:
            _check_complete(self.container, last_packet, spec)

    def _decode(self, packet: Any, kind: str, watchdog: _Watchdog) -> list[Any]:
        """The frames of one packet; an undecodable one is a glitch (counted), until the stream is garbage."""
        try:
            frames: list[Any] = packet.decode()
            watchdog.decoded(kind)
        except (av.error.FFmpegError, ValueError) as exc:
            # one bad packet (corrupt data, a codec's complaint of any kind) is a glitch, not the end
            self.decode_errors += 1
            log.debug("%s: undecodable %s packet: %s", self.spec.safe_url, kind, exc)
            watchdog.undecodable(kind, exc)
            return []
        return frames

    def _video(self, s: _Session, frame: Any, now: float) -> Generator[VideoFrame, None, bool]:
        """Sampling: ``frame`` yielded as the model's luma if it is due; False when stopped while pacing."""
        self.video_frames_decoded += 1
        index, seen = self.video_frames_decoded - 1, self.on_video_frame
        raw = _seconds(frame)
        if raw is None:
            if seen is not None:
                seen(index, None, False)
            return True
        out = s.tl.map("video", raw, gap_s=s.period, now=now)
        if s.first_out is None:
            s.first_out = out
        due = s.sampler.due(out, s.tl.segment("video"))
        if seen is not None:
            seen(index, out, due)
        if not due:
            return True
        if not self._pace(s, out):
            return False
        luma = s.scaler.reformat(
            frame, width=self.width, height=self.height, format="gray", interpolation="AREA"
        ).to_ndarray()
        wt, wclock = self._wall(s, "video", out)
        yield VideoFrame(self.spec.camera_id, s.tl.video_seq, out, time.monotonic_ns(), wt, luma, wclock)
        s.tl.video_seq += 1
        return True

    def _audio(self, s: _Session, frame: Any, now: float) -> Generator[AudioWindow, None, bool]:
        """Audio windowing: ``frame`` resampled to ``sample_rate`` mono and cut into windows of ``window`` samples
        every ``hop``; a gap or overlap drops the partial window. False when stopped while pacing."""
        raw = _seconds(frame)
        duration = frame.samples / frame.sample_rate if frame.sample_rate else 0.0
        if raw is None:
            if s.audio_next is None:
                return True
            out = s.audio_next  # no pts: it follows the previous frame
        else:
            out = s.tl.map("audio", raw, gap_s=s.period, now=now)
        if s.first_out is None:
            s.first_out = out
        if s.audio_next is None or abs(out - s.audio_next) > _AUDIO_RESYNC_S:
            # first audio, or a gap / overlap: the partial window is dropped, windows restart here
            s.resampler = None
            s.windower.restart(0, origin=out)
        s.audio_next = out + duration
        chunks = self._resampled(s, frame)
        samples = chunks[0] if len(chunks) == 1 else np.concatenate(chunks or [np.zeros(0, np.float32)])
        for pts, window in s.windower.cut(samples):
            if not self._pace(s, pts + self.window / self.sample_rate):
                return False
            wt, wclock = self._wall(s, "audio", pts)
            yield AudioWindow(
                self.spec.camera_id, s.tl.audio_seq, pts, time.monotonic_ns(), wt, window, self.sample_rate, wclock
            )
            s.tl.audio_seq += 1
        return True

    def _resampled(self, s: _Session, frame: Any) -> list[np.ndarray]:
        """``frame``'s samples as float32 mono at ``sample_rate``."""
        if (
            frame.sample_rate == self.sample_rate
            and frame.layout.nb_channels == 1
            and frame.format.name in _FLOAT_FORMATS
        ):
            # already float mono at our rate (AAC, Opus decode to fltp): its one plane is the samples, bit for bit
            # what the resampler gives, without its filter graph (12 us per frame holding the GIL, and a pool of
            # threads woken for each frame)
            return [np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples)]
        if s.resampler is None:
            s.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
        try:
            resampled = s.resampler.resample(frame)
        except ValueError:  # the input's rate or layout changed mid-stream: a fresh resampler
            s.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
            resampled = s.resampler.resample(frame)
        # packed float32 mono: the plane is the samples (to_ndarray() costs 4x this)
        return [np.frombuffer(rf.planes[0], dtype=np.float32, count=rf.samples) for rf in resampled]

    def _wall(self, s: _Session, kind: str, out: float) -> tuple[datetime, WallClock]:
        """Wall time of source time ``out`` (``pipeline.frames``). A live camera's comes from its RTCP sender reports
        when it sent any: FFmpeg's RTSP demuxer maps the first report's NTP time to pts 0 and PyAV exposes it as
        ``InputContainer.start_time_realtime`` (µs since the Unix epoch), so wall time = that + the frame's
        RTP-derived pts (``WallClock.RTCP``). Until the first report (GStreamer sends one within ~1 s) it is the
        receive clock (``WallClock.RECEIVE``). Files count from the start of the replay (``WallClock.FILE``)."""
        if not self.spec.live:
            return s.start_wall + timedelta(seconds=out - (s.first_out or 0.0)), WallClock.FILE
        rtcp_us = self.container.start_time_realtime
        if rtcp_us is None:
            return utc_now(), WallClock.RECEIVE
        stamp = datetime.fromtimestamp(rtcp_us / 1e6 + s.tl.raw(kind, out), tz=timezone.utc)
        if not self._skew_warned and abs((stamp - utc_now()).total_seconds()) > _RTCP_SKEW_WARN_S:
            self._skew_warned = True
            log.warning(
                "camera %s: its RTCP clock is %.0f s off ours; wall times follow the camera",
                self.spec.camera_id,
                (stamp - utc_now()).total_seconds(),
            )
        return stamp, WallClock.RTCP

    def _pace(self, s: _Session, out: float) -> bool:
        """Sleep until ``out`` is due when replaying at real-time pace; False if stopped meanwhile."""
        if not self.spec.pace or self.spec.live or s.first_out is None:
            return True
        delay = s.started + (out - s.first_out) - self._clock()
        if delay > 0:
            if s.stop is not None:
                return not s.stop.wait(delay)
            time.sleep(delay)
        return True


_TRUNCATED_S = 1.0
_TRUNCATED_FRACTION = 0.05


def _check_complete(container: Any, last_packet: Any, spec: SourceSpec) -> None:
    """Raise ``SourceFormatError`` when a file's data ends well before the duration its header declares: a copy
    cut short, a recording that died mid-write. Read to its end, it would replay "successfully" what little it
    holds."""
    declared_us, start_us = getattr(container, "duration", None), getattr(container, "start_time", None) or 0
    if not declared_us or last_packet is None or last_packet.time_base is None:
        return
    declared = declared_us / 1e6
    reached = float(last_packet.pts * last_packet.time_base) - start_us / 1e6
    if declared - reached > _TRUNCATED_S + _TRUNCATED_FRACTION * declared:
        raise SourceFormatError(
            f"{spec.safe_url}: truncated: its data ends at {reached:.1f} s of the {declared:.1f} s its header declares"
        )


_FLOAT_FORMATS = frozenset({"flt", "fltp"})  # 32-bit float samples, packed or planar (the same for mono)


def _seconds(frame: Any) -> float | None:
    pts, tb = frame.pts, frame.time_base
    if pts is None or tb is None:
        return None
    # the same correctly rounded quotient as float(pts * tb), without building Fractions (GIL time per frame)
    return pts * tb.numerator / tb.denominator


def open_error(exc: BaseException, spec: SourceSpec) -> SourceError:
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
    if isinstance(exc, EOFError):
        return SourceFormatError(f"{where}: no media data after its header ({detail})")
    if isinstance(exc, (av.error.InvalidDataError, av.error.PatchWelcomeError, av.error.DecoderNotFoundError)):
        return SourceFormatError(f"{where}: not a media file we can decode ({detail})")
    return SourceError(f"{where}: {detail or type(exc).__name__}")


def _read_error(exc: BaseException, spec: SourceSpec) -> SourceError:
    """The error for a read that failed after a successful open."""
    detail = redact_text(str(getattr(exc, "strerror", None) or exc)).strip() or type(exc).__name__
    if not spec.live:
        return SourceFormatError(f"{spec.safe_url}: cannot read on ({detail})")
    if isinstance(exc, (TimeoutError, av.error.ExitError)):
        return SourceStalledError(f"{spec.safe_url}: nothing received for {spec.read_s:g} s")
    return SourceConnectionError(f"{spec.safe_url}: reading the stream failed ({detail})")


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
    on_video_frame: Callable[[int, float | None, bool], None] | None = None,
) -> Generator[VideoFrame | AudioWindow, None, None]:
    """Decode a file or image sequence as fast as possible (training, ``edge score``). ``on_video_frame``: see
    ``MediaReader``."""
    reader = MediaReader(
        SourceSpec(camera_id=camera_id, url=url, input_fps=input_fps),
        width=width,
        height=height,
        fps=fps,
        audio_window_s=audio_window_s,
        audio_hop_s=audio_hop_s,
        sample_rate=sample_rate,
        video=video,
        audio=audio,
        on_video_frame=on_video_frame,
    )
    reader.open()
    try:
        yield from reader.items()
    finally:
        reader.close()
