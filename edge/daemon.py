"""The edge daemon: config → model → capture/scoring runner → outbox → (optional) Kafka publisher.

Every decided event is written to the outbox before anything else happens to it; the publisher, when Kafka is
configured, drains the outbox on its own thread and removes nothing Kafka did not acknowledge. A stop (SIGTERM,
SIGINT, ``--duration``, or every replayed file ended) drains in flow order: capture stops, scoring finishes what
was captured, open events end with ``shutdown`` (or ``eof`` for replays), the publisher gets a bounded time to
deliver; whatever it could not deliver stays in the outbox for the next start. A daemon that was killed instead
(``kill -9``, power loss) left its open events without an end: the next start ends them first, with reason
``restart``, the same event_id and the next seq (``alerts.recovery``). Under systemd (``Type=notify``) it says
READY once its cameras are opened, pings the watchdog from its main loop and says STOPPING when it drains.
"""

from __future__ import annotations

import collections
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from prometheus_client import ProcessCollector

from alerts.console import format_event
from alerts.errors import OutboxError
from alerts.latency import AckLatency, LatencyStats
from alerts.outbox import Outbox, OutboxRow
from alerts.publisher import KafkaPublisher
from alerts.recovery import end_interrupted
from alerts.salvage import SalvageReport, open_checked
from alerts.schema import EventMessage, ModelProvenance
from alerts.store import EventStore
from edge.config import EdgeConfig
from edge.errors import StartupError
from edge.health import HealthServer, Snapshot
from edge.metrics import RunMetrics
from edge.offline import OfflineMonitor
from edge.systemd import Notifier
from edge.web.context import ConsoleContext
from pipeline.errors import SourceError, SourceNotFoundError
from pipeline.events import AnomalyEvent, EventType
from pipeline.frames import utc_now
from pipeline.live import EventTraces, LiveView, heat_sources
from pipeline.media import MediaRecorder
from pipeline.models.package import ModelPackage
from pipeline.runner import Runner, RunnerSettings
from pipeline.scoring_model import PackageScorer
from pipeline.sources.spec import SourceKind

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    seconds: float = 0.0
    events_new: int = 0
    events_end: int = 0
    per_camera: dict[str, dict[str, int]] = field(default_factory=dict)
    outbox_pending: int = 0
    media: dict[str, int] | None = None  # snapshots/clips written, refused, failures (None: no camera keeps media)
    events_recovered: int = 0  # events a previous run left open, ended at start with reason=restart
    engines: str = ""  # which backend scored which graph (ScoringModel.describe_engines)
    outbox_salvaged: SalvageReport | None = None  # the outbox was corrupt at start: what was recovered
    # replayed files that could not be read to their end (truncated, garbage): camera id -> why
    failed_files: dict[str, str] = field(default_factory=dict)
    # capture of the frame that decided a message -> Kafka acknowledgement (None: nothing acknowledged)
    ack_latency_new: LatencyStats | None = None
    ack_latency_all: LatencyStats | None = None


def _fatal_at_start(runner: Runner, failures: dict[str, SourceError]) -> bool:
    """Whether the first connection's failures stop the start.

    A replayed file that cannot be read does, and so does a microphone that is not there at all (PortAudio lists
    devices once, at start: retrying cannot find it; the message lists the devices there are). An unreachable
    RTSP camera, or a microphone that is there but will not open, is retried in the background, unless no
    camera at all could be reached."""
    sources = runner.snapshot()
    cameras = {c for c, s in sources.items() if s.camera}
    for source, err in failures.items():
        if source in cameras and sources[source].kind is not SourceKind.RTSP:
            return True
        if source not in cameras and isinstance(err, SourceNotFoundError):
            return True
    return bool(cameras) and cameras <= set(failures)


