"""The one scoring path: frames and audio windows of any cameras in, ``Score``s out.

``StreamScorer`` keeps each camera's state between batches (the stack of the last ``context + 1`` frames, the window
of the last ``temporal_window`` embeddings and which windows are due) and calls a ``ScoringModel`` once per batch
and kind. The daemon's runner and offline scoring (``edge score``, ``edge eval``) both go through it, so a quality
figure is a figure of the code that runs beside cameras.

Contract: each camera's items come in stream order (a batch may mix cameras); ``reset`` starts a camera's stream
again (a reconnect): its stack starts from its first frame repeated (see ``WindowRing``) and its padded start stays
out of the temporal model, which learned from real stacks only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.frames import AudioWindow, Modality, Score, VideoFrame
from pipeline.scoring_model import ScoringModel
from pipeline.sources.spec import Region
from pipeline.window import WindowRing


@dataclass(frozen=True)
class VideoScores:
    """What one batch of frames scored to: a video score per frame (in the order given), whether the motion gate
    skipped the CNN for it, and the temporal scores that came due, each with the frame that completed its window."""

    video: list[Score]
    gated: list[bool]
    temporal: list[tuple[VideoFrame, Score]]


class StreamScorer:
    """Per-camera scoring state over one ``ScoringModel`` (see the module docstring)."""

    def __init__(self, model: ScoringModel, masks: Mapping[str, tuple[Region, ...]] | None = None) -> None:
        self.model = model
        self._masks: dict[str, tuple[Region, ...]] = dict(masks or {})
        self._frames: dict[str, WindowRing] = {}
        self._embeddings: dict[str, WindowRing] = {}
        self._temporal_window = int(model.temporal_window or 0)
        self._temporal_every = max(1, int(model.temporal_every or 1))

    def _mask(self, camera_id: str) -> tuple[Region, ...]:
        return self._masks.get(camera_id, ())

    def _rings(self, camera_id: str) -> tuple[WindowRing, WindowRing]:
        frames = self._frames.get(camera_id)
        if frames is None:
            frames = self._frames[camera_id] = WindowRing(self.model.context + 1)
            self._embeddings[camera_id] = WindowRing(max(1, self._temporal_window))
        return frames, self._embeddings[camera_id]

    def reset(self, camera_id: str) -> None:
        """The camera's stream starts again: no past frame or embedding carries over."""
        if camera_id in self._frames:
            self._frames[camera_id].clear()
            self._embeddings[camera_id].clear()

    def score_video(self, frames: Sequence[VideoFrame]) -> VideoScores:
        """Score a batch of frames (each camera's in stream order)."""
        if not frames:
            return VideoScores([], [], [])
        stacks: np.ndarray | None = None
        full = np.zeros(len(frames), dtype=bool)  # whose stack is all real frames (not the start's padding)
        for k, f in enumerate(frames):
            ring, _ = self._rings(f.camera_id)
            ring.push(f.luma)
            # copied out at once: a later frame of the same camera in this batch overwrites the ring
            if stacks is None:
                stacks = ring.batch(len(frames))
            stacks[k] = ring.window()
            full[k] = ring.full
        assert stacks is not None
        raw, cal, boxes = self.model.score_video(stacks, masks=[self._mask(f.camera_id) for f in frames])
        gated = (
            [bool(g) for g in self.model.last_gated]
            if len(self.model.last_gated) == len(frames)
            else [False] * len(frames)
        )
        video = [
            Score(f.camera_id, Modality.VIDEO, f.pts, f.monotonic_ns, f.wall_time, float(r), float(c), b)
            for f, r, c, b in zip(frames, raw, cal, boxes, strict=True)
        ]
        temporal: list[tuple[VideoFrame, Score]] = []
        embeddings = self.model.last_embeddings
        if self._temporal_window and embeddings is not None:
            temporal = self._score_temporal([f for f, ok in zip(frames, full, strict=True) if ok], embeddings[full])
        return VideoScores(video, gated, temporal)

    def _score_temporal(self, frames: list[VideoFrame], embeddings: np.ndarray) -> list[tuple[VideoFrame, Score]]:
        """Append each frame's embedding to its camera's window; score the cameras whose window is due."""
        windows: np.ndarray | None = None
        owners: list[VideoFrame] = []
        for f, e in zip(frames, embeddings, strict=True):
            ring = self._rings(f.camera_id)[1]
            ring.push(e)
            if ring.due(self._temporal_every):
                if windows is None:
                    windows = ring.batch(len(frames))
                windows[len(owners)] = ring.window()
                owners.append(f)
        if windows is None:
            return []
        raw, cal, boxes = self.model.score_temporal(
            windows[: len(owners)], masks=[self._mask(f.camera_id) for f in owners]
        )
        return [
            (f, Score(f.camera_id, Modality.TEMPORAL, f.pts, f.monotonic_ns, f.wall_time, float(r), float(c), b))
            for f, r, c, b in zip(owners, raw, cal, boxes, strict=True)
        ]

    def score_audio(self, windows: Sequence[AudioWindow]) -> list[Score]:
        """Score a batch of audio windows; each score is stamped with its window's centre."""
        if not windows:
            return []
        raw, cal = self.model.score_audio(np.stack([w.samples for w in windows]))
        return [
            Score(w.camera_id, Modality.AUDIO, w.centre_pts, w.monotonic_ns, w.wall_time, float(r), float(c))
            for w, r, c in zip(windows, raw, cal, strict=True)
        ]
