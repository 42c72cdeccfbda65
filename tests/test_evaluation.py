"""ROC-AUC in numpy against a brute-force count, ties included; what the fused score holds at each frame."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.aggregator import AggregatorSettings
from pipeline.evaluation import MediaScores, aggregate, roc_auc

UNSMOOTHED = AggregatorSettings(smoothing_s=0.0)  # the fused score as it is at each frame


def _brute(s: np.ndarray, y: np.ndarray) -> float:
    p, n = s[y][:, None], s[~y][None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean())


def test_roc_auc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    s = rng.normal(size=500) + y
    assert roc_auc(s, y) == pytest.approx(_brute(s, y))
    q = np.round(s)  # many ties
    assert roc_auc(q, y) == pytest.approx(_brute(q, y))
    assert roc_auc(y.astype(float), y) == 1.0
    assert math.isnan(roc_auc(s, np.zeros(500, bool)))


def test_fused_score_at_a_frame_holds_the_audio_window_that_ended_by_then() -> None:
    """Causality both ways: a 1 s audio window counts from its end (not its centre), and a window ending exactly at
    a frame's time is in that frame's fused score (its samples all precede the frame)."""
    scores = MediaScores("clip")
    scores.frame_pts = np.array([0.6, 0.8, 1.0, 1.2])
    scores.video = scores.video_raw = np.full(4, 0.5)
    scores.video_boxes = [None] * 4
    scores.temporal = np.full(4, np.nan)
    scores.audio_start, scores.audio_end = np.array([0.0]), np.array([1.0])
    scores.audio = scores.audio_raw = np.array([6.0])
    scores.has_video = scores.has_audio = True
    _, fused = aggregate(scores, UNSMOOTHED)
    assert fused.tolist() == [0.5, 0.5, 6.0, 6.0]


@pytest.mark.parametrize("end", [23.000000000000043, 22.999999999999954, 23.0])
def test_a_window_ending_at_a_frame_counts_there_whatever_the_float_rounding_of_its_end(end: float) -> None:
    """A window's end is its first sample's time plus hops added up in floats: a hair either side of the frame time
    it equals. Either way it counts at that frame, as an exact end does (the frame before does not see it)."""
    scores = MediaScores("clip")
    scores.frame_pts = np.array([22.8, 23.0, 23.2])
    scores.video = scores.video_raw = np.full(3, 0.5)
    scores.video_boxes = [None] * 3
    scores.temporal = np.full(3, np.nan)
    scores.audio_start, scores.audio_end = np.array([end - 0.8]), np.array([end])
    scores.audio = scores.audio_raw = np.array([6.0])
    scores.has_video = scores.has_audio = True
    _, fused = aggregate(scores, UNSMOOTHED)
    assert fused.tolist() == [0.5, 6.0, 6.0]
