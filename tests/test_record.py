"""Recording a live camera to disk (``pipeline.sources.record``, ``edge record``) against the real RTSP server: the
file is a playable stream copy, what came before a camera died, froze or the recorder was stopped is kept, and no
password reaches a file name, an error or the output."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import av
import pytest
from fixtures.media import make_clip

from pipeline.errors import SourceConnectionError
from pipeline.sources.record import record_camera, recording_name


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_recording_is_named_by_host_path_and_time_never_by_its_credentials() -> None:
    when = datetime(2026, 12, 7, 20, 15, tzinfo=timezone.utc)
    name = recording_name("rtsp://admin:hunter2@10.0.0.7:554/Streaming/Channels/101", when)
    assert name == "10.0.0.7_Streaming_Channels_101_20261207T201500Z.mkv"
    # an NVR's channels differ only in the query, two servers on one host in the port
    name = recording_name("rtsp://admin:hunter2@10.0.0.7:8554/cam/realmonitor?channel=2&subtype=1", when)
    assert name == "10.0.0.7-8554_cam_realmonitor_channel-2-subtype-1_20261207T201500Z.mkv"


def test_nothing_listening_is_a_clear_error_that_leaves_no_file(tmp_path: Path) -> None:
    dest = tmp_path / "cam.mkv"
    with pytest.raises(SourceConnectionError) as err:
        record_camera("rtsp://admin:hunter2@127.0.0.1:9/stream1", dest, 5.0)
    assert "rtsp://***@127.0.0.1:9/stream1" in str(err.value) and "hunter2" not in str(err.value)
    assert not dest.exists()


@pytest.mark.slow
@pytest.mark.parametrize(("encoder", "codec"), [("libx264", "h264"), ("libx265", "hevc")])
def test_a_recording_is_a_playable_stream_copy_that_never_overwrites_one(
    tmp_path: Path, rtsp_server: Any, encoder: str, codec: str
) -> None:
    from fixtures.streams import write_stream

    source = write_stream(tmp_path / "gate.mkv", seconds=6, size=(320, 180), video_codec=encoder)
    server = rtsp_server({"gate": source})  # looped: a camera that runs on
    dest = tmp_path / "rec" / "gate.mkv"
    rec = record_camera(server.url("gate"), dest, 8.0)
    assert rec.path == dest and rec.seconds == pytest.approx(8.0, abs=0.1) and rec.stopped_early is None
    with av.open(str(dest)) as container:
        assert [(s.type, s.codec_context.name) for s in container.streams] == [("video", codec), ("audio", "aac")]
        assert (container.duration or 0) / av.time_base == pytest.approx(8.0, abs=0.3)  # from 0, at a keyframe
    assert 7.5 * 25 <= _frames(dest) <= 8.5 * 25
    with pytest.raises(FileExistsError):
        record_camera(server.url("gate"), dest, 2.0)
    assert 7.5 * 25 <= _frames(dest) <= 8.5 * 25


@pytest.mark.slow
def test_a_camera_that_dies_or_freezes_leaves_what_was_recorded(
    tmp_path: Path, rtsp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    clip = make_clip(tmp_path / "gate.mkv", seconds=6.0)
    server = rtsp_server({"gate": clip})
    threading.Timer(4.0, server.stop, kwargs={"kill": True}).start()  # the camera dies after ~3 s of stream
    died = record_camera(server.url("gate"), tmp_path / "died.mkv", 60.0)
    assert 1.0 < died.seconds < 5.0 and "the stream ended after" in (died.stopped_early or "")
    assert _frames(died.path) >= died.seconds * 25 - 5

    frozen = rtsp_server({"gate": clip}, freeze_after=8.0)  # data stops after 8 s, the connection is kept
    rec = record_camera(frozen.url("gate"), tmp_path / "frozen.mkv", 60.0)
    assert rec.seconds == pytest.approx(8.0, abs=1.5) and _frames(rec.path) > 150
    # FFmpeg ends a read from the frozen session either by its read timeout or, now and then, with EIO
    assert "nothing received" in (rec.stopped_early or "") or "reading the stream failed" in (rec.stopped_early or "")
    assert "the recording keeps the" in caplog.text


@pytest.mark.slow
def test_a_recorder_stopped_midway_leaves_a_playable_file(tmp_path: Path, rtsp_server: Any) -> None:
    import time

    server = rtsp_server({"gate": make_clip(tmp_path / "gate.mkv", seconds=6.0)})
    start = time.monotonic()

    def clock() -> float:  # Ctrl-C arrives while packets come in, 4 s into the recording
        now = time.monotonic()
        if now - start > 4.0:
            raise KeyboardInterrupt
        return now

    dest = tmp_path / "stopped.mkv"
    with pytest.raises(KeyboardInterrupt):
        record_camera(server.url("gate"), dest, 60.0, clock=clock)
    assert 1.5 * 25 <= _frames(dest) <= 4.5 * 25


@pytest.mark.slow
def test_edge_record_writes_the_file_and_prints_no_password(tmp_path: Path, rtsp_server: Any) -> None:
    server = rtsp_server({"gate": make_clip(tmp_path / "gate.mkv", seconds=6.0)})
    url = server.url("gate").replace("rtsp://", "rtsp://admin:hunter2@")
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "record", url, "--minutes", "0.05", "--out", "clip.mkv", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "recorded 3 s to clip.mkv" in proc.stdout and "hunter2" not in proc.stdout + proc.stderr
    assert 2.5 * 25 <= _frames(tmp_path / "clip.mkv") <= 3.5 * 25
    # the camera of a site config, its password never on the command line
    (tmp_path / "site.yaml").write_text(f'cameras: [{{id: gate, url: "{url}"}}]\n')
    for out, code in (("clip2.mkv", 0), ("clip.mkv", 2)):
        proc = subprocess.run(
            [sys.executable, "-m", "edge.cli", "record", "-c", "site.yaml", "--camera", "gate", "--minutes", "0.05"]
            + ["--out", out, "-q"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == code and "hunter2" not in proc.stdout + proc.stderr, proc.stderr
    assert 2.5 * 25 <= _frames(tmp_path / "clip2.mkv") <= 3.5 * 25
    assert "clip.mkv exists: not overwritten" in proc.stderr
