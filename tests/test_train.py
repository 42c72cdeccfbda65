"""Training: a tiny package from a real clip (decoded by read_media) and from synthetic footage loads and
scores."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

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


def test_train_package_from_a_clip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from fixtures.media import make_clip

    from pipeline.models.train import train_package

    clip = make_clip(tmp_path / "normal.mkv", seconds=10.0)
    out = tmp_path / "models" / "site"
    report = train_package([str(clip)], out, minutes=0.03, progress=False, threads=1)
    # 2 s held out to calibrate on: it says what that makes of a calibrated 3
    assert report["heldout_s"] == pytest.approx({"video": 2.0, "audio": 2.0}, abs=0.1)
    assert "calibrating on 2 s of video and 2 s of audio of held-out normal footage" in caplog.text
    assert "give 2.5 min or more of footage" in caplog.text
    pkg = ModelPackage.load(out)
    assert pkg.package_id == "site" and report["version"] == pkg.version
    assert len(pkg.trained_on.sources) == 1 and pkg.trained_on.sources[0].duration_s == pytest.approx(10.0, abs=0.2)
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
    n = audio.n_samples  # windows from 0, .5, ... 3.0 s: the last two hold the burst's start
    windows = np.stack([sound[s : s + n] for s in range(0, 48000 + 1, 8000)])
    raw_a = audio.score(windows)
    assert raw_a[-1] > raw_a[:-2].max()


def test_short_footage_is_not_passed_over_beyond_the_epoch_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A time budget far beyond what little footage needs ends at MAX_VIDEO_EPOCHS / MAX_TEMPORAL_EPOCHS passes, not
    at the budget (over-trained on 40 s of a real scene, both models scored worse: see those constants)."""
    from fixtures.scene import normal_input

    from pipeline.models import train_temporal, train_video

    monkeypatch.setattr(train_video, "MAX_VIDEO_EPOCHS", 2)  # the real cap (50) takes a minute on this footage
    monkeypatch.setattr(train_temporal, "MAX_TEMPORAL_EPOCHS", 2)
    footage = normal_input(6.0)
    _, report, embeddings = train_video.train_video([footage], 600.0, seed=0, progress=False)
    assert report["stopped_by"] == "epochs"
    assert report["epochs"] == pytest.approx(2, abs=16 / report["sequences"])
    assert report["steps"] == round(2 * report["sequences"] / 16)
    assert report["seconds"] < 600
    _, report = train_temporal.train_temporal([footage], embeddings, 600.0, seed=0, progress=False)
    assert report["stopped_by"] == "epochs" and report["steps"] == round(2 * report["windows"] / 16)
    assert report["seconds"] < 600


def test_long_footage_is_kept_at_the_model_rate_then_in_even_pieces() -> None:
    from pipeline.models.train import FPS, FULL_RATE_MAX_S, MAX_FOOTAGE_S, OVERSAMPLE, plan_footage

    short = plan_footage([600.0, None, 300.0])  # an unreadable length counts 0
    assert (short.fps, short.keep) == (FPS * OVERSAMPLE, 1.0) and short.total_s == 900.0
    hour = plan_footage([FULL_RATE_MAX_S, 2400.0])
    assert (hour.fps, hour.keep) == (FPS, 1.0)
    day = plan_footage([MAX_FOOTAGE_S * 3])
    assert day.fps == FPS and day.keep == pytest.approx(1 / 3)
    assert "3.0 h of normal footage: training on 1.0 h of it" in day.describe()


def test_decode_pieces_keeps_evenly_spaced_stretches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fixtures.media import make_clip

    from pipeline.models import footage

    clip = str(make_clip(tmp_path / "normal.mkv", seconds=10.0))
    whole = footage.decode_pieces(clip)
    assert len(whole) == 1 and len(whole[0].frames) == pytest.approx(250, abs=2) and whole[0].step == 5
    monkeypatch.setattr(footage, "PIECE_S", 2.0)
    some = footage.decode_pieces(clip, fps=footage.FPS, keep=0.4)  # pieces 1 and 3 of 0-4 (2 s each), at 5 fps
    assert len(some) == 2 and all(x.source is some[0].source for x in some)
    assert some[0].source.duration_s == pytest.approx(10.0, abs=0.2)  # the whole input's
    assert [len(x.frames) for x in some] == [10, 10] and all(x.step == 1 for x in some)
    assert [len(x.audio) for x in some] == [2 * footage.SAMPLE_RATE] * 2  # the sound of the same pieces
    np.testing.assert_array_equal(some[0].frames, whole[0].frames[50:100:5])  # the same frames, every 5th
    np.testing.assert_array_equal(some[1].frames, whole[0].frames[150:200:5])
    # pieces count over all inputs: of one-piece clips at 0.4, the 2nd, the 4th... are kept, whole
    monkeypatch.setattr(footage, "PIECE_S", 20.0)
    assert [len(footage.decode_pieces(clip, keep=0.4, first_piece=k)[0].frames) for k in range(4)] == [0, 250, 0, 250]
    assert [footage._run_start(k, 0.75) for k in range(8)] == [0, 0, None, 3, 3, 3, None, 7]  # runs: one stretch each

    capped = footage.decode_pieces(clip, max_frames=40)  # a length that could not be read: the guard
    assert len(capped) == 1 and len(capped[0].frames) == 40


