"""Log-mel features: shapes, causality, where a tone lands, the floor under silence."""

from __future__ import annotations

import numpy as np

from pipeline.features import LogMelConfig, OverlapLogMel, log_mel, mel_filterbank


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


def _overlapping(rng: np.random.Generator, n: int, window: int = 16000, hop: int = 8000) -> list[np.ndarray]:
    x = rng.normal(0, 0.1, hop * (n + 1)).astype(np.float32)
    return [x[i * hop : i * hop + window] for i in range(n)]


def test_overlap_log_mel_is_log_mel_on_consecutive_gapped_and_restarted_windows() -> None:
    rng = np.random.default_rng(1)
    cfg = LogMelConfig()
    a, b = _overlapping(rng, 12), _overlapping(rng, 12)
    mel = OverlapLogMel(cfg, 16000, 8000)
    batches = [
        [a[0]],
        [a[1]],
        [a[2], b[0]],
        [b[1], a[3]],  # consecutive, two streams interleaved, any batch order
        [a[5]],  # a gap: a[4] never came
        [a[6], a[7]],  # a window and its successor in one batch
        [a[0]],
        [a[1]],  # the stream restarts from its beginning
        [b[2] * 0.5],  # same start time as b's next window, other samples
        [np.zeros(16000, np.float32)],
        [np.zeros(16000, np.float32)],  # silence repeats bit for bit
    ]
    for batch in batches:
        windows = np.stack(batch)
        assert np.array_equal(mel(windows), log_mel(windows, cfg))
    # and it reused the 48 shared frames of a[1], a[2], b[1], a[3], a[6], a[7], the restarted a[1], the second silence
    assert mel.frames_reused == 8 * 48


def test_overlap_log_mel_computes_everything_when_the_hop_is_not_whole_frames() -> None:
    rng = np.random.default_rng(2)
    cfg = LogMelConfig()
    mel = OverlapLogMel(cfg, 16000, 8100)  # 8100 samples is not a multiple of the 160-sample frame hop
    windows = _overlapping(rng, 4, hop=8100)
    for w in windows:
        assert np.array_equal(mel(w[None]), log_mel(w[None], cfg))
    assert mel.frames_reused == 0
