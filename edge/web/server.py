"""An ASGI app served by uvicorn on a thread of its own, on a socket bound when the server is made.

Binding first means a port in use fails the daemon's start with an ``OSError`` (not a log line from another
thread), and port 0 gives a free port the caller can read. uvicorn is told to leave logging and signals alone:
the daemon owns both (it installs no signal handlers off the main thread anyway). ``stop`` asks the server to
exit and waits a bounded time for open connections (``timeout_graceful_shutdown``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0


class WebServer:
    def __init__(self, app: ASGIApp, *, host: str, port: int, name: str = "web") -> None:
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host.strip("[]"), port))
            self._sock.listen(128)
        except OSError:
            self._sock.close()
            raise
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=5,
            timeout_graceful_shutdown=int(_STOP_TIMEOUT_S) - 2,
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except Exception:  # noqa: BLE001 - the HTTP server is beside the pipeline: it must not take it down
            log.exception("the HTTP server stopped")

    def start(self) -> None:
        """Serve, and return once the server accepts connections (at most 10 s)."""
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(_STOP_TIMEOUT_S)
        self._sock.close()
