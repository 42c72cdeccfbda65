"""The console's HTTP app in-process (Starlette's TestClient): the JSON API contract, the pages, the media
routes, and who may use them (token, loopback names, same-origin JSON writes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient
from support.alert_messages import MODEL, T0, lifecycle, message

from alerts.outbox import Outbox
from alerts.schema import EventMessage
from edge.health import Snapshot
from edge.web.app import build_app
from edge.web.context import ConsoleContext
from edge.web.guard import COOKIE, cookie_value

LOCAL = "http://127.0.0.1"
DETAIL = {
    "start_pts": 10.0,
    "end_pts": 30.0,
    "peak_pts": 12.0,
    "threshold": 3.0,
    "exit_threshold": 3.0,
    "series": {"video": [[9.0, 1.0], [12.0, 6.0], [30.0, 0.5]], "fused": [[9.0, 1.0], [12.0, 5.0]]},
    "heat": {
        "video": {
            "pts": 12.0,
            "grid": [[0.0, 4.0], [1.0, 0.0]],
            "width": 32,
            "height": 16,
            "patch": 16,
            "stride": 16,
            "discount": 0.0,
        }
    },
}


def jpeg(path: Path, w: int = 64, h: int = 32) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return path


@pytest.fixture
def site(tmp_path: Path) -> ConsoleContext:
    media = tmp_path / "media"
    with Outbox(tmp_path / "o.db", local_only=True) as box:
        for msg in lifecycle("ev-a", "door", updates=1):
            box.put(msg.model_copy(update={"snapshot": "door/ev-a.jpg"}))
        for msg in lifecycle("ev-b", "yard", updates=0):
            box.put(msg)
        box.put(
            EventMessage.camera_offline(
                event_id="out",
                camera_id="gate",
                site="s",
                since=T0,
                since_pts=0.0,
                state="backoff",
                model=MODEL,
                decided_at=T0,
            )
        )
    jpeg(media / "door" / "ev-a.jpg")
    ctx = ConsoleContext(store_path=tmp_path / "o.db", media_dir=media, site="test-site")
    from alerts.store import EventStore

    with EventStore(ctx.store_path) as store:
        store.save_detail("ev-a", "door", DETAIL)
    return ctx


@pytest.fixture
def client(site: ConsoleContext) -> Iterator[TestClient]:
    app = build_app(site)
    with TestClient(app, base_url=LOCAL) as c:
        yield c
    app.close()


def test_events_list_is_the_contract(client: TestClient) -> None:
    events = client.get("/api/events").json()
    assert [(e["event_id"], e["type"]) for e in events] == [("ev-b", "end"), ("ev-a", "end")]
    a = events[1]
    assert a["snapshot_url"] == "/media/ev-a/snapshot.jpg" and a["heatmap_url"] == "/media/ev-a/heatmap.jpg"
    assert a["clip_url"] is None and a["timeline_url"] == "/api/events/ev-a/timeline" and a["verdict"] is None
    assert EventMessage.model_validate({k: v for k, v in a.items() if k in EventMessage.model_fields}).seq == 2
    assert [e["event_id"] for e in client.get("/api/events?camera=yard").json()] == ["ev-b"]
    assert client.get("/api/events?state=sideways").status_code == 400
    assert "ISO 8601" in client.get("/api/events?since=yesterday").json()["error"]


def test_one_event_with_its_messages_and_its_timeline(client: TestClient) -> None:
    got = client.get("/api/events/ev-a").json()
    assert [m["seq"] for m in got["messages"]] == [0, 1, 2] and got["event_id"] == "ev-a"
    timeline = client.get("/api/events/ev-a/timeline").json()
    assert timeline["threshold"] == 3.0 and timeline["series"]["video"][1] == [12.0, 6.0] and "heat" not in timeline
    assert client.get("/api/events/nope").status_code == 404
    assert client.get("/api/events/ev-b/timeline").status_code == 404


def test_a_verdict_is_stored_and_bad_writes_are_refused(client: TestClient) -> None:
    ok = client.post("/api/events/ev-a/verdict", json={"verdict": "normal", "note": "parked van"})
    assert ok.status_code == 200 and ok.json()["verdict"] == "normal" and ok.json()["source"] == "console"
    assert client.get("/api/events?verdict=normal").json()[0]["verdict_note"] == "parked van"
    assert client.post("/api/events/nope/verdict", json={"verdict": "real"}).status_code == 404
    assert client.post("/api/events/ev-a/verdict", json={"verdict": "perhaps"}).status_code == 400
    assert client.post("/api/events/ev-a/verdict", json={"note": "x"}).status_code == 400
    form = client.post("/api/events/ev-a/verdict", data={"verdict": "real"})
    assert form.status_code == 415  # what a cross-site form could send
    other = client.post("/api/events/ev-a/verdict", json={"verdict": "real"}, headers={"Origin": "http://evil.test"})
    assert other.status_code == 403
    same = client.post("/api/events/ev-a/verdict", json={"verdict": "real"}, headers={"Origin": LOCAL})
    assert same.status_code == 200


def test_cameras_from_the_store_when_no_daemon_runs(client: TestClient) -> None:
    cams = {c["camera_id"]: c for c in client.get("/api/cameras").json()}
    assert set(cams) == {"door", "yard", "gate"}
    assert cams["gate"]["offline_since"] == T0.isoformat() and cams["door"]["events"] == 1
    assert cams["door"]["state"] is None and cams["door"]["frame_url"] is None


def test_the_review_page_lists_events_and_shows_the_selected_one(client: TestClient) -> None:
    page = client.get("/review?event=ev-a")
    assert page.status_code == 200
    assert page.text.count('class="event ') == 2 and 'data-event-id="ev-a"' in page.text
    assert 'class="timeline"' in page.text and page.text.count('<polyline class="series"') == 2
    assert 'id="snapshot"' in page.text and "/media/ev-a/heatmap.jpg" in page.text
    assert 'data-prev="/review?event=ev-b"' in page.text
    assert client.get("/review?camera=yard").text.count('class="event ') == 1
    assert client.get("/", follow_redirects=False).headers["location"] == "/review"
    assert client.get("/live").status_code == 200
    assert client.get("/static/console.js").status_code == 200


def test_media_is_found_through_the_event_only(client: TestClient, site: ConsoleContext, tmp_path: Path) -> None:
    snap = client.get("/media/ev-a/snapshot.jpg")
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
    heat = client.get("/media/ev-a/heatmap.jpg")
    assert heat.status_code == 200 and heat.content[:2] == b"\xff\xd8" and heat.content != snap.content
    assert client.get("/media/ev-b/snapshot.jpg").status_code == 404  # no snapshot kept
    assert client.get("/media/ev-a/clip.mp4").status_code == 404
    assert client.get("/media/..%2F..%2Fetc/snapshot.jpg").status_code == 404
    # a camera folder that leads out of the media directory is not followed
    outside = jpeg(tmp_path / "elsewhere" / "ev-x.jpg")
    (site.media_dir / "cam-x").symlink_to(outside.parent)
    with Outbox(site.store_path, local_only=True) as box:
        box.put(message("ev-x", 0, "cam-x").model_copy(update={"snapshot": "cam-x/ev-x.jpg"}))
    assert client.get("/media/ev-x/snapshot.jpg").status_code == 404


def test_loopback_answers_loopback_names_only(site: ConsoleContext) -> None:
    app = build_app(site, snapshot=Snapshot)
    with TestClient(app, base_url="http://attacker.example") as c:
        assert c.get("/api/events").status_code == 403  # DNS rebinding
    for host in ("http://localhost:8971", "http://[::1]:8971", LOCAL):
        with TestClient(app, base_url=host) as c:
            assert c.get("/api/events").status_code == 200
    app.close()


def test_beyond_loopback_without_a_token_only_health_and_metrics(site: ConsoleContext) -> None:
    app = build_app(site, snapshot=Snapshot, loopback=False)
    with TestClient(app, base_url="http://192.0.2.7") as c:
        assert c.get("/healthz").status_code == 200 and c.get("/metrics").status_code == 200
        for path in ("/review", "/api/events", "/media/ev-a/snapshot.jpg"):
            assert c.get(path).status_code == 403
    app.close()


def test_a_token_opens_the_console_by_header_or_by_a_cookie_set_once(site: ConsoleContext) -> None:
    app = build_app(site, snapshot=Snapshot, token="s3cr3t", loopback=False)
    with TestClient(app, base_url="http://192.0.2.7", follow_redirects=False) as c:
        denied = c.get("/review")
        assert denied.status_code == 401 and "s3cr3t" not in denied.text
        assert c.get("/api/events", headers={"Authorization": "Bearer s3cr3t"}).status_code == 200
        assert c.get("/review?token=wrong").status_code == 401
        login = c.get("/review?token=s3cr3t&camera=door")
        assert login.status_code == 303 and login.headers["location"] == "/review?camera=door"
        cookie = login.cookies[COOKIE]
        assert cookie == cookie_value("s3cr3t") and "s3cr3t" not in cookie
        assert (
            "httponly" in login.headers["set-cookie"].lower()
            and "samesite=strict" in login.headers["set-cookie"].lower()
        )
        c.cookies.set(COOKIE, cookie)
        assert c.get("/review").status_code == 200
        ok = c.post("/api/events/ev-a/verdict", json={"verdict": "real"})
        assert ok.status_code == 200
    app.close()


def test_health_and_metrics_stay_the_same_json_and_text(site: ConsoleContext) -> None:
    snap = Snapshot(cameras={"door": {"state": "streaming", "frames": 3}}, outbox={"pending": 0, "size_bytes": 9})
    app = build_app(None, snapshot=lambda: snap)
    with TestClient(app, base_url=LOCAL) as c:
        body: dict[str, Any] = c.get("/healthz").json()
        assert body == {
            "healthy": True,
            "cameras": {"door": {"state": "streaming", "frames": 3}},
            "outbox": {"pending": 0, "size_bytes": 9},
            "publisher": None,
        }
        text = c.get("/metrics").text
        assert 'lepton_frames_captured_total{camera="door"} 3.0' in text and "lepton_outbox_bytes 9.0" in text
        assert c.get("/review").status_code == 404  # no console configured
    app.close()


def test_edge_console_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    import sqlite3
    import subprocess
    import sys

    def console(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge.cli", "console", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = console()
    assert missing.returncode == 1 and "no events at .lepton/outbox.db" in missing.stderr
    assert "make demo" in missing.stderr
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    other = console("--outbox", "other.db")
    assert other.returncode == 1 and "not an outbox" in other.stderr and "Traceback" not in other.stderr
    with Outbox(tmp_path / "o.db", local_only=True) as box:
        box.put(message("ev", 0, "door"))
    exposed = console("--outbox", "o.db", "--host", "0.0.0.0")  # noqa: S104 - the case under test
    assert exposed.returncode == 2 and "--token-file" in exposed.stderr
