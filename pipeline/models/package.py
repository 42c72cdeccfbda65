"""The model package: a directory of ONNX graphs plus ``model.json``, the unit that training writes and the
runtime loads.

    <dir>/model.json    format, id, version, per-modality specs (graph file + sha256, input/output tensors,
                        preprocessing, score reduction, calibration), what it was trained on, versions
    <dir>/video.onnx    frames (B, context+1, H, W) uint8  -> patch_err (B, gh, gw) float32
                                                           [+ embedding (B, C, eh, ew) float32]
    <dir>/temporal.onnx embeddings (B, window, C, eh, ew) float32 -> cell_err (B, eh, ew) float32 (optional)
    <dir>/audio.onnx    mel (B, T, n_mels) float32 (normalised) -> frame_err (B, T-1) float32
    <dir>/*.pt          optional state dicts for the torch reference backend (parity checks only)

No torch here. ``ModelPackage.load`` validates everything it can before a camera starts: the JSON schema
(pydantic, unknown keys rejected), that each graph exists and matches its recorded sha256. Every problem is a
``ModelPackageError`` with a one-line message.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.calibration import Calibration
from pipeline.engines.cache import file_sha256
from pipeline.errors import ModelPackageError
from pipeline.features import LogMelConfig
from pipeline.strict import StrictModel

FORMAT: Final = "lepton-edge-model/1"
MANIFEST = "model.json"


def _to_calibration(value: Any) -> Calibration:
    if isinstance(value, Calibration):
        return value
    if not isinstance(value, dict):
        raise ValueError("calibration must be an object")
    return Calibration.from_dict(value)


CalibrationField = Annotated[
    Calibration,
    BeforeValidator(_to_calibration),
    PlainSerializer(lambda c: c.to_dict(), return_type=dict),
]


class _Strict(StrictModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)


def _plain_file_name(name: str) -> str:
    if not name or name != Path(name).name or name in {".", ".."}:
        raise ValueError(f"must be a file name inside the package, got {name!r}")
    return name


class TensorSpec(_Strict):
    name: str = Field(description="tensor name in the graph")
    dtype: Literal["uint8", "float32"]
    shape: list[int | None] = Field(description="dimensions; null where dynamic (batch, time)")


class _GraphSpec(_Strict):
    graph: str = Field(description="ONNX file name inside the package")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    reference_weights: str | None = Field(None, description="torch state dict for the reference backend")
    input: TensorSpec
    output: TensorSpec
    calibration: CalibrationField

    @field_validator("graph", "reference_weights")
    @classmethod
    def _file_name(cls, v: str | None) -> str | None:
        return None if v is None else _plain_file_name(v)


class VideoModelSpec(_GraphSpec):
    """Future-frame prediction on luma frames; raw score = the worst patches' prediction error."""

    width: int = Field(ge=16, le=4096, description="luma width the graph takes")
    height: int = Field(ge=16, le=4096, description="luma height the graph takes")
    context: int = Field(ge=1, le=32, description="past frames needed before the frame being scored")
    fps: float = Field(gt=0, le=60, description="frame rate the model was trained at; sample the camera to it")
    patch: int = Field(ge=1, description="side of an error patch, in input pixels")
    patch_stride: int = Field(ge=1, description="step between error patches, in input pixels")
    score: Literal["max_patch_mse"] = "max_patch_mse"
    pool_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="raw score = mean of this fraction of the patches, the worst ones (at least "
        "one); 0: the worst patch alone (packages before it)",
    )
    embedding: TensorSpec | None = Field(
        None, description="second output: the bottleneck embedding the temporal model follows"
    )

    @model_validator(mode="after")
    def _input_matches(self) -> VideoModelSpec:
        if self.input.shape[1:] != [self.context + 1, self.height, self.width]:
            raise ValueError(f"input shape {self.input.shape} does not match context/height/width")
        return self


