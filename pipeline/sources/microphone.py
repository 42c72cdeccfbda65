"""A local microphone as a live source: PortAudio capture into the same 16 kHz mono windows as every source.

Two threads meet at one bounded queue. PortAudio's audio thread runs :meth:`MicrophoneReader._callback`, which
only copies each block, stamps it with its first frame's index and the receive clocks, and puts it on the
queue; when the queue is full the oldest block goes (live sources stay current, STYLE.md) and the drop is
counted, so the audio thread never waits on us. The capture thread (``CaptureWorker``) iterates
:meth:`MicrophoneReader.items`, which takes blocks with a short timeout (so ``stop`` is noticed), resamples
them and cuts windows.

Clocks: ``pts`` is the window's first sample counted from the start of the stream, so it never drifts; a gap
(dropped blocks) moves the count on by the frames lost and restarts the window. ``monotonic_ns`` and
``wall_time`` are taken in the callback that delivered the block completing the window
(``WallClock.RECEIVE``).

Samples are captured as 16-bit integers and resampled and downmixed by PyAV's ``AudioResampler``, the same call
:class:`MediaReader` uses for files and cameras: a model hears a microphone exactly as it heard its training files
(the tests check this bit for bit against a decoded WAV); the windows are cut by the same ``AudioWindower``. More
than two channels (mic arrays) are averaged first: they are not loudspeaker positions.

Not done: PortAudio lists devices once, when ``sounddevice`` is imported, and re-listing stops every open
stream (python-sounddevice#125); a USB microphone unplugged and plugged back is found again only after a
restart.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

import av
import numpy as np

from pipeline.errors import SourceConnectionError, SourceError, SourceFormatError, SourceNotFoundError
from pipeline.frames import AudioWindow
from pipeline.sources.audio_windows import AudioWindower
from pipeline.sources.timeline import StreamTimeline

log = logging.getLogger(__name__)

# How often a waiting reader looks at ``stop``.
_POLL_S = 0.1
# A stalled capture thread can block PortAudio's abort inside the driver forever (seen with an ALSA device
# whose read never returns); closing waits this long and then abandons the stream rather than hang the capture
# worker.
_CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class MicrophoneSpec:
    """How to open one microphone. ``device`` is an input device index, a case-insensitive substring of its
    name (an exact name wins over substrings), or None for the system's default input.

    ``capture_rate`` (None: the device's default) and ``channels`` are what PortAudio is asked for; windows
    come out at the reader's ``sample_rate``. ``blocksize`` frames per callback (None: 20 ms); ``latency`` in
    seconds or PortAudio's ``"low"``/``"high"``; ``queue_s`` seconds of audio held between the two threads.
    """

    camera_id: str
    device: str | int | None = None
    capture_rate: int | None = None
    channels: int = 1
    blocksize: int | None = None
    latency: float | str = "high"
    read_timeout_s: float = 5.0
    queue_s: float = 2.0
    backoff_initial_s: float = 0.5  # reconnection back-off, as for cameras (CaptureWorker reads these)
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError("channels must be >= 1")
        if self.capture_rate is not None and self.capture_rate <= 0:
            raise ValueError("capture_rate must be positive")
        if self.blocksize is not None and self.blocksize <= 0:
            raise ValueError("blocksize must be positive (None: 20 ms)")
        if self.read_timeout_s <= 0 or self.queue_s <= 0:
            raise ValueError("read_timeout_s and queue_s must be positive")
        if isinstance(self.latency, str) and self.latency not in ("low", "high"):
            raise ValueError("latency must be seconds, 'low' or 'high'")

    @property
    def live(self) -> bool:
        """A microphone is always live: ``CaptureWorker`` reconnects it and its buffer drops the oldest."""
        return True

    @property
    def safe_url(self) -> str:
        return f"mic:{'default' if self.device is None else self.device}"


class _Block(NamedTuple):
    start: int  # index of the block's first frame since the stream started
    data: np.ndarray  # frames x channels, int16
    monotonic_ns: int
    wall_ns: int


class MicrophoneReader:
    """Capture one microphone and iterate over :class:`AudioWindow` items (the :class:`MediaReader` protocol).

    ``open()`` finds the device and opens the stream without starting it, so nothing piles up between a first
    connection check and the capture thread; ``items(stop)`` starts it. ``container`` is the open PortAudio
    stream, None when closed (``CaptureWorker`` looks at it). Counters: ``overflows`` (PortAudio reported lost
    input), ``dropped_blocks`` (our queue was full), ``stuck_closes`` (a stream abandoned while closing).
    """

    def __init__(
        self,
        spec: MicrophoneSpec,
        *,
        audio_window_s: float = 1.0,
        audio_hop_s: float = 0.5,
        sample_rate: int = 16000,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        self.spec = spec
        self.sample_rate = sample_rate
        self.window = max(1, int(round(audio_window_s * sample_rate)))
        self.hop = max(1, int(round(audio_hop_s * sample_rate)))
        self.container: Any = None
        self.device_name: str | None = None
        self.capture_rate = 0
        self.overflows = 0
        self.dropped_blocks = 0
        self.stuck_closes = 0
        self._sd: Any = None
        self._queue: queue.Queue[_Block] = queue.Queue(maxsize=1)
        self._finished = threading.Event()
        self._frames = 0

    # -- opening ---------------------------------------------------------------------------------------------
    def open(self) -> None:
        spec = self.spec
        where = spec.safe_url
        sd = self._sd = _import_sounddevice()
        index, info = _find_device(sd, spec.device, where)
        rate = spec.capture_rate or int(info["default_samplerate"])
        try:
            sd.check_input_settings(device=index, channels=spec.channels, dtype="int16", samplerate=rate)
        except (sd.PortAudioError, ValueError) as exc:
            raise SourceFormatError(
                f"{where}: {info['name']!r} cannot capture {rate} Hz x {spec.channels} channel(s): {exc}"
            ) from exc
        blocksize = spec.blocksize or max(1, rate // 50)
        self._queue = queue.Queue(maxsize=max(2, math.ceil(spec.queue_s * rate / blocksize)))
        self._finished = threading.Event()
        self._frames = 0
        try:
            stream = sd.InputStream(
                device=index,
                samplerate=rate,
                channels=spec.channels,
                dtype="int16",
                blocksize=blocksize,
                latency=spec.latency,
                callback=self._callback,
                finished_callback=self._finished.set,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise SourceConnectionError(f"{where}: cannot open {info['name']!r}: {exc}") from exc
        self.container = stream
        self.capture_rate = rate
        self.device_name = str(info["name"])
        log.info(
            "%s: opened %r (device %d) at %d Hz x %d, %d-frame blocks, latency %.3f s",
            where,
            self.device_name,
            index,
            rate,
            spec.channels,
            blocksize,
            stream.latency,
        )

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's audio thread: copy and hand over; nothing that can wait (no logging, no long locks)."""
        if status.input_overflow:
            self.overflows += 1
        block = _Block(self._frames, indata.copy(), time.monotonic_ns(), time.time_ns())
        self._frames += frames
        try:
            self._queue.put_nowait(block)
        except queue.Full:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            else:
                self.dropped_blocks += 1
            try:
                self._queue.put_nowait(block)
            except queue.Full:
                self.dropped_blocks += 1

    def close(self) -> None:
        stream, self.container = self.container, None
        if stream is None:
            return
        where = self.spec.safe_url
        closer = threading.Thread(target=_close_stream, args=(stream, where), name=f"close-{where}", daemon=True)
        closer.start()
        closer.join(_CLOSE_TIMEOUT_S)
        if closer.is_alive():
            self.stuck_closes += 1
            log.warning("%s: the audio stream did not close in %.0f s; abandoned", where, _CLOSE_TIMEOUT_S)

    # -- reading ---------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[AudioWindow]:
        return self.items()

    @property
    def decode_errors(self) -> int:
        return 0  # PCM from PortAudio has nothing to decode

    def items(
        self, stop: threading.Event | None = None, *, timeline: StreamTimeline | None = None
    ) -> Iterator[AudioWindow]:
        """Yield windows until ``stop`` is set; a silent or vanished device raises SourceConnectionError.

        With a ``timeline`` (the capture worker's), window pts continue across reopenings of the device."""
        for window in self._windows(stop):
            if timeline is not None:
                pts = timeline.map(
                    "audio", window.pts, gap_s=self.hop / self.sample_rate, now=window.monotonic_ns / 1e9
                )
                window = dataclasses.replace(window, pts=pts)
            yield window

    def _windows(self, stop: threading.Event | None) -> Iterator[AudioWindow]:
        if self.container is None:
            self.open()
        spec = self.spec
        where = spec.safe_url
        try:
            self.container.start()
        except self._sd.PortAudioError as exc:
            raise SourceConnectionError(f"{where}: cannot start capture: {exc}") from exc
        resampler = self._resampler()
        windower = AudioWindower(spec.camera_id, window=self.window, hop=self.hop, sample_rate=self.sample_rate)
        expected = 0
        last_data = time.monotonic()
        poll = min(_POLL_S, spec.read_timeout_s)
        while stop is None or not stop.is_set():
            try:
                block = self._queue.get(timeout=poll)
            except queue.Empty:
                silent = time.monotonic() - last_data
                if self._finished.is_set():
                    raise SourceConnectionError(f"{where}: the audio stream stopped (device gone?)") from None
                if silent >= spec.read_timeout_s:
                    raise SourceConnectionError(f"{where}: no audio for {silent:.1f} s") from None
                continue
            last_data = time.monotonic()
            if block.start != expected:
                # blocks were dropped: skip the gap so pts stays true, and start the filter and window afresh
                lost = block.start - expected
                log.warning("%s: %d frames lost (capture queue full); windows restart", where, lost)
                resampler = self._resampler()
                windower.restart(block.start * self.sample_rate // self.capture_rate)
            expected = block.start + len(block.data)
            wall = datetime.fromtimestamp(block.wall_ns / 1e9, tz=timezone.utc)
            yield from windower.push(self._resample(resampler, block.data), block.monotonic_ns, wall)

    def _resampler(self) -> Any:
        return av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)

    def _resample(self, resampler: Any, data: np.ndarray) -> np.ndarray:
        if data.shape[1] > 2:
            mono = data.mean(axis=1, dtype=np.float32) / 32768.0
            frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        else:
            layout = "mono" if data.shape[1] == 1 else "stereo"
            interleaved = np.ascontiguousarray(data).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = self.capture_rate
        chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _import_sounddevice() -> Any:
    """``sounddevice`` loads and initialises PortAudio at import: only done when a microphone is opened."""
    try:
        import sounddevice  # type: ignore[import-untyped]  # no type information shipped
    except ImportError as exc:
        raise SourceError("microphone capture needs the sounddevice package: pip install 'sounddevice>=0.4'") from exc
    except OSError as exc:
        raise SourceError(
            f"microphone capture needs the PortAudio library ({exc}): apt-get install libportaudio2"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - Pa_Initialize failing raises sounddevice's own error type
        raise SourceError(f"PortAudio could not start: {exc}") from exc
    return sounddevice


def _find_device(sd: Any, wanted: str | int | None, where: str) -> tuple[int, dict[str, Any]]:
    inputs = [dict(d) for d in sd.query_devices() if d["max_input_channels"] > 0]
    listing = "; ".join(f"[{d['index']}] {d['name']}" for d in inputs) or "none"
    if wanted is None:
        try:
            matches = [dict(sd.query_devices(kind="input"))]
        except (sd.PortAudioError, ValueError):
            matches = []
    elif isinstance(wanted, int):
        matches = [d for d in inputs if d["index"] == wanted]
    else:
        key = wanted.lower()
        exact = [d for d in inputs if d["name"].lower() == key]
        matches = exact or [d for d in inputs if key in d["name"].lower()]
    if not matches:
        raise SourceNotFoundError(f"{where}: no such input device; input devices: {listing}")
    if len(matches) > 1:
        names = "; ".join(f"[{d['index']}] {d['name']}" for d in matches)
        raise SourceNotFoundError(f"{where}: several input devices match ({names}); give a longer name or the index")
    return int(matches[0]["index"]), matches[0]


def _close_stream(stream: Any, where: str) -> None:
    try:
        stream.abort(ignore_errors=True)
        stream.close(ignore_errors=True)
    except Exception:  # noqa: BLE001 - closing a broken stream must not hide the original error
        log.debug("closing %s failed", where, exc_info=True)
