"""Shared test setup. Real services (Kafka broker, RTSP server) come from the fixture plugins below, started and
stopped by the tests themselves; nothing is started by hand."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = ["fixtures.kafka", "fixtures.rtsp"]

SAMPLES = ROOT / "samples"
DEFAULT_MODEL = ROOT / "pipeline" / "models" / "default"


import socket  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def unused_tcp_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
