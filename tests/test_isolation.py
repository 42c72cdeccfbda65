"""``isolation: process``: each camera decoded in a child process of its own.

Real processes, real signals: a child killed by SIGSEGV or frozen by SIGSTOP while two other cameras stream from
the real GStreamer RTSP server (``slow``); a daemon killed under its children; the config; and the same events
from a sample clip whether it is decoded on a thread or in a process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES
from fixtures.streams import write_stream
from test_capture_faults import live_spec, wait_until
from test_runner import BrightLoudModel

from alerts.outbox import Outbox
from edge.config import load_config
from edge.daemon import Daemon
from edge.errors import ConfigError
from pipeline.errors import SourceCrashedError
from pipeline.frames import Modality, StreamEnd, VideoFrame
from pipeline.runner import Runner
from pipeline.sources import MediaReader, SourceSpec
from pipeline.sources.capture import BoundedBuffer, BufferPolicy, CaptureWorker, SourceState
from pipeline.sources.isolated import ProcessReader

S = SourceState


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


# -- config ------------------------------------------------------------------------------------------------------


def write_config(tmp_path: Path, camera: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text("cameras:\n  - id: a\n    url: rtsp://u:p@127.0.0.1:1/x\n" + camera)
    return path


def test_isolation_defaults_to_thread_and_reaches_the_source_spec(tmp_path):
    assert load_config(write_config(tmp_path, "")).source_specs()[0].isolation == "thread"
    cfg = load_config(write_config(tmp_path, "    isolation: process\n"))
    assert cfg.source_specs()[0].isolation == "process"
    assert load_config(ROOT / "configs" / "site.yaml").source_specs()[1].isolation == "process"
    with pytest.raises(ValueError, match="isolation must be one of thread, process"):
        SourceSpec("a", "x.mkv", isolation="fork")


def test_invalid_isolation_fails_with_its_line_and_process_with_media_is_accepted(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, "    isolation: fork\n"))
    assert "line 4: cameras.0.isolation: Input should be 'thread' or 'process'" in "\n".join(err.value.problems)
    cfg = load_config(
        write_config(tmp_path, "    isolation: process\n    snapshots: {enabled: true}\n    clips: {enabled: true}\n")
    )
    assert cfg.source_specs()[0].isolation == "process"
    assert cfg.cameras[0].snapshots.enabled and cfg.cameras[0].clips.enabled


def test_a_process_camera_feeds_the_packet_ring_in_the_daemon(tmp_path):
    from pipeline.media.ring import PacketRing

    clip = write_stream(tmp_path / "c.mkv", seconds=3, bright=[(1.0, 1.6)])
    rings = {}
    for isolation in ("thread", "process"):
        ring = PacketRing("f", span_s=100.0, max_bytes=1 << 30)
        opts = dict(width=64, height=48, fps=5.0, packet_sink=ring)
        spec = SourceSpec("f", str(clip))
        reader = MediaReader(spec, **opts) if isolation == "thread" else ProcessReader(spec, **opts)
        try:
            for item in reader.items():
                if isinstance(item, VideoFrame):
                    assert ring.covers(item.pts)  # a frame's packet is in the ring before the frame is scored
        finally:
            reader.close()
        assert not ring.live
        rings[isolation] = ring
    thread, process = (rings[k].packets() for k in ("thread", "process"))
    assert thread and [(p.kind, p.data, p.pts, p.dts, p.duration, p.keyframe) for p in process] == [
        (p.kind, p.data, p.pts, p.dts, p.duration, p.keyframe) for p in thread
    ]
    for kind, tpl in thread[0].session.templates.items():
        a, b = tpl.codec_context, process[0].session.templates[kind].codec_context
        fields = ("name", "extradata", "width", "height", "sample_rate", "channels")
        assert [getattr(a, f, None) for f in fields] == [getattr(b, f, None) for f in fields]
    assert process[0].session.codec_names == thread[0].session.codec_names


# -- one reader in a process -------------------------------------------------------------------------------------


def test_a_process_reader_yields_exactly_what_a_media_reader_yields(tmp_path):
    clip = write_stream(tmp_path / "c.mkv", seconds=3, bright=[(1.0, 1.6)])
    spec = SourceSpec("c", str(clip))
    options = dict(width=32, height=18, fps=5)
    here = MediaReader(spec, **options)
    here.open()
    expected = list(here.items())
    here.close()
    there = ProcessReader(spec, **options)
    there.open()
    pid = there.pid
    got = list(there.items())
    there.close()
    assert gone(pid)
    assert len(got) == len(expected) > 15
    for a, b in zip(got, expected, strict=True):
        assert type(a) is type(b) and a.seq == b.seq and a.pts == b.pts
        assert np.array_equal(
            a.luma if isinstance(a, VideoFrame) else a.samples, b.luma if isinstance(b, VideoFrame) else b.samples
        )


def test_errors_cross_as_their_class_without_credentials(tmp_path, unused_tcp_port):
    reader = ProcessReader(
        SourceSpec("c", f"rtsp://admin:s3cret@127.0.0.1:{unused_tcp_port}/x"), width=8, height=8, fps=5
    )
    with pytest.raises(ConnectionError) as err:
        reader.open()
    assert "connection refused" in str(err.value) and "s3cret" not in str(err.value)
    with pytest.raises(FileNotFoundError):
        ProcessReader(SourceSpec("c", str(tmp_path / "none.mkv")), width=8, height=8, fps=5).open()


def test_an_unexpected_exception_in_the_child_is_a_crash_with_its_traceback():
    reader = ProcessReader(SourceSpec("c", "rtsp://admin:s3cret@127.0.0.1:9/x"), width=8, height=8, fps=0)
    with pytest.raises(SourceCrashedError) as err:
        reader.open()
    message = str(err.value)
    assert "the capture process crashed: ValueError: fps must be positive" in message
    assert "Traceback" in message and "s3cret" not in message and reader.pid is None


def test_a_killed_file_child_fails_the_file_naming_the_signal(tmp_path, caplog):
    clip = write_stream(tmp_path / "c.mkv", seconds=20, audio_codec=None)
    stop, ready = threading.Event(), threading.Event()
    buf = BoundedBuffer(1000, BufferPolicy.WAIT, ready)
    spec = SourceSpec("f", str(clip), pace=True, isolation="process")
    worker = CaptureWorker(spec, lambda s: ProcessReader(s, width=8, height=8, fps=5), buf, stop)
    worker.start()
    try:
        wait_until(lambda: worker.stats().frames >= 3, 20, "frames")
        os.kill(worker.capture_pid, signal.SIGSEGV)
        worker.join(10)
    finally:
        stop.set()
        worker.join(5)
    assert worker.state is S.FAILED and worker.stats().crashes == 1
    assert "was killed by SIGSEGV" in worker.last_error
    assert "was killed by SIGSEGV" in caplog.text and "Traceback" not in caplog.text
    end = [i for i in iter(buf.get_nowait, None) if isinstance(i, StreamEnd)]
    assert end and end[0].lost


def test_children_die_with_the_daemon(tmp_path):
    clip = write_stream(tmp_path / "c.mkv", seconds=30, audio_codec=None)
    script = textwrap.dedent("""
        import sys, time
        from pipeline.sources import SourceSpec
        from pipeline.sources.isolated import ProcessReader
        if __name__ == "__main__":
            reader = ProcessReader(SourceSpec("c", sys.argv[1], pace=True), width=8, height=8, fps=5)
            reader.open()
            items = reader.items()
            next(items)
            print(reader.pid, flush=True)
            time.sleep(60)
        """)
    (tmp_path / "daemon.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "daemon.py"), str(clip)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        child = int(proc.stdout.readline())
        assert not gone(child)
        proc.kill()  # the daemon dies without a chance to stop anything
        proc.wait(5)
        wait_until(lambda: gone(child), 5, "the orphaned capture process to exit")
    finally:
        proc.kill()
        proc.wait(5)


# -- the same events on a thread and in a process ---------------------------------------------------------------


def daemon_events(tmp_path: Path, isolation: str) -> list[tuple[float, float]]:
    """The (start_pts, end_pts) of each event the daemon ended on ``samples/test_1.mkv``."""
    folder = tmp_path / isolation
    folder.mkdir()
    cfg = folder / "site.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        outbox: {{path: {folder / "outbox.db"}}}
        cameras:
          - id: plaza
            url: {SAMPLES / "test_1.mkv"}
            replay: fast
            isolation: {isolation}
        """)
    )
    Daemon(load_config(cfg)).run(install_signals=False)
    with Outbox(folder / "outbox.db", readonly=True) as outbox:
        messages = [row.message() for row in outbox.read(limit=10_000)]
    return [(m.start_pts, m.end_pts) for m in messages if m.type == "end" and m.end_pts is not None]


