"""Capture-to-acknowledgement latency of delivered events: the publisher's ``on_ack`` hook.

For each row Kafka acknowledged, the latency is the acknowledgement's monotonic time minus the capture time of
the frame that decided the message (``AnomalyEvent.decided_from_monotonic_ns``, stored with the row by
``Outbox.put``). For a ``new`` message that is the time from the frame that completed ``min_duration_s`` to the
broker's acknowledgement: the latency target "p95 under 300 ms beyond the configured minimum duration".
Rows without a capture time (written by another process, or ends decided without a frame) are not counted.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from alerts.outbox import OutboxRow


@dataclass(frozen=True, slots=True)
class LatencyStats:
    count: int  # latencies in the window the percentiles are computed over
    p50_s: float
    p95_s: float
    max_s: float


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of an ascending, non-empty list."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class AckLatency:
    """Keeps the last ``window`` latencies per message type; thread-safe (called from the sender thread)."""

    def __init__(self, window: int = 10_000) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._window = window
        self._lock = threading.Lock()
        self._by_type: dict[str, deque[float]] = {}

    def __call__(self, row: OutboxRow, ack_monotonic_ns: int) -> None:
        if row.capture_monotonic_ns is None:
            return
        latency = (ack_monotonic_ns - row.capture_monotonic_ns) / 1e9
        with self._lock:
            values = self._by_type.get(row.type)
            if values is None:
                values = self._by_type[row.type] = deque(maxlen=self._window)
            values.append(latency)

    def stats(self, type_: str | None = None) -> LatencyStats | None:
        """Percentiles over ``type_`` (new / update / end) or all types; None before the first one."""
        with self._lock:
            if type_ is None:
                values = [v for d in self._by_type.values() for v in d]
            else:
                values = list(self._by_type.get(type_, ()))
        if not values:
            return None
        values.sort()
        return LatencyStats(len(values), percentile(values, 0.50), percentile(values, 0.95), values[-1])
