"""The Kafka publisher: delivers outbox rows in order, marks them only once acknowledged, survives outages.

Fast tests swap the producer for an in-memory fake that obeys kafka-python's interface (send -> future,
close); the ``slow`` ones run against a real Apache Kafka broker (tests/fixtures/kafka.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.alert_messages import lifecycle, message

from alerts.errors import PublishError
from alerts.outbox import Outbox, OutboxRow
from alerts.publisher import KafkaPublisher, KafkaSettings, PublisherState, check_kafka
from alerts.schema import SCHEMA_VERSION, EventMessage

FAST = {
    "retry_backoff_s": 0.01,
    "retry_backoff_max_s": 0.05,
    "delivery_timeout_s": 2.0,
    "request_timeout_s": 1.0,
}


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


# -- settings ----------------------------------------------------------------------------------------------


def test_settings_accept_a_comma_string_and_build_an_idempotent_producer_config() -> None:
    s = KafkaSettings(bootstrap="k1:9092, k2:9093", topic="lepton.events")
    assert s.bootstrap == ["k1:9092", "k2:9093"]
    cfg = s.producer_config()
    assert cfg["enable_idempotence"] is True and cfg["acks"] == "all"
    assert cfg["bootstrap_servers"] == ["k1:9092", "k2:9093"]
    assert cfg["allow_auto_create_topics"] is False
    for key in ("request_timeout_ms", "delivery_timeout_ms", "max_block_ms", "bootstrap_timeout_ms"):
        assert 0 < cfg[key] < 10 * 60 * 1000, key
    assert "retries" not in cfg  # idempotence keeps kafka-python's infinite retries, bounded by delivery timeout


def test_settings_build_a_config_kafka_python_accepts() -> None:
    from kafka import KafkaProducer

    cfg = KafkaSettings(bootstrap="127.0.0.1:9092", topic="t").producer_config()
    unknown = set(cfg) - set(KafkaProducer.DEFAULT_CONFIG)
    assert not unknown


def test_sasl_scram_over_tls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = KafkaSettings(
        bootstrap=["k:9093"],
        topic="t",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="edge",
        password="s3cret",
        ssl_cafile=ca,
    )
    cfg = s.producer_config()
    assert cfg["sasl_mechanism"] == "SCRAM-SHA-512"
    assert cfg["sasl_plain_username"] == "edge" and cfg["sasl_plain_password"] == "s3cret"
    assert cfg["ssl_cafile"] == str(ca)
    assert "s3cret" not in repr(s) and "s3cret" not in s.model_dump_json()


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"bootstrap": "nohostport"}, "host:port"),
        ({"bootstrap": []}, "at least 1"),
        ({"topic": "bad topic"}, "pattern"),
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism, username, password"),
        ({"username": "u"}, "only apply with security_protocol SASL"),
        (
            {"ssl_check_hostname": False, "ssl_cafile": "/nonexistent/ca.pem", "security_protocol": "SSL"},
            "ssl_cafile",
        ),
        ({"delivery_timeout_s": 1.0, "request_timeout_s": 5.0}, "delivery_timeout_s"),
        ({"acks": 1}, "Extra inputs"),
    ],
)
def test_invalid_settings_fail_with_the_field(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        KafkaSettings.model_validate({"bootstrap": "k:9092", "topic": "t", **fields})


# -- an in-memory producer that obeys kafka-python's interface ---------------------------------------------


class FakeFuture:
    def __init__(self) -> None:
        self._done = threading.Event()
        self._error: Exception | None = None

    def resolve(self, error: Exception | None = None) -> None:
        self._error = error
        self._done.set()

    def get(self, timeout: float | None = None) -> object:
        if not self._done.wait(timeout):
            raise TimeoutError(f"Timeout after waiting for {timeout} secs.")
        if self._error is not None:
            raise self._error
        return object()


class FakeCluster:
    """What the fake producers talk to: the log of sent records, and a switch for outages."""

    def __init__(self) -> None:
        self.up = True
        self.records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.producers_created = 0
        self.connect_failures = 0
        self.lock = threading.Lock()

    def factory(self, config: dict[str, Any]) -> FakeProducer:
        assert config["enable_idempotence"] is True and config["acks"] == "all"
        if not self.up:
            self.connect_failures += 1
            raise ConnectionError("Unable to bootstrap from 127.0.0.1:9")
        self.producers_created += 1
        return FakeProducer(self)


class FakeProducer:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.closed = False

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None) -> FakeFuture:
        assert not self.closed
        future = FakeFuture()
        with self.cluster.lock:
            if self.cluster.up:
                self.cluster.records.append((topic, key or b"", value or b"", list(headers or [])))
                future.resolve()
            else:
                future.resolve(TimeoutError("Expiring 1 record(s): delivery timeout"))
        return future

    def partitions_for(self, topic: str) -> set[int] | None:
        return {0, 1, 2} if topic == "events" else None

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def settings(**over: Any) -> KafkaSettings:
    return KafkaSettings.model_validate({"bootstrap": "127.0.0.1:9", "topic": "events", **FAST, **over})


def test_delivers_rows_in_id_order_with_key_headers_and_marks_them(outbox: Outbox) -> None:
    cluster = FakeCluster()
    acks: list[tuple[OutboxRow, int]] = []
    msgs = lifecycle("ev-1", "cam-1", updates=2) + lifecycle("ev-2", "cam-2")
    ids = [outbox.put(m, capture_monotonic_ns=time.monotonic_ns()) for m in msgs]
    pub = KafkaPublisher(outbox, settings(), producer_factory=cluster.factory, on_ack=lambda r, t: acks.append((r, t)))
    pub.start()
    try:
        wait_until(lambda: outbox.stats().pending == 0, what="delivery")
        assert [EventMessage.from_json(v) for _, _, v, _ in cluster.records] == msgs
        assert [k for _, k, _, _ in cluster.records] == [m.camera_id.encode() for m in msgs]
        assert cluster.records[-1][3] == [("schema_version", SCHEMA_VERSION.encode()), ("type", b"end")]
        wait_until(lambda: len(acks) == len(ids), what="ack hooks")
        assert [r.id for r, _ in acks] == ids
        assert all(r.capture_monotonic_ns is not None and ns >= r.capture_monotonic_ns for r, ns in acks)
        stats = pub.stats()
        assert (stats.sent, stats.pending, stats.failed_attempts) == (len(ids), 0, 0)
        assert stats.state is PublisherState.CONNECTED and stats.last_ack_latency_s is not None
        # A new put is picked up without polling delay worth mentioning.
        outbox.put(message("ev-3"))
        wait_until(lambda: outbox.stats().pending == 0, what="the next put")
    finally:
        assert pub.stop(drain_timeout_s=1.0) == 0
    assert pub.state is PublisherState.STOPPED


def test_broker_down_at_start_is_retried_with_backoff_not_fatal(outbox: Outbox) -> None:
    cluster = FakeCluster()
    cluster.up = False
    outbox.put(message())
    pub = KafkaPublisher(outbox, settings(), producer_factory=cluster.factory)
    pub.start()
    try:
        wait_until(lambda: cluster.connect_failures >= 3, what="connect retries")
        stats = pub.stats()
        assert stats.pending == 1 and stats.sent == 0
        assert stats.failed_attempts >= 3 and "Unable to bootstrap" in (stats.last_error or "")
        cluster.up = True
        wait_until(lambda: outbox.stats().pending == 0, what="delivery after the broker came up")
        assert pub.stats().last_error is None
    finally:
        pub.stop(1.0)


def test_failed_sends_keep_rows_pending_and_are_retried(outbox: Outbox) -> None:
    cluster = FakeCluster()
    pub = KafkaPublisher(outbox, settings(), producer_factory=cluster.factory)
    pub.start()
    try:
        outbox.put(message("ev-1", 0))
        wait_until(lambda: outbox.stats().pending == 0)
        cluster.up = False
        for seq in range(1, 4):
            outbox.put(message("ev-1", seq))  # the daemon keeps writing while Kafka is down
        wait_until(lambda: pub.stats().failed_attempts >= 3, what="failed attempts")
        assert outbox.stats().pending == 3
        assert pub.state is PublisherState.BACKOFF
        cluster.up = True
        wait_until(lambda: outbox.stats().pending == 0, what="drain after the outage")
        delivered = [EventMessage.from_json(v).seq for _, _, v, _ in cluster.records]
        assert delivered == [0, 1, 2, 3]
        assert cluster.producers_created == 1  # the producer reconnects by itself; it is kept
    finally:
        pub.stop(1.0)


def test_stop_gives_up_after_the_drain_timeout_and_keeps_rows(outbox: Outbox) -> None:
    cluster = FakeCluster()
    cluster.up = False
    pub = KafkaPublisher(outbox, settings(), producer_factory=cluster.factory)
    pub.start()
    outbox.put(message())
    t0 = time.monotonic()
    assert pub.stop(drain_timeout_s=0.3) == 1
    assert time.monotonic() - t0 < 3.0
    assert pub.state is PublisherState.STOPPED
    assert outbox.stats().pending == 1


def test_stop_drains_what_is_pending(outbox: Outbox) -> None:
    cluster = FakeCluster()
    for i in range(50):
        outbox.put(message(f"ev-{i}"))
    pub = KafkaPublisher(outbox, settings(max_batch=7), producer_factory=cluster.factory)
    pub.start()
    assert pub.stop(drain_timeout_s=10.0) == 0
    assert len(cluster.records) == 50


def test_a_failing_ack_hook_is_counted_and_does_not_stop_delivery(outbox: Outbox) -> None:
    cluster = FakeCluster()

    def hook(row: OutboxRow, ack_ns: int) -> None:
        raise RuntimeError("metrics broke")

    pub = KafkaPublisher(outbox, settings(), producer_factory=cluster.factory, on_ack=hook)
    pub.start()
    try:
        outbox.put(message("ev-1", 0))
        outbox.put(message("ev-1", 1))
        wait_until(lambda: outbox.stats().pending == 0)
        wait_until(lambda: pub.stats().hook_errors == 2)
    finally:
        pub.stop(1.0)


def test_publisher_stops_when_its_outbox_is_closed(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    pub = KafkaPublisher(box, settings(), producer_factory=FakeCluster().factory)
    pub.start()
    box.close()
    pub.join(10)
    assert pub.state is PublisherState.STOPPED
    assert pub.stop(0.1) == -1  # nothing to count any more


def test_check_kafka_reports_partitions_or_a_clear_error() -> None:
    cluster = FakeCluster()
    assert check_kafka(settings(), producer_factory=cluster.factory) == 3
    with pytest.raises(PublishError, match="topic 'missing' not found"):
        check_kafka(settings(topic="missing"), producer_factory=cluster.factory)
    cluster.up = False
    with pytest.raises(PublishError, match="cannot reach Kafka at 127.0.0.1:9") as info:
        check_kafka(settings(), producer_factory=cluster.factory)
    assert isinstance(info.value, ConnectionError)


# -- against a real broker ---------------------------------------------------------------------------------


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topic`` from the beginning, waiting until at least ``expected`` arrived."""
    from fixtures.kafka import TEST_CONSUMER_TIMEOUTS
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"check-{time.monotonic_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **TEST_CONSUMER_TIMEOUTS,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # anything extra (duplicates) that arrived with them
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    finally:
        consumer.close(autocommit=False)
    return records


