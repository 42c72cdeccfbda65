"""Engines: ONNX Runtime and the torch reference agree on the exported graphs, at batch 1 and 4; config
selects."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from pipeline.engines import OrtEngineConfig, create_engine
from pipeline.errors import EngineError
from pipeline.models.package import ModelPackage
from pipeline.scorer import AudioScorer, VideoScorer

torch = pytest.importorskip("torch", reason="the parity checks need the torch reference backend (train extra)")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    from fixtures.tiny_package import train_tiny_package

    pkg = ModelPackage.load(train_tiny_package(tmp_path_factory.mktemp("pkg") / "tiny"))
    _TINY[:] = [pkg]
    return pkg


def _inputs(name: str, batch: int, rng: np.random.Generator, package: ModelPackage | None = None) -> np.ndarray:
    """Random inputs of the tiny package's graphs (``package`` defaults to the module's tiny one)."""
    spec = getattr(package or _TINY[0], name)
    shape = [batch if d is None else d for d in spec.input.shape]
    if name == "video":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if name == "audio":
        shape[1] = spec.features.config().n_frames(spec.n_samples)
    return rng.normal(0, 1, shape).astype(np.float32)


_TINY: list[ModelPackage] = []


@pytest.mark.parametrize("modality", ["video", "audio", "temporal"])
@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_matches_torch(package: ModelPackage, modality: str, batch: int) -> None:
    rng = np.random.default_rng(batch)
    ort_engine = create_engine({"type": "onnxruntime", "intra_op_num_threads": 1})
    torch_engine = create_engine({"type": "torch", "device": "cpu"})
    for engine in (ort_engine, torch_engine):
        engine.load(package.graph_path(modality))  # type: ignore[arg-type]
    assert ort_engine.input_names == torch_engine.input_names
    x = _inputs(modality, batch, rng)
    (name,) = ort_engine.input_names
    a = ort_engine.infer({name: x})
    b = torch_engine.infer({name: x})
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape and a[key].shape[0] == batch
        scale = max(1.0, float(np.abs(b[key]).max()))
        assert float(np.abs(a[key] - b[key]).max()) <= 1e-5 * scale
    ort_engine.close()
    torch_engine.close()


def test_scorers_on_both_engines_agree(package: ModelPackage) -> None:
    rng = np.random.default_rng(0)
    stacks = _inputs("video", 3, rng)
    assert package.audio is not None
    windows = rng.normal(0, 0.05, (2, package.audio.n_samples)).astype(np.float32)
    results = []
    for cfg in ({"type": "onnxruntime"}, {"type": "torch", "device": "cpu"}):
        v, a = create_engine(cfg), create_engine(cfg)
        v.load(package.graph_path("video"))
        a.load(package.graph_path("audio"))
        raw_v, boxes = VideoScorer(package, v).score(stacks)
        raw_a = AudioScorer(package, a).score(windows)
        results.append((raw_v, boxes, raw_a))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
    np.testing.assert_allclose(results[0][2], results[1][2], rtol=1e-4)
    assert results[0][1] == results[1][1]
    for box in results[0][1]:
        assert box is not None
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_config_is_validated_and_defaults_to_one_thread() -> None:
    engine = create_engine({"type": "onnxruntime"})
    assert engine.config == OrtEngineConfig(intra_op_num_threads=1)
    with pytest.raises(ValueError):
        create_engine({"type": "onnxruntime", "threads": 2})
    with pytest.raises(ValueError):
        create_engine({"type": "tensorflow"})


def test_bad_graph_and_wrong_graph_are_engine_errors(package: ModelPackage, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(EngineError, match="cannot load"):
        create_engine({"type": "onnxruntime"}).load(bad)
    engine = create_engine({"type": "onnxruntime"})
    engine.load(package.graph_path("audio"))
    with pytest.raises(EngineError, match="right graph"):
        VideoScorer(package, engine)
    with pytest.raises(EngineError, match="before load"):
        create_engine({"type": "onnxruntime"}).infer({})


def test_torch_engine_config() -> None:
    engine = create_engine({"type": "torch", "device": "cpu", "num_threads": 2})
    assert engine.config.graph_batch_sizes == [1, 2, 4, 8]
    with pytest.raises(ValueError):
        create_engine({"type": "torch", "device": "gpu"})
    with pytest.raises(ValueError):
        create_engine({"type": "torch", "graph_batch_sizes": [0]})
    assert create_engine({"type": "torch", "graph_batch_sizes": [8, 1, 4, 4]}).graph_batch_sizes == [1, 4, 8]


def test_torch_fp16_or_cuda_without_a_gpu_is_a_clear_error(package: ModelPackage) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(EngineError, match="fp16 needs a CUDA device"):
        create_engine({"type": "torch", "precision": "fp16"}).load(package.graph_path("video"))
    with pytest.raises(EngineError, match="CUDA is not available"):
        create_engine({"type": "torch", "device": "cuda"}).load(package.graph_path("video"))
    auto = create_engine({"type": "torch"})
    auto.load(package.graph_path("video"))
    assert auto.describe() == "torch cpu fp32 threads=1"


def test_fp32_on_cuda_turns_tf32_off_and_restores_the_process_setting() -> None:
    """cuDNN's default on Ampere and later is TF32 for float32 convolutions and RNNs; the fp32 engine must compute in
    IEEE float32 and leave the process's own choice as it was (the flags exist without a GPU)."""
    from pipeline.engines.torch_ref import _precision

    b = torch.backends
    new_api = hasattr(b.cudnn, "conv") and hasattr(b.cudnn.conv, "fp32_precision")  # torch >= 2.9

    def tf32_flags() -> list[object]:
        if new_api:
            return [b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision, b.cuda.matmul.fp32_precision]
        return [b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32]

    before = tf32_flags()
    with _precision(torch.device("cuda"), fp16=False):
        assert tf32_flags() == (["ieee"] * 3 if new_api else [False, False])
    assert tf32_flags() == before
    with _precision(torch.device("cpu"), fp16=False):
        assert tf32_flags() == before  # nothing to change on CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("modality", ["video", "audio", "temporal"])
