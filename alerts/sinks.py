"""Where ``alerts consume`` delivers events: standard output, a JSON-lines file, or a webhook.

A sink's ``deliver(msg)`` returns once the message is safely delivered, or raises ``SinkError``: the consumer
then stops without committing that message, so it comes again at the next start (at least once). A sink that
keeps its own record says what it already holds (``recent_keys``), so the subscriber drops re-deliveries of
those even across a crash between delivering and committing.

* ``stdout`` — one wire message (JSON) per line.
* ``jsonl:PATH`` — appended to PATH, one message per line, flushed and fsynced before ``deliver`` returns. A line
  torn by a crash mid-write is cut off when the file is opened again; the (event_id, seq) pairs of the last
  lines seed the de-duplication, so a re-delivered message is not written twice.
* ``webhook:URL`` — ``POST`` of the wire JSON to an http(s) URL with a bounded timeout; headers
  ``Idempotency-Key: <event_id>:<seq>`` (a receiver can drop the rare duplicate: a request that timed out after
  the server handled it is sent again), ``X-Lepton-Schema-Version`` and ``X-Lepton-Event-Type``. 2xx is
  delivered. Connection errors, timeouts, 408, 425, 429 and 5xx are retried with exponential back-off and
  jitter up to ``max_attempts``; other statuses (4xx, redirects) are not retried. A message that could not be
  delivered goes to the dead-letter file when one is configured (one JSON object per line: the message, the
  error, the attempts) and counts as handled; without one, ``SinkError``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import random
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from alerts.errors import SinkError
from alerts.schema import EventMessage
from pipeline.redact import redact_text, redact_url

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429})  # and every 5xx
_RECENT_BYTES = 4 << 20  # how much of a JSON-lines file's end seeds the de-duplication


class Sink(Protocol):
    name: str

    def deliver(self, msg: EventMessage) -> None: ...
    def recent_keys(self) -> list[tuple[str, int]]: ...
    def close(self) -> None: ...


@dataclass
class SinkStats:
    delivered: int = 0
    retries: int = 0  # webhook: attempts after the first
    dead_lettered: int = 0


class StdoutSink:
    """One wire message per line on standard output (or ``stream``)."""

    name = "stdout"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self.stats = SinkStats()

    def deliver(self, msg: EventMessage) -> None:
        out = self._stream or sys.stdout
        out.write(msg.to_json().decode("utf-8") + "\n")
        out.flush()
        self.stats.delivered += 1

    def recent_keys(self) -> list[tuple[str, int]]:
        return []

    def close(self) -> None:
        pass


class _JsonLinesFile:
    """Append-only JSON lines, each fsynced; a torn last line (crash mid-write) is cut off at open."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # 0600: events (and dead letters) are for their owner; umask decides nothing here
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(fd, "ab+")
            self._repair()
        except OSError as exc:
            raise SinkError(exc.errno, f"cannot open {self.path} ({exc.strerror})", str(self.path)) from exc

    def _repair(self) -> None:
        f = self._file
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        keep = size
        while keep > 0:
            step = min(keep, 64 * 1024)
            f.seek(keep - step)
            chunk = f.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = keep - step + cut + 1
                break
            keep -= step
        log.warning("%s: cutting off a torn last line (%d bytes)", self.path, size - keep)
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())

    def append(self, line: bytes) -> None:
        try:
            self._file.write(line + b"\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise SinkError(exc.errno, f"cannot write to {self.path} ({exc.strerror})", str(self.path)) from exc

    def tail_lines(self, max_bytes: int = _RECENT_BYTES) -> list[bytes]:
        f = self._file
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - max_bytes)
        f.seek(start)
        data = f.read()
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first one is probably cut
        return [line for line in lines if line.strip()]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


