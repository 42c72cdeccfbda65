"""The RTSP camera simulator, seen from the client the edge daemon uses (PyAV over RTSP/TCP).

What a client sees (measured here; FFmpeg inside PyAV 18):
- Each client gets its own media that starts at the beginning of the file. The first *timestamped* video
  frame has pts 0.04 and audio starts at pts 0: FFmpeg starts every stream at 0 until RTCP sender reports
  align them. The very first video frame (the IDR that follows SPS/PPS) decodes with ``pts=None``.
- Across the loop point pts keep increasing: pass k of the file is at file time + k x loop length, where the
  loop length is the end of the stream that ends last. Video alone: exactly 4.000 s. With this clip's AAC
  (16 kHz) 4.096 s: AAC pads the audio to whole 1024-sample frames (4.032 s), and GStreamer plays the
  encoder's priming frame instead of trimming it (+64 ms; audio content is 64 ms later than in the file).
  The video then has a 96 ms hole at each loop point.
- The server killed: ``demux()`` ends without an exception, promptly.
- ``--shared``: a client that joins later starts mid-file. Over TCP its pts start at the file time of the
  current pass (FFmpeg takes the npt of the PLAY response's Range header); over UDP they start at 0.
"""

from __future__ import annotations

import math
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest

pytestmark = [pytest.mark.slow]

CLIP_S = 4.0
FPS = 25
WIDTH, HEIGHT = 320, 240
AUDIO_RATE = 16_000
FRAME_S = 1 / FPS
# Small probe so that av.open takes ~0.2 s instead of ~1.1 s (FACTS.md).
CLIENT_OPTIONS = {
    "rtsp_transport": "tcp",
    "timeout": "5000000",  # µs; a stalled read fails instead of hanging
    "analyzeduration": "100000",
    "probesize": "32768",
}
CLIENT_TIMEOUT = (5.0, 5.0)  # (open, read) seconds
READ_S = 1.6 * CLIP_S  # longer than one pass, so every client crosses a loop point
SIMULATOR = Path(__file__).resolve().parents[1] / "edge" / "rtsp_simulator.py"


# -- the clip -------------------------------------------------------------------------------------------


def luma_of(index: int) -> int:
    """Video frame ``index`` has this luma in its top half: a decoded frame tells where in the file it is."""
    return 16 + 2 * index


