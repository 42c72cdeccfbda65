"""torch backend: runs the torch module a graph was exported from. On CPU it is the reference that ONNX Runtime is
checked against; on an NVIDIA GPU it is the GPU backend that needs no compiler: CUDA, FP16, CUDA graphs.

The exporter (``pipeline.models.export``) writes into each ONNX graph's metadata which architecture it is
(``lepton.arch`` + ``lepton.arch_config``) and the state-dict file beside it (``lepton.reference_weights``);
this backend rebuilds that module and loads those weights.

On CUDA:
- **FP16** runs under ``torch.autocast`` rather than converting the module: convolutions and the GRU run in half
  precision while the normalisation, error maps and reductions stay in float32, and the uint8 → float input cast
  stays exact. Autocast's weight cache is off (``cache_enabled=False``), as CUDA graph capture requires.
- **FP32** means IEEE float32: cuDNN runs convolutions and RNNs in TF32 by default on Ampere and later GPUs (10-bit
  mantissa; on an H200 that put the video graph 2e-4 of its range away from ONNX Runtime), so the fp32 engine
  switches TF32 off around its own calls and graph captures and restores the process's settings after.
- **CUDA graphs**: a frame's worth of these small models is a few dozen kernel launches whose CPU cost exceeds
  their GPU time, so one graph is captured per (batch size, input shape) on first use and replayed afterwards.
  A batch is padded up to the next captured size (rows are independent, padding rows are never read back); a
  batch above the largest size runs in chunks of it. Static buffers belong to the engine: ``infer`` copies the
  outputs out before returning.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from pipeline.engines.interface import Engine
from pipeline.errors import EngineError

log = logging.getLogger(__name__)

_WARMUP_RUNS = 3


class _CapturedGraph:
    """One CUDA graph of ``module`` on static input buffers of fixed shapes."""

    def __init__(
        self,
        module: torch.nn.Module,
        shapes: Sequence[tuple[int, ...]],
        dtypes: Sequence[torch.dtype],
        device: torch.device,
        fp16: bool,
    ) -> None:
        self.batch = shapes[0][0]
        self.inputs = [torch.zeros(s, dtype=d, device=device) for s, d in zip(shapes, dtypes, strict=True)]
        # warm up on a side stream (cuDNN/cuBLAS pick algorithms and allocate workspaces outside the capture)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad(), _precision(device, fp16):
            for _ in range(_WARMUP_RUNS):
                module(*self.inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph), _precision(device, fp16):
            out = module(*self.inputs)
        self.outputs: tuple[torch.Tensor, ...] = out if isinstance(out, tuple) else (out,)

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        n = arrays[0].shape[0]
        for static, a in zip(self.inputs, arrays, strict=True):
            static[:n].copy_(torch.from_numpy(a))
        self.graph.replay()
        return [o[:n].float().cpu().numpy() for o in self.outputs]


def _precision(device: torch.device, fp16: bool) -> contextlib.AbstractContextManager[Any]:
    """FP16 under autocast; FP32 on CUDA in IEEE float32 (no TF32); nothing to change on CPU."""
    if fp16:
        return torch.autocast(device_type=device.type, dtype=torch.float16, cache_enabled=False)
    if device.type == "cuda":
        return _no_tf32()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    backends = torch.backends
    if hasattr(backends.cudnn, "conv") and hasattr(backends.cudnn.conv, "fp32_precision"):  # torch >= 2.9
        knobs = [backends.cudnn.conv, backends.cudnn.rnn, backends.cuda.matmul]
        saved = [k.fp32_precision for k in knobs]
        for k in knobs:
            k.fp32_precision = "ieee"
        try:
            yield
        finally:
            for k, value in zip(knobs, saved, strict=True):
                k.fp32_precision = value
    else:  # the older flags (mixing the two APIs is an error in newer torch, hence one or the other)
        saved_flags = backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
        backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved_flags


class TorchEngine(Engine):
    name = "torch"

    def __init__(
        self,
        num_threads: int = 1,
        device: str = "auto",
        precision: str = "auto",
        cuda_graphs: bool = True,
        graph_batch_sizes: Sequence[int] = (1, 2, 4, 8),
    ) -> None:
        if precision not in ("auto", "fp32", "fp16"):
            raise ValueError("precision must be auto, fp32 or fp16")
        self.num_threads = num_threads
        self.requested_device = device
        self.requested_precision = precision
        self.cuda_graphs = cuda_graphs
        self.graph_batch_sizes = sorted(set(int(s) for s in graph_batch_sizes))
        self.device = torch.device("cpu")
        self.fp16 = False
        self._module: torch.nn.Module | None = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._graphs: dict[tuple[Any, ...], _CapturedGraph] = {}

    def _resolve_device(self) -> torch.device:
        want = self.requested_device
        if want == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(want)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EngineError(
                f"torch engine: device {want} requested but CUDA is not available "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use device: cpu"
            )
        return dev

    def load(self, graph_path: str | Path) -> None:
        from pipeline.models.export import build_module

        path = Path(graph_path)
        try:
            graph = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - onnx raises several unrelated types for a bad file
            raise EngineError(f"torch engine cannot read {path}: {e}") from e
        meta = {p.key: p.value for p in graph.metadata_props}
        missing = {"lepton.arch", "lepton.arch_config", "lepton.reference_weights"} - set(meta)
        if missing:
            raise EngineError(f"torch engine: {path} has no reference metadata ({', '.join(sorted(missing))})")
        weights = path.parent / meta["lepton.reference_weights"]
        if not weights.is_file():
            raise EngineError(f"torch engine: reference weights {weights} are missing")
        device = self._resolve_device()
        fp16 = self.requested_precision == "fp16" or (self.requested_precision == "auto" and device.type == "cuda")
        if fp16 and device.type != "cuda":
            raise EngineError("torch engine: fp16 needs a CUDA device (use precision: fp32 on CPU)")
        config: dict[str, Any] = json.loads(meta["lepton.arch_config"])
        module = build_module(meta["lepton.arch"], config)
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        module.eval().to(device)
        if device.type == "cpu":
            torch.set_num_threads(self.num_threads)
        self.device, self.fp16 = device, fp16
        self._module = module
        self._graphs.clear()
        self._inputs = [i.name for i in graph.graph.input]
        self._outputs = [o.name for o in graph.graph.output]

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    @property
    def uses_cuda_graphs(self) -> bool:
        return self.cuda_graphs and self.device.type == "cuda"

    def describe(self) -> str:
        graphs = f" cuda-graphs{self.graph_batch_sizes}" if self.uses_cuda_graphs else ""
        threads = f" threads={self.num_threads}" if self.device.type == "cpu" else ""
        return f"torch {self.device} {'fp16' if self.fp16 else 'fp32'}{graphs}{threads}"

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._module is None:
            raise EngineError("torch engine used before load()")
        try:
            arrays = [np.ascontiguousarray(inputs[name]) for name in self._inputs]
        except KeyError as e:
            raise EngineError(f"torch engine: missing input {e}") from e
        try:
            if self.uses_cuda_graphs:
                parts = [self._replay(chunk) for chunk in _chunks(arrays, self.graph_batch_sizes[-1])]
                outs = [np.concatenate(p, axis=0) for p in zip(*parts, strict=True)]
            else:
                outs = self._eager(arrays)
        except torch.cuda.OutOfMemoryError as e:
            raise EngineError(f"torch engine: out of GPU memory ({e})") from e
        except RuntimeError as e:
            raise EngineError(f"torch engine inference failed: {e}") from e
        return dict(zip(self._outputs, outs, strict=True))

    def _eager(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        assert self._module is not None
        args = [torch.from_numpy(a).to(self.device) for a in arrays]
        with torch.inference_mode(), _precision(self.device, self.fp16):
            out = self._module(*args)
        outs = out if isinstance(out, tuple) else (out,)
        return [t.float().cpu().numpy() for t in outs]

    def _replay(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        assert self._module is not None
        n = arrays[0].shape[0]
        size = next(s for s in self.graph_batch_sizes if s >= n)
        key = (size, *((a.shape[1:], a.dtype.str) for a in arrays))
        captured = self._graphs.get(key)
        if captured is None:
            shapes = [(size, *a.shape[1:]) for a in arrays]
            dtypes = [torch.from_numpy(a[:0]).dtype for a in arrays]
            log.info("capturing a CUDA graph for batch %d, inputs %s", size, shapes)
            captured = _CapturedGraph(self._module, shapes, dtypes, self.device, self.fp16)
            self._graphs[key] = captured
        return captured.run(arrays)

    def close(self) -> None:
        self._module = None
        self._graphs.clear()


def _chunks(arrays: Sequence[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    n = arrays[0].shape[0]
    for start in range(0, n, size):
        yield [a[start : start + size] for a in arrays]
