"""Camera tampering: cheap checks on the luma frames the video model already gets.

Four conditions, each against this camera's own recent normal view (so one config serves dark and bright scenes):

* **blackout** — the picture went dark: mean luma below ``blackout_luma``;
* **covered** — a hand, tape or spray over the lens: almost no texture left (luma standard deviation below
  ``covered_std``);
* **defocus** — sharpness (mean absolute Laplacian) fell below ``defocus_ratio`` of its normal level;
* **moved** — the view changed as a whole: more than ``moved_fraction`` of the 16x16 blocks differ from the
  reference view by more than ``moved_luma`` levels (each frame's mean removed, so lights turning on are not a
  move). People walking through change a few blocks, not most of them.

The normal levels (sharpness, reference view) follow the scene with an exponential moving average over
``adapt_s`` seconds of stream time, and only from frames that are not tampered: a covered camera stays covered.
A moved camera's new view becomes normal after ``accept_moved_s`` (the operator has been told; the event ends).
Scores feed a separate aggregator (tampering is its own event, never merged with a scene anomaly): calibrated 10
while a condition holds, 0 otherwise, so the event threshold needs no tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from pipeline.aggregator import AggregatorSettings
from pipeline.strict import StrictModel

TAMPERED = 10.0
_BLOCK = 16


class TamperSettings(StrictModel):
    """Tampering checks of one camera; the daemon config embeds this block as ``tampering:``."""

    enabled: bool = Field(True, description="Run the tampering checks on the video frames")
    blackout_luma: float = Field(12.0, ge=0, le=255, description="Mean luma below this is a blackout")
    covered_std: float = Field(5.0, ge=0, le=128, description="Luma standard deviation below this: lens covered")
    defocus_ratio: float = Field(0.35, gt=0, lt=1, description="Sharpness below this share of normal: defocused")
    moved_luma: float = Field(10.0, gt=0, le=255, description="Block mean change that counts for a move")
    moved_fraction: float = Field(0.5, gt=0, le=1, description="Share of changed blocks that means the view moved")
    adapt_s: float = Field(30.0, gt=0, le=3600, description="Time constant of the normal sharpness and view")
    accept_moved_s: float = Field(60.0, gt=0, le=86400, description="A moved view becomes the normal one after this")
    warmup_s: float = Field(3.0, ge=0, le=600, description="Learn the normal view this long before judging")
    min_duration_s: float = Field(1.0, ge=0, le=600, description="Tampered this long before the event opens")
    hold_s: float = Field(2.0, ge=0, le=600, description="Back to normal this long before the event ends")
    check_fps: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Checks per second of stream time: tampering lasts "
        "seconds, so checking every scored frame would only cost CPU",
    )

    def aggregator(self) -> AggregatorSettings:
        """Tampering events are decided apart from scene anomalies, on their own 0/10 score (a verdict, which has no
        flicker to smooth)."""
        return AggregatorSettings(
            threshold=TAMPERED / 2,
            min_duration_s=self.min_duration_s,
            hold_s=self.hold_s,
            stale_s=max(1.5, self.hold_s),
            smoothing_s=0.0,
        )


@dataclass(frozen=True, slots=True)
class TamperVerdict:
    score: float  # calibrated: TAMPERED or 0
    reason: str | None  # blackout | covered | defocus | moved
    sharpness: float
    moved_fraction: float


def _sharpness(luma: np.ndarray) -> float:
    lap = 4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2] - luma[1:-1, 2:]
    return float(np.abs(lap).mean())


def _blocks(luma: np.ndarray) -> np.ndarray:
    h, w = (luma.shape[0] // _BLOCK) * _BLOCK, (luma.shape[1] // _BLOCK) * _BLOCK
    b = luma[:h, :w].reshape(h // _BLOCK, _BLOCK, w // _BLOCK, _BLOCK).mean(axis=(1, 3))
    return b - b.mean()


class TamperDetector:
    """One camera's tampering state, fed its sampled luma frames in stream order."""

    def __init__(self, settings: TamperSettings) -> None:
        self.settings = settings
        self._sharp: float | None = None
        self._ref: np.ndarray | None = None
        self._last_pts: float | None = None
        self._start_pts: float | None = None
        self._moved_since: float | None = None
        self._slot: int | None = None  # the check_fps slot of the last frame checked

    def reset(self) -> None:
        """A new stream (reconnection): the view may legitimately differ; learn it again."""
        self.__init__(self.settings)  # type: ignore[misc]

    def due(self, pts: float) -> bool:
        """Whether the frame at ``pts`` should be checked: the first in each 1/check_fps slot of stream time."""
        slot = math.floor(pts * self.settings.check_fps)
        if slot == self._slot:
            return False
        self._slot = slot
        return True

    def check(self, luma: np.ndarray, pts: float) -> TamperVerdict:
        s = self.settings
        frame = luma.astype(np.float32)
        mean, std = float(frame.mean()), float(frame.std())
        sharp = _sharpness(frame)
        blocks = _blocks(frame)
        dt = 0.0 if self._last_pts is None else max(0.0, pts - self._last_pts)
        self._last_pts = pts
        if self._start_pts is None:
            self._start_pts = pts
        alpha = 1.0 - float(np.exp(-dt / s.adapt_s)) if dt > 0 else 0.0
        moved = 0.0
        if self._ref is not None and self._ref.shape == blocks.shape:
            moved = float((np.abs(blocks - self._ref) > s.moved_luma).mean())
        reason: str | None = None
        learning = pts - self._start_pts < s.warmup_s
        if mean < s.blackout_luma:
            reason = "blackout"
        elif std < s.covered_std:
            reason = "covered"
        elif not learning and self._sharp is not None and sharp < s.defocus_ratio * self._sharp:
            reason = "defocus"
        elif not learning and moved > s.moved_fraction:
            self._moved_since = pts if self._moved_since is None else self._moved_since
            if pts - self._moved_since < s.accept_moved_s:
                reason = "moved"
            else:  # the new view has lasted: it is the camera's view now
                self._ref, self._moved_since = blocks, None
        if reason != "moved":
            self._moved_since = None
        if reason is None:
            # learn from normal frames only (fast while warming up)
            a = 1.0 if self._sharp is None else (max(alpha, 0.2) if learning else alpha)
            self._sharp = sharp if self._sharp is None else self._sharp + a * (sharp - self._sharp)
            if self._ref is None or self._ref.shape != blocks.shape:
                self._ref = blocks
            else:
                self._ref = self._ref + a * (blocks - self._ref)
        return TamperVerdict(TAMPERED if reason else 0.0, reason, sharp, moved)
