"""Scorers: turn batches of luma stacks / audio windows into raw scores through an engine, and calibrate them.

The runner keeps a ring buffer of the last ``VideoScorer.context`` luma frames per camera, stacks them with
the new frame, micro-batches across cameras and calls ``score``; calibration is
``package.video.calibration.calibrate(raw)`` (also offered here as ``calibrate``). numpy only, no torch: the
same code path scores at run time and calibrates at training time, so the calibration describes exactly what
the runtime computes.
"""

from __future__ import annotations

import numpy as np

from pipeline.engines.base import Engine
from pipeline.errors import EngineError, ModelPackageError
from pipeline.features import log_mel
from pipeline.models.package import AudioModelSpec, ModelPackage, VideoModelSpec

Box = tuple[float, float, float, float]


def _check_engine(engine: Engine, spec: VideoModelSpec | AudioModelSpec) -> None:
    if spec.input.name not in engine.input_names or spec.output.name not in engine.output_names:
        raise EngineError(
            f"engine graph has inputs {engine.input_names} / outputs {engine.output_names}, "
            f"the package expects {spec.input.name} / {spec.output.name} (was the right graph loaded?)"
        )


class VideoScorer:
    """Worst-patch future-frame prediction error for stacks of ``context + 1`` luma frames (oldest first)."""

    def __init__(self, package: ModelPackage, engine: Engine) -> None:
        if package.video is None:
            raise ModelPackageError(f"model package {package.package_id} has no video model")
        self.spec: VideoModelSpec = package.video
        self.engine = engine
        _check_engine(engine, self.spec)

    @property
    def context(self) -> int:
        """Past frames needed before a frame can be scored."""
        return self.spec.context

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of the luma frames the model takes."""
        return self.spec.height, self.spec.width

    def score(self, stacks: np.ndarray) -> tuple[np.ndarray, list[Box]]:
        """``stacks`` uint8 (B, context+1, H, W) → raw scores (B,) float32 and the worst patch of each as a
        box (x0, y0, x1, y1) in fractions of the frame."""
        s = self.spec
        expected = (s.context + 1, s.height, s.width)
        if stacks.ndim != 4 or stacks.shape[1:] != expected:
            raise ValueError(f"video stacks must be (B, {', '.join(map(str, expected))}), got {stacks.shape}")
        batch = np.ascontiguousarray(stacks, dtype=np.uint8)
        err = self.engine.infer({s.input.name: batch})[s.output.name]
        flat = err.reshape(err.shape[0], -1)
        worst = flat.argmax(axis=1)
        raw = flat[np.arange(len(flat)), worst].astype(np.float32)
        gw = err.shape[2]
        boxes: list[Box] = []
        for idx in worst.tolist():
            row, col = divmod(idx, gw)
            x0, y0 = col * s.patch_stride, row * s.patch_stride
            boxes.append(
                (
                    x0 / s.width,
                    y0 / s.height,
                    min(x0 + s.patch, s.width) / s.width,
                    min(y0 + s.patch, s.height) / s.height,
                )
            )
        return raw, boxes

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        return self.spec.calibration.calibrate(raw)


class AudioScorer:
    """Top-k next-frame log-mel prediction error for windows of ``n_samples`` mono samples at
    ``sample_rate``."""

    def __init__(self, package: ModelPackage, engine: Engine) -> None:
        if package.audio is None:
            raise ModelPackageError(f"model package {package.package_id} has no audio model")
        self.spec: AudioModelSpec = package.audio
        self.engine = engine
        self._features = self.spec.features.config()
        self._mean = np.asarray(self.spec.norm_mean, dtype=np.float32)
        self._inv_std = 1.0 / np.asarray(self.spec.norm_std, dtype=np.float32)
        _check_engine(engine, self.spec)

    @property
    def n_samples(self) -> int:
        return self.spec.n_samples

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    def features(self, windows: np.ndarray) -> np.ndarray:
        """Normalised log-mel frames (B, T, n_mels) of the windows: what the graph takes."""
        return (log_mel(windows, self._features) - self._mean) * self._inv_std

    def score(self, windows: np.ndarray) -> np.ndarray:
        """``windows`` float32 (B, n_samples) in [-1, 1] → raw scores (B,) float32."""
        if windows.ndim != 2 or windows.shape[1] != self.n_samples:
            raise ValueError(f"audio windows must be (B, {self.n_samples}), got {windows.shape}")
        mel = self.features(windows.astype(np.float32, copy=False))
        err = self.engine.infer({self.spec.input.name: np.ascontiguousarray(mel, dtype=np.float32)})[
            self.spec.output.name
        ]
        return topk_mean(err[:, self.spec.skip_frames :], self.spec.top_k)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        return self.spec.calibration.calibrate(raw)


def topk_mean(err: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values along the last axis: a short loud event counts, one glitchy frame less."""
    k = max(1, min(k, err.shape[-1]))
    top = np.partition(err, err.shape[-1] - k, axis=-1)[..., -k:]
    return top.mean(axis=-1).astype(np.float32)
