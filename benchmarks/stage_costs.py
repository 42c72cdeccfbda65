"""Where a camera's CPU goes: each stage of the pipeline measured alone, in one process, interleaved.

For one second of the benchmark clip (720p25 H.264 ~3 Mbit/s + AAC, see ``edge/bench_media.py``), the CPU
milliseconds (all threads of the process, ``time.process_time``) of:

    decode           demux + decode every video and audio frame (as the reader: DECODER_THREADS)   the floor
    decode 1 thread  the same with one decoder thread (no frame threading)
    reader           MediaReader: decode + sampled luma (5 fps, 160x96, swscale AREA) + audio windows
    reader video     MediaReader with audio off
    luma convert     to_ndarray(160x96, gray, AREA) of one frame, x model fps
    score video      PackageScorer.score_video per frame at batch 8, x model fps
    score temporal   PackageScorer.score_temporal per window at batch 8, x windows per second (fps / score_every)
    score audio      PackageScorer.score_audio per window at batch 8, x windows per second (log-mel included)
    log-mel          the log-mel features alone, x windows per second

Rounds alternate the stages (A B C ... A B C ...), and the median round is reported, so a busy neighbour weighs
on all stages alike. Absolute figures depend on the machine's load; compare stages within one run.

    python benchmarks/stage_costs.py [--seconds-of-media 12] [--rounds 3] [--json]

Run it with ``OPENBLAS_NUM_THREADS=1`` and without to see what numpy's BLAS threads cost (log-mel's matrix
product starts one busy-waiting OpenBLAS thread per core).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av  # noqa: E402
import numpy as np  # noqa: E402

from edge.bench_media import DEFAULT_CACHE, ensure_clip  # noqa: E402
from pipeline.engines.base import OrtEngineConfig  # noqa: E402
from pipeline.features import log_mel  # noqa: E402
from pipeline.models.default_package import default_package_dir  # noqa: E402
from pipeline.models.package import ModelPackage  # noqa: E402
from pipeline.scoring_model import PackageScorer  # noqa: E402
from pipeline.sources.reader import MediaReader, set_decoder_threads  # noqa: E402
from pipeline.sources.spec import SourceSpec  # noqa: E402


def cpu_ms(fn: Callable[[], Any]) -> float:
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) * 1000


def decode(path: str, media_s: float, thread_type: str) -> None:
    with av.open(path) as c:
        v = c.streams.video[0]
        set_decoder_threads(v, 1 if thread_type == "NONE" else 0)
        streams = [v, *c.streams.audio[:1]]
        fps = float(v.average_rate or 25)
        n = 0
        for packet in c.demux(streams):
            frames = packet.decode()
            if packet.stream.type == "video":
                n += len(frames)
                if n >= media_s * fps:
                    return


def read(path: str, media_s: float, scorer: PackageScorer, audio: bool) -> None:
    reader = MediaReader(
        SourceSpec("bench", path), width=scorer.width, height=scorer.height, fps=scorer.fps,
        audio_window_s=scorer.audio_window_s, audio_hop_s=scorer.audio_hop_s, sample_rate=scorer.sample_rate,
        audio=audio,
    )
    reader.open()
    try:
        for item in reader.items():
            if item.pts >= media_s:
                return
    finally:
        reader.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds-of-media", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", type=Path, default=default_package_dir())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clip = ensure_clip(DEFAULT_CACHE)
    path, media_s = str(clip.loop_path), args.seconds_of_media
    scorer = PackageScorer(ModelPackage.load(args.model), OrtEngineConfig(intra_op_num_threads=1))
    fps, win_per_s = scorer.fps, 1.0 / scorer.audio_hop_s
    n_win = int(round(scorer.audio_window_s * scorer.sample_rate))

    with av.open(str(clip.path)) as c:
        frames = []
        for f in c.decode(video=0):
            frames.append(f)
            if len(frames) >= 50:
                break
    rng = np.random.default_rng(0)
    stacks = rng.integers(0, 255, (8, scorer.context + 1, scorer.height, scorer.width), dtype=np.uint8)
    windows = (rng.standard_normal((8, n_win)) * 0.05).astype(np.float32)
    cfg = scorer.audio.spec.features.config() if scorer.audio is not None else None
    temporal = scorer.temporal
    t_windows = (rng.standard_normal((8, temporal.window, *temporal.spec.embedding_shape)).astype(np.float32)
                 if temporal is not None else None)
    t_per_s = fps / scorer.temporal_every

    # each stage: CPU ms per second of media of one camera
    stages: dict[str, Callable[[], float]] = {
        "decode": lambda: cpu_ms(lambda: decode(path, media_s, "AUTO")) / media_s,
        "decode 1 thread": lambda: cpu_ms(lambda: decode(path, media_s, "NONE")) / media_s,
        "reader": lambda: cpu_ms(lambda: read(path, media_s, scorer, True)) / media_s,
        "reader video": lambda: cpu_ms(lambda: read(path, media_s, scorer, False)) / media_s,
        "luma convert": lambda: cpu_ms(lambda: [
            f.to_ndarray(width=scorer.width, height=scorer.height, format="gray", interpolation="AREA")
            for f in frames]) / len(frames) * fps,
        "score video": lambda: cpu_ms(lambda: [scorer.score_video(stacks) for _ in range(10)]) / 80 * fps,
        "score audio": lambda: cpu_ms(lambda: [scorer.score_audio(windows) for _ in range(10)]) / 80 * win_per_s,
    }
    if t_windows is not None:
        stages["score temporal"] = lambda: cpu_ms(
            lambda: [scorer.score_temporal(t_windows) for _ in range(10)]) / 80 * t_per_s
    stages |= {
        "log-mel": lambda: cpu_ms(lambda: [log_mel(windows, cfg) for _ in range(10)]) / 80 * win_per_s,
    }
    for fn in stages.values():  # warm-up: caches, ORT arenas, page cache
        fn()
    results: dict[str, list[float]] = {name: [] for name in stages}
    for r in range(args.rounds):
        for name, fn in stages.items():
            results[name].append(fn())
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    med = {name: round(statistics.median(v), 2) for name, v in results.items()}
    reader_extra = med["reader"] - med["decode"]
    predicted = med["reader"] + med["score video"] + med["score audio"] + med.get("score temporal", 0.0)
    report = {
        "note": "CPU ms per second of media of one camera; absolute values depend on machine load",
        "clip": clip.info.get("video"),
        "stages_cpu_ms_per_media_s": med,
        "reader_overhead_over_decode": round(reader_extra, 2),
        "predicted_pipeline": round(predicted, 2),
        "predicted_cpu_ratio": round(med["decode"] / predicted, 3),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(report["note"])
        for name, ms in med.items():
            print(f"  {name:16s} {ms:8.2f}")
        print(f"  reader overhead over decode: {reader_extra:.2f}; predicted pipeline "
              f"(reader + scoring) {predicted:.2f}; predicted cpu ratio {report['predicted_cpu_ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
