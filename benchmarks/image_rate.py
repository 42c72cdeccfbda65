#!/usr/bin/env python3
"""What the frame rate assumed for an image sequence costs: frame folders have no timing, and the video model
compares frames 0.2 s apart, so a wrong guess changes what it sees. The bundled clips are turned into frame folders
the way image data sets come (``Train/Train00N/NNN.tif``, ``Test/Test00N/NNN.tif``: 360x240 grayscale TIFF, no
sound) at each true rate; for each assumed rate a package is trained on the Train folders (``edge train --fps``)
and the Test folders are scored (``edge score --fps``); the frame-level ROC-AUC of the CSV's ``video`` and ``fused``
columns is computed against the clips' video ground truth, a frame's time being its index / the true rate. Needs the
train extra (torch).

    .venv/bin/python benchmarks/image_rate.py [--minutes 3] [--true 10,25] [--assumed 5,10,25] [--json]

Frame folders are cached under ``--cache-dir`` (default ``~/.cache/lepton-edge/image_rate``). Six trainings at the
defaults: about 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NORMAL = ("normal_train_1", "normal_train_2")
LABELLED = ("test_1", "test_2", "test_3", "normal_eval")
SIZE = (360, 240)


def frame_folder(clip: Path, folder: Path, fps: float) -> int:
    """``clip``'s picture at ``fps`` (the frame nearest each period) as NNN.tif, grayscale at ``SIZE``; made once."""
    import av

    done = folder / ".complete"
    if done.exists():
        return int(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    out = av.open(str(folder / "%03d.tif"), "w", format="image2", options={"start_number": "1"})
    vs = out.add_stream("tiff", rate=int(fps))
    vs.width, vs.height, vs.pix_fmt = SIZE[0], SIZE[1], "gray"
    n = 0
    with av.open(str(clip)) as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            if float(frame.pts * stream.time_base) + 1e-6 < n / fps:
                continue
            for p in vs.encode(frame.reformat(width=SIZE[0], height=SIZE[1], format="gray")):
                out.mux(p)
            n += 1
    for p in vs.encode():
        out.mux(p)
    out.close()
    done.write_text(str(n))
    return n


def video_intervals(name: str) -> list[tuple[float, float]]:
    truth = json.loads((ROOT / "samples" / f"{name}.json").read_text())
    return [(a["start"], a["end"]) for a in truth.get("anomalies", []) if "video" in a["modalities"]]


def run(true_fps: float, assumed: float, cache: Path, minutes: float) -> dict[str, Any]:
    from pipeline.evaluation import csv_rows, roc_auc, score_media
    from pipeline.models.package import ModelPackage
    from pipeline.models.train import train_package
    from pipeline.scoring_model import PackageScorer

    root = cache / f"true{true_fps:g}"
    train = [root / "Train" / f"Train{i:03d}" for i in range(1, len(NORMAL) + 1)]
    test = [root / "Test" / f"Test{i:03d}" for i in range(1, len(LABELLED) + 1)]
    for name, folder in zip(NORMAL + LABELLED, train + test, strict=True):
        frame_folder(ROOT / "samples" / f"{name}.mkv", folder, true_fps)
    out = cache / "models" / f"true{true_fps:g}-as{assumed:g}"
    t = time.monotonic()
    train_package([str(f) for f in train], out, minutes=minutes, progress=False, input_fps=assumed)
    trained_s = time.monotonic() - t
    scorer = PackageScorer(ModelPackage.load(out))
    cols: dict[str, list[float]] = {"video": [], "fused": []}
    labels: list[bool] = []
    try:
        for name, folder in zip(LABELLED, test, strict=True):
            intervals = video_intervals(name)
            for row in csv_rows(score_media(str(folder), scorer, input_fps=assumed)):
                t_true = int(row[0]) / true_fps
                labels.append(any(s <= t_true < e for s, e in intervals))
                cols["video"].append(float(row[2]) if row[2] else math.nan)
                cols["fused"].append(float(row[5]) if row[5] else math.nan)
    finally:
        scorer.close()
    y = np.asarray(labels)
    result: dict[str, Any] = {"true_fps": true_fps, "assumed_fps": assumed, "frames": len(y),
                              "train_s": round(trained_s, 1)}
    for k, v in cols.items():
        s = np.asarray(v)
        result[f"{k}_auc"] = round(roc_auc(np.nan_to_num(s, nan=0.0), y), 4)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per package")
    p.add_argument("--true", default="10,25", help="true frame rates of the folders made from the clips")
    p.add_argument("--assumed", default="5,10,25", help="rates given to edge train / edge score as --fps")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "lepton-edge" / "image_rate")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = []
    for true_fps in (float(x) for x in args.true.split(",")):
        for assumed in (float(x) for x in args.assumed.split(",")):
            row = run(true_fps, assumed, args.cache_dir, args.minutes)
            rows.append(row)
            if not args.json:
                print(f"frames at {true_fps:g} fps taken as {assumed:g} fps: video {row['video_auc']:.3f}, "
                      f"fused {row['fused_auc']:.3f} ({row['frames']} frames; trained in {row['train_s']:.0f} s)",
                      flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