def _health_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(
            f"health.token_file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise StartupError(f"health.token_file {path}: it must hold one token (printable, no spaces)")
    return token


class Daemon:
    def __init__(
        self,
        cfg: EdgeConfig,
        *,
        console: TextIO | None = None,
        duration_s: float | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.cfg = cfg
        self.console = console
        self.duration_s = duration_s
        self.notifier = Notifier() if notifier is None else notifier  # NOTIFY_SOCKET from the environment
        self.summary = RunSummary()
        self._runner: Runner | None = None
        self._outbox: Outbox | None = None
        self._publisher: KafkaPublisher | None = None
        self._provenance: ModelProvenance | None = None
        self._latency = AckLatency()
        self._health: HealthServer | None = None
        self._media: MediaRecorder | None = None
        # events the outbox could not take (disk full, read-only, I/O error): kept in order, retried before the next
        # event and at stop, never dropped silently
        self._backlog: collections.deque[tuple[EventMessage, int | None, int]] = collections.deque()
        self._put_lock = threading.Lock()  # events come from the scoring thread, camera status alerts from run()
        self.outbox_write_failures = 0
        self.detail_write_failures = 0
        self._store: EventStore | None = None
        self._offline: OfflineMonitor | None = None
        self.live = LiveView()
        self._traces = EventTraces(self.live)
        self.metrics = RunMetrics(self._camera_metrics)
        self._stop_requested = threading.Event()

    # -- start -----------------------------------------------------------------------------------------------
    def _prepare(self) -> Runner:
        cfg = self.cfg
        package = ModelPackage.load(cfg.model)
        scorer = PackageScorer(package, cfg.engine)
        self.summary.engines = scorer.describe_engines()
        log.info("model %s scored with %s", package.package_id, self.summary.engines)
        prov = package.provenance(engine=cfg.engine.type)
        calibration = "; ".join(f"{name}: {desc}" for name, desc in sorted(prov["calibration"].items()))
        self._provenance = ModelProvenance(
            package_id=prov["package_id"],
            version=prov["version"],
            engine=cfg.engine.type,
            calibration=calibration[:200],
        )
        settings = RunnerSettings(
            max_batch=cfg.detect.max_batch,
            max_wait_s=cfg.detect.max_wait_ms / 1000.0,
            aggregator=cfg.events,
            tamper=cfg.tampering,
        )
        cameras = cfg.camera_media()
        self._media = MediaRecorder(cfg.media, cameras) if cameras else None
        self._watch_scoring(package, scorer)
        runner = Runner(
            cfg.source_specs(),
            scorer,
            self._on_event,
            settings,
            media=self._media,
            microphones=cfg.microphones(),
            observer=self._traces,
        )
        failures = runner.open_sources()
        if _fatal_at_start(runner, failures):
            lines = [f"camera {cam}: {err}" for cam, err in sorted(failures.items())]
            raise StartupError("; ".join(lines))
        for cam, err in failures.items():
            log.warning("camera %s unreachable at start, will keep retrying: %s", cam, err)
        self._outbox, salvaged = open_checked(
            cfg.outbox.path,
            local_only=cfg.kafka is None,
            retention_s=cfg.outbox.retention_h * 3600.0,
            max_delivered_rows=cfg.outbox.max_messages,
        )
        if salvaged is not None:
            self.summary.outbox_salvaged = salvaged
            log.error(
                "outbox %s was corrupt: moved aside to %s; %d row(s) recovered into a new outbox (%d not yet "
                "delivered, to be sent), %d unreadable",
                cfg.outbox.path,
                salvaged.moved_to,
                salvaged.recovered,
                salvaged.pending,
                salvaged.unreadable,
            )
        self._store = EventStore(cfg.outbox.path)
        self._end_interrupted()
        self._offline = OfflineMonitor(
            cfg.offline_alerts(), self._on_status, site=cfg.site, model=self._provenance, clock=time.monotonic
        )
        self._offline.restore(self._store.open_outages())
        if cfg.kafka is not None:
            self._publisher = KafkaPublisher(self._outbox, cfg.kafka, on_ack=self._on_ack)
        return runner

    def _watch_scoring(self, package: ModelPackage, scorer: PackageScorer) -> None:
        """Events keep their timeline and the heat-map of their peak; engine calls are timed per graph."""
        self._traces = EventTraces(self.live, heat=heat_sources(package, self.cfg.events.fusion))
        for graph in ("video", "temporal", "audio"):
            part = getattr(scorer, graph, None)
            if part is not None:
                part.timer = self.metrics.inference_timer(graph)

    def _end_interrupted(self) -> None:
        """End the events a previous run of this site left open (it was killed): before anything is decided."""
        assert self._outbox is not None
        for msg in end_interrupted(self._outbox, site=self.cfg.site, decided_at=utc_now()):
            self.summary.events_recovered += 1
            if self.console is not None:
                print(format_event(msg), file=self.console, flush=True)

    def _on_event(self, ev: AnomalyEvent) -> None:
        assert self._outbox is not None and self._provenance is not None
        msg = EventMessage.from_anomaly(ev, site=self.cfg.site, model=self._provenance, decided_at=utc_now())
        # durable first: the event exists once it is in the outbox, whatever happens next
        self._put(msg, ev.decided_from_monotonic_ns or None)
        self._keep_detail(ev)
        if ev.type is EventType.NEW:
            self.summary.events_new += 1
        elif ev.type is EventType.END:
            self.summary.events_end += 1
        if self.console is not None:
            print(format_event(msg), file=self.console, flush=True)

    def _on_status(self, msg: EventMessage) -> None:
        """A camera offline / online alert (``edge.offline``): delivered like an event."""
        self._put(msg, None)
        if self.console is not None:
            print(format_event(msg), file=self.console, flush=True)

    def _put(self, msg: EventMessage, capture_ns: int | None) -> None:
        with self._put_lock:
            self._backlog.append((msg, capture_ns, time.monotonic_ns()))
            self._flush_backlog()

    def _keep_detail(self, ev: AnomalyEvent) -> None:
        """The event's timeline and peak heat-map beside its message, for the console; never holds it up."""
        detail = self._traces.message(ev)
        if self._store is None:  # no store opened (a test's daemon wired by hand): the trace is still followed
            return
        settings = self.cfg.tampering.aggregator() if "tampering" in ev.modalities else self.cfg.events
        detail.update(threshold=settings.enter, exit_threshold=settings.exit)
        try:
            self._store.save_detail(ev.event_id, ev.camera_id, detail)
        except OutboxError as exc:
            self.detail_write_failures += 1
            if self.detail_write_failures == 1:
                log.error("event store refuses event timelines (%s); events go on without them", exc)

    def _on_ack(self, row: OutboxRow, ack_ns: int) -> None:
        self._latency(row, ack_ns)
        self.metrics.acknowledged(row.camera_id, row.id, ack_ns)

    def _flush_backlog(self) -> bool:
        """Write waiting events to the outbox in order; False while it still refuses them."""
        assert self._outbox is not None
        while self._backlog:
            msg, capture_ns, decided_ns = self._backlog[0]
            try:
                row_id = self._outbox.put(msg, capture_monotonic_ns=capture_ns)
            except OutboxError as exc:
                self.outbox_write_failures += 1
                if self.outbox_write_failures == 1 or len(self._backlog) % 100 == 1:
                    log.error(
                        "outbox refuses events (%s); %d event(s) held in memory and retried", exc, len(self._backlog)
                    )
                return False
            self._backlog.popleft()
            self.metrics.decided(msg.camera_id, row_id, capture_ns, decided_ns)
        return True

    def request_stop(self) -> None:
        self._stop_requested.set()
        if self._runner is not None:
            self._runner.stop()

    # -- run -------------------------------------------------------------------------------------------------
    def run(self, *, install_signals: bool = True) -> RunSummary:
        started = time.monotonic()
        runner = self._runner = self._prepare()
        restore = self._install_signals() if install_signals else (lambda: None)
        try:
            if self._publisher is not None:
                self._publisher.start()
            self._serve()
            runner.start()
            self.notifier.ready(f"scoring {len(self.cfg.cameras)} camera(s)")
            self._watch(runner, started)
            self.notifier.stopping()
            runner.stop()
            runner.join(timeout=15)
        finally:
            self.notifier.stopping()
            restore()
            self._close()
        self.summary.seconds = time.monotonic() - started
        if self._media is not None:
            self.summary.media = self._media.stats.as_dict()
        sources = runner.snapshot()
        for cam, src in sources.items():
            if src.camera and not src.live and src.capture.last_error:
                self.summary.failed_files[cam] = src.capture.last_error
        self.summary.per_camera = {
            cam: {
                "frames_scored": src.scoring.frames_scored,
                "audio_windows_scored": src.scoring.windows_scored,
                "events": src.scoring.events,
                "dropped": src.capture.drops,
            }
            for cam, src in sources.items()
        }
        return self.summary

    def _serve(self) -> None:
        """/healthz, /metrics and the console (``edge.web``), when ``health:`` is configured."""
        h = self.cfg.health
        if h is None:
            return
        console = None
        if h.console:
            console = ConsoleContext(
                store_path=self.cfg.outbox.path,
                media_dir=self.cfg.media.path,
                site=self.cfg.site,
                live=self.live,
                cameras=lambda: self.snapshot().cameras,
            )
        try:
            self._health = HealthServer(
                self.snapshot,
                host=h.host,
                port=h.port,
                token=_health_token(h.token_file),
                console=console,
                collectors=[self.metrics, ProcessCollector(registry=None)],
            )
        except OSError as exc:
            raise StartupError(f"health endpoint {h.host}:{h.port}: {exc.strerror or exc}") from exc
        self._health.start()

    def _camera_metrics(self) -> dict[str, dict[str, int | bool]]:
        """Per camera for /metrics: its capture buffer's depth and its offline / online alerts."""
        runner = self._runner
        if runner is None:
            return {}
        out: dict[str, dict[str, int | bool]] = {}
        for cam, src in runner.snapshot().items():
            out[cam] = {"queue_depth": src.queue_depth}
            if self._offline is not None:
                out[cam].update(self._offline.counters(cam))
        return out

    def _check_cameras(self, runner: Runner) -> None:
        """Camera offline / online alerts from the live cameras' states (``edge.offline``)."""
        assert self._offline is not None
        watched = self.cfg.offline_alerts()
        if watched:
            sources = runner.snapshot()
            self._offline.check(
                {cam: sources[cam].capture for cam in watched}, {cam: sources[cam].position_s for cam in watched}
            )

    def _watch(self, runner: Runner, started: float) -> None:
        """The main loop: until the runner ends (or is stopped), pinging the service watchdog on schedule."""
        deadline = None if self.duration_s is None else started + self.duration_s
        interval = self.notifier.watchdog_interval_s
        next_ping = time.monotonic()
        while not runner.wait(0.2 if interval is None else min(0.2, interval)):
            self._check_cameras(runner)
            now = time.monotonic()
            if interval is not None and now >= next_ping:
                self.notifier.watchdog()
                next_ping = now + interval
            if deadline is not None and now >= deadline:
                log.info("duration reached, stopping")
                runner.stop()
            if self._stop_requested.is_set():
                runner.stop()

    def snapshot(self) -> Snapshot:
        """The state health and metrics report: sources, scoring, outbox, publisher."""
        runner = self._runner
        cams: dict[str, dict[str, object]] = {}
        if runner is not None:
            for cam, src in runner.snapshot().items():
                st = src.scoring
                cams[cam] = {
                    **src.capture.as_dict(),
                    "frames_scored": st.frames_scored,
                    "windows_scored": st.windows_scored,
                    "events": st.events,
                }
                ring = self._media.ring(cam) if self._media is not None else None
                if ring is not None:
                    cams[cam]["media_buffer_bytes"] = ring.bytes
                if not src.camera:  # a paired microphone: windows before its camera's video
                    cams[cam]["windows_unpaired"] = st.windows_unpaired
        outbox = {}
        if self._outbox is not None:
            ob = self._outbox.stats()
            outbox = {"pending": ob.pending if self.cfg.kafka else 0, "size_bytes": ob.size_bytes}
        publisher = None
        if self._publisher is not None:
            ps = self._publisher.stats()
            publisher = {
                "state": ps.state.value,
                "sent": ps.sent,
                "failed_attempts": ps.failed_attempts,
                "last_ack_latency_s": ps.last_ack_latency_s,
                "last_error": ps.last_error,
            }
        media = self._media.stats.as_dict() if self._media is not None else None
        return Snapshot(cameras=cams, outbox=outbox, publisher=publisher, media=media)

    def _close(self) -> None:
        if self._health is not None:
            self._health.stop()
        if self._publisher is not None:
            self._publisher.stop(drain_timeout_s=10.0)
            self._publisher.join()
            self.summary.ack_latency_new = self._latency.stats("new")
            self.summary.ack_latency_all = self._latency.stats()
        if self._outbox is not None and not self._flush_backlog():
            # last resort: the events go to the log as JSON lines rather than nowhere
            log.critical(
                "outbox %s still refuses %d event(s); they follow as JSON lines",
                self.cfg.outbox.path,
                len(self._backlog),
            )
            for msg, _, _ in self._backlog:
                log.critical("unwritten event %s", msg.to_json().decode())
        if self._store is not None:
            self._store.close()
        if self._outbox is not None:
            self.summary.outbox_pending = self._outbox.stats().pending if self.cfg.kafka else 0
            self._outbox.close()

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            self.request_stop()

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore
