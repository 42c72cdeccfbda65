"""Scorers: turn batches of luma stacks / audio windows into raw scores through an engine, and calibrate them.

The runner keeps a ring buffer of the last ``VideoScorer.context`` luma frames per camera, stacks them with
the new frame, micro-batches across cameras and calls ``score``; calibration is
``package.video.calibration.calibrate(raw)`` (also offered here as ``calibrate``). numpy only, no torch: the
same code path scores at run time and calibrates at training time, so the calibration describes exactly what
the runtime computes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from pipeline.engines.interface import Engine
from pipeline.errors import EngineError, ModelPackageError
from pipeline.features import OverlapLogMel
from pipeline.models.package import AudioModelSpec, ModelPackage, TemporalModelSpec, VideoModelSpec
from pipeline.sources.spec import Region

Box = tuple[float, float, float, float]


@lru_cache(maxsize=256)  # a few cameras' masks, each on a few grids: computed once
def masked_cells(
    regions: tuple[Region, ...], patch: int, stride: int, height: int, width: int, grid: tuple[int, int]
) -> np.ndarray:
    """(gh, gw) bool, read-only: the cells of a ``grid`` of ``patch`` squares every ``stride`` pixels of a ``height`` x
    ``width`` frame whose centre lies inside one of ``regions``."""
    gh, gw = grid
    cx = (np.arange(gw) * stride + patch / 2) / width
    cy = (np.arange(gh) * stride + patch / 2) / height
    out = np.zeros(grid, dtype=bool)
    for x0, y0, x1, y1 in regions:
        out |= ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
    out.flags.writeable = False
    return out


Masks = Sequence[tuple[Region, ...]]  # per batch item: its camera's regions (``SourceSpec.mask``), often empty


def _ignored(
    masks: Masks | None, patch: int, stride: int, height: int, width: int, grid: tuple[int, int]
) -> np.ndarray | None:
    """(B, gh, gw) bool: each item's cells in its camera's regions; None when no item has any."""
    if not masks or not any(masks):
        return None
    return np.stack([masked_cells(tuple(m), patch, stride, height, width, grid) for m in masks])


Timer = Callable[[float], None]  # takes the seconds of one engine call (``edge.metrics``: a histogram per graph)


def _infer(engine: Engine, timer: Timer | None, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if timer is None:
        return engine.infer(feeds)
    started = time.perf_counter()
    out = engine.infer(feeds)
    timer(time.perf_counter() - started)
    return out


def _check_engine(engine: Engine, spec: VideoModelSpec | AudioModelSpec | TemporalModelSpec) -> None:
    if spec.input.name not in engine.input_names or spec.output.name not in engine.output_names:
        raise EngineError(
            f"engine graph has inputs {engine.input_names} / outputs {engine.output_names}, "
            f"the package expects {spec.input.name} / {spec.output.name} (was the right graph loaded?)"
        )


class VideoScorer:
    """Worst-patch future-frame prediction error for stacks of ``context + 1`` luma frames (oldest first)."""

    def __init__(self, package: ModelPackage, engine: Engine) -> None:
        if package.video is None:
            raise ModelPackageError(f"model package {package.package_id} has no video model")
        self.spec: VideoModelSpec = package.video
        self.engine = engine
        # the per-patch errors (B, gh, gw) of the last ``run``, its items' masked cells 0: the console's heat-map
        self.last_maps: np.ndarray | None = None
        self.timer: Timer | None = None
        _check_engine(engine, self.spec)

    @property
    def context(self) -> int:
        """Past frames needed before a frame can be scored."""
        return self.spec.context

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of the luma frames the model takes."""
        return self.spec.height, self.spec.width

    @property
    def has_embedding(self) -> bool:
        return self.spec.embedding is not None

    def score(self, stacks: np.ndarray) -> tuple[np.ndarray, list[Box | None]]:
        """``stacks`` uint8 (B, context+1, H, W) → raw scores (B,) float32 and the worst patch of each as a
        box (x0, y0, x1, y1) in fractions of the frame."""
        raw, boxes, _ = self.run(stacks)
        return raw, boxes

    def run(
        self, stacks: np.ndarray, masks: Masks | None = None
    ) -> tuple[np.ndarray, list[Box | None], np.ndarray | None]:
        """``score`` plus the embeddings (B, C, eh, ew) float32 when the graph has them (else None). ``masks``: each
        stack's camera's regions, whose patches count for nothing."""
        s = self.spec
        expected = (s.context + 1, s.height, s.width)
        if stacks.ndim != 4 or stacks.shape[1:] != expected:
            raise ValueError(f"video stacks must be (B, {', '.join(map(str, expected))}), got {stacks.shape}")
        batch = np.ascontiguousarray(stacks, dtype=np.uint8)
        out = _infer(self.engine, self.timer, {s.input.name: batch})
        err = out[s.output.name]
        raw, boxes = worst_cell(err, s.patch, s.patch_stride, s.height, s.width, masks, s.pool_fraction)
        maps = np.array(err, dtype=np.float32)  # a copy: an engine may reuse its output buffer
        ignore = _ignored(masks, s.patch, s.patch_stride, s.height, s.width, (err.shape[1], err.shape[2]))
        if ignore is not None:
            maps[ignore] = 0.0
        self.last_maps = maps
        emb = out[s.embedding.name].astype(np.float32, copy=False) if s.embedding is not None else None
        return raw, boxes, emb

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        return self.spec.calibration.calibrate(raw)


