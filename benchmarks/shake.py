#!/usr/bin/env python3
"""How the models take a shaking camera (a pole in the wind, traffic vibration): a normal clip's frames moved by a
random whole-picture shift each, scored through the runtime path (motion gate, engines, calibration, aggregator),
against the same clip steady.

Each video frame the model samples (5 fps) is decoded at 4x the model's resolution, shifted by a random whole number
of those pixels in x and y (uniform in +-amplitude, independently per frame: at 5 fps a sway of 1-3 Hz is as good as
random), and averaged down 4x4 to the model's resolution: shifts in steps of a quarter model pixel (at 256x144 a
model pixel is 5 px of a 720p picture). The shaken clip is written losslessly (FFV1) and scored like any input
(``pipeline.evaluation.score_media``). Printed per amplitude: calibrated video and temporal scores (median, 99th
percentile), the share of frames whose fused score reaches 3 (1 in 1000 normal frames), and the events the default
aggregator opens in the clip (every one a false alarm: the clip is normal).

    .venv/bin/python benchmarks/shake.py [--model pipeline/models/default] [--clip samples/normal_eval.mkv]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UP = 4  # decode at UP x the model's resolution; shifts are whole pixels there


def shaken(clip: str, out: Path, width: int, height: int, fps: float, amplitude: int, seed: int) -> int:
    """Write ``clip``'s frames at ``fps``, each shifted by up to ``amplitude`` / UP model pixels; returns the count."""
    import av

    from pipeline.frames import VideoFrame
    from pipeline.sources import read_media

    rng = np.random.default_rng(seed)
    pad = max(amplitude, 1)
    n = 0
    with av.open(str(out), "w") as container:
        stream = container.add_stream("ffv1", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "gray"
        for item in read_media(clip, width=width * UP, height=height * UP, fps=fps, audio=False):
            if not isinstance(item, VideoFrame):
                continue
            big = np.pad(item.luma.astype(np.float32), pad, mode="edge")
            dx, dy = rng.integers(-amplitude, amplitude + 1, 2) if amplitude else (0, 0)
            crop = big[pad + dy : pad + dy + height * UP, pad + dx : pad + dx + width * UP]
            small = crop.reshape(height, UP, width, UP).mean(axis=(1, 3)).round().clip(0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(small, format="gray")):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    return n


def main() -> int:
    from pipeline.evaluation import aggregate, score_media
    from pipeline.events import EventType
    from pipeline.models.package import ModelPackage
    from pipeline.scoring_model import PackageScorer

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "pipeline" / "models" / "default")
    p.add_argument("--clip", default=str(ROOT / "samples" / "normal_eval.mkv"))
    p.add_argument("--amplitudes", type=int, nargs="+", default=[0, 1, 2, 4], help="in quarter model pixels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    scorer = PackageScorer(ModelPackage.load(args.model), None, motion_threshold=5.0)
    print(f"{args.clip} through {args.model} ({scorer.width}x{scorer.height}; one model pixel = "
          f"{720 / scorer.height:.1f} px of a 720p picture)")
    print(f"{'shift up to':>16} {'video p50':>9} {'p99':>5} {'temporal p50':>12} {'p99':>5} {'fused>=3':>8} "
          f"{'events':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for amp in args.amplitudes:
            path = Path(tmp) / f"shake{amp}.mkv"
            shaken(args.clip, path, scorer.width, scorer.height, scorer.fps, amp, args.seed)
            s = score_media(str(path), scorer)
            events, fused = aggregate(s)
            t = s.temporal[np.isfinite(s.temporal)]
            opened = sum(1 for e in events if e.type is EventType.NEW)
            print(f"{amp / UP:>10.2f} px   {np.median(s.video):>9.2f} {np.percentile(s.video, 99):>5.2f} "
                  f"{np.median(t) if len(t) else float('nan'):>12.2f} "
                  f"{np.percentile(t, 99) if len(t) else float('nan'):>5.2f} "
                  f"{np.mean(np.nan_to_num(fused) >= 3):>8.0%} {opened:>6}")
    scorer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
