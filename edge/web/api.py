"""The console's JSON API: a contract for scripts and for the console's own pages.

    GET  /api/events                  events newest first: the latest message of each, plus snapshot_url,
                                      heatmap_url, clip_url, timeline_url, verdict (normal | real | null),
                                      verdict_note; filters camera, since, until (ISO 8601, on the start),
                                      modality, state (open | ended), verdict (normal | real | none), limit,
                                      before (an event id: the page after it)
    GET  /api/events/{event_id}       the same fields, plus messages: every message of the event kept
    GET  /api/events/{event_id}/timeline   its scores over stream time (series), thresholds, start/end/peak pts
    POST /api/events/{event_id}/verdict    {"verdict": "normal" | "real", "note": "..."} → the stored verdict
    GET  /api/cameras                 each camera: state and since when, fps, drops, sparkline, frame_url, its
                                      open offline alert, its event count and last event

Errors are JSON ``{"error": "..."}`` with 400 (a bad filter or body), 404 (no such event or camera) or 415.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from alerts.schema import EventMessage
from alerts.store import VERDICTS, EventNotFoundError, EventQuery, StoredEvent
from edge.web.console import Console
from pipeline.redact import redact_text

_MAX_BODY = 4096


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def event_json(stored: StoredEvent) -> dict[str, Any]:
    """An event as the API gives it: its latest wire message plus the console's links and the verdict."""
    msg = stored.message
    out: dict[str, Any] = json.loads(msg.to_json())
    base = f"/media/{msg.event_id}"
    out.update(
        snapshot_url=f"{base}/snapshot.jpg" if msg.snapshot else None,
        heatmap_url=f"{base}/heatmap.jpg" if msg.snapshot else None,
        clip_url=f"{base}/clip.mp4" if msg.clip else None,
        timeline_url=f"/api/events/{msg.event_id}/timeline",
        verdict=stored.verdict.verdict if stored.verdict else None,
        verdict_note=stored.verdict.note if stored.verdict else None,
        open=msg.type != "end",
    )
    return out


def parse_query(params: dict[str, str]) -> EventQuery:
    """The filters of ``GET /api/events`` (and of the review page); ``ValueError`` says which one is wrong."""
    state = params.get("state") or None
    verdict = params.get("verdict") or None
    if state not in (None, "open", "ended"):
        raise ValueError("state is open or ended")
    if verdict not in (None, "none", *VERDICTS):
        raise ValueError("verdict is normal, real or none")
    try:
        limit = int(params.get("limit") or 200)
    except ValueError:
        raise ValueError("limit is a number") from None
    return EventQuery(
        camera_id=params.get("camera") or None,
        since=_time(params, "since"),
        until=_time(params, "until"),
        modality=params.get("modality") or None,
        state=state,  # type: ignore[arg-type]
        verdict=verdict,  # type: ignore[arg-type]
        limit=limit,
        before=params.get("before") or None,
    )


def _time(params: dict[str, str], name: str) -> datetime | None:
    value = params.get(name)
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} is an ISO 8601 time, such as 2026-12-07T10:00:00Z") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def list_events(console: Console, request: Request) -> JSONResponse:
    try:
        query = parse_query(dict(request.query_params))
    except ValueError as exc:
        return error(400, str(exc))
    return JSONResponse([event_json(e) for e in console.store.events(query)])


def get_event(console: Console, request: Request) -> JSONResponse:
    found = console.store.event(request.path_params["event_id"])
    if found is None:
        return error(404, "no such event")
    stored, messages = found
    return JSONResponse({**event_json(stored), "messages": [json.loads(m.to_json()) for m in messages]})


def get_timeline(console: Console, request: Request) -> JSONResponse:
    event_id = request.path_params["event_id"]
    detail = console.store.detail(event_id)
    if detail is None:
        return error(404, "no timeline stored for this event")
    detail.pop("heat", None)
    return JSONResponse({"event_id": event_id, **detail})


async def post_verdict(console: Console, request: Request) -> JSONResponse:
    body = await request.body()
    if len(body) > _MAX_BODY:
        return error(400, "body too large")
    try:
        data = json.loads(body)
        verdict, note = data["verdict"], data.get("note")
        if not isinstance(note, (str, type(None))):
            raise TypeError("note")
    except (ValueError, KeyError, TypeError):
        return error(400, 'the body is {"verdict": "normal" | "real", "note": "..."}')
    try:
        record = console.store.set_verdict(request.path_params["event_id"], verdict, note, source="console")
    except EventNotFoundError:
        return error(404, "no such event")
    except ValueError as exc:
        return error(400, str(exc))
    return JSONResponse({"event_id": request.path_params["event_id"], **record.as_dict()})


def list_cameras(console: Console, request: Request) -> JSONResponse:
    return JSONResponse(cameras_json(console))


def cameras_json(console: Console) -> list[dict[str, Any]]:
    """Every camera the daemon runs (live: state, counters, sparkline, frame) or the store knows (history)."""
    live = console.ctx.cameras() if console.ctx.cameras is not None else {}
    view = console.ctx.live
    known = {c.camera_id: c for c in console.store.cameras()}
    out = []
    for cam in sorted(set(live) | set(known)):
        state = live.get(cam, {})
        record = known.get(cam)
        status = record.last_status if record is not None else None
        item: dict[str, Any] = {
            "camera_id": cam,
            "state": state.get("state"),
            "state_age_s": state.get("state_age_s"),
            "state_since": _since(state.get("state_age_s")),
            "frames": state.get("frames"),
            "drops": state.get("drops"),
            "fps": view.fps(cam) if view is not None else None,
            "last_error": redact_text(state["last_error"]) if state.get("last_error") else None,
            "offline_since": _offline_since(status),
            "sparkline": view.sparkline(cam) if view is not None else [],
            "frame_url": f"/live/{cam}/frame.jpg" if view is not None and view.last_frame(cam) else None,
            "events": record.events if record is not None else 0,
            "last_event": _brief(record.last_event) if record is not None else None,
        }
        out.append(item)
    return out


def _since(age_s: float | None) -> str | None:
    if age_s is None:
        return None
    return datetime.fromtimestamp(datetime.now(timezone.utc).timestamp() - float(age_s), timezone.utc).isoformat()


def _offline_since(status: EventMessage | None) -> str | None:
    if status is None or status.type != "offline":
        return None
    return status.start_time.isoformat()


def _brief(msg: EventMessage | None) -> dict[str, Any] | None:
    if msg is None:
        return None
    return {
        "event_id": msg.event_id,
        "type": msg.type,
        "start_time": msg.start_time.isoformat(),
        "peak_score": msg.peak_score,
    }
