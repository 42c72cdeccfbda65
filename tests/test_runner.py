"""The runner wires real decoding to scoring and aggregation; the model is a small fake with the real interface."""

from __future__ import annotations

import time

import numpy as np
import pytest
from fixtures.media import make_clip

from pipeline.aggregator import AggregatorSettings
from pipeline.events import EndReason, EventType
from pipeline.frames import Modality
from pipeline.runner import Runner, RunnerSettings
from pipeline.sources import SourceSpec
from pipeline.sources.capture import SourceState
from pipeline.window import WindowRing


class BrightLoudModel:
    """Video is anomalous when the newest frame is bright, audio when the window is loud."""

    width, height, fps, context = 64, 36, 5.0, 2
    audio_window_s, audio_hop_s, sample_rate = 1.0, 0.5, 16000
    has_video = has_audio = True
    temporal_window, temporal_every, last_embeddings, last_gated = 0, 1, None, np.zeros(0, dtype=bool)

    def __init__(self) -> None:
        self.video_batches: list[int] = []

    def score_video(self, stacks, masks=None):
        self.video_batches.append(len(stacks))
        raw = stacks[:, -1].reshape(len(stacks), -1).mean(axis=1) / 255.0
        return raw, np.where(raw > 0.6, 5.0, 0.5), [(0.0, 0.0, 1.0, 1.0)] * len(stacks)

    def score_audio(self, windows):
        raw = np.abs(windows).max(axis=1)
        return raw, np.where(raw > 0.3, 5.0, 0.2)


class SlowFirstBatchModel(BrightLoudModel):
    """Holds its first batch long enough for both cameras' decoders to fill their buffers."""

    def score_video(self, stacks, masks=None):
        if not self.video_batches:
            time.sleep(0.5)
        return super().score_video(stacks)


def run(sources, model, settings=None):
    """Run the sources to their end; by default the fakes' step scores decide events unsmoothed, at exact times."""
    events = []
    runner = Runner(
        sources,
        model,
        events.append,
        settings
        or RunnerSettings(
            aggregator=AggregatorSettings(threshold=3.0, min_duration_s=0.4, hold_s=1.0, smoothing_s=0.0)
        ),
    )
    assert runner.open_sources() == {}
    runner.start()
    assert runner.wait(60)
    runner.join()
    return runner, events


def test_replay_produces_one_event_per_anomaly_with_its_modality(tmp_path):
    clip = make_clip(tmp_path / "a.mkv", seconds=8, bright=[(2.0, 3.4)], loud=[(5.0, 6.0)])
    runner, events = run([SourceSpec("cam1", str(clip))], BrightLoudModel())
    pairs = [(e.type, e.reason) for e in events]
    assert pairs == [(EventType.NEW, None), (EventType.END, EndReason.QUIET)] * 2
    video_new, video_end, audio_new, audio_end = events
    assert set(video_end.modalities) == {"video"} and set(audio_end.modalities) == {"audio"}
    assert video_new.start_pts == pytest.approx(2.0) and video_end.end_pts == pytest.approx(3.4)
    assert 4.0 <= audio_new.start_pts <= 5.5
    assert runner.stats["cam1"].frames_scored == 40  # every frame from the first
    assert runner.states()["cam1"] is SourceState.STOPPED


def test_cameras_are_batched_together_and_kept_apart(tmp_path):
    a = make_clip(tmp_path / "a.mkv", seconds=6, bright=[(1.0, 2.0)], audio=False)
    b = make_clip(tmp_path / "b.mkv", seconds=6, bright=[(4.0, 5.0)], audio=False)
    model = SlowFirstBatchModel()
    _, events = run([SourceSpec("a", str(a)), SourceSpec("b", str(b))], model)
    news = {e.camera_id: e.start_pts for e in events if e.type is EventType.NEW}
    assert news == {"a": pytest.approx(1.0), "b": pytest.approx(4.0)}
    assert max(model.video_batches) > 1  # frames of both cameras went through one inference