def write_clip(path: Path, *, video: bool = True, audio: bool = True, seconds: float = CLIP_S) -> Path:
    """A Matroska clip: H.264 (no B-frames, a keyframe per second) with the frame index in the top half's
    luma and a moving bar in the bottom half; AAC mono 16 kHz 440 Hz sine."""
    with av.open(str(path), "w", format="matroska") as container:
        # Every stream before the first mux: a stream added later fails, and closing that container aborts.
        vstream = astream = None
        if video:
            vstream = container.add_stream(
                "libx264", rate=FPS, options={"bf": "0", "g": str(FPS), "x264-params": "sliced-threads=0"}
            )
            vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if audio:
            astream = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        if vstream is not None:
            for index in range(round(seconds * FPS)):
                yuv = np.full((HEIGHT * 3 // 2, WIDTH), 128, np.uint8)
                yuv[: HEIGHT // 2] = luma_of(index)
                yuv[HEIGHT // 2 : HEIGHT] = 40
                x = (8 * index) % (WIDTH - 16)
                yuv[HEIGHT // 2 : HEIGHT, x : x + 16] = 235
                frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                frame.pts = index
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream is not None:
            samples = round(seconds * AUDIO_RATE)
            t = np.arange(samples) / AUDIO_RATE
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = wave[None, start : start + 1024]
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                aframe.sample_rate, aframe.pts = AUDIO_RATE, start
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "av": write_clip(folder / "av.mkv"),
        "video": write_clip(folder / "video.mkv", audio=False),
        "audio": write_clip(folder / "audio.mkv", video=False),
    }


# -- the client -----------------------------------------------------------------------------------------


@dataclass
class Received:
    """What one client decoded: per stream, (pts seconds, monotonic arrival) of each timestamped frame."""

    video: list[tuple[float, float]] = field(default_factory=list)
    audio: list[tuple[float, float]] = field(default_factory=list)
    video_index: list[int] = field(default_factory=list)  # file frame index, read back from the luma
    untimed_video: int = 0  # video frames decoded with pts None
    open_s: float = math.nan
    error: BaseException | None = None
    ended_at: float | None = None  # monotonic time demux() ended by itself


def frame_index(frame: av.VideoFrame) -> int:
    plane = frame.planes[0]
    rows = np.frombuffer(bytes(plane), np.uint8).reshape(frame.height, plane.line_size)
    luma = rows[: frame.height // 2, : frame.width]
    return round((float(luma.mean()) - 16) / 2)


def receive(url: str, seconds: float, got: Received | None = None) -> Received:
    """Decode ``url`` for ``seconds`` (or until demux ends) into ``got``, which another thread may watch;
    never raises: the error is kept in the result."""
    got = Received() if got is None else got
    start = time.monotonic()
    try:
        with av.open(url, options=CLIENT_OPTIONS, timeout=CLIENT_TIMEOUT) as container:
            got.open_s = time.monotonic() - start
            for packet in container.demux():
                for frame in packet.decode():
                    now = time.monotonic()
                    if isinstance(frame, av.VideoFrame):
                        if frame.pts is None:
                            got.untimed_video += 1
                            continue
                        got.video.append((float(frame.time), now))
                        got.video_index.append(frame_index(frame))
                    elif isinstance(frame, av.AudioFrame) and frame.pts is not None:
                        assert frame.time is not None
                        got.audio.append((frame.time, now))
                if time.monotonic() - start >= seconds:
                    return got
            got.ended_at = time.monotonic()
    except (av.FFmpegError, OSError, ValueError) as exc:  # kept for the assertion message
        got.error = exc
    return got


def receive_together(urls: list[str], seconds: float) -> list[Received]:
    results: list[Received | None] = [None] * len(urls)

    def run(i: int) -> None:
        results[i] = receive(urls[i], seconds)

    threads = [threading.Thread(target=run, args=(i,), name=f"client-{i}") for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 20)
    assert all(r is not None for r in results), "a client thread hung"
    return [r for r in results if r is not None]


# -- checks ---------------------------------------------------------------------------------------------


def assert_live_and_continuous(track: list[tuple[float, float]], what: str, *, min_pts: float) -> None:
    """pts strictly increase without a gap > 0.5 s, reach ``min_pts``; frames arrive without a stall, at
    the pace of a live camera."""
    assert len(track) > 10, f"{what}: only {len(track)} frames"
    pts = np.array([p for p, _ in track])
    arrival = np.array([a for _, a in track])
    steps = np.diff(pts)
    assert steps.min() > 0, f"{what}: pts not increasing at {pts[steps.argmin()]:.3f} s"
    assert steps.max() < 0.5, f"{what}: pts gap of {steps.max():.3f} s at {pts[steps.argmax()]:.3f} s"
    assert pts[-1] >= min_pts, f"{what}: reached only pts {pts[-1]:.3f} s"
    stall = np.diff(arrival).max()
    assert stall < 1.0, f"{what}: no frame for {stall:.2f} s"
    # Real time: what arrives after the initial burst advances with the wall clock.
    drift = (pts[-1] - pts[0]) - (arrival[-1] - arrival[0])
    assert abs(drift) < 1.0, f"{what}: stream time and wall time differ by {drift:.2f} s"


def loop_length(got: Received) -> float:
    """The pts at which the file starts again (frame index 0 after the first pass)."""
    for (pts, _), index in zip(got.video, got.video_index, strict=True):
        if pts > 1.0 and index == 0:
            return pts
    raise AssertionError(f"no loop point seen; last pts {got.video[-1][0]:.3f}")


def assert_pts_map_to_file_time(got: Received, loop_s: float, what: str) -> None:
    """Every frame shows the file frame that its pts names: pts = file time + k x loop length."""
    for (pts, _), index in zip(got.video, got.video_index, strict=True):
        k = math.floor((pts + FRAME_S / 2) / loop_s)
        expected = round((pts - k * loop_s) / FRAME_S)
        assert index == expected, f"{what}: at pts {pts:.3f} s frame {index} of the file, expected {expected}"


# -- tests ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_two_clients_each_get_the_file_from_its_start_looping_gaplessly(rtsp_server, clips):
    server = rtsp_server({"cam1": clips["av"]})

    results = receive_together([server.url("cam1")] * 2, READ_S)

    for n, got in enumerate(results):
        what = f"client {n}"
        assert got.error is None, f"{what}: {got.error!r}\n{server.log()}"
        assert got.open_s < 3, f"{what}: av.open took {got.open_s:.2f} s"
        # The start: the IDR frame comes without pts; the next has pts 0.04, its file time; audio starts at 0.
        assert got.untimed_video <= 1
        assert got.video[0][0] <= 0.1 and got.audio[0][0] <= 0.1, (got.video[:2], got.audio[:2])
        assert got.video_index[0] == round(got.video[0][0] / FRAME_S)
        assert_live_and_continuous(got.video, f"{what} video", min_pts=1.4 * CLIP_S)
        assert_live_and_continuous(got.audio, f"{what} audio", min_pts=1.4 * CLIP_S)
        loop_s = loop_length(got)
        # As long as the stream that ends last: the audio, 4.096 s here (module docstring).
        assert CLIP_S <= loop_s <= CLIP_S + 0.15, loop_s
        assert_pts_map_to_file_time(got, loop_s, what)


@pytest.mark.timeout(60)
def test_video_only_and_audio_only_files_loop(rtsp_server, clips):
    server = rtsp_server({"video": clips["video"], "audio": clips["audio"]})

    video, audio = receive_together([server.url("video"), server.url("audio")], READ_S)

    assert video.error is None and audio.error is None, (video.error, audio.error, server.log())
    assert not video.audio and not audio.video
    assert_live_and_continuous(video.video, "video-only", min_pts=1.4 * CLIP_S)
    assert_live_and_continuous(audio.audio, "audio-only", min_pts=1.4 * CLIP_S)
    # Video alone loops after exactly its 100 frames: no frame repeated or missing at the loop point.
    assert loop_length(video) == pytest.approx(CLIP_S, abs=0.002)
    assert_pts_map_to_file_time(video, CLIP_S, "video-only")


@pytest.mark.timeout(60)
def test_shared_media_is_joined_mid_file(rtsp_server, clips):
    server = rtsp_server({"cam1": clips["av"]}, shared=True)
    first_done = threading.Event()
    results: dict[str, Received] = {}

    def first() -> None:
        results["first"] = receive(server.url("cam1"), 2.5)
        first_done.set()

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(1.5)
    results["late"] = receive(server.url("cam1"), 1.0)
    thread.join(timeout=20)

    early, late = results["first"], results["late"]
    assert early.error is None and late.error is None, (early.error, late.error, server.log())
    assert early.video_index[0] <= 1
    # The late client sees the same live media, from well into the file. Over TCP FFmpeg starts its pts at
    # the position the server gives in PLAY's Range header: the file time of the current pass.
    assert late.video_index[0] >= 10, late.video_index[:5]
    assert late.video[0][0] == pytest.approx(late.video_index[0] * FRAME_S, abs=0.2), late.video[:3]


@pytest.mark.timeout(60)
def test_killed_server_ends_the_clients_demux_and_restart_serves_again(rtsp_server, clips):
    server = rtsp_server({"cam1": clips["av"]})
    got = Received()
    # A client that would read for 30 s, unless the stream ends.
    thread = threading.Thread(target=receive, args=(server.url("cam1"), 30.0, got))
    thread.start()
    deadline = time.monotonic() + 10
    while len(got.video) < FPS and got.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(got.video) >= FPS, (got.error, server.log())

    killed_at = time.monotonic()
    assert server.stop(kill=True) == -9
    thread.join(timeout=15)
    assert not thread.is_alive(), "the client still blocks 15 s after the server died"

    # What the client sees: demux() just ends — no exception — right after the kill.
    assert got.error is None, repr(got.error)
    assert got.ended_at is not None
    assert got.ended_at - killed_at < 2.0, got.ended_at - killed_at
    assert got.video and got.video[-1][1] <= got.ended_at

    server.restart()
    again = receive(server.url("cam1"), 1.0)
    assert again.error is None, repr(again.error)
    assert again.video and again.video[0][0] <= 0.1  # a new media: from the start of the file again
    assert server.stop() == 0  # SIGTERM: a clean exit


@pytest.mark.timeout(30)
def test_port_in_use_is_refused(rtsp_server, clips):
    server = rtsp_server({"cam1": clips["video"]})

    second = subprocess.run(
        ["/usr/bin/python3", str(SIMULATOR), "--port", str(server.port), "--mount", f"cam1={clips['video']}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert second.returncode == 2
    assert second.stdout == ""
    assert "cannot listen" in second.stderr