class JsonlSink:
    """Appends each message as one line of a JSON-lines file (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self._file = _JsonLinesFile(path)
        self.name = f"jsonl:{self._file.path}"
        self.stats = SinkStats()

    def deliver(self, msg: EventMessage) -> None:
        self._file.append(msg.to_json())
        self.stats.delivered += 1

    def recent_keys(self) -> list[tuple[str, int]]:
        keys = []
        for line in self._file.tail_lines():
            try:
                data = json.loads(line)
                keys.append((str(data["event_id"]), int(data["seq"])))
            except (ValueError, KeyError, TypeError):
                log.warning("%s: a line that is not an event message is ignored", self._file.path)
        return keys

    def close(self) -> None:
        self._file.close()


class DeadLetterFile:
    """Messages a sink gave up on (``kind: undeliverable``, the message) and Kafka records that are no readable
    event (``kind: poison``: the reason, topic, partition, offset and the original key and value in base64), one
    JSON object per line (fsynced, 0600): to replay or inspect by hand."""

    def __init__(self, path: Path | str) -> None:
        self._file = _JsonLinesFile(path)
        self.path = self._file.path

    def put(self, msg: EventMessage, *, sink: str, error: str, attempts: int) -> None:
        self._write("undeliverable", sink=sink, error=error, attempts=attempts, message=json.loads(msg.to_json()))

    def put_poison(self, record: Any, *, topic: str, partition: int, reason: str) -> None:
        """A Kafka record that is no readable event: why, where it was, and its original bytes (base64)."""
        self._write(
            "poison",
            reason=reason,
            topic=topic,
            partition=partition,
            offset=int(record.offset),
            timestamp_ms=getattr(record, "timestamp", None),
            key_b64=_b64(getattr(record, "key", None)),
            value_b64=_b64(record.value),
        )

    def _write(self, kind: str, **fields: Any) -> None:
        entry = {"failed_at": datetime.now(timezone.utc).isoformat(), "kind": kind, **fields}
        self._file.append(json.dumps(entry, separators=(",", ":")).encode("utf-8"))

    def close(self) -> None:
        self._file.close()


Sleep = Callable[[float], None]


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _abort(conn: http.client.HTTPConnection) -> None:
    """The request's deadline passed: shut its socket, so the read that waits returns (called from a timer)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: a TLS socket's would touch TLS state


