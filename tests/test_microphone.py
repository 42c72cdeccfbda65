"""Microphone capture through a real ALSA capture device, and the window cutting behind it.

The device is ALSA's ``file`` plugin (its ``infile`` supplies the captured samples) behind a ``plug`` fixed at
the file's format, rate and channels, defined in an ALSA config of the test's own (``ALSA_CONFIG_PATH``,
system ``alsa.conf`` first). Its ``infile`` is a FIFO filled with the known signal before capture starts, not
a plain file: the plugin is not paced and past the end of a plain file returns stale data forever (about 600 s
of audio per second here), which floods the bounded capture queue and makes drop-oldest race the reader. A
pre-filled FIFO delivers exactly the signal and then blocks, like a microphone that goes silent, which also
tests the read timeout. Ask for the device's own format (S16): with a conversion in the ``plug`` the file
plugin skips input.

ALSA reads its config when PortAudio initialises, at ``import sounddevice``, and PortAudio opens every device
to probe it (a FIFO nobody holds open for writing blocks that), so each capture runs in a child process
started with the test's environment: this file, run as a script with a mode (see ``_child``).
"""

from __future__ import annotations

import array
import ctypes.util
import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the child process imports this file as a plain script
    sys.path.insert(0, str(ROOT))

from pipeline.errors import SourceError  # noqa: E402
from pipeline.frames import AudioWindow, StreamEnd, WallClock  # noqa: E402
from pipeline.sources.audio_windows import AudioWindower  # noqa: E402
from pipeline.sources.microphone import MicrophoneReader, MicrophoneSpec  # noqa: E402

SYSTEM_ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
SECONDS = 2.0
# name: (rate, channels)
DEVICES = {"lepton_mic48": (48000, 2), "lepton_mic16": (16000, 1)}


def known_signal(rate: int, channels: int) -> np.ndarray:
    """2 s of int16 (frames x channels): 20 ms of noise as a marker, a 200 Hz -> 3 kHz chirp; 440 Hz right."""
    t = np.arange(int(rate * SECONDS)) / rate
    left = 0.5 * np.sin(2 * np.pi * (200 * t + (3000 - 200) / (2 * SECONDS) * t**2))
    marker = rate // 50
    left[:marker] = np.random.default_rng(7).uniform(-0.3, 0.3, marker)
    cols = [left] if channels == 1 else [left, 0.3 * np.sin(2 * np.pi * 440 * t)]
    return np.round(np.stack(cols, axis=1) * 32767).astype(np.int16)


def start_of(stream: np.ndarray, reference: np.ndarray) -> int:
    """Where ``reference`` begins in ``stream``, found by content (its first 256 samples)."""
    head = reference[:256]
    for i in range(len(stream) - len(head) + 1):
        if np.array_equal(stream[i : i + len(head)], head):
            return i
    raise AssertionError("the known signal is not in the captured audio")


# -- window cutting (no device) ------------------------------------------------------------------------------
def push_all(windower: AudioWindower, stream: np.ndarray, chunk: int) -> list:
    out = []
    for i, p in enumerate(range(0, len(stream), chunk)):
        out += windower.push(stream[p : p + chunk], i, None)  # type: ignore[arg-type]
    return out


def test_overlapping_windows_from_uneven_blocks_have_exact_pts():
    stream = np.arange(10000, dtype=np.float32)
    windows = push_all(AudioWindower("c", window=1000, hop=400, sample_rate=1000), stream, chunk=333)
    assert len(windows) == (10000 - 1000) // 400 + 1
    for k, w in enumerate(windows):
        assert w.seq == k and w.pts == 400 * k / 1000 and w.clock is WallClock.RECEIVE
        assert np.array_equal(w.samples, stream[400 * k : 400 * k + 1000])
        assert w.monotonic_ns == (400 * k + 999) // 333  # stamped by the block that completed it


def test_hop_longer_than_window_skips_the_samples_between():
    stream = np.arange(2000, dtype=np.float32)
    windows = push_all(AudioWindower("c", window=100, hop=250, sample_rate=1000), stream, chunk=64)
    assert [w.pts for w in windows] == [k * 0.25 for k in range(8)]
    assert all(w.samples[0] == 250 * k for k, w in enumerate(windows))


