"""One redaction for every URL (camera, webhook, broker): each form a real deployment writes, and the logging
filter that applies it to whatever a handler emits."""

from __future__ import annotations

import io
import logging

import pytest

from pipeline.redact import RedactingFilter, install_log_redaction, redact_text, redact_url

# (url, what must not appear, what the redacted form is)
FORMS = [
    ("rtsp://admin:secret@10.0.0.5:554/stream1", "secret", "rtsp://***@10.0.0.5:554/stream1"),
    ("rtsp://cam.local/s?user=admin&password=hunter2", "hunter2", "rtsp://cam.local/s?user=***&password=***"),
    ("rtsp://cam.local/s?user=admin&password=hunter2", "admin", "rtsp://cam.local/s?user=***&password=***"),
    (
        "rtsp://10.0.0.5/cam/realmonitor?channel=1&pwd=hunter2",
        "hunter2",
        "rtsp://10.0.0.5/cam/realmonitor?channel=***&pwd=***",
    ),
    ("rtsp://admin:pa#ss@cam/s", "pa#ss", "rtsp://***@cam/s"),
    ("rtsp://admin:pa/ss@cam:554/s", "ss@", "rtsp://***@cam:554/s"),
    ("rtsp://admin:p@ss@cam/s", "p@ss", "rtsp://***@cam/s"),
    ("rtsp://admin:p?ss@cam/s", "p?ss", "rtsp://***@cam/s"),
    ("rtsps://admin:secret@[fe80::1]:322/s", "secret", "rtsps://***@[fe80::1]:322/s"),
    ("rtsp://[2001:db8::5]/stream", "\x00", "rtsp://[2001:db8::5]/stream"),
    ("rtsp://admin:secret@cam:99999/s", "secret", "rtsp://***@cam:99999/s"),
    ("rtsp://admin:secret@cam:http/s", "secret", "rtsp://***@cam:http/s"),
    ("rtsp://cam/live/Zk3uQ0a9Lw1xY7bP2cR5", "Zk3uQ0a9Lw1xY7bP2cR5", "rtsp://cam/live/***"),
    (
        "https://hooks.slack.com/services/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",
        "T0ken",
        "https://hooks.slack.com/***",
    ),
    (
        "https://acme.webhook.office.com/webhookb2/1b2c@3d4e/IncomingWebhook/9f8e7d/4c5b",
        "9f8e7d",
        "https://***@3d4e/***",
    ),
    ("https://discord.com/api/webhooks/1234/AbCdEf-token_value", "token_value", "https://discord.com/***"),
    ("http://127.0.0.1:8080/hook?token=s3cr3t", "s3cr3t", "http://127.0.0.1:8080/***?token=***"),
    ("https://user:secret@example.com/x", "secret", "https://***@example.com/***"),
    ("SASL_SSL://alice:secret@broker:9093", "secret", "SASL_SSL://***@broker:9093"),
    ("rtsp://cam/s#access_token=abc", "abc", "rtsp://cam/s#***"),
    ("/data/lobby.mkv", "\x00", "/data/lobby.mkv"),
]


@pytest.mark.parametrize(("url", "secret", "redacted"), FORMS)
def test_every_form_is_redacted(url: str, secret: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert secret not in redact_url(url)


@pytest.mark.parametrize(("url", "secret", "redacted"), FORMS)
def test_every_form_is_redacted_inside_text(url: str, secret: str, redacted: str) -> None:
    text = f"camera x: cannot open {url}: Connection refused; 'also {url}'"
    out = redact_text(text)
    assert secret not in out
    assert out == f"camera x: cannot open {redacted}: Connection refused; 'also {redacted}'"


@pytest.mark.parametrize("url", [u for u, _, _ in FORMS])
def test_redaction_is_stable(url: str) -> None:
    once = redact_url(url)
    assert redact_url(once) == once and redact_text(once) == once


@pytest.mark.parametrize(
    "junk",
    [
        "rtsp://",
        "rtsp://@",
        "rtsp://:@:/?#",
        "http://[::1",
        "rtsp://a:b@[zz]:-1/x",
        "x" * 10_000,
        "rtsp://" + "@" * 1000,
        "\udcff://a:b@c",
    ],
)
def test_never_raises(junk: str) -> None:
    redact_url(junk)
    redact_text(junk)


def _logger(stream: io.StringIO) -> logging.Logger:
    logger = logging.getLogger(f"test_redact.{id(stream)}")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    install_log_redaction(logger)
    return logger


def test_the_logging_filter_redacts_messages_arguments_and_tracebacks() -> None:
    out = io.StringIO()
    log = _logger(out)
    url = "rtsp://cam/s?user=admin&password=hunter2"
    log.warning("camera %s unreachable: %s", "dock", f"cannot open {url}")
    log.warning(f"pre-formatted {url}")  # noqa: G004 - what a careless caller (or a library) does
    try:
        raise ConnectionError(f"refused by {url}")
    except ConnectionError:
        log.exception("failed")
    text = out.getvalue()
    assert "hunter2" not in text and "admin" not in text
    assert text.count("rtsp://cam/s?user=***&password=***") == 3 and "Traceback" in text


def test_the_filter_is_installed_once_on_every_handler() -> None:
    log = logging.getLogger("test_redact.once")
    log.addHandler(logging.NullHandler())
    log.addHandler(logging.NullHandler())
    first = install_log_redaction(log)
    assert install_log_redaction(log) is first
    assert all(h.filters == [first] for h in log.handlers)
    assert isinstance(first, RedactingFilter)
