"""Reading events back: ``Subscriber`` consumes the Kafka topic, ``read_outbox`` reads the local outbox bus.

``Subscriber`` is the Python SDK for downstream teams (and what ``alerts tail --bootstrap`` uses): a member of
a consumer group that yields validated ``EventMessage`` s, drops duplicates and commits at least once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from alerts.errors import MessageFormatError, SubscribeError
from alerts.outbox import Outbox, OutboxRow
from alerts.publisher import KafkaSettings
from alerts.schema import EventMessage

log = logging.getLogger(__name__)


class ConsumerLike(Protocol):
    """The part of ``kafka.KafkaConsumer`` the subscriber uses."""

    def partitions_for_topic(self, topic: str) -> set[int]: ...
    def subscribe(self, topics: list[str], listener: Any = None) -> None: ...
    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]: ...
    def assignment(self) -> set[Any]: ...
    def seek_to_beginning(self, *partitions: Any) -> None: ...
    def commit(self, offsets: dict[Any, Any] | None = None, timeout_ms: int | None = None) -> None: ...
    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None: ...


ConsumerFactory = Callable[[dict[str, Any]], ConsumerLike]


def kafka_consumer(config: dict[str, Any]) -> ConsumerLike:
    """Create a real ``kafka.KafkaConsumer`` (connects to a bootstrap broker before returning)."""
    from kafka import KafkaConsumer  # type: ignore[import-untyped]

    consumer: ConsumerLike = KafkaConsumer(**config)
    return consumer


class DedupWindow:
    """The last ``capacity`` (event_id, seq) pairs seen; older pairs are forgotten first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    def seen(self, key: tuple[str, int]) -> bool:
        """True if ``key`` was seen within the window; records it either way."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return False


@dataclass(frozen=True, slots=True)
class SubscriberStats:
    delivered: int  # messages handed to the caller
    duplicates: int  # dropped: same event_id + seq seen within the window
    invalid: int  # dropped: not a valid event message (logged; offsets committed past them)
    commit_failures: int  # commits that failed (the messages will come again; duplicates are dropped)


class Subscriber:
    """Consumes event messages from Kafka as a member of consumer group ``group_id``.

    At least once: offsets are committed only after the caller's handler (or the body of the ``for`` loop over
    ``messages()``) returned for every message before them; a crash or an early ``break`` re-delivers the rest
    to the group. Duplicates (such re-deliveries, or the publisher sending a row again after an outage) are
    dropped by (``event_id``, ``seq``) among the last ``dedup_window`` pairs this object saw. Messages that
    are not valid events are logged, counted and skipped, never handed over.

    ``from_beginning``: read each partition from its start the first time it is assigned to this object, even
    if the group has committed offsets; otherwise a group resumes where it committed (a new group starts at
    the end).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        from_beginning: bool = False,
        dedup_window: int = 10_000,
        session_timeout_s: float = 10.0,
        heartbeat_interval_s: float = 2.0,
        consumer_factory: ConsumerFactory = kafka_consumer,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self._from_beginning = from_beginning
        self._dedup = DedupWindow(dedup_window)
        self._rewound: set[Any] = set()
        self._delivered = 0
        self._duplicates = 0
        self._invalid = 0
        self._commit_failures = 0
        where = ",".join(settings.bootstrap)
        config = {
            **settings.client_config(),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest" if from_beginning else "latest",
            "session_timeout_ms": int(session_timeout_s * 1000),
            "heartbeat_interval_ms": int(heartbeat_interval_s * 1000),
            "allow_auto_create_topics": False,
            "max_poll_records": 200,
        }
        try:
            self._consumer = consumer_factory(config)
        except Exception as exc:  # noqa: BLE001 - whatever the client raised, the caller gets one clear error
            raise SubscribeError(
                f"cannot reach Kafka at {where} within {settings.connect_timeout_s:g} s ({exc})"
            ) from exc
        try:
            if not self._consumer.partitions_for_topic(settings.topic):
                raise SubscribeError(f"topic {settings.topic!r} does not exist on {where}")
            self._consumer.subscribe(
                [settings.topic], listener=_rewind_listener(self) if from_beginning else None
            )
        except SubscribeError:
            self._consumer.close(autocommit=False, timeout_ms=1000)
            raise
        except Exception as exc:  # noqa: BLE001
            self._consumer.close(autocommit=False, timeout_ms=1000)
            raise SubscribeError(f"cannot subscribe to {settings.topic!r} on {where}: {exc}") from exc

    def messages(
        self,
        *,
        idle_timeout_s: float | None = None,
        assignment_timeout_s: float | None = None,
        stop: threading.Event | None = None,
        poll_timeout_s: float = 0.5,
    ) -> Iterator[EventMessage]:
        """Yield messages until ``stop`` is set, or ``idle_timeout_s`` passed without one once partitions are
        assigned. ``assignment_timeout_s``: raise ``SubscribeError`` if the group gives us no partition by
        then.
        """
        stop = stop or threading.Event()
        started = time.monotonic()
        idle_since: float | None = None
        handled: dict[Any, Any] = {}  # partition -> OffsetAndMetadata to commit
        try:
            while not stop.is_set():
                batch = self._consumer.poll(timeout_ms=int(poll_timeout_s * 1000))
                now = time.monotonic()
                if not batch:
                    if self._consumer.assignment():
                        idle_since = idle_since if idle_since is not None else now
                        if idle_timeout_s is not None and now - idle_since >= idle_timeout_s:
                            return
                    elif assignment_timeout_s is not None and now - started >= assignment_timeout_s:
                        raise SubscribeError(
                            f"no partition of {self.settings.topic!r} assigned within"
                            f" {assignment_timeout_s:g} s"
                            f" (consumer group {self.group_id!r}: do other members hold them all?)"
                        )
                    continue
                idle_since = None
                for partition, records in batch.items():
                    for record in records:
                        msg = self._accept(record.value, partition, record.offset)
                        if msg is not None:
                            self._delivered += 1
                            yield msg
                        handled[partition] = _offset(record)
                self._commit(handled)
        finally:
            self._commit(handled)

    def run(
        self,
        handler: Callable[[EventMessage], None],
        *,
        stop: threading.Event | None = None,
        idle_timeout_s: float | None = None,
    ) -> int:
        """Call ``handler`` for each message until ``stop`` / idle timeout; return how many were handled."""
        count = 0
        for msg in self.messages(stop=stop, idle_timeout_s=idle_timeout_s):
            handler(msg)
            count += 1
        return count

    def stats(self) -> SubscriberStats:
        return SubscriberStats(self._delivered, self._duplicates, self._invalid, self._commit_failures)

    def close(self) -> None:
        """Leave the group (offsets of handled messages were already committed)."""
        try:
            self._consumer.close(autocommit=False, timeout_ms=5000)
        except Exception:
            log.warning("alerts subscriber: error while leaving group %s", self.group_id, exc_info=True)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self, value: bytes | None, partition: Any, offset: int) -> EventMessage | None:
        try:
            msg = EventMessage.from_json(value or b"")
        except MessageFormatError as exc:
            self._invalid += 1
            log.warning("alerts subscriber: skipping %s offset %d: %s", partition, offset, exc)
            return None
        if self._dedup.seen((msg.event_id, msg.seq)):
            self._duplicates += 1
            log.debug("alerts subscriber: duplicate %s seq %d dropped", msg.event_id, msg.seq)
            return None
        return msg

    def _commit(self, handled: dict[Any, Any]) -> None:
        if not handled:
            return
        offsets = dict(handled)
        handled.clear()
        try:
            self._consumer.commit(offsets=offsets, timeout_ms=int(self.settings.request_timeout_s * 1000))
        except Exception as exc:  # noqa: BLE001 - a failed commit means re-delivery, which dedup absorbs
            self._commit_failures += 1
            log.warning("alerts subscriber: offset commit failed (messages may come again): %s", exc)

    def _rewind(self, assigned: Any) -> None:
        fresh = [tp for tp in assigned if tp not in self._rewound]
        if fresh:
            self._rewound.update(fresh)
            self._consumer.seek_to_beginning(*fresh)


def _offset(record: Any) -> Any:
    from kafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]

    return OffsetAndMetadata(record.offset + 1, "", getattr(record, "leader_epoch", None) or -1)


def _rewind_listener(owner: Subscriber) -> Any:
    """A rebalance listener that seeks partitions to their start the first time they are assigned."""
    from kafka import ConsumerRebalanceListener

    class Rewind(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            owner._rewind(assigned)

    return Rewind()


def read_outbox(
    outbox: Outbox,
    *,
    after_id: int = 0,
    follow: bool = False,
    poll_interval_s: float = 0.2,
    stop: threading.Event | None = None,
) -> Iterator[OutboxRow]:
    """Yield every outbox row with id > ``after_id`` in order; with ``follow``, keep yielding new ones until
    ``stop`` is set. Works across processes: the writer's commits are visible to each new read."""
    stop = stop or threading.Event()
    while not stop.is_set():
        rows = outbox.read(after_id=after_id, limit=1000)
        for row in rows:
            yield row
            after_id = row.id
        if rows:
            continue
        if not follow:
            return
        stop.wait(poll_interval_s)
