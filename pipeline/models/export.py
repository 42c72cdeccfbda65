"""ONNX export of the torch models (opset 17, dynamic batch axis), checked with ``onnx.checker``. Needs torch
+ onnx.

Each graph records in its metadata which architecture it is and where its torch state dict lies, so the torch
reference backend (``pipeline.engines.torch_ref``) can rebuild the exact module for parity checks.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import onnx
import torch
from torch import nn

from pipeline.models.audio import AudioPredictor
from pipeline.models.temporal import TemporalPredictor
from pipeline.models.video import VideoPredictor

if TYPE_CHECKING:
    import numpy as np

OPSET = 17


@runtime_checkable
class _HasArchConfig(Protocol):
    """A module that describes its constructor arguments (what ``build_module`` takes back)."""

    def arch_config(self) -> Mapping[str, Any]: ...


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "video_predictor": VideoPredictor,
    "audio_predictor": AudioPredictor,
    "temporal_predictor": TemporalPredictor,
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
    output_name: str | Sequence[str],
    dynamic_axes: Sequence[int] = (0,),
    output_dynamic_axes: Sequence[int] = (0,),
) -> Path:
    """Export ``module`` (one input; one output, or several named in ``output_name``, all with
    ``output_dynamic_axes``) to ``path``; its state dict goes to ``path.with_suffix('.pt')``."""
    outputs = [output_name] if isinstance(output_name, str) else list(output_name)
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
            output_names=outputs,
            dynamic_axes={
                input_name: {a: axes_names.get(a, f"d{a}") for a in dynamic_axes},
                **{name: {a: axes_names.get(a, f"d{a}") for a in output_dynamic_axes} for name in outputs},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    arch_config = module.arch_config() if isinstance(module, _HasArchConfig) else {}
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


def reexport_package(directory: Path, out: Path | None = None) -> dict[str, Any]:
    """Re-export every graph of the package at ``directory`` from its ``.pt`` weights (``edge export``): after an
    ONNX / opset / exporter upgrade, or to repair a graph. Calibrations stay (same weights, same scores: checked by
    running old and new graph on the same random input). Written to ``out`` (default: in place) atomically."""
    import numpy as np

    from pipeline.models.package import ModelPackage

    src = ModelPackage.load(directory)
    out = Path(out) if out is not None else Path(directory)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src.root, tmp)
    report: dict[str, Any] = {"package": str(out), "opset": OPSET, "graphs": {}}
    updates: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    try:
        for modality in ("video", "audio", "temporal"):
            spec = getattr(src, modality)
            if spec is None:
                continue
            updates[modality], report["graphs"][modality] = _reexport_graph(modality, spec, src.root, tmp, rng)
        data = src.model_dump()
        data.update({k: v.model_dump() for k, v in updates.items()})
        data["versions"] = {**src.versions, "torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET}
        package = ModelPackage.model_validate(data)
        package.save(tmp)
        ModelPackage.load(tmp)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _reexport_graph(
    modality: str, spec: Any, root: Path, tmp: Path, rng: np.random.Generator
) -> tuple[Any, dict[str, Any]]:
    """One graph of the package at ``root`` re-exported into ``tmp`` from its ``.pt`` weights and checked against
    the old one on a random input: its spec with the new sha256, and what the report says of it."""
    import numpy as np

    from pipeline.engines.cache import file_sha256
    from pipeline.engines.ort import OrtEngine

    if spec.reference_weights is None:
        raise ValueError(f"the {modality} model has no .pt weights to export from")
    graph = onnx.load(str(root / spec.graph), load_external_data=False)
    meta = {p.key: p.value for p in graph.metadata_props}
    module = build_module(meta["lepton.arch"], json.loads(meta["lepton.arch_config"]))
    module.load_state_dict(torch.load(root / spec.reference_weights, map_location="cpu", weights_only=True))
    if modality == "video":
        example = torch.zeros(2, *spec.input.shape[1:], dtype=torch.uint8)
        sample = rng.integers(0, 256, (3, *spec.input.shape[1:]), dtype=np.uint8)
        axes: tuple[int, ...] = (0,)
    elif modality == "temporal":
        example = torch.zeros(2, *spec.input.shape[1:])
        sample = rng.normal(0, 1, (3, *spec.input.shape[1:])).astype(np.float32)
        axes = (0,)
    else:
        n_frames = spec.features.config().n_frames(spec.n_samples)
        example = torch.zeros(2, n_frames, spec.n_mels)
        sample = rng.normal(0, 1, (3, n_frames, spec.n_mels)).astype(np.float32)
        axes = (0, 1)
    target = tmp / spec.graph
    outputs = [o.name for o in graph.graph.output]
    export_onnx(
        module,
        example,
        target,
        arch=meta["lepton.arch"],
        input_name=spec.input.name,
        output_name=outputs,
        dynamic_axes=axes,
        output_dynamic_axes=axes,
    )
    diffs = []
    for path in (root / spec.graph, target):
        e = OrtEngine()
        e.load(path)
        diffs.append(e.infer({spec.input.name: sample})[spec.output.name])
        e.close()
    max_diff = float(np.abs(diffs[0] - diffs[1]).max())
    if max_diff > 1e-4 * max(1.0, float(np.abs(diffs[0]).max())):
        raise ValueError(f"re-exported {modality} graph disagrees with the old one (max diff {max_diff:.3g})")
    updated = spec.model_copy(update={"sha256": file_sha256(target)})
    return updated, {"graph": spec.graph, "sha256": updated.sha256, "max_abs_diff_vs_previous": max_diff}
