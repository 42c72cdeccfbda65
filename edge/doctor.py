"""``edge doctor``: what this machine can do for Lepton Edge, and what a config needs that it lacks.

Each check prints one line (ok / warn / FAIL) with what to install or fix. Required checks failing make the exit
code non-zero; optional ones (GPU, TensorRT, microphones, the RTSP simulator) only warn. With ``-c CONFIG`` it
also loads the model package, scores a dummy batch, checks the outbox folder is writable and, when Kafka is
configured, that the broker answers and the topic exists (bounded by the config's timeouts).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SIMULATOR = Path(__file__).with_name("rtsp_simulator.py")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.required else "warn")
        return f"[{mark}] {self.name:<22} {self.detail}"


def _check(name: str, required: bool, fn: Callable[[], str]) -> Check:
    try:
        return Check(name, True, fn(), required)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line of the report
        return Check(name, False, str(exc) or type(exc).__name__, required)


def _pyav() -> str:
    import av

    wanted = ("h264", "hevc", "aac", "opus", "pcm_alaw", "pcm_mulaw")
    missing = [c for c in wanted if c not in av.codecs_available]
    if missing:
        raise RuntimeError(f"PyAV {av.__version__} lacks decoders: {', '.join(missing)}")
    return f"PyAV {av.__version__} (FFmpeg decoders {', '.join(wanted)})"


def _onnxruntime() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__}, providers {', '.join(ort.get_available_providers())}"


def _torch() -> str:
    if importlib.util.find_spec("torch") is None:
        raise RuntimeError("not installed: training and export need pip install 'lepton-edge[train]'")
    import torch

    cuda = f", CUDA {torch.version.cuda} on {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"torch {torch.__version__}{cuda}"


def _tensorrt() -> str:
    if importlib.util.find_spec("tensorrt") is None:
        raise RuntimeError(
            "not importable: install NVIDIA TensorRT's Python bindings on a GPU machine "
            "(the PyPI packages fetch from NVIDIA's index)"
        )
    import tensorrt

    return f"TensorRT {tensorrt.__version__}"


def _gpu() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise RuntimeError("no NVIDIA GPU (nvidia-smi not found): CPU engines only")
    out = subprocess.run(
        [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return out.stdout.strip().replace("\n", "; ")


def _gstreamer() -> str:
    code = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    proc = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        raise RuntimeError("GStreamer RTSP server bindings missing for /usr/bin/python3: run `make system-deps`")
    return f"GStreamer RTSP server available ({_SIMULATOR.name} for `edge simulate` and the tests)"


def _portaudio() -> str:
    import sounddevice as sd  # type: ignore[import-untyped]  # no type information shipped (as in microphone.py)

    inputs = [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0]
    return f"PortAudio: {len(inputs)} input device(s)" + (f": {', '.join(inputs[:4])}" if inputs else "")


def machine_checks() -> list[Check]:
    return [
        Check("python", sys.version_info >= (3, 10), sys.version.split()[0]),
        _check("decoding", True, _pyav),
        _check("inference (CPU)", True, _onnxruntime),
        _check("training", False, _torch),
        _check("GPU", False, _gpu),
        _check("TensorRT", False, _tensorrt),
        _check("RTSP simulator", False, _gstreamer),
        _check("microphones", False, _portaudio),
    ]


def _outbox_state(path: Path) -> str:
    """ ", N rows, sound" for an existing outbox (read-only, ``PRAGMA quick_check``); raises when it is corrupt."""
    if not path.exists():
        return ", not created yet"
    from alerts.errors import OutboxCorruptError, OutboxError
    from alerts.outbox import Outbox

    salvage = "edge run will move it aside and recover what rows it can"
    try:
        with Outbox(path, readonly=True) as box:
            problems = box.quick_check()
            rows = box.stats()
    except OutboxCorruptError as exc:
        problems = [str(exc.strerror)]
    except OutboxError as exc:
        raise RuntimeError(f"{path} cannot be read ({exc.strerror})") from exc
    if problems:
        raise RuntimeError(f"{path} is corrupt ({'; '.join(problems[:2])}): {salvage}")
    return f"; {rows.pending + rows.delivered} row(s), {rows.pending} pending, sound"


def config_checks(config: str) -> list[Check]:
    from edge.config import load_config

    try:
        cfg = load_config(config)
    except Exception as exc:  # noqa: BLE001 - ConfigError lists every problem
        return [Check("config", False, str(exc).replace("\n", " "))]
    checks = [Check("config", True, f"{config}: {len(cfg.cameras)} camera(s)")]

    def model() -> str:
        import numpy as np

        from pipeline.models.package import ModelPackage
        from pipeline.scoring_model import PackageScorer

        scorer = PackageScorer(ModelPackage.load(cfg.model), cfg.engine)
        if scorer.has_video:
            scorer.score_video(np.zeros((1, scorer.context + 1, scorer.height, scorer.width), np.uint8))
        if scorer.has_audio:
            scorer.score_audio(np.zeros((1, round(scorer.audio_window_s * scorer.sample_rate)), np.float32))
        scorer.close()
        return f"{cfg.model} loads and scores on {cfg.engine.type}"

    def outbox() -> str:
        folder = Path(cfg.outbox.path).resolve().parent
        probe = folder if folder.exists() else next(p for p in folder.parents if p.exists())
        if not os.access(probe, os.W_OK):
            raise RuntimeError(f"{probe} is not writable")
        free = shutil.disk_usage(probe).free / 2**30
        state = _outbox_state(Path(cfg.outbox.path))
        return f"{cfg.outbox.path} writable, {free:.1f} GiB free{state}"

    checks += [_check("model", True, model), _check("outbox", True, outbox)]
    if cfg.kafka is not None:
        kafka = cfg.kafka

        def broker() -> str:
            from alerts.publisher import check_kafka

            return f"topic {kafka.topic!r} has {check_kafka(kafka)} partition(s)"

        checks.append(_check("kafka", True, broker))
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = machine_checks() + (config_checks(args.config) if args.config else [])
    for c in checks:
        print(c.line())
    failed = [c for c in checks if c.required and not c.ok]
    print(f"-- {len(failed)} required check(s) failed" if failed else "-- ready")
    return 1 if failed else 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser("doctor", help="check this machine (and a config) for what Lepton Edge needs")
    doctor.add_argument("-c", "--config", default=None, help="also check this config's model, outbox and Kafka")
    doctor.set_defaults(func=cmd_doctor)
