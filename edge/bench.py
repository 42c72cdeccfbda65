"""``edge bench``'s measurement: what the pipeline costs beyond decoding, on simulated 720p cameras, within one
run (its command line: ``edge.bench_cli``).

What it measures (see ``benchmarks/README.md`` for how to read the figures)::

    clip     720p25 H.264 (~3 Mbit/s, keyframe every 2 s, no B-frames) + AAC 16 kHz mono, 24 s, made once from
             samples/normal_eval.mkv (scaled up, with mild sensor noise so it needs the bit rate of a real camera)
             and cached under ~/.cache/lepton-edge/bench/
    file     N cameras read the clip (looped through FFmpeg's concat demuxer) as fast as possible: the only mode
             where ``ratio`` = pipeline throughput / decode-only throughput says what the pipeline costs
    rtsp     N simulated live cameras (edge/rtsp_simulator.py, one mount each), paced at 25 fps: throughput is
             capped there, so what matters is latency, drops and the CPU each camera costs
    sweep    the largest N whose cameras all stay real time over RTSP (``edge.bench_sweep``)

Sides, alternated within one run (``ROUND``: ABBA around the middle, ``--rounds`` times, 3 by default), so that
the other tenants of a shared machine weigh on all alike; each ratio is the median of its rounds', with their
spread. *Decode-only*: the same streams demuxed and every frame decoded by PyAV with the pipeline's decoder
settings (thread rule and ``skip_loop_filter``), nothing else: ``ratio``. *Full decode*: the same, deblocking every
frame as a plain decoder does: ``ratio_vs_full_decode``. *Pipeline*: a :class:`pipeline.runner.Runner` with the
model package; its throughput counts only media that went all the way through scoring.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.bench_media import BenchError, Clip, DecodeOnly, SimulatedCameras, _status
from edge.bench_probes import RssSampler, _loadavg, cores_available, process_cpu_seconds, rss_mb, thread_cpu

if TYPE_CHECKING:
    from pipeline.frames import Score
    from pipeline.runner import Runner
    from pipeline.scoring_model import PackageScorer

TARGET_RATIO = 0.85
TARGET_RSS_MB = 150.0
# The sides of a mode, and one round of them (ABBA around the middle): pipeline, decode-only with the pipeline's
# decoder settings, and a plain decoder's full decode (every frame deblocked).
SIDES = ("pipeline", "decode-only", "full-decode")
ROUND = ("pipeline", "decode-only", "full-decode", "full-decode", "decode-only", "pipeline")
LOAD_NOTE = (
    "absolute fps depend on machine load (other tenants, CPU frequency); compare only ratios measured within one run"
)


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
    main_packets: int = 0  # video packets demuxed from its main stream (a detect substream scored)
    ring_mb: float = 0.0  # largest packet ring held for its snapshots and clips at the end of a phase


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
    def __init__(
        self,
        clip: Clip,
        *,
        model_dir: Path,
        intra_op_threads: int,
        max_batch: int,
        skip_loop_filter: str = "nokey",
        isolation: str = "thread",
    ) -> None:
        from pipeline.engines.base import OrtEngineConfig
        from pipeline.models.package import ModelPackage
        from pipeline.scoring_model import PackageScorer

        self.clip = clip
        self.fps = float(clip.info["video"]["fps"])
        self.model_dir = model_dir
        self.intra_op_threads = intra_op_threads
        self.max_batch = max_batch
        self.skip_loop_filter = skip_loop_filter
        self.isolation = isolation  # each camera's capture: a thread, or a child process (its CPU and RSS counted)
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

    def decode_phase(
        self,
        urls: dict[str, str],
        live: bool,
        seconds: float,
        into: SideTotals,
        server: SimulatedCameras | None,
        decoder: type[DecodeOnly] = DecodeOnly,
        skip_loop_filter: str = "none",
    ) -> None:
        stop = threading.Event()
        workers = {cam: decoder(cam, url, live, stop, skip_loop_filter) for cam, url in urls.items()}
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

    def pipeline_phase(
        self,
        urls: dict[str, str],
        live: bool,
        seconds: float,
        into: SideTotals,
        server: SimulatedCameras | None,
        rss: RssSampler,
        main_urls: dict[str, str] | None = None,
    ) -> None:
        """One phase of the pipeline over ``urls``; with ``main_urls`` those are the cameras' detect substreams, and
        every camera keeps snapshots and clips of its main stream (into a temporary media directory)."""
        tap = _ScoreTap()
        with tempfile.TemporaryDirectory(prefix="edge-bench-media-") as media_dir:
            runner = self._runner(urls, tap, main_urls, Path(media_dir))
            self._measure_runner(runner, tap, urls, live, seconds, into, server, rss)

    def _runner(
        self, urls: dict[str, str], tap: _ScoreTap, main_urls: dict[str, str] | None, media_dir: Path
    ) -> Runner:
        from pipeline.media import CameraMedia, ClipSettings, MediaRecorder, MediaSettings, SnapshotSettings
        from pipeline.runner import Runner, RunnerSettings
        from pipeline.sources.spec import SourceSpec

        mains = main_urls or {}
        specs = [
            SourceSpec(
                camera_id=cam,
                url=url,
                skip_loop_filter=self.skip_loop_filter,
                main_url=mains.get(cam),
                isolation=self.isolation,
            )
            for cam, url in urls.items()
        ]
        keep = CameraMedia(SnapshotSettings(enabled=True), ClipSettings(enabled=True))
        media = MediaRecorder(MediaSettings(path=media_dir), dict.fromkeys(mains, keep)) if mains else None
        runner = Runner(
            specs, self.scorer, lambda ev: None, RunnerSettings(max_batch=self.max_batch), on_score=tap, media=media
        )
        failures = runner.open_sources()
        if failures:
            raise BenchError("; ".join(f"{cam}: {err}" for cam, err in sorted(failures.items())))
        return runner

    def _measure_runner(
        self,
        runner: Runner,
        tap: _ScoreTap,
        urls: dict[str, str],
        live: bool,
        seconds: float,
        into: SideTotals,
        server: SimulatedCameras | None,
        rss: RssSampler,
    ) -> None:
        def children() -> list[int]:  # the capture processes (isolation: process)
            return [pid for w in runner.workers.values() if (pid := w.capture_pid) is not None]

        runner.start()
        rss.children = children
        try:
            time.sleep(self._warmup_s(live))
            s0 = self._snapshot(runner, tap)
            tap.recording = True
            th0, cpu0, srv0, t0 = thread_cpu(), time.process_time(), _server_cpu(server), time.monotonic()
            kids0 = process_cpu_seconds(children())
            time.sleep(seconds)
            t1, cpu1, srv1, th1 = time.monotonic(), time.process_time(), _server_cpu(server), thread_cpu()
            kids1 = process_cpu_seconds(children())
            tap.recording = False
            s1 = self._snapshot(runner, tap)
            rss.sample()
        finally:
            rss.children = None
            runner.stop()
            runner.join(10)
        # a capture process's CPU is the camera's capture: counted with the capture threads (one started during the
        # phase, after a reconnection, from its start; one that ended during it, up to its last reading)
        kids_s = sum(cpu - kids0.get(pid, 0.0) for pid, cpu in kids1.items())
        into.seconds += t1 - t0
        into.cpu_s += cpu1 - cpu0 + kids_s
        into.server_cpu_s += srv1 - srv0
        into.add_threads(th0, th1)
        into.threads["capture"] = into.threads.get("capture", 0.0) + kids_s
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
            side.main_packets += int(b["main_packets"] - a["main_packets"])
            ring = runner.media.rings.get(cam) if runner.media is not None else None
            side.ring_mb = max(side.ring_mb, ring.bytes / 1e6 if ring is not None else 0.0)
            if b["scored"] == a["scored"] and b["audio"] == a["audio"]:
                into.errors.append(
                    f"{cam} (pipeline): nothing scored; state {runner.workers[cam].state.value}, "
                    f"last error {runner.workers[cam].last_error}"
                )

    @staticmethod
    def _snapshot(runner: Runner, tap: _ScoreTap) -> dict[str, dict[str, float]]:
        out = {}
        for cam, w in runner.workers.items():
            main = runner.workers.get(f"{cam}/main")
            latest = w.timeline.latest
            out[cam] = {
                "decoded_pts": latest if latest is not None else 0.0,
                "scored_pts": tap.video_pts.get(cam, 0.0),
                "scored": tap.video.get(cam, 0),
                "audio": tap.audio.get(cam, 0),
                "dropped": w.buffer.dropped,
                "main_packets": main.frames if main is not None else 0,  # video packets of its main stream
            }
        return out

    # -- a mode: ABBA ------------------------------------------------------------------------------------
    def measure(self, mode: str, n: int, seconds: float, rounds: int, rss: RssSampler) -> dict[str, Any]:
        live = mode == "rtsp"
        phase_s = seconds / (2 * rounds)
        totals = {side: SideTotals() for side in SIDES}
        phases: list[dict[str, Any]] = []
        by_round: list[dict[str, float]] = []  # fps per camera of each side in each round
        with contextlib.ExitStack() as stack:
            server: SimulatedCameras | None = None
            if live:
                server = stack.enter_context(SimulatedCameras(self.clip.path, n))
                urls = {name: server.url(name) for name in server.names}
            else:
                urls = {f"cam{i + 1}": str(self.clip.loop_path) for i in range(n)}
            for _ in range(rounds):
                done = {side: [0.0, 0.0] for side in SIDES}  # measured seconds, frames through
                for kind in ROUND:
                    _status(f"{mode}: {n} camera(s), {kind} for {phase_s:g} s")
                    before = _side_progress(totals[kind], kind)
                    self._phase(kind, urls, live, phase_s, totals[kind], server, rss)
                    after = _side_progress(totals[kind], kind)
                    secs, frames = after[0] - before[0], after[1] - before[1]
                    done[kind][0] += secs
                    done[kind][1] += frames
                    phases.append({"side": kind, "fps_per_camera": _r(frames / n / secs) if secs else None})
                by_round.append({side: f / n / t if t else 0.0 for side, (t, f) in done.items()})
        result = self._summarise(mode, n, totals["pipeline"], totals["decode-only"], phases, rss)
        full = totals["full-decode"]
        full_frames = _frames(full, "full-decode")
        result.update(_round_ratios(by_round))
        result["full_decode_fps_per_camera"] = _r(full_frames / full.seconds / n) if full.seconds else None
        full_cpu = full.cpu_s / (full_frames / self.fps) if full_frames else None
        p_cpu = result["cpu_ms_per_media_s"]["pipeline"]
        result["cpu_ms_per_media_s"]["full_decode"] = _r(full_cpu * 1000 if full_cpu else None)
        result["cpu_ratio_vs_full_decode"] = _r(full_cpu * 1000 / p_cpu, 3) if full_cpu and p_cpu else None
        result["errors"] += full.errors
        return result

    def _phase(
        self,
        kind: str,
        urls: dict[str, str],
        live: bool,
        seconds: float,
        into: SideTotals,
        server: SimulatedCameras | None,
        rss: RssSampler,
    ) -> None:
        if kind == "pipeline":
            self.pipeline_phase(urls, live, seconds, into, server, rss)
        else:  # the pipeline's deblocking, or a plain decoder's (every frame)
            skip = self.skip_loop_filter if kind == "decode-only" else "none"
            self.decode_phase(urls, live, seconds, into, server, skip_loop_filter=skip)

    def _summarise(
        self, mode: str, n: int, pipe: SideTotals, dec: SideTotals, phases: list[dict[str, Any]], rss: RssSampler
    ) -> dict[str, Any]:
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
            "cpu_ms_per_media_s": {
                "decode_only": _r(d_cpu * 1000 if d_cpu else None),
                "pipeline": _r(p_cpu * 1000 if p_cpu else None),
            },
            "cpu_utilisation": {
                "decode_only": _r(dec.cpu_s / dec.seconds, 2) if dec.seconds else None,
                "pipeline": _r(pipe.cpu_s / pipe.seconds, 2) if pipe.seconds else None,
                "simulator": _r(pipe.server_cpu_s / pipe.seconds, 2) if mode == "rtsp" else None,
            },
            # CPU ms per second of media per camera, by thread role: where the pipeline's extra time goes
            "cpu_ms_by_thread": {
                "decode_only": _by_role(dec.threads, d_media),
                "pipeline": _by_role(pipe.threads, p_media),
            },
            "rss_mb": {
                "baseline": _r(self.baseline_rss_mb, 1),
                "peak": _r(rss.peak, 1),
                "capture_processes_peak": _r(rss.children_peak, 1),  # their sum, included in peak
                "per_camera": _r(rss_delta / n, 1),
            },
            "per_camera": per_camera,
            "phases": phases,
            "errors": pipe.errors + dec.errors,
        }

    def _header(self) -> dict[str, Any]:
        m = self.scorer
        return {
            "benchmark": "edge bench",
            "note": LOAD_NOTE,
            "machine": {
                "cpus": os.cpu_count(),
                "loadavg_start": _loadavg(),
                "cores_available_start": cores_available(),
            },
            "clip": self.clip.info,
            "model": {
                "path": str(self.model_dir),
                "video_fps": m.fps if m.has_video else None,
                "audio_window_s": m.audio_window_s if m.has_audio else None,
                "audio_hop_s": m.audio_hop_s if m.has_audio else None,
                "engine": "onnxruntime",
                "intra_op_threads": self.intra_op_threads,
                "max_batch": self.max_batch,
            },
            "decoder": {
                "pipeline_skip_loop_filter": self.skip_loop_filter,
                "decode_only_skip_loop_filter": self.skip_loop_filter,
                "full_decode_skip_loop_filter": "none",
                # where the pipeline's cameras are captured (decode-only is always threads)
                "pipeline_isolation": self.isolation,
            },
            "targets": {"ratio": TARGET_RATIO, "rss_mb_per_camera": TARGET_RSS_MB},
        }

    def run(self, n: int, seconds: float, modes: Sequence[str], rounds: int = 3) -> dict[str, Any]:
        report = self._header()
        report.update({"cameras": n, "seconds": seconds, "rounds": rounds, "order": " ".join(ROUND * rounds)})
        results: dict[str, Any] = {}
        with RssSampler() as rss:
            for mode in modes:
                results[mode] = self.measure(mode, n, seconds, rounds, rss)
        main = results[modes[0]]
        report.update(
            {
                "source": modes[0],
                "ratio": main["ratio"],
                "ratio_rounds": main["ratio_rounds"],
                "ratio_vs_full_decode": main["ratio_vs_full_decode"],
                "ratio_vs_full_decode_rounds": main["ratio_vs_full_decode_rounds"],
                "cpu_ratio": main["cpu_ratio"],
                "cpu_ratio_vs_full_decode": main["cpu_ratio_vs_full_decode"],
                "rss_mb_per_camera": main["rss_mb"]["per_camera"],
                "per_camera": main["per_camera"],
                "modes": results,
            }
        )
        report["machine"]["loadavg_end"] = _loadavg()
        report["machine"]["cores_available_end"] = cores_available()
        report["targets"]["met"] = {
            "ratio": (main["ratio"] or 0) >= TARGET_RATIO if modes[0] == "file" else None,
            "rss": max(r["rss_mb"]["per_camera"] for r in results.values()) < TARGET_RSS_MB,
        }
        return report


def _by_role(threads: dict[str, float], media_s: float) -> dict[str, float | None]:
    return {role: _r(cpu * 1000 / media_s) for role, cpu in sorted(threads.items()) if media_s and cpu > 0.005}


def _frames(side: SideTotals, kind: str) -> float:
    """Frames through one side so far: scored throughput (pipeline), or decoded frames."""
    return sum(c.throughput_frames if kind == "pipeline" else c.video_frames for c in side.cameras.values())


def _side_progress(side: SideTotals, kind: str) -> tuple[float, float]:
    """(measured seconds, frames through) of one side so far."""
    return side.seconds, _frames(side, kind)


def _round_ratios(by_round: list[dict[str, float]]) -> dict[str, Any]:
    """Each round's pipeline fps over its decode-only and full-decode fps; the ratios reported are their medians
    (a round that a neighbour disturbed moves the median little), the spread is max - min."""
    out: dict[str, Any] = {}
    for key, floor in (("ratio", "decode-only"), ("ratio_vs_full_decode", "full-decode")):
        values = [r["pipeline"] / r[floor] for r in by_round if r[floor] > 0]
        out[key] = _r(statistics.median(values), 3) if values else None
        out[f"{key}_rounds"] = [_r(v, 3) for v in values]
        out[f"{key}_spread"] = _r(max(values) - min(values), 3) if values else None
    return out


def _server_cpu(server: SimulatedCameras | None) -> float:
    return server.cpu_seconds() if server is not None else 0.0


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    import numpy as np

    arr = np.asarray(values)
    return {"p50": _r(float(np.percentile(arr, 50))), "p95": _r(float(np.percentile(arr, 95)))}
