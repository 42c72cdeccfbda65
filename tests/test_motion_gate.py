"""The motion gate: still stacks skip the CNN and score the calibration floor; anything that moves is scored, down to
a few pixels at model resolution."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEFAULT_MODEL

from pipeline.models.package import ModelPackage
from pipeline.scorer import MotionGate
from pipeline.scoring_model import PackageScorer

PACKAGE = ModelPackage.load(DEFAULT_MODEL)
assert PACKAGE.video is not None
H, W = PACKAGE.video.height, PACKAGE.video.width


def still(n: int, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    """Stacks of one textured frame plus independent sensor noise per frame."""
    yy, xx = np.mgrid[0:H, 0:W]
    base = 100 + 40 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    frames = base[None, None] + rng.normal(0, sigma, (n, 5, H, W))
    return np.clip(frames, 0, 255).astype(np.uint8)


def with_mover(stacks: np.ndarray, size: tuple[int, int] = (3, 2), contrast: int = 60) -> np.ndarray:
    """A small object moving 2 pixels per frame across each stack."""
    out = stacks.copy()
    h, w = size
    for t in range(out.shape[1]):
        x = 40 + 2 * t
        out[:, t, 50 : 50 + h, x : x + w] = np.clip(out[:, t, 50 : 50 + h, x : x + w].astype(int) + contrast, 0, 255)
    return out


def test_still_stacks_are_gated_and_a_small_mover_is_not() -> None:
    rng = np.random.default_rng(0)
    gate = MotionGate()
    quiet = still(20, rng)
    assert not gate.moving(quiet).any()
    assert gate.moving(with_mover(quiet)).all()
    # motion only between the two oldest frames still counts: the predictor expects it to go on
    stop = quiet.copy()
    stop[:, 0, 10:20, 10:20] = 255
    assert gate.moving(stop).all()
    assert MotionGate(threshold=0).moving(quiet).all()  # off


def test_gated_stacks_score_the_floor_and_the_rest_as_without_gate() -> None:
    package = PACKAGE
    assert package.video is not None
    calibration = package.video.calibration
    gated = PackageScorer(package)
    ungated = PackageScorer(package, motion_threshold=0)
    rng = np.random.default_rng(1)
    quiet = still(3, rng)
    batch = np.concatenate([quiet, with_mover(still(2, rng))])
    raw, cal, boxes = gated.score_video(batch)
    raw0, cal0, boxes0 = ungated.score_video(batch)
    floor = float(calibration.values[0])
    np.testing.assert_array_equal(raw[:3], np.float32(floor))
    np.testing.assert_array_equal(cal[:3], 0.0)
    assert boxes[:3] == [None, None, None]
    np.testing.assert_allclose(raw[3:], raw0[3:], rtol=1e-6)
    np.testing.assert_allclose(cal[3:], cal0[3:], rtol=1e-6)
    assert boxes[3:] == boxes0[3:]
    assert (gated.frames_scored, gated.frames_gated) == (5, 3)
    assert gated.last_gated.tolist() == [True, True, True, False, False]
    assert float(calibration.calibrate(np.array(floor, dtype=np.float32))) == 0.0
    # all still: no inference at all, scores still defined
    raw, cal, _ = gated.score_video(quiet)
    assert np.isfinite(raw).all() and (cal == 0).all() and gated.frames_gated == 6
    gated.close()
    ungated.close()


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_sensor_noise_alone_stays_below_the_default_threshold(sigma: float) -> None:
    act = MotionGate().activity(still(50, np.random.default_rng(2), sigma))
    assert act.max() < MotionGate().threshold