def test_restart_after_a_gap_moves_pts_on_and_drops_the_partial_window() -> None:
    windower = AudioWindower("c", window=100, hop=100, sample_rate=1000)
    first = windower.push(np.zeros(150, np.float32), 1, None)  # type: ignore[arg-type]
    windower.restart(at=500)
    later = windower.push(np.ones(100, np.float32), 2, None)  # type: ignore[arg-type]
    assert [(w.seq, w.pts) for w in first + later] == [(0, 0.0), (1, 0.5)]
    assert later[0].samples.min() == 1.0


def test_more_than_two_channels_are_averaged_then_resampled_like_mono():
    reader = MicrophoneReader(MicrophoneSpec("c", channels=4), sample_rate=16000)
    reader.capture_rate = 16000  # what open() sets from the device; equal rates pass samples through
    block = np.random.default_rng(3).integers(-20000, 20000, (1600, 4)).astype(np.int16)
    out = reader._resample(reader._resampler(), block)
    assert np.array_equal(out, block.mean(axis=1, dtype=np.float32) / 32768.0)


# -- missing pieces ------------------------------------------------------------------------------------------
def test_sounddevice_is_imported_only_when_a_microphone_opens():
    code = "import sys, pipeline.sources.microphone; assert 'sounddevice' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_missing_portaudio_says_what_to_install(tmp_path, monkeypatch):
    # the real sounddevice raises exactly this at import when it cannot find libportaudio
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    with pytest.raises(SourceError, match="apt-get install libportaudio2"):
        MicrophoneReader(MicrophoneSpec("cam", device="usb")).open()


def test_missing_sounddevice_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(SourceError, match="pip install 'sounddevice"):
        MicrophoneReader(MicrophoneSpec("cam")).open()


# -- a real ALSA capture device ------------------------------------------------------------------------------
@pytest.fixture
def alsa_mics(tmp_path):
    """A directory with one FIFO per test microphone and the ALSA config naming them; returns (dir, env)."""
    if importlib.util.find_spec("sounddevice") is None or ctypes.util.find_library("portaudio") is None:
        pytest.skip("sounddevice and PortAudio (pip install sounddevice, apt-get install libportaudio2)")
    if not SYSTEM_ALSA_CONF.exists():
        pytest.skip(f"no {SYSTEM_ALSA_CONF} (apt-get install libasound2-data)")
    from fixtures.alsa import capture_device

    conf = ""
    for name, (rate, channels) in DEVICES.items():
        os.mkfifo(tmp_path / f"{name}.fifo")
        conf += capture_device(name, tmp_path / f"{name}.fifo", rate, channels)
    (tmp_path / "asound.conf").write_text(conf)
    env = dict(os.environ)
    env["ALSA_CONFIG_PATH"] = f"{SYSTEM_ALSA_CONF}:{tmp_path / 'asound.conf'}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return tmp_path, env


def run_child(mode: str, workdir: Path, env: dict[str, str]) -> tuple[dict, dict]:
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", __file__, mode, str(workdir)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, f"child {mode} failed:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads((workdir / f"{mode}.json").read_text())
    arrays = dict(np.load(workdir / f"{mode}.npz")) if (workdir / f"{mode}.npz").exists() else {}
    return result, arrays


