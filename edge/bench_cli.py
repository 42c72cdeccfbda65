"""``edge bench``: what the pipeline costs beyond decoding, on simulated 720p cameras, measured within one run.

Its command line (``add_parser``, ``cmd_bench``) and the tables it prints (``format_report``); the measurement is
``edge.bench``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge.argtypes import positive_float, positive_int
from edge.bench import LOAD_NOTE, TARGET_RATIO, TARGET_RSS_MB, Bench
from edge.bench_media import DEFAULT_CACHE, BenchError, describe_clip, ensure_clip
from edge.bench_sweep import sweep
from edge.substream import parse_size
from pipeline.models.default_package import default_package_dir


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``edge bench`` on the ``edge`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure pipeline vs decode-only throughput, latency and memory on simulated 720p cameras",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--cameras", type=positive_int, default=1, help="number of cameras N (default 1)")
    p.add_argument(
        "--seconds",
        type=positive_float,
        default=20.0,
        help="measured seconds per side (pipeline, decode-only) and mode; per step with --sweep (default 20)",
    )
    p.add_argument(
        "--source",
        choices=("file", "rtsp", "both"),
        default="file",
        help="file: local files as fast as possible (the ratio); rtsp: live simulated cameras (latency, drops, "
        "CPU per camera); both (default file)",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="ABBA rounds per mode (pipeline, decode-only, full decode, full decode, decode-only, "
        "pipeline), each phase seconds / (2 x rounds); the ratios are the medians of the rounds' "
        "(default 3)",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="instead: find the largest N that stays real time over RTSP (N = 1, 2, 4, 6, 8, ...)",
    )
    p.add_argument(
        "--sweep-budget",
        type=positive_float,
        default=300.0,
        help="upper bound on the sweep's total seconds (default 300)",
    )
    p.add_argument(
        "--detect-size",
        type=parse_size,
        default=None,
        metavar="WxH",
        help="with --sweep: serve each camera as the 720p clip (main stream) and a WxH substream of it, "
        "scored on the substream, with snapshots and clips of the main stream on every camera",
    )
    p.add_argument("--model", type=Path, default=default_package_dir(), help="model package (default: the bundled one)")
    p.add_argument(
        "--intra-op-threads",
        type=positive_int,
        default=1,
        help="ONNX Runtime threads per inference (default 1, the engine's default)",
    )
    p.add_argument("--max-batch", type=positive_int, default=8, help="scoring micro-batch (default 8)")
    p.add_argument(
        "--isolation",
        choices=("thread", "process"),
        default="thread",
        help="each camera's capture on a thread or in a child process, as a camera's isolation (default thread); "
        "the processes' CPU and memory count as the pipeline's (a camera's main stream too, with --detect-size)",
    )
    p.add_argument(
        "--skip-loop-filter",
        choices=("nokey", "none"),
        default="nokey",
        help="the pipeline's and decode-only's deblocking, as a camera's skip_loop_filter (default nokey, "
        "as cameras are configured by default); full decode always deblocks every frame",
    )
    p.add_argument(
        "--clip", type=Path, default=None, help="benchmark this clip instead of the generated 720p one (MKV or MP4)"
    )
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"where the clip is kept ({DEFAULT_CACHE})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    """Entry point of ``edge bench``; returns an exit code."""
    from pipeline.errors import PipelineError

    if args.detect_size is not None and not args.sweep:
        print("edge bench: --detect-size goes with --sweep", file=sys.stderr)
        return 2
    try:
        clip = ensure_clip(args.cache_dir) if args.clip is None else describe_clip(args.clip, args.cache_dir)
        bench = Bench(
            clip,
            model_dir=args.model,
            intra_op_threads=args.intra_op_threads,
            max_batch=args.max_batch,
            skip_loop_filter=args.skip_loop_filter,
            isolation=args.isolation,
        )
        if args.sweep:
            report = sweep(bench, args.seconds, args.sweep_budget, args.detect_size)
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


# ------------------------------------------------------------------------------------------------- output
def format_report(report: dict[str, Any]) -> str:
    """The human tables."""
    lines: list[str] = []
    clip, model = report["clip"], report["model"]
    v, a = clip.get("video", {}), clip.get("audio")
    audio = f" + {a['codec']} {a['sample_rate'] // 1000} kHz" if a else ""
    deblock = report.get("decoder", {}).get("pipeline_skip_loop_filter")
    lines.append(
        f"clip: {v.get('width')}x{v.get('height')} {v.get('codec')} {v.get('fps'):g} fps "
        f"{v.get('kbps')} kbit/s{audio}; model {Path(model['path']).name}: video scored at "
        f"{model['video_fps']} fps, audio windows {model['audio_window_s']} s every {model['audio_hop_s']} s; "
        f"onnxruntime {model['intra_op_threads']} thread(s), batch <= {model['max_batch']}; pipeline and "
        f"decode-only deblocking: skip_loop_filter={deblock} (full decode deblocks every frame); pipeline capture "
        f"on {'child processes' if report.get('decoder', {}).get('pipeline_isolation') == 'process' else 'threads'}"
    )
    load = report["machine"]
    lines.append(
        f"NOTE: {LOAD_NOTE}. {load['cpus']} CPUs; cores available to a busy process per CPU "
        f"{load.get('cores_available_start')} at the start, {load.get('cores_available_end')} at the end; "
        f"load average {load.get('loadavg_start')} -> {load.get('loadavg_end')}."
    )
    if "sweep" in report:
        return "\n".join(lines + [""] + _format_sweep(report["sweep"]))
    for mode, res in report["modes"].items():
        lines.append("")
        lines += _format_mode(mode, res)
    return "\n".join(lines)


def _format_mode(mode: str, res: dict[str, Any]) -> list[str]:
    title = (
        "file: local files read as fast as possible"
        if mode == "file"
        else "rtsp: simulated live cameras (paced at 25 fps: throughput is capped, see CPU and latency)"
    )
    out = [
        f"{title}; {res['cameras']} camera(s), {res['measured_s_per_side']:g} s measured per side "
        f"in {len(res['phases'])} alternating phases (pipeline first)"
    ]
    head = (
        "camera",
        "decode-only fps",
        "decoded fps",
        "scored fps",
        "audio win/s",
        "dropped",
        "latency p50/p95 ms",
        "audio lat p50/p95",
        "ratio",
    )
    rows = [head]
    for cam, c in res["per_camera"].items():
        rows.append(
            (
                cam,
                f"{c['decode_only_fps']:.1f}",
                f"{c['decoded_fps']:.1f}",
                f"{c['scored_fps']:.2f}",
                f"{c['audio_windows_per_s']:.2f}",
                str(c["dropped"]),
                _pp(c["latency_ms"]),
                _pp(c["audio_latency_ms"]),
                f"{c['ratio']:.3f}" if c["ratio"] is not None else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out += [
        "  "
        + "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    ratio = res["ratio"]
    verdict = ""
    if mode == "file" and ratio is not None:
        verdict = f" (target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'MISSED'})"
    rss = res["rss_mb"]
    cpu = res["cpu_ms_per_media_s"]
    out.append(
        f"  ratio {ratio}{verdict}, median of {len(res['ratio_rounds'])} rounds {_rounds(res['ratio_rounds'])}"
        f" (spread {res['ratio_spread']}); vs full decode {res['ratio_vs_full_decode']}, rounds "
        f"{_rounds(res['ratio_vs_full_decode_rounds'])} (spread {res['ratio_vs_full_decode_spread']})"
    )
    out.append(
        f"  cpu ratio {res['cpu_ratio']} (decode-only {cpu['decode_only']}, full decode {cpu.get('full_decode')}"
        f", pipeline {cpu['pipeline']} CPU ms per second of media per camera; vs full decode "
        f"{res.get('cpu_ratio_vs_full_decode')})"
    )
    out.append(
        f"  RSS {rss['per_camera']} MB per camera (target < {TARGET_RSS_MB:g}: "
        f"{'met' if (rss['per_camera'] or 0) < TARGET_RSS_MB else 'MISSED'}; baseline {rss['baseline']} MB, "
        f"peak {rss['peak']} MB)"
    )
    util = res["cpu_utilisation"]
    out.append(
        f"  CPU busy: decode-only {util['decode_only']} cores, pipeline {util['pipeline']} cores"
        + (f", simulator {util['simulator']} cores" if util.get("simulator") is not None else "")
    )
    for side, roles in res["cpu_ms_by_thread"].items():
        out.append(
            f"  {side} CPU ms per media second by thread: " + ", ".join(f"{role} {ms}" for role, ms in roles.items())
        )
    out.append("  phases (fps per camera): " + ", ".join(f"{p['side']} {p['fps_per_camera']}" for p in res["phases"]))
    for err in res["errors"]:
        out.append(f"  ! {err}")
    return out


def _format_sweep(sweep: dict[str, Any]) -> list[str]:
    crit = sweep["criteria"]
    size = sweep.get("detect_size")
    layout = (
        f"each camera a 720p main stream (demuxed, snapshots and clips on) + a {size[0]}x{size[1]} substream (scored)"
        if size
        else "each camera one stream (decoded and scored)"
    )
    out = [
        f"sweep over RTSP, {sweep['seconds_per_step']:g} s per step, {layout}; real time = every camera scored >= "
        f"{crit['scored_fps_min']} fps, >= {crit['audio_windows_per_s_min']} audio windows/s, dropped <= "
        f"{crit['dropped_max']}, latency p95 <= {crit['latency_p95_ms_max']:g} ms"
        + (f", main stream >= {crit['main_packets_per_s_min']} packets/s" if size else "")
    ]
    for s in sweep["steps"]:
        w = s.get("worst_camera", {})
        detail = (
            f"worst camera: {w.get('scored_fps')} fps scored, {w.get('audio_windows_per_s')} audio win/s, "
            f"{w.get('dropped')} dropped, p95 {w.get('latency_p95_ms')} ms; CPU {s.get('cpu_utilisation')} "
            f"cores ({_roles(s.get('thread_cores', {}))}) + simulator {s.get('simulator_cpu_utilisation')}; "
            f"RSS {s.get('rss_mb_per_camera')} MB/camera"
            if w
            else ""
        )
        out.append(
            f"  N={s['cameras']:>3}: {'real time' if s['realtime'] else 'NOT real time':13}  {detail}"
            + (f"  [{s['why']}]" if s["why"] else "")
        )
    out.append(
        f"  max_realtime_cameras: {sweep['max_realtime_cameras']} (first failing: {sweep['first_failing']}; "
        f"{sweep['elapsed_s']} s)"
    )
    return out


def _roles(cores: dict[str, float]) -> str:
    """``capture 0.61, scoring 0.52``: the cores of the capture and scoring threads, in that order."""
    return ", ".join(f"{role} {cores[role]}" for role in ("capture", "scoring") if role in cores)


def _rounds(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def _pp(p: dict[str, float | None]) -> str:
    return "-" if p["p50"] is None else f"{p['p50']:.0f}/{p['p95']:.0f}"
