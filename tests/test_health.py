"""The health endpoint: loopback by default, a warning when it is not, a bearer token when one is set, and the
credentials of a camera's error never in what it serves."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge.health import HealthServer, Snapshot, is_loopback


def snapshot() -> Snapshot:
    error = "rtsp://cam/s?user=admin&password=hunter2: connection refused"
    return Snapshot(cameras={"door": {"state": "backoff", "frames": 3, "last_error": error}}, outbox={"pending": 0})


@contextmanager
def serving(**kwargs: object) -> Iterator[HealthServer]:
    server = HealthServer(snapshot, port=0, **kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:  # noqa: S310 - our own endpoint
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_served_errors_carry_no_credentials() -> None:
    with serving() as server:
        status, body, _ = get(server.port, "/healthz")
    assert status == 503 and b"hunter2" not in body and b"admin" not in body
    assert json.loads(body)["cameras"]["door"]["last_error"].startswith("rtsp://cam/s?user=***&password=***")


def test_a_token_guards_every_path() -> None:
    with serving(token="s3cr3t-t0ken") as server:
        for path in ("/healthz", "/metrics", "/"):
            status, body, headers = get(server.port, path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer") and b"door" not in body
            assert get(server.port, path, token="wrong")[0] == 401
        assert get(server.port, "/metrics", token="s3cr3t-t0ken")[0] == 200
        assert get(server.port, "/healthz", token="s3cr3t-t0ken")[0] == 503  # answered: the camera is down


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.7", False),
        ("edge.example", False),
    ],
)
def test_which_binds_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_bind_beyond_loopback_without_a_token_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edge.health"):
        HealthServer(snapshot, host="0.0.0.0", port=0).stop()  # noqa: S104 - the case under test
        assert "without authentication" in caplog.text and "token_file" in caplog.text
        caplog.clear()
        HealthServer(snapshot, host="0.0.0.0", port=0, token="t").stop()  # noqa: S104
        HealthServer(snapshot, host="127.0.0.1", port=0).stop()
        assert caplog.text == ""


def test_the_daemon_reads_its_token_from_the_file_the_config_names(tmp_path: Path) -> None:
    from edge.config import EdgeConfig
    from edge.daemon import _health_token
    from edge.errors import StartupError

    token = tmp_path / "health.token"
    token.write_text("s3cr3t-t0ken\n")
    cfg = EdgeConfig.model_validate(
        {
            "health": {"host": "0.0.0.0", "token_file": str(token)},  # noqa: S104
            "cameras": [{"id": "a", "url": "a.mkv"}],
        }
    )
    assert cfg.health is not None and _health_token(cfg.health.token_file) == "s3cr3t-t0ken"
    with pytest.raises(ValueError, match="token_file"):
        EdgeConfig.model_validate(
            {"health": {"token_file": str(tmp_path / "absent")}, "cameras": [{"id": "a", "url": "a.mkv"}]}
        )
    token.write_text("two words\n")
    with pytest.raises(StartupError, match="one token"):
        _health_token(token)