def decoded_like_a_file(tmp_path: Path, signal: np.ndarray, rate: int, **window) -> np.ndarray:
    """The same samples as a WAV file decoded by MediaReader: what the model was trained on."""
    from pipeline.sources import read_media

    wav = tmp_path / "known.wav"
    with av.open(str(wav), "w") as out:
        layout = "stereo" if signal.shape[1] == 2 else "mono"
        stream = out.add_stream("pcm_s16le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(signal.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    windows = list(read_media(str(wav), width=8, height=8, fps=1, video=False, **window))
    return np.stack([w.samples for w in windows if isinstance(w, AudioWindow)])  # (audio only)


@pytest.mark.timeout(60)
def test_48k_stereo_microphone_gives_exactly_what_the_file_decoder_gives_then_times_out(alsa_mics):
    workdir, env = alsa_mics
    result, arrays = run_child("capture48", workdir, env)
    rate, channels = DEVICES["lepton_mic48"]
    reference = decoded_like_a_file(workdir, known_signal(rate, channels), rate, audio_window_s=0.25, audio_hop_s=0.25)
    captured = arrays["samples"]
    # windows tile the stream (hop == window): find the signal by content, then compare sample for sample
    assert start_of(captured.reshape(-1), reference.reshape(-1)) == 0
    assert captured.shape == reference.shape == (7, 4000)  # 2 s, less the resampler's look-ahead at the end
    assert np.array_equal(captured, reference)
    assert np.array_equal(arrays["pts"], np.arange(7) * 0.25) and np.array_equal(arrays["seq"], np.arange(7))
    assert np.all(np.diff(arrays["monotonic_ns"]) >= 0)
    assert result["clocks"] == ["receive"] and result["wall_tz"] == "UTC"
    assert result["queued_before_start"] == rate * SECONDS * 4, "open() must not start the capture"
    assert result["dropped_blocks"] == 0 and result["overflows"] == 0
    # the FIFO is empty now: a device that delivers nothing
    assert result["error"][0] == "SourceConnectionError" and "no audio for" in result["error"][1]
    assert 0.5 <= result["silent_for"] < 2.0


@pytest.mark.timeout(60)
def test_16k_mono_microphone_driven_by_capture_worker_passes_samples_through(alsa_mics):
    workdir, env = alsa_mics
    result, arrays = run_child("worker16", workdir, env)
    known = known_signal(*DEVICES["lepton_mic16"])[:, 0].astype(np.float32) / 32768
    windows, pts = arrays["samples"], arrays["pts"]
    stream = np.concatenate([windows[0][:8000], *[w[8000:] for w in windows]])  # 1 s windows every 0.5 s
    assert start_of(stream, known) == 0
    assert len(windows) == 3 and np.array_equal(pts, [0.0, 0.5, 1.0])
    for k, w in enumerate(windows):
        assert np.array_equal(w, known[8000 * k : 8000 * k + 16000])
    assert result["state_while_streaming"] == "streaming"
    assert result["state_after_stop"] == "stopped" and result["worker_alive"] is False
    assert result["device_name"] == "lepton_mic16"  # found by a name in another case


@pytest.mark.timeout(60)
def test_a_stalled_device_raises_and_closing_it_does_not_hang(alsa_mics):
    workdir, env = alsa_mics
    result, _ = run_child("stall", workdir, env)
    assert result["windows"] == 1  # 0.3 s of audio, 0.25 s windows
    assert result["error"][0] == "SourceConnectionError" and "no audio for" in result["error"][1]
    # PortAudio's abort waits on a capture thread blocked in the driver's read(); close gives up after 2 s
    assert result["close_s"] < 3.0, result


@pytest.mark.timeout(60)
def test_devices_are_found_by_name_or_index_and_a_miss_lists_them(alsa_mics):
    workdir, env = alsa_mics
    result, _ = run_child("devices", workdir, env)
    assert result["LEPTON_MIC48"] == "lepton_mic48"
    assert result["index"] == "lepton_mic48"
    kind, message = result["nope"]
    assert kind == "SourceNotFoundError" and "lepton_mic48" in message and "lepton_mic16" in message
    kind, message = result["lepton_mic"]
    assert kind == "SourceNotFoundError" and "several input devices" in message


# -- the child process -----------------------------------------------------------------------------------
def _hold_fifos(workdir: Path) -> dict[str, int]:
    """Open every test FIFO for writing (so PortAudio's probe can open them) with room for a whole signal."""
    fds = {}
    for name in DEVICES:
        # non-blocking: a signal that does not fit fails loudly instead of hanging the test
        fd = os.open(workdir / f"{name}.fifo", os.O_RDWR | os.O_NONBLOCK)
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        fds[name] = fd
    return fds


def _queued(fd: int) -> int:
    n = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, n)
    return n[0]


def _read_until_error(reader: MicrophoneReader) -> tuple[list, list[str] | None, float]:
    windows, last = [], time.monotonic()
    try:
        for w in reader.items(threading.Event()):
            windows.append(w)
            last = time.monotonic()
    except SourceError as exc:
        return windows, [type(exc).__name__, str(exc)], time.monotonic() - last
    return windows, None, 0.0


def _capture48(fds: dict[str, int]) -> tuple[dict, list]:
    """A 48 kHz stereo device read until it stops: the windows and what ended them."""
    result: dict = {}
    signal = known_signal(*DEVICES["lepton_mic48"]).tobytes()
    os.write(fds["lepton_mic48"], signal)
    spec = MicrophoneSpec("cam1", device="lepton_mic48", capture_rate=48000, channels=2, read_timeout_s=0.5)
    reader = MicrophoneReader(spec, audio_window_s=0.25, audio_hop_s=0.25)
    reader.open()
    result["queued_before_start"] = _queued(fds["lepton_mic48"])
    windows, result["error"], result["silent_for"] = _read_until_error(reader)
    result.update(dropped_blocks=reader.dropped_blocks, overflows=reader.overflows)
    # unblocks the driver's read so the stream closes at once (then stale data floods in, and is dropped)
    os.close(fds["lepton_mic48"])
    reader.close()
    result["clocks"] = sorted({w.clock.value for w in windows})
    result["wall_tz"] = str(windows[0].wall_time.tzinfo)
    return result, windows


