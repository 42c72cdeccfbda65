"""End to end, on real parts: sample clips → (RTSP server →) `edge run` → outbox / Kafka → consumers.

These are the tests a user's first hour depends on: the demo config produces the expected events and
``alerts tail`` prints them; a clip served by a real RTSP server reaches a real Kafka broker as ``new`` and ``end``
events overlapping every ground-truth anomaly, and a normal clip served the same way produces none.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from conftest import DEFAULT_MODEL, ROOT, SAMPLES

from alerts.outbox import Outbox
from alerts.schema import EventMessage

pytestmark = pytest.mark.slow


def ground_truth(clip: str) -> dict:
    return json.loads((SAMPLES / f"{Path(clip).stem}.json").read_text())


def intervals(messages: list[EventMessage], camera: str) -> list[tuple[float, float]]:
    """(start_pts, end_pts) of each ended event of a camera."""
    return [
        (m.start_pts, m.end_pts)
        for m in messages
        if m.camera_id == camera and m.type == "end" and m.end_pts is not None
    ]


def assert_every_anomaly_overlapped(events: list[tuple[float, float]], truth: dict, slack: float = 0.5) -> None:
    for a in truth["anomalies"]:
        hit = [e for e in events if e[0] <= a["end"] + slack and e[1] >= a["start"] - slack]
        assert hit, f"no event overlaps {a['kind']} {a['start']}-{a['end']} ({a['modalities']}); events: {events}"


def edge_cli(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(240)
def test_demo_config_writes_the_expected_events_and_alerts_tail_prints_them(tmp_path):
    proc = edge_cli("run", "-c", str(ROOT / "configs" / "demo.yaml"), cwd=tmp_path, timeout=200)
    assert proc.returncode == 0, proc.stderr
    assert "  new     " in proc.stdout and "  end     " in proc.stdout
    with Outbox(tmp_path / ".lepton" / "outbox.db", readonly=True) as outbox:
        messages = [row.message() for row in outbox.read(limit=10_000)]
    assert messages
    for cam, clip in (("plaza-1", "test_1"), ("plaza-2", "test_2"), ("plaza-3", "test_3")):
        truth = ground_truth(clip)
        events = intervals(messages, cam)
        assert_every_anomaly_overlapped(events, truth)
        # every `new` has its `end` (the replay ended, so nothing stays open)
        news = {m.event_id for m in messages if m.camera_id == cam and m.type == "new"}
        assert news == {m.event_id for m in messages if m.camera_id == cam and m.type == "end"}

    tail = subprocess.run(
        [sys.executable, "-m", "alerts.cli", "tail", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert tail.returncode == 0, tail.stderr
    printed = [EventMessage.model_validate_json(line) for line in tail.stdout.splitlines() if line.strip()]
    assert [(m.event_id, m.seq) for m in printed] == [(m.event_id, m.seq) for m in messages]


def consume_all(
    bootstrap: str, topic: str, idle_s: float = 8.0, limit_s: float = 60.0
) -> list[tuple[bytes, dict, EventMessage]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"e2e-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=int(idle_s * 1000),
        request_timeout_ms=30000,
    )
    got = []
    deadline = time.monotonic() + limit_s
    try:
        for record in consumer:
            headers = {k: v.decode() for k, v in record.headers}
            got.append((record.key, headers, EventMessage.from_json(record.value)))
            if time.monotonic() > deadline:
                break
        consumer.commit()
    finally:
        consumer.close()
    return got


@pytest.mark.timeout(300)
def test_rtsp_cameras_to_kafka(tmp_path, rtsp_server, kafka_broker, kafka_topic):
    server = rtsp_server({"plaza": SAMPLES / "test_1.mkv", "quiet": SAMPLES / "normal_eval.mkv"})
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        site: e2e
        model: {DEFAULT_MODEL}
        outbox: {{path: {tmp_path / "outbox.db"}}}
        kafka: {{bootstrap: "{kafka_broker.bootstrap}", topic: {kafka_topic}}}
        cameras:
          - {{id: plaza, url: "{server.url("plaza")}"}}
          - {{id: quiet, url: "{server.url("quiet")}"}}
    """)
    )
    plaza = ground_truth("test_1")
    # run until the plaza clip has played once; the simulator then loops the file
    proc = edge_cli("run", "-c", str(cfg), "--duration", str(plaza["duration_s"] - 1.0), cwd=tmp_path, timeout=150)
    assert proc.returncode == 0, proc.stderr
    records = consume_all(kafka_broker.bootstrap, kafka_topic)
    assert records, "no event reached Kafka"
    for key, headers, msg in records:
        assert key == msg.camera_id.encode()
        assert headers["type"] == msg.type and headers["schema_version"] == msg.schema_version
    messages = [m for _, _, m in records]
    plaza_msgs = [m for m in messages if m.camera_id == "plaza"]
    assert {m.type for m in plaza_msgs} >= {"new", "end"}
    assert_every_anomaly_overlapped(intervals(messages, "plaza"), plaza)
    # the normal clip loops after its 40 s: the jump back to its first frame is the simulator's, not the scene's
    quiet_len = ground_truth("normal_eval")["duration_s"]
    quiet = [m for m in messages if m.camera_id == "quiet" and m.start_pts < quiet_len - 0.5]
    assert quiet == [], f"normal footage produced events: {[(m.type, m.start_pts, m.peak_score) for m in quiet]}"
