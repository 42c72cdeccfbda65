"""Model packages: a good one loads; each way of being broken is one clear ModelPackageError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.errors import ModelPackageError
from pipeline.models.package import ModelPackage


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="building a package needs the train extra (torch)")
    from fixtures.tiny_package import train_tiny_package

    return train_tiny_package(tmp_path_factory.mktemp("pkg") / "tiny")


@pytest.fixture
def copy(package_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(package_dir, tmp_path / "copy"))


def _one_line_error(path: Path) -> str:
    with pytest.raises(ModelPackageError) as info:
        ModelPackage.load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_good_package_loads(package_dir: Path) -> None:
    pkg = ModelPackage.load(package_dir)
    assert pkg.package_id == "tiny"
    assert pkg.video is not None and pkg.audio is not None
    from pipeline.models.train import CONTEXT, FPS, HEIGHT, WIDTH

    assert (pkg.video.width, pkg.video.height, pkg.video.context, pkg.video.fps) == (WIDTH, HEIGHT, CONTEXT, FPS)
    assert pkg.graph_path("video").is_file() and pkg.graph_path("audio").is_file()
    assert pkg.trained_on.holdout_fraction == pytest.approx(0.2)
    assert {"lepton_edge", "torch", "onnxruntime", "opset"} <= set(pkg.versions)
    prov = pkg.provenance("onnxruntime")
    assert prov["package_id"] == "tiny" and prov["version"] == pkg.version and prov["engine"] == "onnxruntime"
    assert set(prov["calibration"]) == {"video", "audio", "temporal"}


def test_save_round_trip(package_dir: Path, tmp_path: Path) -> None:
    pkg = ModelPackage.load(package_dir)
    pkg.save(tmp_path / "saved")
    again = ModelPackage.load(tmp_path / "saved")
    assert again.model_dump() == pkg.model_dump()


def test_missing_dir(tmp_path: Path) -> None:
    assert "model package not found" in _one_line_error(tmp_path / "nope")


def test_missing_manifest(copy: Path) -> None:
    (copy / "model.json").unlink()
    assert "has no model.json" in _one_line_error(copy)


def test_manifest_not_json(copy: Path) -> None:
    (copy / "model.json").write_text("{not json")
    assert "not readable JSON" in _one_line_error(copy)


def test_unknown_key_rejected(copy: Path) -> None:
    data = json.loads((copy / "model.json").read_text())
    data["video"]["colour"] = "blue"
    (copy / "model.json").write_text(json.dumps(data))
    assert "video.colour" in _one_line_error(copy)


def test_missing_graph(copy: Path) -> None:
    (copy / "audio.onnx").unlink()
    assert "audio graph audio.onnx is missing" in _one_line_error(copy)


def test_hash_mismatch(copy: Path) -> None:
    with open(copy / "video.onnx", "ab") as f:
        f.write(b"\0")
    assert "does not match the sha256" in _one_line_error(copy)


def test_empty_graph_is_corrupt(copy: Path) -> None:
    (copy / "video.onnx").write_bytes(b"")
    assert "does not match the sha256" in _one_line_error(copy)


def test_graph_outside_package_rejected(copy: Path) -> None:
    data = json.loads((copy / "model.json").read_text())
    data["video"]["graph"] = "../video.onnx"
    (copy / "model.json").write_text(json.dumps(data))
    assert "video.graph" in _one_line_error(copy)


def test_shipped_default_package_loads_and_scores() -> None:
    import numpy as np

    from pipeline.engines import create_engine
    from pipeline.scorer import AudioScorer, VideoScorer

    root = Path(__file__).resolve().parent.parent / "pipeline" / "models" / "default"
    if not root.is_dir():
        pytest.skip("no default package (make models)")
    pkg = ModelPackage.load(root)
    video_engine, audio_engine = create_engine({"type": "onnxruntime"}), create_engine({"type": "onnxruntime"})
    video_engine.load(pkg.graph_path("video"))
    audio_engine.load(pkg.graph_path("audio"))
    video, audio = VideoScorer(pkg, video_engine), AudioScorer(pkg, audio_engine)
    raw, boxes = video.score(np.full((2, video.context + 1, *video.frame_shape), 100, np.uint8))
    assert raw.shape == (2,) and len(boxes) == 2
    assert float(video.calibrate(raw).max()) < 3.0  # a still scene is not an anomaly
    assert audio.score(np.zeros((1, audio.n_samples), np.float32)).shape == (1,)