def _worker16(fds: dict[str, int]) -> tuple[dict, list]:
    """A 16 kHz device captured by a CaptureWorker: its first windows and states."""
    from pipeline.sources.capture import BoundedBuffer, BufferPolicy, CaptureWorker

    result: dict = {}
    windows: list = []
    os.write(fds["lepton_mic16"], known_signal(*DEVICES["lepton_mic16"]).tobytes())
    spec = MicrophoneSpec("cam2", device="LEPTON_MIC16", capture_rate=16000, channels=1)
    stop = threading.Event()
    buffer = BoundedBuffer(1000, BufferPolicy.WAIT, threading.Event())
    readers: list[MicrophoneReader] = []

    def factory(s: MicrophoneSpec) -> MicrophoneReader:
        readers.append(MicrophoneReader(s, audio_window_s=1.0, audio_hop_s=0.5))
        return readers[-1]

    worker = CaptureWorker(spec, factory, buffer, stop)
    assert worker.open_first() is None
    worker.start()
    deadline = time.monotonic() + 10
    while len(windows) < 3 and time.monotonic() < deadline:
        item = buffer.get_nowait()
        if item is None:
            time.sleep(0.01)
        elif not isinstance(item, StreamEnd):
            windows.append(item)
    result["state_while_streaming"] = worker.state.value
    os.close(fds["lepton_mic16"])
    stop.set()
    worker.join(5)
    result.update(state_after_stop=worker.state.value, worker_alive=worker.is_alive())
    result["device_name"] = readers[0].device_name
    return result, windows


def _stall(fds: dict[str, int]) -> tuple[dict, list]:
    """A device whose data stops: the error, and a close that does not hang."""
    result: dict = {}
    os.write(fds["lepton_mic16"], known_signal(*DEVICES["lepton_mic16"])[:4800].tobytes())
    spec = MicrophoneSpec("cam3", device="lepton_mic16", capture_rate=16000, read_timeout_s=0.5)
    reader = MicrophoneReader(spec, audio_window_s=0.25, audio_hop_s=0.25)
    found, result["error"], _ = _read_until_error(reader)
    result["windows"] = len(found)
    t = time.monotonic()
    reader.close()  # the FIFO is still held open: the driver's read is blocked
    result.update(close_s=time.monotonic() - t, stuck_closes=reader.stuck_closes)
    # unblock the driver's read and let the abandoned close finish: PortAudio's exit handler would wait
    # for its capture thread, and that thread for the GIL of an interpreter that is shutting down
    os.close(fds["lepton_mic16"])
    for thread in threading.enumerate():
        if thread.name.startswith("close-mic:"):
            thread.join(5)
    return result, []


def _devices(_fds: dict[str, int]) -> tuple[dict, list]:
    """Devices found by name (any case), index, and not found."""
    import sounddevice  # type: ignore[import-untyped]

    result: dict = {}
    index = next(d["index"] for d in sounddevice.query_devices() if d["name"] == "lepton_mic48")
    for key, wanted in [
        ("LEPTON_MIC48", "LEPTON_MIC48"),
        ("index", index),
        ("nope", "nope"),
        ("lepton_mic", "lepton_mic"),
    ]:
        reader = MicrophoneReader(MicrophoneSpec("cam4", device=wanted))
        try:
            reader.open()
            result[key] = reader.device_name
            reader.close()
        except SourceError as exc:
            result[key] = [type(exc).__name__, str(exc)]
    return result, []


def _child(mode: str, workdir: Path) -> None:
    modes = {"capture48": _capture48, "worker16": _worker16, "stall": _stall, "devices": _devices}
    fds = _hold_fifos(workdir)
    if mode not in modes:
        raise SystemExit(f"unknown mode {mode}")
    result, windows = modes[mode](fds)
    (workdir / f"{mode}.json").write_text(json.dumps(result))
    if windows:
        np.savez(
            workdir / f"{mode}.npz",
            samples=np.stack([w.samples for w in windows]),
            pts=np.array([w.pts for w in windows]),
            seq=np.array([w.seq for w in windows]),
            monotonic_ns=np.array([w.monotonic_ns for w in windows]),
        )


if __name__ == "__main__":
    _child(sys.argv[1], Path(sys.argv[2]))
