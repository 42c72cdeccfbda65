"""Reading events back: ``Subscriber`` consumes the Kafka topic, ``read_outbox`` reads the local outbox bus.

``Subscriber`` is the Python SDK for downstream teams (and what ``alerts tail --bootstrap`` and ``alerts consume``
use): a member of a consumer group that yields validated ``EventMessage`` s, drops duplicates and commits at
least once. Where it starts reading is a ``StartAt``: the group's committed offsets (the default), the
beginning, an offset, or a time (``offsets_for_times``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from alerts.errors import FutureSchemaError, MessageFormatError, SubscribeError
from alerts.outbox import Outbox, OutboxRow
from alerts.publisher import KafkaSettings
from alerts.schema import READABLE_VERSIONS, EventMessage

log = logging.getLogger(__name__)


class ConsumerLike(Protocol):
    """The part of ``kafka.KafkaConsumer`` the subscriber uses."""

    def partitions_for_topic(self, topic: str) -> set[int]: ...
    def subscribe(self, topics: list[str], listener: Any = None) -> None: ...
    def poll(self, timeout_ms: int = 0) -> dict[Any, list[Any]]: ...
    def assignment(self) -> set[Any]: ...
    def seek_to_beginning(self, *partitions: Any) -> None: ...
    def seek_to_end(self, *partitions: Any) -> None: ...
    def seek(self, partition: Any, offset: int) -> None: ...
    def pause(self, *partitions: Any) -> None: ...
    def resume(self, *partitions: Any) -> None: ...
    def offsets_for_times(self, timestamps: dict[Any, int], timeout_ms: int | None = None) -> dict[Any, Any]: ...
    def commit(self, offsets: dict[Any, Any] | None = None, timeout_ms: int | None = None) -> None: ...
    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None: ...


ConsumerFactory = Callable[[dict[str, Any]], ConsumerLike]
FutureSchemaPolicy = Literal["stop", "dead-letter"]
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20  # Kafka's default message.max.bytes; an event message is ~1 kB


class PoisonSink(Protocol):
    """Where messages that are no readable event go (``alerts.sinks.DeadLetterFile``)."""

    def put_poison(self, record: Any, *, topic: str, partition: int, reason: str) -> None: ...


def future_schema_version(value: bytes | None) -> str | None:
    """The ``schema_version`` of a message when it is newer than every version this module reads, else None."""
    if not value or len(value) > DEFAULT_MAX_MESSAGE_BYTES:
        return None
    try:
        version = json.loads(value).get("schema_version")
        major, minor = (int(part) for part in str(version).split("."))
    except (ValueError, TypeError, AttributeError):
        return None
    newest = max(tuple(int(p) for p in v.split(".")) for v in READABLE_VERSIONS)
    return str(version) if (major, minor) > newest else None


def kafka_consumer(config: dict[str, Any]) -> ConsumerLike:
    """Create a real ``kafka.KafkaConsumer`` (connects to a bootstrap broker before returning)."""
    from kafka import KafkaConsumer

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
        found = key in self
        self.add(key)
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def add(self, key: tuple[str, int]) -> None:
        """Record ``key`` as the newest pair."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where a subscriber reads each partition from, the first time this object is assigned it.

    At most one of: ``beginning``; ``offset`` (one offset for every partition, or per partition number;
    partitions not listed resume from the group); ``time`` (the first message at or after it, by the
    broker's record timestamps; a partition with nothing that late starts at its end). None of them: the
    group's committed offsets (a new group starts at the end).
    """

    beginning: bool = False
    offset: int | dict[int, int] | None = None
    time: datetime | None = None

    def __post_init__(self) -> None:
        chosen = [self.beginning, self.offset is not None, self.time is not None]
        if sum(chosen) > 1:
            raise ValueError("choose one of beginning, offset and time")
        offsets = [self.offset] if isinstance(self.offset, int) else list((self.offset or {}).values())
        if any(o < 0 for o in offsets):
            raise ValueError("offsets are >= 0")
        if self.time is not None and self.time.tzinfo is None:
            raise ValueError("the start time needs a time zone")

    @property
    def rewinds(self) -> bool:
        return self.beginning or self.offset is not None or self.time is not None

    def offset_for(self, partition: int) -> int | None:
        if isinstance(self.offset, int):
            return self.offset
        return (self.offset or {}).get(partition)


@dataclass(frozen=True, slots=True)
class SubscriberStats:
    delivered: int  # messages handed to the caller
    duplicates: int  # dropped: same event_id + seq seen within the window
    invalid: int  # dropped: not a valid event message (logged; offsets committed past them)
    commit_failures: int  # commits that failed (the messages will come again; duplicates are dropped)
    dead_lettered: int = 0  # of the invalid: written to the dead letter with the reason and the original bytes
    batches_cut: int = 0  # polled batches left part-handled so that no batch outlives max_poll_interval_s


class Subscriber:
    """Consumes event messages from Kafka as a member of consumer group ``group_id``.

    At least once: offsets are committed only after the caller's handler (or the body of the ``for`` loop over
    ``messages()``) returned for every message before them; a crash or an early ``break`` re-delivers the rest
    to the group. Duplicates (such re-deliveries, or the publisher sending a row again after an outage) are
    dropped by (``event_id``, ``seq``) among the last ``dedup_window`` pairs this object saw. Messages that
    are not valid events are logged, counted and skipped, never handed over.

    ``start``: where to read each partition from the first time it is assigned to this object, even if the
    group has committed offsets (``StartAt``); ``from_beginning=True`` is ``StartAt(beginning=True)``. By
    default a group resumes where it committed (a new group starts at the end).

    ``seen``: (event_id, seq) pairs already handled, to seed the de-duplication window. A sink that keeps its
    own record (a JSON-lines file) passes its recent pairs, so messages re-delivered after a crash between
    handling and committing are dropped across restarts, not only within one process.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        from_beginning: bool = False,
        start: StartAt | None = None,
        seen: Iterable[tuple[str, int]] = (),
        dedup_window: int = 10_000,
        session_timeout_s: float = 10.0,
        heartbeat_interval_s: float = 2.0,
        consumer_factory: ConsumerFactory = kafka_consumer,
        dead_letter: PoisonSink | None = None,
        on_future_schema: FutureSchemaPolicy = "stop",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_poll_interval_s: float = 300.0,
        handle_budget_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if on_future_schema == "dead-letter" and dead_letter is None:
            raise ValueError("on_future_schema='dead-letter' needs a dead letter")
        if not 0 <= handle_budget_s < max_poll_interval_s:
            raise ValueError(
                f"one message may take {handle_budget_s:g} s to handle: max_poll_interval_s"
                f" ({max_poll_interval_s:g}) must be longer"
            )
        self.settings = settings
        self.group_id = group_id
        self._dead = dead_letter
        self._on_future = on_future_schema
        self._max_bytes = max_message_bytes
        self._max_poll_interval_s = max_poll_interval_s
        self._budget_s = handle_budget_s
        self._clock = clock
        self._dead_lettered = 0
        self._batches_cut = 0
        if from_beginning and start is not None and start != StartAt(beginning=True):
            raise ValueError("from_beginning and start are alternatives")
        self._start = StartAt(beginning=True) if from_beginning else (start or StartAt())
        self._dedup = DedupWindow(dedup_window)
        for key in seen:
            self._dedup.add(key)
        self._rewound: set[Any] = set()
        self._to_position_by_time: set[Any] = set()
        self._delivered = 0
        self._duplicates = 0
        self._invalid = 0
        self._commit_failures = 0
        where = ",".join(settings.bootstrap)
        config = {
            **settings.client_config(),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest" if self._start.rewinds else "latest",
            "session_timeout_ms": int(session_timeout_s * 1000),
            "heartbeat_interval_ms": int(heartbeat_interval_s * 1000),
            "allow_auto_create_topics": False,
            "max_poll_records": 200,
            # the group drops a member that does not poll within this; messages() leaves a batch part-handled
            # (the rest read again) rather than let a slow caller outlive it
            "max_poll_interval_ms": int(max_poll_interval_s * 1000),
            "fetch_max_bytes": max(52_428_800, max_message_bytes),
        }
        try:
            self._consumer = consumer_factory(config)
        except Exception as exc:  # noqa: BLE001 - whatever the client raised, the caller gets one clear error
            raise SubscribeError(
                f"cannot reach Kafka at {where} within {settings.connect_timeout_s:g} s ({exc})"
            ) from exc
        self._subscribe(where)

    def _subscribe(self, where: str) -> None:
        """Join the group on the topic, which must exist; the client is closed if that fails."""
        settings = self.settings
        try:
            if not self._consumer.partitions_for_topic(settings.topic):
                raise SubscribeError(f"topic {settings.topic!r} does not exist on {where}")
            self._consumer.subscribe([settings.topic], listener=_rewind_listener(self) if self._start.rewinds else None)
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
        """Yield messages until ``stop`` is set (checked before each one: the rest of a polled batch is left for
        later, uncommitted, and this consumer is put back to read it again), or ``idle_timeout_s`` passed without
        one once partitions are assigned. ``assignment_timeout_s``: raise ``SubscribeError`` if the group gives us
        no partition by then.
        """
        stop = stop or threading.Event()
        started = time.monotonic()
        idle_since: float | None = None
        handled: dict[Any, Any] = {}  # partition -> OffsetAndMetadata to commit
        unhandled: dict[Any, int] = {}  # partition -> offset of its first record of the batch at hand not handled
        try:
            while not stop.is_set():
                batch = self._consumer.poll(timeout_ms=int(poll_timeout_s * 1000))
                if self._to_position_by_time:
                    batch = self._position_by_time(batch)
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
                polled_at = self._clock()
                unhandled = {partition: records[0].offset for partition, records in batch.items() if records}
                cut = False
                for partition, records in batch.items():
                    for record in records:
                        if stop.is_set():  # a slow sink stops after the message in hand, not after the batch
                            return
                        if self._clock() - polled_at + self._budget_s > self._max_poll_interval_s:
                            cut = True  # the next message could outlive max_poll_interval_s: poll again first
                            break
                        msg = self._accept(record, partition)
                        if msg is not None:
                            self._delivered += 1
                            yield msg
                            # only now, after the caller handled it: a failed handler's message is not a
                            # duplicate when it comes again
                            self._dedup.add((msg.event_id, msg.seq))
                        handled[partition] = _offset(record)
                        unhandled[partition] = record.offset + 1
                    if cut:
                        break
                    unhandled.pop(partition, None)
                self._commit(handled)
                if cut:
                    self._batches_cut += 1
                    log.debug(
                        "alerts subscriber: batch cut after %.1f s to keep polling within %g s",
                        self._clock() - polled_at,
                        self._max_poll_interval_s,
                    )
                    self._seek_back(unhandled)
                    unhandled = {}
        finally:
            self._commit(handled)
            # Left inside a batch (a stop, the caller breaking off, an error): the rest is not committed, and this
            # consumer is put back to it too, so a Subscriber used again reads it instead of skipping it.
            self._seek_back(unhandled)

    def _seek_back(self, unhandled: dict[Any, int]) -> None:
        for partition, offset in unhandled.items():
            try:
                self._consumer.seek(partition, offset)
            except Exception as exc:  # noqa: BLE001 - closed or no longer assigned: the commit is what counts
                log.debug("alerts subscriber: cannot seek %s back to %d: %s", partition, offset, exc)

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
        return SubscriberStats(
            self._delivered,
            self._duplicates,
            self._invalid,
            self._commit_failures,
            self._dead_lettered,
            self._batches_cut,
        )

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

    def _accept(self, record: Any, partition: Any) -> EventMessage | None:
        value: bytes | None = record.value
        try:
            if value is None or len(value) > self._max_bytes:
                size = "no value" if value is None else f"{len(value)} bytes, over {self._max_bytes}"
                raise MessageFormatError(f"not an event message: {size}")
            msg = EventMessage.from_json(value)
        except MessageFormatError as exc:
            self._poison(record, partition, exc)
            return None
        if (msg.event_id, msg.seq) in self._dedup:
            self._dedup.add((msg.event_id, msg.seq))  # refresh: it is among the newest again
            self._duplicates += 1
            log.debug("alerts subscriber: duplicate %s seq %d dropped", msg.event_id, msg.seq)
            return None
        return msg

    def _poison(self, record: Any, partition: Any, exc: MessageFormatError) -> None:
        """A message that is no event this consumer can read: dead-lettered (or skipped), or, for a newer schema
        and the default policy, the end of consuming (uncommitted: it is read again after an upgrade)."""
        where = f"{getattr(partition, 'topic', self.settings.topic)}[{getattr(partition, 'partition', partition)}]"
        newer = future_schema_version(record.value)
        if newer is not None:
            if self._on_future == "stop":
                raise FutureSchemaError(
                    f"{where} offset {record.offset}: schema_version {newer} is newer than this consumer reads"
                    f" ({', '.join(READABLE_VERSIONS)}); upgrade lepton-edge, or dead-letter such messages"
                    " (alerts consume --dead-letter PATH --on-future-schema dead-letter). Nothing past it is"
                    " committed."
                )
            reason = f"schema_version {newer} is newer than this consumer reads"
        else:
            reason = str(exc)
        self._invalid += 1
        level = logging.WARNING
        if self._dead is not None:
            self._dead.put_poison(
                record,
                topic=str(getattr(partition, "topic", self.settings.topic)),
                partition=int(getattr(partition, "partition", 0)),
                reason=reason,
            )
            self._dead_lettered += 1
            log.log(level, "alerts subscriber: %s offset %d dead-lettered: %s", where, record.offset, reason)
        else:
            log.log(level, "alerts subscriber: skipping %s offset %d: %s", where, record.offset, reason)

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
        """Called from the rebalance listener: position partitions assigned to this object for the first time."""
        fresh = [tp for tp in assigned if tp not in self._rewound]
        if not fresh:
            return
        self._rewound.update(fresh)
        if self._start.beginning:
            self._consumer.seek_to_beginning(*fresh)
        elif self._start.time is not None:
            # offsets_for_times is a blocking request, which a (synchronous) rebalance listener must not make:
            # hold the partitions and look their offsets up after this poll returns.
            self._consumer.pause(*fresh)
            self._to_position_by_time.update(fresh)
        else:
            for tp in fresh:
                offset = self._start.offset_for(tp.partition)
                if offset is not None:
                    self._consumer.seek(tp, offset)

    def _position_by_time(self, batch: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        assert self._start.time is not None
        tps = set(self._to_position_by_time)
        millis = int(self._start.time.timestamp() * 1000)
        try:
            found = self._consumer.offsets_for_times(
                {tp: millis for tp in tps}, timeout_ms=int(self.settings.request_timeout_s * 1000)
            )
        except Exception as exc:  # noqa: BLE001 - timeout, unsupported broker: one clear error
            raise SubscribeError(
                f"cannot look up the offsets of {self._start.time.isoformat()} in {self.settings.topic!r}: {exc}"
            ) from exc
        for tp in tps:
            hit = found.get(tp)
            if hit is None:
                self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, hit.offset)
        self._consumer.resume(*tps)
        self._to_position_by_time.clear()
        # paused partitions return nothing; should a record have slipped through, it is fetched again from the
        # new position
        return {tp: records for tp, records in batch.items() if tp not in tps}


def _offset(record: Any) -> Any:
    from kafka.structs import OffsetAndMetadata

    return OffsetAndMetadata(record.offset + 1, "", getattr(record, "leader_epoch", None) or -1)


def _rewind_listener(owner: Subscriber) -> Any:
    """A rebalance listener that positions partitions (``StartAt``) the first time they are assigned."""
    from kafka import ConsumerRebalanceListener

    class Rewind(ConsumerRebalanceListener):
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
    ``stop`` is set (checked before each row). Works across processes: the writer's commits are visible to each
    new read.

    ``stop`` is only read, never waited on, so a signal handler may set it (``alerts tail`` on Ctrl-C): setting
    an Event takes its lock, which a wait the handler interrupted would be holding."""
    stop = stop or threading.Event()
    while not stop.is_set():
        rows = outbox.read(after_id=after_id, limit=1000)
        for row in rows:
            if stop.is_set():
                return
            yield row
            after_id = row.id
        if rows:
            continue
        if not follow:
            return
        time.sleep(poll_interval_s)