def test_training_on_long_footage_names_each_input_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fixtures.media import make_clip

    from pipeline.models import footage, train

    clip = make_clip(tmp_path / "normal.mkv", seconds=60.0)
    monkeypatch.setattr(footage, "FULL_RATE_MAX_S", 20.0)  # 60 s is "long" here: kept at 5 fps, in 15 s pieces,
    monkeypatch.setattr(footage, "MAX_FOOTAGE_S", 30.0)  # half of them (15-30 s and 45-60 s)
    monkeypatch.setattr(footage, "PIECE_S", 15.0)
    out = tmp_path / "long"
    report = train.train_package([str(clip)], out, minutes=0.02, progress=False, threads=1, temporal=False)
    assert report["footage"] == {
        "found_s": pytest.approx(60.0, abs=0.2),
        "video_fps": train.FPS,
        "kept_fraction": pytest.approx(0.5, abs=0.01),
    }
    assert report["inputs"] == {"video": [str(clip)], "audio": [str(clip)]}
    pkg = ModelPackage.load(out)
    assert [s.name for s in pkg.trained_on.sources] == [str(clip)]
    assert pkg.trained_on.duration_s == pytest.approx(60.0, abs=0.2)

    # of three such clips (12 pieces, 2 of them kept: 1/6) the 3rd piece and the 9th are used: the 2nd clip is not
    # even decoded
    more = [str(make_clip(tmp_path / f"n{k}.mkv", seconds=60.0)) for k in (1, 2)]
    decoded: list[str] = []
    decode_pieces = footage.decode_pieces

    def recording(path: str, **kw: Any) -> list[train.NormalInput]:
        decoded.append(path)
        return decode_pieces(path, **kw)

    monkeypatch.setattr(footage, "decode_pieces", recording)
    report = train.train_package([str(clip), *more], out, minutes=0.02, progress=False, threads=1, temporal=False)
    assert report["footage"]["kept_fraction"] == pytest.approx(1 / 6, abs=0.01)
    assert decoded == report["inputs"]["video"] == [str(clip), more[1]]
    assert [s.name for s in ModelPackage.load(out).trained_on.sources] == [str(clip), more[1]]


def test_audio_only_footage_is_bounded_apart_from_video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fixtures.media import make_clip

    from pipeline.models import footage, train

    clip = make_clip(tmp_path / "cam.mkv", seconds=10.0)
    mic = make_clip(tmp_path / "mic.mka", seconds=60.0, video=False)  # a long recording of sound alone
    monkeypatch.setattr(footage, "FULL_RATE_MAX_S", 20.0)
    monkeypatch.setattr(footage, "MAX_FOOTAGE_S", 30.0)
    monkeypatch.setattr(footage, "PIECE_S", 15.0)
    out = tmp_path / "mixed"
    report = train.train_package([str(clip), str(mic)], out, minutes=0.02, progress=False, threads=1, temporal=False)
    # the clip's 10 s are all kept, at 25 fps: the microphone's minute does not count against the video's bound
    assert report["footage"] == {
        "found_s": pytest.approx(10.0, abs=0.2),
        "video_fps": train.FPS * train.OVERSAMPLE,
        "kept_fraction": 1.0,
        "audio_only_s": pytest.approx(60.0, abs=0.2),
        "audio_only_kept_fraction": pytest.approx(0.5, abs=0.01),
    }
    assert report["inputs"] == {"video": [str(clip)], "audio": [str(clip), str(mic)]}