def test_cuda_graphs_fp16_match_eager_and_onnxruntime(
    package: ModelPackage, modality: Literal["video", "audio", "temporal"]
) -> None:
    rng = np.random.default_rng(7)
    ref = create_engine({"type": "onnxruntime"})
    ref.load(package.graph_path(modality))
    (name,) = ref.input_names
    graphs = create_engine({"type": "torch", "device": "cuda", "precision": "fp16", "graph_batch_sizes": [1, 4]})
    eager = create_engine({"type": "torch", "device": "cuda", "precision": "fp32", "cuda_graphs": False})
    for e in (graphs, eager):
        e.load(package.graph_path(modality))
    for batch in (1, 3, 4, 9):  # 3 pads to 4; 9 runs as 4 + 4 + 1
        x = _inputs(modality, batch, rng)
        want = ref.infer({name: x})
        got16, got32 = graphs.infer({name: x}), eager.infer({name: x})
        for key in want:
            scale = max(1e-6, float(np.abs(want[key]).max()))  # differences relative to the output's range
            assert got16[key].shape == want[key].shape
            assert float(np.abs(got32[key] - want[key]).max()) <= 1e-4 * scale  # IEEE fp32: no TF32
            assert float(np.abs(got16[key] - want[key]).max()) <= 5e-2 * scale


@pytest.mark.parametrize(("decoder", "shake_weight"), [("unet", 0.0), ("light", 0.0), ("light", 2.0)])
def test_both_video_decoders_export_and_match(decoder: str, shake_weight: float, tmp_path: Path) -> None:
    """Packages trained before the light decoder (``unet``) or before ``shake_weight`` still load, rebuild and agree
    across engines; so does the graph with the shake term (its move estimate is in the ONNX graph too)."""
    from pipeline.models.export import export_onnx
    from pipeline.models.video import VideoPredictor

    torch.manual_seed(0)
    model = VideoPredictor(
        context=2,
        channels=4,
        patch=4,
        stride=2,
        height=32,
        width=48,
        embedding=1,
        copy_weight=0.15,
        decoder=decoder,
        shake_weight=shake_weight,
    )
    with torch.no_grad():
        model.out.weight.normal_(0, 0.1)  # zero at init ("copy the newest frame"): make the decoder count
    model.eval()
    graph = export_onnx(
        model,
        torch.zeros(2, 3, 32, 48, dtype=torch.uint8),
        tmp_path / "video.onnx",
        arch="video_predictor",
        input_name="frames",
        output_name=["patch_err", "embedding"],
    )
    x = np.random.default_rng(1).integers(0, 256, (3, 3, 32, 48), dtype=np.uint8)
    with torch.no_grad():
        want = model(torch.from_numpy(x))[0].numpy()
    outs = []
    for cfg in ({"type": "onnxruntime", "intra_op_num_threads": 1}, {"type": "torch", "device": "cpu"}):
        engine = create_engine(cfg)
        engine.load(graph)
        outs.append(engine.infer({"frames": x})["patch_err"])
        engine.close()
    for got in outs:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="decoder must be one of"):
        VideoPredictor(height=32, width=48, decoder="wide")