class TemporalScorer:
    """Worst-cell next-embedding prediction error over windows of the last ``window`` video embeddings.

    Frames the motion gate skipped have no embedding (NaN rows): nothing moved, so each takes the embedding before
    it (the first valid one at the start of a window); a window without any scores the calibration floor.
    """

    def __init__(self, package: ModelPackage, engine: Engine) -> None:
        if package.temporal is None or package.video is None:
            raise ModelPackageError(f"model package {package.package_id} has no temporal model")
        self.spec: TemporalModelSpec = package.temporal
        self.video = package.video
        self.engine = engine
        _check_engine(engine, self.spec)
        self.floor = float(self.spec.calibration.values[0])
        self.timer: Timer | None = None
        # per-cell errors (B, eh, ew) of the last ``score``, masked cells and windows without any embedding 0
        self.last_maps: np.ndarray | None = None

    @property
    def window(self) -> int:
        return self.spec.window

    def score(self, windows: np.ndarray, masks: Masks | None = None) -> tuple[np.ndarray, list[Box | None]]:
        """``windows`` float32 (B, window, C, eh, ew), oldest first → raw scores (B,) and worst-cell boxes;
        ``masks``: each window's camera's regions, whose cells count for nothing."""
        s = self.spec
        expected = (s.window, *s.embedding_shape)
        if windows.ndim != 5 or windows.shape[1:] != expected:
            raise ValueError(f"temporal windows must be (B, {', '.join(map(str, expected))}), got {windows.shape}")
        x, usable = fill_gaps(np.asarray(windows, dtype=np.float32))
        n = len(x)
        raw = np.full(n, self.floor, dtype=np.float32)
        boxes: list[Box | None] = [None] * n
        idx = np.flatnonzero(usable)
        _, eh, ew = s.embedding_shape
        self.last_maps = np.zeros((n, eh, ew), dtype=np.float32)
        if len(idx):
            err = _infer(self.engine, self.timer, {s.input.name: np.ascontiguousarray(x[idx])})[s.output.name]
            _, eh, ew = err.shape  # cells tile the frame: a cell is a 1x1 "patch" of an eh x ew grid
            part = [masks[i] for i in idx.tolist()] if masks else None
            r, b = worst_cell(err, 1, 1, eh, ew, part)
            self.last_maps[idx] = err
            ignore = _ignored(part, 1, 1, eh, ew, (eh, ew))
            if ignore is not None:
                self.last_maps[idx] = np.where(ignore, 0.0, err)
            raw[idx] = r
            for i, box in zip(idx.tolist(), b, strict=True):
                boxes[i] = box
        return raw, boxes

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        return self.spec.calibration.calibrate(raw)