@pytest.mark.timeout(120)
def test_process_isolation_gives_the_same_events_as_a_thread(tmp_path):
    threaded = daemon_events(tmp_path, "thread")
    isolated = daemon_events(tmp_path, "process")
    assert len(threaded) >= 3
    # the frames are identical (test above); a fast replay fuses video and audio in whatever batches the scoring
    # thread happens to take, which moves an event's edges by a frame or two in thread mode alone
    assert len(isolated) == len(threaded)
    for (s1, e1), (s2, e2) in zip(isolated, threaded, strict=True):
        assert abs(s1 - s2) <= 0.5 and abs(e1 - e2) <= 0.5, (isolated, threaded)


# -- real cameras (GStreamer RTSP server) ------------------------------------------------------------------------


def with_credentials(url: str) -> str:
    return url.replace("rtsp://", "rtsp://admin:s3cret@", 1)


def start_three(rtsp_server, tmp_path, **spec_kw):
    clip = write_stream(tmp_path / "c.mkv", seconds=2)
    server = rtsp_server({c: clip for c in ("cam1", "cam2", "cam3")})
    specs = [
        live_spec(c, with_credentials(server.url(c)), isolation="process", **spec_kw) for c in ("cam1", "cam2", "cam3")
    ]
    video_pts: dict[str, list[float]] = {c: [] for c in ("cam1", "cam2", "cam3")}

    def tap(score):
        if score.modality is Modality.VIDEO:
            video_pts[score.camera_id].append(score.pts)

    runner = Runner(specs, BrightLoudModel(), lambda e: None, on_score=tap)
    assert runner.open_sources() == {}
    runner.start()
    wait_until(lambda: all(s is S.STREAMING for s in runner.states().values()), 20, "three cameras streaming")
    return runner, video_pts


