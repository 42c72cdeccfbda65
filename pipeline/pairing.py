"""A microphone paired with a camera: its audio windows placed on the camera's stream time line.

The aggregator of a camera runs on that camera's stream time (``pts``) and its watermark never goes back; a
microphone counts its own samples from when it opened, a time line that has nothing to do with the camera's.
Both stamp every item with ``monotonic_ns``, the host's monotonic clock when it was captured (the video frame
decoded, the audio block delivered), shared by every thread and process of the machine. The mapping goes through it:

* each video frame of the camera gives one sample of ``anchor = pts - monotonic``; the anchor in use is the
  median of the last ``history`` samples (robust against a frame decoded late, following the slow drift
  between the camera's clock and ours, and a new segment after a reconnection or a timestamp jump);
* a window's start on the host clock is its ``monotonic_ns`` (taken when the block that completed it arrived)
  less its duration; its camera pts is that plus the anchor plus the pairing's ``offset_s``;
* mapped pts never go back, so the audio modality stays fresh at the aggregator's watermark.
(Not wall time: a camera's comes from its own clock, often minutes off; ours steps when NTP corrects it.)

What the mapping cannot see: video frames are stamped when they are decoded, after the camera's encoder,
network and our decoder (typically 0.1-0.5 s for an IP camera); audio is stamped when captured, after only
PortAudio's input latency. So a sound lands that much earlier on the camera's time line than the picture of
the same moment: it still fuses into one event; ``offset_s`` (added to every mapped window, positive = later)
corrects it for a camera whose latency is known.

Until the camera delivered its first video frame there is no anchor, and windows are dropped (counted as
``windows_unpaired``): anywhere else they would move the watermark ahead of the camera's first frames. A camera
that is lost keeps its last anchor: its time line continues after an outage by the outage's real length.
"""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass

from pipeline.frames import AudioWindow, VideoFrame
from pipeline.sources.microphone import MicrophoneSpec


def microphone_source_id(camera_id: str) -> str:
    """The source id of a camera's microphone (health, metrics, logs): ``cam/mic``; ``/`` is never in a camera
    id, so it cannot collide with another camera."""
    return f"{camera_id}/mic"


@dataclass(frozen=True, slots=True)
class PairedMicrophone:
    """A microphone that feeds ``camera_id``'s audio modality. ``spec.camera_id`` is the microphone's own
    source id (:func:`microphone_source_id`); ``offset_s`` is added to every mapped window."""

    camera_id: str
    spec: MicrophoneSpec
    offset_s: float = 0.0


class CameraClock:
    """Maps windows of a paired source onto one camera's stream time; fed that camera's video frames."""

    def __init__(self, *, offset_s: float = 0.0, history: int = 25) -> None:
        if history < 1:
            raise ValueError("history must be >= 1")
        self.offset_s = offset_s
        self._anchors: collections.deque[float] = collections.deque(maxlen=history)
        self._anchor: float | None = None
        self._last: float = -float("inf")

    @property
    def anchor(self) -> float | None:
        """Camera pts minus host monotonic seconds; None until the camera's first video frame."""
        return self._anchor

    def observe(self, frame: VideoFrame) -> None:
        self._anchors.append(frame.pts - frame.monotonic_ns / 1e9)
        self._anchor = statistics.median(self._anchors)

    def map(self, window: AudioWindow) -> float | None:
        """The camera pts of the window's first sample; None while the camera has not been seen."""
        if self._anchor is None:
            return None
        pts = window.monotonic_ns / 1e9 - window.duration + self._anchor + self.offset_s
        pts = max(pts, self._last)
        self._last = pts
        return pts
