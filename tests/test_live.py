"""The live view and the event traces: what the console shows of the running pipeline and keeps of each event."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from pipeline.aggregator import MaxFusion
from pipeline.engines.base import OrtEngineConfig
from pipeline.events import AnomalyEvent, EventType
from pipeline.frames import Modality, Score, VideoFrame
from pipeline.live import EventTraces, HeatSource, LiveView, PatchGeometry, heat_sources
from pipeline.models.default_package import default_package_dir
from pipeline.models.package import ModelPackage
from pipeline.runner import Runner
from pipeline.scoring_model import PackageScorer
from pipeline.sources.spec import SourceSpec

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def score(pts: float, value: float, modality: Modality = Modality.VIDEO, cam: str = "door") -> Score:
    return Score(cam, modality, pts, int(pts * 1e9), T0 + timedelta(seconds=pts), value, value)


def frame(pts: float, cam: str = "door") -> VideoFrame:
    return VideoFrame(cam, int(pts * 5), pts, int(pts * 1e9), T0 + timedelta(seconds=pts), np.zeros((4, 6), np.uint8))


def event(kind: EventType, peak_pts: float, seq: int = 0, modality: str = "video") -> AnomalyEvent:
    from pipeline.events import ModalityScore

    return AnomalyEvent(
        "ev",
        seq,
        kind,
        "door",
        T0 + timedelta(seconds=10),
        10.0,
        5.0,
        T0 + timedelta(seconds=peak_pts),
        peak_pts,
        {modality: ModalityScore(5.0, T0 + timedelta(seconds=peak_pts), peak_pts)},
        end_pts=13.0 if kind is EventType.END else None,
    )


def test_live_view_fps_sparkline_and_recent_scores() -> None:
    live = LiveView(recent_s=2.0, spark_s=60.0)
    for i in range(11):
        live.frame(frame(i * 0.2))
    last = live.last_frame("door")
    assert live.fps("door") == pytest.approx(5.0) and last is not None and last.pts == pytest.approx(2.0)
    for pts, v in ((0.2, 1.0), (0.7, 4.0), (1.1, 2.0), (3.5, 1.5)):
        live.score(score(pts, v), v, pts)
    assert live.sparkline("door") == [(T0.timestamp(), 4.0), (T0.timestamp() + 1, 2.0), (T0.timestamp() + 3, 1.5)]
    assert [p[0] for p in live.recent_points("door", 0.0)] == [3.5, 3.5]  # older than 2 s before the last: gone
    assert live.fps("nobody") is None and live.sparkline("nobody") == [] and live.cameras() == ["door"]


def test_an_event_keeps_its_scores_from_before_its_start_and_the_patch_map_at_its_peak() -> None:
    traces = EventTraces(
        LiveView(), heat={"video": HeatSource(PatchGeometry(32, 16, 16, 16), lambda raw: raw * 2)}, pre_s=1.0
    )
    for pts in (8.0, 9.2, 9.6, 10.0):
        traces.score(score(pts, 1.0), 1.0, pts)
    traces.patches(frame(11.0), "video", np.array([[0.5, 2.0]], np.float32))
    traces.score(score(11.0, 5.0), 4.0, 11.0)
    new = traces.message(event(EventType.NEW, 11.0))  # its peak (11.0) came before it opened
    assert new["series"]["video"] == [[9.2, 1.0], [9.6, 1.0], [10.0, 1.0], [11.0, 5.0]]  # 1 s before the start
    assert new["heat"] == {
        "video": {
            "pts": 11.0,
            "grid": [[1.0, 4.0]],
            "width": 32,
            "height": 16,
            "patch": 16,
            "stride": 16,
            "discount": 0.0,
        }
    }
    traces.patches(frame(11.4), "video", np.array([[3.0, 0.0]], np.float32))
    traces.score(score(11.4, 4.0), 3.0, 11.4)  # below the peak: the map stays
    assert traces.message(event(EventType.UPDATE, 11.0, seq=1))["heat"]["video"]["pts"] == 11.0
    traces.patches(frame(11.8), "video", np.array([[3.5, 0.0]], np.float32))
    traces.score(score(11.8, 7.0), 6.0, 11.8)  # a new peak; its message may come much later
    for pts in np.arange(12.0, 30.0, 0.2):  # long enough for the live view to forget the frame
        traces.patches(frame(float(pts)), "video", np.zeros((1, 2), np.float32))
        traces.score(score(float(pts), 1.0), 3.5, float(pts))
    assert traces.message(event(EventType.UPDATE, 11.8, seq=1))["heat"]["video"]["grid"] == [[7.0, 0.0]]
    end = traces.message(event(EventType.END, 11.0, seq=2))
    assert end["series"]["fused"][-1] == [29.8, 3.5] and end["end_pts"] == 13.0
    traces.score(score(13.0, 9.0), 9.0, 13.0)  # after its end: not its score
    assert json.dumps(traces.message(event(EventType.NEW, 11.0))["series"])  # a new trace, JSON-ready


def test_long_events_are_thinned_keeping_their_spikes() -> None:
    traces = EventTraces(LiveView(), max_points=100)
    traces.message(event(EventType.NEW, 10.0))
    for i in range(1000):
        traces.score(score(10.0 + i * 0.01, 9.0 if i == 501 else 1.0), None, 0.0)
    video = traces.message(event(EventType.UPDATE, 10.0, seq=1))["series"]["video"]
    assert len(video) <= 100 and max(v for _, v in video) == 9.0


def test_a_tampering_event_keeps_the_tampering_score_only() -> None:
    traces = EventTraces(LiveView())
    traces.message(replace(event(EventType.NEW, 10.5, modality="tampering"), event_id="tamper"))
    traces.message(event(EventType.NEW, 10.5))
    traces.score(score(10.5, 0.9, Modality.TAMPERING), None, 10.5)
    traces.score(score(10.5, 2.0), 2.0, 10.5)
    tamper = traces.message(replace(event(EventType.UPDATE, 10.5, 1, "tampering"), event_id="tamper"))
    scene = traces.message(event(EventType.UPDATE, 10.5, seq=1))
    assert set(tamper["series"]) == {"tampering"} and tamper["heat"] is None
    assert set(scene["series"]) == {"video", "fused"}


@pytest.mark.timeout(180)
def test_the_runner_gives_each_event_a_heat_map_where_its_box_is() -> None:
    from edge.web.media import combined_heat

    package = ModelPackage.load(default_package_dir())
    scorer = PackageScorer(package, OrtEngineConfig())
    v = package.video
    assert v is not None
    live = LiveView()
    traces = EventTraces(live, heat=heat_sources(package, MaxFusion()))
    details: list[tuple[AnomalyEvent, dict]] = []
    runner = Runner(
        [SourceSpec("cam", str(SAMPLES / "test_1.mkv"), pace=False)],
        scorer,
        lambda ev: details.append((ev, traces.message(ev))),
        observer=traces,
    )
    assert not runner.open_sources()
    runner.start()
    assert runner.wait(150)
    runner.join()
    last = live.last_frame("cam")
    assert live.fps("cam") is not None and last is not None and last.luma.shape == (v.height, v.width)
    truth = [a for a in json.loads((SAMPLES / "test_1.json").read_text())["anomalies"] if a.get("box")]
    checked = 0
    for ev, d in details:
        if ev.type is not EventType.END or "video" not in ev.modalities:
            continue
        assert {"video", "fused"} <= set(d["series"]) and d["series"]["fused"][0][0] < ev.start_pts
        assert set(d["heat"]) == {"video", "temporal"}  # maps of the frame the snapshot shows
        assert abs(d["heat"]["video"]["pts"] - ev.peak_pts) <= 0.3
        heat = combined_heat(d["heat"], v.width, v.height)
        if heat.max() < 3.0:
            continue  # the picture was not what stood out at the peak (its sound was)
        row, col = np.unravel_index(heat.argmax(), heat.shape)
        x, y = col / v.width, row / v.height
        for a in truth:  # an event over a labelled anomaly: its heat is where the anomaly is
            if ev.start_pts <= a["end"] and (ev.end_pts or 0) >= a["start"]:
                x0, y0, x1, y1 = a["box"]
                assert x0 - 0.1 <= x <= x1 + 0.1 and y0 - 0.1 <= y <= y1 + 0.1, (a["kind"], a["box"], (x, y))
                checked += 1
    assert checked >= 2
