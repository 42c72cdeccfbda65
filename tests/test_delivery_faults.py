"""Acceptance: events are delivered without loss through a broker outage, a daemon killed with ``kill -9``, a
consumer killed before it committed, and a webhook that fails for a while.

Everything real: the Apache Kafka broker of ``tests/fixtures/kafka.py``, the daemon as a subprocess (``python -m
edge.cli run``) replaying ``samples/test_*.mkv`` at real-time pace through the default model package, consumers
(``alerts.Subscriber``, ``alerts consume``) and a local HTTP server. Every message read back from Kafka is
validated against the committed JSON Schema.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.alert_messages import lifecycle
from support.webhook_server import WebhookServer

from alerts.cli import main as alerts_main
from alerts.consumer import Subscriber
from alerts.outbox import Outbox, OutboxRow
from alerts.publisher import KafkaSettings
from alerts.schema import EventMessage

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "pipeline" / "models" / "default"
SCHEMA = json.loads((ROOT / "alerts" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())

needs_model = pytest.mark.skipif(
    not (MODEL / "model.json").is_file(), reason="the default model package is not trained yet"
)


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def valid(raw: bytes) -> EventMessage:
    VALIDATOR.validate(json.loads(raw))
    return EventMessage.from_json(raw)


def read_topic(bootstrap: str, topic: str) -> list[tuple[int, EventMessage]]:
    """Every record of ``topic`` as (partition, message), each partition in offset order; schema-checked."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, bootstrap_timeout_ms=10000)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: dict[int, list[EventMessage]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "topic not read within 30 s"
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    headers = dict(r.headers)
                    msg = valid(r.value)
                    assert r.key == msg.camera_id.encode() and headers["type"] == msg.type.encode()
                    out[tp.partition].append(msg)
        return [(p, m) for p, msgs in out.items() for m in msgs]
    finally:
        consumer.close()


def subscribe_all(bootstrap: str, topic: str, group: str) -> tuple[list[EventMessage], Any]:
    settings = KafkaSettings(bootstrap=bootstrap, topic=topic, connect_timeout_s=5.0)
    with Subscriber(
        settings, group_id=group, from_beginning=True, session_timeout_s=6.0, heartbeat_interval_s=1.0
    ) as sub:
        msgs = list(sub.messages(idle_timeout_s=2.0, assignment_timeout_s=30.0))
        return msgs, sub.stats()


def daemon_config(tmp: Path, bootstrap: str, topic: str, clips: dict[str, str], **events: Any) -> Path:
    cfg = {
        "site": "faults",
        "model": str(MODEL),
        "events": {"min_duration_s": 0.4, "hold_s": 2.0, "update_interval_s": 2.0, **events},
        "outbox": {"path": str(tmp / "outbox.db")},
        "kafka": {
            "bootstrap": [bootstrap],
            "topic": topic,
            "connect_timeout_s": 2.0,
            "request_timeout_s": 2.0,
            "delivery_timeout_s": 4.0,
            "max_block_s": 2.0,
            "retry_backoff_s": 0.2,
            "retry_backoff_max_s": 1.0,
        },
        "cameras": [
            {"id": cam, "url": str(ROOT / "samples" / clip), "replay": "realtime"} for cam, clip in clips.items()
        ],
    }
    path = tmp / "edge.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def start_daemon(cfg: Path, tmp: Path, *args: str) -> subprocess.Popen[bytes]:
    log = open(tmp / f"daemon-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(cfg), "-q", "--json", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
    )


