"""torch reference backend: runs the torch module a graph was exported from, for parity checks against ONNX
Runtime.

The exporter (``pipeline.models.export``) writes into each ONNX graph's metadata which architecture it is
(``lepton.arch`` + ``lepton.arch_config``) and the state-dict file beside it (``lepton.reference_weights``);
this backend rebuilds that module and loads those weights. It needs the ``train`` extra (torch, onnx); the
runtime never selects it unless configured to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from pipeline.engines.base import Engine, TorchEngineConfig
from pipeline.errors import EngineError


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, config: TorchEngineConfig | None = None) -> None:
        self.config = config or TorchEngineConfig()
        self._module: torch.nn.Module | None = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []

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
            raise EngineError(
                f"torch engine: {path} has no reference metadata ({', '.join(sorted(missing))})"
            )
        weights = path.parent / meta["lepton.reference_weights"]
        if not weights.is_file():
            raise EngineError(f"torch engine: reference weights {weights} are missing")
        config: dict[str, Any] = json.loads(meta["lepton.arch_config"])
        module = build_module(meta["lepton.arch"], config)
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        module.eval()
        torch.set_num_threads(self.config.num_threads)
        self._module = module
        self._inputs = [i.name for i in graph.graph.input]
        self._outputs = [o.name for o in graph.graph.output]

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._module is None:
            raise EngineError("torch engine used before load()")
        try:
            args = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self._inputs]
        except KeyError as e:
            raise EngineError(f"torch engine: missing input {e}") from e
        with torch.inference_mode():
            out = self._module(*args)
        outs = out if isinstance(out, tuple) else (out,)
        return {name: t.numpy() for name, t in zip(self._outputs, outs, strict=True)}

    def close(self) -> None:
        self._module = None
