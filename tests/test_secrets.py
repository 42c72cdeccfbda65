"""Secrets never leave the process: a failing run of the daemon, with a camera whose credentials are in its user
info *and* its query string, is searched — everything it printed, served and wrote — for them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import DEFAULT_MODEL, ROOT, SAMPLES

SECRETS = ("hunter2", "S3cretQ", "qs-admin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - the test's own endpoint
            return bytes(r.read())
    except urllib.error.HTTPError as exc:  # 503: a camera is not streaming
        return bytes(exc.read())


def _everything_written(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_failing_run_leaks_no_credential_anywhere(tmp_path: Path, unused_tcp_port: int) -> None:
    work, conf = tmp_path / "work", tmp_path / "conf"
    work.mkdir()
    conf.mkdir()
    health = _free_port()
    url = f"rtsp://admin:hunter2#x/@127.0.0.1:{unused_tcp_port}/s?user=qs-admin&password=S3cretQ"
    cfg = conf / "site.yaml"
    cfg.write_text(
        json.dumps(
            {
                "model": str(DEFAULT_MODEL),
                "health": {"port": health},
                "cameras": [
                    {"id": "door", "url": url, "open_timeout_s": 1, "backoff_initial_s": 0.2, "backoff_max_s": 0.5},
                    {"id": "lobby", "url": str(SAMPLES / "test_1.mkv")},  # keeps the daemon running, in real time
                ],
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "-vv", "run", "-c", str(cfg), "--duration", "6"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    healthz = metrics = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None and not metrics:
        try:
            body = _get(f"http://127.0.0.1:{health}/healthz")
            if json.loads(body)["cameras"]["door"].get("last_error"):
                healthz, metrics = body, _get(f"http://127.0.0.1:{health}/metrics")
        except (OSError, ValueError, KeyError):
            pass  # not serving yet
        time.sleep(0.3)
    out, err = proc.communicate(timeout=60)
    assert metrics, err.decode()
    assert "127.0.0.1" in json.loads(healthz)["cameras"]["door"]["last_error"]  # the error is there, redacted
    texts = {"stdout": out, "stderr": err, "healthz": healthz, "metrics": metrics, **_everything_written(work)}
    assert any(n.endswith("outbox.db") for n in texts)
    for name, data in texts.items():
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} leaked in {name}"
    assert b"***" in err  # the camera's failure was logged, redacted
