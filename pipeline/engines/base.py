"""The one interface every inference backend implements, and the config that selects a backend.

    engine = create_engine({"type": "onnxruntime", "intra_op_num_threads": 1})
    engine.load(package.graph_path("video"))
    outputs = engine.infer({"frames": batch})        # {"patch_err": array}
    engine.close()

Backends live side by side in this folder (``ort.py``: ONNX Runtime on CPU; ``torch_ref.py``: the torch
modules the graphs were exported from, for parity checks). A backend whose library is missing fails in
``create_engine`` with an ``EngineError`` that says what to install.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pipeline.errors import EngineError


class OrtEngineConfig(BaseModel):
    """ONNX Runtime on CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["onnxruntime"] = "onnxruntime"
    intra_op_num_threads: int = Field(
        1, ge=1, le=64, description="threads one inference may use; 1 leaves the cores to the decoders"
    )


class TorchEngineConfig(BaseModel):
    """The torch modules the graphs were exported from (reference; needs the ``train`` extra)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["torch"] = "torch"
    num_threads: int = Field(1, ge=1, le=64, description="torch intra-op threads")


EngineConfig = Annotated[OrtEngineConfig | TorchEngineConfig, Field(discriminator="type")]
_ADAPTER: TypeAdapter[OrtEngineConfig | TorchEngineConfig] = TypeAdapter(EngineConfig)


class Engine(abc.ABC):
    """Runs one graph. ``infer`` is safe to call from one thread at a time per engine."""

    name: str = "engine"

    @abc.abstractmethod
    def load(self, graph_path: str | Path) -> None:
        """Load the ONNX graph at ``graph_path``; raises ``EngineError``."""

    @property
    @abc.abstractmethod
    def input_names(self) -> list[str]: ...

    @property
    @abc.abstractmethod
    def output_names(self) -> list[str]: ...

    @abc.abstractmethod
    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on named input arrays; returns every output by name. Raises ``EngineError``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the graph; the engine may be loaded again."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_engine(config: OrtEngineConfig | TorchEngineConfig | Mapping[str, Any]) -> Engine:
    """An unloaded engine for ``config`` (a config model or a mapping with ``type``)."""
    cfg = (
        config
        if isinstance(config, (OrtEngineConfig, TorchEngineConfig))
        else _ADAPTER.validate_python(config)
    )
    if isinstance(cfg, OrtEngineConfig):
        try:
            from pipeline.engines.ort import OrtEngine
        except ImportError as e:
            raise EngineError(f"engine 'onnxruntime' is unavailable ({e}): pip install onnxruntime") from e
        return OrtEngine(cfg)
    try:
        from pipeline.engines.torch_ref import TorchEngine
    except ImportError as e:
        raise EngineError(f"engine 'torch' is unavailable ({e}): pip install 'lepton-edge[train]'") from e
    return TorchEngine(cfg)
