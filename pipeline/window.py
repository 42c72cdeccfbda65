"""The window of the last few arrays of one stream (luma frames of a video stack, embeddings of a temporal window),
and which windows get scored: one implementation for the runner and for offline scoring (``pipeline.evaluation``),
so ``edge score`` decides what the daemon decides."""

from __future__ import annotations

import numpy as np


class WindowRing:
    """The last ``size`` arrays of one stream (frames or embeddings), oldest first, as one contiguous view.

    Each array is written twice, ``size`` slots apart, so the window is always a plain slice of the buffer: the
    runner copies it straight into the batch (one copy, where a deque and np.stack took two). The buffer is
    allocated by the first push of a stream, in that array's shape and dtype.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf: np.ndarray | None = None
        self._next = 0  # the slot the next push writes; after a push, where the window starts
        self._count = 0
        self.pushed = 0  # arrays pushed since the stream (re)started

    @property
    def full(self) -> bool:
        return self._count == self.size

    def due(self, every: int = 1) -> bool:
        """Whether the window just completed is scored: the stream's first full window and every ``every``-th
        after it (a model package's ``temporal.score_every``)."""
        return self.full and (self.pushed - self.size) % every == 0

    def push(self, item: np.ndarray) -> None:
        buf = self._buf
        if buf is None or buf.shape[1:] != item.shape or buf.dtype != item.dtype:
            if buf is not None and self._count:
                raise ValueError(f"ring holds {buf.shape[1:]} {buf.dtype} arrays, got {item.shape} {item.dtype}")
            buf = self._buf = np.empty((2 * self.size, *item.shape), dtype=item.dtype)
        i = self._next
        buf[i] = item
        buf[i + self.size] = item
        self._next = (i + 1) % self.size
        self._count = min(self._count + 1, self.size)
        self.pushed += 1

    def window(self) -> np.ndarray:
        """(size, ...) oldest first; a view that the next push overwrites. Before the ring is full (the start of a
        stream), the arrays pushed so far with the oldest repeated in front of them, as a new array: a model that
        needs ``size`` arrays then sees what a causal model with edge padding sees, so that every array of a
        stream has its window from the first one on."""
        assert self._buf is not None and self._count, "window() of an empty ring"
        if self._count == self.size:
            return self._buf[self._next : self._next + self.size]
        have = self._buf[: self._count]  # before the ring is full, slots 0.. hold the pushes in order
        return np.concatenate((np.repeat(have[:1], self.size - self._count, axis=0), have))

    def batch(self, n: int) -> np.ndarray:
        """An empty (n, size, ...) array for windows of rings like this one."""
        assert self._buf is not None
        return np.empty((n, self.size, *self._buf.shape[1:]), dtype=self._buf.dtype)

    def clear(self) -> None:
        """A new stream: the window starts again (the buffer is kept)."""
        self._next = self._count = self.pushed = 0
