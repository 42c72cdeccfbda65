"""The video model's training loop: the future-frame predictor (``pipeline.models.video``) learns from stacks of
normal frames, then fits its patch error scale; ``heldout_video`` / ``seen_video`` give the stacks its calibration
scores (``pipeline.models.calibrate``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.models.budget import BudgetedSteps
from pipeline.models.footage import NormalInput
from pipeline.models.recipe import (
    CONTEXT,
    COPY_WEIGHT,
    DECODER,
    HEIGHT,
    OVERSAMPLE,
    PATCH,
    PATCH_STRIDE,
    SHAKE_WEIGHT,
    UNIFORM_SCALE,
    WIDTH,
    _in_batches,
    _spread,
    heldout_start,
    train_end,
)
from pipeline.models.video import VideoPredictor

# The video model stops after this many passes over its training sequences, or at its time budget if that comes
# first: few minutes of footage are otherwise passed over hundreds of times and learnt by heart (docs/decisions/0002).
# Long footage is passed over a few times within the budget: unaffected.
MAX_VIDEO_EPOCHS = 50


def _stack_indices(n: int, lo: int, hi: int, step: int = OVERSAMPLE) -> np.ndarray:
    """Indices (frame being scored) in [lo, hi) whose whole context lies in [lo, hi)."""
    first = lo + CONTEXT * step
    return np.arange(first, hi) if hi > first else np.zeros(0, np.int64)


def _gather(frames: np.ndarray, idx: np.ndarray, step: int = OVERSAMPLE) -> np.ndarray:
    offsets = np.arange(-CONTEXT, 1) * step
    return frames[idx[:, None] + offsets[None, :]]  # (B, CONTEXT+1, H, W)


def _augment_video(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Lighting drift (gain and offset changing across the stack) and sensor noise, in luma levels."""
    b = batch.shape[0]
    steps = torch.linspace(0, 1, batch.shape[1]).view(1, -1, 1, 1)
    gain0 = 0.75 + 0.5 * torch.rand(b, 1, 1, 1, generator=gen)
    gain1 = gain0 * (1 + 0.06 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5))
    off0 = 30 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    off1 = off0 + 8 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    gain = gain0 + (gain1 - gain0) * steps
    off = off0 + (off1 - off0) * steps
    sigma = 3.0 * torch.rand(b, 1, 1, 1, generator=gen)
    noise = torch.randn(batch.shape, generator=gen) * sigma
    return (batch * gain + off + noise).clamp(0, 255)


def train_video(
    inputs: Sequence[NormalInput], seconds: float, *, seed: int, progress: bool, batch: int = 16
) -> tuple[VideoPredictor, dict[str, Any], list[np.ndarray]]:
    """The video predictor, a report, and the embeddings of every frame of each input (what the temporal model
    learns from; zeros before a frame's context is complete)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    frames = [x.frames for x in inputs]
    steps_of = [x.step for x in inputs]
    train_idx = [_stack_indices(len(x.frames), 0, train_end(x, len(x.frames)), x.step) for x in inputs]
    pool = [(i, j) for i, idx in enumerate(train_idx) for j in idx.tolist()]
    if len(pool) < batch:
        raise ValueError(f"too little normal video to train on ({len(pool)} sequences)")
    model = VideoPredictor(
        CONTEXT,
        channels=16,
        patch=PATCH,
        stride=PATCH_STRIDE,
        height=HEIGHT,
        width=WIDTH,
        embedding=1,
        copy_weight=COPY_WEIGHT,
        decoder=DECODER,
        shake_weight=SHAKE_WEIGHT,
    )
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    losses: list[float] = []
    run = BudgetedSteps(
        opt,
        2e-3,
        seconds,
        max_steps=max(1, round(MAX_VIDEO_EPOCHS * len(pool) / batch)),
        desc="video",
        progress=progress,
    )
    done = False
    while not done:
        order = rng.permutation(len(pool))
        epoch_loss, n = 0.0, 0
        for k in range(0, len(order) - batch + 1, batch):
            if not run.next():
                done = True
                break
            picks = order[k : k + batch]
            sample = np.stack(
                [_gather(frames[pool[p][0]], np.array([pool[p][1]]), steps_of[pool[p][0]])[0] for p in picks]
            )
            xb = _augment_video(torch.from_numpy(sample).float(), gen)
            epoch_loss += run.step(model, model.error_map(xb).mean())
            n += 1
            if run.steps % 20 == 0:
                run.note(loss=f"{epoch_loss / n:.4f}", epoch=len(losses) + 1)
        if n:
            losses.append(epoch_loss / n)
    run.close()
    model.eval()
    t = time.monotonic()
    embeddings = _patch_statistics(model, inputs, progress=progress)
    return (
        model,
        {
            "epoch_losses": [round(v, 6) for v in losses],
            "steps": run.steps,
            "epochs": round(run.steps * batch / len(pool), 2),
            "stopped_by": run.stopped_by,
            "patch_scale_s": round(time.monotonic() - t, 1),
            "sequences": len(pool),
            "seconds": run.elapsed_s,
        },
        embeddings,
    )


def _patch_statistics(model: VideoPredictor, inputs: Sequence[NormalInput], *, progress: bool) -> list[np.ndarray]:
    """One pass over every sequence: the per-patch normal error level fitted on the training part, and the
    embeddings of every frame of each input returned (what the temporal model learns from; zeros before a frame's
    context is complete)."""
    errs = []
    embeddings: list[np.ndarray] = []
    bar = tqdm(
        total=sum(len(x.frames) for x in inputs),
        desc="patch statistics",
        unit="frame",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )  # (a minute or two on long footage)
    with torch.inference_mode():
        for x in inputs:
            idx = _stack_indices(len(x.frames), 0, len(x.frames), x.step)
            emb = np.zeros(
                (len(x.frames), *model.embed(torch.zeros(1, CONTEXT + 1, HEIGHT, WIDTH)).shape[1:]), np.float32
            )
            cut = train_end(x, len(x.frames))
            for k in range(0, len(idx), 64):
                sub = idx[k : k + 64]
                err_map, e3 = model._run(torch.from_numpy(_gather(x.frames, sub, x.step)))
                emb[sub] = F.avg_pool2d(e3, 2).numpy()
                errs.append(model._patches(err_map)[torch.from_numpy(sub < cut)])
                bar.update(len(sub))
            bar.update(len(x.frames) - len(idx))  # the first frames of each input: context, not scored
            embeddings.append(emb)
    bar.close()
    model.fit_patch_scale(torch.cat(errs), uniform=UNIFORM_SCALE)
    return embeddings


def heldout_video(inputs: Sequence[NormalInput]) -> Iterator[np.ndarray]:
    """Batches of held-out stacks, every phase of the 5 fps sampling."""
    for x in inputs:
        n = len(x.frames)
        idx = _stack_indices(n, heldout_start(x, n), n, x.step)
        for k in range(0, len(idx), 64):
            yield _gather(x.frames, idx[k : k + 64], x.step)


def seen_video(inputs: Sequence[NormalInput], n: int) -> Iterator[np.ndarray]:
    """Batches of about ``n`` stacks spread evenly over the part of ``inputs`` the model trained on."""
    idx = [_stack_indices(len(x.frames), 0, train_end(x, len(x.frames)), x.step) for x in inputs]
    for x, i in zip(inputs, _spread(idx, n), strict=True):
        for b in _in_batches(i):
            yield _gather(x.frames, b, x.step)
