"""A model package bound to engines: the ``ScoringModel`` the runner calls, calibrated scores out.

One engine per graph (video, audio), created from the engine config; both are loaded at start so a broken
package fails before any camera is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.engines.base import Engine, OrtEngineConfig, TorchEngineConfig, create_engine
from pipeline.models.package import ModelPackage
from pipeline.scorer import AudioScorer, Box, VideoScorer

_DEFAULT_FPS = 5.0
_DEFAULT_CONTEXT = 1


class PackageScorer:
    """Implements :class:`pipeline.runner.ScoringModel` over a :class:`ModelPackage`."""

    def __init__(
        self,
        package: ModelPackage,
        engine_config: OrtEngineConfig | TorchEngineConfig | Mapping[str, Any] | None = None,
    ) -> None:
        cfg = engine_config if engine_config is not None else OrtEngineConfig()
        self.package = package
        self._engines: list[Engine] = []
        self.video: VideoScorer | None = None
        self.audio: AudioScorer | None = None
        if package.video is not None:
            self.video = VideoScorer(package, self._engine(cfg, "video"))
        if package.audio is not None:
            self.audio = AudioScorer(package, self._engine(cfg, "audio"))
        v, a = package.video, package.audio
        # without a video model, frames are still decoded at this geometry for nothing: turn video off instead
        self.width = v.width if v else 16
        self.height = v.height if v else 16
        self.fps = v.fps if v else _DEFAULT_FPS
        self.context = v.context if v else _DEFAULT_CONTEXT
        self.has_video = v is not None
        self.has_audio = a is not None
        self.audio_window_s = a.window_s if a else 1.0
        self.audio_hop_s = a.hop_s if a else 0.5
        self.sample_rate = a.sample_rate if a else 16000

    def _engine(self, cfg: OrtEngineConfig | TorchEngineConfig | Mapping[str, Any], modality: str) -> Engine:
        engine = create_engine(cfg)
        engine.load(self.package.graph_path(modality))  # type: ignore[arg-type]
        self._engines.append(engine)
        return engine

    def score_video(self, stacks: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Box | None]]:
        assert self.video is not None
        raw, boxes = self.video.score(stacks)
        return raw, self.video.calibrate(raw), list(boxes)

    def score_audio(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.audio is not None
        raw = self.audio.score(windows)
        return raw, self.audio.calibrate(raw)

    def close(self) -> None:
        for engine in self._engines:
            engine.close()
        self._engines.clear()