class TemporalModelSpec(_GraphSpec):
    """Next-embedding prediction over the last ``window`` video embeddings; raw score = worst cell's error."""

    window: int = Field(ge=2, le=64, description="embeddings (video frames at the video model's fps) per window")
    score_steps: int = Field(ge=1, description="last prediction steps averaged into the score")
    score_every: int = Field(
        default=1,
        ge=1,
        le=16,
        description="score every n-th window of a camera (each window still holds "
        "consecutive embeddings): motion over seconds needs no score per frame; packages before it: every one",
    )
    score: Literal["max_cell_mse"] = "max_cell_mse"

    @model_validator(mode="after")
    def _consistent(self) -> TemporalModelSpec:
        if self.score_steps >= self.window:
            raise ValueError("score_steps must be smaller than window")
        if len(self.input.shape) != 5 or self.input.shape[1] != self.window:
            raise ValueError(f"input shape {self.input.shape} does not match window {self.window}")
        return self

    @property
    def embedding_shape(self) -> tuple[int, int, int]:
        c, h, w = self.input.shape[2:]
        assert c is not None and h is not None and w is not None
        return c, h, w


class LogMelSpec(_Strict):
    sample_rate: int = Field(ge=8000, le=48000)
    n_mels: int = Field(ge=8, le=256)
    win_length: int = Field(ge=16)
    hop_length: int = Field(ge=1)
    n_fft: int = Field(ge=16)
    fmin: float = Field(ge=0)
    fmax: float = Field(gt=0)
    log_floor: float = Field(gt=0)

    def config(self) -> LogMelConfig:
        return LogMelConfig(**self.model_dump())


