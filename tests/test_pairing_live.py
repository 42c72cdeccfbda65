"""A microphone paired with a video-only RTSP camera, through a real ALSA capture device and the real RTSP server.

The camera is the GStreamer RTSP simulator serving the video of ``normal_eval.mkv`` (no audio track). The
microphone is an ALSA ``pulse`` device named in an ``.asoundrc`` under the test's own HOME, capturing the monitor of
a null sink of a PulseAudio daemon the test starts (``fixtures.pulse``): what the test plays into the sink comes back
sample for sample, at the pace it is played, as from a microphone (the ALSA ``file`` plugin on a FIFO is not
paced: it gives ~2x real time, stale buffer data between the FIFO's samples). What it plays: the sample clips'
ambient sound (``normal_eval.mkv``'s audio), and once both sources stream, the glass
breaking of ``test_2.mkv`` (its ground truth: 23.0-25.53 s) at a moment the test notes on the host clocks.

Two runs, each in a child process (ALSA reads HOME's ``.asoundrc`` when PortAudio initialises): the runner
with the default model, whose scores show where the windows landed on the camera's time line; and the daemon
(``edge run``) with its health endpoint and outbox, as an operator would run it.
"""

from __future__ import annotations

import ctypes.util
import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the child process runs this file as a plain script
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))

SAMPLES = ROOT / "samples"
RATE = 16000
CHUNK = RATE // 50  # 20 ms per write, like a capture period
AMBIENT_BEFORE_S = 5.0  # after both sources stream, before the burst
AMBIENT_AFTER_S = 6.0  # after the burst: the event must end quiet, and nothing else may open

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def pcm(clip: Path, start: float, end: float) -> np.ndarray:
    """The clip's audio as 16 kHz mono int16, ``start``-``end`` seconds."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(str(clip)) as c:
        chunks = [g.to_ndarray().reshape(-1) for f in c.decode(audio=0) for g in resampler.resample(f)]
    return np.concatenate(chunks)[int(start * RATE) : int(end * RATE)]


class PacedMicrophone:
    """Plays into the PulseAudio sink at real-time pace: ambient sound, and the burst when asked."""

    def __init__(self, player: subprocess.Popen[bytes], ambient: np.ndarray, burst: np.ndarray) -> None:
        self.ambient, self.burst = ambient, burst
        self.player = player
        assert player.stdin is not None
        # a one-page pipe, written without blocking: what pacat has not taken yet (while it connects) is dropped
        # instead of queueing up as a lasting delay (a default 64 KiB pipe is 2 s of this sound)
        self.fd = player.stdin.fileno()
        fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, 4096)
        os.set_blocking(self.fd, False)
        self.burst_at: tuple[float, datetime] | None = None  # monotonic s and wall time of its first sample
        self._play_burst = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def play_burst(self) -> None:
        self._play_burst.set()

    def _run(self) -> None:
        t0, k, pos, burst_pos = time.monotonic(), 0, 0, None
        while not self._stop.is_set():
            delay = t0 + k * CHUNK / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if burst_pos is None and self._play_burst.is_set() and self.burst_at is None:
                burst_pos = 0
                self.burst_at = (time.monotonic(), datetime.now(timezone.utc))
            if burst_pos is not None:
                data = self.burst[burst_pos : burst_pos + CHUNK]
                burst_pos += CHUNK
                if burst_pos >= len(self.burst):
                    burst_pos = None
            else:
                data = np.take(self.ambient, range(pos, pos + CHUNK), mode="wrap")
                pos += CHUNK
            try:
                os.write(self.fd, data.astype("<i2").tobytes())
            except BlockingIOError:  # pacat is not taking sound yet
                pass
            except OSError:  # the player has gone (closing)
                return
            k += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.player.kill()
        self.player.wait(5)


@pytest.fixture
def paired_camera(tmp_path, rtsp_server):
    """A video-only RTSP camera, a real-time ALSA microphone and a site config pairing them; returns
    (config path, child environment, PacedMicrophone)."""
    if importlib.util.find_spec("sounddevice") is None or ctypes.util.find_library("portaudio") is None:
        pytest.skip("sounddevice and PortAudio (pip install sounddevice, apt-get install libportaudio2)")
    if not Path("/usr/share/alsa/alsa.conf").exists():
        pytest.skip("no /usr/share/alsa/alsa.conf (apt-get install libasound2-data)")
    from fixtures import pulse
    from fixtures.streams import remux_video

    if (why := pulse.missing()) is not None:
        pytest.skip(why)
    clip = remux_video(tmp_path / "video_only.mkv", [SAMPLES / "normal_eval.mkv"])
    server = rtsp_server({"dock": clip})
    home = tmp_path / "home"
    home.mkdir()
    with pulse.pulse_server(tmp_path / "pulse", RATE, 1) as sound:
        (home / ".asoundrc").write_text(sound.alsa_device("lepton_mic"))
        site = tmp_path / "site.yaml"
        site.write_text(f"""\
