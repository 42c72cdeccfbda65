"""Log-mel features of audio windows: the one implementation that training and the runtime share.

numpy only. The frames are causal (no centre padding): frame ``t`` covers samples ``[t * hop, t * hop +
win)``, so a window of ``n`` samples gives ``1 + (n - win) // hop`` frames and nothing in a frame comes from
after its end.
"""

from __future__ import annotations

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
    x = np.asarray(samples, dtype=np.float32)
    n = x.shape[-1]
    t = cfg.n_frames(n)
    if t == 0:
        return np.zeros((*x.shape[:-1], 0, cfg.n_mels), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.win_length, axis=-1)[..., :: cfg.hop_length, :][
        ..., :t, :
    ]
    spec = np.fft.rfft(frames * _window(cfg.win_length), n=cfg.n_fft, axis=-1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    mel = power @ mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    return np.log(np.maximum(mel, cfg.log_floor)).astype(np.float32)