def fill_gaps(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward-fill NaN rows of each window (then back-fill its leading ones); returns the filled windows and
    which windows had any embedding at all."""
    b, t = windows.shape[:2]
    valid = ~np.isnan(windows.reshape(b, t, -1)).any(axis=2)  # (B, T)
    usable = valid.any(axis=1)
    if valid.all():
        return windows, usable
    out = windows.copy()
    for i in np.flatnonzero(usable & ~valid.all(axis=1)).tolist():
        rows = np.flatnonzero(valid[i])
        # index of the latest valid row at or before each step; the first valid row before it
        src = np.maximum.accumulate(np.where(valid[i], np.arange(t), -1))
        src = np.where(src < 0, rows[0], src)
        out[i] = windows[i, src]
    return out, usable


def worst_cell(
    err: np.ndarray,
    patch: int,
    stride: int,
    height: int,
    width: int,
    masks: Masks | None = None,
    pool_fraction: float = 0.0,
) -> tuple[np.ndarray, list[Box | None]]:
    """The worst cell of each error map (B, gh, gw) whose cells are ``patch`` squares every ``stride`` pixels of a
    ``height`` x ``width`` frame: its box in fractions of the frame, and a value (B,) float32: the worst cell's, or
    with ``pool_fraction`` the mean of that fraction of the cells, the worst ones (a person or a bike covers many
    patches; the mean of the worst few is steadier than the maximum of thousands). Cells whose centre lies in the
    item's ``masks`` regions are left out; a map with none left scores 0, without a box."""
    flat = err.reshape(err.shape[0], -1)
    ignore = _ignored(masks, patch, stride, height, width, (err.shape[1], err.shape[2]))
    if ignore is not None:
        flat = np.where(ignore.reshape(flat.shape), -np.inf, flat)
    worst = flat.argmax(axis=1)
    raw = flat[np.arange(len(flat)), worst].astype(np.float32)
    if pool_fraction > 0:
        k = max(1, math.ceil(pool_fraction * flat.shape[1]))
        ok = np.isfinite(raw)  # maps with a cell left
        if ok.any():
            top = np.partition(flat[ok], flat.shape[1] - k, axis=1)[:, -k:]
            # masked cells (-inf) among the top k are left out of the mean
            raw[ok] = np.nanmean(np.where(np.isfinite(top), top, np.nan), axis=1)
    gw = err.shape[2]
    boxes: list[Box | None] = []
    for k, idx in enumerate(worst.tolist()):
        if not np.isfinite(raw[k]):  # every cell masked
            raw[k] = 0.0
            boxes.append(None)
            continue
        row, col = divmod(idx, gw)
        x0, y0 = col * stride, row * stride
        boxes.append((x0 / width, y0 / height, min(x0 + patch, width) / width, min(y0 + patch, height) / height))
    return raw, boxes


class AudioScorer:
    """A window's raw score from the audio graph's per-frame values (``pipeline.models.audio``) over its scored
    span (after ``skip_frames``, the GRU's context): their mean (``span_mean_excess``) or the mean of the top k."""

    def __init__(self, package: ModelPackage, engine: Engine) -> None:
        if package.audio is None:
            raise ModelPackageError(f"model package {package.package_id} has no audio model")
        self.spec: AudioModelSpec = package.audio
        self.engine = engine
        self._features = self.spec.features.config()
        hop = max(1, round(self.spec.hop_s * self.spec.sample_rate))  # as the readers cut windows
        self._log_mel = OverlapLogMel(self._features, self.spec.n_samples, hop)
        self._mean = np.asarray(self.spec.norm_mean, dtype=np.float32)
        self._inv_std = 1.0 / np.asarray(self.spec.norm_std, dtype=np.float32)
        self.timer: Timer | None = None
        _check_engine(engine, self.spec)

    @property
    def n_samples(self) -> int:
        return self.spec.n_samples

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    def features(self, windows: np.ndarray) -> np.ndarray:
        """Normalised log-mel frames (B, T, n_mels) of (B, n_samples) windows: what the graph takes. Exactly
        ``log_mel``'s; the frames a window shares with a recent one (hop < window) are not computed again."""
        return (self._log_mel(windows) - self._mean) * self._inv_std

    def score(self, windows: np.ndarray) -> np.ndarray:
        """``windows`` float32 (B, n_samples) in [-1, 1] → raw scores (B,) float32."""
        if windows.ndim != 2 or windows.shape[1] != self.n_samples:
            raise ValueError(f"audio windows must be (B, {self.n_samples}), got {windows.shape}")
        mel = self.features(windows.astype(np.float32, copy=False))
        err = _infer(self.engine, self.timer, {self.spec.input.name: np.ascontiguousarray(mel, dtype=np.float32)})[
            self.spec.output.name
        ]
        scored = err[:, self.spec.skip_frames :]
        if self.spec.score == "span_mean_excess":
            return scored.mean(axis=1).astype(np.float32)
        return topk_mean(scored, self.spec.top_k)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        return self.spec.calibration.calibrate(raw)


class MotionGate:
    """Says which stacks have nothing moving in them, so the video CNN can skip them.

    Each frame of a stack is reduced to the means of ``block`` x ``block`` squares; a stack moves when some
    square's mean changes by at least ``threshold`` luma levels between two consecutive frames anywhere in the
    stack (the whole context, not just the newest pair: the first still frame after motion is still scored, since
    the predictor expects the motion to go on). Block means average sensor noise down (σ 3 levels per pixel is
    ~0.75 per 4x4 mean) while a 2x3-pixel object at model resolution still moves its block's mean by several
    levels. It costs a small fraction of the CNN (docs/measurements.md). ``threshold`` 0 turns the gate off.
    """

    def __init__(self, threshold: float = 5.0, block: int = 4) -> None:
        if threshold < 0 or block < 1:
            raise ValueError("motion gate threshold must be >= 0 and block >= 1")
        self.threshold = float(threshold)
        self.block = block

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def activity(self, stacks: np.ndarray, masks: Masks | None = None) -> np.ndarray:
        """Largest block-mean change between consecutive frames of each stack, (B,) float32 luma levels; blocks whose
        centre lies in the stack's ``masks`` regions are left out."""
        b, t, h, w = stacks.shape
        k = self.block
        hh, ww = h // k * k, w // k * k
        # block sums as k explicit adds per axis: ~10x faster than numpy's reductions over small axes; in int16
        # while a block's sum fits (blocks up to 11x11), half the memory traffic of int32, and the uint8 pixels are
        # added as they are instead of being converted first
        small = stacks.dtype == np.uint8 and k * k * 255 <= np.iinfo(np.int16).max
        acc: type[np.signedinteger[Any]] = np.int16 if small else np.int32
        x = stacks[:, :, :hh, :ww].reshape(b, t, hh, ww // k, k)
        cols = x[..., 0].astype(acc)
        for i in range(1, k):
            cols += x[..., i]
        rows = cols.reshape(b, t, hh // k, k, ww // k)
        sums = rows[:, :, :, 0].copy()
        for i in range(1, k):
            sums += rows[:, :, :, i]
        change = np.abs(np.diff(sums, axis=1))
        ignore = _ignored(masks, k, k, h, w, (hh // k, ww // k))
        if ignore is not None:
            change *= ~ignore[:, None]
        out: np.ndarray = (change.max(axis=(1, 2, 3)) / float(k * k)).astype(np.float32)
        return out

    def moving(self, stacks: np.ndarray, masks: Masks | None = None) -> np.ndarray:
        """(B,) bool: which stacks need the CNN (motion in a stack's ``masks`` regions does not count)."""
        if not self.enabled:
            return np.ones(len(stacks), dtype=bool)
        moving: np.ndarray = self.activity(stacks, masks) >= self.threshold
        return moving


def topk_mean(err: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values along the last axis: a short loud event counts, one glitchy frame less."""
    k = max(1, min(k, err.shape[-1]))
    top = np.partition(err, err.shape[-1] - k, axis=-1)[..., -k:]
    return top.mean(axis=-1).astype(np.float32)