site: live-pairing
outbox: {{path: {tmp_path / "outbox.db"}}}
cameras:
  - id: dock
    url: {server.url("dock")}
    microphone: {{device: lepton_mic, samplerate: {RATE}, channels: 1, read_timeout_s: 2}}
""")
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, **sound.env, "HOME": str(home), "PYTHONPATH": path}
        env.pop("ALSA_CONFIG_PATH", None)
        ambient, burst = pcm(SAMPLES / "normal_eval.mkv", 0, 45), pcm(SAMPLES / "test_2.mkv", 23.0, 25.6)
        mic = PacedMicrophone(sound.player(), ambient, burst)
        yield site, env, mic
        mic.close()


def play_after_streaming(mic: PacedMicrophone, streaming: threading.Event, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 40
    while not streaming.wait(0.2):
        assert proc.poll() is None and time.monotonic() < deadline, "the sources never both streamed"
    time.sleep(AMBIENT_BEFORE_S)
    mic.play_burst()
    time.sleep(len(mic.burst) / RATE + AMBIENT_AFTER_S)


def test_the_cameras_events_carry_the_microphones_audio_at_the_right_camera_time(paired_camera, tmp_path):
    site, env, mic = paired_camera
    out = tmp_path / "runner.json"
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", __file__, str(site), str(out)],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    streaming = threading.Event()
    reader = threading.Thread(target=lambda: proc.stdout.readline() == "STREAMING\n" and streaming.set())
    reader.start()
    try:
        play_after_streaming(mic, streaming, proc)
        proc.stdin.write("STOP\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out.read_text())
    assert mic.burst_at is not None
    burst_mono, _ = mic.burst_at
    video = np.array([(pts, mono) for mod, pts, _, mono in result["scores"] if mod == "video"])
    audio = [(pts, cal) for mod, pts, cal, _ in result["scores"] if mod == "audio"]
    assert len(video) > 50 and len(audio) > 20, result["stats"]
    # where the camera was when the burst's first sample went into the microphone, on the camera's own clock
    expected = burst_mono + float(np.median(video[:, 0] - video[:, 1] / 1e9))
    audio_events = [e for e in result["events"] if "audio" in e["modalities"] and e["type"] != "update"]
    assert [e["type"] for e in audio_events] == ["new", "end"], result["events"]
    new, end = audio_events
    # its first loud window starts up to 0.5 s before the burst; decoded video lags its capture a little
    assert expected - 1.0 <= new["start_pts"] <= expected + 0.6, (new, expected)
    assert end["reason"] == "quiet" and end["end_pts"] <= expected + len(mic.burst) / RATE + 2.0
    assert new["modalities"]["audio"] >= 3.0
    # the ambient sound before and after scored as normal, through this device exactly as from the file
    quiet = [cal for pts, cal in audio if pts < expected - 1.0 or pts > expected + 3.5]
    assert len(quiet) > 10 and max(quiet) < 3.0, sorted(quiet)[-10:]
    assert result["stats"]["dock"]["windows_scored"] == result["stats"]["dock/mic"]["windows_scored"] == len(audio)
    assert result["states"] == {"dock": "stopped", "dock/mic": "stopped"}


def test_the_daemon_reports_the_microphone_as_its_own_source_and_delivers_its_audio_event(
    paired_camera, tmp_path, unused_tcp_port
):
    site, env, mic = paired_camera
    site.write_text(site.read_text() + f"health: {{port: {unused_tcp_port}}}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(site), "-q"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    streaming = threading.Event()
    seen: dict = {}

    def poll_health() -> None:
        while proc.poll() is None and not streaming.is_set():
            time.sleep(0.3)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/healthz", timeout=2) as r:
                    cams = json.loads(r.read())["cameras"]
            except OSError:
                continue
            if {cams.get(s, {}).get("state") for s in ("dock", "dock/mic")} == {"streaming"}:
                seen.update(cams)
                streaming.set()

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    try:
        play_after_streaming(mic, streaming, proc)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert seen["dock/mic"]["audio_windows"] > 0 and seen["dock/mic"]["frames"] == 0
    assert seen["dock"]["audio_windows"] == 0  # a video-only camera: its audio comes from the microphone

    from alerts.outbox import Outbox

    with Outbox(tmp_path / "outbox.db", local_only=True) as outbox:
        messages = [row.message() for row in outbox.read()]
    audio = [m for m in messages if "audio" in m.modalities and m.type != "update"]
    assert [m.type for m in audio] == ["new", "end"], messages
    assert {m.camera_id for m in messages} == {"dock"}
    assert mic.burst_at is not None
    _, burst_wall = mic.burst_at
    # the first loud window started at most 0.5 s before the burst and completed after its first samples
    delay = (audio[0].start_time - burst_wall).total_seconds()
    assert -1.0 <= delay <= 1.5, (audio[0].start_time, burst_wall)


# -- the child process -----------------------------------------------------------------------------------
def _child(site: Path, out: Path) -> None:
    from edge.config import load_config
    from pipeline.events import AnomalyEvent
    from pipeline.frames import Score
    from pipeline.models.package import ModelPackage
    from pipeline.runner import Runner, RunnerSettings
    from pipeline.scoring_model import PackageScorer

    cfg = load_config(site)
    scorer = PackageScorer(ModelPackage.load(cfg.model), cfg.engine)
    events: list[AnomalyEvent] = []
    scores: list[Score] = []
    settings = RunnerSettings(aggregator=cfg.events, tamper=cfg.tampering)
    runner = Runner(
        cfg.source_specs(), scorer, events.append, settings, on_score=scores.append, microphones=cfg.microphones()
    )
    assert runner.open_sources() == {}
    runner.start()
    deadline = time.monotonic() + 30
    while not (
        all(s.value == "streaming" for s in runner.states().values())
        and runner.stats["dock/mic"].windows_scored
        and runner.stats["dock"].frames_scored
    ):
        assert time.monotonic() < deadline, runner.states()
        time.sleep(0.1)
    print("STREAMING", flush=True)  # noqa: T201 - the parent waits for this line
    sys.stdin.readline()
    runner.stop()
    runner.join(15)
    result = {
        "events": [
            {
                "type": e.type.value,
                "start_pts": e.start_pts,
                "end_pts": e.end_pts,
                "reason": e.reason and e.reason.value,
                "modalities": {n: m.peak for n, m in e.modalities.items()},
            }
            for e in events
        ],
        "scores": [(s.modality.value, s.pts, s.calibrated, s.monotonic_ns) for s in scores],
        "stats": {src: vars(st) for src, st in runner.stats.items()},
        "states": {src: s.value for src, s in runner.states().items()},
    }
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
