"""The one interface every inference backend implements. No third-party imports: a backend module can be loaded
on a machine that has only its own runtime (``benchmarks/gpu_check.sh`` runs the GPU backends with torch, onnx and
onnxruntime alone).

    engine.load(package.graph_path("video"))
    outputs = engine.infer({"frames": batch})        # {"patch_err": array, ...}
    engine.close()
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path

import numpy as np


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
        """Run the graph on named input arrays (batch first); returns every output by name, as numpy arrays on
        the host. Raises ``EngineError``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the graph; the engine may be loaded again."""

    def describe(self) -> str:
        """One line for logs and provenance: the backend and how it runs (device, precision)."""
        return self.name

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
