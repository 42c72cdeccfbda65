"""The TensorRT backend's own logic, without TensorRT: cache key, atomic cache writes, ONNX Runtime serving while
an engine builds, failures and corrupt cache entries. A fake compiler obeys the real ``Compiler`` interface."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.engines.cache import CacheKey, EngineCache, Profile, atomic_write_bytes, batch_profile
from pipeline.engines.ort import OrtEngine
from pipeline.engines.tensorrt import BuildState, TensorRTEngine
from pipeline.errors import EngineError

DEFAULT = Path(__file__).resolve().parents[1] / "pipeline" / "models" / "default"
# one frame stack of the default package's video graph, and its patch grid
FRAMES = tuple(json.loads((DEFAULT / "model.json").read_text())["video"]["input"]["shape"][1:])
GRID = tuple(json.loads((DEFAULT / "model.json").read_text())["video"]["output"]["shape"][1:])


class FakeRunner:
    """Answers like the graph would (through ONNX Runtime), and counts what it served."""

    def __init__(self, graph: Path) -> None:
        self.ort = OrtEngine()
        self.ort.load(graph)
        self.calls: list[int] = []
        self.closed = False

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls.append(len(next(iter(inputs.values()))))
        return self.ort.infer(inputs)

    def close(self) -> None:
        self.closed = True


class FakeCompiler:
    def __init__(self, *, gate: threading.Event | None = None, fail: bool = False, fp16: bool = True) -> None:
        self.gate = gate
        self.fail = fail
        self.fp16 = fp16
        self.builds: list[tuple[Path, Profile, str, Path]] = []
        self.runners: list[FakeRunner] = []
        self.refuse: set[bytes] = set()

    def identity(self) -> tuple[str, str, str]:
        return "10.9.0", "Fake GPU 80GB", "9.0"

    def precision(self, requested: str) -> str:
        return requested if self.fp16 else "fp32"

    def build(self, graph: Path, profile: Profile, precision: str, timing_cache: Path) -> bytes:
        self.builds.append((graph, profile, precision, timing_cache))
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise EngineError("builder said no")
        timing_cache.write_bytes(b"timings")
        return b"ENGINE " + str(graph).encode()

    def load(self, data: bytes) -> FakeRunner:
        if data in self.refuse or not data.startswith(b"ENGINE "):
            raise EngineError("deserialize_cuda_engine returned None")
        runner = FakeRunner(Path(data[len(b"ENGINE ") :].decode()))
        self.runners.append(runner)
        return runner


@pytest.fixture
def graphs(tmp_path: Path) -> Path:
    out = tmp_path / "pkg"
    out.mkdir()
    for name in ("video.onnx", "audio.onnx"):
        shutil.copy(DEFAULT / name, out / name)
    return out


def _frames(n: int) -> dict[str, np.ndarray]:
    return {"frames": np.random.default_rng(n).integers(0, 256, (n, *FRAMES), dtype=np.uint8)}


def _no_temporaries(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_onnxruntime_serves_while_the_engine_builds_then_tensorrt(graphs: Path, tmp_path: Path) -> None:
    gate = threading.Event()
    compiler = FakeCompiler(gate=gate)
    engine = TensorRTEngine(max_batch=4, cache_dir=tmp_path / "cache", compiler=compiler)
    engine.load(graphs / "video.onnx")
    assert engine.state is BuildState.BUILDING and engine.serving == "onnxruntime"
    before = engine.infer(_frames(2))["patch_err"]  # served at once, the build is still blocked
    assert before.shape == (2, *GRID) and not compiler.runners
    gate.set()
    assert engine.wait(10) and engine.serving == "tensorrt"
    after = engine.infer(_frames(2))["patch_err"]
    np.testing.assert_allclose(after, before, rtol=1e-6)
    assert compiler.runners[0].calls == [2]
    (graph, profile, precision, timing) = compiler.builds[0]
    assert profile == {"frames": ((1, *FRAMES), (4, *FRAMES), (4, *FRAMES))} and precision == "fp16"
    assert timing.parent == tmp_path / "cache" and timing.name.startswith("timing-10.9.0-Fake_GPU_80GB-sm9.0")
    assert engine.engine_path is not None and engine.engine_path.is_file()
    meta = json.loads(engine.engine_path.with_suffix(".json").read_text())
    assert meta["model_sha256"] == hashlib.sha256((graphs / "video.onnx").read_bytes()).hexdigest()
    assert meta["gpu_name"] == "Fake GPU 80GB" and meta["profile"]["frames"][2] == [4, *FRAMES]
    _no_temporaries(tmp_path / "cache")
    engine.close()
    assert compiler.runners[0].closed


def test_a_cached_engine_is_loaded_without_building(graphs: Path, tmp_path: Path) -> None:
    first = FakeCompiler()
    e1 = TensorRTEngine(cache_dir=tmp_path / "cache", build="blocking", compiler=first)
    e1.load(graphs / "video.onnx")
    assert e1.state is BuildState.READY and len(first.builds) == 1
    second = FakeCompiler()
    e2 = TensorRTEngine(cache_dir=tmp_path / "cache", compiler=second)
    e2.load(graphs / "video.onnx")
    assert e2.wait(10) and not second.builds and e2.engine_path == e1.engine_path


def test_the_key_changes_with_everything_the_engine_depends_on(tmp_path: Path) -> None:
    key = CacheKey(
        graph="video",
        model_sha256="a" * 64,
        tensorrt_version="10.9.0",
        gpu_name="NVIDIA H200",
        compute_capability="9.0",
        precision="fp16",
        profile=batch_profile({"frames": (1, 5, 96, 160)}, 8),
    )
    variants = [
        replace(key, model_sha256="b" * 64),
        replace(key, tensorrt_version="10.10.0"),
        replace(key, gpu_name="NVIDIA L4"),
        replace(key, compute_capability="8.9"),
        replace(key, precision="fp32"),
        replace(key, profile=batch_profile({"frames": (1, 5, 96, 160)}, 4)),
        replace(key, profile=batch_profile({"frames": (1, 5, 144, 256)}, 8)),
    ]
    cache = EngineCache(tmp_path)
    paths = {cache.path(k) for k in [key, *variants]}
    assert len(paths) == len(variants) + 1
    assert replace(key).digest() == key.digest()  # stable
    assert cache.path(key).name.startswith("video-aaaaaaaaaaaa-fp16-b8-")


def test_a_failed_build_keeps_onnxruntime_serving_and_caches_nothing(graphs: Path, tmp_path: Path) -> None:
    engine = TensorRTEngine(cache_dir=tmp_path / "cache", compiler=FakeCompiler(fail=True))
    engine.load(graphs / "video.onnx")
    assert not engine.wait(10)
    assert engine.state is BuildState.FAILED and "builder said no" in (engine.error or "")
    assert engine.infer(_frames(3))["patch_err"].shape == (3, *GRID)
    assert engine.serving == "onnxruntime"
    assert not list((tmp_path / "cache").glob("*.engine"))


def test_a_corrupt_cache_entry_is_rebuilt(graphs: Path, tmp_path: Path) -> None:
    compiler = FakeCompiler()
    e1 = TensorRTEngine(cache_dir=tmp_path / "cache", build="blocking", compiler=compiler)
    e1.load(graphs / "video.onnx")
    assert e1.engine_path is not None
    e1.engine_path.write_bytes(b"garbage")
    e2 = TensorRTEngine(cache_dir=tmp_path / "cache", build="blocking", compiler=compiler)
    e2.load(graphs / "video.onnx")
    assert e2.state is BuildState.READY and len(compiler.builds) == 2
    assert e2.engine_path is not None and e2.engine_path.read_bytes().startswith(b"ENGINE ")


def test_a_dynamic_time_axis_takes_its_profile_from_the_first_batch(graphs: Path, tmp_path: Path) -> None:
    compiler = FakeCompiler()
    engine = TensorRTEngine(max_batch=2, cache_dir=tmp_path / "cache", build="blocking", compiler=compiler)
    engine.load(graphs / "audio.onnx")
    assert engine.state is BuildState.WAITING and not compiler.builds
    mel = np.zeros((5, 98, 64), np.float32)
    out = engine.infer({"mel": mel})["frame_err"]  # blocking: built on this call, then served in chunks of 2
    assert out.shape == (5, 97) and engine.serving == "tensorrt"
    assert compiler.builds[0][1] == {"mel": ((1, 98, 64), (2, 98, 64), (2, 98, 64))}
    assert compiler.runners[0].calls == [2, 2, 1]


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.engine"
    atomic_write_bytes(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new engine")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.engine"]


def test_without_tensorrt_the_error_says_what_to_install() -> None:
    pytest.importorskip("pydantic")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    from pipeline.engines import create_engine

    with pytest.raises(EngineError, match="cannot be installed from plain PyPI"):
        create_engine({"type": "tensorrt"})
