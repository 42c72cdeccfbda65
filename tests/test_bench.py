"""``edge bench`` runs end to end and prints its figures. No timing is asserted: speed is for benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DEFAULT_MODEL

from edge.cli import main
from pipeline.models.package import ModelPackage

PER_CAMERA_KEYS = {
    "decode_only_fps",
    "decoded_fps",
    "throughput_fps",
    "scored_fps",
    "audio_windows_per_s",
    "dropped",
    "latency_ms",
    "audio_latency_ms",
    "ratio",
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One benchmark clip for the module (making it takes a few seconds)."""
    return tmp_path_factory.mktemp("bench-cache")


def _bench(capsys: pytest.CaptureFixture[str], cache: Path, *extra: str) -> dict:
    code = main(["bench", "--cameras", "1", "--seconds", "3", "--json", "--cache-dir", str(cache), *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def _check_mode(result: dict) -> None:
    assert result["errors"] == []
    assert set(result["per_camera"]) == {"cam1"}
    cam = result["per_camera"]["cam1"]
    assert PER_CAMERA_KEYS <= set(cam)
    assert cam["decode_only_fps"] > 0 and cam["scored_fps"] > 0 and cam["audio_windows_per_s"] > 0
    assert set(cam["latency_ms"]) == {"p50", "p95"}
    assert result["rss_mb"]["per_camera"] is not None
    sides = [p["side"] for p in result["phases"]]
    # ABBA around the middle, repeated per round (3 by default): each ratio is the median of the rounds'
    assert sides == ["pipeline", "decode-only", "full-decode", "full-decode", "decode-only", "pipeline"] * 3
    for key in ("ratio", "ratio_vs_full_decode"):
        rounds = result[f"{key}_rounds"]
        assert len(rounds) == 3 and result[key] == sorted(rounds)[1]
        assert result[f"{key}_spread"] == pytest.approx(max(rounds) - min(rounds), abs=2e-3)
    assert result["full_decode_fps_per_camera"] > 0 and result["cpu_ratio_vs_full_decode"] > 0


def test_bench_files_prints_the_figures(capsys: pytest.CaptureFixture[str], cache_dir: Path) -> None:
    report = _bench(capsys, cache_dir)
    for key in (
        "note",
        "clip",
        "model",
        "targets",
        "ratio",
        "ratio_vs_full_decode",
        "cpu_ratio",
        "rss_mb_per_camera",
        "per_camera",
        "modes",
    ):
        assert key in report
    # decode-only decodes as the pipeline does (its deblocking); full decode deblocks every frame
    assert report["decoder"] == {
        "pipeline_skip_loop_filter": "nokey",
        "decode_only_skip_loop_filter": "nokey",
        "full_decode_skip_loop_filter": "none",
        "pipeline_isolation": "thread",
    }
    assert "machine load" in report["note"]
    video = report["clip"]["video"]
    assert (video["width"], video["height"], video["fps"]) == (1280, 720, 25.0)
    assert report["clip"]["audio"]["codec"] == "aac"
    assert report["source"] == "file" and report["ratio"] > 0
    _check_mode(report["modes"]["file"])
    # a file runs at full speed, a steady state: the package's audio windows per second of media over its video
    # frames per second of media (every 0.2 s at 5 fps: 1 window per frame; temporal scores are not audio windows)
    package = ModelPackage.load(DEFAULT_MODEL)
    assert package.audio is not None and package.video is not None
    expected = (1 / package.audio.hop_s) / package.video.fps
    cam = report["modes"]["file"]["per_camera"]["cam1"]
    assert cam["audio_windows_per_s"] / cam["scored_fps"] == pytest.approx(expected, rel=0.2)


@pytest.mark.slow
def test_bench_with_capture_processes_counts_their_cpu_and_memory(
    capsys: pytest.CaptureFixture[str], cache_dir: Path
) -> None:
    """``--isolation process``: each camera decoded in a child process, whose CPU and memory are the pipeline's
    (left out, the pipeline would look nearly free: its own threads only read the pipe)."""
    report = _bench(capsys, cache_dir, "--isolation", "process")
    assert report["decoder"]["pipeline_isolation"] == "process"
    result = report["modes"]["file"]
    _check_mode(result)
    capture = result["cpu_ms_by_thread"]["pipeline"]["capture"]
    assert capture >= 0.5 * result["cpu_ms_per_media_s"]["decode_only"], result
    # the capture process's memory (its own Python, numpy, PyAV and decoder) is in the pipeline's
    rss = result["rss_mb"]
    assert rss["capture_processes_peak"] > 20, rss
    assert rss["peak"] >= rss["baseline"] + 0.9 * rss["capture_processes_peak"], rss


@pytest.mark.slow
def test_bench_over_rtsp(capsys: pytest.CaptureFixture[str], cache_dir: Path) -> None:
    from fixtures.rtsp import gstreamer_problem

    problem = gstreamer_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    report = _bench(capsys, cache_dir, "--source", "rtsp")
    assert report["source"] == "rtsp"
    _check_mode(report["modes"]["rtsp"])
    assert report["modes"]["rtsp"]["cpu_utilisation"]["simulator"] is not None


@pytest.mark.slow
def test_bench_sweep_with_substreams_reports_max_realtime_cameras(
    capsys: pytest.CaptureFixture[str], cache_dir: Path
) -> None:
    from fixtures.rtsp import gstreamer_problem

    problem = gstreamer_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    code = main(
        [
            "bench",
            "--sweep",
            "--seconds",
            "2",
            "--sweep-budget",
            "12",
            "--detect-size",
            "320x180",
            "--json",
            "--cache-dir",
            str(cache_dir),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    sweep = report["sweep"]
    assert sweep["detect_size"] == [320, 180] and "snapshots and clips" in sweep["media"]
    assert sweep["criteria"]["dropped_max"] == 0 and sweep["criteria"]["latency_p95_ms_max"] == 1000
    assert sweep["steps"] and sweep["steps"][0]["cameras"] == 1
    first = sweep["steps"][0]
    assert first["worst_camera"]["main_packets_per_s"] > 0, first  # the main stream was demuxed
    # the capture threads (substream and main stream) and the scoring thread both worked, and account for no more
    # than the process used
    cores = first["thread_cores"]
    assert cores["capture"] > 0 and cores["scoring"] > 0, cores
    assert cores["capture"] + cores["scoring"] <= first["cpu_utilisation"] + 0.02, first
    assert report["max_realtime_cameras"] == sweep["max_realtime_cameras"]
    assert report["max_realtime_cameras"] == max([s["cameras"] for s in sweep["steps"] if s["realtime"]], default=0)


def test_detect_size_goes_with_the_sweep(capsys: pytest.CaptureFixture[str], cache_dir: Path) -> None:
    assert main(["bench", "--detect-size", "640x360", "--cache-dir", str(cache_dir)]) == 2
    assert "--detect-size goes with --sweep" in capsys.readouterr().err
