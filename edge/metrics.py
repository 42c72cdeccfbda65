"""The daemon's measured metrics for ``/metrics``, beside the counters of ``edge.health.SnapshotCollector``.

prometheus-client histograms, labelled by graph name or camera id only:

* ``lepton_inference_seconds{graph}``: one engine call (a batch) of the video, temporal or audio graph;
* ``lepton_capture_to_decision_seconds{camera}``: from the capture of the frame (or window) that decided an event
  message to the moment the daemon had it;
* ``lepton_decision_to_ack_seconds{camera}``: from that moment to Kafka's acknowledgement (with Kafka only);

and, per camera, the queue depth of its capture buffer and the camera status alerts sent (offline, online),
read at each scrape from functions the daemon gives. The process's own metrics (CPU, memory, open files) come
from prometheus-client's ``ProcessCollector``, added beside these by the daemon.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_DECISIONS_KEPT = 100_000  # decision times of rows not yet acknowledged (Kafka down: the oldest are forgotten)


class RunMetrics(Collector):
    """Histograms the daemon observes into, and per-camera gauges read from ``cameras()`` at each scrape
    (camera id → {"queue_depth", "offline_alerts", "online_alerts"})."""

    def __init__(self, cameras: Callable[[], Mapping[str, Mapping[str, int | bool]]] | None = None) -> None:
        self.inference = Histogram(
            "lepton_inference_seconds",
            "One engine call (a batch), by graph",
            ["graph"],
            registry=None,
            buckets=_INFERENCE_BUCKETS,
        )
        self.capture_to_decision = Histogram(
            "lepton_capture_to_decision_seconds",
            "Capture of the deciding frame or window to the event message",
            ["camera"],
            registry=None,
            buckets=_LATENCY_BUCKETS,
        )
        self.decision_to_ack = Histogram(
            "lepton_decision_to_ack_seconds",
            "Event message decided to Kafka acknowledgement",
            ["camera"],
            registry=None,
            buckets=_LATENCY_BUCKETS,
        )
        self._cameras = cameras
        self._lock = threading.Lock()
        self._decided: dict[int, int] = {}  # outbox row id -> monotonic ns it was decided

    def inference_timer(self, graph: str) -> Callable[[float], None]:
        """The function a scorer calls with each engine call's seconds."""
        return self.inference.labels(graph).observe

    def decided(self, camera_id: str, row_id: int, capture_ns: int | None, decided_ns: int) -> None:
        if capture_ns:
            self.capture_to_decision.labels(camera_id).observe(max(0.0, (decided_ns - capture_ns) / 1e9))
        with self._lock:
            if len(self._decided) >= _DECISIONS_KEPT:
                self._decided.pop(next(iter(self._decided)))
            self._decided[row_id] = decided_ns

    def acknowledged(self, camera_id: str, row_id: int, ack_ns: int) -> None:
        with self._lock:
            decided = self._decided.pop(row_id, None)
        if decided is not None:
            self.decision_to_ack.labels(camera_id).observe(max(0.0, (ack_ns - decided) / 1e9))

    def collect(self) -> Iterator[Metric]:
        yield from self.inference.collect()
        yield from self.capture_to_decision.collect()
        yield from self.decision_to_ack.collect()
        if self._cameras is None:
            return
        cams = sorted(self._cameras().items())
        depth = GaugeMetricFamily(
            "lepton_queue_depth", "Items waiting in the camera's capture buffer", labels=["camera"]
        )
        offline = CounterMetricFamily("lepton_camera_offline_alerts", "Camera offline alerts sent", labels=["camera"])
        online = CounterMetricFamily("lepton_camera_online_alerts", "Camera back online alerts sent", labels=["camera"])
        now_offline = GaugeMetricFamily(
            "lepton_camera_offline", "1 while the camera has an open offline alert", labels=["camera"]
        )
        for cam, values in cams:
            depth.add_metric([cam], float(values.get("queue_depth", 0)))
            if "offline_alerts" in values:
                offline.add_metric([cam], float(values["offline_alerts"]))
                online.add_metric([cam], float(values["online_alerts"]))
                now_offline.add_metric([cam], 1.0 if values.get("offline") else 0.0)
        yield from (depth, offline, online, now_offline)