def test_an_input_that_is_not_media_is_refused_before_any_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fixtures.media import make_clip

    from pipeline.errors import PipelineError
    from pipeline.models import footage, train

    folder = tmp_path / "normal"
    folder.mkdir()
    make_clip(folder / "a.mkv", seconds=10.0)
    (folder / "b.mkv").write_text("shopping list: eggs, milk\n" * 50)
    decoded: list[str] = []
    monkeypatch.setattr(footage, "decode_pieces", lambda path, **kw: decoded.append(path))
    with pytest.raises(PipelineError, match=r"b\.mkv: not a media file we can decode"):
        train.train_package([str(folder)], tmp_path / "m", minutes=0.02, progress=False, threads=1)
    assert decoded == []  # a.mkv was not decoded first, only to fail on b.mkv afterwards


def test_a_live_camera_is_never_read_as_a_file_and_its_refusal_hides_the_password() -> None:
    from pipeline.models import footage, train

    for read in (train.probe_input, footage.decode_pieces):
        with pytest.raises(ValueError, match="is a live camera: training learns from recorded footage") as err:
            read("rtsp://admin:hunter2@10.0.0.5/stream1")
        assert "rtsp://***@10.0.0.5/stream1" in str(err.value) and "hunter2" not in str(err.value)
        assert "edge record" in str(err.value)


@pytest.mark.slow
def test_training_on_a_live_camera_records_it_to_a_file_first(tmp_path: Path, rtsp_server: Any) -> None:
    import av
    from fixtures.media import make_clip

    from pipeline.models import train

    server = rtsp_server({"gate": make_clip(tmp_path / "gate.mkv", seconds=6.0)})  # looped: a camera that runs on
    url = server.url("gate").replace("rtsp://", "rtsp://admin:hunter2@")
    out = tmp_path / "gate-model"
    report = train.train_package([url], out, minutes=0.02, progress=False, threads=1, temporal=False, record_s=12.0)
    ((camera, recording),) = report["recordings"].items()
    assert camera == url.replace("admin:hunter2", "***")
    path = Path(recording)  # beside the package, named without the password: kept to evaluate or retrain with
    assert path.parent == tmp_path / "gate-model-recordings" and path.suffix == ".mkv" and "hunter2" not in path.name
    with av.open(str(path)) as container:  # a stream copy: the camera's own codecs, about 12 s of 25 fps
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert 11.5 * 25 <= sum(1 for _ in container.decode(video=0)) <= 12.5 * 25
    assert report["footage"]["found_s"] == pytest.approx(12.0, abs=0.5)
    pkg = ModelPackage.load(out)
    (source,) = pkg.trained_on.sources
    assert source.name == recording and source.duration_s == pytest.approx(12.0, abs=0.5)
    assert source.fps == pytest.approx(25.0, abs=0.5) and len(source.sha256) == 64
    assert "hunter2" not in (out / "model.json").read_text() and "hunter2" not in json.dumps(report, default=str)
    assert pkg.video is not None and pkg.audio is not None


def test_held_out_seconds_count_each_kind_at_its_rate() -> None:
    from pipeline.models.package import SourceInfo
    from pipeline.models.train import FPS, SAMPLE_RATE, NormalInput, heldout_seconds

    src = SourceInfo(name="a", sha256="0", duration_s=300.0)
    full = NormalInput(src, np.empty((int(300 * FPS * 5), 1, 1), np.uint8), np.empty(300 * SAMPLE_RATE, np.float32))
    thinned = NormalInput(src, np.empty((int(300 * FPS), 1, 1), np.uint8), np.empty(0, np.float32), step=1)
    assert heldout_seconds([full, thinned], [full]) == {"video": 120.0, "audio": 60.0}
    assert heldout_seconds([], [full]) == {"audio": 60.0}


def test_a_package_that_cannot_be_written_is_refused_before_any_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from fixtures.media import make_clip

    from pipeline.models import footage, train

    clip = str(make_clip(tmp_path / "a.mkv", seconds=10.0))
    decoded: list[str] = []
    monkeypatch.setattr(footage, "decode_pieces", lambda path, **kw: decoded.append(path))
    (tmp_path / "notes").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="notes: a file, not a folder"):
        train.train_package([clip], tmp_path / "notes" / "m", progress=False)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage._replace(free=3 * 2**20))  # a nearly full disk
    with pytest.raises(OSError, match=r"3\.0 MB free, 16 MB needed") as err:
        train.train_package([clip], tmp_path / "models" / "m", progress=False)
    assert err.value.errno == errno.ENOSPC and decoded == []
