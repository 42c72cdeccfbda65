"""Exceptions raised by ``alerts``; the tree is drawn in the package docstring (``alerts/__init__.py``).

Leaf errors also inherit the builtin they resemble, so callers may catch either (``except OSError`` around an
outbox write catches a full disk whether or not it knows this package).
"""

from __future__ import annotations


class AlertsError(Exception):
    """Base of every error raised by ``alerts``."""


class OutboxError(AlertsError, OSError):
    """The outbox could not be opened, read or written (full disk, read-only path, corrupt file)."""


class OutboxCorruptError(OutboxError):
    """The outbox file is damaged (SQLite: malformed, not a database); the daemon moves it aside and salvages."""


class OutboxNotFoundError(OutboxError, FileNotFoundError):
    """A reader asked for an outbox file that does not exist."""


class PublishError(AlertsError, ConnectionError):
    """Kafka did not accept or acknowledge a message (broker unreachable, topic missing, auth failed)."""


class SubscribeError(AlertsError, ConnectionError):
    """A consumer could not reach Kafka, find its topic or join its group in time."""


class SinkError(AlertsError, OSError):
    """A consumer's sink could not take a message: file not writable, webhook failing with no dead letter."""


class MessageFormatError(AlertsError, ValueError):
    """Bytes that are not a valid event message of this schema version."""


class FutureSchemaError(MessageFormatError):
    """A message of a schema version newer than this consumer reads: by default the consumer stops on it (loudly,
    uncommitted) instead of dropping every message of the new version."""
