"""Writing a trained package: each model exported to ONNX (``pipeline.models.export``) and calibrated through the
runtime into its spec (``_export_video`` / ``_export_temporal`` / ``_export_audio``), the versions it was made
with, and the folder put in place atomically (``_replace_dir``) once ``check_writable`` said it can be."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnxruntime
import torch

import pipeline
from pipeline.engines.cache import file_sha256
from pipeline.engines.ort import OrtEngine
from pipeline.features import LogMelConfig
from pipeline.models.audio import AudioPredictor
from pipeline.models.calibrate import (
    _calibrate,
    _placeholder_calibration,
    _scratch_package,
    calibrate_audio,
    margin_from,
)
from pipeline.models.export import OPSET, export_onnx
from pipeline.models.footage import NormalInput
from pipeline.models.package import (
    AudioModelSpec,
    LogMelSpec,
    ModelPackage,
    TemporalModelSpec,
    TensorSpec,
    TrainedOn,
    VideoModelSpec,
)
from pipeline.models.recipe import (
    CONTEXT,
    FPS,
    HEIGHT,
    HOLDOUT,
    HOP_S,
    PATCH,
    PATCH_STRIDE,
    POOL_FRACTION,
    SAMPLE_RATE,
    SCORE_SKIP_FRAMES,
    TEMPORAL_SCORE_EVERY,
    TOP_K,
    WIDTH,
    WINDOW_S,
)
from pipeline.models.temporal import TemporalPredictor
from pipeline.models.train_temporal import heldout_temporal, seen_temporal
from pipeline.models.train_video import heldout_video, seen_video
from pipeline.models.video import VideoPredictor, grid_shape
from pipeline.scorer import TemporalScorer, VideoScorer

# What writing a package needs at least: its graphs and weights (1.5 MB for the default) twice (the temporary
# directory, then the old one until it is replaced), with room to spare.
MIN_FREE_BYTES = 16 * 2**20


def check_writable(out: Path) -> None:
    """Raise ``OSError`` with a clear message unless a package can be written at ``out``: its folder made and
    written to, with ``MIN_FREE_BYTES`` free."""
    if out.parent.exists() and not out.parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"cannot write the model package in {out.parent}: a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent) as probe:
            probe.write(b"0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write the model package in {out.parent}: {exc.strerror or exc}") from exc
    free = shutil.disk_usage(out.parent).free
    if free < MIN_FREE_BYTES:
        raise OSError(
            errno.ENOSPC,
            f"cannot write the model package in {out.parent}: {free / 2**20:.1f} MB free, "
            f"{MIN_FREE_BYTES / 2**20:.0f} MB needed",
        )


def _versions() -> dict[str, str | int]:
    import onnx

    return {
        "lepton_edge": pipeline.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "opset": OPSET,
    }


def _export_video(
    model: VideoPredictor, tmp: Path, inputs: Sequence[NormalInput], report: dict, timings: dict
) -> VideoModelSpec:
    t = time.monotonic()
    graph = export_onnx(
        model,
        torch.zeros(2, CONTEXT + 1, HEIGHT, WIDTH, dtype=torch.uint8),
        tmp / "video.onnx",
        arch="video_predictor",
        input_name="frames",
        output_name=["patch_err", "embedding"] if model.embedding else "patch_err",
    )
    gh, gw = grid_shape(HEIGHT, WIDTH, PATCH, PATCH_STRIDE)
    emb_shape = list(model.embed(torch.zeros(1, CONTEXT + 1, HEIGHT, WIDTH)).shape[1:])
    spec = VideoModelSpec(
        graph=graph.name,
        sha256=file_sha256(graph),
        reference_weights=graph.with_suffix(".pt").name,
        input=TensorSpec(name="frames", dtype="uint8", shape=[None, CONTEXT + 1, HEIGHT, WIDTH]),
        output=TensorSpec(name="patch_err", dtype="float32", shape=[None, gh, gw]),
        calibration=_placeholder_calibration(),
        width=WIDTH,
        height=HEIGHT,
        context=CONTEXT,
        fps=FPS,
        patch=PATCH,
        patch_stride=PATCH_STRIDE,
        pool_fraction=POOL_FRACTION,
        embedding=TensorSpec(name="embedding", dtype="float32", shape=[None, *emb_shape]) if model.embedding else None,
    )
    timings["export_video"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    engine = OrtEngine()
    engine.load(graph)
    scorer = VideoScorer(_scratch_package(spec, None), engine)
    cal, report["calibration"] = _calibrate(
        lambda b: scorer.score(b)[0],
        heldout_video(inputs),
        margin_from(inputs, lambda n: seen_video(inputs, n), "video"),
    )
    engine.close()
    timings["calibrate_video"] = round(time.monotonic() - t, 1)
    return spec.model_copy(update={"calibration": cal})


def _export_temporal(
    model: TemporalPredictor,
    tmp: Path,
    inputs: Sequence[NormalInput],
    embeddings: Sequence[np.ndarray],
    video: VideoModelSpec,
    report: dict,
    timings: dict,
) -> TemporalModelSpec:
    t = time.monotonic()
    c, eh, ew = model.channels, model.grid_h, model.grid_w
    graph = export_onnx(
        model,
        torch.zeros(2, model.window, c, eh, ew),
        tmp / "temporal.onnx",
        arch="temporal_predictor",
        input_name="embeddings",
        output_name="cell_err",
    )
    spec = TemporalModelSpec(
        graph=graph.name,
        sha256=file_sha256(graph),
        reference_weights=graph.with_suffix(".pt").name,
        input=TensorSpec(name="embeddings", dtype="float32", shape=[None, model.window, c, eh, ew]),
        output=TensorSpec(name="cell_err", dtype="float32", shape=[None, eh, ew]),
        calibration=_placeholder_calibration(),
        window=model.window,
        score_steps=model.score_steps,
        score_every=TEMPORAL_SCORE_EVERY,
    )
    timings["export_temporal"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    engine = OrtEngine()
    engine.load(graph)
    scorer = TemporalScorer(_scratch_package(video, None, spec), engine)
    cal, report["calibration"] = _calibrate(
        lambda b: scorer.score(b)[0],
        heldout_temporal(inputs, embeddings),
        margin_from(inputs, lambda n: seen_temporal(inputs, embeddings, n), "video"),
    )
    engine.close()
    timings["calibrate_temporal"] = round(time.monotonic() - t, 1)
    return spec.model_copy(update={"calibration": cal})


def _export_audio(
    model: AudioPredictor,
    mean: np.ndarray,
    std: np.ndarray,
    tmp: Path,
    inputs: Sequence[NormalInput],
    report: dict,
    timings: dict,
) -> AudioModelSpec:
    t = time.monotonic()
    cfg = LogMelConfig(sample_rate=SAMPLE_RATE)
    n_frames = cfg.n_frames(round(WINDOW_S * SAMPLE_RATE))
    graph = export_onnx(
        model,
        torch.zeros(2, n_frames, cfg.n_mels),
        tmp / "audio.onnx",
        arch="audio_predictor",
        input_name="mel",
        output_name="frame_err",
        dynamic_axes=(0, 1),
        output_dynamic_axes=(0, 1),
    )
    spec = AudioModelSpec(
        graph=graph.name,
        sha256=file_sha256(graph),
        reference_weights=graph.with_suffix(".pt").name,
        input=TensorSpec(name="mel", dtype="float32", shape=[None, None, cfg.n_mels]),
        output=TensorSpec(name="frame_err", dtype="float32", shape=[None, None]),
        calibration=_placeholder_calibration(),
        sample_rate=SAMPLE_RATE,
        n_mels=cfg.n_mels,
        window_s=WINDOW_S,
        hop_s=HOP_S,
        features=LogMelSpec(**cfg.to_dict()),
        norm_mean=[float(v) for v in mean],
        norm_std=[float(v) for v in std],
        skip_frames=SCORE_SKIP_FRAMES,
        top_k=TOP_K,
        score="span_mean_excess" if model.head_kind == "gauss" else "topk_mean_frame_mse",
    )
    timings["export_audio"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    spec = calibrate_audio(spec, graph, inputs, report)
    timings["calibrate_audio"] = round(time.monotonic() - t, 1)
    return spec


def _replace_dir(tmp: Path, out: Path) -> None:
    """Put ``tmp`` at ``out``; an existing package there is replaced, never left half-written."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def write_package(
    tmp: Path,
    out: Path,
    inputs: Sequence[NormalInput],
    video: VideoModelSpec | None,
    audio: AudioModelSpec | None,
    temporal: TemporalModelSpec | None,
    *,
    package_id: str | None,
) -> ModelPackage:
    """The package of these specs (their graphs already in ``tmp``), trained on ``inputs``: written in ``tmp``,
    checked to load, and put at ``out`` (replacing a package there)."""
    sources = list({id(x.source): x.source for x in inputs}.values())  # pieces share their input's
    hashes = "".join(s.sha256 + s.calibration.describe() for s in (video, audio, temporal) if s is not None)
    package = ModelPackage(
        package_id=package_id or out.name,
        version=hashlib.sha256(hashes.encode()).hexdigest()[:12],
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        video=video,
        audio=audio,
        temporal=temporal,
        trained_on=TrainedOn(
            sources=sources,
            duration_s=round(sum(x.duration_s for x in sources), 3),
            holdout_fraction=HOLDOUT,
        ),
        versions=_versions(),
    )
    package.save(tmp)
    ModelPackage.load(tmp)  # what we ship must load
    _replace_dir(tmp, out)
    return package
