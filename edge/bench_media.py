"""What ``edge bench`` measures on: the 720p25 benchmark clip (``ensure_clip``: made once from
samples/normal_eval.mkv, scaled up with mild sensor noise, cached with the concat list that loops it) and the
simulated live cameras that serve it over RTSP (``SimulatedCameras``), and the decode-only side that reads them
(``DecodeOnly``). ``BenchError``: the benchmark could not be set up or run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.bench_probes import _proc_cpu_seconds
from edge.simulate import SIMULATOR, SYSTEM_PYTHON, die_with_parent, read_ready_line

ROOT = Path(__file__).resolve().parent.parent
CLIP_SOURCE = ROOT / "samples" / "normal_eval.mkv"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lepton-edge" / "bench"

# The clip: what a typical 720p camera sends.
CLIP_VERSION = 1
CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS = 1280, 720, 25
CLIP_SECONDS = 24.0
CLIP_KBPS = 3000
CLIP_NOISE = 2  # ± luma levels of uniform sensor noise; without it the scaled-up scene needs only ~2 Mbit/s
X264_PARAMS = (
    "bframes=0:keyint=50:min-keyint=50:scenecut=0:sliced-threads=0:"  # 2 s closed GOP, no reordering
    f"vbv-maxrate={int(CLIP_KBPS * 1.2)}:vbv-bufsize={CLIP_KBPS * 2}"
)
LOOP_ENTRIES = 500  # the concat list repeats the clip this often: 3.3 h of media, more than any run reads
READY_TIMEOUT_S = 30.0


class BenchError(RuntimeError):
    """The benchmark could not be set up or run (no simulator, a camera that never streamed)."""


def _status(message: str) -> None:
    """Progress for humans on stderr (stdout is the report)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- clip
@dataclass(frozen=True)
class Clip:
    path: Path  # what the simulator serves
    loop_path: Path  # what file mode reads: the clip repeated by FFmpeg's concat demuxer
    info: dict[str, Any]


