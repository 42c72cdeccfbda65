"""Log lines for machines: ``--log-format json`` writes one JSON object per record (for a log aggregator).

Fields: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``, ``thread``, and ``exc``
(the traceback) or ``stack`` when the record has one. Redaction happens before (``pipeline.redact``'s filter on the
handler rewrites the record), so what is serialised here is already without credentials. Text stays the default.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, timezone.utc)
        line: dict[str, object] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(kind: str) -> logging.Formatter:
    """The formatter of ``--log-format``: ``text`` (the default) or ``json``."""
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)
