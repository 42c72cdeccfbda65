"""Sinks of ``alerts consume``: stdout, a JSON-lines file that survives torn writes, a webhook that retries and
dead-letters. The webhook tests talk to a real local HTTP server."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from support.alert_messages import lifecycle, message
from support.webhook_server import WebhookServer

from alerts.errors import SinkError
from alerts.sinks import DeadLetterFile, JsonlSink, StdoutSink, WebhookSink, open_sink


def test_stdout_sink_writes_one_wire_message_per_line() -> None:
    out = io.StringIO()
    sink = StdoutSink(out)
    for m in lifecycle("ev-1", "cam-1"):
        sink.deliver(m)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2]


def test_jsonl_sink_appends_and_remembers_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    msgs = lifecycle("ev-1", "cam-1")
    sink = JsonlSink(path)
    for m in msgs:
        sink.deliver(m)
    sink.close()
    again = JsonlSink(path)
    assert again.recent_keys() == [("ev-1", 0), ("ev-1", 1), ("ev-1", 2)]
    again.deliver(message("ev-2"))
    again.close()
    assert [json.loads(line)["event_id"] for line in path.read_text().splitlines()] == ["ev-1"] * 3 + ["ev-2"]


def test_jsonl_sink_cuts_off_a_line_torn_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(message("ev-1").to_json() + b"\n" + message("ev-2").to_json()[:40])
    sink = JsonlSink(path)
    assert sink.recent_keys() == [("ev-1", 0)]
    sink.deliver(message("ev-2"))
    sink.close()
    assert [json.loads(line)["event_id"] for line in path.read_text().splitlines()] == ["ev-1", "ev-2"]


def test_jsonl_sink_that_cannot_write_is_a_sink_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(SinkError, match="cannot open"):
        JsonlSink(tmp_path / "dir")


def test_webhook_retries_with_backoff_until_the_server_recovers() -> None:
    delays: list[float] = []
    with WebhookServer(fail_first=3) as server:
        sink = WebhookSink(server.url, backoff_s=0.1, backoff_max_s=0.3, max_attempts=5, sleep=delays.append)
        msgs = lifecycle("ev-1", "cam-1")
        for m in msgs:
            sink.deliver(m)
    assert [r.status for r in server.requests] == [503, 503, 503, 200, 200, 200]
    assert server.accepted == [json.loads(m.to_json()) for m in msgs]
    # exponential, capped, with +-20 % jitter
    for delay, base in zip(delays, [0.1, 0.2, 0.3], strict=True):
        assert 0.8 * base <= delay <= 1.2 * base
    first = server.requests[0]
    assert first.headers["Idempotency-Key"] == "ev-1:0" and first.headers["Content-Type"] == "application/json"
    assert first.headers["X-Lepton-Event-Type"] == "new"
    assert (sink.stats.delivered, sink.stats.retries, sink.stats.dead_lettered) == (3, 3, 0)


def test_webhook_that_keeps_failing_goes_to_the_dead_letter_file(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    with WebhookServer(fail_first=100, fail_status=500) as server:
        sink = WebhookSink(server.url, max_attempts=3, sleep=lambda s: None, dead_letter=DeadLetterFile(dead))
        sink.deliver(message("ev-1"))
        sink.close()
    assert len(server.requests) == 3
    [record] = [json.loads(line) for line in dead.read_text().splitlines()]
    assert record["message"]["event_id"] == "ev-1" and record["attempts"] == 3
    assert record["error"] == "HTTP 500" and record["sink"] == f"webhook:{server.url.rsplit('/', 1)[0]}/***"


def test_webhook_client_errors_are_not_retried_and_without_dead_letter_fail() -> None:
    with WebhookServer(fail_first=100, fail_status=400) as server:
        sink = WebhookSink(server.url, max_attempts=5, sleep=lambda s: None)
        with pytest.raises(SinkError, match=r"ev-1#0 not delivered after 1 attempt\(s\): HTTP 400"):
            sink.deliver(message("ev-1"))
    assert len(server.requests) == 1


def test_webhook_timeouts_are_bounded_and_retried() -> None:
    with WebhookServer(fail_first=1, stall_s=2.0) as server:
        sink = WebhookSink(server.url, timeout_s=0.3, max_attempts=2, sleep=lambda s: None)
        t0 = time.monotonic()
        sink.deliver(message("ev-1"))
        assert time.monotonic() - t0 < 1.5
    assert len(server.requests) == 2 and sink.stats.retries == 1


def test_unreachable_webhook_is_retried_then_reported(unused_tcp_port: int) -> None:
    sink = WebhookSink(f"http://127.0.0.1:{unused_tcp_port}/x", max_attempts=2, sleep=lambda s: None)
    with pytest.raises(SinkError, match="after 2 attempt"):
        sink.deliver(message("ev-1"))


def test_sink_specs(tmp_path: Path) -> None:
    assert isinstance(open_sink("stdout"), StdoutSink)
    assert isinstance(open_sink(f"jsonl:{tmp_path / 'a.jsonl'}"), JsonlSink)
    hook = open_sink("webhook:https://user:secret@example.com/x", dead_letter=tmp_path / "d.jsonl")
    assert isinstance(hook, WebhookSink) and "secret" not in hook.name
    for bad in ("nope", "jsonl:", "webhook:ftp://h/x"):
        with pytest.raises(ValueError):
            open_sink(bad)


def test_webhook_timeout_is_a_deadline_for_the_whole_request(tmp_path: Path) -> None:
    # every read succeeds (one byte each 0.1 s), so a per-read timeout of 1 s would never trip: ~6 s for the answer
    with WebhookServer(drip_s=0.1) as server:
        sink = WebhookSink(server.url, timeout_s=1.0, max_attempts=1, dead_letter=DeadLetterFile(tmp_path / "d"))
        t0 = time.monotonic()
        sink.deliver(message("ev-1"))
        took = time.monotonic() - t0
    assert took < 1.6
    [record] = [json.loads(line) for line in (tmp_path / "d").read_text().splitlines()]
    assert record["error"] == "no answer within 1 s"


def test_webhook_tokens_never_leave_in_errors_logs_or_dead_letters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "T0ken0123456789abcdefXYZ"
    with WebhookServer(fail_first=100, fail_status=500, path=f"/services/T01/B02/{token}") as server:
        url = f"{server.url}?sig={token}"
        dead = tmp_path / "dead.jsonl"
        sink = WebhookSink(url, max_attempts=2, sleep=lambda s: None, dead_letter=DeadLetterFile(dead))
        sink.deliver(message("ev-1"))
        bare = WebhookSink(url, max_attempts=1, sleep=lambda s: None)
        with pytest.raises(SinkError) as err:
            bare.deliver(message("ev-2"))
        assert server.requests[0].path == f"/services/T01/B02/{token}?sig={token}"  # the real one was used
    for text in (dead.read_text(), str(err.value), sink.name, caplog.text):
        assert token not in text
    assert json.loads(dead.read_text())["sink"].endswith("/***?sig=***")


def test_webhook_url_from_a_file_or_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "hook.url"
    secret.write_text("https://hooks.example/services/abc\n")
    sink = open_sink("webhook", webhook_url_file=secret)
    assert isinstance(sink, WebhookSink) and sink.url == "https://hooks.example/services/abc"
    sink = open_sink("webhook", environ={"ALERTS_WEBHOOK_URL": "https://hooks.example/services/xyz"})
    assert isinstance(sink, WebhookSink) and sink.url == "https://hooks.example/services/xyz"
    with pytest.raises(ValueError, match="ALERTS_WEBHOOK_URL"):
        open_sink("webhook", environ={})
    with pytest.raises(ValueError, match="cannot read"):
        open_sink("webhook", webhook_url_file=tmp_path / "missing")


def test_files_a_sink_creates_are_for_their_owner_only(tmp_path: Path) -> None:
    dead = DeadLetterFile(tmp_path / "new" / "dead.jsonl")
    dead.close()
    sink = JsonlSink(tmp_path / "events.jsonl")
    sink.close()
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new" / "dead.jsonl").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "events.jsonl").stat().st_mode & 0o777 == 0o600
