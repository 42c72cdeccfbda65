"""Consumers over TLS and SASL/SCRAM, against the real broker's SASL_SSL listener (certificates from keytool):
``alerts.Subscriber``, ``alerts tail`` and ``alerts consume`` take the daemon's settings, and the daemon's own
publisher delivers over the same listener."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.alert_messages import lifecycle

from alerts.consumer import Subscriber
from alerts.outbox import Outbox
from alerts.publisher import KafkaPublisher, KafkaSettings

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def secure(broker: Any, topic: str, **kw: Any) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=broker.secure_bootstrap,
        topic=topic,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username=broker.scram_user,
        password=kw.pop("password", broker.scram_password),
        ssl_cafile=broker.ca_file,
        connect_timeout_s=10.0,
        **kw,
    )


def publish_securely(broker: Any, topic: str, outbox: Path, msgs: list[Any]) -> None:
    with Outbox(outbox) as box:
        pub = KafkaPublisher(box, secure(broker, topic))
        pub.start()
        for m in msgs:
            box.put(m)
        assert pub.stop(drain_timeout_s=60) == 0  # nothing left: every message acknowledged over SASL_SSL


def alerts(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alerts.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def test_publisher_and_subscriber_over_sasl_ssl(kafka_broker: Any, kafka_topic: str, tmp_path: Path) -> None:
    msgs = lifecycle("ev-1", "cam-1", updates=1)
    publish_securely(kafka_broker, kafka_topic, tmp_path / "o.db", msgs)
    with Subscriber(
        secure(kafka_broker, kafka_topic),
        group_id="g-secure",
        from_beginning=True,
        session_timeout_s=6.0,
        heartbeat_interval_s=1.0,
    ) as sub:
        got = list(sub.messages(idle_timeout_s=3.0, assignment_timeout_s=60.0))
    assert got == msgs


def test_alerts_tail_and_consume_take_the_daemons_settings(kafka_broker: Any, kafka_topic: str, tmp_path: Path) -> None:
    msgs = lifecycle("ev-2", "cam-2")
    publish_securely(kafka_broker, kafka_topic, tmp_path / "o.db", msgs)
    # flags, the password from the environment
    proc = alerts(
        "tail",
        "--bootstrap",
        kafka_broker.secure_bootstrap,
        "--topic",
        kafka_topic,
        "--from-beginning",
        "--json",
        "--idle-timeout",
        "3",
        "--security-protocol",
        "SASL_SSL",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--username",
        kafka_broker.scram_user,
        "--ssl-cafile",
        str(kafka_broker.ca_file),
        env={"ALERTS_KAFKA_PASSWORD": kafka_broker.scram_password},
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["seq"] for line in proc.stdout.splitlines()] == [m.seq for m in msgs]
    # the daemon's config file, the password from a file; its ssl_cafile relative to the config
    (tmp_path / "ca.pem").write_bytes(kafka_broker.ca_file.read_bytes())
    (tmp_path / "kafka.password").write_text(kafka_broker.scram_password + "\n")
    site = tmp_path / "site.yaml"
    site.write_text(
        json.dumps(
            {
                "cameras": [{"id": "a", "url": "a.mkv"}],
                "kafka": {
                    "bootstrap": [kafka_broker.secure_bootstrap],
                    "topic": kafka_topic,
                    "security_protocol": "SASL_SSL",
                    "sasl_mechanism": "SCRAM-SHA-512",
                    "username": kafka_broker.scram_user,
                    "ssl_cafile": "ca.pem",
                },
            }
        )
    )
    out = tmp_path / "events.jsonl"
    proc = alerts(
        "consume",
        "--kafka-config",
        str(site),
        "--password-file",
        str(tmp_path / "kafka.password"),
        "--group",
        "g-consume",
        "--from-beginning",
        "--sink",
        f"jsonl:{out}",
        "--idle-timeout",
        "3",
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == [m.seq for m in msgs]
    assert kafka_broker.scram_password not in proc.stderr + proc.stdout


def test_a_wrong_password_is_one_clear_line_without_it(kafka_broker: Any, kafka_topic: str) -> None:
    proc = alerts(
        "tail",
        "--bootstrap",
        kafka_broker.secure_bootstrap,
        "--topic",
        kafka_topic,
        "--idle-timeout",
        "2",
        "--connect-timeout",
        "5",
        "--security-protocol",
        "SASL_SSL",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--username",
        kafka_broker.scram_user,
        "--ssl-cafile",
        str(kafka_broker.ca_file),
        env={"ALERTS_KAFKA_PASSWORD": "not-the-Passw0rd"},
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("alerts: "), proc.stderr
    assert "not-the-Passw0rd" not in proc.stderr


def test_the_secure_listener_refuses_a_plaintext_client(kafka_broker: Any, kafka_topic: str) -> None:
    proc = alerts(
        "tail",
        "--bootstrap",
        kafka_broker.secure_bootstrap,
        "--topic",
        kafka_topic,
        "--idle-timeout",
        "2",
        "--connect-timeout",
        "5",
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.startswith("alerts: ")
