"""TensorRT backend: an engine compiled from the ONNX graph for this GPU, cached, served by ONNX Runtime until it is
ready.

    load(graph) ─► ONNX Runtime (CPU) serves at once
                └► key = sha256(graph) + TensorRT version + GPU name + compute capability + precision + profile
                   cached?  yes ─► deserialize, switch over
                            no  ─► build on a background thread (one build at a time per process), write the
                                   engine atomically into the cache, deserialize, switch over
    a failed build is logged and ONNX Runtime keeps serving; the cache never holds a partial engine

Two parts. The cache key, the atomic cache and the ONNX Runtime fallback are ours and are tested without a GPU
through a fake :class:`Compiler`. :class:`TrtCompiler` is the only code that touches TensorRT, kept small and to
the documented Python API (TensorRT 10; 8.6 works too; 11 builds FP32 only).

Not installable from PyPI on machines without NVIDIA's package index (the ``tensorrt`` wheels there are stubs that
download the libraries at install time). On an NVIDIA machine: ``pip install tensorrt`` (with access to
pypi.nvidia.com) or NVIDIA's TensorRT container / the ``python3-libnvinfer`` Debian package from the CUDA repository.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.engines.cache import CacheKey, EngineCache, Profile, batch_profile, file_sha256
from pipeline.engines.interface import Engine
from pipeline.engines.ort import OrtEngine
from pipeline.errors import EngineError

log = logging.getLogger(__name__)

TENSORRT_MISSING = (
    "TensorRT is not importable. It cannot be installed from plain PyPI (the tensorrt wheels there fetch their "
    "libraries from NVIDIA's package index at install time); on an NVIDIA machine install it with "
    "'pip install tensorrt --extra-index-url https://pypi.nvidia.com', or use NVIDIA's TensorRT container or the "
    "python3-libnvinfer package of the CUDA apt repository. It also needs a CUDA build of torch "
    "(device buffers). Without it use engine type onnxruntime (CPU) or torch (CUDA)"
)

# TensorRT builds are memory- and GPU-hungry: one at a time per process.
_BUILD_LOCK = threading.Lock()


class CompiledRunner(Protocol):
    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class Compiler(Protocol):
    """Compiles a graph for this GPU and loads compiled engines (``TrtCompiler``; a fake in the tests)."""

    def identity(self) -> tuple[str, str, str]:
        """(TensorRT version, GPU name, compute capability 'major.minor')."""
        ...

    def precision(self, requested: str) -> str:
        """The precision a build for ``requested`` will actually use on this GPU."""
        ...

    def build(self, graph: Path, profile: Profile, precision: str, timing_cache: Path) -> bytes: ...

    def load(self, data: bytes) -> CompiledRunner: ...


class BuildState(str, Enum):
    WAITING = "waiting"  # a dynamic non-batch dimension: the first call tells the profile
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class TensorRTEngine(Engine):
    """See the module docstring. ``compiler`` defaults to :class:`TrtCompiler` (TensorRT on CUDA device
    ``device``)."""

    name = "tensorrt"

    def __init__(
        self,
        max_batch: int = 8,
        precision: str = "fp16",
        cache_dir: str | Path | None = None,
        workspace_mb: int = 1024,
        build: str = "background",
        device: int = 0,
        fallback_threads: int = 1,
        *,
        compiler: Compiler | None = None,
    ) -> None:
        if build not in ("background", "blocking"):
            raise ValueError("build must be background or blocking")
        if precision not in ("fp16", "fp32"):
            raise ValueError("precision must be fp16 or fp32")
        self.max_batch = max_batch
        self.requested_precision = precision
        self.cache = EngineCache(Path(cache_dir) if cache_dir is not None else None)
        self.blocking = build == "blocking"
        self.compiler: Compiler = compiler if compiler is not None else TrtCompiler(device, workspace_mb)
        self.fallback = OrtEngine(fallback_threads)
        self.state = BuildState.WAITING
        self.error: str | None = None
        self.key: CacheKey | None = None
        self.engine_path: Path | None = None
        self.build_seconds: float | None = None
        self._graph: Path | None = None
        self._sha256 = ""
        self._runner: CompiledRunner | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    def load(self, graph_path: str | Path) -> None:
        path = Path(graph_path)
        self.fallback.load(path)  # raises EngineError for a bad graph before anything is built
        self._graph, self._sha256 = path, file_sha256(path)
        self._closed = False
        shapes = self.fallback.input_shapes
        fixed = {name: [d for d in shape[1:] if isinstance(d, int)] for name, shape in shapes.items()}
        if all(len(fixed[name]) == len(shape) - 1 for name, shape in shapes.items()):
            self.prepare({name: (1, *dims) for name, dims in fixed.items()})
        else:
            log.info("%s: a dynamic non-batch dimension; the TensorRT profile waits for the first batch", path.name)

    def prepare(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Fix the profile from one sample shape per input and get the engine: from the cache, or built (in the
        background unless ``build="blocking"``). No-op once started."""
        if self._graph is None:
            raise EngineError("tensorrt engine used before load()")
        with self._lock:
            if self.state is not BuildState.WAITING:
                return
            self.state = BuildState.BUILDING
        trt_version, gpu, cc = self.compiler.identity()
        self.key = CacheKey(
            graph=self._graph.stem,
            model_sha256=self._sha256,
            tensorrt_version=trt_version,
            gpu_name=gpu,
            compute_capability=cc,
            precision=self.compiler.precision(self.requested_precision),
            profile=batch_profile(dict(shapes), self.max_batch),
        )
        self.engine_path = self.cache.path(self.key)
        if self.blocking:
            self._obtain(self.key)
        else:
            self._thread = threading.Thread(
                target=self._obtain, args=(self.key,), name=f"tensorrt-build-{self._graph.stem}", daemon=True
            )
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the TensorRT engine serves (True) or the build failed / time ran out (False)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state is BuildState.READY

    def close(self) -> None:
        with self._lock:
            self._closed = True
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()
        self.fallback.close()

    # -- building --------------------------------------------------------------------------------------------
    def _obtain(self, key: CacheKey) -> None:
        assert self._graph is not None
        try:
            runner = self._from_cache(key) or self._build(key)
        except Exception as e:  # noqa: BLE001 - any failure leaves ONNX Runtime serving; logged and recorded
            log.error("TensorRT engine for %s unavailable, ONNX Runtime keeps serving: %s", self._graph.name, e)
            self.error = str(e)
            self.state = BuildState.FAILED
            return
        with self._lock:
            if self._closed:
                runner.close()
                return
            self._runner = runner
            self.state = BuildState.READY
        log.info("TensorRT engine for %s serves now (%s)", self._graph.name, self.engine_path)

    def _from_cache(self, key: CacheKey) -> CompiledRunner | None:
        data = self.cache.get(key)
        if data is None:
            return None
        try:
            return self.compiler.load(data)
        except Exception as e:  # noqa: BLE001 - a cached engine the runtime refuses is rebuilt, not fatal
            log.warning("cached TensorRT engine %s is unusable (%s): rebuilding", self.cache.path(key), e)
            self.cache.discard(key)
            return None

    def _build(self, key: CacheKey) -> CompiledRunner:
        assert self._graph is not None
        with _BUILD_LOCK:
            data = self.cache.get(key)  # another engine of this process may have built it meanwhile
            if data is None:
                log.info(
                    "building TensorRT engine for %s (%s, batch 1..%d); ONNX Runtime serves meanwhile",
                    self._graph.name,
                    key.precision,
                    key.max_batch,
                )
                t = time.monotonic()
                self.cache.directory.mkdir(parents=True, exist_ok=True)
                timing = self.cache.timing_cache_path(key.tensorrt_version, key.gpu_name, key.compute_capability)
                data = self.compiler.build(self._graph, key.profile, key.precision, timing)
                self.build_seconds = time.monotonic() - t
                self.cache.put(key, data)
                log.info("TensorRT engine built in %.1f s: %s", self.build_seconds, self.cache.path(key))
        return self.compiler.load(data)

    # -- inference -------------------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return self.fallback.input_names

    @property
    def output_names(self) -> list[str]:
        return self.fallback.output_names

    @property
    def serving(self) -> str:
        """Which runtime answers ``infer`` now: ``tensorrt`` or ``onnxruntime``."""
        return "tensorrt" if self._runner is not None else "onnxruntime"

    def describe(self) -> str:
        key = self.key
        what = f"{key.precision} {key.gpu_name}" if key else self.requested_precision
        return f"tensorrt {what} ({self.state.value}; {self.serving} serving)"

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        runner = self._runner
        if runner is None:
            if self.state is BuildState.WAITING:
                self.prepare({name: (1, *np.shape(a)[1:]) for name, a in inputs.items()})
                runner = self._runner  # a blocking build or a cache hit serves this very call
            if runner is None:
                return self.fallback.infer(inputs)
        n = len(next(iter(inputs.values())))
        if n <= self.max_batch:
            return runner.infer(inputs)
        parts = [
            runner.infer({k: v[s : s + self.max_batch] for k, v in inputs.items()}) for s in range(0, n, self.max_batch)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---------------------------------------------------------------------------------------------- TensorRT proper


class TrtCompiler:
    """Builds and loads TensorRT engines on CUDA device ``device``.

    - build: ``Builder`` → ``create_network`` (explicit batch) → ``OnnxParser.parse`` →
      ``BuilderConfig`` with a workspace limit, ``BuilderFlag.FP16`` where ``platform_has_fast_fp16``, one
      ``OptimizationProfile`` (batch 1..max_batch, the other dimensions fixed), a timing cache loaded from and saved
      back to the cache folder → ``build_serialized_network``;
    - run: ``Runtime.deserialize_cuda_engine`` → ``create_execution_context`` → per call ``set_input_shape``,
      ``set_tensor_address`` for every I/O tensor, ``execute_async_v3`` on the current CUDA stream. Device buffers are
      torch CUDA tensors (the CUDA build of torch is the one GPU dependency we already have for the torch backend).

    TensorRT 11 removed the weak-typing precision flags (``BuilderFlag.FP16``, ``platform_has_fast_fp16``): there the
    network is built as the graph types it, i.e. FP32 from our graphs, and the key records fp32.
    """

    def __init__(self, device: int = 0, workspace_mb: int = 1024) -> None:
        try:
            import tensorrt as trt
        except ImportError as e:
            raise EngineError(f"{TENSORRT_MISSING} ({e})") from e
        try:
            import torch
        except ImportError as e:
            raise EngineError(f"the tensorrt engine needs a CUDA build of torch for its buffers ({e})") from e
        if not torch.cuda.is_available():
            raise EngineError("the tensorrt engine needs an NVIDIA GPU, and torch sees no CUDA device")
        self.trt: Any = trt
        self.torch: Any = torch
        self.device = device
        self.workspace_mb = workspace_mb
        self.logger = trt.Logger(trt.Logger.WARNING)

    def identity(self) -> tuple[str, str, str]:
        major, minor = self.torch.cuda.get_device_capability(self.device)
        return self.trt.__version__, self.torch.cuda.get_device_name(self.device), f"{major}.{minor}"

    def precision(self, requested: str) -> str:
        trt = self.trt
        if requested != "fp16":
            return requested
        if not hasattr(trt.BuilderFlag, "FP16"):
            log.warning("TensorRT %s builds strongly typed networks only: building FP32", trt.__version__)
            return "fp32"
        if not trt.Builder(self.logger).platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16: building FP32")
            return "fp32"
        return "fp16"

    def build(self, graph: Path, profile: Profile, precision: str, timing_cache: Path) -> bytes:
        trt = self.trt
        with self.torch.cuda.device(self.device):
            builder = trt.Builder(self.logger)
            # TensorRT 10 networks are always explicit-batch (the flag is deprecated); 8.x needs it spelled out
            major = int(str(trt.__version__).split(".")[0])
            flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
            network = builder.create_network(flags)
            parser = trt.OnnxParser(network, self.logger)
            if not parser.parse(graph.read_bytes()):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise EngineError(f"TensorRT cannot parse {graph.name}: {errors}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
            if precision == "fp16":
                config.set_flag(trt.BuilderFlag.FP16)
            opt = builder.create_optimization_profile()
            for name, (lo, best, hi) in profile.items():
                opt.set_shape(name, lo, best, hi)
            config.add_optimization_profile(opt)
            previous = timing_cache.read_bytes() if timing_cache.is_file() else b""
            cache = config.create_timing_cache(previous)
            config.set_timing_cache(cache, ignore_mismatch=False)
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                raise EngineError(f"TensorRT could not build {graph.name} (see the TensorRT log above)")
            from pipeline.engines.cache import atomic_write_bytes

            atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
            return bytes(serialized)

    def load(self, data: bytes) -> CompiledRunner:
        return _TrtRunner(self.trt, self.torch, self.logger, data, self.device)


class _TrtRunner:
    """An execution context with torch CUDA tensors as its I/O buffers."""

    def __init__(self, trt: Any, torch: Any, logger: Any, data: bytes, device: int) -> None:
        self.trt, self.torch = trt, torch
        self.device = torch.device("cuda", device)
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(logger)
            self.engine = self.runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise EngineError("TensorRT refused the serialized engine (built by another version or GPU?)")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input: Callable[[str], bool] = lambda n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT  # noqa: E731
        self.inputs = [n for n in names if is_input(n)]
        self.outputs = [n for n in names if not is_input(n)]
        self.output_dtypes = {
            n: torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(n)))).dtype
            for n in self.outputs
        }

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            buffers = {}
            for name in self.inputs:
                t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device)
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, t.data_ptr())
                buffers[name] = t
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                t = torch.empty(shape, dtype=self.output_dtypes[name], device=self.device)
                self.context.set_tensor_address(name, t.data_ptr())
                buffers[name] = t
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise EngineError("TensorRT execution failed (see the TensorRT log)")
            # .cpu() waits for the stream; the buffers stay referenced until then
            return {name: buffers[name].float().cpu().numpy() for name in self.outputs}

    def close(self) -> None:
        self.context = None
        self.engine = None
