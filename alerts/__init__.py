"""Everything about anomaly events after they are decided: schema, outbox, Kafka publisher, consumers, CLI.

Flow::

    AnomalyEvent ──EventMessage.from_anomaly──► Outbox.put (SQLite, durable) ──KafkaPublisher──► Kafka topic
                                                     │        │                                    │
                                 alerts tail (local bus)      recovery: end what a crash    Subscriber ─► sinks
                                                              left open (at start)          (alerts tail/consume)

Exceptions (leaf errors also inherit the builtin they resemble)::

    AlertsError
    ├── OutboxError(AlertsError, OSError)                     outbox cannot be opened/written: errno ENOSPC
    │   │                                                     (disk or size cap full), EROFS, EACCES, EIO ...
    │   ├── OutboxCorruptError(OutboxError)                   the file is damaged: moved aside, rows salvaged
    │   └── OutboxNotFoundError(OutboxError, FileNotFoundError)   a reader's outbox file does not exist
    ├── PublishError(AlertsError, ConnectionError)            Kafka unreachable or topic missing (check_kafka)
    ├── SubscribeError(AlertsError, ConnectionError)          consumer cannot reach Kafka, its topic or group
    ├── SinkError(AlertsError, OSError)                       a sink cannot take a message (file, webhook)
    └── MessageFormatError(AlertsError, ValueError)           bytes that are not a valid event message
        └── FutureSchemaError(MessageFormatError)             a message of a newer schema version

Modules: ``schema``, ``outbox``, ``publisher`` (+ ``latency``), ``recovery``, ``consumer`` (``Subscriber``), ``sinks``,
``cli``. ``kafka`` (kafka-python) is imported only when a publisher or subscriber connects.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alerts.consumer import StartAt, Subscriber, SubscriberStats, read_outbox
    from alerts.errors import (
        AlertsError,
        FutureSchemaError,
        MessageFormatError,
        OutboxCorruptError,
        OutboxError,
        OutboxNotFoundError,
        PublishError,
        SinkError,
        SubscribeError,
    )
    from alerts.latency import AckLatency, LatencyStats
    from alerts.outbox import DEFAULT_OUTBOX_PATH, Outbox, OutboxRow, OutboxStats
    from alerts.publisher import KafkaPublisher, KafkaSettings, PublisherState, PublisherStats, check_kafka
    from alerts.recovery import end_interrupted, interrupted_events
    from alerts.schema import SCHEMA_VERSION, EventMessage, ModalityPeak, ModelProvenance
    from alerts.sinks import DeadLetterFile, JsonlSink, StdoutSink, WebhookSink, open_sink

# Exports resolve on first use (PEP 562), so `python -m alerts.schema` runs its module only once and importing
# one part (the schema, for a consumer) does not import the rest.
_EXPORTS = {
    "alerts.consumer": ("StartAt", "Subscriber", "SubscriberStats", "read_outbox"),
    "alerts.errors": (
        "AlertsError",
        "FutureSchemaError",
        "MessageFormatError",
        "OutboxCorruptError",
        "OutboxError",
        "OutboxNotFoundError",
        "PublishError",
        "SinkError",
        "SubscribeError",
    ),
    "alerts.latency": ("AckLatency", "LatencyStats"),
    "alerts.outbox": ("DEFAULT_OUTBOX_PATH", "Outbox", "OutboxRow", "OutboxStats"),
    "alerts.publisher": (
        "KafkaPublisher",
        "KafkaSettings",
        "PublisherState",
        "PublisherStats",
        "check_kafka",
    ),
    "alerts.recovery": ("end_interrupted", "interrupted_events"),
    "alerts.schema": ("SCHEMA_VERSION", "EventMessage", "ModalityPeak", "ModelProvenance"),
    "alerts.sinks": ("DeadLetterFile", "JsonlSink", "StdoutSink", "WebhookSink", "open_sink"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'alerts' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


__all__ = [
    "DEFAULT_OUTBOX_PATH",
    "SCHEMA_VERSION",
    "AckLatency",
    "AlertsError",
    "DeadLetterFile",
    "EventMessage",
    "FutureSchemaError",
    "JsonlSink",
    "KafkaPublisher",
    "KafkaSettings",
    "LatencyStats",
    "MessageFormatError",
    "ModalityPeak",
    "OutboxCorruptError",
    "ModelProvenance",
    "Outbox",
    "OutboxError",
    "OutboxNotFoundError",
    "OutboxRow",
    "OutboxStats",
    "PublishError",
    "PublisherState",
    "PublisherStats",
    "SinkError",
    "StartAt",
    "StdoutSink",
    "SubscribeError",
    "Subscriber",
    "SubscriberStats",
    "WebhookSink",
    "check_kafka",
    "end_interrupted",
    "interrupted_events",
    "open_sink",
    "read_outbox",
]
