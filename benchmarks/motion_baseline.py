#!/usr/bin/env python3
"""Would frame difference, calibrated like a model, make a good extra modality? On the real Avenue sets
(``benchmarks/real_data.py build``), with a video package trained on ``avenue/train.mkv``:

    .venv/bin/python benchmarks/motion_baseline.py --model .lepton/realdata/packages/video

Frame difference (``edge eval``'s video baseline: mean absolute change from the previous scored frame) is calibrated
on the held-out last 20 % of ``train.mkv`` as ``edge train`` calibrates a model (``Calibration.fit``), then max-fused
with the package's calibrated video score. Printed per clip: the AUCs of the video score, of frame difference and
of the max of both, and how many normal frames each calibrated detector puts at 3 or more (the threshold that
promises 1 normal frame in 1000).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIPS = ("unseen", "drift", "speed", "local")


def main() -> int:
    from pipeline import evaluation as ev
    from pipeline.calibration import Calibration
    from pipeline.models.package import ModelPackage
    from pipeline.scoring_model import PackageScorer

    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a video package trained on avenue/train.mkv")
    p.add_argument("--sets", type=Path, default=ROOT / ".lepton" / "realdata" / "avenue")
    args = p.parse_args()
    scorer = PackageScorer(ModelPackage.load(args.model), None)
    train = ev.score_media(str(args.sets / "train.mkv"), scorer, baseline=True)
    held = train.baseline[int(len(train.baseline) * 0.8):]
    motion = Calibration.fit(held[np.isfinite(held)])
    print("clip      video   frame diff  max of both   normal >= 3: video / frame diff")
    for clip in CLIPS:
        path = str(args.sets / f"{clip}.mkv")
        scores = ev.score_media(path, scorer, baseline=True)
        labels = ev.frame_labels(path, scores)
        ok = np.isfinite(scores.video) & np.isfinite(scores.baseline)
        video, diff = scores.video[ok], scores.baseline[ok]
        fd_cal = motion.calibrate(diff)
        y = labels[ok]
        aucs = "    -          -            -     "
        if y.any() and not y.all():
            aucs = (f"{ev.roc_auc(video, y):.3f}     {ev.roc_auc(diff, y):.3f}       "
                    f"{ev.roc_auc(np.maximum(video, fd_cal), y):.3f}     ")
        print(f"{clip:8s}  {aucs}  {np.mean(video[~y] >= 3):6.1%} / {np.mean(fd_cal[~y] >= 3):6.1%}"
              f"  (of {int((~y).sum())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
