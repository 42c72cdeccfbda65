"""Streams that change under the reader: resolution, codecs, missing modalities, jumping timestamps, late audio.

Files (MPEG-TS segments concatenated byte for byte, as recorders and cameras produce them) run in milliseconds;
the RTSP cases use the real GStreamer server (``slow``).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fixtures.streams import concatenate, remux_video, write_stream

from pipeline.frames import AudioWindow, VideoFrame, WallClock
from pipeline.sources import MediaReader, SourceSpec, read_media
from pipeline.sources.timeline import StreamTimeline

W, H, FPS = 64, 36, 5.0


def decode(path, **kw):
    items = list(read_media(str(path), width=W, height=H, fps=FPS, **kw))
    video = [i for i in items if isinstance(i, VideoFrame)]
    audio = [i for i in items if isinstance(i, AudioWindow)]
    return video, audio


def increasing(values):
    return all(b > a for a, b in zip(values, values[1:], strict=False))


# -- the time line -------------------------------------------------------------------------------------------


def test_timeline_backward_jump_starts_a_segment_that_the_other_stream_joins():
    tl = StreamTimeline()
    assert [tl.map("video", t, gap_s=0.2, now=0) for t in (0.0, 1.0, 2.0)] == [0.0, 1.0, 2.0]
    assert tl.map("audio", 1.9, gap_s=0.2, now=0) == 1.9
    assert tl.map("video", 0.0, gap_s=0.2, now=0) == pytest.approx(2.2)  # back to 0: placed after 2.0
    assert tl.discontinuities == 1
    assert tl.map("audio", 1.95, gap_s=0.2, now=0) == 1.95  # audio not jumped yet: still its old segment
    assert tl.map("audio", 0.05, gap_s=0.2, now=0) == pytest.approx(2.25)  # joins video's segment: in sync
    assert tl.discontinuities == 1
    assert tl.raw("audio", 2.25) == pytest.approx(0.05)


def test_timeline_keeps_small_forward_gaps_and_folds_large_jumps():
    tl = StreamTimeline()
    tl.map("video", 10.0, gap_s=0.2, now=0)
    assert tl.map("video", 13.0, gap_s=0.2, now=0) == 13.0  # frames lost for 3 s: a real gap
    assert tl.map("video", 95_000.0, gap_s=0.2, now=0) == pytest.approx(13.2)  # a wrap or a clock jump
    assert tl.discontinuities == 1


def test_timeline_new_session_continues_after_the_outage():
    tl = StreamTimeline()
    tl.map("video", 5.0, gap_s=0.2, now=100.0)
    tl.new_session(7.5)
    assert tl.map("video", 0.04, gap_s=0.2, now=108.0) == pytest.approx(12.5)
    assert tl.map("audio", 0.0, gap_s=0.2, now=108.0) == pytest.approx(12.46)
    assert tl.discontinuities == 0  # a reconnection is not a jump in the camera's timestamps


# -- files ---------------------------------------------------------------------------------------------------


def test_resolution_change_mid_stream_keeps_every_frame(tmp_path):
    small = write_stream(tmp_path / "a.ts", container="mpegts", size=(160, 96), seconds=2, level=30)
    large = write_stream(tmp_path / "b.ts", container="mpegts", size=(320, 192), seconds=2, level=200, start_s=2.0)
    video, audio = decode(concatenate(tmp_path / "ab.ts", [small, large]))
    assert len(video) == 20
    assert all(f.luma.shape == (H, W) for f in video)
    levels = [int(f.luma.mean() > 100) for f in video]
    assert levels == [0] * 10 + [1] * 10
    assert increasing([f.pts for f in video])
    assert video[10].pts == pytest.approx(2.0, abs=0.1)  # no jump: file time is kept
    assert len(audio) >= 6 and increasing([w.pts for w in audio])


def test_backward_pts_jump_is_a_new_segment_not_dropped_frames(tmp_path):
    """Before the time line, every frame after a jump back was dropped as a repeat, forever."""
    first = write_stream(tmp_path / "a.ts", container="mpegts", seconds=2, level=30)
    again = write_stream(tmp_path / "b.ts", container="mpegts", seconds=2, level=200)  # pts restart at 0
    video, audio = decode(concatenate(tmp_path / "ab.ts", [first, again]))
    assert [int(f.luma.mean() > 100) for f in video] == [0] * 10 + [1] * 10
    pts = [f.pts for f in video]
    assert increasing(pts)
    assert pts[10] - pts[9] == pytest.approx(0.2, abs=0.25)  # placed right after the first segment
    steps = [b - a for a, b in zip(pts[10:], pts[11:], strict=False)]
    assert steps == pytest.approx([0.2] * 9, abs=0.01)  # sampling resynchronised at the seam
    assert [f.seq for f in video] == list(range(20))
    assert increasing([w.pts for w in audio]) and audio[-1].pts > pts[10]  # audio followed into the segment


def test_forward_pts_jumps_small_is_a_gap_large_is_folded(tmp_path):
    first = write_stream(tmp_path / "a.ts", container="mpegts", seconds=2)
    gap = write_stream(tmp_path / "b.ts", container="mpegts", seconds=2, start_s=5.0)  # 3 s of frames lost
    far = write_stream(tmp_path / "c.ts", container="mpegts", seconds=2, start_s=500.0)
    video, audio = decode(concatenate(tmp_path / "abc.ts", [first, gap, far]))
    pts = [f.pts for f in video]
    assert len(video) == 30 and increasing(pts)
    assert pts[10] == pytest.approx(5.0, abs=0.1)  # the gap is real time: kept
    assert pts[20] - pts[19] < 1.0  # 493 s jump: folded onto the time line
    windows = [w.pts for w in audio]
    assert increasing(windows) and any(4.9 < p < 7.1 for p in windows)  # audio restarted after the gap


def test_audio_sample_rate_change_mid_stream(tmp_path):
    low = write_stream(tmp_path / "a.ts", container="mpegts", seconds=2, audio_rate=16000)
    high = write_stream(tmp_path / "b.ts", container="mpegts", seconds=2, audio_rate=48000, start_s=2.0)
    video, audio = decode(concatenate(tmp_path / "ab.ts", [low, high]))
    assert len(video) == 20
    assert [round(w.pts, 2) for w in audio] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # resampled on, no gap
    assert all(0.05 < float(np.abs(w.samples).max()) < 0.2 for w in audio)


@pytest.mark.parametrize(
    ("video_codec", "audio_codec", "container", "suffix"),
    [
        ("libx265", "libopus", "matroska", "mkv"),
        ("libx264", "pcm_alaw", "mov", "mov"),
        ("libx264", "pcm_mulaw", "mov", "mov"),
        ("libx265", "aac", "mpegts", "ts"),
    ],
)
def test_codecs(tmp_path, video_codec, audio_codec, container, suffix):
    clip = write_stream(
        tmp_path / f"c.{suffix}",
        video_codec=video_codec,
        audio_codec=audio_codec,
        container=container,
        seconds=2,
        bright=[(1.0, 2.0)],
    )
    video, audio = decode(clip)
    assert len(video) == 10
    assert [int(f.luma.mean() > 100) for f in video] == [0] * 5 + [1] * 5
    assert len(audio) >= 2
    assert all(w.sample_rate == 16000 and w.samples.shape == (16000,) for w in audio)
    assert 0.05 < float(np.abs(audio[0].samples).max()) < 0.2  # the 0.1 tone, resampled from any rate


def test_video_only_and_audio_only_files(tmp_path):
    video, audio = decode(write_stream(tmp_path / "v.mkv", audio_codec=None))
    assert len(video) == 10 and audio == []
    video, audio = decode(write_stream(tmp_path / "a.mkv", video_codec=None))
    assert video == [] and len(audio) >= 2


def test_late_audio_is_placed_on_the_video_time_line(tmp_path):
    video, audio = decode(write_stream(tmp_path / "late.mkv", seconds=3, audio_start_s=1.5))
    assert video[0].pts == pytest.approx(0.0) and len(video) == 15
    assert audio and audio[0].pts == pytest.approx(1.5, abs=0.07)


def test_audio_track_without_packets_gives_video_only(tmp_path):
    import av

    path = tmp_path / "mute.mkv"
    with av.open(str(path), "w") as out:  # an audio track is declared, never written
        vs = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "bf": "0"})
        vs.width, vs.height, vs.pix_fmt = 160, 96, "yuv420p"
        out.add_stream("aac", rate=16000, layout="mono")
        for i in range(50):
            out.mux(vs.encode(av.VideoFrame.from_ndarray(np.full((96, 160, 3), i, np.uint8), format="rgb24")))
        out.mux(vs.encode(None))
    started = time.monotonic()
    video, audio = decode(path)
    assert len(video) == 10 and audio == []
    assert time.monotonic() - started < 10


# -- RTSP ----------------------------------------------------------------------------------------------------


def read_live(url, seconds, until=None, **spec_kw):
    """Decode a camera for ``seconds`` (or until ``until(video, audio)``); returns (video, audio, reader)."""
    reader = MediaReader(SourceSpec("cam", url, **spec_kw), width=W, height=H, fps=FPS)
    reader.open()
    video, audio = [], []
    end = time.monotonic() + seconds
    stop = threading.Event()
    try:
        for item in reader.items(stop):
            (video if isinstance(item, VideoFrame) else audio).append(item)
            if time.monotonic() > end or (until is not None and until(video, audio)):
                break
    finally:
        reader.close()
    return video, audio, reader


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_rtsp_cameras_of_every_kind(rtsp_server, tmp_path):
    """Video-only, audio-only, H.265 + Opus, H.264 + G.711 A-law and mu-law: each decodes live, in parallel."""
    clips = {
        "video_only": write_stream(tmp_path / "v.mkv", audio_codec=None),
        "audio_only": write_stream(tmp_path / "a.mkv", video_codec=None),
        "hevc_opus": write_stream(tmp_path / "h.mkv", video_codec="libx265", audio_codec="libopus"),
        "pcma": write_stream(tmp_path / "pa.mov", container="mov", audio_codec="pcm_alaw"),
        "pcmu": write_stream(tmp_path / "pu.mov", container="mov", audio_codec="pcm_mulaw"),
    }
    server = rtsp_server(clips)
    results: dict[str, tuple] = {}

    def rtcp_for_a_while(video, audio):
        return sum(i.clock is WallClock.RTCP for i in video or audio) >= 5

    def read(name):
        if name == "video_only":  # until the camera's clock took over: its first RTCP report is randomised
            results[name] = read_live(server.url(name), 10, until=rtcp_for_a_while)
        else:
            results[name] = read_live(server.url(name), 2.5)

    threads = [threading.Thread(target=read, args=(name,)) for name in clips]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert set(results) == set(clips), server.log()
    for name, (video, audio, reader) in results.items():
        assert bool(video) is (name != "audio_only"), name
        assert bool(audio) is (name != "video_only"), name
        assert increasing([f.pts for f in video]) and increasing([w.pts for w in audio]), name
        assert reader.decode_errors <= 2, name
    # the receive clock until the first RTCP sender report, the camera's clock from then on
    clocks = [f.clock for f in results["video_only"][0]]
    first = clocks.index(WallClock.RTCP)
    assert set(clocks[:first]) <= {WallClock.RECEIVE} and set(clocks[first:]) == {WallClock.RTCP}
    rtcp = [f for f in results["video_only"][0] if f.clock is WallClock.RTCP]
    assert all(abs((f.wall_time - f.wall_time.now(f.wall_time.tzinfo)).total_seconds()) < 5 for f in rtcp)
    gaps = [(b.wall_time - a.wall_time).total_seconds() - (b.pts - a.pts) for a, b in zip(rtcp, rtcp[1:], strict=False)]
    assert max(map(abs, gaps)) < 0.01  # RTCP wall time moves with stream time, not with arrival jitter


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_rtsp_resolution_changes_within_one_session(rtsp_server, tmp_path):
    small = write_stream(tmp_path / "s.ts", container="mpegts", size=(160, 96), level=30, audio_codec=None)
    large = write_stream(
        tmp_path / "l.ts", container="mpegts", size=(320, 192), level=200, audio_codec=None, start_s=2.0
    )
    server = rtsp_server({"cam": remux_video(tmp_path / "both.mkv", [small, large])})
    video, _, reader = read_live(server.url("cam"), 4.5)  # 160x96, 320x192, then 160x96 again (looping)
    bright = [int(f.luma.mean() > 100) for f in video]
    assert bright[:10] == [0] * 10 and bright[10:20] == [1] * 10 and bright[20:22] == [0, 0]
    assert all(f.luma.shape == (H, W) for f in video) and increasing([f.pts for f in video])
    assert reader.decode_errors == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_rtsp_camera_switching_resolution(rtsp_server, tmp_path):
    """The server comes back with a different file (another resolution): frames resume at the model's size."""
    from pipeline.sources.capture import BoundedBuffer, BufferPolicy, CaptureWorker, SourceState

    small = write_stream(tmp_path / "s.mkv", size=(160, 96), level=30, audio_codec=None)
    large = write_stream(tmp_path / "l.mkv", size=(320, 192), level=200, audio_codec=None)
    server = rtsp_server({"cam": small})
    stop, ready = threading.Event(), threading.Event()
    buf = BoundedBuffer(1000, BufferPolicy.DROP_OLDEST, ready)
    spec = SourceSpec("cam", server.url("cam"), backoff_initial_s=0.2, backoff_max_s=0.5, stall_timeout_s=3)
    worker = CaptureWorker(spec, lambda s: MediaReader(s, width=W, height=H, fps=FPS), buf, stop)
    seen: list = []

    def bright_frame_arrived():
        while (item := buf.get_nowait()) is not None:
            seen.append(item)
        return any(isinstance(i, VideoFrame) and i.luma.mean() > 100 for i in seen)

    worker.start()
    try:
        wait_for(lambda: worker.frames >= 5, 15, worker)
        server.mounts["cam"] = large.resolve()  # the same camera, now serving another file
        server.restart(kill=True)
        wait_for(bright_frame_arrived, 15, worker)
        assert worker.state is SourceState.STREAMING
        frames = [i for i in seen if isinstance(i, VideoFrame)]
        assert all(f.luma.shape == (H, W) for f in frames) and increasing([f.pts for f in frames])
    finally:
        stop.set()
        worker.join(10)


def wait_for(condition, timeout, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s; {worker.stats() if worker else ''}")
