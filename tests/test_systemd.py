"""Running as a systemd service: the daemon's sd_notify messages over a real unix datagram socket, and the unit
file as ``systemd-analyze verify`` reads it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES

from edge.systemd import Notifier

UNIT = ROOT / "deploy" / "lepton-edge.service"


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket and the NOTIFY_SOCKET value that names it (a path, or ``@name``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        name = f"@lepton-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name[1:])
    yield name, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_notifier_sends_each_state_as_one_datagram(notify_socket):
    name, sock = notify_socket
    n = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "4000000"})
    assert n.enabled and n.watchdog_interval_s == 2.0
    assert n.ready("scoring 1 camera(s)") and n.watchdog() and n.stopping()
    assert not n.stopping()  # once
    assert received(sock) == [
        "READY=1\nSTATUS=scoring 1 camera(s)",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping: draining cameras and the outbox",
    ]


def test_notifier_without_a_socket_or_for_another_process_does_nothing():
    assert not Notifier({}).enabled and not Notifier({}).ready("x")
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None
    assert not Notifier({"NOTIFY_SOCKET": "relative.sock"}).enabled


def test_a_socket_nobody_listens_on_is_counted_not_raised(tmp_path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not n.ready("x") and not n.watchdog()
    assert n.failures == 2


def edge_run(tmp_path: Path, config: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(cfg), "--duration", "3", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.mark.timeout(180)
def test_edge_run_says_ready_pings_the_watchdog_and_says_stopping(notify_socket, tmp_path):
    name, sock = notify_socket
    config = f"site: s\ncameras:\n  - {{id: cam, url: {SAMPLES / 'normal_eval.mkv'}, replay: realtime}}\n"
    proc = edge_run(tmp_path, config, {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000000"})
    assert proc.returncode == 0, proc.stderr
    messages = received(sock)
    assert messages[0] == "READY=1\nSTATUS=scoring 1 camera(s)"
    assert messages[-1].startswith("STOPPING=1\n")
    pings = messages[1:-1]
    # every 0.5 s over the ~3 s between ready and the duration's end (a loaded machine may miss a few)
    assert set(pings) == {"WATCHDOG=1"} and len(pings) >= 3, messages


@pytest.mark.timeout(120)
def test_edge_run_that_cannot_open_its_cameras_never_says_ready(notify_socket, tmp_path):
    name, sock = notify_socket
    config = f"site: s\ncameras:\n  - {{id: cam, url: {tmp_path / 'missing.mkv'}}}\n"
    proc = edge_run(tmp_path, config, {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000000"})
    assert proc.returncode != 0
    assert not any(m.startswith("READY=1") for m in received(sock))


def unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_the_unit_runs_the_daemon_as_a_notify_service_with_a_watchdog():
    s = unit_settings()
    assert s["Type"] == "notify" and s["Restart"] == "on-failure" and s["StateDirectory"] == "lepton-edge"
    assert int(s["WatchdogSec"]) > 0 and s["User"] not in ("", "root")
    assert s["ExecStart"].split()[1:3] == ["run", "-c"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # verify insists that ExecStart's program exists: point it at the edge command of this environment
    edge = Path(sys.executable).with_name("edge")
    if not edge.exists():
        pytest.skip(f"no edge command beside {sys.executable}")
    exec_start = unit_settings()["ExecStart"].split()[0]
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(exec_start, str(edge)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # it exits 0 on unknown keys and bad values too, with a warning: any output is a problem
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stderr
