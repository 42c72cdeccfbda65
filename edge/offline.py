"""Camera status alerts: a live camera that has not streamed for ``offline_after_s`` is reported ``offline``, and
``online`` again when it streams (schema 1.3, ``alerts.schema``).

The daemon's main loop calls ``check`` with each live camera's capture state (``CaptureWorker.stats()``) a few
times a second. A camera is down from the moment it left ``streaming`` (its ``state_age_s`` dates that, so the
poll's granularity does not); short outages that end before ``offline_after_s`` (a reconnect) send nothing. The
``offline`` message's ``start_time`` is when the camera stopped streaming and its ``label`` the state it is in;
the ``online`` message has the same ``event_id``, seq 1, and ``end_time`` when it streamed again. Both go through
the outbox like events: same delivery, same Kafka key. An outage left open by a daemon that stopped (or was
killed) is picked up at the next start (``restore``): its ``online`` comes when the camera streams, with no second
``offline``. Clocks are injected: intervals on ``clock`` (monotonic), labels on ``wall``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.schema import EventMessage, ModelProvenance
from pipeline.frames import utc_now
from pipeline.sources.capture import CaptureStats, SourceState


@dataclass
class _Camera:
    offline_after_s: float
    down_since: float | None = None  # monotonic time it left streaming; None while streaming
    alert: EventMessage | None = None  # the open outage's offline message
    offline_alerts: int = 0
    online_alerts: int = 0


class OfflineMonitor:
    def __init__(
        self,
        cameras: Mapping[str, float],
        emit: Callable[[EventMessage], None],
        *,
        site: str,
        model: ModelProvenance,
        clock: Callable[[], float],
        wall: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        """``cameras``: each live camera's ``offline_after_s``; ``emit`` takes each alert (the daemon's outbox)."""
        self._cams = {cam: _Camera(after) for cam, after in cameras.items()}
        self._emit = emit
        self._site = site
        self._model = model
        self._clock = clock
        self._wall = wall
        self._new_id = new_id

    def restore(self, open_alerts: Iterable[EventMessage]) -> None:
        """Outages a previous run left open (their ``offline`` without an ``online``), by camera."""
        for msg in open_alerts:
            cam = self._cams.get(msg.camera_id)
            if cam is not None and msg.type == "offline":
                cam.alert = msg

    def check(self, stats: Mapping[str, CaptureStats], positions: Mapping[str, float]) -> None:
        """Look at each camera's capture state now; ``positions``: its stream time (the offline message's pts)."""
        now = self._clock()
        for cam_id, st in stats.items():
            cam = self._cams.get(cam_id)
            if cam is None or st.state is SourceState.STOPPED:  # stopping: the daemon's end is no outage
                continue
            if st.state is SourceState.STREAMING:
                cam.down_since = None
                if cam.alert is not None:
                    self._back(cam, now - st.state_age_s)
                continue
            if cam.down_since is None:
                cam.down_since = now - st.state_age_s
            if cam.alert is None and now - cam.down_since >= cam.offline_after_s:
                self._offline(cam_id, cam, st.state, positions.get(cam_id, 0.0))

    def _offline(self, cam_id: str, cam: _Camera, state: SourceState, pts: float) -> None:
        assert cam.down_since is not None
        wall = self._wall()
        since = wall - timedelta(seconds=self._clock() - cam.down_since)
        cam.alert = EventMessage.camera_offline(
            event_id=self._new_id(),
            camera_id=cam_id,
            site=self._site,
            since=since,
            since_pts=max(0.0, pts),
            state=state.value,
            model=self._model,
            decided_at=wall,
        )
        cam.offline_alerts += 1
        self._emit(cam.alert)

    def _back(self, cam: _Camera, streaming_since: float) -> None:
        assert cam.alert is not None
        wall = self._wall()
        at = max(cam.alert.start_time, wall - timedelta(seconds=self._clock() - streaming_since))
        online = cam.alert.back_online(at=at, decided_at=wall)
        cam.alert = None
        cam.online_alerts += 1
        self._emit(online)

    def counters(self, camera_id: str) -> dict[str, int | bool]:
        """For health and metrics: alerts sent, and whether the camera is offline now."""
        cam = self._cams.get(camera_id)
        if cam is None:
            return {}
        return {
            "offline_alerts": cam.offline_alerts,
            "online_alerts": cam.online_alerts,
            "offline": cam.alert is not None,
        }
