"""The Subscriber against what a topic can hold and what a sink can cost: poison messages go to the dead letter
with their reason and bytes, a newer schema is a loud decision, and a slow sink never makes a polled batch outlive
``max_poll_interval``. An in-memory consumer obeys ``ConsumerLike`` and the one group rule that matters here: a
member that does not poll within ``max_poll_interval_ms`` is dropped, and its commits fail."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.alert_messages import lifecycle, message

from alerts.consumer import Subscriber
from alerts.errors import FutureSchemaError
from alerts.publisher import KafkaSettings
from alerts.sinks import DeadLetterFile

SETTINGS = KafkaSettings(bootstrap="k:9092", topic="events")


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass(frozen=True)
class Record:
    offset: int
    value: bytes | None
    key: bytes | None = b"cam-1"
    timestamp: int = 1_700_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeConsumer:
    """One partition of ``values``; ``poll`` hands out up to ``max_poll_records`` from the position."""

    def __init__(self, config: dict[str, Any], values: list[bytes | None], clock: FakeClock) -> None:
        self.config = config
        self.tp = TP("events", 0)
        self.log = [Record(i, v) for i, v in enumerate(values)]
        self.position = 0
        self.committed = 0
        self.clock = clock
        self.polled_at: float | None = None
        self.poll_gaps: list[float] = []
        self.evicted = False

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        if listener is not None:
            listener.on_partitions_assigned({self.tp})

    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        if self.polled_at is not None:
            gap = self.clock() - self.polled_at
            self.poll_gaps.append(gap)
            if gap > self.config["max_poll_interval_ms"] / 1000:
                self.evicted = True
        self.polled_at = self.clock()
        batch = self.log[self.position : self.position + self.config["max_poll_records"]]
        self.position += len(batch)
        return {self.tp: batch} if batch else {}

    def assignment(self) -> set[Any]:
        return {self.tp}

    def seek_to_beginning(self, *partitions: Any) -> None:
        self.position = 0

    def seek_to_end(self, *partitions: Any) -> None:
        self.position = len(self.log)

    def seek(self, partition: Any, offset: int) -> None:
        self.position = offset

    def pause(self, *partitions: Any) -> None: ...
    def resume(self, *partitions: Any) -> None: ...

    def offsets_for_times(self, timestamps: dict[Any, int], timeout_ms: int | None = None) -> dict[Any, Any]:
        return {}

    def commit(self, offsets: dict[Any, Any] | None = None, timeout_ms: int | None = None) -> None:
        if self.evicted:
            raise RuntimeError("CommitFailedError: the group has already rebalanced")
        for meta in (offsets or {}).values():
            self.committed = max(self.committed, meta.offset)

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None: ...


def subscribe(values: list[bytes | None], clock: FakeClock | None = None, **kw: Any) -> tuple[Subscriber, FakeConsumer]:
    clock = clock or FakeClock()
    made: list[FakeConsumer] = []

    def factory(config: dict[str, Any]) -> FakeConsumer:
        made.append(FakeConsumer(config, values, clock))
        return made[0]

    sub = Subscriber(SETTINGS, group_id="g", from_beginning=True, consumer_factory=factory, clock=clock, **kw)
    return sub, made[0]


def future(version: str = "1.4") -> bytes:
    data = json.loads(message("ev-9").to_json())
    data.update(schema_version=version, colour="new field")
    return json.dumps(data).encode()


def test_poison_goes_to_the_dead_letter_with_its_reason_and_bytes(tmp_path: Path) -> None:
    good = lifecycle("ev-1", "cam-1")
    huge = b"{" + b" " * (1 << 20) + b"}"
    values = [good[0].to_json(), b"\xff\xfe not json", None, huge, good[1].to_json(), b'{"seq": 1}', good[2].to_json()]
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    sub, consumer = subscribe(values, dead_letter=dead)
    got = list(sub.messages(idle_timeout_s=0))
    dead.close()
    assert got == good
    records = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [r["offset"] for r in records] == [1, 2, 3, 5]
    assert all(r["kind"] == "poison" and r["topic"] == "events" and r["reason"] for r in records)
    assert base64.b64decode(records[0]["value_b64"]) == values[1] and records[1]["value_b64"] is None
    assert "over 1048576" in records[2]["reason"] and base64.b64decode(records[2]["value_b64"]) == huge
    assert consumer.committed == len(values)  # handled: past them
    st = sub.stats()
    assert (st.delivered, st.invalid, st.dead_lettered) == (3, 4, 4)


def test_a_newer_schema_stops_the_consumer_loudly_and_uncommitted_by_default() -> None:
    good = message("ev-1")
    sub, consumer = subscribe([good.to_json(), future("1.4"), message("ev-2").to_json()])
    got = []
    with pytest.raises(FutureSchemaError, match=r"offset 1: schema_version 1.4 is newer than this consumer reads"):
        for msg in sub.messages(idle_timeout_s=0):
            got.append(msg)
    assert got == [good] and consumer.committed == 1  # the new-schema message is read again after an upgrade
    assert consumer.position == 1


def test_a_newer_schema_can_be_dead_lettered_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = DeadLetterFile(tmp_path / "dead.jsonl")
    sub, consumer = subscribe(
        [future("2.0"), message("ev-2").to_json()], dead_letter=dead, on_future_schema="dead-letter"
    )
    got = list(sub.messages(idle_timeout_s=0))
    dead.close()
    assert [m.event_id for m in got] == ["ev-2"] and consumer.committed == 2
    [record] = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert record["reason"] == "schema_version 2.0 is newer than this consumer reads"
    assert "WARNING" in caplog.text or any(r.levelname == "WARNING" for r in caplog.records)
    with pytest.raises(ValueError, match="needs a dead letter"):
        subscribe([], on_future_schema="dead-letter")


def test_an_older_or_malformed_version_is_poison_not_the_future() -> None:
    sub, _ = subscribe([future("0.9"), future("x.y"), future("1.2")])
    assert list(sub.messages(idle_timeout_s=0)) == []  # 1.2 with an unknown field: invalid, not newer
    assert sub.stats().invalid == 3


def test_a_slow_sink_never_makes_a_batch_outlive_max_poll_interval() -> None:
    msgs = [message(f"ev-{i}") for i in range(60)]
    clock = FakeClock()
    # each message may take the sink up to 40 s (a webhook retrying); 300 s between polls at most
    sub, consumer = subscribe([m.to_json() for m in msgs], clock, handle_budget_s=40.0, max_poll_interval_s=300.0)
    got = []
    for msg in sub.messages(idle_timeout_s=0):
        clock.now += 40.0
        got.append(msg)
    assert got == msgs and not consumer.evicted
    assert max(consumer.poll_gaps) <= 300.0 and consumer.committed == 60
    assert sub.stats().commit_failures == 0 and sub.stats().batches_cut >= 8
    assert consumer.config["max_poll_interval_ms"] == 300_000


def test_a_budget_longer_than_the_poll_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="must be longer"):
        subscribe([], handle_budget_s=400.0, max_poll_interval_s=300.0)
