"""``edge bench``: what the pipeline costs beyond decoding, on simulated 720p cameras, measured within one run.

What it measures (see ``benchmarks/README.md`` for how to read the figures)::

    clip     720p25 H.264 (~3 Mbit/s, keyframe every 2 s, no B-frames) + AAC 16 kHz mono, 24 s, made once from
             samples/normal_eval.mkv (scaled up, with mild sensor noise so it needs the bit rate of a real camera)
             and cached under ~/.cache/lepton-edge/bench/
    file     N cameras read the clip (looped through FFmpeg's concat demuxer) as fast as possible: the only mode
             where ``ratio`` = pipeline throughput / decode-only throughput says what the pipeline costs
    rtsp     N simulated live cameras (edge/rtsp_simulator.py, one mount each), paced at 25 fps: throughput is
             capped there, so what matters is latency, drops and the CPU each camera costs
    sweep    the largest N whose cameras all stay real time over RTSP

Each mode alternates its two sides within one run, pipeline / decode-only / decode-only / pipeline (ABBA, repeated
``--rounds`` times; S measured seconds per side in all), so that the other tenants of a shared machine weigh on
both sides alike. Absolute fps
follow the machine's load; only the ratios measured within one run are comparable between runs.

*Decode-only* is the floor a plain decoder sets: the same streams demuxed and every video and audio frame fully
decoded by PyAV (deblocking on, the reader's thread rule: ``AUTO``, one thread when cameras outnumber cores),
nothing else. The *pipeline* is a :class:`pipeline.runner.Runner` over the same sources with the given model
package (video scored at its fps, audio continuously) and the cameras' decoder settings, by default deblocking key
frames only (``--skip-loop-filter``). Throughput of the pipeline counts only media that went all the way through
scoring.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.argtypes import positive_float, positive_int
from edge.simulate import SIMULATOR, SYSTEM_PYTHON, die_with_parent, read_ready_line
from pipeline.models.default_package import default_package_dir

if TYPE_CHECKING:
    from pipeline.frames import Score
    from pipeline.runner import Runner
    from pipeline.scoring_model import PackageScorer

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

TARGET_RATIO = 0.85
TARGET_RSS_MB = 150.0
READY_TIMEOUT_S = 30.0
SWEEP_STEPS = (1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64)
# Real time over RTSP (sweep): every camera keeps up with the model's rates, drops (almost) nothing, stays current.
RT_RATE_FRACTION = 0.95
RT_MAX_DROP_FRACTION = 0.01
RT_MAX_P95_MS = 1000.0
LOAD_NOTE = (
    "absolute fps depend on machine load (other tenants, CPU frequency); compare only ratios measured within "
    "one run"
)


# ------------------------------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``edge bench`` on the ``edge`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure pipeline vs decode-only throughput, latency and memory on simulated 720p cameras",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--cameras", type=positive_int, default=1, help="number of cameras N (default 1)")
    p.add_argument(
        "--seconds", type=positive_float, default=20.0,
        help="measured seconds per side (pipeline, decode-only) and mode; per step with --sweep (default 20)",
    )
    p.add_argument(
        "--source", choices=("file", "rtsp", "both"), default="file",
        help="file: local files as fast as possible (the ratio); rtsp: live simulated cameras (latency, drops, "
             "CPU per camera); both (default file)",
    )
    p.add_argument("--rounds", type=positive_int, default=2,
                   help="ABBA rounds per mode (pipeline, decode-only, decode-only, pipeline), each phase "
                        "seconds / (2 x rounds): more rounds follow a changing machine load more closely (default 2)")
    p.add_argument("--sweep", action="store_true",
                   help="instead: find the largest N that stays real time over RTSP (N = 1, 2, 4, 6, 8, ...)")
    p.add_argument("--sweep-budget", type=positive_float, default=300.0,
                   help="upper bound on the sweep's total seconds (default 300)")
    p.add_argument("--model", type=Path, default=default_package_dir(),
                   help="model package (default: the bundled one)")
    p.add_argument("--intra-op-threads", type=positive_int, default=1,
                   help="ONNX Runtime threads per inference (default 1, the engine's default)")
    p.add_argument("--max-batch", type=positive_int, default=8, help="scoring micro-batch (default 8)")
    p.add_argument("--skip-loop-filter", choices=("nokey", "none"), default="nokey",
                   help="the pipeline's deblocking, as a camera's skip_loop_filter (default nokey, as cameras are "
                        "configured by default); decode-only always deblocks every frame")
    p.add_argument("--clip", type=Path, default=None,
                   help="benchmark this clip instead of the generated 720p one (MKV or MP4)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"where the clip is kept ({DEFAULT_CACHE})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    """Entry point of ``edge bench``; returns an exit code."""
    from pipeline.errors import PipelineError

    try:
        clip = ensure_clip(args.cache_dir) if args.clip is None else describe_clip(args.clip, args.cache_dir)
        bench = Bench(
            clip, model_dir=args.model, intra_op_threads=args.intra_op_threads, max_batch=args.max_batch,
            skip_loop_filter=args.skip_loop_filter,
        )
        if args.sweep:
            report = bench.sweep(args.seconds, args.sweep_budget)
        else:
            modes = ("file", "rtsp") if args.source == "both" else (args.source,)
            report = bench.run(args.cameras, args.seconds, modes, args.rounds)
    except (BenchError, PipelineError, OSError) as exc:
        print(f"edge bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0


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
                "codec": v.codec_context.name, "width": v.codec_context.width, "height": v.codec_context.height,
                "fps": float(v.average_rate or CLIP_FPS),
                "kbps": round(sizes["video"] * 8 / max(duration, 1e-9) / 1000),
                "keyframes": keyframes,
            }
        if a is not None:
            info["audio"] = {
                "codec": a.codec_context.name, "sample_rate": a.codec_context.sample_rate,
                "channels": a.codec_context.channels, "kbps": round(sizes["audio"] * 8 / max(duration, 1e-9) / 1000),
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
    """``edge/rtsp_simulator.py`` serving one mount per camera, in a child process under Debian's Python."""

    def __init__(self, clip: Path, n: int) -> None:
        self.names = [f"cam{i + 1}" for i in range(n)]
        self._clip = clip
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="edge-bench-rtsp-", suffix=".log", delete=False)  # noqa: SIM115
        self.base_url = ""

    def __enter__(self) -> SimulatedCameras:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            raise BenchError(f"{SYSTEM_PYTHON} not found: the RTSP simulator needs Debian's Python and GStreamer "
                             "(packages: python tests/fixtures/rtsp.py)")
        cmd = [SYSTEM_PYTHON, str(SIMULATOR), "--host", "127.0.0.1", "--port", "0"]
        for name in self.names:
            cmd += ["--mount", f"{name}={self._clip}"]
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log, preexec_fn=die_with_parent,
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


