"""Training: a tiny package from a real clip (decoded by read_media) and from synthetic footage loads and
scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures.scene import scene_audio, scene_frames

from pipeline.engines import create_engine
from pipeline.models.package import ModelPackage
from pipeline.scorer import AudioScorer, VideoScorer

pytest.importorskip("torch", reason="training needs the train extra (torch)")


def _scorers(pkg: ModelPackage) -> tuple[VideoScorer, AudioScorer]:
    v, a = create_engine({"type": "onnxruntime"}), create_engine({"type": "onnxruntime"})
    v.load(pkg.graph_path("video"))
    a.load(pkg.graph_path("audio"))
    return VideoScorer(pkg, v), AudioScorer(pkg, a)


def test_train_package_from_a_clip(tmp_path: Path) -> None:
    from fixtures.media import make_clip

    from pipeline.models.train import train_package

    clip = make_clip(tmp_path / "normal.mkv", seconds=10.0)
    out = tmp_path / "models" / "site"
    report = train_package([str(clip)], out, minutes=0.03, progress=False, threads=1)
    pkg = ModelPackage.load(out)
    assert pkg.package_id == "site" and report["version"] == pkg.version
    assert len(pkg.trained_on.sources) == 1 and pkg.trained_on.sources[0].duration_s == pytest.approx(
        10.0, abs=0.2
    )
    assert report["video"]["epoch_losses"] and report["audio"]["epoch_losses"]
    assert not list(out.parent.glob(".*tmp*")), "no temporary directory is left behind"
    video, audio = _scorers(pkg)
    raw, boxes = video.score(np.zeros((2, video.context + 1, *video.frame_shape), np.uint8))
    assert raw.shape == (2,) and len(boxes) == 2
    cal = video.calibrate(raw)
    assert cal.shape == (2,) and np.all((cal >= 0) & (cal <= 10))
    assert audio.score(np.zeros((1, audio.n_samples), np.float32)).shape == (1,)

    # retraining replaces the package in place
    report2 = train_package([str(clip)], out, minutes=0.02, progress=False, threads=1, audio=False)
    assert ModelPackage.load(out).audio is None and report2["package_id"] == "site"


def test_synthetic_anomalies_score_above_normal(tmp_path: Path) -> None:
    from fixtures.tiny_package import train_tiny_package

    pkg = ModelPackage.load(train_tiny_package(tmp_path / "tiny"))
    video, audio = _scorers(pkg)
    h, w = video.frame_shape
    frames = scene_frames(150, seed=7, intruder_from=100, height=h, width=w)[::5]  # 5 fps
    stacks = np.stack([frames[i - 4 : i + 1] for i in range(4, len(frames))])
    raw, _ = video.score(stacks)
    normal, anomalous = raw[: 20 - 4], raw[20 - 4 :]
    assert anomalous.min() > np.median(normal)
    cal = video.calibrate(raw)
    assert cal[20 - 4 :].mean() > cal[: 20 - 4].mean() + 1.0

    sound = scene_audio(4.0, seed=7, burst_at=3.2)
    windows = np.stack([sound[s : s + 16000] for s in range(0, 48000 + 1, 8000)])  # 0, .5, ... 3.0 s
    raw_a = audio.score(windows)
    assert raw_a[-1] > raw_a[:-2].max()
