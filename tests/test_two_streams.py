"""Two streams per camera: the detect substream decoded and scored, the main stream only demuxed for snapshots and
clips. Against the real RTSP server (``edge/rtsp_simulator.py``), serving a clip and the substream that
``edge simulate --substream`` makes of it; the tie of the two time lines checked on a known moving object."""

from __future__ import annotations

import logging
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from edge.config import load_config
from edge.errors import ConfigError
from edge.substream import ensure_substream, parse_size
from pipeline.aggregator import AggregatorSettings
from pipeline.events import AnomalyEvent, EndReason, EventType
from pipeline.frames import VideoFrame, WallClock
from pipeline.media import CameraMedia, ClipSettings, MediaRecorder, MediaSettings, SnapshotSettings
from pipeline.runner import Runner, RunnerSettings
from pipeline.sources import SourceSpec
from pipeline.sources.capture import SourceState
from pipeline.sources.tie import StreamTie

MAIN, SUB = (640, 360), (320, 180)
FPS, SECONDS = 25, 5.0
SHOWN = (1.0, 3.4)  # file time during which the square crosses the picture
SIDE, STEP = 48, 6  # the square's side and its step per frame, main-stream pixels


def write_mover(path: Path) -> Path:
    """A dark picture where a white square crosses from left to right during ``SHOWN``, with a tone (so a clip has
    audio too); a keyframe per second, no B-frames, one slice per frame."""
    w, h = MAIN
    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream(
            "libx264",
            rate=FPS,
            options={"g": str(FPS), "bf": "0", "preset": "ultrafast", "x264-params": "sliced-threads=0"},
        )
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.time_base = Fraction(1, 1000)
        audio = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(round(SECONDS * FPS)):
            t = i / FPS
            img = np.full((h, w, 3), 30, np.uint8)
            x = square_x(t)
            if x is not None:
                img[h // 2 - SIDE // 2 : h // 2 + SIDE // 2, x : x + SIDE] = 235
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), vs.time_base
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        for s0 in range(0, round(SECONDS * 16000) - 1024 + 1, 1024):
            tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(s0, s0 + 1024) / 16000)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(tone[None, :], format="flt", layout="mono")
            af.sample_rate, af.pts, af.time_base = 16000, s0, Fraction(1, 16000)
            out.mux(audio.encode(af))
        out.mux(audio.encode(None))
    return path


def square_x(t: float) -> int | None:
    """Left edge of the square at file time ``t`` (main-stream pixels), None when it is not shown."""
    if not SHOWN[0] <= t < SHOWN[1]:
        return None
    return 40 + STEP * round((t - SHOWN[0]) * FPS)


class TrackModel:
    """Scores the newest frame by where a bright object is: anomalous while one is in the picture, more so the
    further right it is (so the peak moves as it crosses), the box its bounds plus 2 model pixels."""

    width, height, fps, context = 160, 90, 5.0, 1
    audio_window_s, audio_hop_s, sample_rate = 1.0, 0.5, 16000
    has_video, has_audio, temporal_window, last_embeddings = True, False, 0, None
    temporal_every, last_gated = 1, np.zeros(0, dtype=bool)

    def score_video(self, stacks, masks=None):
        raw, boxes = [], []
        for luma in stacks[:, -1]:
            ys, xs = np.nonzero(luma > 150)
            if len(xs) == 0:
                raw.append(0.5)
                boxes.append(None)
                continue
            x0, x1 = max(0, xs.min() - 2), min(self.width, xs.max() + 3)
            y0, y1 = max(0, ys.min() - 2), min(self.height, ys.max() + 3)
            boxes.append((x0 / self.width, y0 / self.height, x1 / self.width, y1 / self.height))
            raw.append(4.0 + 4.0 * xs.mean() / self.width)
        r = np.asarray(raw, np.float32)
        return r, r, boxes


SETTINGS = RunnerSettings(aggregator=AggregatorSettings(threshold=3.0, min_duration_s=0.4, hold_s=1.0), tamper=None)
MEDIA = CameraMedia(SnapshotSettings(enabled=True), ClipSettings(enabled=True, pre_roll_s=1.0, post_roll_s=0.5))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("two-streams")
    main = write_mover(folder / "mover.mkv")
    return main, ensure_substream(main, SUB, folder)  # what `edge simulate --substream 320x180` serves