# ------------------------------------------------------------------------------------------------- /proc
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu_seconds(stat_path: str) -> float:
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def thread_cpu() -> dict[str, float]:
    """CPU seconds by role: Python threads by name, the rest (FFmpeg's decoder threads, ORT pools) as ``native``."""
    roles: dict[str, float] = {}
    named = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    for tid in os.listdir("/proc/self/task"):
        name = named.get(int(tid))
        if name is None:
            role = "native"
        elif name.startswith(("capture-", "bench-decode-")):
            role = "capture"
        elif name == "scoring":
            role = "scoring"
        else:
            role = "other"
        roles[role] = roles.get(role, 0.0) + _proc_cpu_seconds(f"/proc/self/task/{tid}/stat")
    return roles


class RssSampler:
    """Peak VmRSS while running, sampled every 0.1 s (a thread)."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


# ------------------------------------------------------------------------------------------------- decode-only
class DecodeOnly:
    """Demux and decode every video and audio frame of one source on a thread; count, keep nothing."""

    def __init__(self, cam: str, url: str, live: bool, stop: threading.Event) -> None:
        self.cam = cam
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
        """The reader's thread rule (``pipeline/sources/reader.py``), and full deblocking: a plain decoder's work."""
        from pipeline.sources.reader import set_decoder_threads

        set_decoder_threads(stream, 1 if self.one_thread else 0)

    def _open(self) -> Any:
        import av

        if self.live:  # the reader's options (pipeline/sources/reader.py), so both sides connect alike
            return av.open(self.url, options={"rtsp_transport": "tcp", "timeout": "5000000",
                                              "analyzeduration": "500000", "probesize": "500000"}, timeout=(5, 5))
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


# ------------------------------------------------------------------------------------------------- results
@dataclass
class CameraSide:
    """One camera's counts over the measured windows of one side (summed over that side's phases)."""

    seconds: float = 0.0
    video_frames: float = 0.0  # decoded (decode-only), or decoded by the capture thread (pipeline)
    throughput_frames: float = 0.0  # pipeline: frames of the stream whose sampled frames were scored
    scored: int = 0
    audio_windows: int = 0
    audio_frames: int = 0
    dropped: int = 0
    latency_ms: list[float] = field(default_factory=list)
    audio_latency_ms: list[float] = field(default_factory=list)


@dataclass
class SideTotals:
    seconds: float = 0.0
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    threads: dict[str, float] = field(default_factory=dict)
    cameras: dict[str, CameraSide] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add_threads(self, before: dict[str, float], after: dict[str, float]) -> None:
        for role in set(before) | set(after):
            self.threads[role] = self.threads.get(role, 0.0) + after.get(role, 0.0) - before.get(role, 0.0)


class _ScoreTap:
    """``on_score``: per camera, the latest scored video pts and latencies (scoring thread writes, we read)."""

    def __init__(self) -> None:
        self.video_pts: dict[str, float] = {}
        self.video: dict[str, int] = {}
        self.audio: dict[str, int] = {}
        self.latency: dict[str, list[float]] = {}
        self.audio_latency: dict[str, list[float]] = {}
        self.recording = False

    def __call__(self, s: Score) -> None:
        now = time.monotonic_ns()
        cam = s.camera_id
        if s.modality.value == "video":
            self.video[cam] = self.video.get(cam, 0) + 1
            self.video_pts[cam] = max(self.video_pts.get(cam, s.pts), s.pts)
            if self.recording:
                self.latency.setdefault(cam, []).append((now - s.monotonic_ns) / 1e6)
        elif s.modality.value == "audio":  # (temporal scores follow the video frames: not counted again)
            self.audio[cam] = self.audio.get(cam, 0) + 1
            if self.recording:
                self.audio_latency.setdefault(cam, []).append((now - s.monotonic_ns) / 1e6)


# ------------------------------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, clip: Clip, *, model_dir: Path, intra_op_threads: int, max_batch: int,
                 skip_loop_filter: str = "nokey") -> None:
        from pipeline.engines.base import OrtEngineConfig
        from pipeline.models.package import ModelPackage
        from pipeline.scoring_model import PackageScorer

        self.clip = clip
        self.fps = float(clip.info["video"]["fps"])
        self.model_dir = model_dir
        self.intra_op_threads = intra_op_threads
        self.max_batch = max_batch
        self.skip_loop_filter = skip_loop_filter
        self.scorer: PackageScorer = PackageScorer(
            ModelPackage.load(model_dir), OrtEngineConfig(intra_op_num_threads=intra_op_threads)
        )
        self._warm_up()
        self.baseline_rss_mb = rss_mb()

    def _warm_up(self) -> None:
        """One inference at the largest batch, so the model's own memory is in the baseline, not per camera."""
        import numpy as np

        m = self.scorer
        if m.has_video:
            m.score_video(np.zeros((self.max_batch, m.context + 1, m.height, m.width), dtype=np.uint8))
        if m.has_audio:
            n = int(round(m.audio_window_s * m.sample_rate))
            m.score_audio(np.zeros((self.max_batch, n), dtype=np.float32))

    # -- one phase of each side --------------------------------------------------------------------------
    @staticmethod
    def _warmup_s(live: bool) -> float:
        # live: the first scores need context+1 frames at the model's fps (0.8 s) after the first keyframe;
        # files: the decoders' frame threads fill and the first stacks are scored within a few hundred ms
        return 2.5 if live else 0.5

    def decode_phase(self, urls: dict[str, str], live: bool, seconds: float, into: SideTotals,
                     server: SimulatedCameras | None, decoder: type[DecodeOnly] = DecodeOnly) -> None:
        stop = threading.Event()
        workers = {cam: decoder(cam, url, live, stop) for cam, url in urls.items()}
        one_thread = len(urls) >= (os.cpu_count() or 1)  # the runner's rule (pipeline/runner.py)
        for w in workers.values():
            w.one_thread = one_thread
            w.start()
        try:
            time.sleep(self._warmup_s(live))
            c0 = {cam: (w.video_frames, w.audio_frames) for cam, w in workers.items()}
            th0, cpu0, srv0, t0 = thread_cpu(), time.process_time(), _server_cpu(server), time.monotonic()
            time.sleep(seconds)
            t1, cpu1, srv1, th1 = time.monotonic(), time.process_time(), _server_cpu(server), thread_cpu()
            c1 = {cam: (w.video_frames, w.audio_frames) for cam, w in workers.items()}
        finally:
            stop.set()
            for w in workers.values():
                w.join(10)
        into.seconds += t1 - t0
        into.cpu_s += cpu1 - cpu0
        into.server_cpu_s += srv1 - srv0
        into.add_threads(th0, th1)
        for cam, w in workers.items():
            side = into.cameras.setdefault(cam, CameraSide())
            side.seconds += t1 - t0
            side.video_frames += c1[cam][0] - c0[cam][0]
            side.audio_frames += c1[cam][1] - c0[cam][1]
            if w.error:
                into.errors.append(f"{cam} (decode-only): {w.error}")

    def pipeline_phase(self, urls: dict[str, str], live: bool, seconds: float, into: SideTotals,
                       server: SimulatedCameras | None, rss: RssSampler) -> None:
        from pipeline.runner import Runner, RunnerSettings
        from pipeline.sources.spec import SourceSpec

        tap = _ScoreTap()
        specs = [SourceSpec(camera_id=cam, url=url, skip_loop_filter=self.skip_loop_filter)
                 for cam, url in urls.items()]
        runner = Runner(specs, self.scorer, lambda ev: None, RunnerSettings(max_batch=self.max_batch), on_score=tap)
        failures = runner.open_sources()
        if failures:
            raise BenchError("; ".join(f"{cam}: {err}" for cam, err in sorted(failures.items())))
        runner.start()
        try:
            time.sleep(self._warmup_s(live))
            s0 = self._snapshot(runner, tap)
            tap.recording = True
            th0, cpu0, srv0, t0 = thread_cpu(), time.process_time(), _server_cpu(server), time.monotonic()
            time.sleep(seconds)
            t1, cpu1, srv1, th1 = time.monotonic(), time.process_time(), _server_cpu(server), thread_cpu()
            tap.recording = False
            s1 = self._snapshot(runner, tap)
            rss.peak = max(rss.peak, rss_mb())
        finally:
            runner.stop()
            runner.join(10)
        into.seconds += t1 - t0
        into.cpu_s += cpu1 - cpu0
        into.server_cpu_s += srv1 - srv0
        into.add_threads(th0, th1)
        for cam in urls:
            side = into.cameras.setdefault(cam, CameraSide())
            a, b = s0[cam], s1[cam]
            side.seconds += t1 - t0
            side.video_frames += (b["decoded_pts"] - a["decoded_pts"]) * self.fps
            side.throughput_frames += (b["scored_pts"] - a["scored_pts"]) * self.fps
            side.scored += int(b["scored"] - a["scored"])
            side.audio_windows += int(b["audio"] - a["audio"])
            side.dropped += int(b["dropped"] - a["dropped"])
            side.latency_ms += tap.latency.get(cam, [])
            side.audio_latency_ms += tap.audio_latency.get(cam, [])
            if b["scored"] == a["scored"] and b["audio"] == a["audio"]:
                into.errors.append(f"{cam} (pipeline): nothing scored; state {runner.workers[cam].state.value}, "
                                   f"last error {runner.workers[cam].last_error}")

    @staticmethod
    def _snapshot(runner: Runner, tap: _ScoreTap) -> dict[str, dict[str, float]]:
        out = {}
        for cam, w in runner.workers.items():
            latest = w.timeline.latest
            out[cam] = {
                "decoded_pts": latest if latest is not None else 0.0,
                "scored_pts": tap.video_pts.get(cam, 0.0),
                "scored": tap.video.get(cam, 0),
                "audio": tap.audio.get(cam, 0),
                "dropped": w.buffer.dropped,
            }
        return out

    # -- a mode: ABBA ------------------------------------------------------------------------------------
    def measure(self, mode: str, n: int, seconds: float, rounds: int, rss: RssSampler) -> dict[str, Any]:
        live = mode == "rtsp"
        phase_s = seconds / (2 * rounds)
        pipe, dec = SideTotals(), SideTotals()
        with contextlib.ExitStack() as stack:
            server: SimulatedCameras | None = None
            if live:
                server = stack.enter_context(SimulatedCameras(self.clip.path, n))
                urls = {name: server.url(name) for name in server.names}
            else:
                urls = {f"cam{i + 1}": str(self.clip.loop_path) for i in range(n)}
            phases: list[dict[str, Any]] = []
            for kind in ("pipeline", "decode-only", "decode-only", "pipeline") * rounds:
                _status(f"{mode}: {n} camera(s), {kind} for {phase_s:g} s")
                side = pipe if kind == "pipeline" else dec
                before = _side_progress(side, kind)
                if kind == "pipeline":
                    self.pipeline_phase(urls, live, phase_s, pipe, server, rss)
                else:
                    self.decode_phase(urls, live, phase_s, dec, server)
                after = _side_progress(side, kind)
                phases.append({"side": kind, "fps_per_camera": _r((after[1] - before[1]) / n / (after[0] - before[0]))})
        return self._summarise(mode, n, pipe, dec, phases, rss)

    def _summarise(self, mode: str, n: int, pipe: SideTotals, dec: SideTotals, phases: list[dict[str, Any]],
                   rss: RssSampler) -> dict[str, Any]:
        per_camera: dict[str, Any] = {}
        for cam, p in pipe.cameras.items():
            d = dec.cameras.get(cam, CameraSide())
            d_fps = d.video_frames / d.seconds if d.seconds else 0.0
            t_fps = p.throughput_frames / p.seconds if p.seconds else 0.0
            per_camera[cam] = {
                "decode_only_fps": _r(d_fps),
                "decoded_fps": _r(p.video_frames / p.seconds),
                "throughput_fps": _r(t_fps),
                "scored_fps": _r(p.scored / p.seconds),
                "audio_windows_per_s": _r(p.audio_windows / p.seconds),
                "dropped": p.dropped,
                "latency_ms": _percentiles(p.latency_ms),
                "audio_latency_ms": _percentiles(p.audio_latency_ms),
                "ratio": _r(t_fps / d_fps, 3) if d_fps else None,
            }
        d_total = sum(c.video_frames for c in dec.cameras.values()) / dec.seconds if dec.seconds else 0.0
        p_total = sum(c.throughput_frames for c in pipe.cameras.values()) / pipe.seconds if pipe.seconds else 0.0
        # CPU per second of media, summed over cameras: the pipeline's cost, whatever the load and the pacing
        d_media = sum(c.video_frames for c in dec.cameras.values()) / self.fps
        p_media = sum(c.throughput_frames for c in pipe.cameras.values()) / self.fps
        d_cpu = dec.cpu_s / d_media if d_media else None
        p_cpu = pipe.cpu_s / p_media if p_media else None
        rss_delta = max(0.0, rss.peak - self.baseline_rss_mb)
        return {
            "source": mode,
            "cameras": n,
            "measured_s_per_side": _r(pipe.seconds, 1),
            "ratio": _r(p_total / d_total, 3) if d_total else None,
            "cpu_ratio": _r(d_cpu / p_cpu, 3) if d_cpu and p_cpu else None,
            "decode_only_fps_per_camera": _r(d_total / n),
            "throughput_fps_per_camera": _r(p_total / n),
            "cpu_ms_per_media_s": {"decode_only": _r(d_cpu * 1000 if d_cpu else None),
                                   "pipeline": _r(p_cpu * 1000 if p_cpu else None)},
            "cpu_utilisation": {"decode_only": _r(dec.cpu_s / dec.seconds, 2) if dec.seconds else None,
                                "pipeline": _r(pipe.cpu_s / pipe.seconds, 2) if pipe.seconds else None,
                                "simulator": _r(pipe.server_cpu_s / pipe.seconds, 2) if mode == "rtsp" else None},
            # CPU ms per second of media per camera, by thread role: where the pipeline's extra time goes
            "cpu_ms_by_thread": {
                "decode_only": _by_role(dec.threads, d_media),
                "pipeline": _by_role(pipe.threads, p_media),
            },
            "rss_mb": {"baseline": _r(self.baseline_rss_mb, 1), "peak": _r(rss.peak, 1),
                       "per_camera": _r(rss_delta / n, 1)},
            "per_camera": per_camera,
            "phases": phases,
            "errors": pipe.errors + dec.errors,
        }

    def _header(self) -> dict[str, Any]:
        m = self.scorer
        return {
            "benchmark": "edge bench",
            "note": LOAD_NOTE,
            "machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg(),
                        "cores_available_start": cores_available()},
            "clip": self.clip.info,
            "model": {"path": str(self.model_dir), "video_fps": m.fps if m.has_video else None,
                      "audio_window_s": m.audio_window_s if m.has_audio else None,
                      "audio_hop_s": m.audio_hop_s if m.has_audio else None,
                      "engine": "onnxruntime", "intra_op_threads": self.intra_op_threads,
                      "max_batch": self.max_batch},
            "decoder": {"pipeline_skip_loop_filter": self.skip_loop_filter, "decode_only_skip_loop_filter": "none"},
            "targets": {"ratio": TARGET_RATIO, "rss_mb_per_camera": TARGET_RSS_MB},
        }

    def run(self, n: int, seconds: float, modes: Sequence[str], rounds: int = 2) -> dict[str, Any]:
        report = self._header()
        report.update({"cameras": n, "seconds": seconds,
                       "order": " ".join(["pipeline decode-only decode-only pipeline"] * rounds)})
        results: dict[str, Any] = {}
        with RssSampler() as rss:
            for mode in modes:
                results[mode] = self.measure(mode, n, seconds, rounds, rss)
        main = results[modes[0]]
        report.update({
            "source": modes[0],
            "ratio": main["ratio"],
            "cpu_ratio": main["cpu_ratio"],
            "rss_mb_per_camera": main["rss_mb"]["per_camera"],
            "per_camera": main["per_camera"],
            "modes": results,
        })
        report["machine"]["loadavg_end"] = _loadavg()
        report["machine"]["cores_available_end"] = cores_available()
        report["targets"]["met"] = {
            "ratio": (main["ratio"] or 0) >= TARGET_RATIO if modes[0] == "file" else None,
            "rss": max(r["rss_mb"]["per_camera"] for r in results.values()) < TARGET_RSS_MB,
        }
        return report

    # -- sweep -------------------------------------------------------------------------------------------
    def sweep(self, seconds: float, budget_s: float) -> dict[str, Any]:
        report = self._header()
        m = self.scorer
        need_video = RT_RATE_FRACTION * m.fps if m.has_video else 0.0
        need_audio = RT_RATE_FRACTION / m.audio_hop_s if m.has_audio else 0.0
        criteria = {
            "scored_fps_min": _r(need_video), "audio_windows_per_s_min": _r(need_audio),
            "dropped_fraction_max": RT_MAX_DROP_FRACTION, "latency_p95_ms_max": RT_MAX_P95_MS,
        }
        started = time.monotonic()
        steps: list[dict[str, Any]] = []
        ok_n, fail_n = 0, None
        candidates = list(SWEEP_STEPS)
        with RssSampler() as rss:
            while candidates:
                n = candidates.pop(0)
                # a step costs the measured time plus starting n cameras; stop before the budget would be exceeded
                if time.monotonic() - started + seconds + 5 + 0.2 * n > budget_s:
                    _status(f"sweep: budget of {budget_s:g} s reached before {n} cameras")
                    break
                step = self._sweep_step(n, seconds, rss, need_video, need_audio)
                steps.append(step)
                _status(f"sweep: {n} camera(s): {'real time' if step['realtime'] else 'NOT real time'} "
                        f"({step['why'] or 'all cameras kept up'})")
                if step["realtime"]:
                    ok_n = n
                    if fail_n is not None and fail_n - ok_n > 1:
                        candidates = [(ok_n + fail_n) // 2]
                else:
                    fail_n = n
                    candidates = [(ok_n + fail_n) // 2] if fail_n - ok_n > 1 else []
        report.update({
            "sweep": {"source": "rtsp", "seconds_per_step": seconds, "criteria": criteria, "steps": steps,
                      "largest_realtime": ok_n, "first_failing": fail_n,
                      "elapsed_s": _r(time.monotonic() - started, 1)},
        })
        report["machine"]["loadavg_end"] = _loadavg()
        report["machine"]["cores_available_end"] = cores_available()
        return report

    def _sweep_step(self, n: int, seconds: float, rss: RssSampler, need_video: float,
                    need_audio: float) -> dict[str, Any]:
        side = SideTotals()
        try:
            with SimulatedCameras(self.clip.path, n) as server:
                urls = {name: server.url(name) for name in server.names}
                self.pipeline_phase(urls, True, seconds, side, server, rss)
        except BenchError as exc:
            return {"cameras": n, "realtime": False, "why": str(exc)}
        why: list[str] = []
        worst = {"scored_fps": float("inf"), "audio_windows_per_s": float("inf"), "dropped": 0, "latency_p95_ms": 0.0}
        for cam, c in side.cameras.items():
            scored, audio = c.scored / c.seconds, c.audio_windows / c.seconds
            items = c.scored + c.audio_windows + c.dropped
            p95 = _percentiles(c.latency_ms + c.audio_latency_ms)["p95"] or 0.0
            worst["scored_fps"] = min(worst["scored_fps"], scored)
            worst["audio_windows_per_s"] = min(worst["audio_windows_per_s"], audio)
            worst["dropped"] = max(worst["dropped"], c.dropped)
            worst["latency_p95_ms"] = max(worst["latency_p95_ms"], p95)
            if scored < need_video:
                why.append(f"{cam} scored {scored:.2f} fps")
            if audio < need_audio:
                why.append(f"{cam} {audio:.2f} audio windows/s")
            if items and c.dropped / items > RT_MAX_DROP_FRACTION:
                why.append(f"{cam} dropped {c.dropped}")
            if p95 > RT_MAX_P95_MS:
                why.append(f"{cam} latency p95 {p95:.0f} ms")
        why += side.errors
        return {
            "cameras": n, "realtime": not why, "why": "; ".join(why[:4]) + (" ..." if len(why) > 4 else ""),
            "worst_camera": {k: _r(v) for k, v in worst.items()},
            "cpu_utilisation": _r(side.cpu_s / side.seconds, 2) if side.seconds else None,
            "simulator_cpu_utilisation": _r(side.server_cpu_s / side.seconds, 2) if side.seconds else None,
            "rss_mb_per_camera": _r(max(0.0, rss.peak - self.baseline_rss_mb) / n, 1),
        }


def _by_role(threads: dict[str, float], media_s: float) -> dict[str, float | None]:
    return {role: _r(cpu * 1000 / media_s) for role, cpu in sorted(threads.items()) if media_s and cpu > 0.005}


def _side_progress(side: SideTotals, kind: str) -> tuple[float, float]:
    """(measured seconds, frames through) of one side so far: scored throughput, or decoded frames."""
    frames = sum(c.throughput_frames if kind == "pipeline" else c.video_frames for c in side.cameras.values())
    return side.seconds, frames


def _server_cpu(server: SimulatedCameras | None) -> float:
    return server.cpu_seconds() if server is not None else 0.0


_BURN = "import time\nt=time.monotonic()+{s}\nwhile time.monotonic()<t: pass\nprint(time.process_time())"


def cores_available(seconds: float = 1.0) -> float:
    """CPU the machine gives right now to one busy process per CPU (other tenants take the rest)."""
    n = os.cpu_count() or 1
    procs = [subprocess.Popen([sys.executable, "-c", _BURN.format(s=seconds)], stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    used = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 30)
        with contextlib.suppress(ValueError):
            used += float(out.strip() or 0)
    return round(used / seconds, 2)


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    import numpy as np

    arr = np.asarray(values)
    return {"p50": _r(float(np.percentile(arr, 50))), "p95": _r(float(np.percentile(arr, 95)))}


# ------------------------------------------------------------------------------------------------- output
def format_report(report: dict[str, Any]) -> str:
    """The human tables."""
    lines: list[str] = []
    clip, model = report["clip"], report["model"]
    v, a = clip.get("video", {}), clip.get("audio")
    audio = f" + {a['codec']} {a['sample_rate'] // 1000} kHz" if a else ""
    lines.append(f"clip: {v.get('width')}x{v.get('height')} {v.get('codec')} {v.get('fps'):g} fps "
                 f"{v.get('kbps')} kbit/s{audio}; model {Path(model['path']).name}: video scored at "
                 f"{model['video_fps']} fps, audio windows {model['audio_window_s']} s every {model['audio_hop_s']} s; "
                 f"onnxruntime {model['intra_op_threads']} thread(s), batch <= {model['max_batch']}; pipeline "
                 f"deblocking: skip_loop_filter={report.get('decoder', {}).get('pipeline_skip_loop_filter')} "
                 f"(decode-only deblocks every frame)")
    load = report["machine"]
    lines.append(f"NOTE: {LOAD_NOTE}. {load['cpus']} CPUs; cores available to a busy process per CPU "
                 f"{load.get('cores_available_start')} at the start, {load.get('cores_available_end')} at the end; "
                 f"load average {load.get('loadavg_start')} -> {load.get('loadavg_end')}.")
    if "sweep" in report:
        return "\n".join(lines + [""] + _format_sweep(report["sweep"]))
    for mode, res in report["modes"].items():
        lines.append("")
        lines += _format_mode(mode, res)
    return "\n".join(lines)


def _format_mode(mode: str, res: dict[str, Any]) -> list[str]:
    title = ("file: local files read as fast as possible" if mode == "file"
             else "rtsp: simulated live cameras (paced at 25 fps: throughput is capped, see CPU and latency)")
    out = [f"{title}; {res['cameras']} camera(s), {res['measured_s_per_side']:g} s measured per side "
           f"in {len(res['phases'])} alternating phases (pipeline first)"]
    head = ("camera", "decode-only fps", "decoded fps", "scored fps", "audio win/s", "dropped",
            "latency p50/p95 ms", "audio lat p50/p95", "ratio")
    rows = [head]
    for cam, c in res["per_camera"].items():
        rows.append((cam, f"{c['decode_only_fps']:.1f}", f"{c['decoded_fps']:.1f}", f"{c['scored_fps']:.2f}",
                     f"{c['audio_windows_per_s']:.2f}", str(c["dropped"]), _pp(c["latency_ms"]),
                     _pp(c["audio_latency_ms"]), f"{c['ratio']:.3f}" if c["ratio"] is not None else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out += ["  " + "  ".join(cell.rjust(w) if i else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]
    ratio = res["ratio"]
    verdict = ""
    if mode == "file" and ratio is not None:
        verdict = f" (target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'MISSED'})"
    rss = res["rss_mb"]
    cpu = res["cpu_ms_per_media_s"]
    out.append(f"  ratio {ratio}{verdict}; cpu ratio {res['cpu_ratio']} (decode-only {cpu['decode_only']} vs "
               f"pipeline {cpu['pipeline']} CPU ms per second of media per camera)")
    out.append(f"  RSS {rss['per_camera']} MB per camera (target < {TARGET_RSS_MB:g}: "
               f"{'met' if (rss['per_camera'] or 0) < TARGET_RSS_MB else 'MISSED'}; baseline {rss['baseline']} MB, "
               f"peak {rss['peak']} MB)")
    util = res["cpu_utilisation"]
    out.append(f"  CPU busy: decode-only {util['decode_only']} cores, pipeline {util['pipeline']} cores"
               + (f", simulator {util['simulator']} cores" if util.get("simulator") is not None else ""))
    for side, roles in res["cpu_ms_by_thread"].items():
        out.append(f"  {side} CPU ms per media second by thread: "
                   + ", ".join(f"{role} {ms}" for role, ms in roles.items()))
    out.append("  phases (fps per camera): " + ", ".join(f"{p['side']} {p['fps_per_camera']}" for p in res["phases"]))
    for err in res["errors"]:
        out.append(f"  ! {err}")
    return out


def _format_sweep(sweep: dict[str, Any]) -> list[str]:
    crit = sweep["criteria"]
    out = [f"sweep over RTSP, {sweep['seconds_per_step']:g} s per step; real time = every camera scored >= "
           f"{crit['scored_fps_min']} fps, >= {crit['audio_windows_per_s_min']} audio windows/s, drops <= "
           f"{crit['dropped_fraction_max']:.0%}, latency p95 <= {crit['latency_p95_ms_max']:g} ms"]
    for s in sweep["steps"]:
        w = s.get("worst_camera", {})
        detail = (f"worst camera: {w.get('scored_fps')} fps scored, {w.get('audio_windows_per_s')} audio win/s, "
                  f"{w.get('dropped')} dropped, p95 {w.get('latency_p95_ms')} ms; CPU {s.get('cpu_utilisation')} "
                  f"cores + simulator {s.get('simulator_cpu_utilisation')}; RSS {s.get('rss_mb_per_camera')} MB/camera"
                  if w else "")
        out.append(f"  N={s['cameras']:>3}: {'real time' if s['realtime'] else 'NOT real time':13}  {detail}"
                   + (f"  [{s['why']}]" if s["why"] else ""))
    out.append(f"  largest real-time N: {sweep['largest_realtime']} (first failing: {sweep['first_failing']}; "
               f"{sweep['elapsed_s']} s)")
    return out


def _pp(p: dict[str, float | None]) -> str:
    return "-" if p["p50"] is None else f"{p['p50']:.0f}/{p['p95']:.0f}"


