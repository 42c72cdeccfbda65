"""Engines: ONNX Runtime and the torch reference agree on the exported graphs, at batch 1 and 4; config
selects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.engines import OrtEngineConfig, create_engine
from pipeline.errors import EngineError
from pipeline.models.package import ModelPackage
from pipeline.scorer import AudioScorer, VideoScorer

torch = pytest.importorskip(
    "torch", reason="the parity checks need the torch reference backend (train extra)"
)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    from fixtures.tiny_package import train_tiny_package

    return ModelPackage.load(train_tiny_package(tmp_path_factory.mktemp("pkg") / "tiny"))


def _inputs(name: str, batch: int, rng: np.random.Generator) -> np.ndarray:
    if name == "video":
        return rng.integers(0, 256, (batch, 5, 96, 160), dtype=np.uint8)
    return rng.normal(0, 1, (batch, 98, 64)).astype(np.float32)


@pytest.mark.parametrize("modality", ["video", "audio"])
@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_matches_torch(package: ModelPackage, modality: str, batch: int) -> None:
    rng = np.random.default_rng(batch)
    ort_engine = create_engine({"type": "onnxruntime", "intra_op_num_threads": 1})
    torch_engine = create_engine({"type": "torch"})
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
    windows = rng.normal(0, 0.05, (2, 16000)).astype(np.float32)
    results = []
    for cfg in ({"type": "onnxruntime"}, {"type": "torch"}):
        v, a = create_engine(cfg), create_engine(cfg)
        v.load(package.graph_path("video"))
        a.load(package.graph_path("audio"))
        raw_v, boxes = VideoScorer(package, v).score(stacks)
        raw_a = AudioScorer(package, a).score(windows)
        results.append((raw_v, boxes, raw_a))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
    np.testing.assert_allclose(results[0][2], results[1][2], rtol=1e-4)
    assert results[0][1] == results[1][1]
    for x0, y0, x1, y1 in results[0][1]:
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_config_is_validated_and_defaults_to_one_thread() -> None:
    engine = create_engine({"type": "onnxruntime"})
    assert engine.config == OrtEngineConfig(intra_op_num_threads=1)  # type: ignore[attr-defined]
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
