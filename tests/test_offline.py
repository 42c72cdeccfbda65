"""Camera offline / online alerts: the monitor on a hand-driven clock, then a real camera (the RTSP simulator)
killed and restarted under a daemon that delivers to a real Kafka broker."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from alerts.schema import EventMessage, ModelProvenance
from edge.offline import OfflineMonitor
from pipeline.sources.capture import CaptureStats, SourceState

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
MODEL = ModelProvenance(package_id="p", version="1", engine="onnxruntime", calibration="c")
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.now - 100.0)


def stats(state: SourceState, age_s: float) -> CaptureStats:
    return CaptureStats(
        camera_id="door",
        state=state,
        state_age_s=age_s,
        frames=0,
        audio_windows=0,
        reconnects=0,
        stalls=0,
        crashes=0,
        drops=0,
        decode_errors=0,
        discontinuities=0,
        last_error=None,
    )


def monitor(clock: Clock, sent: list[EventMessage], after: float = 30.0) -> OfflineMonitor:
    ids = iter(f"outage{i}" for i in range(10))
    return OfflineMonitor(
        {"door": after}, sent.append, site="s", model=MODEL, clock=clock, wall=clock.wall, new_id=lambda: next(ids)
    )


def test_offline_after_the_delay_dated_from_when_streaming_stopped_then_online_with_the_same_id() -> None:
    clock = Clock()
    sent: list[EventMessage] = []
    mon = monitor(clock, sent)
    mon.check({"door": stats(SourceState.STREAMING, 50.0)}, {"door": 12.0})
    clock.now += 1.0
    mon.check({"door": stats(SourceState.BACKOFF, 0.6)}, {"door": 12.4})  # it left streaming 0.6 s ago
    clock.now += 29.0
    mon.check({"door": stats(SourceState.CONNECTING, 0.1)}, {"door": 12.4})  # 29.6 s down: not yet
    assert sent == []
    clock.now += 0.5
    mon.check({"door": stats(SourceState.BACKOFF, 0.2)}, {"door": 12.4})
    [offline] = sent
    assert (offline.type, offline.seq, offline.event_id, offline.label) == ("offline", 0, "outage0", "backoff")
    assert offline.start_time == T0 + timedelta(seconds=0.4) and offline.start_pts == 12.4
    mon.check({"door": stats(SourceState.BACKOFF, 1.0)}, {})
    assert len(sent) == 1  # one alert per outage
    clock.now += 10.0
    mon.check({"door": stats(SourceState.STREAMING, 2.0)}, {"door": 14.0})
    online = sent[1]
    assert (online.type, online.seq, online.event_id) == ("online", 1, "outage0")
    assert online.end_time == clock.wall() - timedelta(seconds=2.0)
    assert mon.counters("door") == {"offline_alerts": 1, "online_alerts": 1, "offline": False}


def test_a_short_outage_sends_nothing_and_a_stopping_daemon_is_no_outage() -> None:
    clock = Clock()
    sent: list[EventMessage] = []
    mon = monitor(clock, sent, after=5.0)
    mon.check({"door": stats(SourceState.BACKOFF, 0.0)}, {})
    clock.now += 4.0
    mon.check({"door": stats(SourceState.STREAMING, 0.5)}, {})
    clock.now += 10.0
    mon.check({"door": stats(SourceState.STOPPED, 9.0)}, {})
    assert sent == []


def test_an_outage_left_open_by_the_previous_run_gets_its_online() -> None:
    clock = Clock()
    sent: list[EventMessage] = []
    left = EventMessage.camera_offline(
        event_id="old", camera_id="door", site="s", since=T0, since_pts=0.0, state="failed", model=MODEL, decided_at=T0
    )
    mon = monitor(clock, sent, after=5.0)
    mon.restore([left])
    mon.check({"door": stats(SourceState.CONNECTING, 100.0)}, {})
    assert sent == []  # still down: no second offline
    mon.check({"door": stats(SourceState.STREAMING, 0.0)}, {})
    assert [(m.event_id, m.type, m.seq) for m in sent] == [("old", "online", 1)]


def test_status_messages_keep_the_schema_rules() -> None:
    msg = EventMessage.camera_offline(
        event_id="x", camera_id="door", site="s", since=T0, since_pts=1.0, state="stalled", model=MODEL, decided_at=T0
    )
    assert EventMessage.from_json(msg.to_json()) == msg and msg.is_status
    back = msg.back_online(at=T0 + timedelta(seconds=40), decided_at=T0 + timedelta(seconds=40))
    assert back.end_time is not None and back.label is None
    data = json.loads(back.to_json())
    for change, problem in (
        ({"seq": 2}, "seq"),
        ({"end_time": None}, "end_time"),
        ({"peak_score": 1.0}, "scores"),
        ({"schema_version": "1.2"}, "1.3"),
    ):
        with pytest.raises(ValueError, match=problem):
            EventMessage.model_validate({**data, **change})


# -- a real camera, a real broker ------------------------------------------------------------------------------


def _cameras(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/cameras", timeout=2) as r:  # noqa: S310
        return {c["camera_id"]: c for c in json.loads(r.read())}


def _wait_state(port: int, state: str, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _cameras(port)["door"]["state"] == state:
                return time.time()
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"camera door never reached {state}")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_killed_camera_is_reported_offline_then_online_through_kafka(
    tmp_path: Path, rtsp_server: Any, kafka_broker: Any, kafka_topic: str, unused_tcp_port: int
) -> None:
    from test_e2e import consume_all

    server = rtsp_server({"door": SAMPLES / "normal_eval.mkv"})
    offline_after = 3.0
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        site: drill
        outbox: {{path: {tmp_path / "outbox.db"}}}
        kafka: {{bootstrap: "{kafka_broker.bootstrap}", topic: {kafka_topic}}}
        health: {{port: {unused_tcp_port}}}
        cameras:
          - {{id: door, url: "{server.url("door")}", offline_after_s: {offline_after}, backoff_initial_s: 0.2,
              backoff_max_s: 1.0, stall_timeout_s: 3}}
    """)
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(cfg), "-q"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_state(unused_tcp_port, "streaming", 60)
        time.sleep(2.0)
        killed = time.time()
        server.stop(kill=True)
        time.sleep(offline_after + 3.0)
        server.restart()
        back = _wait_state(unused_tcp_port, "streaming", 60)
        time.sleep(1.0)
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    records = [(k, h, m) for k, h, m in consume_all(kafka_broker.bootstrap, kafka_topic) if m.is_status]
    assert [(m.type, m.seq) for _, _, m in records] == [("offline", 0), ("online", 1)], err
    (k0, h0, offline), (_, h1, online) = records
    assert k0 == b"door" and h0 == {"schema_version": "1.3", "type": "offline"} and h1["type"] == "online"
    assert offline.event_id == online.event_id
    assert killed - 1.0 <= offline.start_time.timestamp() <= killed + 2.0  # dated from when it stopped streaming
    waited = offline.decided_at.timestamp() - offline.start_time.timestamp()
    assert offline_after - 0.3 <= waited <= offline_after + 1.0
    assert online.end_time is not None and abs(online.end_time.timestamp() - back) <= 1.5
    tail = subprocess.run(
        [
            sys.executable,
            "-m",
            "alerts.cli",
            "tail",
            "--bootstrap",
            kafka_broker.bootstrap,
            "--topic",
            kafka_topic,
            "--group",
            "tail-drill",
            "--from-beginning",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in tail.stdout.splitlines() if " offline " in line or " online " in line]
    assert len(lines) == 2 and "state=" in lines[0] and "offline_for=" in lines[1], tail.stdout + tail.stderr