class WebhookSink:
    """POSTs each message to ``url`` (see the module docstring for retries and the dead letter)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 10.0,
        dead_letter: DeadLetterFile | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        scheme = url.split(":", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"webhook URL must be http:// or https://, not {redact_url(url)!r}")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError(f"webhook URL {redact_url(url)!r}: its port is not a number in 0-65535") from None
        if not parts.hostname:
            raise ValueError(f"webhook URL {redact_url(url)!r} has no host")
        if timeout_s <= 0 or max_attempts < 1 or backoff_s < 0 or backoff_max_s < backoff_s:
            raise ValueError("webhook: timeout_s > 0, max_attempts >= 1, 0 <= backoff_s <= backoff_max_s")
        self.url = url
        self.name = f"webhook:{redact_url(url)}"
        self._timeout = timeout_s
        self._attempts = max_attempts
        self._backoff = backoff_s
        self._backoff_max = backoff_max_s
        self._dead = dead_letter
        self._sleep = sleep
        self._https = scheme == "https"
        self._host, self._port = parts.hostname, port
        self._target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self.stats = SinkStats()

    @property
    def worst_case_s(self) -> float:
        """The longest one ``deliver`` can take: every attempt timing out, every back-off at its longest."""
        backoffs = sum(min(self._backoff * 2**i, self._backoff_max) * 1.2 for i in range(self._attempts - 1))
        return self._attempts * self._timeout + backoffs

    def deliver(self, msg: EventMessage) -> None:
        body = msg.to_json()
        error = ""
        attempt = 0
        for attempt in range(1, self._attempts + 1):  # noqa: B007 - reported after the loop
            if attempt > 1:
                self.stats.retries += 1
                delay = min(self._backoff * 2 ** (attempt - 2), self._backoff_max)
                self._sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not cryptography
            retry, error = self._post(body, msg)
            if not error:
                self.stats.delivered += 1
                return
            log.debug("webhook %s: attempt %d for %s#%d failed: %s", self.name, attempt, msg.event_id, msg.seq, error)
            if not retry:
                break
        self._give_up(msg, error, attempt)

    def _post(self, body: bytes, msg: EventMessage) -> tuple[bool, str]:
        """One POST within ``timeout_s`` from start to answer: ("", ...) when delivered, else (retry?, why).

        The timeout is a deadline for the whole request: a socket timeout alone applies to each read, and a
        server dripping its answer a byte at a time would hold the request for as long as it likes. A timer
        shuts the socket down at the deadline, which ends whatever read is waiting."""
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        started = time.monotonic()
        timer = threading.Timer(self._timeout, _abort, (conn,))
        timer.daemon = True
        timer.start()
        status = 0
        try:
            conn.request(
                "POST",
                self._target,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": f"{msg.event_id}:{msg.seq}",
                    "X-Lepton-Schema-Version": msg.schema_version,
                    "X-Lepton-Event-Type": msg.type,
                    "User-Agent": "lepton-edge-alerts",
                },
            )
            response = conn.getresponse()
            status = int(response.status)
            response.read(64 * 1024)
        except (http.client.HTTPException, OSError) as exc:
            if status:
                pass  # the answer's status arrived; its body is not needed
            elif time.monotonic() - started >= self._timeout * 0.99:
                return True, f"no answer within {self._timeout:g} s"
            else:
                return True, redact_text(f"{type(exc).__name__}: {exc}")
        finally:
            timer.cancel()
            conn.close()
        if 200 <= status < 300:
            return False, ""
        retry = status in RETRYABLE_STATUS or 500 <= status < 600
        return retry, f"HTTP {status}"

    def _give_up(self, msg: EventMessage, error: str, attempts: int) -> None:
        what = f"{msg.event_id}#{msg.seq}"
        if self._dead is None:
            raise SinkError(f"webhook {self.name}: {what} not delivered after {attempts} attempt(s): {error}")
        self._dead.put(msg, sink=self.name, error=error, attempts=attempts)
        self.stats.dead_lettered += 1
        log.warning(
            "webhook %s: %s not delivered after %d attempt(s) (%s): written to %s",
            self.name,
            what,
            attempts,
            error,
            self._dead.path,
        )

    def recent_keys(self) -> list[tuple[str, int]]:
        return []

    def close(self) -> None:
        if self._dead is not None:
            self._dead.close()


WEBHOOK_URL_ENV = "ALERTS_WEBHOOK_URL"
"""Where ``--sink webhook`` (no URL) finds its URL when no file is given: out of the process list."""


def open_sink(
    spec: str,
    *,
    dead_letter: DeadLetterFile | Path | str | None = None,
    webhook_timeout_s: float = 5.0,
    webhook_attempts: int = 5,
    webhook_backoff_s: float = 0.5,
    webhook_url_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> StdoutSink | JsonlSink | WebhookSink:
    """A sink from its command-line spec: ``stdout``, ``jsonl:PATH``, ``webhook:URL``, or ``webhook`` with its
    URL read from ``webhook_url_file`` or the environment variable ``ALERTS_WEBHOOK_URL`` (a URL with a token is
    a secret: on the command line every user of the machine sees it in the process list).

    ``ValueError`` for a spec that is none of these; ``SinkError`` when a file cannot be opened.
    """
    kind, _, rest = spec.partition(":")
    if spec == "stdout":
        return StdoutSink()
    if kind == "jsonl" and rest:
        return JsonlSink(rest)
    if kind == "webhook" and (rest or spec == "webhook"):
        url = rest or _webhook_url(webhook_url_file, os.environ if environ is None else environ)
        dead = (
            dead_letter
            if isinstance(dead_letter, DeadLetterFile) or dead_letter is None
            else DeadLetterFile(dead_letter)
        )
        return WebhookSink(
            url,
            timeout_s=webhook_timeout_s,
            max_attempts=webhook_attempts,
            backoff_s=webhook_backoff_s,
            dead_letter=dead,
        )
    raise ValueError(f"unknown sink {redact_text(spec)!r}: use stdout, jsonl:PATH, webhook or webhook:URL")


def _webhook_url(path: Path | str | None, environ: Mapping[str, str]) -> str:
    if path is not None:
        try:
            url = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"cannot read the webhook URL from {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        if not url:
            raise ValueError(f"{path} is empty: it should hold the webhook URL")
        return url
    url = environ.get(WEBHOOK_URL_ENV, "").strip()
    if not url:
        raise ValueError(f"--sink webhook takes its URL from --webhook-url-file PATH or ${WEBHOOK_URL_ENV}")
    return url
