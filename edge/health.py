"""Health and Prometheus metrics over HTTP, bound to localhost by default.

``GET /healthz`` answers JSON (per-camera source state and last error, outbox, publisher) with 200 when every
camera is streaming or finished and the publisher is not stuck, else 503; ``GET /metrics`` answers the Prometheus
text format. Labels carry camera ids only, never URLs, and the JSON is redacted as it leaves, so credentials cannot
leak into a scrape. Bound elsewhere than loopback it warns at start unless a bearer token guards it (``token``:
then every request without ``Authorization: Bearer <token>`` gets 401). The server runs on its own daemon
thread (stdlib ``ThreadingHTTPServer``) and reads a snapshot function; it never touches the pipeline's state
directly.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.redact import redact_text

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


# (metric name, type, help, camera counter key)
_CAMERA_COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    ("lepton_frames_captured_total", "counter", "Video frames sampled for scoring", "frames"),
    ("lepton_audio_windows_captured_total", "counter", "Audio windows captured", "audio_windows"),
    ("lepton_frames_scored_total", "counter", "Video frames scored", "frames_scored"),
    ("lepton_audio_windows_scored_total", "counter", "Audio windows scored", "windows_scored"),
    ("lepton_dropped_total", "counter", "Items dropped by a full live buffer", "drops"),
    ("lepton_reconnects_total", "counter", "Reconnection attempts", "reconnects"),
    ("lepton_stalls_total", "counter", "Streams declared stalled by the watchdog", "stalls"),
    ("lepton_decode_errors_total", "counter", "Undecodable packets", "decode_errors"),
    ("lepton_events_total", "counter", "Event messages decided", "events"),
    ("lepton_media_buffer_bytes", "gauge", "Encoded packets held for snapshots and clips", "media_buffer_bytes"),
)
# (metric name, help, MediaStats key): counters over all cameras
_MEDIA_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("lepton_media_snapshots_written_total", "Snapshots written (a rewrite after a higher peak counts)",
     "snapshots_written"),
    ("lepton_media_clips_written_total", "Clips written", "clips_written"),
    ("lepton_media_refused_total", "Events sent without a snapshot or clip: media directory unwritable or queue "
     "full", "refused"),
    ("lepton_media_write_failures_total", "Snapshot or clip writes that failed (disk full, permissions)",
     "write_failures"),
    ("lepton_media_render_failures_total", "Snapshots or clips that could not be made from the buffer",
     "render_failures"),
    ("lepton_media_deleted_total", "Files deleted by retention", "deleted"),
)
_STATES = ("connecting", "streaming", "stalled", "backoff", "failed", "stopped")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(snap: Snapshot) -> str:
    """The Prometheus text exposition of a snapshot."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str, samples: Iterable[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    for name, kind, help_, key in _CAMERA_COUNTERS:
        family(name, kind, help_, ((f'{{camera="{_label(cam)}"}}', float(c.get(key, 0)))
                                   for cam, c in sorted(snap.cameras.items())))
    family("lepton_source_state", "gauge", "1 for the state each camera is in",
           ((f'{{camera="{_label(cam)}",state="{s}"}}', 1.0 if c.get("state") == s else 0.0)
            for cam, c in sorted(snap.cameras.items()) for s in _STATES))
    family("lepton_outbox_pending", "gauge", "Events in the outbox not yet acknowledged by Kafka",
           [("", float(snap.outbox.get("pending", 0)))])
    family("lepton_outbox_bytes", "gauge", "Size of the outbox database and its WAL",
           [("", float(snap.outbox.get("size_bytes", 0)))])
    if snap.media is not None:
        for name, help_, key in _MEDIA_COUNTERS:
            family(name, "counter", help_, [("", float(snap.media.get(key, 0)))])
    if snap.publisher is not None:
        family("lepton_kafka_sent_total", "counter", "Events acknowledged by Kafka",
               [("", float(snap.publisher.get("sent", 0)))])
        family("lepton_kafka_failed_attempts_total", "counter", "Send attempts that failed (retried)",
               [("", float(snap.publisher.get("failed_attempts", 0)))])
        latency = snap.publisher.get("last_ack_latency_s")
        if latency is not None:
            family("lepton_kafka_last_ack_latency_seconds", "gauge", "Capture to acknowledgement, last event",
                   [("", float(latency))])
    out.append("")
    return "\n".join(out)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (an address of 127.0.0.0/8 or ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class HealthServer:
    """``token``: when set, every request must carry ``Authorization: Bearer <token>`` (else 401)."""

    def __init__(self, snapshot: Callable[[], Snapshot], *, host: str = "127.0.0.1", port: int = 9108,
                 token: str | None = None) -> None:
        self._snapshot = snapshot
        self._token = token
        if not is_loopback(host) and token is None:
            log.warning("health endpoint %s:%d is reachable from the network without authentication (camera states, "
                        "errors, counters): bind it to 127.0.0.1 or set health.token_file", host, port)
        handler = self._handler()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("health and metrics on http://%s:%d/", *self._server.server_address[:2])

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever(), which never ran if never started
            self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        snapshot = self._snapshot
        expected = f"Bearer {self._token}".encode() if self._token is not None else None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if expected is not None:
                    given = (self.headers.get("Authorization") or "").encode("utf-8", "replace")
                    if not hmac.compare_digest(given, expected):
                        self._send(401, "text/plain", b"bearer token required\n",
                                   {"WWW-Authenticate": 'Bearer realm="lepton-edge"'})
                        return
                try:
                    snap = snapshot()
                except Exception:  # noqa: BLE001 - a scrape must never take the daemon down
                    log.exception("health snapshot failed")
                    self._send(500, "text/plain", b"snapshot failed\n")
                    return
                if self.path.startswith("/metrics"):
                    self._send(200, "text/plain; version=0.0.4", render_metrics(snap).encode())
                elif self.path.startswith("/healthz"):
                    body = {"healthy": snap.healthy(), "cameras": snap.cameras, "outbox": snap.outbox,
                            "publisher": snap.publisher}
                    # redacted as it leaves: an error text that carries a URL never carries its credentials
                    self._send(200 if snap.healthy() else 503, "application/json",
                               redact_text(json.dumps(body, default=str)).encode())
                else:
                    self._send(404, "text/plain", b"try /healthz or /metrics\n")

            def _send(self, code: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
                log.debug("health: %s", format % args)

        return Handler
