"""``alerts tail`` from the local outbox (the embedded bus) and from Kafka; errors: one line, no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.alert_messages import lifecycle, message

from alerts.cli import main
from alerts.console import format_event
from alerts.outbox import DEFAULT_OUTBOX_PATH, Outbox

REPO = Path(__file__).resolve().parents[1]
CONSUME = ["consume", "--bootstrap", "k:9092", "--topic", "t", "--group", "g"]


def write_outbox(path: Path, msgs: list[Any]) -> None:
    with Outbox(path, local_only=True) as box:
        for m in msgs:
            box.put(m)


def publish(bootstrap: str, topic: str, outbox_path: Path, msgs: list[Any]) -> None:
    """Deliver ``msgs`` to the topic the way the daemon does: through an outbox and the publisher."""
    from alerts.publisher import KafkaPublisher, KafkaSettings

    with Outbox(outbox_path) as outbox:
        pub = KafkaPublisher(outbox, KafkaSettings(bootstrap=bootstrap, topic=topic))
        pub.start()
        for m in msgs:
            outbox.put(m)
        assert pub.stop(drain_timeout_s=30) == 0


@contextmanager
def alerts_process(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """``alerts ARGV`` as its own process (to send it signals), stdout and stderr piped; killed if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "alerts.cli", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ctrl_c(proc: subprocess.Popen[str], timeout_s: float) -> None:
    """Ctrl-C ends it with status 130 within ``timeout_s``, without a traceback."""
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout_s) == 130
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_tail_json_prints_every_event_of_the_default_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    msgs = lifecycle("ev-1", "cam-1", updates=1) + lifecycle("ev-2", "cam-2")
    write_outbox(DEFAULT_OUTBOX_PATH, msgs)
    assert main(["tail", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [json.loads(m.to_json()) for m in msgs]
    assert err == ""


def test_tail_human_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "o.db"
    msgs = lifecycle("ev-1", "cam-1", updates=1)
    write_outbox(path, msgs)
    assert main(["tail", "--outbox", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [format_event(m) for m in msgs]
    end = lines[-1]
    assert end.startswith("2026-05-01T12:00:14.000Z  cam-1  end ")
    assert "ev-1#2" in end and "score=0.82" in end and "audio=0.40 video=0.82" in end
    assert "reason=quiet" in end and "duration=20.0s" in end
    assert "reason" not in lines[0] and "update=peak" in lines[1]


def test_missing_outbox_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.db"
    assert main(["tail", "--outbox", str(missing)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"alerts: no outbox at {missing} (is the daemon configured with another outbox path?)\n"
    assert not missing.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["tail", "--topic", "t"],
        ["tail", "--bootstrap", "k:9092"],
        ["tail", "--bootstrap", "k:9092", "--topic", "t", "--outbox", "x.db"],
        ["tail", "--bootstrap", "nohostport", "--topic", "t"],
        ["tail", "--idle-timeout", "-1"],
        ["frobnicate"],
        ["consume", "--bootstrap", "k:9092", "--topic", "t", "--group", "g"],  # no --sink
        ["consume", "--bootstrap", "k:9092", "--topic", "t", "--sink", "stdout"],  # no --group
        [*CONSUME, "--sink", "kafka:elsewhere"],
        [*CONSUME, "--sink", "webhook:ftp://h/x"],
        [*CONSUME, "--sink", "stdout", "--webhook-url-file", "u"],
        [*CONSUME, "--sink", "stdout", "--on-future-schema", "dead-letter"],
        [*CONSUME, "--sink", "stdout", "--from-beginning", "--from-offset", "3"],
        [*CONSUME, "--sink", "stdout", "--from-offset", "0:x"],
        [*CONSUME, "--sink", "stdout", "--from-time", "yesterday"],
        [*CONSUME, "--sink", "stdout", "--webhook-attempts", "0"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: alerts" in err and "Traceback" not in err


@pytest.mark.timeout(60)
def test_tail_follow_prints_new_events_until_ctrl_c(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    write_outbox(path, [message("ev-1", 0)])
    with alerts_process(["tail", "--follow", "--json", "--outbox", str(path)]) as proc:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["seq"] == 0
        with Outbox(path, local_only=True) as box:  # the daemon writes on
            box.put(message("ev-1", 1))
        assert json.loads(proc.stdout.readline())["seq"] == 1
        ctrl_c(proc, 10)


@pytest.mark.timeout(60)
def test_unreachable_broker_is_a_bounded_clear_error(unused_tcp_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    port = unused_tcp_port
    t0 = time.monotonic()
    rc = main(["tail", "--bootstrap", f"127.0.0.1:{port}", "--topic", "t", "--connect-timeout", "2"])
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err.startswith(f"alerts: cannot reach Kafka at 127.0.0.1:{port} within 2 s")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert elapsed < 15


@pytest.mark.timeout(60)
def test_consume_from_an_unreachable_broker_is_a_bounded_clear_error(
    unused_tcp_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.monotonic()
    rc = main(
        [
            *CONSUME[:2],
            f"127.0.0.1:{unused_tcp_port}",
            *CONSUME[3:],
            "--sink",
            f"jsonl:{tmp_path / 'o'}",
            "--connect-timeout",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith(f"alerts: cannot reach Kafka at 127.0.0.1:{unused_tcp_port} within 2 s")
    assert "Traceback" not in err and time.monotonic() - t0 < 15


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_tail_json_from_kafka(
    kafka_broker: Any, kafka_topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    msgs = lifecycle("ev-1", "cam-1", updates=1) + lifecycle("ev-2", "cam-2")
    publish(kafka_broker.bootstrap, kafka_topic, tmp_path / "o.db", msgs)

    argv = ["tail", "--bootstrap", kafka_broker.bootstrap, "--topic", kafka_topic, "--group", "cli-test"]
    assert main([*argv, "--from-beginning", "--idle-timeout", "2", "--json"]) == 0
    out = capsys.readouterr().out
    got = [json.loads(line) for line in out.splitlines()]
    # per camera, in order (cameras may sit on different partitions)
    for cam in ("cam-1", "cam-2"):
        assert [g for g in got if g["camera_id"] == cam] == [
            json.loads(m.to_json()) for m in msgs if m.camera_id == cam
        ]

    # The group committed what it printed: running again without --from-beginning prints nothing new.
    assert main([*argv, "--idle-timeout", "2"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_tail_follow_from_kafka_stops_on_ctrl_c_and_commits_what_it_printed(
    kafka_broker: Any, kafka_topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    msgs = lifecycle("ev-1", "cam-1")
    publish(kafka_broker.bootstrap, kafka_topic, tmp_path / "o.db", msgs)
    argv = ["tail", "--bootstrap", kafka_broker.bootstrap, "--topic", kafka_topic, "--group", "ctrl-c"]
    with alerts_process([*argv, "--from-beginning", "--follow", "--json"]) as proc:
        assert proc.stdout is not None
        assert [json.loads(proc.stdout.readline())["seq"] for _ in msgs] == [m.seq for m in msgs]
        ctrl_c(proc, 15)
    # it committed what it printed: the group starts after it
    assert main([*argv, "--idle-timeout", "2"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_tail_missing_topic_is_a_clear_error(kafka_broker: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "--bootstrap", kafka_broker.bootstrap, "--topic", "no-such-topic"]) == 1
    err = capsys.readouterr().err
    assert err == f"alerts: topic 'no-such-topic' does not exist on {kafka_broker.bootstrap}\n"


def test_tail_escapes_what_a_terminal_would_obey(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a row written before the schema refused control characters (or by hand): printed, never obeyed
    path = tmp_path / "o.db"
    good = message("ev-1")
    write_outbox(path, [good])
    raw = good.to_json().replace(b'"cam-1"', b'"cam\\u001b[2J\\u001b]0;pwned\\u0007"')
    with Outbox(path, local_only=True) as box:
        box._conn.execute("UPDATE outbox SET payload = ?", (raw,))
    assert main(["tail", "--outbox", str(path)]) == 0
    assert main(["tail", "--outbox", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "# row 1: not a valid event message" in out
    line = format_event(good.model_copy(update={"camera_id": "cam\x1b[31m"}))  # a message built in memory
    assert "\x1b" not in line and "cam\\x1b[31m" in line
