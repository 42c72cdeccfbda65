"""``edge score`` and training on every kind of input: a clip, an audio-only file (WAV), an image-sequence pattern
and a folder of frames; the CSV format; clear errors."""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import DEFAULT_MODEL
from fixtures.scene import scene_audio, scene_frames

from edge import models_cli
from pipeline.aggregator import DEFAULT_DISCOUNT, AggregatorSettings
from pipeline.evaluation import CSV_HEADER, MediaScores, aggregate, score_media
from pipeline.frames import Score
from pipeline.models.package import ModelPackage
from pipeline.scoring_model import PackageScorer


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="edge")
    models_cli.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == CSV_HEADER
        return [dict(zip(CSV_HEADER, row, strict=True)) for row in reader]


def write_wav(path: Path, samples: np.ndarray, rate: int = 22050) -> Path:
    """Mono 16-bit PCM WAV, at another rate than the model's (the reader resamples)."""
    src = np.interp(np.arange(int(len(samples) * rate / 16000)) * 16000 / rate, np.arange(len(samples)), samples)
    out = av.open(str(path), "w")
    stream = out.add_stream("pcm_s16le", rate=rate)
    stream.layout = "mono"
    pcm = (np.clip(src, -1, 1) * 32767).astype(np.int16)
    for start in range(0, len(pcm), 1024):
        frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 1024], format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)
    out.close()
    return path


