"""A real local HTTP server (``http.server`` on 127.0.0.1) standing in for a webhook receiver.

It answers the first ``fail_first`` POSTs with ``fail_status`` (or by sleeping ``stall_s`` before answering, to
trip a client timeout), then 200, and records every request: what a webhook sink sent and what was accepted.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class WebhookServer:
    fail_first: int = 0
    fail_status: int = 503
    stall_s: float = 0.0  # > 0: the failing answers come after this long (a client timeout trips first)
    drip_s: float = 0.0  # > 0: every answer comes one byte at a time, this long apart (each read succeeds)
    path: str = "/hook"
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}{self.path}"

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Bodies (parsed) of the requests answered 200, in arrival order."""
        return [json.loads(r.body) for r in self.requests if r.status == 200]

    def __enter__(self) -> WebhookServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with owner._lock:
                    failing = len(owner.requests) < owner.fail_first
                    status = owner.fail_status if failing else 200
                    owner.requests.append(Request(self.path, dict(self.headers), body, status))
                if failing and owner.stall_s:
                    time.sleep(owner.stall_s)
                if owner.drip_s:
                    answer = f"HTTP/1.1 {status} OK\r\nContent-Length: 2\r\n\r\n{{}}".encode()
                    try:
                        for i in range(len(answer)):
                            self.wfile.write(answer[i : i + 1])
                            self.wfile.flush()
                            time.sleep(owner.drip_s)
                    except OSError:
                        pass  # the client gave up
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="webhook-server", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
