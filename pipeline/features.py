"""Log-mel features of audio windows: the one implementation that training and the runtime share.

numpy only. The frames are causal (no centre padding): frame ``t`` covers samples ``[t * hop, t * hop +
win)``, so a window of ``n`` samples gives ``1 + (n - win) // hop`` frames and nothing in a frame comes from
after its end.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LogMelConfig:
    """How samples become log-mel frames. Stored in ``model.json`` so runtime and training cannot drift
    apart."""

    sample_rate: int = 16000
    n_mels: int = 64
    win_length: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    n_fft: int = 512
    fmin: float = 20.0
    fmax: float = 8000.0
    # Floor under the mel power before the log: digital silence (AAC decodes it as exact zeros) would be -inf,
    # and codec noise far below any real sound would dominate the normalised features.
    log_floor: float = 1e-6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def n_frames(self, n_samples: int) -> int:
        return 0 if n_samples < self.win_length else 1 + (n_samples - self.win_length) // self.hop_length


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters on the HTK mel scale, shape ``(n_fft // 2 + 1, n_mels)``, float32, read-only."""
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz[None, :] - lower) / (centre - lower)
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(rising, falling)).T.astype(np.float32)
    fb.flags.writeable = False
    return fb


@lru_cache(maxsize=8)
def _window(win_length: int) -> np.ndarray:
    w = np.hanning(win_length + 1)[:-1].astype(np.float32)  # periodic Hann
    w.flags.writeable = False
    return w


def log_mel(samples: np.ndarray, config: LogMelConfig | None = None) -> np.ndarray:
    """Log-mel frames of ``samples`` (``(..., n)`` float in [-1, 1]) → ``(..., T, n_mels)`` float32."""
    cfg = config or LogMelConfig()
    return _log_mel_of_power(_power_frames(np.asarray(samples, dtype=np.float32), cfg), cfg)


def _power_frames(x: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """Power spectra of the frames of float32 ``x`` (..., n) → (..., T, n_fft // 2 + 1) float32. Each frame's
    spectrum depends on its own samples only, whatever else is in the call."""
    t = cfg.n_frames(x.shape[-1])
    if t == 0:
        return np.zeros((*x.shape[:-1], 0, cfg.n_fft // 2 + 1), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.win_length, axis=-1)[..., :: cfg.hop_length, :][..., :t, :]
    spec = np.fft.rfft(frames * _window(cfg.win_length), n=cfg.n_fft, axis=-1)
    return (spec.real**2 + spec.imag**2).astype(np.float32)


def _log_mel_of_power(power: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """(..., T, n_fft // 2 + 1) power spectra → (..., T, n_mels) log-mel. Unlike the spectra, a row of the matrix
    product may differ in the last bits with the number of rows (BLAS kernels), so it always runs on whole
    windows."""
    mel = power @ mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    return np.log(np.maximum(mel, cfg.log_floor)).astype(np.float32)


class OverlapLogMel:
    """``log_mel`` of windows that overlap earlier ones (a window every ``hop`` samples), computing only the
    frames a window does not share with a recent one.

    Scoring a 1 s window every 0.5 s would compute every frame's spectrum twice. This keeps, for each of the last
    ``keep`` windows, the samples its successor must start with and the power spectra of the frames they share
    (keyed by the first samples, so any number of interleaved streams need no ids). A window whose start is
    bitwise those samples takes the shared spectra and computes the rest; any other (a stream's first window, one
    after a gap or a restart, ``hop`` not a whole number of frames) is computed in full. The mel product and the
    log run on whole windows as in ``log_mel``, so the result is bitwise ``log_mel(windows)``.
    """

    _KEY = 16  # samples of a window's start that key the cache (a match is then checked on the whole overlap)

    def __init__(self, config: LogMelConfig, window: int, hop: int, keep: int = 64) -> None:
        self.config = config
        self.window = window
        self.n_frames = config.n_frames(window)
        shift = hop // config.hop_length if hop % config.hop_length == 0 else 0
        # frames a window shares with its predecessor; 0: nothing to reuse
        self.shared = self.n_frames - shift if 0 < shift < self.n_frames and hop < window else 0
        self.hop = hop
        self.keep = keep
        self._recent: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.frames_reused = 0
        self.frames_computed = 0

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(B, window) samples → (B, T, n_mels) float32, equal to ``log_mel(windows, config)``."""
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.window:
            raise ValueError(f"windows must be (B, {self.window}), got {x.shape}")
        if not self.shared:
            self.frames_computed += x.shape[0] * self.n_frames
            return log_mel(x, self.config)
        cfg, shared, hop = self.config, self.shared, self.hop
        power = np.empty((x.shape[0], self.n_frames, cfg.n_fft // 2 + 1), dtype=np.float32)
        bits = x.view(np.uint32)  # bitwise comparison: NaNs and signed zeros match only themselves
        for i, row in enumerate(x):
            hit = self._recent.pop(bits[i, : self._KEY].tobytes(), None)
            if hit is not None and np.array_equal(bits[i, : self.window - hop], hit[0]):
                power[i, :shared] = hit[1]
                power[i, shared:] = _power_frames(row[shared * cfg.hop_length :], cfg)
                self.frames_reused += shared
                self.frames_computed += self.n_frames - shared
            else:
                power[i] = _power_frames(row, cfg)
                self.frames_computed += self.n_frames
            # what this window's successor shares with it
            self._recent[bits[i, hop : hop + self._KEY].tobytes()] = (
                bits[i, hop:].copy(),
                power[i, self.n_frames - shared :].copy(),
            )
            while len(self._recent) > self.keep:
                self._recent.popitem(last=False)
        return _log_mel_of_power(power, cfg)