def start(specs, tmp_path, events):
    recorder = MediaRecorder(MediaSettings(path=tmp_path / "media"), {"cam": MEDIA})
    runner = Runner(specs, TrackModel(), events.append, SETTINGS, media=recorder)
    assert runner.open_sources() == {}
    runner.start()
    return runner


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def of(events, kind, since=0):
    return [e for e in events[since:] if e.type is kind]


def rgb(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


# -- live, against the real RTSP server ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_the_substream_is_scored_and_the_main_stream_snapshotted_and_clipped(rtsp_server, tmp_path, clips, isolation):
    """On threads, and with both streams in processes of their own (the main stream's packets placed on the
    detect stream's time line by the camera's tie, in the daemon)."""
    main, sub = clips
    server = rtsp_server({"cam": main, "cam-sub": sub})
    events: list[AnomalyEvent] = []
    spec = SourceSpec("cam", server.url("cam-sub"), main_url=server.url("cam"), isolation=isolation)
    runner = start([spec], tmp_path, events)
    try:
        wait_until(lambda: any(e.reason is EndReason.QUIET for e in of(events, EventType.END)), 30, "an event")
        in_process = {cam: w.capture_pid is not None for cam, w in runner.workers.items()}
    finally:
        runner.stop()
        runner.join(30)
    assert in_process == {"cam": isolation == "process", "cam/main": isolation == "process"}
    assert runner.workers["cam"].spec.url == server.url("cam-sub")  # decoded and scored
    assert runner.workers["cam/main"].stats().frames > 0  # its video packets, demuxed
    end = next(e for e in of(events, EventType.END) if e.reason is EndReason.QUIET)
    assert end.snapshot and end.clip and end.box is not None
    picture = rgb(tmp_path / "media" / end.snapshot)
    assert picture.shape == (MAIN[1], MAIN[0], 3)  # the main stream's resolution, not the substream's
    # the square at the peak's moment of the main stream lies inside the box found on the substream
    white = picture.min(axis=2) > 180
    ys, xs = np.nonzero(white)
    x0, y0, x1, y1 = (v * s for v, s in zip(end.box, (*MAIN, *MAIN), strict=True))
    assert len(xs) > SIDE * SIDE // 2, "the square is in the snapshot"
    assert x0 - 2 <= xs.min() and xs.max() <= x1 + 2 and y0 - 2 <= ys.min() and ys.max() <= y1 + 2, (
        f"square x {xs.min()}-{xs.max()}, y {ys.min()}-{ys.max()}; box {x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}"
    )
    edge = picture[round(y0) + 2 : round(y1) - 2, round(x0) + 1].astype(int)
    assert (edge[:, 0] - edge[:, 1]).mean() > 120, "the box drawn in red on its left edge"
    with av.open(str(tmp_path / "media" / end.clip)) as c:
        v = c.streams.video[0].codec_context
        assert (v.name, v.width, v.height) == ("h264", *MAIN)
        assert c.streams.audio, "the main stream's audio is in the clip"
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert sum(1 for f in frames if f.max() > 200) >= 10, "the square crosses the clip"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_main_stream_down_detection_goes_on_and_events_carry_no_media(rtsp_server, tmp_path, clips):
    main, sub = clips
    main_server, sub_server = rtsp_server({"cam": main}), rtsp_server({"cam-sub": sub})
    events: list[AnomalyEvent] = []
    runner = start(
        [
            SourceSpec(
                "cam",
                sub_server.url("cam-sub"),
                main_url=main_server.url("cam"),
                backoff_initial_s=0.2,
                backoff_max_s=0.5,
            )
        ],
        tmp_path,
        events,
    )
    main_worker = runner.workers["cam/main"]
    try:
        wait_until(lambda: any(e.snapshot for e in of(events, EventType.NEW)), 30, "an event with a snapshot")
        main_server.stop(kill=True)
        wait_until(lambda: main_worker.state is not SourceState.STREAMING, 15, "the main stream to be lost")
        lost_at = len(events)
        wait_until(lambda: of(events, EventType.NEW, lost_at), 30, "an event after the main stream was lost")
        later = of(events, EventType.NEW, lost_at)[0].event_id
        wait_until(lambda: any(e.event_id == later for e in of(events, EventType.END)), 30, "that event's end")
        assert runner.states()["cam"] is SourceState.STREAMING
        assert main_worker.state in (SourceState.BACKOFF, SourceState.FAILED, SourceState.CONNECTING)
        assert "connection refused" in (main_worker.stats().last_error or "")
    finally:
        runner.stop()
        runner.join(30)
    messages = [e for e in events if e.event_id == later]
    assert {e.type for e in messages} >= {EventType.NEW, EventType.END}
    assert all(e.snapshot is None and e.clip is None for e in messages), messages  # detected, without media
    assert all(e.reason is not EndReason.STREAM_LOST for e in of(events, EventType.END))


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_substream_down_is_the_cameras_loss_and_ends_its_event(rtsp_server, tmp_path, clips):
    main, sub = clips
    main_server, sub_server = rtsp_server({"cam": main}), rtsp_server({"cam-sub": sub})
    events: list[AnomalyEvent] = []
    runner = start([SourceSpec("cam", sub_server.url("cam-sub"), main_url=main_server.url("cam"))], tmp_path, events)
    try:
        wait_until(lambda: of(events, EventType.NEW), 30, "an event")
        sub_server.stop(kill=True)  # while the square crosses: the event is open
        wait_until(lambda: of(events, EventType.END), 10, "the event to end")
        assert of(events, EventType.END)[0].reason is EndReason.STREAM_LOST
        wait_until(lambda: runner.states()["cam"] is not SourceState.STREAMING, 10, "the camera's state")
        assert runner.states()["cam/main"] is SourceState.STREAMING  # the main stream is not the camera's loss
    finally:
        runner.stop()
        runner.join(30)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_daemon_reports_the_main_stream_as_a_source_of_its_own(rtsp_server, tmp_path, clips):
    from edge.daemon import Daemon
    from edge.health import render_metrics

    main, sub = clips
    server = rtsp_server({"cam": main, "cam-sub": sub})
    with_password = lambda url: url.replace("rtsp://", "rtsp://viewer:s3cret@")  # noqa: E731 - the server ignores it
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(
        textwrap.dedent(f"""\
        outbox: {{path: {tmp_path / "outbox.db"}}}
        media: {{path: {tmp_path / "media"}}}
        tampering: {{enabled: false}}
        cameras:
          - id: dock
            url: {with_password(server.url("cam"))}
            detect_url: {with_password(server.url("cam-sub"))}
            snapshots: {{enabled: true}}
            clips: {{enabled: true}}
        """)
    )
    daemon = Daemon(load_config(cfg_file), duration_s=20)
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        state = lambda source: daemon.snapshot().cameras.get(source, {}).get("state")  # noqa: E731
        wait_until(lambda: state("dock") == state("dock/main") == "streaming", 30, "both streams")
        metrics = render_metrics(daemon.snapshot())
    finally:
        daemon.request_stop()
        thread.join(30)
    streaming = [
        line
        for line in metrics.splitlines()
        if line.startswith('lepton_source_state{camera="dock/main"') and 'state="streaming"' in line
    ]
    assert len(streaming) == 1 and float(streaming[0].rsplit(" ", 1)[1]) == 1.0, metrics
    assert "s3cret" not in metrics


# -- the tie --------------------------------------------------------------------------------------------------------
T0 = datetime(2026, 12, 7, tzinfo=timezone.utc)


def detect_frame(pts: float, arrival: float, wall: float | None) -> VideoFrame:
    clock = WallClock.RTCP if wall is not None else WallClock.RECEIVE
    return VideoFrame(
        "cam", 0, pts, int(arrival * 1e9), T0 + timedelta(seconds=wall or 0.0), np.zeros((2, 2), np.uint8), clock
    )


def test_the_tie_uses_the_sender_reports_when_they_agree_with_arrival():
    tie = StreamTie("cam", samples=3)
    # detect: source pts 100 + t, arriving at monotonic 50 + t + 0.08 (decoded), wall time 1000 + t
    for k in range(10):
        tie.observe(detect_frame(100 + k * 0.2, 50 + k * 0.2 + 0.08, 1000 + k * 0.2))
    # main: raw pts t - 7 (its session started later), arriving at 50 + t, sender reports: wall of raw 0 = 1007
    offsets = [tie.main_offset(t - 7, 50 + t, T0.timestamp() + 1007) for t in (2.0, 2.04, 2.08, 2.12)]
    assert offsets[:2] == [None, None]  # measured on 3 packets
    assert offsets[2] == pytest.approx(107.0) and offsets[3] == offsets[2] and tie.method == "rtcp"
    assert tie.disagreement_s == pytest.approx(0.08)  # the detect decoder's delay


def test_the_tie_falls_back_to_arrival_when_the_clocks_disagree_or_never_report(caplog):
    tie = StreamTie("cam", samples=3, rtcp_wait_s=1.0)
    for k in range(10):
        tie.observe(detect_frame(100 + k * 0.2, 50 + k * 0.2, 1000 + k * 0.2))
    with caplog.at_level(logging.WARNING):
        for t in (2.0, 2.04, 2.08):
            offset = tie.main_offset(t - 7, 50 + t, T0.timestamp() + 1207)  # the main stream's clock: 200 s off
    assert tie.method == "arrival" and offset == pytest.approx(107.0)
    assert "disagree" in caplog.text
    tie.main_session()  # a new connection of the main stream: measured again; no sender report ever comes
    got = [tie.main_offset(t - 3, 50 + t, None) for t in np.arange(3.0, 4.2, 0.04)]
    waited = sum(1 for g in got if g is None)
    assert 20 <= waited <= 26  # ~1 s of main-stream time waiting for sender reports
    assert got[-1] == pytest.approx(103.0) and tie.method == "arrival"


def test_the_tie_waits_for_the_detect_stream():
    tie = StreamTie("cam", samples=1)
    assert tie.main_offset(0.0, 10.0, None) is None  # nothing scored yet: the ring keeps the packets pending


# -- configuration -------------------------------------------------------------------------------------------------
def test_detect_url_becomes_the_scored_url_and_url_the_main_stream(tmp_path):
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(
        textwrap.dedent("""\
        cameras:
          - id: dock
            url: rtsp://viewer:s3cret@192.0.2.10:554/Streaming/Channels/101
            detect_url: rtsp://viewer:s3cret@192.0.2.10:554/Streaming/Channels/102
          - id: yard
            url: rtsp://192.0.2.11/stream1
        """)
    )
    dock, yard = load_config(cfg_file).source_specs()
    assert dock.url.endswith("/102") and dock.main_url is not None and dock.main_url.endswith("/101")
    assert yard.main_url is None
    assert "s3cret" not in repr(dock)


def test_detect_url_problems_are_listed_with_their_lines(tmp_path):
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(
        textwrap.dedent("""\
        cameras:
          - id: a
            url: rtsp://u:s3cret@192.0.2.10/main
            detect_url: rtsp://u:s3cret@192.0.2.10/main
          - id: b
            url: /data/b.mkv
            detect_url: rtsp://u:s3cret@192.0.2.10/sub
          - id: c
            url: rtsp://u:s3cret@192.0.2.10/main
            detect_url: http://u:s3cret@192.0.2.10/sub
          - id: d
            url: rtsp://192.0.2.10/main
            detect_url: rtsp://192.0.2.10:99999/sub
        """)
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file)
    problems = err.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 4", "line 7", "line 10", "line 13"], problems
    assert "the same URL as url" in problems[0] and "rtsp://" in problems[1]
    assert "http:// is not supported" in problems[2] and "1-65535" in problems[3]
    assert not any("s3cret" in p for p in problems)


@pytest.mark.parametrize(
    ("text", "ok"),
    [("640x360", (640, 360)), ("320X180", (320, 180)), ("641x360", None), ("640", None), ("8x8", None), ("axb", None)],
)
def test_substream_sizes(text, ok):
    import argparse

    if ok is None:
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(text)
    else:
        assert parse_size(text) == ok


def test_a_substream_keeps_the_frame_times_and_keyframes_and_copies_the_audio(clips):
    main, sub = clips

    def layout(path):
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            packets = [(round(float(p.pts * p.time_base), 3), p.is_keyframe) for p in c.demux(v) if p.size]
            return (v.codec_context.width, v.codec_context.height), packets, len(c.streams.audio)

    (main_size, main_packets, main_audio), (sub_size, sub_packets, sub_audio) = layout(main), layout(sub)
    assert main_size == MAIN and sub_size == SUB
    assert sub_packets == main_packets and main_audio == sub_audio == 1


def test_nothing_but_a_ring_is_needed_to_open_a_main_stream():
    """A camera that keeps no snapshots or clips never opens its main stream: no source, no cost."""
    runner = Runner(
        [SourceSpec("cam", "rtsp://127.0.0.1:1/sub", main_url="rtsp://127.0.0.1:1/main")],
        TrackModel(),
        lambda e: None,
        SETTINGS,
    )
    assert set(runner.workers) == {"cam"}