def per_camera(records: list[Any]) -> dict[str, list[tuple[str, int]]]:
    """(event_id, seq) in log order per camera, duplicates dropped (a consumer's view)."""
    seen: set[tuple[str, int]] = set()
    order: dict[str, list[tuple[str, int]]] = {}
    for rec in records:
        msg = EventMessage.from_json(rec.value)
        key = (msg.event_id, msg.seq)
        if key in seen:
            continue
        seen.add(key)
        order.setdefault(rec.key.decode(), []).append(key)
    return order


def expected_per_camera(msgs: list[EventMessage]) -> dict[str, list[tuple[str, int]]]:
    order: dict[str, list[tuple[str, int]]] = {}
    for m in msgs:
        order.setdefault(m.camera_id, []).append((m.event_id, m.seq))
    return order


def real_settings(bootstrap: str, topic: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=bootstrap,
        topic=topic,
        connect_timeout_s=3.0,
        request_timeout_s=3.0,
        delivery_timeout_s=3.0,  # shorter than the outages below: exercises expiry and re-send
        max_block_s=3.0,
        retry_backoff_s=0.2,
        retry_backoff_max_s=1.0,
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_real_broker_gets_every_event_with_key_headers_and_per_camera_order(
    kafka_broker: Any, kafka_topic: str, tmp_path: Path
) -> None:
    msgs = [m for i in range(4) for cam in ("cam-a", "cam-b", "cam-c") for m in lifecycle(f"{cam}-ev{i}", cam)]
    with Outbox(tmp_path / "outbox.db") as outbox:
        acked: list[int] = []
        pub = KafkaPublisher(
            outbox, real_settings(kafka_broker.bootstrap, kafka_topic), on_ack=lambda r, _: acked.append(r.id)
        )
        pub.start()
        try:
            ids = [outbox.put(m) for m in msgs]
            wait_until(lambda: outbox.stats().pending == 0, 60, "delivery to Kafka")
            assert sorted(acked) == ids
            assert pub.stats().sent == len(msgs)
        finally:
            assert pub.stop(drain_timeout_s=5.0) == 0

    records = consume_all(kafka_broker.bootstrap, kafka_topic, len(msgs))
    assert len(records) == len(msgs)  # idempotent producer, no outage: exactly once
    assert per_camera(records) == expected_per_camera(msgs)
    for rec in records:
        msg = EventMessage.from_json(rec.value)
        assert rec.key == msg.camera_id.encode()
        assert dict(rec.headers) == {"schema_version": SCHEMA_VERSION.encode(), "type": msg.type.encode()}
    # key = camera: each camera's messages are in one partition
    partitions: dict[bytes, set[int]] = {}
    for rec in records:
        partitions.setdefault(rec.key, set()).add(rec.partition)
    assert all(len(p) == 1 for p in partitions.values())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_real_broker_outage_keeps_rows_pending_then_everything_arrives(
    kafka_broker: Any, kafka_topic: str, tmp_path: Path
) -> None:
    before = lifecycle("ev-before", "cam-a")
    during = lifecycle("ev-during-1", "cam-a", updates=3) + lifecycle("ev-during-2", "cam-b")
    with Outbox(tmp_path / "outbox.db") as outbox:
        pub = KafkaPublisher(outbox, real_settings(kafka_broker.bootstrap, kafka_topic))
        pub.start()
        try:
            for m in before:
                outbox.put(m)
            wait_until(lambda: outbox.stats().pending == 0, 60, "delivery before the outage")

            kafka_broker.stop()
            try:
                t0 = time.monotonic()
                for m in during:
                    outbox.put(m)  # the daemon side keeps working
                assert time.monotonic() - t0 < 2.0
                time.sleep(5.0)  # a short outage, longer than the 3 s delivery timeout
                assert outbox.stats().pending == len(during)
                assert pub.stats().failed_attempts >= 1
            finally:
                kafka_broker.start()
            wait_until(lambda: outbox.stats().pending == 0, 90, "drain after the broker came back")
        finally:
            assert pub.stop(drain_timeout_s=5.0) == 0

    records = consume_all(kafka_broker.bootstrap, kafka_topic, len(before) + len(during))
    assert per_camera(records) == expected_per_camera(before + during)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_real_broker_down_when_the_publisher_starts(kafka_broker: Any, kafka_topic: str, tmp_path: Path) -> None:
    msgs = lifecycle("ev-1", "cam-a")
    with Outbox(tmp_path / "outbox.db") as outbox:
        kafka_broker.stop()
        try:
            pub = KafkaPublisher(outbox, real_settings(kafka_broker.bootstrap, kafka_topic))
            pub.start()  # must not raise: the producer is created lazily and retried
            for m in msgs:
                outbox.put(m)
            wait_until(lambda: pub.stats().failed_attempts >= 1, 30, "a failed connect")
            assert pub.state in (PublisherState.BACKOFF, PublisherState.CONNECTING)
            assert outbox.stats().pending == len(msgs)
        finally:
            kafka_broker.start()
        try:
            wait_until(lambda: outbox.stats().pending == 0, 90, "delivery once the broker is up")
        finally:
            pub.stop(drain_timeout_s=5.0)
    records = consume_all(kafka_broker.bootstrap, kafka_topic, len(msgs))
    assert per_camera(records) == expected_per_camera(msgs)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_check_kafka_against_the_real_broker(kafka_broker: Any, kafka_topic: str) -> None:
    assert check_kafka(real_settings(kafka_broker.bootstrap, kafka_topic)) == 3
    with pytest.raises(PublishError, match="not found"):
        check_kafka(real_settings(kafka_broker.bootstrap, "no-such-topic"))


def test_ack_latency_hook_reports_percentiles_per_message_type(outbox: Outbox) -> None:
    from alerts.latency import AckLatency

    latency = AckLatency()
    assert latency.stats() is None
    cluster = FakeCluster()
    now = time.monotonic_ns()
    for i, m in enumerate(lifecycle("ev-1", "cam-1", updates=1)):
        outbox.put(m, capture_monotonic_ns=now - (i + 1) * 100_000_000)  # 100, 200, 300 ms before
    outbox.put(message("ev-2"))  # no capture time: not counted
    pub = KafkaPublisher(outbox, settings(), producer_factory=cluster.factory, on_ack=latency)
    pub.start()
    try:
        wait_until(lambda: pub.stats().sent == 4, what="delivery")
    finally:
        pub.stop()
    new = latency.stats("new")
    assert new is not None and new.count == 1 and 0.1 <= new.p50_s == new.p95_s < 5
    every = latency.stats()
    assert every is not None and every.count == 3
    assert every.p50_s < every.p95_s == every.max_s and every.max_s >= 0.3


def test_tls_and_sasl_settings_are_options_kafka_python_knows(tmp_path: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
    s = KafkaSettings(
        bootstrap="k:9093",
        topic="t",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        username="edge",
        password="pw",
        ssl_cafile=tmp_path / "ca.pem",
        ssl_certfile=tmp_path / "client.pem",
        ssl_keyfile=tmp_path / "client.key",
        ssl_password="kpw",
        ssl_check_hostname=False,
    )
    producer, client = s.producer_config(), s.client_config()
    assert not set(producer) - set(KafkaProducer.DEFAULT_CONFIG)
    assert not set(client) - set(KafkaConsumer.DEFAULT_CONFIG)
    # kafka-python takes SCRAM credentials in its sasl_plain_* options too
    assert (client["sasl_plain_username"], client["sasl_plain_password"]) == ("edge", "pw")
    assert (client["ssl_certfile"], client["ssl_keyfile"], client["ssl_password"]) == (
        str(tmp_path / "client.pem"),
        str(tmp_path / "client.key"),
        "kpw",
    )
    assert client["ssl_check_hostname"] is False and client["security_protocol"] == "SASL_SSL"
