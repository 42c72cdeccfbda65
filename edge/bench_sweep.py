"""``edge bench --sweep``: the most live cameras one machine keeps in real time (``max_realtime_cameras``).

N simulated cameras over RTSP (``edge.bench_media.SimulatedCameras``, paced at the clip's 25 fps), run through the
pipeline for ``seconds`` after a warm-up, for N = 1, 2, 4, 6, 8, ... until a step fails, then bisecting between the
last success and the first failure, within a budget of seconds. Real time: every camera scored at least
``RT_RATE_FRACTION`` of the model's video fps and audio windows per second, dropped nothing, and its capture ->
score latency p95 stayed under ``RT_MAX_P95_MS``.

With ``detect_size`` every camera is served twice, the 720p clip (its main stream) and a substream of it at that
size (``edge.substream``), and is configured as a site would be: ``detect_url`` the substream (decoded and
scored), snapshots and clips of the main stream on (demuxed into each camera's packet ring); a step then also
needs every main stream demuxed at the clip's frame rate.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edge.bench import SideTotals, _percentiles, _r
from edge.bench_media import BenchError, SimulatedCameras, _status
from edge.bench_probes import RssSampler, _loadavg, cores_available

if TYPE_CHECKING:
    from edge.bench import Bench

SWEEP_STEPS = (1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64)
RT_RATE_FRACTION = 0.95
RT_MAX_DROPPED = 0
RT_MAX_P95_MS = 1000.0


def sweep(bench: Bench, seconds: float, budget_s: float, detect_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The sweep's report: the bench's header, each step, and ``max_realtime_cameras``."""
    from edge.substream import ensure_substream

    report = bench._header()
    m = bench.scorer
    sub = None
    if detect_size is not None:
        _status(f"sweep: the {detect_size[0]}x{detect_size[1]} substream of the clip ...")
        sub = ensure_substream(bench.clip.path, detect_size, bench.clip.loop_path.parent)
    need = {
        "video": RT_RATE_FRACTION * m.fps if m.has_video else 0.0,
        "audio": RT_RATE_FRACTION / m.audio_hop_s if m.has_audio else 0.0,
        "main": RT_RATE_FRACTION * bench.fps if sub is not None else 0.0,
    }
    criteria = {
        "scored_fps_min": _r(need["video"]),
        "audio_windows_per_s_min": _r(need["audio"]),
        "main_packets_per_s_min": _r(need["main"]),
        "dropped_max": RT_MAX_DROPPED,
        "latency_p95_ms_max": RT_MAX_P95_MS,
    }
    started = time.monotonic()
    steps: list[dict[str, Any]] = []
    ok_n, fail_n = 0, None
    candidates = list(SWEEP_STEPS)
    while candidates:
        n = candidates.pop(0)
        # a step costs the measured time plus starting n cameras; stop before the budget would be exceeded
        if time.monotonic() - started + seconds + 5 + 0.2 * n * (2 if sub else 1) > budget_s:
            _status(f"sweep: budget of {budget_s:g} s reached before {n} cameras")
            break
        step = _step(bench, n, seconds, need, sub)
        steps.append(step)
        _status(
            f"sweep: {n} camera(s): {'real time' if step['realtime'] else 'NOT real time'} "
            f"({step['why'] or 'all cameras kept up'})"
        )
        if step["realtime"]:
            ok_n = n
            candidates = [(ok_n + fail_n) // 2] if fail_n is not None and fail_n - ok_n > 1 else candidates
        else:
            fail_n = n
            candidates = [(ok_n + fail_n) // 2] if fail_n - ok_n > 1 else []
    report.update(
        {
            "max_realtime_cameras": ok_n,
            "sweep": {
                "source": "rtsp",
                "seconds_per_step": seconds,
                "criteria": criteria,
                "steps": steps,
                "max_realtime_cameras": ok_n,
                "first_failing": fail_n,
                "detect_size": list(detect_size) if detect_size else None,
                "media": "snapshots and clips of the main stream on every camera" if sub else None,
                "elapsed_s": _r(time.monotonic() - started, 1),
            },
        }
    )
    report["machine"]["loadavg_end"] = _loadavg()
    report["machine"]["cores_available_end"] = cores_available()
    return report


def _step(bench: Bench, n: int, seconds: float, need: dict[str, float], sub: Any) -> dict[str, Any]:
    side = SideTotals()
    try:
        with RssSampler() as rss, SimulatedCameras(bench.clip.path, n, substream=sub) as server:
            urls = {name: server.url(name) for name in server.names}
            if sub is None:
                bench.pipeline_phase(urls, True, seconds, side, server, rss)
            else:
                subs = {name: server.url(f"{name}-sub") for name in server.names}
                bench.pipeline_phase(subs, True, seconds, side, server, rss, main_urls=urls)
    except BenchError as exc:
        return {"cameras": n, "realtime": False, "why": str(exc)}
    why, worst = _judge(side, need)
    return {
        "cameras": n,
        "realtime": not why,
        "why": "; ".join(why[:4]) + (" ..." if len(why) > 4 else ""),
        "worst_camera": {k: _r(v) for k, v in worst.items()},
        "cpu_utilisation": _r(side.cpu_s / side.seconds, 2) if side.seconds else None,
        "simulator_cpu_utilisation": _r(side.server_cpu_s / side.seconds, 2) if side.seconds else None,
        # the one scoring thread beside the capture threads: a scoring thread near the cores it can get while the
        # cameras fall behind is the serial limit, capture threads using far more than decoding costs a contention
        "thread_cores": {role: _r(cpu / side.seconds, 2) for role, cpu in sorted(side.threads.items())}
        if side.seconds
        else {},
        "rss_mb_per_camera": _r(max(0.0, rss.peak - bench.baseline_rss_mb) / n, 1),
        # the rings grow to their bound (pre-roll + max_s + post-roll of packets, at most buffer_mb) over minutes;
        # a step of seconds holds only that much of them
        "ring_mb_per_camera": _r(max((c.ring_mb for c in side.cameras.values()), default=0.0), 2),
    }


def _judge(side: SideTotals, need: dict[str, float]) -> tuple[list[str], dict[str, float]]:
    """Why a step is not real time (empty: it is), and its worst camera's figures."""
    why: list[str] = []
    worst = {
        "scored_fps": float("inf"),
        "audio_windows_per_s": float("inf"),
        "main_packets_per_s": float("inf"),
        "dropped": 0.0,
        "latency_p95_ms": 0.0,
    }
    for cam, c in side.cameras.items():
        rates = {
            "scored_fps": c.scored / c.seconds,
            "audio_windows_per_s": c.audio_windows / c.seconds,
            "main_packets_per_s": c.main_packets / c.seconds,
        }
        p95 = _percentiles(c.latency_ms + c.audio_latency_ms)["p95"] or 0.0
        for key, value in rates.items():
            worst[key] = min(worst[key], value)
        worst["dropped"] = max(worst["dropped"], c.dropped)
        worst["latency_p95_ms"] = max(worst["latency_p95_ms"], p95)
        if rates["scored_fps"] < need["video"]:
            why.append(f"{cam} scored {rates['scored_fps']:.2f} fps")
        if rates["audio_windows_per_s"] < need["audio"]:
            why.append(f"{cam} {rates['audio_windows_per_s']:.2f} audio windows/s")
        if rates["main_packets_per_s"] < need["main"]:
            why.append(f"{cam} main stream {rates['main_packets_per_s']:.1f} packets/s")
        if c.dropped > RT_MAX_DROPPED:
            why.append(f"{cam} dropped {c.dropped}")
        if p95 > RT_MAX_P95_MS:
            why.append(f"{cam} latency p95 {p95:.0f} ms")
    if not need["main"]:
        worst.pop("main_packets_per_s")
    return why + side.errors, worst
