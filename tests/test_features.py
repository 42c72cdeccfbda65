"""Log-mel features: shapes, causality, where a tone lands, the floor under silence."""

from __future__ import annotations

import numpy as np

from pipeline.features import LogMelConfig, log_mel, mel_filterbank


def test_shape_is_causal_frame_count() -> None:
    cfg = LogMelConfig()
    mel = log_mel(np.zeros(16000, np.float32), cfg)
    assert mel.shape == (1 + (16000 - 400) // 160, 64) == (98, 64)
    assert mel.dtype == np.float32
    assert log_mel(np.zeros((3, 2, 16000), np.float32)).shape == (3, 2, 98, 64)
    assert log_mel(np.zeros(100, np.float32)).shape == (0, 64)


def test_silence_sits_on_the_floor() -> None:
    cfg = LogMelConfig()
    mel = log_mel(np.zeros(4000, np.float32), cfg)
    np.testing.assert_allclose(mel, np.log(cfg.log_floor), rtol=1e-6)


def test_tone_peaks_in_its_band_and_scales_with_level() -> None:
    cfg = LogMelConfig()
    t = np.arange(16000) / 16000
    quiet = log_mel((0.01 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), cfg)
    loud = log_mel((0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), cfg)
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    band_of_1k = int(np.argmax(fb[round(1000 / (cfg.sample_rate / cfg.n_fft))]))
    assert int(np.argmax(loud.mean(axis=0))) == band_of_1k
    # 20 dB louder = 100x the power = +ln(100) in every frame's peak band
    np.testing.assert_allclose(loud[:, band_of_1k] - quiet[:, band_of_1k], np.log(100.0), atol=1e-3)


def test_frames_do_not_see_the_future() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, 16000).astype(np.float32)
    y = x.copy()
    y[8000:] = 0.5  # change the second half
    a, b = log_mel(x), log_mel(y)
    last_unaffected = (8000 - 400) // 160  # frame t ends at t*160+400
    np.testing.assert_array_equal(a[: last_unaffected + 1], b[: last_unaffected + 1])
    assert not np.allclose(a[last_unaffected + 1], b[last_unaffected + 1])
