"""ONNX export of the torch models (opset 17, dynamic batch axis), checked with ``onnx.checker``. Needs torch
+ onnx.

Each graph records in its metadata which architecture it is and where its torch state dict lies, so the torch
reference backend (``pipeline.engines.torch_ref``) can rebuild the exact module for parity checks.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from pipeline.models.audio import AudioPredictor
from pipeline.models.video import VideoPredictor

OPSET = 17

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "video_predictor": VideoPredictor,
    "audio_predictor": AudioPredictor,
}


def build_module(arch: str, config: Mapping[str, Any]) -> nn.Module:
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}") from None
    return cls(**config)


def export_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    arch: str,
    input_name: str,
    output_name: str,
    dynamic_axes: Sequence[int] = (0,),
    output_dynamic_axes: Sequence[int] = (0,),
) -> Path:
    """Export ``module`` (one input, one output) to ``path``; its state dict goes to
    ``path.with_suffix('.pt')``."""
    module = module.eval()
    weights = path.with_suffix(".pt")
    axes_names = {0: "batch", 1: "time"}
    with warnings.catch_warnings():
        # torch >= 2.9 prefers the dynamo exporter, which emits opset 18; the TorchScript exporter gives opset
        # 17 exactly and matched onnxruntime to ~2e-7 here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={
                input_name: {a: axes_names.get(a, f"d{a}") for a in dynamic_axes},
                output_name: {a: axes_names.get(a, f"d{a}") for a in output_dynamic_axes},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    arch_config = module.arch_config() if hasattr(module, "arch_config") else {}
    for key, value in (
        ("lepton.arch", arch),
        ("lepton.arch_config", json.dumps(arch_config, sort_keys=True)),
        ("lepton.reference_weights", weights.name),
    ):
        prop = graph.metadata_props.add()
        prop.key, prop.value = key, value
    graph.producer_name = "lepton-edge"
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))
    torch.save(module.state_dict(), weights)
    return path
