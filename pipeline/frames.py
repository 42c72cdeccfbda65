"""Data that flows between stages: frozen dataclasses with three clocks each.

Every item carries the stream timestamp ``pts`` (seconds, from the container or RTP), ``monotonic_ns`` taken when
the item was captured (intervals, latencies and timeouts use this clock only) and ``wall_time`` (UTC, a label:
from RTCP sender reports when the camera gives them, else the receive clock; ``clock`` says which).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

import numpy as np


class WallClock(str, Enum):
    """Where a frame's ``wall_time`` came from."""

    RTCP = "rtcp"  # the camera's sender reports mapped RTP time to NTP time
    RECEIVE = "receive"  # our own clock when the packet was decoded
    FILE = "file"  # replay: start of replay + pts


class Modality(str, Enum):
    VIDEO = "video"
    AUDIO = "audio"
    TEMPORAL = "temporal"  # the video's motion over time (RNN)
    TAMPERING = "tampering"  # camera covered, moved, defocused or blinded


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """One sampled video frame, reduced to the model's luma input (``uint8``, ``height x width``)."""

    camera_id: str
    seq: int
    pts: float
    monotonic_ns: int
    wall_time: datetime
    luma: np.ndarray = field(repr=False, compare=False)
    clock: WallClock = WallClock.RECEIVE


@dataclass(frozen=True, slots=True)
class AudioWindow:
    """A window of mono float32 samples in [-1, 1] at ``sample_rate``; ``pts`` is the window's first sample."""

    camera_id: str
    seq: int
    pts: float
    monotonic_ns: int
    wall_time: datetime
    samples: np.ndarray = field(repr=False, compare=False)
    sample_rate: int = 16000
    clock: WallClock = WallClock.RECEIVE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def centre_pts(self) -> float:
        return self.pts + self.duration / 2


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Sentinel sent downstream when a source ends. ``lost`` is True when a live stream went away."""

    camera_id: str
    pts: float
    monotonic_ns: int
    wall_time: datetime
    lost: bool = False
    reason: str = "eof"


@dataclass(frozen=True, slots=True)
class Score:
    """A model's verdict on one frame or window. ``calibrated`` is comparable across cameras (see calibration)."""

    camera_id: str
    modality: Modality
    pts: float
    monotonic_ns: int
    wall_time: datetime
    raw: float
    calibrated: float
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 as fractions of the frame
    label: str | None = None  # what the scorer recognised, when it can name it (the kind of tampering)


def monotonic_ns() -> int:
    return time.monotonic_ns()
