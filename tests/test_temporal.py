"""The temporal model's scorer: windows of video embeddings in, calibrated scores out; frames the motion gate
skipped (NaN embeddings) take the embedding before them; a window with none at all scores the floor."""

from __future__ import annotations

import numpy as np
from conftest import DEFAULT_MODEL

from pipeline.calibration import COMPRESS_ABOVE, MAX_SCORE
from pipeline.models.package import ModelPackage
from pipeline.scorer import fill_gaps
from pipeline.scoring_model import PackageScorer


def test_fill_gaps_carries_the_last_embedding_forward() -> None:
    w = np.arange(2 * 4 * 2, dtype=np.float32).reshape(2, 4, 2)
    w[0, 0] = w[0, 2] = np.nan  # a gated first and third frame
    w[1] = np.nan  # a window of gated frames only
    filled, usable = fill_gaps(w)
    np.testing.assert_array_equal(filled[0], [[2, 3], [2, 3], [2, 3], [6, 7]])
    assert usable.tolist() == [True, False]
    same, ok = fill_gaps(np.ones((1, 3, 2), np.float32))
    assert ok.tolist() == [True] and (same == 1).all()


def test_package_scorer_scores_windows_of_its_own_embeddings() -> None:
    package = ModelPackage.load(DEFAULT_MODEL)
    assert package.video is not None and package.temporal is not None
    scorer = PackageScorer(package)
    assert scorer.has_temporal and scorer.temporal_window == package.temporal.window
    rng = np.random.default_rng(0)
    h, w = package.video.height, package.video.width
    moving = rng.integers(0, 256, (6, 5, h, w), dtype=np.uint8)
    still = np.repeat(rng.integers(0, 256, (1, 1, h, w), dtype=np.uint8), 5, axis=1).repeat(4, axis=0)
    scorer.score_video(np.concatenate([moving, still]))
    emb = scorer.last_embeddings
    assert emb is not None and emb.shape == (10, *package.temporal.embedding_shape)
    assert np.isfinite(emb[:6]).all() and np.isnan(emb[6:]).all()  # gated stacks have no embedding
    window = emb[None]  # 10 frames: 6 moving, then 4 still ones carried forward
    raw, cal, boxes = scorer.score_temporal(window)
    ceiling = COMPRESS_ABOVE + np.log10(1 + MAX_SCORE - COMPRESS_ABOVE)  # the most a calibrated score reads
    assert np.isfinite(raw).all() and 0 <= cal[0] <= ceiling and boxes[0] is not None
    scorer.score_video(still)
    raw, cal, boxes = scorer.score_temporal(np.concatenate([scorer.last_embeddings] * 3)[None, :10])
    floor = package.temporal.calibration.values[0]
    assert raw[0] == np.float32(floor) and cal[0] == 0 and boxes == [None]
    scorer.close()
