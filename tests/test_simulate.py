"""``edge simulate``: argument errors, missing GStreamer bindings, and a real run serving two looping cameras."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest
from fixtures.rtsp import gstreamer_problem
from fixtures.streams import write_stream

import edge.simulate as simulate

ROOT = Path(__file__).resolve().parents[1]


def parse(argv):
    parser = argparse.ArgumentParser(prog="edge")
    simulate.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["simulate", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to serve"),
        (["--mount", "cam1"], "--mount expects NAME=CLIP"),
        (["{clip}", "--mount", "cam1={clip}"], "must be unique"),
        (["{clip}", "--corrupt", "cam9"], "--corrupt names no camera: cam9"),
        (["{clip}", "--freeze-after", "0"], "--freeze-after must be a positive"),
        (["/nonexistent/clip.mkv"], "/nonexistent/clip.mkv: no such file"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, capsys, argv, message):
    clip = tmp_path / "c.mkv"
    clip.write_bytes(b"x")
    args = parse([a.format(clip=clip) for a in argv])
    assert simulate.cmd_simulate(args) == simulate.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_gstreamer_bindings_name_the_make_target(tmp_path, capsys, monkeypatch):
    clip = tmp_path / "c.mkv"
    clip.write_bytes(b"x")
    monkeypatch.setattr(simulate, "SYSTEM_PYTHON", sys.executable)  # the venv's Python has no gi
    assert simulate.cmd_simulate(parse([str(clip)])) == simulate.EXIT_RUNTIME
    err = capsys.readouterr().err
    assert "make system-deps" in err and "GStreamer" in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_serves_looping_cameras_until_sigterm(tmp_path):
    if (problem := gstreamer_problem()) is not None:
        pytest.fail(problem)
    clip = write_stream(tmp_path / "c.mkv", seconds=1)
    other = write_stream(tmp_path / "d.mkv", seconds=1, audio_codec=None)
    entry = (
        "import argparse, sys; from edge.simulate import add_parser; p = argparse.ArgumentParser(); "
        "add_parser(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", entry, "simulate", str(clip), "--port", "0", "--mount", f"yard={other}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        urls = [proc.stdout.readline().split()[-1] for _ in range(2)]
        assert [u.rsplit("/", 1)[1] for u in urls] == ["cam1", "yard"], proc.stderr.read() if proc.poll() else ""
        for url in urls:
            with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(5, 5)) as container:
                pts = []
                for frame in container.decode(video=0):
                    if frame.pts is not None:
                        pts.append(float(frame.pts * frame.time_base))
                    if len(pts) >= 30:  # 1.2 s: past the end of the 1 s clip, it loops
                        break
                assert pts[-1] > 1.1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not processes_mentioning(str(clip))  # the simulator went with it


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_substream_serves_each_clip_again_at_the_detect_resolution(tmp_path):
    if (problem := gstreamer_problem()) is not None:
        pytest.fail(problem)
    clip = write_stream(tmp_path / "c.mkv", seconds=1, size=(320, 180))
    entry = (
        "import argparse, sys; from edge.simulate import add_parser; p = argparse.ArgumentParser(); "
        "add_parser(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            entry,
            "simulate",
            str(clip),
            "--port",
            "0",
            "--substream",
            "160x90",
            "--substream-dir",
            str(tmp_path / "subs"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        urls = [proc.stdout.readline().split()[-1] for _ in range(2)]
        assert [u.rsplit("/", 1)[1] for u in urls] == ["cam1", "cam1-sub"], proc.stderr.read() if proc.poll() else ""
        sizes = []
        for url in urls:
            with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(5, 5)) as container:
                frame = next(container.decode(video=0))
                sizes.append((frame.width, frame.height))
                assert container.streams.audio, "the substream keeps the clip's audio"
        assert sizes == [(320, 180), (160, 90)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [p.name for p in (tmp_path / "subs").iterdir()] == ["c-sub160x90-v2.mkv"]  # made once, kept


def test_a_substream_size_must_be_even_width_x_height(capsys):
    with pytest.raises(SystemExit):
        parse(["c.mkv", "--substream", "641x360"])
    assert "even numbers" in capsys.readouterr().err


def processes_mentioning(text):
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(cmdline.parent.name)
        except OSError:
            continue
    return found
