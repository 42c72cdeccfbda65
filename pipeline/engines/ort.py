"""ONNX Runtime backend (CPU).

Threads: one intra-op pool of ``intra_op_num_threads`` (default 1) with spinning off. ONNX Runtime's spinning
workers busy-wait between runs and, on a 2-core edge box, starve the decoders and any torch in the same
process. Graph optimisations are all on; sessions run sequentially.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.engines.interface import Engine
from pipeline.errors import EngineError


class OrtEngine(Engine):
    name = "onnxruntime"

    def __init__(self, intra_op_num_threads: int = 1) -> None:
        if intra_op_num_threads < 1:
            raise ValueError("intra_op_num_threads must be at least 1")
        self.intra_op_num_threads = intra_op_num_threads
        self._session: ort.InferenceSession | None = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []

    def load(self, graph_path: str | Path) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_num_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(graph_path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own untyped errors; re-raised as EngineError
            raise EngineError(f"onnxruntime cannot load {graph_path}: {e}") from e
        self._session = session
        self._inputs = [i.name for i in session.get_inputs()]
        self._outputs = [o.name for o in session.get_outputs()]

    @property
    def input_shapes(self) -> dict[str, list[int | None]]:
        """Each input's shape as the graph declares it; None where a dimension is dynamic (batch, time)."""
        if self._session is None:
            return {}
        return {i.name: [d if isinstance(d, int) else None for d in i.shape] for i in self._session.get_inputs()}

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is None:
            raise EngineError("onnxruntime engine used before load()")
        try:
            results = self._session.run(self._outputs, dict(inputs))
        except Exception as e:  # noqa: BLE001 - see load()
            raise EngineError(f"onnxruntime inference failed: {e}") from e
        return dict(zip(self._outputs, results, strict=True))

    def describe(self) -> str:
        return f"onnxruntime cpu fp32 threads={self.intra_op_num_threads}"

    def close(self) -> None:
        self._session = None
