"""A model package bound to engines: the ``ScoringModel`` the runner calls, calibrated scores out.

One engine per graph (video, audio, temporal), created from the engine config; all are loaded at start so a broken
package fails before any camera is opened.

Temporal model (when the package has one): ``score_video`` leaves the embeddings of the stacks it scored in
``last_embeddings`` (NaN rows for gated stacks); the caller keeps each camera's last ``temporal_window`` of them and
asks ``score_temporal`` for windows of any cameras in one batch. The scorer keeps no per-camera state.

Video stacks pass the motion gate first (``pipeline.scorer.MotionGate``): a stack where nothing moves skips the CNN
and scores the calibration floor (raw = the lowest held-out normal score, calibrated 0), so the score stays defined,
low and on time; ``frames_gated`` counts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from pipeline.engines.base import AnyEngineConfig, OrtEngineConfig, create_engine
from pipeline.engines.interface import Engine
from pipeline.models.package import ModelPackage
from pipeline.scorer import AudioScorer, Box, Masks, MotionGate, TemporalScorer, VideoScorer
from pipeline.sources.spec import Region

_DEFAULT_FPS = 5.0
_DEFAULT_CONTEXT = 1
DEFAULT_MOTION_THRESHOLD = 5.0


class ScoringModel(Protocol):
    """What the scoring path (``pipeline.stream_scoring``) needs from a model package: input geometry and
    calibrated scoring of batches. ``PackageScorer`` implements it over a model package and engines."""

    width: int
    height: int
    fps: float
    context: int  # past frames the video model needs besides the current one
    audio_window_s: float
    audio_hop_s: float
    sample_rate: int
    has_video: bool
    has_audio: bool
    # Temporal model: 0 without one. With one, ``score_video`` leaves the embeddings of the stacks it was given in
    # ``last_embeddings`` (B, ...) and ``score_temporal`` scores windows of each camera's last ``temporal_window``
    # embeddings (oldest first), any cameras mixed in one batch.
    temporal_window: int
    temporal_every: int  # a camera's windows are scored when (embeddings since its start - window) % this == 0
    last_embeddings: np.ndarray | None
    last_gated: np.ndarray  # (B,) bool: which stacks of the last ``score_video`` call the motion gate skipped

    def score_temporal(
        self, windows: np.ndarray, masks: Sequence[tuple[Region, ...]] | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[Box | None]]:
        """(B, temporal_window, ...) float32 → raw (B,), calibrated (B,), worst-region boxes; ``masks``: each
        window's camera's regions that are never scored."""
        ...

    def score_video(
        self, stacks: np.ndarray, masks: Sequence[tuple[Region, ...]] | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[Box | None]]:
        """(B, context+1, H, W) uint8 → raw (B,), calibrated (B,), worst-region boxes; ``masks``: each stack's
        camera's regions that are never scored (``SourceSpec.mask``)."""
        ...

    def score_audio(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, samples) float32 → raw (B,), calibrated (B,)."""
        ...


class PackageScorer:
    """Implements :class:`ScoringModel` over a :class:`ModelPackage`."""

    def __init__(
        self,
        package: ModelPackage,
        engine_config: AnyEngineConfig | Mapping[str, Any] | None = None,
        *,
        motion_threshold: float = DEFAULT_MOTION_THRESHOLD,
    ) -> None:
        cfg = engine_config if engine_config is not None else OrtEngineConfig()
        self.package = package
        self._engines: list[Engine] = []
        self._modalities: list[str] = []  # of each engine
        self.video: VideoScorer | None = None
        self.audio: AudioScorer | None = None
        self.temporal: TemporalScorer | None = None
        self.gate = MotionGate(motion_threshold)
        self.frames_scored = 0  # video stacks scored, gated ones included
        self.frames_gated = 0  # of which the CNN was skipped
        self.last_gated = np.zeros(0, dtype=bool)  # which stacks of the last score_video call were gated
        self.last_embeddings: np.ndarray | None = None  # their embeddings (NaN where gated), with a temporal model
        try:
            if package.video is not None:
                self.video = VideoScorer(package, self._engine(cfg, "video"))
            if package.audio is not None:
                self.audio = AudioScorer(package, self._engine(cfg, "audio"))
            if package.temporal is not None:
                self.temporal = TemporalScorer(package, self._engine(cfg, "temporal"))
        except BaseException:
            self.close()
            raise
        v, a = package.video, package.audio
        # without a video model, frames are still decoded at this geometry for nothing: turn video off instead
        self.width = v.width if v else 16
        self.height = v.height if v else 16
        self.fps = v.fps if v else _DEFAULT_FPS
        self.context = v.context if v else _DEFAULT_CONTEXT
        self.has_video = v is not None
        self.has_audio = a is not None
        self.has_temporal = self.temporal is not None
        self.temporal_window = self.temporal.window if self.temporal is not None else 0
        # a camera's windows are scored when (embeddings since its stream started - window) % temporal_every == 0
        self.temporal_every = self.temporal.spec.score_every if self.temporal is not None else 1
        self.audio_window_s = a.window_s if a else 1.0
        self.audio_hop_s = a.hop_s if a else 0.5
        self.sample_rate = a.sample_rate if a else 16000
        self.audio_n_samples = a.n_samples if a else 0
        self.audio_scored_samples = a.scored_samples if a else 0
        self._floor = float(v.calibration.values[0]) if v else 0.0

    def _engine(self, cfg: AnyEngineConfig | Mapping[str, Any], modality: str) -> Engine:
        engine = create_engine(cfg)
        self._engines.append(engine)
        self._modalities.append(modality)
        engine.load(self.package.graph_path(modality))  # type: ignore[arg-type]
        return engine

    def describe_engines(self) -> str:
        """Which backend runs which graph, e.g. ``torch cuda fp16 cuda-graphs[1, 2, 4, 8] (video, audio, temporal)``;
        graphs on the same backend and settings share one entry."""
        by: dict[str, list[str]] = {}
        for modality, engine in zip(self._modalities, self._engines, strict=True):
            by.setdefault(engine.describe(), []).append(modality)
        return "; ".join(f"{desc} ({', '.join(mods)})" for desc, mods in by.items())

    def score_video(
        self, stacks: np.ndarray, masks: Masks | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[Box | None]]:
        """(B, context+1, H, W) uint8 → raw, calibrated, worst-patch boxes; ``masks``: each stack's camera's regions
        that are never scored (``CameraConfig.mask``)."""
        assert self.video is not None
        n = len(stacks)
        moving = self.gate.moving(stacks, masks)
        raw = np.full(n, self._floor, dtype=np.float32)
        cal = np.zeros(n, dtype=np.float32)
        boxes: list[Box | None] = [None] * n
        idx = np.flatnonzero(moving)
        emb_all: np.ndarray | None = None
        if len(idx):
            part = masks if not masks or len(idx) == n else [masks[i] for i in idx.tolist()]
            r, b, emb = self.video.run(stacks if len(idx) == n else stacks[idx], part)
            if self.temporal is not None and emb is not None:
                emb_all = np.full((n, *emb.shape[1:]), np.nan, dtype=np.float32)
                emb_all[idx] = emb
            raw[idx] = r
            cal[idx] = self.video.calibrate(r)
            for i, box in zip(idx.tolist(), b, strict=True):
                boxes[i] = box
        self.frames_scored += n
        self.frames_gated += n - len(idx)
        self.last_gated = ~moving
        if self.temporal is not None and emb_all is None:
            emb_all = np.full((n, *self.temporal.spec.embedding_shape), np.nan, dtype=np.float32)
        self.last_embeddings = emb_all
        return raw, cal, boxes

    def score_temporal(
        self, windows: np.ndarray, masks: Masks | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[Box | None]]:
        """(B, temporal_window, C, eh, ew) embeddings, oldest first → raw (B,), calibrated (B,), worst cells;
        ``masks`` as for ``score_video``."""
        assert self.temporal is not None
        raw, boxes = self.temporal.score(windows, masks)
        return raw, self.temporal.calibrate(raw), boxes

    def score_audio(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.audio is not None
        raw = self.audio.score(windows)
        return raw, self.audio.calibrate(raw)

    def close(self) -> None:
        for engine in self._engines:
            engine.close()
        self._engines.clear()
