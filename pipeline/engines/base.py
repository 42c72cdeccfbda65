"""The config that selects an inference backend, and ``create_engine``.

    engine = create_engine({"type": "onnxruntime", "intra_op_num_threads": 1})
    engine.load(package.graph_path("video"))
    outputs = engine.infer({"frames": batch})        # {"patch_err": array}
    engine.close()

Backends live side by side in this folder, one module each, behind ``interface.Engine``:

- ``ort.py`` — ONNX Runtime on CPU, the default;
- ``torch_ref.py`` — the torch modules the graphs were exported from: the reference for parity checks, and the
  GPU backend (CUDA, FP16, CUDA graphs per batch size);
- ``tensorrt.py`` — a TensorRT engine built from the ONNX graph and cached; ONNX Runtime serves while it builds.

A backend whose library is missing fails in ``create_engine`` with an ``EngineError`` that says what to install.
Each backend takes plain keyword arguments (no pydantic there); this module validates the config and maps it on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, field_validator

from pipeline.engines.interface import Engine
from pipeline.errors import EngineError
from pipeline.strict import StrictModel

__all__ = [
    "Engine",
    "EngineConfig",
    "OrtEngineConfig",
    "TensorRTEngineConfig",
    "TorchEngineConfig",
    "create_engine",
]


class _Config(StrictModel):
    def kwargs(self) -> dict[str, Any]:
        """The backend's constructor arguments."""
        return self.model_dump(exclude={"type"})


class OrtEngineConfig(_Config):
    """ONNX Runtime on CPU."""

    type: Literal["onnxruntime"] = "onnxruntime"
    intra_op_num_threads: int = Field(
        1, ge=1, le=64, description="threads one inference may use; 1 leaves the cores to the decoders"
    )


class TorchEngineConfig(_Config):
    """The torch modules the graphs were exported from (needs the ``train`` extra): the parity reference on CPU,
    and the GPU backend on CUDA."""

    type: Literal["torch"] = "torch"
    num_threads: int = Field(1, ge=1, le=64, description="torch intra-op threads (CPU)")
    device: str = Field("auto", description="auto: cuda when available, else cpu; or a torch device such as cuda:1")
    precision: Literal["auto", "fp32", "fp16"] = Field(
        "auto", description="auto: fp16 (autocast) on CUDA, fp32 on CPU; fp16 needs CUDA"
    )
    cuda_graphs: bool = Field(
        True, description="on CUDA, replay a captured CUDA graph per batch size (inputs padded to the next one)"
    )
    graph_batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8],
        min_length=1,
        description="batch sizes captured as CUDA graphs; larger batches run in chunks of the largest",
    )

    @field_validator("graph_batch_sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if any(s < 1 or s > 1024 for s in sizes):
            raise ValueError("graph batch sizes must be in 1..1024")
        return sorted(set(sizes))

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return device


class TensorRTEngineConfig(_Config):
    """A TensorRT engine built from the ONNX graph (NVIDIA GPU; ``tensorrt`` and a CUDA build of torch for the
    device buffers). Engines are cached; while one builds, ONNX Runtime on CPU serves."""

    type: Literal["tensorrt"] = "tensorrt"
    max_batch: int = Field(8, ge=1, le=256, description="largest batch of the optimisation profile (1..max_batch)")
    precision: Literal["fp16", "fp32"] = Field(
        "fp16", description="fp16 where the GPU has fast FP16 (else fp32; the cache key records what was built)"
    )
    cache_dir: Path | None = Field(
        None, description="where engines and the timing cache live (default: ~/.cache/lepton-edge/tensorrt)"
    )
    workspace_mb: int = Field(1024, ge=16, le=65536, description="builder workspace memory limit")
    build: Literal["background", "blocking"] = Field(
        "background", description="background: serve with ONNX Runtime while the engine builds"
    )
    device: int = Field(0, ge=0, le=63, description="CUDA device index")
    fallback_threads: int = Field(1, ge=1, le=64, description="ONNX Runtime threads while the engine builds")


EngineConfig = Annotated[OrtEngineConfig | TorchEngineConfig | TensorRTEngineConfig, Field(discriminator="type")]
_ADAPTER: TypeAdapter[OrtEngineConfig | TorchEngineConfig | TensorRTEngineConfig] = TypeAdapter(EngineConfig)

AnyEngineConfig = OrtEngineConfig | TorchEngineConfig | TensorRTEngineConfig


def engine_config(config: AnyEngineConfig | Mapping[str, Any]) -> AnyEngineConfig:
    """Validate a mapping with ``type`` (or pass a config model through)."""
    if isinstance(config, (OrtEngineConfig, TorchEngineConfig, TensorRTEngineConfig)):
        return config
    return _ADAPTER.validate_python(config)


def create_engine(config: AnyEngineConfig | Mapping[str, Any]) -> Engine:
    """An unloaded engine for ``config`` (a config model or a mapping with ``type``)."""
    cfg = engine_config(config)
    if isinstance(cfg, OrtEngineConfig):
        try:
            from pipeline.engines.ort import OrtEngine
        except ImportError as e:
            raise EngineError(f"engine 'onnxruntime' is unavailable ({e}): pip install onnxruntime") from e
        engine: Engine = OrtEngine(**cfg.kwargs())
    elif isinstance(cfg, TorchEngineConfig):
        try:
            from pipeline.engines.torch_ref import TorchEngine
        except ImportError as e:
            raise EngineError(f"engine 'torch' is unavailable ({e}): pip install 'lepton-edge[train]'") from e
        engine = TorchEngine(**cfg.kwargs())
    else:
        from pipeline.engines.tensorrt import TensorRTEngine

        engine = TensorRTEngine(**cfg.kwargs())
    engine.config = cfg  # type: ignore[attr-defined]
    return engine
