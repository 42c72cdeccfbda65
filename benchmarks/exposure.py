#!/usr/bin/env python3
"""How the video model takes a change of the whole picture's brightness (a camera's auto-exposure, a cloud): the
first 100 scored frames of a normal clip, scaled in luma from frame 50 on, either at once (a step) or over 2 s (a
ramp), scored through the runtime path (motion gate, engine, calibration). Prints the calibrated scores around the
step and the worst score during the ramp; the clip's own worst score is the reference.

    .venv/bin/python benchmarks/exposure.py [--model pipeline/models/default] [--clip samples/normal_eval.mkv]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from pipeline.frames import VideoFrame
    from pipeline.models.package import ModelPackage
    from pipeline.scoring_model import PackageScorer
    from pipeline.sources import read_media

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "pipeline" / "models" / "default")
    p.add_argument("--clip", default=str(ROOT / "samples" / "normal_eval.mkv"))
    args = p.parse_args()
    scorer = PackageScorer(ModelPackage.load(args.model), None, motion_threshold=5.0)
    ctx, at = scorer.context, 50
    frames = [item.luma for item in read_media(args.clip, width=scorer.width, height=scorer.height, fps=scorer.fps,
                                               audio=False) if isinstance(item, VideoFrame)][:100]
    base = np.stack(frames).astype(np.float32)

    def scores(luma: np.ndarray) -> np.ndarray:
        stacks = np.stack([luma[k - ctx : k + 1] for k in range(ctx, len(luma))]).clip(0, 255).astype(np.uint8)
        return scorer.score_video(stacks)[1]

    print(f"{args.clip}: worst calibrated score as is {scores(base).max():.2f}")
    for gain in (1.05, 1.1, 1.2):
        step = base.copy()
        step[at:] *= gain
        ramp = base.copy()
        ramp[at : at + 10] *= np.linspace(1, gain, 10)[:, None, None]
        ramp[at + 10 :] *= gain
        around = scores(step)[at - ctx - 1 : at - ctx + 3]
        print(f"x{gain:g}: step {' '.join(f'{x:.2f}' for x in around)} (frames {at - 1}..{at + 2}); "
              f"over 2 s: worst {scores(ramp)[at - ctx - 1 : at - ctx + 12].max():.2f}")
    scorer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
