"""Credential redaction for every URL this project touches (camera, webhook, broker).

Anything that leaves the process — logs (through ``RedactingFilter``), health, errors, model packages, dead
letters, metrics — goes through ``redact_url`` (a string known to be one URL) or ``redact_text`` (free text
that may contain URLs). One policy, whatever the scheme:

* user info (``user:password@``) becomes ``***@``; it runs up to the **last** ``@`` of the URL, so a password
  with an unescaped ``@``, ``/``, ``?`` or ``#`` is hidden whole (a path that holds an ``@`` loses a little
  more than it must: erring on the safe side);
* every query value becomes ``***`` (``?user=***&password=***``: cameras take credentials there too), and so
  does a fragment;
* ``http``/``https`` paths become ``/***``: webhooks (Slack, Teams, Discord) carry their token in the path;
* on other schemes (``rtsp``, ``rtsps``) the path stays, since it names the stream, except a segment that looks
  like a token (16+ characters mixing letters and digits);
* the host stays as written: IPv6 brackets, and a port even when it is out of range (never parsed, so this
  never raises).

The functions never raise on any input: a redaction that fails would put a traceback — with the URL in it —
where the redacted text was meant to go.
"""

from __future__ import annotations

import logging
import re

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://")
# A URL inside free text runs to the next white space or quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://[^\s'\"<>`]*")
# Punctuation that ends a sentence rather than the URL ("... rtsp://cam/s: Connection refused").
_TRAILING = re.compile(r"[.,;:)\]}]+$")
_TOKEN_SEGMENT = re.compile(r"^(?=[^/]*[A-Za-z])(?=[^/]*[0-9])[A-Za-z0-9_\-.~%+=]{16,}$")
_PATH_SECRET_SCHEMES = frozenset({"http", "https"})
MASK = "***"


def redact_url(url: str) -> str:
    """Return ``url`` without credentials (see the module docstring for what is hidden).

    >>> redact_url("rtsp://admin:secret@10.0.0.5:554/stream1")
    'rtsp://***@10.0.0.5:554/stream1'
    >>> redact_url("rtsp://cam/s?user=admin&password=x")
    'rtsp://cam/s?user=***&password=***'
    >>> redact_url("https://hooks.slack.com/services/T0/B0/XXXX")
    'https://hooks.slack.com/***'
    """
    m = _SCHEME.match(url)
    if m is None:
        return url
    scheme = m.group(0)[:-3].lower()
    rest = url[m.end() :]
    at = rest.rfind("@")
    userinfo = at >= 0
    if userinfo:
        rest = rest[at + 1 :]
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    host, rest = rest[:end], rest[end:]
    path, fragment = _split_once(rest, "#")
    path, query = _split_once(path, "?")
    out = [m.group(0), f"{MASK}@" if userinfo else "", host, _redact_path(path, scheme)]
    if query is not None:
        out.append("?" + _redact_query(query))
    if fragment is not None:
        out.append("#" + (MASK if fragment else ""))
    return "".join(out)


def redact_text(text: str) -> str:
    """Redact every URL inside free text (an FFmpeg error, an exception message, a log line, a JSON body)."""
    return _URL_IN_TEXT.sub(_redact_match, text)


def _redact_match(m: re.Match[str]) -> str:
    token = m.group(0)
    trail = _TRAILING.search(token)
    if trail is None:
        return redact_url(token)
    return redact_url(token[: trail.start()]) + trail.group(0)


def _split_once(text: str, sep: str) -> tuple[str, str | None]:
    head, found, tail = text.partition(sep)
    return head, (tail if found else None)


def _redact_path(path: str, scheme: str) -> str:
    if not path or path == "/":
        return path
    if scheme in _PATH_SECRET_SCHEMES:
        return "/" + MASK
    return "/".join(MASK if _TOKEN_SEGMENT.match(seg) else seg for seg in path.split("/"))


def _redact_query(query: str) -> str:
    parts = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        parts.append(f"{key}={MASK}" if eq and value else (key + eq if eq else _mask_bare(key)))
    return "&".join(parts)


def _mask_bare(item: str) -> str:
    # "?secret" with no "=": the whole item may be a token
    return MASK if item else item


class RedactingFilter(logging.Filter):
    """Redacts URLs in every record a handler is about to emit: the message with its arguments, the exception's
    traceback text and a stack. Attach it to handlers (``install_log_redaction``): a filter on a logger sees only
    records logged on that very logger, not those of its children."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record still must not leak: keep its raw text, redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach one ``RedactingFilter`` to every handler of ``logger`` (default: the root logger), once."""
    target = logger if logger is not None else logging.getLogger()
    flt = next((f for h in target.handlers for f in h.filters if isinstance(f, RedactingFilter)), None)
    flt = flt or RedactingFilter()
    for handler in target.handlers:
        if flt not in handler.filters:
            handler.addFilter(flt)
    return flt