class AudioModelSpec(_GraphSpec):
    """Next-frame prediction on log-mel frames; raw score = mean of the top-k frame errors of a window."""

    sample_rate: int = Field(ge=8000, le=48000)
    n_mels: int = Field(ge=8, le=256)
    window_s: float = Field(gt=0, le=30, description="length of the window scored as one unit")
    hop_s: float = Field(gt=0, le=30, description="step between windows")
    features: LogMelSpec
    norm_mean: list[float] = Field(description="per-band mean of training log-mels")
    norm_std: list[float] = Field(description="per-band std of training log-mels")
    skip_frames: int = Field(ge=0, description="first frame errors of a window ignored (recurrent warm-up)")
    top_k: int = Field(ge=1, description="frames averaged for the window score (topk_mean_frame_mse)")
    score: Literal["topk_mean_frame_mse", "span_mean_excess"] = Field(
        default="topk_mean_frame_mse",
        description="how a window's frame values become its raw score: the mean of the top_k (packages before the "
        "gauss head) or the mean over the scored span (the frames after skip_frames)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AudioModelSpec:
        if len(self.norm_mean) != self.n_mels or len(self.norm_std) != self.n_mels:
            raise ValueError("norm_mean and norm_std need one value per mel band")
        if any(s <= 0 for s in self.norm_std):
            raise ValueError("norm_std must be positive")
        if self.features.n_mels != self.n_mels or self.features.sample_rate != self.sample_rate:
            raise ValueError("features disagree with n_mels / sample_rate")
        n_frames = self.features.config().n_frames(self.n_samples)
        if n_frames - 1 <= self.skip_frames:
            raise ValueError(f"a window of {self.window_s} s has too few frames for skip_frames={self.skip_frames}")
        return self

    @property
    def n_samples(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def scored_samples(self) -> int:
        """How many of a window's newest samples its score describes (the frames after ``skip_frames``)."""
        return max(1, self.n_samples - (self.skip_frames + 1) * self.features.hop_length)


class SourceInfo(_Strict):
    name: str
    sha256: str
    duration_s: float = Field(ge=0)
    fps: float | None = Field(
        default=None,
        gt=0,
        description="frame rate of its video (frame times; --fps for image sequences); "
        "null: no video, or a package from before it was recorded",
    )


class TrainedOn(_Strict):
    sources: list[SourceInfo]
    duration_s: float = Field(ge=0, description="total duration of the normal inputs")
    holdout_fraction: float = Field(ge=0, lt=1, description="tail of each input kept for calibration")


class ModelPackage(_Strict):
    """A loaded, validated model package. Graph paths: ``graph_path("video")`` / ``graph_path("audio")``."""

    format: Literal["lepton-edge-model/1"] = FORMAT
    package_id: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64, description="content version: changes whenever retrained")
    created: str = Field(description="UTC ISO-8601 time of training")
    video: VideoModelSpec | None = None
    audio: AudioModelSpec | None = None
    temporal: TemporalModelSpec | None = None
    trained_on: TrainedOn
    versions: dict[str, str | int]

    _root: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _has_a_model(self) -> ModelPackage:
        if self.video is None and self.audio is None:
            raise ValueError("a package needs a video or an audio model")
        if self.temporal is not None:
            emb = self.video.embedding if self.video is not None else None
            if emb is None or emb.shape[1:] != self.temporal.input.shape[2:]:
                raise ValueError("the temporal model needs a video model whose embedding output matches its input")
        return self

    @property
    def trained_fps(self) -> float | None:
        """The frame rate of the footage the video model learned from (the median over its inputs; None if not
        recorded): the rate to assume for an image sequence given without one, so that the model sees motion
        over the same time steps it learned."""
        rates = sorted(s.fps for s in self.trained_on.sources if s.fps is not None)
        return rates[len(rates) // 2] if rates else None

    @property
    def root(self) -> Path:
        if self._root is None:
            raise ModelPackageError("model package has no directory yet (save it first)")
        return self._root

    def graph_path(self, modality: Literal["video", "audio", "temporal"]) -> Path:
        spec = self._spec(modality)
        return self.root / spec.graph

    def _spec(self, modality: str) -> VideoModelSpec | AudioModelSpec | TemporalModelSpec:
        spec = {"video": self.video, "audio": self.audio, "temporal": self.temporal}.get(modality)
        if spec is None:
            raise ModelPackageError(f"model package {self.package_id} has no {modality} model")
        return spec

    def provenance(self, engine: str | None = None) -> dict[str, Any]:
        """What an event says about the model that scored it."""
        return {
            "package_id": self.package_id,
            "version": self.version,
            "engine": engine,
            "calibration": {
                name: spec.calibration.describe()
                for name, spec in (("video", self.video), ("audio", self.audio), ("temporal", self.temporal))
                if spec is not None
            },
        }

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ModelPackage:
        root = Path(directory)
        if not root.is_dir():
            raise ModelPackageError(f"model package not found: {root}")
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise ModelPackageError(f"model package {root} has no {MANIFEST}")
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelPackageError(f"model package {root}: {MANIFEST} is not readable JSON ({e})") from e
        try:
            package = cls.model_validate(data)
        except ValidationError as e:
            raise ModelPackageError(f"model package {root}: {MANIFEST} is invalid: {_one_line(e)}") from e
        for name, spec in (("video", package.video), ("audio", package.audio), ("temporal", package.temporal)):
            if spec is not None:
                _check_file(root, name, "graph", spec.graph, spec.sha256)
        package._root = root.resolve()
        return package

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model.json`` into ``directory`` (atomically), copying graph files there if they live
        elsewhere."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        for spec in (self.video, self.audio, self.temporal):
            if spec is None:
                continue
            for name in (spec.graph, spec.reference_weights):
                if name is None:
                    continue
                target = root / name
                if self._root is not None and (self._root / name).resolve() != target.resolve():
                    shutil.copyfile(self._root / name, target)
                if not target.is_file():
                    raise ModelPackageError(f"cannot save package: {target} is missing")
            if file_sha256(root / spec.graph) != spec.sha256:
                raise ModelPackageError(f"cannot save package: {root / spec.graph} does not match its sha256")
        tmp = root / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, root / MANIFEST)
        self._root = root.resolve()
        return root


def _check_file(root: Path, modality: str, what: str, name: str, sha256: str) -> None:
    path = root / name
    if not path.is_file():
        raise ModelPackageError(f"model package {root}: {modality} {what} {name} is missing")
    if path.stat().st_size == 0 or file_sha256(path) != sha256:
        raise ModelPackageError(
            f"model package {root}: {modality} {what} {name} does not match the sha256 in {MANIFEST} "
            "(corrupt or replaced)"
        )


def _one_line(error: ValidationError) -> str:
    errors = error.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(root)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
