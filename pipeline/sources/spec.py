"""What a source is: a camera URL, a file to replay, or an image sequence; and how to open it."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path

from pipeline.redact import redact_url


class SourceKind(str, Enum):
    RTSP = "rtsp"  # a live network camera
    FILE = "file"  # a media file replayed
    IMAGES = "images"  # an image sequence such as frames/%03d.jpg, or a folder of frames


_PRINTF = re.compile(r"%0?\d*d")
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def classify(url: str) -> SourceKind:
    lowered = url.lower()
    if lowered.startswith(("rtsp://", "rtsps://")):
        return SourceKind.RTSP
    if _PRINTF.search(url) or os.path.isdir(url):
        return SourceKind.IMAGES
    return SourceKind.FILE


# FFmpeg's skip_loop_filter values a source may use: deblock every frame, or key frames only.
SKIP_LOOP_FILTER = ("none", "nokey")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """How to open one source. Timeouts bound every network wait.

    Live cameras only: ``stall_timeout_s`` without a decoded frame ends a session as stalled (the watchdog);
    a lost camera is retried after an exponential back-off from ``backoff_initial_s`` up to ``backoff_max_s``,
    with jitter (see ``pipeline.sources.capture``).
    """

    camera_id: str
    url: str
    input_fps: float | None = None  # image sequences only: the rate the frames were taken at
    pace: bool = False  # replay files at real-time speed instead of as fast as possible
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    rtsp_transport: str = "tcp"
    # H.264/H.265 deblocking skipped on non-key frames ("nokey", FFmpeg's skip_loop_filter) or never ("none"):
    # ~17 % of decoding CPU; the model's input changes by ~0.3/255 on average (see benchmarks/README.md)
    skip_loop_filter: str = "nokey"
    video: bool = True  # decode and score this source's video
    audio: bool = True  # decode and score this source's audio
    stall_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def __repr__(self) -> str:
        # the generated repr would print the URL's credentials wherever a spec is logged
        shown = ", ".join(
            f"{f.name}={self.safe_url if f.name == 'url' else getattr(self, f.name)!r}" for f in fields(self)
        )
        return f"SourceSpec({shown})"

    def __post_init__(self) -> None:
        for name in ("open_timeout_s", "read_timeout_s", "stall_timeout_s", "backoff_initial_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        if self.skip_loop_filter not in SKIP_LOOP_FILTER:
            raise ValueError(f"skip_loop_filter must be one of {', '.join(SKIP_LOOP_FILTER)}")

    @property
    def kind(self) -> SourceKind:
        return classify(self.url)

    @property
    def live(self) -> bool:
        return self.kind is SourceKind.RTSP

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)


def image_pattern(url: str) -> str:
    """Turn a folder of frames into a printf pattern FFmpeg's image2 demuxer understands."""
    if not os.path.isdir(url):
        return url
    names = sorted(p for p in os.listdir(url) if p.lower().endswith(_IMAGE_EXT))
    if not names:
        return str(Path(url) / "%d.jpg")
    # frames named by a zero-padded counter (000.jpg, 001.jpg ...) map to a printf pattern;
    # anything else goes through the glob pattern type.
    first = names[0]
    stem, ext = os.path.splitext(first)
    if stem.isdigit():
        return str(Path(url) / f"%0{len(stem)}d{ext}")
    return str(Path(url) / f"*{ext}")


def first_image(pattern: str) -> str | None:
    """The first existing file matching an image pattern, to tell 'missing' from 'not an image'."""
    if "*" in pattern:
        hits = sorted(glob.glob(pattern))
        return hits[0] if hits else None
    as_glob = _PRINTF.sub("*", pattern)
    hits = sorted(glob.glob(as_glob))
    return hits[0] if hits else None
