"""Proposed changes to the pipeline, measured against each other in one process, interleaved.

``edge bench`` measures the pipeline as it is. This script measures what it *would* cost with a change that is
not (yet) in the code: each variant is applied for its own phases only (a runtime setting, or a small wrapper
around ``MediaReader._streams`` that changes the decoder's settings), and all variants and the decode-only floor
run in rounds (floor, V1, V2, ... floor, V1, V2, ...) over the same N local files, so that a busy neighbour
weighs on all of them alike. Nothing here changes a file of the pipeline.

    python benchmarks/variants.py --cameras 2 --phase-seconds 4 --rounds 3 [--only shipped,blas1] [--json]

Variants (each on top of ``blas1`` unless it says otherwise):

    shipped        the pipeline as it is (numpy's OpenBLAS with one thread per core)
    blas1          OpenBLAS limited to one thread (what OPENBLAS_NUM_THREADS=1 does), set at run time
    switch1ms      + sys.setswitchinterval(0.001): the GIL is handed over after 1 ms instead of 5 ms
    dec1thread     + one decoder thread per camera (thread_count 1) instead of FFmpeg's frame threads
    skiplf         + skip_loop_filter=nokey: no H.264 deblocking on non-key frames (the model's input changes:
                   luma MAE ~0.3/255 at 160x96 on this clip)
    dec1+skiplf    both

``ratio`` of a variant = its throughput / the decode-only floor's (AUTO, DECODER_THREADS, as the reader), both summed
over the rounds (the floor with one decoder thread is shown too); ``cpu_ms`` = CPU ms of the whole process per
second of media per camera, which a shared machine's load disturbs less than throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from edge.bench import Bench, SideTotals  # noqa: E402
from edge.bench_media import DEFAULT_CACHE, DecodeOnly, ensure_clip  # noqa: E402
from edge.bench_probes import RssSampler  # noqa: E402
from pipeline.models.default_package import default_package_dir  # noqa: E402
from pipeline.sources.reader import MediaReader  # noqa: E402


def _openblas() -> Callable[[int], None]:
    """numpy's bundled OpenBLAS ``set_num_threads`` (what threadpoolctl calls)."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas*.so"))
    for lib in libs:
        handle = ctypes.CDLL(lib)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            fn = getattr(handle, name, None)
            if fn is not None:
                return lambda n, fn=fn: fn(ctypes.c_int(n))
    raise SystemExit("numpy's OpenBLAS not found: this script needs the numpy wheel from PyPI")


set_blas_threads = _openblas()


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    set_blas_threads(n)
    try:
        yield
    finally:
        set_blas_threads(1)


@contextlib.contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@contextlib.contextmanager
def reader_video(configure: Callable[[Any], None]) -> Iterator[None]:
    """Apply ``configure`` to each reader's video stream, after the reader's own settings, before decoding."""
    original = MediaReader._streams

    def patched(self: MediaReader) -> list[Any]:
        streams = original(self)
        for s in streams:
            if s.type == "video" and not s.codec_context.is_open:
                configure(s)
        return streams

    MediaReader._streams = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        MediaReader._streams = original  # type: ignore[method-assign]


def one_thread(stream: Any) -> None:
    stream.thread_type = "NONE"
    stream.thread_count = 1


class DecodeOneThread(DecodeOnly):
    """The decode-only side with one decoder thread: the floor for ``dec1thread``, shown for reference."""

    def configure_video(self, stream: Any) -> None:
        one_thread(stream)


def skip_loop_filter(stream: Any) -> None:
    stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "nokey"}


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "shipped": lambda: blas_threads(os.cpu_count() or 1),
    "blas1": contextlib.nullcontext,
    "switch1ms": lambda: switch_interval(0.001),
    "dec1thread": lambda: reader_video(one_thread),
    "skiplf": lambda: reader_video(skip_loop_filter),
    "dec1+skiplf": lambda: reader_video(lambda s: (one_thread(s), skip_loop_filter(s))),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--phase-seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [v for v in args.only.split(",") if v]
    clip = ensure_clip(DEFAULT_CACHE)
    set_blas_threads(1)
    bench = Bench(clip, model_dir=default_package_dir(), intra_op_threads=1, max_batch=8)
    urls = {f"cam{i + 1}": str(clip.loop_path) for i in range(args.cameras)}
    floor, floor1 = SideTotals(), SideTotals()
    sides = {name: SideTotals() for name in names}
    with RssSampler() as rss:
        for r in range(args.rounds):
            bench.decode_phase(urls, False, args.phase_seconds, floor, None, DecodeOnly)
            bench.decode_phase(urls, False, args.phase_seconds, floor1, None, DecodeOneThread)
            for name in names:
                with VARIANTS[name]():
                    bench.pipeline_phase(urls, False, args.phase_seconds, sides[name], None, rss)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    n = args.cameras
    floor_frames = sum(c.video_frames for c in floor.cameras.values())
    floor_fps = floor_frames / floor.seconds / n
    floor_cpu = floor.cpu_s * 1000 / (floor_frames / bench.fps)
    floor1_frames = sum(c.video_frames for c in floor1.cameras.values())
    report: dict[str, Any] = {
        "note": "absolute fps depend on machine load; compare the ratios within this run",
        "cameras": n, "rounds": args.rounds, "phase_seconds": args.phase_seconds,
        "floor": {"fps_per_camera": round(floor_fps, 1), "cpu_ms_per_media_s": round(floor_cpu, 1)},
        "floor_one_thread": {"fps_per_camera": round(floor1_frames / floor1.seconds / n, 1),
                             "cpu_ms_per_media_s": round(floor1.cpu_s * 1000 / (floor1_frames / bench.fps), 1)},
        "variants": {},
    }
    for name, side in sides.items():
        frames = sum(c.throughput_frames for c in side.cameras.values())
        fps = frames / side.seconds / n
        cpu = side.cpu_s * 1000 / (frames / bench.fps)
        report["variants"][name] = {
            "fps_per_camera": round(fps, 1), "ratio": round(fps / floor_fps, 3),
            "cpu_ms_per_media_s": round(cpu, 1), "cpu_ratio": round(floor_cpu / cpu, 3),
            "cores": round(side.cpu_s / side.seconds, 2),
        }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['note']}; {n} camera(s), {args.rounds} rounds of {args.phase_seconds:g} s phases")
    print(f"  decode-only floor: {report['floor']['fps_per_camera']} fps per camera, "
          f"{report['floor']['cpu_ms_per_media_s']} CPU ms per media second, "
          f"{floor.cpu_s / floor.seconds:.2f} cores")
    f1 = report["floor_one_thread"]
    print(f"  (decode-only with one decoder thread: {f1['fps_per_camera']} fps per camera, "
          f"{f1['cpu_ms_per_media_s']} CPU ms per media second)")
    for name, v in report["variants"].items():
        print(f"  {name:11s} ratio {v['ratio']:.3f}  cpu ratio {v['cpu_ratio']:.3f}  ({v['fps_per_camera']} fps "
              f"per camera, {v['cpu_ms_per_media_s']} CPU ms per media s, {v['cores']} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
