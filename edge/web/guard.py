"""Who may use the HTTP app: a bearer token, loopback-only Host names, no cross-site writes.

* **Token** (``health.token_file``; ``edge console --token-file``): every request needs ``Authorization: Bearer
  <token>`` or the console's cookie, else 401. A browser cannot send a header on page loads, so a page opened once
  with ``?token=<token>`` gets the cookie (HttpOnly, SameSite=Strict; its value an HMAC of the token, not the token)
  and is redirected to itself without the query.
* **No token**: bound to loopback, only requests whose ``Host`` is a loopback name are answered (a web page cannot
  reach the console through DNS rebinding); bound beyond loopback, ``/healthz`` and ``/metrics`` are served (with
  the warning logged at start) and the console is not (403): its pages show people and take verdicts.
* **Writes** (POST) must be JSON (``Content-Type: application/json``: a cross-site form cannot send it without a
  CORS preflight, which is never answered) and, when the browser names an ``Origin``, come from this host.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import URL, Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "lepton_console"
_OPEN_PATHS = ("/healthz", "/metrics")  # served without a token beyond loopback, as before the console
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"lepton-edge console", hashlib.sha256).hexdigest()


class Guard:
    """ASGI middleware applying the rules of the module docstring."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback: bool) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback
        self._bearer = f"Bearer {token}".encode() if token is not None else None
        self._cookie = cookie_value(token).encode() if token is not None else None
        self.closers: list[Callable[[], None]] = []  # run by close(), once the server stopped

    def close(self) -> None:
        for closer in self.closers:
            closer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._check(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, request: Request) -> Response | None:
        path = request.url.path
        if self.token is not None:
            given = request.query_params.get("token")
            if (
                given is not None
                and request.method == "GET"
                and hmac.compare_digest(given.encode(), self.token.encode())
            ):
                return self._login(request.url)
            if not self._authorised(request):
                refusal = PlainTextResponse("bearer token required\n", 401)
                # as HTTP spells it (clients that compare names exactly exist), not Starlette's lower case
                refusal.raw_headers.append((b"WWW-Authenticate", b'Bearer realm="lepton-edge"'))
                return refusal
        elif self.loopback:
            if _host_name(request.headers.get("host") or "").lower() not in _LOOPBACK_NAMES:
                return PlainTextResponse("this server answers to localhost names only\n", 403)
        elif not path.startswith(_OPEN_PATHS):
            return PlainTextResponse(
                "the console needs a token when it is reachable from the network (health.token_file)\n", 403
            )
        if request.method not in ("GET", "HEAD"):
            return _write_refusal(request.headers)
        return None

    def _authorised(self, request: Request) -> bool:
        assert self._bearer is not None and self._cookie is not None
        header = (request.headers.get("authorization") or "").encode("utf-8", "replace")
        cookie = (request.cookies.get(COOKIE) or "").encode("utf-8", "replace")
        return hmac.compare_digest(header, self._bearer) or hmac.compare_digest(cookie, self._cookie)

    def _login(self, url: URL) -> Response:
        assert self.token is not None
        query = urlencode([(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k != "token"])
        response = RedirectResponse(url.path + (f"?{query}" if query else ""), 303)
        response.set_cookie(COOKIE, cookie_value(self.token), httponly=True, samesite="strict", path="/")
        return response


def _host_name(host: str) -> str:
    """The name of a ``Host`` header, without its port (``[::1]:8971`` → ``[::1]``)."""
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0]


def _write_refusal(headers: Headers) -> Response | None:
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return PlainTextResponse("writes take application/json\n", 415)
    origin = headers.get("origin")
    if origin is not None and origin != "null":
        if urlsplit(origin).netloc.lower() != (headers.get("host") or "").lower():
            return PlainTextResponse("cross-site write refused\n", 403)
    elif origin == "null":
        return PlainTextResponse("cross-site write refused\n", 403)
    return None
