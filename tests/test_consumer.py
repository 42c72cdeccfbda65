"""Reading events back: the Kafka ``Subscriber`` (at least once, de-duplicated) and the outbox reader."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.alert_messages import lifecycle, message

from alerts.consumer import DedupWindow, Subscriber, read_outbox
from alerts.errors import SubscribeError
from alerts.outbox import Outbox
from alerts.publisher import KafkaSettings
from alerts.schema import EventMessage


def test_dedup_window_forgets_the_oldest_pairs() -> None:
    window = DedupWindow(capacity=2)
    assert not window.seen(("a", 0))
    assert not window.seen(("a", 1))
    assert window.seen(("a", 0))  # refreshed: now the newest
    assert not window.seen(("b", 0))  # evicts ("a", 1)
    assert window.seen(("a", 0))
    assert not window.seen(("a", 1))


def test_read_outbox_reads_everything_then_follows_new_rows(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as writer, Outbox(path, readonly=True) as reader:
        writer.put(message("ev-1", 0))
        writer.put(message("ev-1", 1))
        assert [r.seq for r in read_outbox(reader)] == [0, 1]

        stop = threading.Event()
        got: list[int] = []

        def follow() -> None:
            for row in read_outbox(reader, follow=True, poll_interval_s=0.02, stop=stop):
                got.append(row.seq)

        t = threading.Thread(target=follow)
        t.start()
        writer.put(message("ev-1", 2))
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        t.join(5)
        assert got == [0, 1, 2]
        assert [r.seq for r in read_outbox(reader, after_id=2)] == [2]


# -- against a real broker -----------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"cam-1") -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, bootstrap_timeout_ms=10000)
    try:
        for value in values:
            producer.send(topic, value=value, key=key).get(timeout=10)
    finally:
        producer.close(timeout=5)


def subscriber(bootstrap: str, topic: str, group: str, **kw: Any) -> Subscriber:
    settings = KafkaSettings(bootstrap=bootstrap, topic=topic, connect_timeout_s=5.0)
    return Subscriber(settings, group_id=group, session_timeout_s=6.0, heartbeat_interval_s=1.0, **kw)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_subscriber_drops_duplicates_and_invalid_messages(kafka_broker: Any, kafka_topic: str) -> None:
    msgs = lifecycle("ev-1", "cam-1", updates=2)
    values = [m.to_json() for m in msgs]
    produce(
        kafka_broker.bootstrap,
        kafka_topic,
        [values[0], values[1], values[1], b"garbage", values[2], values[0], values[3]],
    )
    with subscriber(kafka_broker.bootstrap, kafka_topic, "g-dedup", from_beginning=True) as sub:
        got = list(sub.messages(idle_timeout_s=2.0, assignment_timeout_s=30.0))
        stats = sub.stats()
    assert got == msgs
    assert (stats.delivered, stats.duplicates, stats.invalid) == (4, 2, 1)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_subscriber_commits_only_what_the_handler_finished(kafka_broker: Any, kafka_topic: str) -> None:
    msgs = [message(f"ev-{i}") for i in range(6)]
    produce(kafka_broker.bootstrap, kafka_topic, [m.to_json() for m in msgs])

    first: list[EventMessage] = []
    with subscriber(kafka_broker.bootstrap, kafka_topic, "g-commit", from_beginning=True) as sub:
        for msg in sub.messages(assignment_timeout_s=30.0):
            if len(first) == 3:
                break  # the 4th message was received but its handler never finished
            first.append(msg)
    assert first == msgs[:3]

    # Same group, no rewind: resumes at the first unfinished message (at least once).
    with subscriber(kafka_broker.bootstrap, kafka_topic, "g-commit") as sub:
        rest = list(sub.messages(idle_timeout_s=2.0, assignment_timeout_s=30.0))
    assert rest == msgs[3:]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["stop", "break"])
def test_leaving_inside_a_batch_leaves_the_rest_to_read_again(kafka_broker: Any, kafka_topic: str, how: str) -> None:
    msgs = [message(f"ev-{i}") for i in range(6)]
    produce(kafka_broker.bootstrap, kafka_topic, [m.to_json() for m in msgs])  # one key: one partition, one batch
    stop = threading.Event()
    first: list[EventMessage] = []
    with subscriber(kafka_broker.bootstrap, kafka_topic, f"g-{how}", from_beginning=True) as sub:
        for msg in sub.messages(assignment_timeout_s=30.0, stop=stop):
            first.append(msg)
            if len(first) == 2:
                if how == "break":
                    break  # the caller's own way out: the 2nd message counts as not handled
                stop.set()  # SIGTERM while a slow sink works through the batch: takes effect at the next message
        handled = 1 if how == "break" else 2
        assert first == msgs[:2]
        # the same subscriber reads on from the first message not handled: nothing of the batch is skipped
        assert list(sub.messages(idle_timeout_s=2.0)) == msgs[handled:]
    # and committed all it handled
    with subscriber(kafka_broker.bootstrap, kafka_topic, f"g-{how}") as sub:
        assert list(sub.messages(idle_timeout_s=2.0, assignment_timeout_s=30.0)) == []


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_subscriber_errors_are_clear(kafka_broker: Any) -> None:
    with pytest.raises(SubscribeError, match="does not exist"):
        subscriber(kafka_broker.bootstrap, "no-such-topic", "g-x")
    t0 = time.monotonic()
    with pytest.raises(SubscribeError, match="cannot reach Kafka at 127.0.0.1:9 within 2 s"):
        Subscriber(KafkaSettings(bootstrap="127.0.0.1:9", topic="t", connect_timeout_s=2.0), group_id="g")
    assert time.monotonic() - t0 < 10


def test_start_at_choices_are_checked() -> None:
    from datetime import datetime, timezone

    from alerts.consumer import StartAt

    assert not StartAt().rewinds
    assert StartAt(offset={1: 5}).offset_for(1) == 5 and StartAt(offset={1: 5}).offset_for(0) is None
    assert StartAt(offset=7).offset_for(2) == 7
    with pytest.raises(ValueError, match="one of"):
        StartAt(beginning=True, offset=3)
    with pytest.raises(ValueError, match=">= 0"):
        StartAt(offset=-1)
    with pytest.raises(ValueError, match="time zone"):
        StartAt(time=datetime(2026, 1, 1))  # noqa: DTZ001
    assert StartAt(time=datetime(2026, 1, 1, tzinfo=timezone.utc)).rewinds


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_subscriber_replays_from_an_offset_or_a_time(kafka_broker: Any, kafka_topic: str) -> None:
    from datetime import datetime, timezone

    from alerts.consumer import StartAt

    old = [message(f"old-{i}") for i in range(3)]
    new = [message(f"new-{i}") for i in range(3)]
    produce(kafka_broker.bootstrap, kafka_topic, [m.to_json() for m in old])  # one key: one partition
    time.sleep(0.05)
    between = datetime.now(timezone.utc)
    time.sleep(0.05)
    produce(kafka_broker.bootstrap, kafka_topic, [m.to_json() for m in new])

    with subscriber(kafka_broker.bootstrap, kafka_topic, "g-time", start=StartAt(time=between)) as sub:
        assert list(sub.messages(idle_timeout_s=2.0, assignment_timeout_s=30.0)) == new
    with subscriber(kafka_broker.bootstrap, kafka_topic, "g-offset", start=StartAt(offset=2)) as sub:
        assert list(sub.messages(idle_timeout_s=2.0, assignment_timeout_s=30.0)) == old[2:] + new
    later = datetime.now(timezone.utc)
    with subscriber(kafka_broker.bootstrap, kafka_topic, "g-late", start=StartAt(time=later)) as sub:
        assert list(sub.messages(idle_timeout_s=2.0, assignment_timeout_s=30.0)) == []
