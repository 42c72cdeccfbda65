#!/usr/bin/env python3
"""Detection quality on real footage: a real camera's pedestrians instead of the generator's.

The footage is PETS 2009 S2.L1, view 1 — the clip OpenCV ships as ``samples/data/vtest.avi``: a fixed camera over a
university forecourt, 768x576, 10 fps, 79.5 s, grayscale-looking colour, no sound. For its first 50 s people walk the
paved paths; from 50.3 s to 73.0 s several of them cross the lawn in the foreground, where nobody walked before;
then the paths again. Like a Frigate zone nobody enters, the lawn crossing is what this scene's normal footage does
not show: this benchmark trains a package on the first 40 s with ``edge train``'s defaults and evaluates the rest
(39.5 s: 16.8 s of path walking, 22.7 s of lawn crossing) as ``edge eval`` does. The lawn span was measured once on
the frames: the first and last frame with more than 150 pixels differing by over 40 levels from the clip's median
picture below the lawn's edge (frames 503 and 729).

    .venv/bin/python benchmarks/real_scene.py [--minutes 5] [--seed 0] [--clip vtest.avi] [--json]

The clip is not in this repository (the PETS data is for research use). ``--clip`` takes a copy; without it the
clip is taken from the opencv-python 4.10.0.84 source distribution on PyPI (95 MB, fetched once, sha256 checked,
only the clip kept) into ``--cache-dir`` (default ``~/.cache/lepton-edge/real``). Needs the train extra (torch).
Nothing here changes the pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SDIST_URL = (
    "https://files.pythonhosted.org/packages/4a/e7/b70a2d9ab205110d715906fc8ec83fbb00404aeb3a37a0654fdb68eb0c8c/"
    "opencv-python-4.10.0.84.tar.gz"
)
SDIST_SHA256 = "72d234e4582e9658ffea8e9cae5b63d488ad06994ef12d81dc303b17472f3526"
MEMBER = "opencv-python-4.10.0.84/opencv/samples/data/vtest.avi"
CLIP_SHA256 = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
FPS = 10
TRAIN_FRAMES = 400  # the first 40 s
LAWN = (503, 730)  # frames [first, last + 1) with people on the lawn
FETCH_TIMEOUT_S = 60.0  # per network operation
FETCH_DEADLINE_S = 900.0  # for the whole download


def fetch_clip(cache: Path, log: Any) -> Path:
    """vtest.avi from the pinned opencv-python sdist, once; checked against its sha256."""
    from pipeline.engines.cache import file_sha256

    clip = cache / "vtest.avi"
    if clip.exists() and file_sha256(clip) == CLIP_SHA256:
        return clip
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / ".opencv-python-4.10.0.84.tar.gz.part"
    log(f"fetching the clip from PyPI ({SDIST_URL.rsplit('/', 1)[1]}, 95 MB, once)")
    deadline = time.monotonic() + FETCH_DEADLINE_S
    with urllib.request.urlopen(SDIST_URL, timeout=FETCH_TIMEOUT_S) as r, sdist.open("wb") as f:
        while block := r.read(1 << 20):
            f.write(block)
            if time.monotonic() > deadline:
                raise TimeoutError(f"downloading {SDIST_URL} took over {FETCH_DEADLINE_S:.0f} s")
    try:
        if file_sha256(sdist) != SDIST_SHA256:
            raise ValueError(f"{SDIST_URL}: sha256 differs from the pinned one")
        with tarfile.open(sdist) as tar:
            member = tar.extractfile(MEMBER)
            if member is None:
                raise ValueError(f"{MEMBER} is not a file in the sdist")
            tmp = clip.with_suffix(".part")
            tmp.write_bytes(member.read())
        if file_sha256(tmp) != CLIP_SHA256:
            raise ValueError(f"{MEMBER}: sha256 differs from the pinned one")
        tmp.replace(clip)
    finally:
        sdist.unlink(missing_ok=True)
    return clip


def _write(path: Path, frames: np.ndarray) -> None:
    import av

    tmp = path.with_name(f".{path.name}.tmp")
    with av.open(str(tmp), "w", format="matroska") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.height, s.width = frames.shape[1:]
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "veryfast", "crf": "18"}
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="gray")
            vf.pts = i
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    tmp.replace(path)


def prepare(clip: Path, cache: Path) -> tuple[Path, Path]:
    """The training clip (the first 40 s) and the labelled test clip (the rest, ground truth beside it)."""
    import av

    train, test = cache / "pets_train.mkv", cache / "pets_test.mkv"
    if not (train.exists() and test.exists()):
        with av.open(str(clip)) as c:
            frames = np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)])
        if len(frames) <= LAWN[1]:
            raise ValueError(f"{clip}: {len(frames)} frames, expected 795 (not PETS 2009 S2.L1 view 1?)")
        _write(train, frames[:TRAIN_FRAMES])
        _write(test, frames[TRAIN_FRAMES:])
    truth = {
        "clip": test.name,
        "fps": FPS,
        "anomalies": [{
            "start": (LAWN[0] - TRAIN_FRAMES) / FPS,
            "end": (LAWN[1] - TRAIN_FRAMES) / FPS,
            "modalities": ["video"],
            "kind": "forbidden_area",
            "detail": "people cross the lawn, where nobody walked in the training footage",
        }],
    }
    test.with_suffix(".json").write_text(json.dumps(truth, indent=1))
    return train, test


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training budget (edge train --minutes; its default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip", type=Path, help="a copy of vtest.avi (default: fetched from PyPI once)")
    p.add_argument("--model", type=Path, help="evaluate this package instead of training one")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "lepton-edge" / "real")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from pipeline.models.package import ModelPackage
    from pipeline.quality import evaluate, summary_lines

    clip = args.clip or fetch_clip(args.cache_dir, log)
    train, test = prepare(clip, args.cache_dir)
    model = args.model
    row: dict[str, Any] = {}
    if model is None:
        from pipeline.models.train import train_package

        model = args.cache_dir / "models" / f"seed{args.seed}"
        t = time.monotonic()
        train_package([str(train)], model, minutes=args.minutes, seed=args.seed, progress=False)
        row["train_s"] = round(time.monotonic() - t, 1)
    report = evaluate([str(test)], ModelPackage.load(model))
    clip_report = report["clips"][test.name]
    row.update({k: report.get(k) for k in ("video_auc", "temporal_auc", "fused_auc", "video_baseline_auc",
                                           "event_recall", "false_alarms")})
    row["normal_rate_ge_3"] = {k: clip_report[k]["normal_rate_ge_3"] for k in ("video", "temporal", "fused")
                               if k in clip_report}
    if args.json:
        print(json.dumps(row, indent=1))
    else:
        print("\n".join(summary_lines(report)))
        rates = ", ".join(f"{k} {v:.3f}" for k, v in row["normal_rate_ge_3"].items())
        print(f"normal (path-walking) frames scoring >= 3: {rates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
