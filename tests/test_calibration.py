"""Calibration: monotonic, the tail extrapolates, round-trips through JSON, and means what it says on new
data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.calibration import COMPRESS_ABOVE, MAX_SCORE, Calibration


def _normal_scores(n: int, seed: int) -> np.ndarray:
    # squared-error-like scores: a gamma body with an exponential tail
    return np.random.default_rng(seed).gamma(2.0, 0.01, n)


def test_monotonic_and_clipped() -> None:
    cal = Calibration.fit(_normal_scores(5000, 0))
    raw = np.linspace(-1, 5, 20001)
    c = cal.calibrate(raw)
    assert np.all(np.diff(c) >= 0)
    assert c.min() == 0.0 and c.max() == pytest.approx(COMPRESS_ABOVE + np.log10(1 + MAX_SCORE - COMPRESS_ABOVE))
    assert cal.calibrate(np.array([np.nan]))[0] == 0.0
    # above 10 the scores keep their order (no ties at a ceiling a real anomaly reaches)
    far = c[c > 10]
    assert len(far) and np.all(np.diff(far[far < far.max()]) > 0)
    for level in (11.0, 11.5):  # the compressed range inverts too
        assert cal.calibrate(cal.raw_threshold(level))[()] == pytest.approx(level, abs=1e-3)
    assert c.dtype == np.float32


def test_tail_extrapolates_beyond_the_sample() -> None:
    x = _normal_scores(2000, 1)
    cal = Calibration.fit(x)
    assert cal.calibrate(x.max())[()] > 2.5  # beyond 1/n of the sample thanks to the tail
    assert cal.calibrate(np.quantile(x, 0.5))[()] == pytest.approx(-np.log10(0.5), abs=0.01)
    assert cal.calibrate(np.quantile(x, 0.9))[()] == pytest.approx(1.0, abs=0.01)
    for level in (2.0, 3.0, 4.0):
        assert cal.calibrate(cal.raw_threshold(level))[()] == pytest.approx(level, abs=1e-3)


@pytest.mark.parametrize("threshold, rate", [(2.0, 1e-2), (3.0, 1e-3)])
def test_held_out_normal_exceeds_threshold_at_the_configured_rate(threshold: float, rate: float) -> None:
    cal = Calibration.fit(_normal_scores(20000, 2))
    fresh = cal.calibrate(_normal_scores(400000, 3))
    observed = float(np.mean(fresh >= threshold))
    assert rate / 2 < observed < rate * 2


def test_round_trip_through_json() -> None:
    cal = Calibration.fit(_normal_scores(1000, 4))
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    raw = _normal_scores(100, 5)
    np.testing.assert_array_equal(again.calibrate(raw), cal.calibrate(raw))


def test_constant_scores_still_give_a_usable_map() -> None:
    cal = Calibration.fit(np.full(100, 0.5))
    assert cal.calibrate(0.5)[()] < 1.1
    assert cal.calibrate(0.6)[()] > 10.0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        Calibration.fit(np.ones(5))
    with pytest.raises(ValueError, match="unknown calibration fields"):
        Calibration.from_dict({**Calibration.fit(_normal_scores(100, 6)).to_dict(), "extra": 1})


def test_few_scores_calibrate_bitwise_as_a_batch() -> None:
    """Batches of one or two take a Python-float path: same bits as the array path, specials included."""
    rng = np.random.default_rng(5)
    for cal in (Calibration.fit(rng.gamma(2.0, 1.0, 2000)), Calibration.fit(rng.integers(0, 4, 300).astype(float))):
        span = cal.tail_threshold + 40 * cal.tail_scale - cal.values[0]
        raw = np.concatenate(
            [
                rng.uniform(cal.values[0] - 0.2 * span, cal.values[0] + span, 20000),
                cal.values,
                np.nextafter(cal.values, np.inf),
                [np.nan, np.inf, -np.inf, -0.0, cal.tail_threshold],
            ]
        ).astype(np.float32)
        batch = cal.calibrate(raw)
        few = np.concatenate([cal.calibrate(raw[i : i + 2]) for i in range(0, len(raw), 2)])
        assert few.dtype == np.float32 and np.array_equal(few.view(np.uint32), batch.view(np.uint32))
