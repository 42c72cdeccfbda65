"""Capture under faults: states and their table, back-off with jitter, the stall watchdog, failure isolation,
garbage input; at the end, the same against the real GStreamer RTSP server (``slow``).

Unit tests drive ``CaptureWorker`` with scripted readers that obey ``MediaReader``'s interface (open, items,
close) and a recorded ``wait``, so back-off schedules are checked without sleeping.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from fixtures.streams import garbage_after_header, truncate, write_stream
from test_runner import BrightLoudModel

from pipeline.aggregator import AggregatorSettings
from pipeline.errors import SourceConnectionError, SourceFormatError
from pipeline.events import EndReason, EventType
from pipeline.frames import StreamEnd, VideoFrame, utc_now
from pipeline.runner import Runner, RunnerSettings
from pipeline.sources import MediaReader, SourceSpec
from pipeline.sources.capture import (
    TRANSITIONS,
    BoundedBuffer,
    BufferPolicy,
    CaptureWorker,
    IllegalTransition,
    SourceState,
)
from pipeline.sources.reader import SourceStalledError
from pipeline.sources.timeline import StreamTimeline

S = SourceState
LIVE_URL = "rtsp://admin:s3cret@127.0.0.1:9/cam"


# -- scripted readers ----------------------------------------------------------------------------------------


@dataclass
class Session:
    refuse: bool = False
    frames: int = 0
    end: str = "lost"  # lost | stall | garbage | crash | none


class ScriptedReader:
    """One scripted connection; the same interface as ``MediaReader``."""

    def __init__(self, spec: SourceSpec, session: Session, shape: tuple[int, int] = (2, 2)) -> None:
        self.spec = spec
        self.session = session
        self.shape = shape
        self.container: object | None = None
        self.decode_errors = 0

    def open(self) -> None:
        if self.session.refuse:
            raise SourceConnectionError(f"{self.spec.safe_url}: connection refused (nothing listening)")
        self.container = object()

    def items(self, stop=None, *, timeline=None):
        tl = timeline or StreamTimeline()
        for i in range(self.session.frames):
            pts = tl.map("video", i * 0.2, gap_s=0.2, now=0.0)
            luma = np.zeros(self.shape, np.uint8)
            yield VideoFrame(self.spec.camera_id, i, pts, time.monotonic_ns(), utc_now(), luma)
        end = self.session.end
        if end == "stall":
            raise SourceStalledError(f"{self.spec.safe_url}: no video frame for 1.0 s")
        if end == "garbage":
            self.decode_errors += 25
            raise SourceFormatError(f"{self.spec.safe_url}: garbage video: 25 of its last 50 packets")
        if end == "crash":
            raise RuntimeError(f"decoder blew up on {self.spec.url}")

    def close(self) -> None:
        self.container = None


class Script:
    """Reader factory playing ``sessions`` in order; when they run out it stops the worker."""

    def __init__(self, sessions: list[Session], stop: threading.Event) -> None:
        self.sessions = list(sessions)
        self.stop = stop

    def __call__(self, spec: SourceSpec) -> ScriptedReader:
        if not self.sessions:
            self.stop.set()
            return ScriptedReader(spec, Session(end="none"))
        return ScriptedReader(spec, self.sessions.pop(0))


def scripted_worker(sessions, *, url=LIVE_URL, **kw):
    stop, ready = threading.Event(), threading.Event()
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return stop.is_set()

    spec = SourceSpec("cam", url, backoff_initial_s=0.5, backoff_max_s=2.0)
    buf = BoundedBuffer(100, BufferPolicy.DROP_OLDEST, ready)
    worker = CaptureWorker(spec, Script(sessions, stop), buf, stop, rng=random.Random(7), wait=wait, **kw)
    return worker, buf, waits


def run_to_end(worker):
    worker.start()
    worker.join(10)
    assert not worker.is_alive()


def changes(worker):
    return [(a, b) for _, a, b in worker.transitions()]


def drained(buf):
    items = []
    while (item := buf.get_nowait()) is not None:
        items.append(item)
    return items


# -- states and back-off ---------------------------------------------------------------------------------------


def test_transition_table_covers_every_state_and_rejects_the_rest():
    assert set(TRANSITIONS) == set(SourceState)
    assert TRANSITIONS[S.STOPPED] == frozenset()
    worker, _, _ = scripted_worker([])
    with pytest.raises(IllegalTransition):
        worker._set_state(S.STALLED)  # connecting -> stalled: stalling needs a stream first
    worker._set_state(S.STOPPED)
    with pytest.raises(IllegalTransition):
        worker._set_state(S.STREAMING)
    assert changes(worker) == [(S.CONNECTING, S.STOPPED)]


def test_backoff_doubles_with_jitter_up_to_max_and_resets_after_a_stream(caplog):
    sessions = [Session(refuse=True)] * 4 + [Session(frames=3)] + [Session(refuse=True)] * 2
    worker, buf, waits = scripted_worker(sessions)
    with caplog.at_level(logging.DEBUG, logger="pipeline.sources.capture"):
        run_to_end(worker)
    logged = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()]
    assert len(logged) == len(worker.transitions())  # each change logged once
    assert all("s3cret" not in line for line in logged)
    nominal = [0.5, 1.0, 2.0, 2.0, 0.5, 0.5, 1.0]  # doubling, capped at 2; the stream reset it
    assert len(waits) == len(nominal)
    for got, d in zip(waits, nominal, strict=True):
        assert d / 2 <= got <= d
    assert len(set(waits)) == len(waits)  # jittered
    C, B, F, ST, STOP = S.CONNECTING, S.BACKOFF, S.FAILED, S.STREAMING, S.STOPPED
    assert changes(worker) == [
        (C, B),
        (B, C),
        (C, B),
        (B, C),
        (C, F),
        (F, C),
        (C, F),
        (F, C),  # 3rd failure in a row: failed
        (C, ST),
        (ST, B),
        (B, C),
        (C, B),
        (B, C),
        (C, B),
        (B, C),
        (C, STOP),
    ]
    items = drained(buf)
    assert [type(i) for i in items] == [VideoFrame] * 3 + [StreamEnd]  # only a real stream ends with a loss
    assert items[-1].lost and items[-1].reason == "stream_lost"
    stats = worker.stats()
    assert stats.reconnects == 7 and stats.frames == 3 and stats.state is S.STOPPED
    assert stats.as_dict()["state"] == "stopped" and stats.as_dict()["reconnects"] == 7
    assert "s3cret" not in stats.last_error and "***@" in stats.last_error


def test_garbage_after_frames_does_not_reset_the_backoff():
    worker, buf, waits = scripted_worker([Session(frames=2, end="garbage")] * 3)
    run_to_end(worker)
    assert [(a, b) for a, b in changes(worker) if b in (S.BACKOFF, S.FAILED)] == [
        (S.STREAMING, S.BACKOFF),
        (S.STREAMING, S.BACKOFF),
        (S.STREAMING, S.FAILED),
    ]
    assert waits[2] > waits[0] / 2 * 2  # 0.5, 1, 2 nominal: it grew
    assert sum(isinstance(i, StreamEnd) for i in drained(buf)) == 3  # each lost stream still ends events
    assert worker.stats().decode_errors == 75
    assert "garbage video" in worker.stats().last_error


def test_a_stall_after_frames_is_stalled_then_reconnects():
    worker, _, waits = scripted_worker([Session(frames=2, end="stall"), Session(end="stall"), Session(frames=1)])
    run_to_end(worker)
    assert changes(worker)[:4] == [
        (S.CONNECTING, S.STREAMING),
        (S.STREAMING, S.STALLED),
        (S.STALLED, S.BACKOFF),
        (S.BACKOFF, S.CONNECTING),
    ]
    assert (S.CONNECTING, S.BACKOFF) in changes(worker)  # stalled before any frame: just a failed attempt
    assert worker.stats().stalls == 2


def test_a_crash_in_one_camera_is_contained_logged_and_counted(caplog):
    crashing, _, _ = scripted_worker([Session(frames=2, end="crash")] * 3)
    healthy, healthy_buf, _ = scripted_worker([Session(frames=40)])
    crashing.start()
    healthy.start()
    for w in (crashing, healthy):
        w.join(10)
    assert crashing.stats().crashes == 3
    assert crashing.stats().last_error.startswith("RuntimeError: decoder blew up")
    assert "s3cret" not in crashing.stats().last_error
    assert "s3cret" not in caplog.text and "Traceback" in caplog.text
    assert sum(isinstance(i, VideoFrame) for i in drained(healthy_buf)) == 40


def test_unreachable_camera_reports_backoff_without_credentials(unused_tcp_port):
    stop, ready = threading.Event(), threading.Event()
    spec = SourceSpec("cam", f"rtsp://admin:s3cret@127.0.0.1:{unused_tcp_port}/x", backoff_initial_s=5)
    worker = CaptureWorker(
        spec,
        lambda s: MediaReader(s, width=8, height=8, fps=5),
        BoundedBuffer(4, BufferPolicy.DROP_OLDEST, ready),
        stop,
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while worker.state is not S.BACKOFF and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = worker.stats()
        assert stats.state is S.BACKOFF and "connection refused" in stats.last_error
        assert "s3cret" not in repr(stats)
    finally:
        stop.set()
        worker.join(5)
    assert worker.state is S.STOPPED


# -- garbage files -----------------------------------------------------------------------------------------------


def file_worker(path, cam="f"):
    stop, ready = threading.Event(), threading.Event()
    worker = CaptureWorker(
        SourceSpec(cam, str(path)),
        lambda s: MediaReader(s, width=32, height=18, fps=5),
        BoundedBuffer(500, BufferPolicy.WAIT, ready),
        stop,
    )
    return worker


def test_garbage_behind_a_valid_header_fails_the_file(tmp_path):
    clip = write_stream(tmp_path / "ok.mkv", seconds=2)
    header = clip.read_bytes().index(bytes.fromhex("1F43B675"))  # the first Matroska cluster
    worker = file_worker(garbage_after_header(tmp_path / "bad.mkv", clip, keep=header))
    run_to_end(worker)
    assert worker.state is S.FAILED
    assert "no media data after its header" in worker.last_error
    assert changes(worker) == [(S.CONNECTING, S.FAILED)]
    end = drained(worker.buffer)[-1]
    assert isinstance(end, StreamEnd) and end.lost and end.reason == "error"


def test_truncated_and_partly_random_files_yield_what_decodes(tmp_path):
    clip = write_stream(tmp_path / "ok.mkv", seconds=4)
    for path in (truncate(tmp_path / "half.mkv", clip, 0.5), garbage_after_header(tmp_path / "tail.mkv", clip)):
        worker = file_worker(path)
        run_to_end(worker)
        assert 1 <= worker.stats().frames < 20
        # what it holds is delivered, and then it says it was cut short: never a quiet success
        assert worker.state is S.FAILED and "truncated: its data ends at" in str(worker.stats().last_error)


def test_runner_keeps_good_files_going_beside_broken_ones(tmp_path):
    good = write_stream(tmp_path / "good.mkv", seconds=4, bright=[(1.0, 2.0)], audio_codec=None)
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(good.read_bytes()[:700] + bytes(random.Random(1).randbytes(50_000)))
    events = []
    runner = Runner(
        [SourceSpec("good", str(good)), SourceSpec("junk", str(junk))],
        BrightLoudModel(),
        events.append,
        RunnerSettings(aggregator=AggregatorSettings(threshold=3.0, min_duration_s=0.4, hold_s=1.0)),
    )
    assert set(runner.open_sources()) <= {"junk"}
    runner.start()
    assert runner.wait(30)
    runner.join()
    assert runner.states() == {"good": S.STOPPED, "junk": S.FAILED}
    assert [(e.camera_id, e.type) for e in events] == [("good", EventType.NEW), ("good", EventType.END)]


class CrashingRunner(Runner):
    """A runner whose camera ``boom`` has a reader that crashes mid-stream (a fake at the reader boundary)."""

    def _reader_for(self, spec):
        if spec.camera_id == "boom":
            return ScriptedReader(spec, Session(frames=3, end="crash"), (self.model.height, self.model.width))
        return super()._reader_for(spec)


def test_a_crashing_camera_never_stops_the_scoring_thread(tmp_path):
    good = write_stream(tmp_path / "good.mkv", seconds=4, bright=[(1.0, 2.0)], audio_codec=None)
    boom = SourceSpec("boom", LIVE_URL, backoff_initial_s=0.05, backoff_max_s=0.1)
    events = []
    runner = CrashingRunner(
        [SourceSpec("good", str(good), pace=True), boom],
        BrightLoudModel(),
        events.append,
        RunnerSettings(aggregator=AggregatorSettings(threshold=3.0, min_duration_s=0.4, hold_s=1.0)),
    )
    assert runner.open_sources() == {}
    runner.start()
    deadline = time.monotonic() + 30
    while runner.states()["good"] is not S.STOPPED and time.monotonic() < deadline:
        time.sleep(0.05)
    crashes = runner.workers["boom"].stats().crashes
    runner.stop()
    runner.join()
    assert runner.states()["good"] is S.STOPPED and crashes >= 3
    assert runner.stats["good"].frames_scored == 20  # every frame, the first ones on a padded stack
    assert runner.stats["boom"].frames_scored > 0  # its frames between crashes were scored too
    assert ("good", EventType.NEW) in [(e.camera_id, e.type) for e in events]


# -- RTSP (real GStreamer server) --------------------------------------------------------------------------------


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def live_spec(cam, url, **kw):
    defaults = dict(
        backoff_initial_s=0.2, backoff_max_s=1.0, stall_timeout_s=2.0, open_timeout_s=3.0, read_timeout_s=3.0
    )
    return SourceSpec(cam, url, **{**defaults, **kw})


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_killed_camera_ends_its_event_and_resumes_while_the_others_go_on(rtsp_server, tmp_path):
    clip = write_stream(tmp_path / "bright.mkv", seconds=2, bright=[(0.4, 1.9)], audio_codec=None)
    both = rtsp_server({"cam1": clip, "cam2": clip})
    alone = rtsp_server({"cam3": clip})
    specs = [
        live_spec("cam1", both.url("cam1")),
        live_spec("cam2", both.url("cam2")),
        live_spec("cam3", alone.url("cam3")),
    ]
    events = []
    runner = Runner(
        specs,
        BrightLoudModel(),
        events.append,
        RunnerSettings(aggregator=AggregatorSettings(threshold=3.0, min_duration_s=0.4, hold_s=1.0)),
    )
    assert runner.open_sources() == {}
    runner.start()
    w3 = runner.workers["cam3"]
    try:
        cam3 = lambda kind: [e for e in events if e.camera_id == "cam3" and e.type is kind]  # noqa: E731
        wait_until(lambda: cam3(EventType.NEW), 20, "an event on cam3")
        alone.stop(kill=True)  # the camera dies with its event open
        wait_until(lambda: cam3(EventType.END), 10, "cam3's event to end")
        assert cam3(EventType.END)[0].reason is EndReason.STREAM_LOST
        wait_until(lambda: w3.state in (S.BACKOFF, S.FAILED, S.CONNECTING), 10, "cam3 to notice")
        others = {c: runner.stats[c].frames_scored for c in ("cam1", "cam2")}
        time.sleep(1.5)  # the outage
        assert all(runner.stats[c].frames_scored > n + 3 for c, n in others.items()), runner.stats
        assert w3.state is not S.STREAMING
        opened_before = len(cam3(EventType.NEW))
        alone.restart()
        back = time.monotonic()
        streaming = wait_until(lambda: w3.state is S.STREAMING, 15, "cam3 to stream again")
        # within two back-off intervals (at most backoff_max_s each) plus connecting and the first frame
        assert streaming - back <= 2 * w3.spec.backoff_max_s + 2.5
        wait_until(lambda: len(cam3(EventType.NEW)) > opened_before, 20, "a new event on cam3")
        assert all(runner.states()[c] is S.STREAMING for c in ("cam1", "cam2"))
        pts = [e.start_pts for e in cam3(EventType.NEW)]
        assert pts == sorted(pts)  # source time went on across the outage
    finally:
        runner.stop()
        runner.join()
    assert w3.stats().reconnects >= 1 and w3.stats().crashes == 0


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("transport", "stall_s"), [("tcp", 1.5), ("udp", 1.5), ("tcp", 6.0)])
def test_frozen_camera_is_stalled_within_the_timeout_then_reconnected(rtsp_server, tmp_path, transport, stall_s):
    """A camera that stops sending media while its RTSP session and RTCP reports go on, over either transport.
    With a timeout longer than the server's RTCP interval (6 s) only a read timeout counted from the last packet
    catches it: FFmpeg's socket timeout restarts with every RTCP report (docs/decisions/0003)."""
    clip = write_stream(tmp_path / "c.mkv", seconds=2)
    server = rtsp_server({"cam": clip}, freeze_after=1.5)
    stop, ready = threading.Event(), threading.Event()
    buf = BoundedBuffer(1000, BufferPolicy.DROP_OLDEST, ready)
    spec = live_spec("cam", server.url("cam"), stall_timeout_s=stall_s, read_timeout_s=10.0, rtsp_transport=transport)
    worker = CaptureWorker(spec, lambda s: MediaReader(s, width=32, height=18, fps=5), buf, stop)
    worker.start()
    try:
        wait_until(lambda: worker.stats().stalls >= 2, 30 + 4 * stall_s, "two stalls")
    finally:
        stop.set()
        worker.join(10)
    items = drained(buf)
    history = worker.transitions()
    stalled_at = [t for t, _, b in history if b is S.STALLED]
    assert len(stalled_at) >= 2
    # the watchdog fired within twice the stall timeout of the last item before it (plus decoding slack): with
    # PyAV 18.1 here the first stall after a freeze comes ~3.1 s after the last item for a 1.5 s timeout (FFmpeg's
    # socket read waited out a second timeout), the ones after it ~1.5 s
    last_items = [
        max(i.monotonic_ns for i in items if not isinstance(i, StreamEnd) and i.monotonic_ns / 1e9 < t)
        for t in stalled_at
    ]
    assert all(t - last / 1e9 <= 2 * spec.stall_timeout_s + 1.0 for t, last in zip(stalled_at, last_items, strict=True))
    path = [(a, b) for _, a, b in history]
    assert path[:5] == [
        (S.CONNECTING, S.STREAMING),
        (S.STREAMING, S.STALLED),
        (S.STALLED, S.BACKOFF),
        (S.BACKOFF, S.CONNECTING),
        (S.CONNECTING, S.STREAMING),
    ]
    assert "no video frame" in worker.last_error or "nothing received" in worker.last_error


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_corrupt_camera_fails_while_two_others_keep_streaming(rtsp_server, tmp_path):
    clip = write_stream(tmp_path / "c.mkv", seconds=2)
    server = rtsp_server({"cam1": clip, "cam2": clip, "bad": clip}, corrupt={"bad"})
    events = []
    runner = Runner([live_spec(c, server.url(c)) for c in ("cam1", "cam2", "bad")], BrightLoudModel(), events.append)
    runner.open_sources()
    runner.start()
    bad = runner.workers["bad"]
    try:
        wait_until(lambda: bad.state is S.FAILED, 40, "the corrupt camera to be failed")
        counts = {c: runner.stats[c].frames_scored for c in ("cam1", "cam2")}
        time.sleep(1.0)
        assert all(runner.stats[c].frames_scored > n for c, n in counts.items())
        assert runner.states()["cam1"] is runner.states()["cam2"] is S.STREAMING
    finally:
        runner.stop()
        runner.join()
    stats = bad.stats()
    assert stats.frames == 0 and stats.decode_errors > 0 and stats.crashes == 0
    assert "garbage" in stats.last_error
    assert runner.stats["bad"].frames_scored == 0
