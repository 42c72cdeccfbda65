"""Health and Prometheus metrics, served by the daemon's HTTP app (``edge.web``) beside the console.

``GET /healthz`` answers JSON (per-camera source state and last error, outbox, publisher) with 200 when every
camera is streaming or finished and the publisher is not stuck, else 503; ``GET /metrics`` answers the Prometheus
text format (prometheus-client: a collector that reads a :class:`Snapshot` at each scrape, the daemon's latency
and inference histograms, the process's own metrics). Labels carry camera ids only, never URLs, and the JSON is
redacted as it leaves, so credentials cannot leak into a scrape. Bound elsewhere than loopback it warns at start
unless a bearer token guards it (``token``: then every request without it gets 401). The server runs on its own
thread and reads a snapshot function; it never touches the pipeline's state directly.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.redact import redact_text

if TYPE_CHECKING:
    from edge.web.context import ConsoleContext

log = logging.getLogger(__name__)

_HEALTHY_STATES = {"streaming", "stopped"}


@dataclass
class Snapshot:
    """Everything the endpoint reports, taken at one moment."""

    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)  # camera id → counters and "state"
    outbox: dict[str, Any] = field(default_factory=dict)
    publisher: dict[str, Any] | None = None
    media: dict[str, int] | None = None  # snapshot/clip counters (pipeline.media.MediaStats); None: no camera keeps any

    def healthy(self) -> bool:
        cams_ok = all(c.get("state") in _HEALTHY_STATES for c in self.cameras.values())
        # a publisher backing off is a broker it cannot reach: events wait in the outbox, delivery is degraded
        pub_ok = self.publisher is None or self.publisher.get("state") != "backoff"
        return cams_ok and pub_ok


# (metric name without _total, type, help, camera counter key)
_CAMERA_COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    ("lepton_frames_captured", "counter", "Video frames sampled for scoring", "frames"),
    ("lepton_audio_windows_captured", "counter", "Audio windows captured", "audio_windows"),
    ("lepton_frames_scored", "counter", "Video frames scored", "frames_scored"),
    ("lepton_audio_windows_scored", "counter", "Audio windows scored", "windows_scored"),
    ("lepton_dropped", "counter", "Items dropped by a full live buffer", "drops"),
    ("lepton_reconnects", "counter", "Reconnection attempts", "reconnects"),
    ("lepton_stalls", "counter", "Streams declared stalled by the watchdog", "stalls"),
    ("lepton_decode_errors", "counter", "Undecodable packets", "decode_errors"),
    ("lepton_events", "counter", "Event messages decided", "events"),
    ("lepton_media_buffer_bytes", "gauge", "Encoded packets held for snapshots and clips", "media_buffer_bytes"),
)
# (metric name without _total, help, MediaStats key): counters over all cameras
_MEDIA_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("lepton_media_snapshots_written", "Snapshots written (a rewrite after a higher peak counts)", "snapshots_written"),
    ("lepton_media_clips_written", "Clips written", "clips_written"),
    (
        "lepton_media_refused",
        "Events sent without a snapshot or clip: media directory unwritable or queue full",
        "refused",
    ),
    ("lepton_media_write_failures", "Snapshot or clip writes that failed (disk full, permissions)", "write_failures"),
    ("lepton_media_render_failures", "Snapshots or clips that could not be made from the buffer", "render_failures"),
    ("lepton_media_deleted", "Files deleted by retention", "deleted"),
)
_STATES = ("connecting", "streaming", "stalled", "backoff", "failed", "stopped")


class SnapshotCollector(Collector):
    """The counters and states of a :class:`Snapshot`, taken at each scrape (prometheus-client's custom collector:
    the pipeline keeps its own counters; nothing here runs on its threads)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        cams = sorted(snap.cameras.items())
        for name, kind, help_, key in _CAMERA_COUNTERS:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_, labels=["camera"])
            for cam, c in cams:
                if key in c or kind == "counter":
                    family.add_metric([cam], float(c.get(key, 0) or 0))
            yield family
        states = GaugeMetricFamily(
            "lepton_source_state", "1 for the state each camera is in", labels=["camera", "state"]
        )
        for cam, c in cams:
            for s in _STATES:
                states.add_metric([cam, s], 1.0 if c.get("state") == s else 0.0)
        yield states
        yield GaugeMetricFamily(
            "lepton_outbox_pending",
            "Events in the outbox not yet acknowledged by Kafka",
            value=float(snap.outbox.get("pending", 0)),
        )
        yield GaugeMetricFamily(
            "lepton_outbox_bytes",
            "Size of the outbox database and its WAL",
            value=float(snap.outbox.get("size_bytes", 0)),
        )
        if snap.media is not None:
            for name, help_, key in _MEDIA_COUNTERS:
                yield CounterMetricFamily(name, help_, value=float(snap.media.get(key, 0)))
        if snap.publisher is not None:
            yield CounterMetricFamily(
                "lepton_kafka_sent", "Events acknowledged by Kafka", value=float(snap.publisher.get("sent", 0))
            )
            yield CounterMetricFamily(
                "lepton_kafka_failed_attempts",
                "Send attempts that failed (retried)",
                value=float(snap.publisher.get("failed_attempts", 0)),
            )
            latency = snap.publisher.get("last_ack_latency_s")
            if latency is not None:
                yield GaugeMetricFamily(
                    "lepton_kafka_last_ack_latency_seconds",
                    "Capture to acknowledgement, last event",
                    value=float(latency),
                )


def render_metrics(snap: Snapshot, *extra: Collector) -> str:
    """The Prometheus text exposition of a snapshot (and of ``extra`` collectors: histograms, the process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snap))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry).decode()


def health_body(snap: Snapshot) -> tuple[int, bytes]:
    """``/healthz``: 200 when healthy, else 503; the JSON redacted as it leaves (an error text that carries a URL
    never carries its credentials)."""
    body = {"healthy": snap.healthy(), "cameras": snap.cameras, "outbox": snap.outbox, "publisher": snap.publisher}
    return 200 if snap.healthy() else 503, redact_text(json.dumps(body, default=str)).encode()


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (an address of 127.0.0.0/8 or ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class HealthServer:
    """The daemon's HTTP server: ``/healthz`` and ``/metrics``, and the console when ``console`` is given (see
    ``edge.web``). ``token``: when set, every request must carry ``Authorization: Bearer <token>`` (or the
    console's cookie; else 401). Bound beyond loopback without a token it warns, and the console is not served
    there (403): its pages show people. The socket is bound here (an error is an ``OSError`` now, not later)."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        host: str = "127.0.0.1",
        port: int = 9108,
        token: str | None = None,
        console: ConsoleContext | None = None,
        collectors: Sequence[Collector] = (),
    ) -> None:
        from edge.web.app import build_app
        from edge.web.server import WebServer

        if not is_loopback(host) and token is None:
            log.warning(
                "health endpoint %s:%d is reachable from the network without authentication (camera states, "
                "errors, counters): bind it to 127.0.0.1 or set health.token_file",
                host,
                port,
            )
        self._app = build_app(
            console, snapshot=snapshot, collectors=collectors, token=token, loopback=is_loopback(host)
        )
        self._server = WebServer(self._app, host=host, port=port, name="health")

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> None:
        self._server.start()
        log.info("health, metrics and console on http://%s:%d/", self._server.host, self.port)

    def stop(self) -> None:
        self._server.stop()
        self._app.close()
