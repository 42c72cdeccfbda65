"""The HTTP app of the daemon and of ``edge console``: health, metrics, the console's pages, API and media.

One Starlette app, built by ``build_app``: ``/healthz`` and ``/metrics`` when a snapshot function is given (the
daemon), the console (``/review``, ``/live``, ``/api/...``, ``/media/...``, ``/static/...``) when a
``ConsoleContext`` is, both behind ``edge.web.guard.Guard`` (token, loopback names, JSON-only writes). Handlers
that touch SQLite or files are plain functions: Starlette runs them on its thread pool, never on the event loop.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from edge.health import Snapshot, health_body, render_metrics
from edge.web import api, pages
from edge.web.console import Console
from edge.web.context import ConsoleContext
from edge.web.guard import Guard

log = logging.getLogger(__name__)


def build_app(
    console: ConsoleContext | None,
    *,
    snapshot: Callable[[], Snapshot] | None = None,
    collectors: Sequence[Collector] = (),
    token: str | None = None,
    loopback: bool = True,
) -> Guard:
    """The app (see the module docstring). ``collectors``: more metrics for ``/metrics`` (histograms, process).
    Its ``close()`` releases the console's store and cache once the server stopped."""
    routes: list[BaseRoute] = []
    if snapshot is not None:
        routes += _health_routes(snapshot, collectors)
    state: Console | None = Console(console) if console is not None else None
    if state is not None:
        routes += console_routes(state)
    guard = Guard(Starlette(routes=routes), token=token, loopback=loopback)
    if state is not None:
        guard.closers.append(state.close)
    return guard


def _health_routes(snapshot: Callable[[], Snapshot], collectors: Sequence[Collector]) -> list[BaseRoute]:
    def taken() -> Snapshot | Response:
        try:
            return snapshot()
        except Exception:  # noqa: BLE001 - a scrape must never take the daemon down
            log.exception("health snapshot failed")
            return PlainTextResponse("snapshot failed\n", 500)

    def healthz(request: Request) -> Response:
        snap = taken()
        if isinstance(snap, Response):
            return snap
        status, body = health_body(snap)
        return Response(body, status, media_type="application/json")

    def metrics(request: Request) -> Response:
        snap = taken()
        if isinstance(snap, Response):
            return snap
        return Response(render_metrics(snap, *collectors), media_type="text/plain; version=0.0.4")

    return [Route("/healthz", healthz), Route("/metrics", metrics)]


def console_routes(console: Console) -> list[BaseRoute]:
    def home(request: Request) -> Response:
        return RedirectResponse("/live" if console.live else "/review", 307)

    routes: list[tuple[str, Callable[..., Response | Awaitable[Response]], list[str]]] = [
        ("/review", pages.review, ["GET"]),
        ("/live", pages.live, ["GET"]),
        ("/api/events", api.list_events, ["GET"]),
        ("/api/events/{event_id}", api.get_event, ["GET"]),
        ("/api/events/{event_id}/timeline", api.get_timeline, ["GET"]),
        ("/api/events/{event_id}/verdict", api.post_verdict, ["POST"]),
        ("/api/cameras", api.list_cameras, ["GET"]),
        ("/media/{event_id}/snapshot.jpg", pages.snapshot, ["GET"]),
        ("/media/{event_id}/heatmap.jpg", pages.heatmap, ["GET"]),
        ("/media/{event_id}/clip.mp4", pages.clip, ["GET"]),
        ("/live/{camera}/frame.jpg", pages.frame, ["GET"]),
    ]
    out: list[BaseRoute] = [Route("/", home)]
    out += [Route(path, _endpoint(handler, console), methods=methods) for path, handler, methods in routes]
    out.append(Mount("/static", StaticFiles(packages=[("edge.web", "static")]), name="static"))
    return out


def _endpoint(handler: Callable[..., Any], console: Console) -> Callable[[Request], Any]:
    """``handler(console, request)`` as a Starlette endpoint: coroutines stay coroutines, plain functions go to
    the thread pool (Starlette decides by the function's kind, so the wrapper keeps it)."""
    if inspect.iscoroutinefunction(handler):

        async def run_async(request: Request) -> Any:
            return await handler(console, request)

        return run_async

    def run(request: Request) -> Any:
        return handler(console, request)

    return run
