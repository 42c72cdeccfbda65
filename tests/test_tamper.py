"""Tampering checks: quiet on normal footage, and each kind of tampering caught on real sample frames."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

from pipeline.frames import VideoFrame
from pipeline.sources import read_media
from pipeline.tamper import TAMPERED, TamperDetector, TamperSettings

FPS = 5.0


def frames(clip: str) -> list[tuple[float, np.ndarray]]:
    frames = read_media(str(SAMPLES / clip), width=256, height=144, fps=FPS, audio=False)
    return [(f.pts, f.luma) for f in frames if isinstance(f, VideoFrame)]  # (video only)


@pytest.fixture(scope="module")
def normal() -> list[tuple[float, np.ndarray]]:
    return frames("normal_eval.mkv")


def run(detector: TamperDetector, seq) -> list[str | None]:
    return [detector.check(luma, pts).reason for pts, luma in seq]


@pytest.mark.parametrize("clip", ["normal_eval.mkv", "test_1.mkv", "test_2.mkv", "test_3.mkv"])
def test_no_tampering_on_the_sample_clips(clip):
    # walkers, vans, scooters, lighting drift and cloud shadows are not tampering
    reasons = run(TamperDetector(TamperSettings()), frames(clip))
    assert [r for r in reasons if r] == []


def blur(luma: np.ndarray, k: int = 9) -> np.ndarray:
    x = luma.astype(np.float32)
    kernel = np.ones(k, np.float32) / k
    x = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, x)
    x = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, x)
    return x.astype(np.uint8)


TAMPER = {
    "blackout": lambda luma, rng: (luma * 0.03).astype(np.uint8),
    "covered": lambda luma, rng: np.clip(60 + rng.normal(0, 2, luma.shape), 0, 255).astype(np.uint8),
    "defocus": lambda luma, rng: blur(luma),
    "moved": lambda luma, rng: np.roll(np.flipud(luma), 60, axis=1),
}


@pytest.mark.parametrize("kind", sorted(TAMPER))
def test_each_kind_of_tampering_is_caught_and_ends_when_the_view_returns(normal, kind):
    rng = np.random.default_rng(0)
    half = len(normal) // 2
    tampered = [(pts, TAMPER[kind](luma, rng)) for pts, luma in normal[half : half + 25]]
    seq = normal[:half] + tampered + normal[half + 25 :]
    detector = TamperDetector(TamperSettings())
    reasons = run(detector, seq)
    tampered = reasons[half : half + 25]
    assert tampered.count(kind) >= 23, tampered  # at most the first frames of a blur's transition missed
    assert [r for r in reasons[:half] if r] == []
    assert [r for r in reasons[half + 26 :] if r] == []  # back to normal as soon as the view is back


def test_a_moved_view_becomes_normal_after_accept_time(normal):
    settings = TamperSettings(accept_moved_s=4.0)
    detector = TamperDetector(settings)
    half = len(normal) // 2
    moved = [(pts, np.roll(luma, 80, axis=1)) for pts, luma in normal[half:]]
    reasons = run(detector, normal[:half] + moved)
    after = reasons[half:]
    assert after[0] == "moved"
    assert all(r is None for r in after[int(4.0 * FPS) + 2 :])
    verdict = detector.check(moved[-1][1], moved[-1][0] + 0.2)
    assert verdict.score == 0.0 and TAMPERED > 0


class QuietModel:
    """A scene model that never finds anything: only tampering can raise an event."""

    width, height, fps, context = 256, 144, FPS, 1
    audio_window_s, audio_hop_s, sample_rate = 1.0, 0.5, 16000
    has_video, has_audio, temporal_window = True, False, 0
    temporal_every, last_embeddings, last_gated = 1, None, np.zeros(0, dtype=bool)
    last_embeddings = None

    def score_video(self, stacks, masks=None):
        n = len(stacks)
        return np.zeros(n), np.zeros(n), [None] * n

    def score_audio(self, windows):
        return np.zeros(len(windows)), np.zeros(len(windows))


def test_a_covered_lens_is_its_own_event_through_the_runner(tmp_path):
    import av

    from pipeline.events import EventType
    from pipeline.runner import Runner
    from pipeline.sources import SourceSpec

    clip = tmp_path / "covered.mkv"
    src = av.open(str(SAMPLES / "normal_eval.mkv"))
    out = av.open(str(clip), "w")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = 320, 180, "yuv420p"
    vs.options = {"bframes": "0", "g": "25", "preset": "ultrafast"}
    for i, frame in enumerate(src.decode(video=0)):
        if i >= 14 * 25:
            break
        img = frame.to_ndarray(format="rgb24", width=320, height=180)
        if 6 * 25 <= i < 10 * 25:  # a hand over the lens for 4 s
            img = np.full_like(img, 35)
        for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()
    src.close()
    events = []
    runner = Runner([SourceSpec("door", str(clip))], QuietModel(), events.append)
    assert runner.open_sources() == {}
    runner.start()
    assert runner.wait(60)
    runner.join()
    assert [(e.type, set(e.modalities)) for e in events] == [
        (EventType.NEW, {"tampering"}),
        (EventType.END, {"tampering"}),
    ]
    assert 6.0 <= events[0].start_pts <= 6.5 and 9.8 <= events[1].end_pts <= 10.5


def test_a_tampering_event_is_labelled_with_the_kind_seen_most_while_it_held():
    from datetime import datetime, timezone

    from pipeline.aggregator import CameraAggregator
    from pipeline.events import EventType
    from pipeline.frames import Modality, Score

    agg = CameraAggregator("door", TamperSettings().aggregator())
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    # a hand slides in (one frame reads as a moved view), covers the lens, and slides out again
    kinds = [None] * 10 + ["moved"] + ["covered"] * 15 + ["moved"] + [None] * 20
    events = []
    for i, kind in enumerate(kinds):
        events += agg.push(
            Score("door", Modality.TAMPERING, i * 0.2, i, t0, 0.0, TAMPERED if kind else 0.0, label=kind)
        )
    assert [(e.type, e.label) for e in events] == [(EventType.NEW, "covered"), (EventType.END, "covered")]


TAMPER_CLIPS = ["tamper_blackout", "tamper_covered", "tamper_defocus", "tamper_moved"]


@pytest.mark.parametrize("name", TAMPER_CLIPS)
def test_each_tamper_sample_clip_is_one_event_of_its_kind_over_its_ground_truth(name):
    import json

    from pipeline.events import EventType
    from pipeline.runner import Runner
    from pipeline.sources import SourceSpec

    (truth,) = json.loads((SAMPLES / f"{name}.json").read_text())["anomalies"]
    events = []
    runner = Runner([SourceSpec("door", str(SAMPLES / f"{name}.mkv"))], QuietModel(), events.append)
    assert runner.open_sources() == {}
    runner.start()
    assert runner.wait(60)
    runner.join()
    assert [e.type for e in events] == [EventType.NEW, EventType.END], events
    new, end = events
    assert {e.label for e in events} == {truth["kind"]} and set(end.modalities) == {"tampering"}
    # opens once it held for min_duration_s (1 s); ends within hold_s (2 s) of the view coming back, or at EOF
    assert truth["start"] <= new.start_pts <= truth["start"] + 0.6
    assert truth["end"] - 0.4 <= end.end_pts <= truth["end"] + 0.6
    assert end.reason.value == ("eof" if truth["end"] >= 16.0 else "quiet")


def test_checks_run_at_check_fps_of_stream_time_not_at_every_frame() -> None:
    detector = TamperDetector(TamperSettings(check_fps=2.0))
    pts = [i / 5 for i in range(50)]  # 10 s scored at 5 fps
    checked = [t for t in pts if detector.due(t)]
    assert len(checked) == 20 and checked[:4] == pytest.approx([0.0, 0.6, 1.0, 1.6])
    detector.reset()  # a new stream starts its own slots
    assert detector.due(0.0)
