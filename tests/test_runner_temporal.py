"""The runner keeps each camera's window of video embeddings and emits temporal scores; windows never mix cameras,
and a stream's end empties its window. The model is a small fake with the real interface."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.media import make_clip
from test_runner import BrightLoudModel, run

from pipeline.events import EventType
from pipeline.sources import SourceSpec


class TemporalModel(BrightLoudModel):
    """Embeds each stack as its newest frame's mean brightness (plus the camera's mark); the temporal score is high
    when brightness changed within the window."""

    temporal_window = 4

    def __init__(self) -> None:
        super().__init__()
        self.last_embeddings = None
        self.windows: list[np.ndarray] = []

    def score_video(self, stacks, masks=None):
        raw, cal, boxes = super().score_video(stacks)
        self.last_embeddings = stacks[:, -1].reshape(len(stacks), -1).mean(axis=1, keepdims=True).astype(np.float32)
        return raw, np.zeros_like(cal), boxes  # the video modality says nothing: events must come from temporal

    def score_temporal(self, windows, masks=None):
        assert windows.shape[1:] == (self.temporal_window, 1)
        self.windows.append(windows)
        spread = windows[:, :, 0].max(axis=1) - windows[:, :, 0].min(axis=1)
        return spread, np.where(spread > 50, 5.0, 0.1), [None] * len(windows)


def test_temporal_scores_come_per_camera_from_full_windows(tmp_path):
    a = make_clip(tmp_path / "a.mkv", seconds=6, bright=[(2.0, 6.0)], audio=False)
    b = make_clip(tmp_path / "b.mkv", seconds=6, audio=False)  # stays dark: its windows must never see a's light
    model = TemporalModel()
    runner, events = run([SourceSpec("a", str(a)), SourceSpec("b", str(b))], model)
    news = [e for e in events if e.type is EventType.NEW]
    assert [(e.camera_id, set(e.modalities)) for e in news] == [("a", {"temporal"})]
    assert news[0].start_pts == pytest.approx(2.0)
    windows = np.concatenate(model.windows)
    # 30 frames per camera at 5 fps, all scored; the first `context` (padded stacks) feed no window, then 3 more fill it
    assert len(windows) == 2 * (30 - BrightLoudModel.context - TemporalModel.temporal_window + 1)
    assert runner.stats["b"].frames_scored == 30  # every frame; only full stacks feed the temporal model


def test_every_nth_window_is_scored_per_camera(tmp_path):
    """``temporal_every`` (a package's ``temporal.score_every``): each camera's windows are scored from its first full
    one, every n-th after it, counted per camera; every window still holds consecutive embeddings."""
    a = make_clip(tmp_path / "a.mkv", seconds=6, bright=[(2.0, 6.0)], audio=False)
    b = make_clip(tmp_path / "b.mkv", seconds=6, audio=False)
    model = TemporalModel()
    model.temporal_every = 3
    runner, events = run([SourceSpec("a", str(a)), SourceSpec("b", str(b))], model)
    full = 30 - BrightLoudModel.context - TemporalModel.temporal_window + 1  # full windows per camera: 23
    windows = np.concatenate(model.windows)
    assert len(windows) == 2 * len(range(0, full, 3))  # windows 1, 4, 7, ... of each camera
    news = [e for e in events if e.type is EventType.NEW]
    assert [(e.camera_id, set(e.modalities)) for e in news] == [("a", {"temporal"})]  # still found, on a only