def ensure_clip(cache_dir: Path) -> Clip:
    """The 720p25 benchmark clip and its loop list, made once and cached (written atomically)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"clip-{CLIP_HEIGHT}p{CLIP_FPS}-{CLIP_KBPS}k-v{CLIP_VERSION}"
    path = cache_dir / f"{stem}.mkv"
    if not path.exists():
        if not CLIP_SOURCE.exists():
            raise BenchError(f"{CLIP_SOURCE} is missing: the benchmark clip is made from it")
        _status(f"making the benchmark clip once ({CLIP_WIDTH}x{CLIP_HEIGHT}@{CLIP_FPS}, {CLIP_KBPS} kbit/s) ...")
        started = time.monotonic()
        encode_clip(CLIP_SOURCE, path)
        _status(f"   {path} in {time.monotonic() - started:.1f} s")
    return describe_clip(path, cache_dir)


def describe_clip(path: Path, cache_dir: Path) -> Clip:
    """Probe a clip (once; kept beside it in the cache) and write the concat list that loops it."""
    import av

    path = path.resolve()
    if not path.is_file():
        raise BenchError(f"{path}: no such clip")
    cache_dir.mkdir(parents=True, exist_ok=True)
    local = cache_dir / path.name
    if local.resolve() != path:
        # the concat demuxer's safe mode takes only plain names relative to the list: link the clip beside it
        with contextlib.suppress(FileNotFoundError):
            local.unlink()
        local.symlink_to(path)
    info_path = cache_dir / f"{path.name}.info.json"
    if info_path.exists() and info_path.stat().st_mtime >= path.stat().st_mtime:
        info: dict[str, Any] = json.loads(info_path.read_text())
    else:
        info = _probe_clip(av, path)
        info_path.write_text(json.dumps(info, indent=1))
    if not info.get("video"):
        raise BenchError(f"{path}: no video stream")
    loop = cache_dir / f"{path.name}.loop.ffconcat"
    text = "ffconcat version 1.0\n" + f"file '{local.name}'\n" * LOOP_ENTRIES
    if not loop.exists() or loop.read_text() != text:
        loop.write_text(text)
    return Clip(path=path, loop_path=loop, info=info)


def _probe_clip(av: Any, path: Path) -> dict[str, Any]:
    sizes = {"video": 0, "audio": 0}
    with av.open(str(path)) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        duration = float(c.duration or 0) / 1e6
        keyframes = 0
        for pkt in c.demux():
            if pkt.size and pkt.stream.type in sizes:
                sizes[pkt.stream.type] += pkt.size
                keyframes += int(pkt.stream.type == "video" and pkt.is_keyframe)
        info: dict[str, Any] = {"path": str(path), "duration_s": round(duration, 3)}
        if v is not None:
            info["video"] = {
                "codec": v.codec_context.name,
                "width": v.codec_context.width,
                "height": v.codec_context.height,
                "fps": float(v.average_rate or CLIP_FPS),
                "kbps": round(sizes["video"] * 8 / max(duration, 1e-9) / 1000),
                "keyframes": keyframes,
            }
        if a is not None:
            info["audio"] = {
                "codec": a.codec_context.name,
                "sample_rate": a.codec_context.sample_rate,
                "channels": a.codec_context.channels,
                "kbps": round(sizes["audio"] * 8 / max(duration, 1e-9) / 1000),
            }
    return info


def encode_clip(source: Path, out: Path, seconds: float = CLIP_SECONDS) -> None:
    """Scale a sample clip's first ``seconds`` up to 720p with mild sensor noise; H.264 at ~3 Mbit/s and AAC,
    deterministic (also used by ``benchmarks/train_time.py``)."""
    from fractions import Fraction

    import av
    import numpy as np

    rng = np.random.default_rng(CLIP_VERSION)
    tmp = out.with_name(out.name + ".part")
    src = av.open(str(source))
    dst = av.open(str(tmp), "w", format="matroska")
    try:
        vs = dst.add_stream("libx264", rate=CLIP_FPS, options={"preset": "veryfast", "x264-params": X264_PARAMS})
        vs.width, vs.height, vs.pix_fmt = CLIP_WIDTH, CLIP_HEIGHT, "yuv420p"
        vs.bit_rate = CLIP_KBPS * 1000
        a_in = src.streams.audio[0] if src.streams.audio else None
        rate = a_in.codec_context.sample_rate if a_in is not None else 16000
        aus = dst.add_stream("aac", rate=rate, layout="mono") if a_in is not None else None
        if aus is not None:
            aus.bit_rate = 32_000
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        n_video = 0
        n_audio = 0
        streams = [s for s in (src.streams.video[0], a_in) if s is not None]
        for packet in src.demux(streams):
            for frame in packet.decode():
                if not isinstance(frame, (av.VideoFrame, av.AudioFrame)) or frame.pts is None:
                    continue
                if frame.time_base is not None and float(frame.pts * frame.time_base) >= seconds:
                    continue
                if isinstance(frame, av.VideoFrame):
                    big = frame.reformat(
                        width=CLIP_WIDTH, height=CLIP_HEIGHT, format="yuv420p", interpolation="BICUBIC"
                    )
                    planes = big.to_ndarray()
                    luma = planes[:CLIP_HEIGHT].astype(np.int16)
                    luma += rng.integers(-CLIP_NOISE, CLIP_NOISE + 1, luma.shape, dtype=np.int16)
                    planes[:CLIP_HEIGHT] = np.clip(luma, 0, 255)
                    vf = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                    vf.pts = n_video
                    n_video += 1
                    for p in vs.encode(vf):
                        dst.mux(p)
                elif aus is not None:
                    for rf in resampler.resample(frame):
                        rf.pts, rf.time_base = n_audio, Fraction(1, rf.sample_rate)
                        n_audio += rf.samples
                        for p in aus.encode(rf):
                            dst.mux(p)
        for stream in (vs, aus):
            if stream is not None:
                for p in stream.encode(None):
                    dst.mux(p)
    finally:
        dst.close()
        src.close()
    os.replace(tmp, out)


# ------------------------------------------------------------------------------------------------- simulator
class SimulatedCameras:
    """``edge/rtsp_simulator.py`` serving one mount per camera, in a child process under Debian's Python; with a
    ``substream`` (the clip at a detect size, ``edge.substream``) each camera ``camN`` also serves that at
    ``camN-sub``."""

    def __init__(self, clip: Path, n: int, substream: Path | None = None) -> None:
        self.names = [f"cam{i + 1}" for i in range(n)]
        self._clip = clip
        self._substream = substream
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="edge-bench-rtsp-", suffix=".log", delete=False)  # noqa: SIM115
        self.base_url = ""

    def __enter__(self) -> SimulatedCameras:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            raise BenchError(
                f"{SYSTEM_PYTHON} not found: the RTSP simulator needs Debian's Python and GStreamer "
                "(packages: python tests/fixtures/rtsp.py)"
            )
        cmd = [SYSTEM_PYTHON, str(SIMULATOR), "--host", "127.0.0.1", "--port", "0"]
        for name in self.names:
            cmd += ["--mount", f"{name}={self._clip}"]
            if self._substream is not None:
                cmd += ["--mount", f"{name}-sub={self._substream}"]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            preexec_fn=die_with_parent,
        )
        try:
            self.base_url = self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def cpu_seconds(self) -> float:
        """CPU time the server process used so far (it shares the cores with the pipeline)."""
        return _proc_cpu_seconds(f"/proc/{self.pid}/stat") if self.pid else 0.0

    def _wait_ready(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            line = read_ready_line(self._proc.stdout, READY_TIMEOUT_S)
        except (TimeoutError, EOFError) as exc:
            raise BenchError(f"{exc}; its log: {self._log.name}") from exc
        if not line.startswith("READY rtsp://"):
            raise BenchError(f"RTSP simulator said {line!r}; its log: {self._log.name}")
        return line.removeprefix("READY ")

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        self._log.close()
        if exc and exc[0] is None:
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)


# ------------------------------------------------------------------------------------------------- decode-only
class DecodeOnly:
    """Demux and decode every video and audio frame of one source on a thread; count, keep nothing."""

    def __init__(self, cam: str, url: str, live: bool, stop: threading.Event, skip_loop_filter: str = "none") -> None:
        self.cam = cam
        self.skip_loop_filter = skip_loop_filter
        self.url = url
        self.live = live
        self.video_frames = 0
        self.audio_frames = 0
        self.error: str | None = None
        self.one_thread = False  # set by decode_phase with the runner's rule
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name=f"bench-decode-{cam}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def configure_video(self, stream: Any) -> None:
        """The reader's thread rule and deblocking (``pipeline/sources/reader.py``); "none": every frame deblocked."""
        from pipeline.sources.reader import set_decoder_threads

        set_decoder_threads(stream, 1 if self.one_thread else 0, self.skip_loop_filter)

    def _open(self) -> Any:
        import av

        if self.live:  # the reader's options (pipeline/sources/reader.py), so both sides connect alike
            return av.open(
                self.url,
                options={
                    "rtsp_transport": "tcp",
                    "timeout": "5000000",
                    "analyzeduration": "500000",
                    "probesize": "500000",
                },
                timeout=(5, 5),
            )
        return av.open(self.url, timeout=(5, 5))

    def _run(self) -> None:
        import av.error

        try:
            while not self._stop.is_set():
                container = self._open()
                try:
                    streams = []
                    if container.streams.video:
                        v = container.streams.video[0]
                        self.configure_video(v)
                        streams.append(v)
                    streams += list(container.streams.audio[:1])
                    for packet in container.demux(streams):
                        if self._stop.is_set():
                            return
                        try:
                            frames = packet.decode()
                        except (av.error.InvalidDataError, ValueError):
                            continue
                        if packet.stream.type == "video":
                            self.video_frames += len(frames)
                        else:
                            self.audio_frames += len(frames)
                finally:
                    container.close()
                if self.live:
                    self.error = "the camera ended the stream"
                    return
        except Exception as exc:  # noqa: BLE001 - reported in the results, never hidden
            self.error = f"{type(exc).__name__}: {exc}"
