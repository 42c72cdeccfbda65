"""``--log-format json``: one JSON object per line on stderr, credentials redacted as in text."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from pipeline.logformat import JsonFormatter
from pipeline.redact import RedactingFilter


def test_a_record_is_one_redacted_json_object() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    try:
        raise ConnectionError("rtsp://admin:hunter2@192.0.2.1/s refused")
    except ConnectionError:
        record = logging.getLogger("edge.test").makeRecord(
            "edge.test",
            logging.ERROR,
            __file__,
            1,
            "camera %s: %s",
            ("door", "rtsp://admin:hunter2@h/x"),
            sys.exc_info(),
        )
    assert handler.filter(record)
    line = handler.format(record)
    assert "\n" not in line and "hunter2" not in line
    obj = json.loads(line)
    assert obj["level"] == "ERROR" and obj["logger"] == "edge.test" and obj["time"].endswith("Z")
    assert obj["message"].startswith("camera door: rtsp://***@h/x") and "ConnectionError" in obj["exc"]


def test_the_daemon_logs_json_lines_and_fails_with_one(tmp_path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        "cameras: [{id: door, url: 'rtsp://admin:hunter2@127.0.0.1:9/s', open_timeout_s: 2}]\n"
        f"outbox: {{path: {tmp_path / 'o.db'}}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--log-format", "json", "-v", "run", "-c", str(cfg)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(obj) for obj in lines)
    assert "hunter2" not in proc.stderr and "camera door" in lines[-1]["message"]
