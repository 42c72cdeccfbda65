"""What ``edge eval`` reports beside each model's AUC: the trivial baselines on the same input, the fraction of
normal frames / windows at or above the threshold, both label formats, and the plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DEFAULT_MODEL
from fixtures.scene import scene_audio, scene_frames
from test_score import write_frames, write_wav

from pipeline.evaluation import frame_difference, score_media, window_rms_db
from pipeline.models.package import ModelPackage
from pipeline.quality import evaluate
from pipeline.scoring_model import PackageScorer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_frame_difference_is_the_mean_absolute_change() -> None:
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, :2] = 80  # 2 of 16 pixels change by 80
    assert frame_difference(a, b) == pytest.approx(10.0)
    assert frame_difference(b, b) == 0.0


def test_window_rms_level_reads_the_newest_span_in_dbfs() -> None:
    t = np.arange(16000) / 16000
    quiet_then_loud = np.where(t < 0.5, 0.01, 0.5) * np.sin(2 * np.pi * 440 * t)
    assert window_rms_db(quiet_then_loud, 4000) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)
    assert window_rms_db(quiet_then_loud, 16000) < window_rms_db(quiet_then_loud, 4000) - 2.5


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder of frames at 10 fps whose second half has a racing square, and the same as frame labels."""
    root = tmp_path_factory.mktemp("eval")
    frames = scene_frames(60, fps=10.0, intruder_from=30, seed=3)
    folder = write_frames(root / "clip", frames)
    (root / "clip.json").write_text(
        json.dumps({"anomalies": [{"start": 3.0, "end": 6.0, "modalities": ["video"], "kind": "square"}]})
    )
    same = write_frames(root / "clip_frames", frames)
    (root / "clip_frames.json").write_text(json.dumps({"frame_labels": [0] * 30 + [1] * 30}))
    return folder, same


def test_eval_reports_baselines_and_the_normal_rate_at_the_threshold(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, _ = labelled
    package = ModelPackage.load(DEFAULT_MODEL)
    report = evaluate([str(folder)], package, input_fps=10.0, plots=tmp_path / "plots")
    clip = report["clips"]["clip"]["video"]
    assert 0.0 <= clip["baseline_auc"] <= 1.0 and clip["anomalous"] > 0
    assert report["video_baseline_auc"] == pytest.approx(clip["baseline_auc"])
    # the rate is that of the calibrated scores of the normal frames, recomputed from the scores themselves
    scorer = PackageScorer(package)
    try:
        sc = score_media(str(folder), scorer, input_fps=10.0, baseline=True)
    finally:
        scorer.close()
    normal = sc.frame_pts < 3.0
    assert report["video_normal_rate_ge_3"] == pytest.approx(float(np.mean(sc.video[normal] >= 3.0)))
    assert report["video_normal_scored"] == int(normal.sum())
    # the baseline is the frame difference of consecutive scored frames: the racing square raises it
    assert sc.baseline[~normal].mean() > sc.baseline[normal].mean()
    # plots: a ROC and the clip's scores over time, real PNGs that matplotlib reads back
    names = sorted(Path(p).name for p in report["plots"])
    assert names == ["roc.png", "scores_clip.png"]
    import matplotlib.image

    for p in report["plots"]:
        assert Path(p).read_bytes()[:8] == PNG_MAGIC
        assert matplotlib.image.imread(p).shape[0] > 100


def test_per_frame_labels_read_the_same_as_the_intervals(labelled: tuple[Path, Path]) -> None:
    folder, same = labelled
    package = ModelPackage.load(DEFAULT_MODEL)
    by_interval = evaluate([str(folder)], package, input_fps=10.0)
    by_frame = evaluate([str(same)], package, input_fps=10.0)
    a, b = by_interval["clips"]["clip"]["video"], by_frame["clips"]["clip_frames"]["video"]
    assert (a["anomalous"], a["auc"], a["normal_rate_ge_3"]) == (b["anomalous"], b["auc"], b["normal_rate_ge_3"])
    # events are matched against the runs of 1s as against the interval: an event on the labelled frames is a
    # detection, not a false alarm
    ea, eb = by_interval["clips"]["clip"]["events"], by_frame["clips"]["clip_frames"]["events"]
    assert ea["recalled"] == 1 and ea["false_alarms"] == []
    assert (eb["anomalies"], eb["recalled"], eb["false_alarms"]) == (1, 1, [])
    assert by_frame["event_recall"] == 1.0


def test_runs_of_frame_labels_become_intervals(tmp_path: Path) -> None:
    from pipeline.evaluation import MediaScores, label_intervals

    (tmp_path / "c.json").write_text(json.dumps({"frame_labels": [0, 1, 1, 0, 0, 1, 1]}))
    sc = MediaScores(name="c", input_index=np.arange(7), input_pts=np.arange(7) / 10.0)
    got = label_intervals(str(tmp_path / "c"), sc)
    assert [(round(s, 3), round(e, 3)) for s, e, _ in got] == [(0.1, 0.3), (0.5, 0.7)]  # the last run: one period on


def test_audio_eval_reports_the_rms_baseline(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    samples = scene_audio(8.0, seed=2)
    burst = slice(4 * 16000, int(4.6 * 16000))
    samples[burst] += 0.3 * rng.standard_normal(burst.stop - burst.start)
    wav = write_wav(tmp_path / "a.wav", samples)
    (tmp_path / "a.json").write_text(
        json.dumps({"anomalies": [{"start": 4.0, "end": 4.6, "modalities": ["audio"], "kind": "burst"}]})
    )
    report = evaluate([str(wav)], ModelPackage.load(DEFAULT_MODEL))
    audio = report["clips"]["a.wav"]["audio"]
    assert audio["anomalous"] > 0 and audio["baseline_auc"] > 0.9  # a loud burst: the level alone finds it
    assert 0.0 <= report["audio_normal_rate_ge_3"] <= 1.0
