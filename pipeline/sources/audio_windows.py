"""Audio windowing for every audio source (``MediaReader`` for files and cameras, ``MicrophoneReader``): a stream of
mono samples cut into the windows the audio model scores, ``window`` samples every ``hop``.

A window's pts counts samples from the stream's origin (``restart``), so it never drifts however many windows
follow; a gap restarts the windows there and drops the partial one. A hop longer than the window passes over the
samples between.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np

from pipeline.frames import AudioWindow, WallClock


class AudioWindower:
    """Cuts a stream of mono samples into windows of ``window`` samples every ``hop`` samples.

    A window's pts is ``origin`` plus the index of its first sample over ``sample_rate``. :meth:`restart` jumps
    over a gap.
    """

    def __init__(self, camera_id: str, *, window: int, hop: int, sample_rate: int) -> None:
        if window < 1 or hop < 1:
            raise ValueError("window and hop must be >= 1 sample")
        self.camera_id = camera_id
        self.window = window
        self.hop = hop
        self.sample_rate = sample_rate
        self.seq = 0
        self._buf = np.zeros(0, dtype=np.float32)
        self._origin = 0.0  # source time (s) of stream sample 0
        self._start = 0  # stream index of _buf[0]
        self._skip = 0  # samples still to pass over when hop > window

    def restart(self, at: int, *, origin: float = 0.0) -> None:
        """Drop the partial window; the next sample pushed is sample ``at`` of a stream whose sample 0 is at
        source time ``origin``."""
        self._buf = np.zeros(0, dtype=np.float32)
        self._origin = origin
        self._start = at
        self._skip = 0

    def cut(self, samples: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
        """The windows that ``samples`` (the stream's next ones) complete, one at a time: (pts, a copy of the
        window's samples). ``samples`` is copied where it is kept, so it may be a view of a decoder's buffer."""
        if self._skip:
            n = min(self._skip, len(samples))
            samples = samples[n:]
            self._skip -= n
            self._start += n
        self._buf = np.concatenate((self._buf, samples)) if self._buf.size else samples.copy()
        while len(self._buf) >= self.window:
            pts = self._origin + self._start / self.sample_rate
            window = self._buf[: self.window].copy()
            step = min(self.hop, len(self._buf))
            self._buf = self._buf[step:]
            self._start += step
            self._skip = self.hop - step
            yield pts, window

    def push(self, samples: np.ndarray, monotonic_ns: int, wall_time: datetime) -> list[AudioWindow]:
        """The windows ``samples`` complete, stamped with one receive time (a microphone's block)."""
        out: list[AudioWindow] = []
        for pts, window in self.cut(samples):
            out.append(
                AudioWindow(
                    self.camera_id,
                    self.seq,
                    pts,
                    monotonic_ns,
                    wall_time,
                    window,
                    self.sample_rate,
                    WallClock.RECEIVE,
                )
            )
            self.seq += 1
        return out