def test_max_wait_fills_batches_across_live_paced_cameras(tmp_path):
    """Paced cameras deliver a frame each 0.2 s, each on its own clock: without a wait every frame is scored
    alone; with max_wait the frames of both cameras share inferences, and the events stay the same."""
    a = make_clip(tmp_path / "a.mkv", seconds=3, bright=[(1.0, 2.0)], audio=False)
    b = make_clip(tmp_path / "b.mkv", seconds=3, audio=False)
    found = {}
    for wait in (0.0, 0.45):
        model = BrightLoudModel()
        settings = RunnerSettings(
            max_batch=4,
            max_wait_s=wait,
            aggregator=AggregatorSettings(threshold=3.0, min_duration_s=0.4, hold_s=0.5, smoothing_s=0.0),
        )
        _, events = run([SourceSpec("a", str(a), pace=True), SourceSpec("b", str(b), pace=True)], model, settings)
        found[wait] = (model.video_batches, [(e.camera_id, e.type, e.start_pts) for e in events])
    (alone, events_alone), (batched, events_batched) = found[0.0], found[0.45]
    assert sum(alone) == sum(batched) == 2 * 15
    assert max(batched) >= 3 and len(batched) < len(alone) / 2
    assert events_batched == events_alone and ("a", EventType.NEW, pytest.approx(1.0)) in events_batched


def test_the_aggregator_sees_each_cameras_scores_in_arrival_order_whatever_the_batching(tmp_path):
    """A replay must decide the same every time. Audio windows are stamped with their centre but complete at their
    end, after the video frames in between: the order the aggregator sees must be the camera's own (its reader's),
    not one that depends on where the scoring thread's batches happened to cut."""
    clip = make_clip(tmp_path / "a.mkv", seconds=6, bright=[(2.0, 3.0)], loud=[(3.5, 4.5)])
    seen = {}
    for batch in (1, 32):
        scores = []
        settings = RunnerSettings(
            max_batch=batch, aggregator=AggregatorSettings(threshold=3.0, hold_s=0.5, smoothing_s=0.0)
        )
        runner = Runner(
            [SourceSpec("cam", str(clip))], BrightLoudModel(), lambda e: None, settings, on_score=scores.append
        )
        assert runner.open_sources() == {}
        runner.start()
        assert runner.wait(60)
        runner.join()
        seen[batch] = [(s.modality, round(s.pts, 3)) for s in scores]
    assert len(seen[1]) == len(seen[32]) > 30 and seen[32] == seen[1]
    # an audio window comes after the video frames that precede its end
    audio_at = next(i for i, (m, _) in enumerate(seen[1]) if m == Modality.AUDIO)
    assert seen[1][audio_at - 1][0] == Modality.VIDEO and seen[1][audio_at - 1][1] > seen[1][audio_at][1]


def test_event_open_at_end_of_file_ends_with_eof(tmp_path):
    clip = make_clip(tmp_path / "a.mkv", seconds=4, bright=[(2.0, 4.0)], audio=False)
    _, events = run([SourceSpec("cam1", str(clip))], BrightLoudModel())
    assert [(e.type, e.reason) for e in events] == [(EventType.NEW, None), (EventType.END, EndReason.EOF)]


def test_ring_window_is_the_last_arrays_oldest_first_across_wraps_and_new_streams():
    ring = WindowRing(3)
    for i in range(8):
        ring.push(np.full((2, 2), i, dtype=np.uint8))
        assert ring.full == (i >= 2)
        if ring.full:
            window = ring.window()
            assert window.flags.c_contiguous and window[:, 0, 0].tolist() == [i - 2, i - 1, i]
        else:  # the start of a stream: the first array repeated in front of those pushed so far (edge padding)
            assert ring.window()[:, 0, 0].tolist() == [0] * (2 - i) + list(range(i + 1))
    ring.clear()  # a new stream: nothing of the old one, and it may bring another shape
    ring.push(np.zeros(4, dtype=np.float32))
    assert not ring.full
    assert ring.window().tolist() == [[0.0] * 4] * 3  # its first array stands in for the missing ones
    with pytest.raises(ValueError):
        ring.push(np.zeros(5, dtype=np.float32))
