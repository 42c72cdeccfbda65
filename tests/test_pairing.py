"""A microphone paired with a camera: the clock mapping, the runner's wiring, and the config field.

The runner tests pair a real replayed clip (paced like a live camera) with an in-memory microphone that obeys
the capture reader's interface and stamps its windows on the host's monotonic clock, as PortAudio's callback
does. The real device path (ALSA + the RTSP server) is in ``test_pairing_live.py``.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from fixtures.media import make_clip
from test_runner import BrightLoudModel

from edge.config import load_config
from edge.errors import ConfigError
from pipeline.aggregator import AggregatorSettings
from pipeline.errors import SourceConnectionError
from pipeline.events import EventType
from pipeline.frames import AudioWindow, Modality, VideoFrame
from pipeline.pairing import CameraClock, PairedMicrophone, microphone_source_id
from pipeline.runner import Runner, RunnerSettings
from pipeline.sources import SourceSpec
from pipeline.sources.capture import SourceState
from pipeline.sources.microphone import MicrophoneSpec

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def frame(pts: float, mono_s: float) -> VideoFrame:
    return VideoFrame("cam", 0, pts, int(mono_s * 1e9), T0, np.zeros((2, 2), np.uint8))


def window(mono_s: float, seconds: float = 1.0) -> AudioWindow:
    return AudioWindow("cam/mic", 0, 0.0, int(mono_s * 1e9), T0, np.zeros(int(16000 * seconds), np.float32))


# -- the clock -----------------------------------------------------------------------------------------------
def test_no_place_for_a_window_before_the_camera_was_seen():
    assert CameraClock().map(window(10.0)) is None


def test_a_window_lands_where_the_camera_was_at_its_first_sample():
    clock = CameraClock()
    for k in range(10):  # camera pts 3.0 when the host's monotonic clock read 1000.0
        clock.observe(frame(3.0 + 0.2 * k, 1000.0 + 0.2 * k))
    # completed at monotonic 1005.0: its first sample was captured at 1004.0, camera time 7.0
    assert clock.map(window(1005.0)) == pytest.approx(7.0)
    assert CameraClock(offset_s=0.3).map(window(1005.0)) is None
    late = CameraClock(offset_s=0.3)
    late.observe(frame(3.0, 1000.0))
    assert late.map(window(1005.0)) == pytest.approx(7.3)


def test_one_frame_decoded_late_does_not_move_the_mapping():
    clock = CameraClock()
    for k in range(10):
        clock.observe(frame(0.2 * k, 50.0 + 0.2 * k))
    clock.observe(frame(2.0, 50.0 + 2.0 + 0.8))  # this one waited 0.8 s in a decoder
    assert clock.anchor == pytest.approx(-50.0)


def test_mapped_times_never_go_back():
    clock = CameraClock(history=1)
    clock.observe(frame(10.0, 100.0))
    first = clock.map(window(101.0))
    clock.observe(frame(8.0, 100.5))  # the camera's timestamps jumped back and were placed closer
    assert clock.map(window(101.5)) == first == pytest.approx(10.0)


# -- the runner ----------------------------------------------------------------------------------------------
class FakeMicrophone:
    """Windows every ``hop`` seconds of real time, stamped like PortAudio's callback does; loud where the script
    says; after the script, the device is gone (``SourceConnectionError``)."""

    hop = 0.25

    def __init__(self, spec: MicrophoneSpec, script: list[bool] | None) -> None:
        self.spec, self.script = spec, script
        self.container: object | None = None
        self.decode_errors = 0

    def open(self) -> None:
        self.container = object()

    def items(self, stop=None, *, timeline=None):
        stop = stop or threading.Event()
        k, t0 = 0, time.monotonic()
        while self.script is None or k < len(self.script):
            if stop.wait(max(0.0, t0 + (k + 1) * self.hop - time.monotonic())):  # on time, however loaded
                return
            loud = self.script is not None and self.script[k]
            samples = np.full(16000, 0.5 if loud else 0.01, np.float32)
            yield AudioWindow(
                self.spec.camera_id, k, k * self.hop, time.monotonic_ns(), datetime.now(timezone.utc), samples
            )
            k += 1
        raise SourceConnectionError(f"{self.spec.safe_url}: the audio stream stopped (device gone?)")

    def close(self) -> None:
        self.container = None


@pytest.mark.timeout(60)
def test_microphone_windows_fuse_with_the_cameras_video_and_its_loss_ends_nothing(tmp_path):
    # the camera's own audio is loud throughout: the microphone wins, so none of it may be scored
    clip = make_clip(tmp_path / "cam.mkv", seconds=5, bright=[(1.6, 3.0)], loud=[(0.0, 5.0)])
    # loud windows complete 1.75-3.0 s after the microphone opened: first samples 0.75-2.0 s, camera time alike
    script = [False] * 6 + [True] * 6 + [False] * 2
    made: list[FakeMicrophone] = []

    def microphone(spec: MicrophoneSpec) -> FakeMicrophone:
        made.append(FakeMicrophone(spec, script if not made else None))  # plugged back in: quiet from then on
        return made[-1]

    mic = PairedMicrophone("cam", MicrophoneSpec(microphone_source_id("cam"), backoff_initial_s=0.1), 0.0)
    events, scores = [], []
    settings = RunnerSettings(aggregator=AggregatorSettings(threshold=3.0, min_duration_s=0.4, hold_s=1.0), tamper=None)
    runner = Runner(
        [SourceSpec("cam", str(clip), pace=True)],
        BrightLoudModel(),
        events.append,
        settings,
        on_score=scores.append,
        microphones=[mic],
        microphone_reader=microphone,
    )
    assert set(runner.workers) == {"cam", "cam/mic"}
    assert runner.open_sources() == {}
    runner.start()
    states = set()
    while not runner.wait(0.05):
        states.add(runner.workers["cam/mic"].state)
    runner.join()
    assert [(e.type, e.reason and e.reason.value) for e in events] == [(EventType.NEW, None), (EventType.END, "quiet")]
    assert set(events[-1].modalities) == {"video", "audio"}, events  # one event: both of the camera's modalities
    audio = [s for s in scores if s.modality is Modality.AUDIO]
    assert {s.camera_id for s in audio} == {"cam"}
    assert all(b.pts >= a.pts for a, b in zip(audio, audio[1:], strict=False))
    loud = [s.pts for s in audio if s.calibrated > 3]
    # a window's score sits at its centre: first samples 0.75-2.0 s -> 1.25-2.5 s, give or take the scheduling
    assert len(loud) >= 4 and 0.8 <= loud[0] <= 1.8 and 2.0 <= loud[-1] <= 3.0, loud
    assert runner.stats["cam"].windows_scored == runner.stats["cam/mic"].windows_scored == len(audio)
    # the microphone was lost and reopened (its own back-off) while the camera kept its video going
    assert len(made) >= 2 and SourceState.BACKOFF in {s for _, _, s in runner.workers["cam/mic"].transitions()}
    assert runner.workers["cam/mic"].stats().reconnects >= 1
    assert runner.stats["cam"].frames_scored == 25
    assert runner.states() == {"cam": SourceState.STOPPED, "cam/mic": SourceState.STOPPED}


def test_a_microphone_needs_its_camera():
    mic = PairedMicrophone("nope", MicrophoneSpec("nope/mic"))
    with pytest.raises(ValueError, match="no camera 'nope'"):
        Runner([SourceSpec("cam", "x.mkv")], BrightLoudModel(), lambda e: None, microphones=[mic])


# -- the config ----------------------------------------------------------------------------------------------
def config(tmp_path: Path, camera: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text("cameras:\n  - id: dock\n    url: rtsp://cam.example/stream1\n" + camera)
    return path


def test_microphone_field_makes_a_paired_source(tmp_path):
    cfg = load_config(
        config(tmp_path, "    microphone: {device: USB Audio, samplerate: 48000, channels: 2, offset_s: 0.2}\n")
    )
    (mic,) = cfg.microphones()
    assert (mic.camera_id, mic.offset_s) == ("dock", 0.2)
    assert mic.spec.camera_id == "dock/mic" and mic.spec.device == "USB Audio"
    assert (mic.spec.capture_rate, mic.spec.channels, mic.spec.backoff_max_s) == (48000, 2, 30.0)
    (spec,) = cfg.source_specs()
    assert spec.audio is False and spec.video is True  # the microphone wins over the camera's audio track
    by_index = load_config(config(tmp_path, "    microphone: {device: 3}\n")).microphones()[0]
    assert by_index.spec.device == 3 and by_index.spec.capture_rate is None
    assert load_config(config(tmp_path, "    microphone: {}\n")).microphones()[0].spec.device is None


@pytest.mark.parametrize(
    ("camera", "problem"),
    [
        ("    microphone: {device: usb, rate: 48000}\n", "line 4: cameras.0.microphone.rate: Extra inputs"),
        ("    microphone: {channels: 0}\n", "cameras.0.microphone.channels: Input should be greater than or equal"),
        ("    microphone: {samplerate: 100}\n", "cameras.0.microphone.samplerate"),
        ("    microphone: {device: true}\n", "cameras.0.microphone.device"),
        ("    microphone: {latency: medium}\n", "cameras.0.microphone.latency"),
        ("    audio: true\n    microphone: {device: usb}\n", "drop audio: true"),
        ("    video: false\n    microphone: {device: usb}\n", "video must be scored"),
    ],
)
def test_invalid_microphone_fields_are_listed_with_their_line(tmp_path, camera, problem):
    with pytest.raises(ConfigError) as err:
        load_config(config(tmp_path, camera))
    assert problem in str(err.value), str(err.value)


def test_a_replayed_file_cannot_have_a_microphone(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("cameras:\n  - id: lobby\n    url: lobby.mkv\n    microphone: {device: usb}\n")
    with pytest.raises(ConfigError, match="only a live RTSP camera"):
        load_config(path)


def test_a_missing_microphone_stops_the_start_and_one_that_fails_to_open_is_retried():
    from edge.daemon import _fatal_at_start
    from pipeline.errors import SourceNotFoundError

    mic = PairedMicrophone("dock", MicrophoneSpec("dock/mic", device="usb"))
    runner = Runner(
        [SourceSpec("dock", "rtsp://127.0.0.1:9/x"), SourceSpec("gate", "rtsp://127.0.0.1:9/y")],
        BrightLoudModel(),
        lambda e: None,
        microphones=[mic],
    )
    missing = SourceNotFoundError("mic:usb: no such input device; input devices: [0] default")
    assert _fatal_at_start(runner, {"dock/mic": missing})  # PortAudio lists devices once: retrying cannot help
    assert not _fatal_at_start(runner, {"dock/mic": SourceConnectionError("mic:usb: cannot open")})
    assert not _fatal_at_start(runner, {"dock": SourceConnectionError("refused")})
    assert _fatal_at_start(runner, {"dock": SourceConnectionError("x"), "gate": SourceConnectionError("y")})
