"""Kafka publisher: drains the outbox into a topic, marking rows delivered only once Kafka acknowledged them.

``KafkaSettings`` is the ``kafka:`` section of the daemon's YAML config; ``KafkaPublisher`` is the stage that
owns the producer. ``check_kafka`` is the one-shot reachability check ``edge doctor`` can use.
"""

from __future__ import annotations

import errno
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator

from alerts.errors import OutboxError, PublishError
from alerts.outbox import Outbox, OutboxRow
from pipeline.strict import StrictModel

log = logging.getLogger(__name__)

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")
_SASL = ("SASL_PLAINTEXT", "SASL_SSL")
_TLS = ("SSL", "SASL_SSL")


class KafkaSettings(StrictModel):
    """How to reach Kafka and the topic (the daemon config's ``kafka:`` section; consumers use it too)."""

    bootstrap: list[str] = Field(
        min_length=1,
        description="Bootstrap brokers as host:port, a list or one comma-separated string.",
    )
    topic: str = Field(
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Topic the events go to. It must exist: the publisher never auto-creates it.",
    )
    client_id: str = Field(
        default="lepton-edge",
        min_length=1,
        max_length=200,
        description="Client id shown in broker logs/quotas.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Transport: plain TCP, TLS, SASL over plain TCP, or SASL over TLS."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism; required with SASL_PLAINTEXT / SASL_SSL."
    )
    username: str | None = Field(default=None, description="SASL username.")
    password: SecretStr | None = Field(default=None, description="SASL password (never logged).")
    ssl_cafile: FilePath | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the brokers' certificates (SSL / SASL_SSL).",
    )
    ssl_certfile: FilePath | None = Field(
        default=None, description="PEM client certificate, for brokers that require mutual TLS."
    )
    ssl_keyfile: FilePath | None = Field(default=None, description="PEM private key of ssl_certfile.")
    ssl_password: SecretStr | None = Field(default=None, description="Password of ssl_keyfile, if encrypted.")
    ssl_check_hostname: bool = Field(
        default=True, description="Check that the broker certificate matches its host name."
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Bound on reaching a bootstrap broker when (re)connecting."
    )
    request_timeout_s: float = Field(default=10.0, gt=0, le=300, description="Bound on one broker request.")
    delivery_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Bound on one send attempt (queueing, retries, acknowledgement); after it the publisher"
        " backs off and sends the row again. At least request_timeout_s.",
    )
    max_block_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Bound on waiting for topic metadata or buffer space in send().",
    )
    retry_backoff_s: float = Field(
        default=0.5, gt=0, le=60, description="First back-off after a failed send; doubles up to the maximum."
    )
    retry_backoff_max_s: float = Field(
        default=10.0, gt=0, le=600, description="Longest back-off between send attempts while Kafka is down."
    )
    max_batch: int = Field(default=500, ge=1, le=10_000, description="Outbox rows sent per round.")

    @field_validator("bootstrap", mode="before")
    @classmethod
    def _split_bootstrap(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("bootstrap")
    @classmethod
    def _check_host_port(cls, value: list[str]) -> list[str]:
        for item in value:
            m = _HOST_PORT.match(item)
            if m is None or not 0 < int(m.group(2)) < 65536:
                raise ValueError(f"{item!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        sasl_fields = {
            "sasl_mechanism": self.sasl_mechanism,
            "username": self.username,
            "password": self.password,
        }
        if self.security_protocol in _SASL:
            missing = [name for name, v in sasl_fields.items() if v is None]
            if missing:
                raise ValueError(f"security_protocol {self.security_protocol} needs {', '.join(missing)}")
        else:
            given = [name for name, v in sasl_fields.items() if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply with security_protocol SASL_PLAINTEXT/SASL_SSL")
        if self.security_protocol not in _TLS:
            tls = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password")
            given = [name for name in tls if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply with security_protocol SSL/SASL_SSL")
        if (self.ssl_keyfile is None) != (self.ssl_certfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        if self.delivery_timeout_s < self.request_timeout_s:
            raise ValueError("delivery_timeout_s must be at least request_timeout_s")
        if self.retry_backoff_max_s < self.retry_backoff_s:
            raise ValueError("retry_backoff_max_s must be at least retry_backoff_s")
        return self

    def client_config(self) -> dict[str, Any]:
        """kafka-python options shared by producer, consumer and admin client."""
        cfg: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": int(self.request_timeout_s * 1000),
            "bootstrap_timeout_ms": int(self.connect_timeout_s * 1000),
            "reconnect_backoff_ms": 100,
            "reconnect_backoff_max_ms": int(min(self.retry_backoff_max_s, 5.0) * 1000),
        }
        if self.security_protocol in _SASL:
            cfg["sasl_mechanism"] = self.sasl_mechanism
            cfg["sasl_plain_username"] = self.username
            cfg["sasl_plain_password"] = self.password.get_secret_value() if self.password else None
        if self.security_protocol in _TLS:
            cfg["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                path: Path | None = getattr(self, name)
                if path is not None:
                    cfg[name] = str(path)
            if self.ssl_password is not None:
                cfg["ssl_password"] = self.ssl_password.get_secret_value()
        return cfg

    def producer_config(self) -> dict[str, Any]:
        """kafka-python ``KafkaProducer`` options: idempotent, acks from all in-sync replicas, bounded."""
        return {
            **self.client_config(),
            # Idempotence (the default since KIP-679, explicit here so a conflicting option raises instead of
            # silently turning it off): broker-side de-duplication of the producer's own retries, and order
            # kept per partition with up to 5 requests in flight. Retries stay at kafka-python's default
            # (infinite), bounded in time by delivery_timeout_ms.
            "enable_idempotence": True,
            "acks": "all",
            "delivery_timeout_ms": int(self.delivery_timeout_s * 1000),
            "max_block_ms": int(self.max_block_s * 1000),
            "retry_backoff_ms": 200,
            "linger_ms": 0,
            # Topics are created explicitly with the partitions the site wants, never by a typo in a config.
            "allow_auto_create_topics": False,
        }


class FutureLike(Protocol):
    def get(self, timeout: float | None = None) -> Any: ...


class ProducerLike(Protocol):
    """The part of ``kafka.KafkaProducer`` the publisher uses (tests pass an in-memory fake)."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FutureLike: ...

    def partitions_for(self, topic: str) -> set[int] | None: ...

    def close(self, timeout: float | None = None) -> None: ...


ProducerFactory = Callable[[dict[str, Any]], ProducerLike]


def kafka_producer(config: dict[str, Any]) -> ProducerLike:
    """Create a real ``kafka.KafkaProducer`` (connects to a bootstrap broker before returning)."""
    from kafka import KafkaProducer

    producer: ProducerLike = KafkaProducer(**config)
    return producer


class PublisherState(str, Enum):
    IDLE = "idle"  # created, not started
    CONNECTING = "connecting"  # creating the producer (bootstrapping)
    CONNECTED = "connected"  # producer up; last round (if any) delivered
    BACKOFF = "backoff"  # last connect or send failed; waiting before the next try
    DRAINING = "draining"  # stop() called: sending what is pending until the drain deadline
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class PublisherStats:
    state: PublisherState
    sent: int  # rows acknowledged by Kafka and marked delivered
    failed_attempts: int  # failed connect attempts + failed send rounds
    pending: int  # rows in the outbox not yet acknowledged (-1: the outbox cannot be read)
    last_ack_latency_s: float | None  # send() to acknowledgement of the latest acknowledged row
    last_error: str | None  # latest connect/send failure, cleared by the next success
    hook_errors: int  # exceptions raised by on_ack (logged, never stop delivery)


AckHook = Callable[[OutboxRow, int], None]
"""Called from the sender thread after a row was marked delivered: ``(row, ack_monotonic_ns)``.

``row.capture_monotonic_ns`` (when the daemon gave it to ``Outbox.put``) minus ``ack_monotonic_ns`` is the
capture-to-ack latency. Keep it fast; exceptions are logged and counted."""


class KafkaPublisher:
    """Sends outbox rows to Kafka, oldest first, and marks each delivered once Kafka acknowledged it.

    Architecture: one sender thread (``alerts-publisher``) owns one kafka-python ``KafkaProducer`` (which has
    its own I/O thread). The sender loops: read up to ``max_batch`` pending rows in id order, ``send`` them
    all (key = ``camera_id`` so a camera's messages share a partition; headers ``schema_version`` and
    ``type``), wait for each future, mark the acknowledged rows delivered in one outbox transaction, call
    ``on_ack`` for each. With nothing pending it sleeps on the outbox until the next ``put``.

    Guarantees:
      * a row is marked delivered only after its send future resolved successfully (acks=all, idempotent);
      * when Kafka is unreachable rows simply stay pending; connect and send are retried with exponential
        back-off and jitter (``retry_backoff_s`` .. ``retry_backoff_max_s``), never dropped, and drain when
        the broker returns. The producer is created by the sender thread as soon as it starts (not at the
        first event, which would pay for bootstrapping), so a broker that is down when the daemon starts costs
        retries, not a crash;
      * per-camera order: rows are sent in id order through one idempotent producer, which keeps order per
        partition across its own retries. A round that failed is sent again from its oldest unacknowledged
        row; rows acknowledged after a failed one in the same round are not resent (consumers see them in the
        order Kafka stored them). A crash between acknowledgement and the outbox commit resends the row: the
        duplicate has the same ``event_id`` + ``seq``.

    ``stop(drain_timeout_s)`` keeps sending until nothing is pending or the deadline passed, then closes the
    producer; what is still pending stays in the outbox for the next start.
    """

    def __init__(
        self,
        outbox: Outbox,
        settings: KafkaSettings,
        *,
        on_ack: AckHook | None = None,
        producer_factory: ProducerFactory = kafka_producer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._settings = settings
        self._on_ack = on_ack
        self._factory = producer_factory
        self._clock = clock
        self._producer: ProducerLike | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._drain_deadline = float("inf")
        self._lock = threading.Lock()
        self._state = PublisherState.IDLE
        self._sent = 0
        self._failed = 0
        self._hook_errors = 0
        self._last_latency: float | None = None
        self._last_error: str | None = None
        self._backoff = settings.retry_backoff_s
        self._outage_since: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("KafkaPublisher already started")
        self._thread = threading.Thread(target=self._run, name="alerts-publisher", daemon=True)
        self._set_state(PublisherState.CONNECTING)
        self._thread.start()

    def stop(self, drain_timeout_s: float = 10.0) -> int:
        """Drain for at most ``drain_timeout_s``, close the producer, return how many rows are still pending.

        Blocks up to about ``drain_timeout_s`` (plus a connect attempt that was already in progress, at most
        ``connect_timeout_s``, and the producer's close).
        """
        self._drain_deadline = self._clock() + max(0.0, drain_timeout_s)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self.join(drain_timeout_s + self._settings.connect_timeout_s + 5.0)
            if self._thread.is_alive():
                log.warning("alerts publisher did not stop within its drain + connect timeouts")
        else:
            self._set_state(PublisherState.STOPPED)
        return self._pending()

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def state(self) -> PublisherState:
        return self._state

    def stats(self) -> PublisherStats:
        with self._lock:
            return PublisherStats(
                state=self._state,
                sent=self._sent,
                failed_attempts=self._failed,
                pending=self._pending(),
                last_ack_latency_s=self._last_latency,
                last_error=self._last_error,
                hook_errors=self._hook_errors,
            )

    # -- sender thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._done():
                try:
                    if not self._step():
                        break
                except OutboxError as exc:
                    if exc.errno == errno.EBADF:  # closed under us: nothing left to do
                        log.warning("alerts publisher: the outbox was closed; stopping")
                        break
                    self._note_failure(f"outbox error: {exc}")
                    self._wait_backoff()
                except Exception as exc:
                    # A bug, not an outage: log it with its stack, and keep the rows flowing after a back-off
                    # rather than leave the daemon without a sender.
                    log.exception("alerts publisher: unexpected error")
                    self._note_failure(f"unexpected error: {_describe(exc)}")
                    self._wait_backoff()
        finally:
            self._close_producer()
            self._set_state(PublisherState.STOPPED)

    def _step(self) -> bool:
        """One round: send what is pending, or wait for a put. False when stopping and nothing is pending."""
        seen = self._outbox.last_put_id
        rows = self._outbox.pending(self._settings.max_batch)
        if not rows:
            if self._stopping.is_set():
                return False
            if self._producer is None:
                # Connect before the first event rather than at it: bootstrapping and topic metadata cost
                # that event a few hundred milliseconds otherwise.
                if self._connect() is None:
                    self._wait_backoff()
                    return True
                self._recovered()
            self._outbox.wait_for_put(seen, timeout_s=0.2)
            return True
        producer = self._producer or self._connect()
        if producer is None:
            self._wait_backoff()
        elif self._send_round(producer, rows):
            self._recovered()
        else:
            self._wait_backoff()
        return True

    def _done(self) -> bool:
        return self._stopping.is_set() and self._clock() >= self._drain_deadline

    def _connect(self) -> ProducerLike | None:
        config = self._settings.producer_config()
        if self._stopping.is_set():  # draining: a connect attempt must not outlast the drain deadline
            remaining = self._drain_deadline - self._clock()
            if remaining <= 0:
                return None
            bound_ms = min(config["bootstrap_timeout_ms"], int(remaining * 1000))
            config["bootstrap_timeout_ms"] = max(100, bound_ms)
        else:
            self._set_state(PublisherState.CONNECTING)
        try:
            self._producer = self._factory(config)
        except Exception as exc:  # noqa: BLE001 - any failure to connect is retried, never fatal to the daemon
            self._note_failure(f"cannot connect to Kafka at {','.join(self._settings.bootstrap)}: {exc}")
            return None
        log.info("alerts publisher connected to Kafka at %s", ",".join(self._settings.bootstrap))
        self._set_state(PublisherState.DRAINING if self._stopping.is_set() else PublisherState.CONNECTED)
        return self._producer

    def _send_round(self, producer: ProducerLike, rows: Sequence[OutboxRow]) -> bool:
        """Send ``rows`` and wait for them; mark the acknowledged ones delivered. True if all were."""
        topic = self._settings.topic
        started = self._clock()
        in_flight: list[tuple[OutboxRow, FutureLike]] = []
        error: Exception | None = None
        for row in rows:
            try:
                future = producer.send(
                    topic,
                    value=row.payload,
                    key=row.camera_id.encode("utf-8"),
                    headers=[("schema_version", row.schema_version.encode()), ("type", row.type.encode())],
                )
            except Exception as exc:  # noqa: BLE001 - metadata timeout, buffer full: retried after back-off
                error = exc
                break
            in_flight.append((row, future))
        # Waits are bounded: the producer fails a record itself after delivery_timeout_s; the margin covers a
        # request that was on the wire at that moment. While draining, the drain deadline bounds it too.
        deadline = started + self._settings.delivery_timeout_s + self._settings.request_timeout_s
        acked: list[tuple[OutboxRow, int]] = []
        for row, future in in_flight:
            limit = min(deadline, self._drain_deadline) if self._stopping.is_set() else deadline
            try:
                future.get(timeout=max(0.0, limit - self._clock()))
            except Exception as exc:  # noqa: BLE001 - the row stays pending and is sent again
                error = error or exc
                continue
            acked.append((row, time.monotonic_ns()))
        if acked:
            self._outbox.mark_acked(row.id for row, _ in acked)
            latency = self._clock() - started
            with self._lock:
                self._sent += len(acked)
                self._last_latency = latency
            self._run_hooks(acked)
        if error is not None:
            self._note_failure(f"send to topic {topic!r} failed: {_describe(error)}")
            return False
        return True

    def _run_hooks(self, acked: list[tuple[OutboxRow, int]]) -> None:
        if self._on_ack is None:
            return
        for row, ack_ns in acked:
            try:
                self._on_ack(row, ack_ns)
            except Exception:
                log.exception("alerts publisher: on_ack hook failed for row %d", row.id)
                with self._lock:
                    self._hook_errors += 1

    def _note_failure(self, message: str) -> None:
        first = self._outage_since is None
        if first:
            self._outage_since = self._clock()
        with self._lock:
            self._failed += 1
            self._last_error = message
        # One warning per outage, then debug: a broker down for an hour must not flood the log.
        if first:
            log.warning("alerts publisher: %s; events stay in the outbox and are retried", message)
        else:
            log.debug("alerts publisher: %s", message)

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.info(
                "alerts publisher: Kafka delivery resumed after %.1f s of failures",
                self._clock() - self._outage_since,
            )
        self._outage_since = None
        self._backoff = self._settings.retry_backoff_s
        with self._lock:
            self._last_error = None
        self._set_state(PublisherState.DRAINING if self._stopping.is_set() else PublisherState.CONNECTED)

    def _wait_backoff(self) -> None:
        if not self._stopping.is_set():
            self._set_state(PublisherState.BACKOFF)
        delay = self._backoff * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography
        self._backoff = min(self._backoff * 2.0, self._settings.retry_backoff_max_s)
        if self._stopping.is_set():
            delay = min(delay, max(0.0, self._drain_deadline - self._clock()))
            time.sleep(min(delay, 0.5))  # draining: retry soon, the deadline bounds it
            return
        self._wake.wait(delay)

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        timeout = 0.0 if self._stopping.is_set() and self._done() else 2.0
        try:
            producer.close(timeout=timeout)
        except Exception as exc:  # noqa: BLE001
            # kafka-python 3.0 close() flushes first and raises KafkaTimeoutError while records are in flight,
            # before it stops its I/O thread. Those rows are still pending in the outbox (sent again at the
            # next start); force the thread down so it does not outlive the publisher.
            log.warning("alerts publisher: closing the producer with records in flight (%s)", _describe(exc))
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(2.0)

    def _set_state(self, state: PublisherState) -> None:
        with self._lock:
            self._state = state

    def _pending(self) -> int:
        try:
            return self._outbox.stats().pending
        except OutboxError:
            log.warning("alerts publisher: cannot count pending outbox rows", exc_info=True)
            return -1


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def check_kafka(settings: KafkaSettings, *, producer_factory: ProducerFactory = kafka_producer) -> int:
    """Connect once and look the topic up; return its partition count or raise ``PublishError`` saying why.

    Bounded by ``connect_timeout_s`` + ``max_block_s``. For ``edge doctor`` and start-up diagnostics; the
    publisher itself never needs it (it retries).
    """
    where = ",".join(settings.bootstrap)
    try:
        producer = producer_factory(settings.producer_config())
    except Exception as exc:  # noqa: BLE001
        raise PublishError(f"cannot reach Kafka at {where} within {settings.connect_timeout_s:g} s: {exc}") from exc
    try:
        partitions = producer.partitions_for(settings.topic)
    except Exception as exc:  # noqa: BLE001
        raise PublishError(f"topic {settings.topic!r} not found on {where}: {_describe(exc)}") from exc
    finally:
        producer.close(timeout=1.0)
    if not partitions:
        raise PublishError(f"topic {settings.topic!r} not found on {where}")
    return len(partitions)