def others_rising(runner, before: dict[str, int]) -> dict[str, int]:
    """Each of these cameras scores a new frame within two seconds (they stream at 5 fps)."""
    wait_until(
        lambda: all(runner.stats[c].frames_scored > n for c, n in before.items()),
        2.0,
        f"frames on {sorted(before)} beyond {before}",
    )
    return {c: runner.stats[c].frames_scored for c in before}


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_segfault_restarts_that_camera_only_and_its_pts_go_on(rtsp_server, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    runner, video_pts = start_three(rtsp_server, tmp_path)
    w3 = runner.workers["cam3"]
    try:
        wait_until(lambda: len(video_pts["cam3"]) >= 5, 15, "cam3 frames")
        crashed = w3.capture_pid
        others = others_rising(runner, {c: runner.stats[c].frames_scored for c in ("cam1", "cam2")})
        os.kill(crashed, signal.SIGSEGV)
        wait_until(lambda: w3.stats().crashes == 1, 10, "the crash to be noticed")
        others = others_rising(runner, others)
        frames_at_crash = len(video_pts["cam3"])
        wait_until(lambda: w3.state is S.STREAMING and w3.capture_pid not in (None, crashed), 15, "cam3 restarted")
        others = others_rising(runner, others)
        wait_until(lambda: len(video_pts["cam3"]) >= frames_at_crash + 5, 10, "cam3 frames after the restart")
        others_rising(runner, others)
        assert all(runner.states()[c] is S.STREAMING for c in ("cam1", "cam2"))
        restarted = w3.capture_pid
    finally:
        stopping = time.monotonic()
        runner.stop()
        runner.join()
    assert time.monotonic() - stopping < 5.0  # children stop promptly (bounded, then killed)
    path = [(a, b) for _, a, b in w3.transitions()]
    assert (S.STREAMING, S.BACKOFF) in path
    assert path[path.index((S.STREAMING, S.BACKOFF)) :][:3] == [
        (S.STREAMING, S.BACKOFF),
        (S.BACKOFF, S.CONNECTING),
        (S.CONNECTING, S.STREAMING),
    ]
    stats = w3.stats()
    assert stats.crashes == 1 and stats.reconnects == 1
    assert f"the capture process (pid {crashed}) was killed by SIGSEGV" in stats.last_error
    assert "***@127.0.0.1" in stats.last_error
    pts = video_pts["cam3"]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))  # source time went on across the crash
    assert all(runner.workers[c].stats().crashes == 0 for c in ("cam1", "cam2"))
    assert "s3cret" not in caplog.text and all("s3cret" not in repr(w.stats()) for w in runner.workers.values())
    assert gone(crashed) and gone(restarted)  # nothing outlives the runner
    assert all(w.capture_pid is None for w in runner.workers.values())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_stopped_child_is_a_stall_killed_and_restarted(rtsp_server, tmp_path):
    runner, video_pts = start_three(rtsp_server, tmp_path, stall_timeout_s=1.5)
    w2 = runner.workers["cam2"]
    try:
        frozen = w2.capture_pid
        os.kill(frozen, signal.SIGSTOP)  # a hang no Python code in the child can notice
        frozen_at = time.monotonic()
        others = {c: runner.stats[c].frames_scored for c in ("cam1", "cam3")}
        wait_until(lambda: w2.stats().stalls == 1, 10, "the watchdog")
        assert time.monotonic() - frozen_at <= 1.5 + 0.5 + 1.0
        others = others_rising(runner, others)
        wait_until(lambda: w2.state is S.STREAMING and w2.capture_pid not in (None, frozen), 15, "cam2 restarted")
        n = len(video_pts["cam2"])
        wait_until(lambda: len(video_pts["cam2"]) > n + 3, 10, "cam2 frames after the restart")
        others_rising(runner, others)
    finally:
        runner.stop()
        runner.join()
    assert gone(frozen)
    path = [(a, b) for _, a, b in w2.transitions()]
    assert path[:5] == [
        (S.CONNECTING, S.STREAMING),
        (S.STREAMING, S.STALLED),
        (S.STALLED, S.BACKOFF),
        (S.BACKOFF, S.CONNECTING),
        (S.CONNECTING, S.STREAMING),
    ]
    assert f"the capture process (pid {frozen}) delivered nothing for 2.0 s; killed it" in w2.last_error
    assert "s3cret" not in w2.last_error and w2.stats().crashes == 0
    pts = video_pts["cam2"]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))


def test_source_crashed_error_is_a_source_error():
    from pipeline.errors import SourceError

    assert issubclass(SourceCrashedError, SourceError) and issubclass(SourceCrashedError, ChildProcessError)
