"""The committed sample clips decode and match their ground truth; their generator is deterministic."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from samples import generate

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CLIP_NAMES = [spec.name for spec in generate.CLIPS]
TAMPER_NAMES = [spec.name for spec in generate.TAMPER_CLIPS]
KINDS = {"fast_mover", "forbidden_area", "large_object", "bang", "glass_break", "scream", "siren"}


def load_truth(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def test_every_clip_is_committed_with_its_ground_truth() -> None:
    assert set(CLIP_NAMES) == {
        "normal_train_1",
        "normal_train_2",
        "normal_eval",
        "test_1",
        "test_2",
        "test_3",
    }
    for name in CLIP_NAMES:
        assert (SAMPLES / f"{name}.mkv").is_file()
        assert load_truth(name)["clip"] == f"{name}.mkv"
    total = sum((SAMPLES / f"{n}.{ext}").stat().st_size for n in CLIP_NAMES for ext in ("mkv", "json"))
    assert total < 9_000_000


def test_one_tamper_clip_per_kind_is_committed_small() -> None:
    kinds = set()
    for name in TAMPER_NAMES:
        (a,) = load_truth(name)["anomalies"]
        assert a["modalities"] == ["tampering"] and 3.0 <= a["start"] < a["end"] <= load_truth(name)["duration_s"]
        kinds.add(a["kind"])
    assert kinds == {"blackout", "covered", "defocus", "moved"}
    assert sum((SAMPLES / f"{n}.mkv").stat().st_size for n in TAMPER_NAMES) < 2_000_000


@pytest.mark.parametrize("name", CLIP_NAMES + TAMPER_NAMES)
def test_clip_decodes_and_matches_its_json(name: str) -> None:
    truth = load_truth(name)
    with av.open(str(SAMPLES / f"{name}.mkv")) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
        vs, aus = container.streams.video[0], container.streams.audio[0]
        assert (vs.codec_context.name, aus.codec_context.name) == ("h264", "aac")
        assert (vs.codec_context.width, vs.codec_context.height) == (truth["width"], truth["height"])
        assert vs.average_rate == Fraction(truth["fps"])
        assert aus.codec_context.sample_rate == truth["sample_rate"]
        assert aus.codec_context.channels == 1

        video_pts: list[float] = []
        keyframes: list[int] = []
        audio_samples = 0
        first_audio: float | None = None
        for packet in container.demux(vs, aus):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    assert frame.format.name == "yuv420p"
                    if frame.key_frame:
                        keyframes.append(len(video_pts))
                    video_pts.append(float(frame.time))
                else:
                    assert isinstance(frame, av.AudioFrame) and frame.time is not None
                    first_audio = float(frame.time) if first_audio is None else first_audio
                    audio_samples += frame.samples

    fps = truth["fps"]
    assert video_pts[0] == 0.0 and first_audio == 0.0
    assert np.allclose(np.diff(video_pts), 1 / fps, atol=1e-3), "video timestamps are not regular"
    assert keyframes == list(range(0, len(video_pts), 2 * fps)), "keyframes are not every 2 s"
    assert abs(len(video_pts) / fps - truth["duration_s"]) < 0.5
    assert abs(audio_samples / truth["sample_rate"] - truth["duration_s"]) < 0.5


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_ground_truth_is_well_formed(name: str) -> None:
    truth = load_truth(name)
    anomalies = truth["anomalies"]
    if name.startswith("normal"):
        assert anomalies == []
        return
    assert len(anomalies) >= 3
    previous_end = 0.0
    for a in anomalies:
        assert a["kind"] in KINDS
        assert set(a["modalities"]) <= {"video", "audio"} and a["modalities"]
        assert 0.0 <= a["start"] < a["end"] <= truth["duration_s"]
        assert 2.0 <= a["end"] - a["start"] <= 8.0
        assert a["start"] >= 8.0 and a["start"] - previous_end >= 6.0
        previous_end = a["end"]
        if "box" in a:
            x0, y0, x1, y1 = a["box"]
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
            assert "video" in a["modalities"]
    assert {m for a in anomalies for m in a["modalities"]} == {"video", "audio"}


@pytest.mark.parametrize("name", CLIP_NAMES + TAMPER_NAMES)
def test_committed_ground_truth_is_what_the_generator_plans(name: str) -> None:
    scene = generate.build_scene(generate.CLIPS_BY_NAME[name])
    assert generate.ground_truth_json(scene) == load_truth(name)


def _digest(spec: generate.ClipSpec, background: generate.Background) -> tuple[str, str]:
    scene = generate.build_scene(spec)
    video = hashlib.sha256()
    for frame in generate.render_frames(scene, background):
        video.update(frame.tobytes())
    audio = generate.render_audio(scene)
    assert audio.shape == (spec.n_samples,)
    return video.hexdigest(), hashlib.sha256(audio.tobytes()).hexdigest()


def test_generator_is_deterministic(tmp_path: Path) -> None:
    background = generate.render_background()
    spec = generate.ClipSpec("determinism", 2.0, seed=4242)
    assert _digest(spec, background) == _digest(spec, generate.render_background())
    assert _digest(generate.ClipSpec("other", 2.0, seed=4243), background) != _digest(spec, background)

    first, second = tmp_path / "a.mkv", tmp_path / "b.mkv"
    generate.render_clip(spec, first, background)
    generate.render_clip(spec, second, background)
    assert first.read_bytes() == second.read_bytes()
    assert json.loads(first.with_suffix(".json").read_text())["duration_s"] == 2.0
