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

import contextlib
import http.client
import json
import logging
import os
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab+")  # noqa: SIM115 - closed by close()
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
    """Messages a sink gave up on, one JSON object per line (fsynced): to replay or inspect by hand."""

    def __init__(self, path: Path | str) -> None:
        self._file = _JsonLinesFile(path)
        self.path = self._file.path

    def put(self, msg: EventMessage, *, sink: str, error: str, attempts: int) -> None:
        record = {
            "failed_at": datetime.now(timezone.utc).isoformat(),
            "sink": sink,
            "error": error,
            "attempts": attempts,
            "message": json.loads(msg.to_json()),
        }
        self._file.append(json.dumps(record, separators=(",", ":")).encode("utf-8"))

    def close(self) -> None:
        self._file.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body: a redirect is a failure instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


Sleep = Callable[[float], None]


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
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.stats = SinkStats()

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
        """One POST: ("", ...) when delivered, else (retry?, what went wrong)."""
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": f"{msg.event_id}:{msg.seq}",
                "X-Lepton-Schema-Version": msg.schema_version,
                "X-Lepton-Event-Type": msg.type,
                "User-Agent": "lepton-edge-alerts",
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read(64 * 1024)
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(Exception):
                exc.close()
            status = int(exc.code)
        except (urllib.error.URLError, TimeoutError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return True, redact_text(f"{type(exc).__name__}: {reason}")
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


def open_sink(
    spec: str,
    *,
    dead_letter: Path | str | None = None,
    webhook_timeout_s: float = 5.0,
    webhook_attempts: int = 5,
    webhook_backoff_s: float = 0.5,
) -> StdoutSink | JsonlSink | WebhookSink:
    """A sink from its command-line spec: ``stdout``, ``jsonl:PATH`` or ``webhook:URL``.

    ``ValueError`` for a spec that is none of these (or a dead letter for a sink other than a webhook);
    ``SinkError`` when a file cannot be opened.
    """
    kind, _, rest = spec.partition(":")
    if dead_letter is not None and kind != "webhook":
        raise ValueError("a dead-letter file is for the webhook sink")
    if spec == "stdout":
        return StdoutSink()
    if kind == "jsonl" and rest:
        return JsonlSink(rest)
    if kind == "webhook" and rest:
        dead = DeadLetterFile(dead_letter) if dead_letter is not None else None
        return WebhookSink(
            rest,
            timeout_s=webhook_timeout_s,
            max_attempts=webhook_attempts,
            backoff_s=webhook_backoff_s,
            dead_letter=dead,
        )
    raise ValueError(f"unknown sink {redact_text(spec)!r}: use stdout, jsonl:PATH or webhook:URL")