def write_frames(folder: Path, frames: np.ndarray) -> Path:
    """PNG frames 000.png, 001.png ... (grayscale scene upscaled 2x, like a small camera)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        img = np.repeat(np.repeat(f, 2, axis=0), 2, axis=1)
        _write_png(folder / f"{i:03d}.png", av.VideoFrame.from_ndarray(img, format="gray"))
    return folder


def _write_png(path: Path, frame: av.VideoFrame) -> None:
    out = av.open(str(path), "w", format="image2")
    stream = out.add_stream("png", rate=1)
    stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "gray"
    for p in stream.encode(frame):
        out.mux(p)
    for p in stream.encode():
        out.mux(p)
    out.close()


def test_score_a_clip_writes_one_row_per_frame_with_audio_and_fused(tmp_path: Path) -> None:
    from fixtures.media import make_clip

    clip = make_clip(tmp_path / "c.mkv", seconds=4.0, fps=25, loud=[(2.0, 3.0)])
    out = tmp_path / "scores.csv"
    assert run_cli("score", "--model", str(DEFAULT_MODEL), str(clip), "--out", str(out)) == 0
    rows = read_csv(out)
    # one row per frame of the input (100 at 25 fps), numbered in presentation order: a per-frame ground truth lines up
    assert len(rows) == 100
    assert [r["frame"] for r in rows] == [str(i) for i in range(100)]
    assert [float(r["pts"]) for r in rows] == pytest.approx([i / 25 for i in range(100)], abs=0.002)
    # the model scores every 5th (its 5 fps); the frames between hold the latest scored frame's scores
    scored = rows[::5]
    # every frame has a video score, the first ones too: before 4 past frames exist the first stands in for them
    assert all(r["video"] for r in rows)
    for i, r in enumerate(rows):
        held = rows[i - i % 5]
        assert (r["video"], r["temporal"], r["fused"]) == (held["video"], held["temporal"], held["fused"])
    # the temporal model needs a full window of embeddings (10 frames after the video model's first score), and the
    # package scores every 2nd window from there (temporal.score_every), as the runner does; each score holds
    # until the next is due
    assert [i for i, r in enumerate(scored) if r["temporal"]] == [13, 14, 15, 16, 17, 18, 19]
    assert [scored[i]["temporal"] for i in (13, 15, 17)] == [scored[i]["temporal"] for i in (14, 16, 18)]
    assert all(r["audio"] for r in rows if float(r["pts"]) < 3.5)  # a window covers every frame up to the last 0.5 s
    # fused: the level the aggregator's thresholds see (default settings: max fusion, then smoothing)
    scorer = PackageScorer(ModelPackage.load(DEFAULT_MODEL))
    try:
        scores = score_media(str(clip), scorer)
    finally:
        scorer.close()
    assert [float(r["fused"]) for r in scored] == pytest.approx(aggregate(scores)[1].tolist(), abs=1e-4)
    for r, unsmoothed in zip(scored, aggregate(scores, AggregatorSettings(smoothing_s=0.0))[1].tolist(), strict=True):
        # before smoothing, max fusion is at least each visual score of its frame, less its discount (audio counts
        # once complete)
        visual = [float(r[k]) - DEFAULT_DISCOUNT.get(k, 0.0) for k in ("video", "temporal") if r[k]]
        assert not visual or unsmoothed >= max(visual) - 1e-4
    assert all(r["fused"] for r in rows)  # from the first frame on


def test_the_fused_column_is_causal(tmp_path: Path) -> None:
    """The fused score of a frame is what the aggregator knew then: cutting the clip after it changes nothing."""
    from fixtures.media import make_clip

    clip = make_clip(tmp_path / "c.mkv", seconds=4.0, loud=[(2.0, 3.0)])
    scorer = PackageScorer(ModelPackage.load(DEFAULT_MODEL))
    try:
        full = score_media(str(clip), scorer)
    finally:
        scorer.close()
    cut = 2.4  # inside the loud burst: the window centred there completes only later
    head = MediaScores(full.name, has_video=True, has_audio=True)
    keep = full.frame_pts <= cut
    for name in ("frame_pts", "video_raw", "video", "temporal"):
        setattr(head, name, getattr(full, name)[keep])
    head.video_boxes = [b for b, k in zip(full.video_boxes, keep, strict=True) if k]
    done = full.audio_end <= cut
    for name in ("audio_start", "audio_end", "audio_raw", "audio"):
        setattr(head, name, getattr(full, name)[done])
    np.testing.assert_allclose(aggregate(head)[1], aggregate(full)[1][keep], equal_nan=True)
    assert len(full.audio) > len(head.audio)  # the later windows (the burst's) exist and were not seen


def test_audio_column_is_the_window_covering_the_frame() -> None:
    from pipeline.evaluation import MediaScores

    ms = MediaScores("x")
    ms.frame_pts = np.array([0.0, 0.4, 0.6, 1.2, 2.9])
    ms.audio_start, ms.audio_end = np.array([0.0, 0.5, 1.0, 1.5]), np.array([1.0, 1.5, 2.0, 2.5])
    ms.audio = np.array([1.0, 2.0, 3.0, 4.0])
    # centres 0.5, 1.0, 1.5, 2.0: 0.0 → window 0; 0.6 → 0 (centre 0.5 nearer than 1.0); 1.2 → 1; 2.9: none
    np.testing.assert_array_equal(ms.audio_at_frames(), [1.0, 1.0, 1.0, 2.0, np.nan])


@pytest.fixture(scope="module")
def torch_available() -> None:
    pytest.importorskip("torch", reason="training needs the train extra (torch)")


def test_an_audio_file_trains_and_scores_the_audio_model_alone(tmp_path: Path, torch_available: None) -> None:
    from pipeline.models.train import train_package

    wav = write_wav(tmp_path / "normal.wav", scene_audio(12.0, seed=3))
    out = tmp_path / "mic"
    report = train_package([str(wav)], out, minutes=0.02, progress=False, threads=1)
    pkg = ModelPackage.load(out)
    assert pkg.video is None and pkg.audio is not None and report["inputs"]["video"] == []
    test = write_wav(tmp_path / "test.wav", scene_audio(4.0, seed=4, burst_at=2.5))
    csv_path = tmp_path / "a.csv"
    assert run_cli("score", "--model", str(out), str(test), "--out", str(csv_path)) == 0
    rows = read_csv(csv_path)
    assert len(rows) >= 5 and all(r["frame"] == "" and r["video"] == "" for r in rows)
    assert pkg.audio is not None
    centres = [pkg.audio.window_s / 2 + k * pkg.audio.hop_s for k in range(3)]  # one row per window, at its centre
    assert [float(r["pts"]) for r in rows][:3] == pytest.approx(centres, abs=0.01)
    assert all(r["audio"] and r["fused"] == r["audio"] for r in rows)


def test_a_folder_of_frames_and_a_pattern_train_and_score_video_only(tmp_path: Path, torch_available: None) -> None:
    from pipeline.models.train import decode, train_package

    folder = write_frames(tmp_path / "frames", scene_frames(200, fps=10.0, seed=2))  # 20 s at 10 fps
    normal = decode(str(folder), input_fps=10.0)
    assert normal.step == 2 and len(normal.audio) == 0  # two decoded frames per model period of 0.2 s
    out = tmp_path / "snap"
    train_package([str(folder)], out, minutes=0.02, progress=False, threads=1, input_fps=10.0)
    pkg = ModelPackage.load(out)
    assert pkg.video is not None and pkg.audio is None
    assert [x.fps for x in pkg.trained_on.sources] == [10.0] and pkg.trained_fps == 10.0  # the rate it learned at

    scorer = PackageScorer(pkg)
    by_folder = score_media(str(folder), scorer, input_fps=10.0)
    by_pattern = score_media(str(folder / "%03d.png"), scorer, input_fps=10.0)
    scorer.close()
    assert len(by_folder.frame_pts) == 100 and not by_folder.has_audio  # 20 s sampled at 5 fps
    np.testing.assert_allclose(by_folder.video, by_pattern.video, equal_nan=True)

    csv_path = tmp_path / "v.csv"
    assert run_cli("score", "--model", str(out), str(folder / "%03d.png"), "--fps", "10", "--out", str(csv_path)) == 0
    rows = read_csv(csv_path)
    assert len(rows) == 200 and all(r["audio"] == "" for r in rows) and rows[-1]["video"]  # every image a row
    assert [r["frame"] for r in rows] == [str(i) for i in range(200)]


def test_frames_without_fps_are_taken_at_the_rate_the_package_learned_at(tmp_path: Path) -> None:
    """Image sequences carry no timing: the model must step over the same time it learned, so an image sequence
    scored without --fps is taken at the package's training rate (the default package: 25 fps clips), and at
    ``DEFAULT_IMAGE_FPS`` for a package that did not record one."""
    from pipeline.evaluation import DEFAULT_IMAGE_FPS

    folder = write_frames(tmp_path / "frames", scene_frames(30, fps=25.0, seed=3))
    pkg = ModelPackage.load(DEFAULT_MODEL)
    assert pkg.trained_fps == 25.0 != DEFAULT_IMAGE_FPS
    out = tmp_path / "s.csv"
    assert run_cli("score", "--model", str(DEFAULT_MODEL), str(folder), "--out", str(out)) == 0
    assert [float(r["pts"]) for r in read_csv(out)] == pytest.approx([i / 25 for i in range(30)], abs=1e-3)

    old = tmp_path / "old"  # a package from before the rate was recorded
    shutil.copytree(DEFAULT_MODEL, old)
    meta = json.loads((old / "model.json").read_text())
    for src in meta["trained_on"]["sources"]:
        del src["fps"]
    (old / "model.json").write_text(json.dumps(meta))
    assert ModelPackage.load(old).trained_fps is None
    assert run_cli("score", "--model", str(old), str(folder), "--out", str(out)) == 0
    assert float(read_csv(out)[1]["pts"]) == pytest.approx(1 / DEFAULT_IMAGE_FPS, abs=1e-3)


def test_a_folder_of_recordings_trains_on_each_of_them(tmp_path: Path, torch_available: None) -> None:
    """Data sets come as a folder of clips or of frame folders (``Train/Train001/*.tif``): each is an input."""
    from pipeline.models.train import train_package
    from pipeline.sources.spec import expand_folders

    data = tmp_path / "Train"
    for i in (1, 2):
        write_frames(data / f"Train00{i}", scene_frames(100, fps=10.0, seed=10 + i))  # 10 s each at 10 fps
    (data / "README.txt").write_text("not footage")
    (data / "empty").mkdir()
    assert expand_folders([str(data)]) == [str(data / "Train001"), str(data / "Train002")]
    assert expand_folders([str(data / "Train001")]) == [str(data / "Train001")]  # a folder of frames is one input
    clips = tmp_path / "training_videos"
    clips.mkdir()
    for name in ("02.avi", "01.avi", "mic.wav", "labels.json"):
        (clips / name).touch()
    assert expand_folders([str(clips), "x.mkv"]) == [str(clips / n) for n in ("01.avi", "02.avi", "mic.wav")] + [
        "x.mkv"
    ]
    report = train_package([str(data)], tmp_path / "m", minutes=0.02, progress=False, threads=1, input_fps=10.0)
    assert report["inputs"]["video"] == [str(data / "Train001"), str(data / "Train002")]
    assert report["threads"] == 1  # as asked; without it, the usable cores (at most 8)


def test_score_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("score", "--model", str(DEFAULT_MODEL), str(tmp_path / "nope.mkv"), "--out", "x.csv") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge: ") and "nope.mkv" in err[0]
    videos = tmp_path / "testing_videos"  # a data set's folder: edge score takes one input and says so
    videos.mkdir()
    for name in ("01.avi", "02.avi"):
        (videos / name).touch()
    assert run_cli("score", "--model", str(DEFAULT_MODEL), str(videos), "--out", str(tmp_path / "x.csv")) == 1
    assert "holds recordings or frame folders (01.avi, 02.avi), not frames: give one" in capsys.readouterr().err
    assert run_cli("score", "--model", str(tmp_path / "no-model"), str(tmp_path / "x.mkv")) == 1
    assert "model package not found" in capsys.readouterr().err


def test_score_to_stdout(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from fixtures.media import make_clip

    clip = make_clip(tmp_path / "c.mkv", seconds=2.0, audio=False)
    assert run_cli("score", str(clip)) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 51 and all(r[4] == "" for r in rows[1:])  # 2 s at 25 fps


def test_edge_score_scores_what_the_daemon_scores(tmp_path: Path) -> None:
    """The same video, temporal and audio scores from the runner (the daemon's path, batches cut anywhere) as from
    ``score_media`` (``edge score`` / ``edge eval``)."""
    from fixtures.media import make_clip

    from pipeline.frames import Modality
    from pipeline.runner import Runner, RunnerSettings
    from pipeline.sources import SourceSpec

    clip = make_clip(tmp_path / "c.mkv", seconds=5.0, bright=[(2.0, 3.0)], loud=[(3.0, 4.0)])
    scorer = PackageScorer(ModelPackage.load(DEFAULT_MODEL))
    try:
        offline = score_media(str(clip), scorer)
        scores: list[Score] = []
        runner = Runner(
            [SourceSpec("cam", str(clip))], scorer, lambda e: None, RunnerSettings(max_batch=3), on_score=scores.append
        )
        assert runner.open_sources() == {}
        runner.start()
        assert runner.wait(60)
        runner.join()
    finally:
        scorer.close()

    def of(modality: Modality) -> list[tuple[float, float]]:
        return [(round(s.pts, 3), s.calibrated) for s in scores if s.modality == modality]

    video = of(Modality.VIDEO)
    assert [t for t, _ in video] == pytest.approx(offline.frame_pts.tolist(), abs=1e-3)
    assert [c for _, c in video] == pytest.approx(offline.video.tolist(), abs=1e-5)
    ok = np.isfinite(offline.temporal)
    assert [c for _, c in of(Modality.TEMPORAL)] == pytest.approx(offline.temporal[ok].tolist(), abs=1e-5)
    assert [c for _, c in of(Modality.AUDIO)] == pytest.approx(offline.audio.tolist(), abs=1e-5)
