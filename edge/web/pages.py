"""The console's pages (server-rendered with Jinja2) and its media: snapshot, heat-map, clip, live frame.

``/review``: the events newest first with the filters of ``GET /api/events`` as a form, and the selected one
(``?event=<id>``; default the newest): heat-map over its snapshot, its clip, its timeline (inline SVG), its
messages and the verdict buttons. Keys (``static/console.js``): j / ↓ next, k / ↑ previous, n normal, r real,
h heat-map on / off. ``/live``: a tile per camera, refreshed from ``/api/cameras`` every two seconds.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from edge.web.api import cameras_json, event_json, parse_query
from edge.web.charts import sparkline_svg, timeline_svg
from edge.web.console import Console
from edge.web.media import MediaUnavailableError, clip_mp4, heatmap_jpeg, luma_jpeg

log = logging.getLogger(__name__)

_FILTERS = ("camera", "since", "until", "modality", "state", "verdict")
MODALITIES = ("video", "temporal", "audio", "tampering")
_DEFAULT_THRESHOLD = 3.0

_env = Environment(
    loader=PackageLoader("edge.web", "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
)


def _when(iso: str | None, short: bool = False) -> str:
    """An ISO 8601 time as the console shows it (UTC; ``short``: without the year and zone)."""
    if not iso:
        return ""
    t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return t.strftime("%m-%d %H:%M:%S") if short else t.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


_env.filters["when"] = _when


def _page(name: str, **values: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**values))


def review(console: Console, request: Request) -> Response:
    params = {k: v for k, v in request.query_params.items() if k in _FILTERS and v}
    try:
        query = parse_query(params)
    except ValueError as exc:
        return PlainTextResponse(f"bad filter: {exc}\n", 400)
    events = [event_json(e) for e in console.store.events(query)]
    wanted = request.query_params.get("event") or (events[0]["event_id"] if events else None)
    selected = _selected(console, wanted) if wanted else None
    ids = [e["event_id"] for e in events]
    at = ids.index(wanted) if wanted in ids else -1

    def link(event_id: str | None) -> str | None:
        return None if event_id is None else "/review?" + urlencode({**params, "event": event_id})

    return _page(
        "review.html",
        events=events,
        selected=selected,
        filters=params,
        site=console.ctx.site,
        cameras=[c.camera_id for c in console.store.cameras()],
        modalities=MODALITIES,
        link=link,
        prev=link(ids[at - 1]) if at > 0 else None,
        next=link(ids[at + 1]) if 0 <= at < len(ids) - 1 else None,
        live=console.live,
    )


def _selected(console: Console, event_id: str) -> dict[str, Any] | None:
    found = console.store.event(event_id)
    if found is None:
        return None
    stored, messages = found
    detail = console.store.detail(event_id)
    threshold = float(detail.get("threshold", _DEFAULT_THRESHOLD)) if detail else _DEFAULT_THRESHOLD
    return {
        **event_json(stored),
        "messages": messages,
        "threshold": threshold,
        "timeline": timeline_svg(detail, threshold=threshold) if detail else None,
        "has_heat": bool(detail and detail.get("heat")),
        "snapshot_file": console.media_file(stored.message.snapshot) is not None,
        "clip_file": console.media_file(stored.message.clip) is not None,
    }


def live(console: Console, request: Request) -> HTMLResponse:
    cameras = cameras_json(console)
    for cam in cameras:
        cam["spark_svg"] = sparkline_svg(cam["sparkline"], threshold=_DEFAULT_THRESHOLD)
    return _page("live.html", cameras=cameras, site=console.ctx.site, live=console.live)


def snapshot(console: Console, request: Request) -> Response:
    found = console.store.event(request.path_params["event_id"])
    path = console.media_file(found[0].message.snapshot) if found else None
    if path is None:
        return PlainTextResponse("no snapshot\n", 404)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


async def heatmap(console: Console, request: Request) -> Response:
    event_id = request.path_params["event_id"]
    found = console.store.event(event_id)
    path = console.media_file(found[0].message.snapshot) if found else None
    if found is None or path is None:
        return PlainTextResponse("no snapshot\n", 404)
    detail = console.store.detail(event_id) or {}
    key = (event_id, path.stat().st_mtime, str(detail.get("peak_pts")))
    data = console.cached_heat(key)
    if data is None:
        threshold = float(detail.get("threshold", _DEFAULT_THRESHOLD))
        try:
            data = await run_in_threadpool(
                heatmap_jpeg, path.read_bytes(), detail.get("heat"), found[0].message.box, threshold
            )
        except MediaUnavailableError as exc:
            return PlainTextResponse(f"{exc}\n", 404)
        console.keep_heat(key, data)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


async def clip(console: Console, request: Request) -> Response:
    found = console.store.event(request.path_params["event_id"])
    path = console.media_file(found[0].message.clip) if found else None
    if path is None:
        return PlainTextResponse("no clip\n", 404)
    try:
        mp4 = await run_in_threadpool(clip_mp4, path, console.cache_dir())
    except MediaUnavailableError as exc:
        return PlainTextResponse(f"{exc}\n", 404)
    return FileResponse(mp4, media_type="video/mp4")


def frame(console: Console, request: Request) -> Response:
    view = console.ctx.live
    latest = view.last_frame(request.path_params["camera"]) if view is not None else None
    if latest is None:
        return PlainTextResponse("no frame\n", 404)
    return Response(luma_jpeg(latest.luma), media_type="image/jpeg", headers={"Cache-Control": "no-store"})