def finish(proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, f"daemon exited {proc.returncode}"
    summary: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return summary


def outbox_rows(path: Path) -> list[OutboxRow]:
    with Outbox(path, readonly=True) as box:
        return box.read(limit=100_000)


def keys(msgs: list[Any]) -> list[tuple[str, int]]:
    return [(m.event_id, m.seq) for m in msgs]


@pytest.mark.slow
@needs_model
@pytest.mark.timeout(150)
def test_broker_stopped_30s_during_a_run_every_event_arrives_in_order_once(
    kafka_broker: Any, kafka_topic: str, tmp_path: Path
) -> None:
    clips = {"plaza-1": "test_1.mkv", "plaza-2": "test_2.mkv"}
    cfg = daemon_config(tmp_path, kafka_broker.bootstrap, kafka_topic, clips)
    proc = start_daemon(cfg, tmp_path)
    try:
        wait_until(lambda: (tmp_path / "outbox.db").exists(), 30, "the outbox")
        # the publisher delivered something: Kafka works before the outage
        wait_until(lambda: any(not r.pending for r in outbox_rows(tmp_path / "outbox.db")), 40, "a first ack")
        outage_from = time.time()
        kafka_broker.stop()
        time.sleep(30)
        assert proc.poll() is None, "the daemon kept running through the outage"
        outage_to = time.time()
    finally:
        kafka_broker.start()
    summary = finish(proc, 90)
    assert summary["outbox_pending"] == 0

    rows = outbox_rows(tmp_path / "outbox.db")
    assert all(not r.pending for r in rows)
    during = [r for r in rows if outage_from <= r.created_at <= outage_to]
    assert len({r.event_id for r in during}) >= 2, "events were decided while the broker was down"

    on_topic = read_topic(kafka_broker.bootstrap, kafka_topic)  # raw, duplicates included, schema-checked
    assert set(keys([m for _, m in on_topic])) == set(keys(rows))
    got, stats = subscribe_all(kafka_broker.bootstrap, kafka_topic, "g-outage")
    assert len(keys(got)) == len(set(keys(got))) == len(rows), "each (event_id, seq) exactly once"
    for cam in clips:  # in order per camera: the order the daemon decided them in
        assert keys([m for m in got if m.camera_id == cam]) == keys([r for r in rows if r.camera_id == cam])
    assert stats.invalid == 0


@pytest.mark.slow
@needs_model
@pytest.mark.timeout(150)
def test_daemon_killed_with_an_open_event_and_unsent_rows_loses_nothing(
    kafka_broker: Any, kafka_topic: str, tmp_path: Path
) -> None:
    cfg = daemon_config(tmp_path, kafka_broker.bootstrap, kafka_topic, {"plaza-1": "test_1.mkv"})
    db = tmp_path / "outbox.db"
    kafka_broker.stop()
    try:
        proc = start_daemon(cfg, tmp_path)

        def an_open_event() -> list[OutboxRow]:
            if not db.exists():
                return []
            with Outbox(db, readonly=True) as box:
                return box.unfinished()

        wait_until(an_open_event, 60, "an event to open")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        before = outbox_rows(db)
        interrupted = an_open_event()
        assert interrupted and all(r.pending for r in before), "killed with an open event and nothing sent"
    finally:
        kafka_broker.start()

    summary = finish(start_daemon(cfg, tmp_path, "--duration", "3"), 60)
    assert summary["outbox_pending"] == 0
    assert summary["events_recovered"] == len(interrupted)

    got, _ = subscribe_all(kafka_broker.bootstrap, kafka_topic, "g-kill")
    assert keys(got)[: len(before)] == keys(before), "every row that reached the outbox arrived, in order"
    for last in interrupted:
        [end] = [m for m in got if m.event_id == last.event_id and m.type == "end"]
        assert (end.seq, end.reason) == (last.seq + 1, "restart")
        assert keys(got).index((end.event_id, end.seq)) > keys(got).index((last.event_id, last.seq))
    ended = {m.event_id for m in got if m.type == "end"}
    assert {m.event_id for m in got} == ended, "every event has its end"
    read_topic(kafka_broker.bootstrap, kafka_topic)  # schema check of the raw records


def produce(bootstrap: str, topic: str, msgs: list[EventMessage]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, bootstrap_timeout_ms=10000)
    try:
        for m in msgs:
            producer.send(topic, value=m.to_json(), key=m.camera_id.encode()).get(timeout=10)
    finally:
        producer.close(timeout=5)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_consumer_killed_between_handling_and_committing_gets_them_again_once(
    kafka_broker: Any, kafka_topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = lifecycle("ev-a", "cam-1") + lifecycle("ev-b", "cam-1")[:2]  # 5
    second = lifecycle("ev-b", "cam-1")[2:] + lifecycle("ev-c", "cam-1")  # 4
    out = tmp_path / "events.jsonl"
    produce(kafka_broker.bootstrap, kafka_topic, first)
    dying = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "support" / "consume_then_die.py"),
            kafka_broker.bootstrap,
            kafka_topic,
            "g-die",
            str(out),
            str(len(first) + 2),
        ],
        cwd=ROOT,
    )
    try:
        # the first batch was handled (and is committed before the next poll); the second comes in later polls
        wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == len(first), 60, "5 handled")
        produce(kafka_broker.bootstrap, kafka_topic, second)
        assert dying.wait(60) == -signal.SIGKILL
    finally:
        if dying.poll() is None:
            dying.kill()
    assert len(out.read_text().splitlines()) == len(first) + 2  # killed after handling 2 of the second batch

    code = alerts_main(
        [
            "consume",
            "--bootstrap",
            kafka_broker.bootstrap,
            "--topic",
            kafka_topic,
            "--group",
            "g-die",
            "--sink",
            f"jsonl:{out}",
            "--idle-timeout",
            "2",
        ]
    )
    assert code == 0
    lines = out.read_text().splitlines()
    assert keys([valid(line.encode()) for line in lines]) == keys(first + second)
    # offsets up to the first batch at least were committed; the message it died on was not: it came again
    summary = capsys.readouterr().err
    assert re.search(r"2 delivered to jsonl:\S+, [12] duplicate\(s\) dropped", summary), summary


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_webhook_failing_then_recovering_gets_every_event_once(
    kafka_broker: Any, kafka_topic: str, tmp_path: Path
) -> None:
    msgs = lifecycle("ev-a", "cam-1") + lifecycle("ev-b", "cam-2", updates=2)
    produce(kafka_broker.bootstrap, kafka_topic, msgs)
    with WebhookServer(fail_first=4, fail_status=503) as server:
        code = alerts_main(
            [
                "consume",
                "--bootstrap",
                kafka_broker.bootstrap,
                "--topic",
                kafka_topic,
                "--group",
                "g-hook",
                "--from-beginning",
                "--sink",
                f"webhook:{server.url}",
                "--dead-letter",
                str(tmp_path / "dead.jsonl"),
                "--webhook-backoff",
                "0.05",
                "--idle-timeout",
                "2",
            ]
        )
    assert code == 0
    assert [r.status for r in server.requests][:4] == [503] * 4
    accepted = [valid(json.dumps(body).encode()) for body in server.accepted]
    assert sorted(keys(accepted)) == sorted(keys(msgs)), "every event delivered once"
    for cam in ("cam-1", "cam-2"):
        assert keys([m for m in accepted if m.camera_id == cam]) == keys([m for m in msgs if m.camera_id == cam])
    assert not (tmp_path / "dead.jsonl").read_text()
