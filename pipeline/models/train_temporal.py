"""The temporal model's training loop: the GRU (``pipeline.models.temporal``) learns how each cell's embedding of
the video model moves over 2 s windows of normal footage; ``heldout_temporal`` / ``seen_temporal`` give the
windows its calibration scores (``pipeline.models.calibrate``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from pipeline.models.budget import BudgetedSteps
from pipeline.models.footage import NormalInput
from pipeline.models.recipe import (
    CONTEXT,
    TEMPORAL_COPY_WEIGHT,
    TEMPORAL_GLOBAL_WEIGHT,
    TEMPORAL_RELATIVE,
    TEMPORAL_SCORE_STEPS,
    TEMPORAL_WINDOW,
    _in_batches,
    _spread,
    heldout_start,
    train_end,
)
from pipeline.models.temporal import TemporalPredictor

# The temporal model stops after this many passes over its 2 s training windows, or at its share of the budget: at
# ~50 steps a second that share passes over a minute of footage a hundred times, and learns it by heart
# (docs/decisions/0002).
MAX_TEMPORAL_EPOCHS = 25


def _window_indices(n: int, lo: int, hi: int, step: int) -> np.ndarray:
    """Last frames j in [lo, hi) of temporal windows whose every embedding (frames j-(W-1)*step .. j, each with
    its full video context) lies in [lo, hi)."""
    first = max(lo, CONTEXT * step) + (TEMPORAL_WINDOW - 1) * step
    return np.arange(first, hi) if hi > first else np.zeros(0, np.int64)


def _windows(emb: np.ndarray, idx: np.ndarray, step: int) -> np.ndarray:
    offsets = np.arange(-(TEMPORAL_WINDOW - 1), 1) * step
    return emb[idx[:, None] + offsets[None, :]]  # (B, W, C, eh, ew)


def _new_model(inputs: Sequence[NormalInput], embeddings: Sequence[np.ndarray]) -> TemporalPredictor:
    """An untrained temporal model for ``embeddings``, its input normalised by their trained-on part."""
    _, c, eh, ew = embeddings[0].shape
    model = TemporalPredictor(
        c,
        eh,
        ew,
        hidden=32,
        window=TEMPORAL_WINDOW,
        score_steps=TEMPORAL_SCORE_STEPS,
        copy_weight=TEMPORAL_COPY_WEIGHT,
        global_weight=TEMPORAL_GLOBAL_WEIGHT,
        relative=TEMPORAL_RELATIVE,
    )
    used = np.concatenate([e[CONTEXT * x.step : train_end(x, len(e))] for e, x in zip(embeddings, inputs, strict=True)])
    model.mean.copy_(torch.from_numpy(used.mean(axis=(0, 2, 3))).view(1, 1, c, 1, 1))
    model.std.copy_(torch.from_numpy(np.maximum(used.std(axis=(0, 2, 3)), 1e-4)).view(1, 1, c, 1, 1))
    return model


def train_temporal(
    inputs: Sequence[NormalInput],
    embeddings: Sequence[np.ndarray],
    seconds: float,
    *,
    seed: int,
    progress: bool,
    batch: int = 16,
) -> tuple[TemporalPredictor, dict[str, Any]]:
    rng = np.random.default_rng(seed + 2)
    torch.manual_seed(seed + 2)
    train_idx = [_window_indices(len(x.frames), 0, train_end(x, len(x.frames)), x.step) for x in inputs]
    pool = [(i, j) for i, idx in enumerate(train_idx) for j in idx.tolist()]
    if len(pool) < batch:
        raise ValueError(f"too little normal video to train the temporal model ({len(pool)} windows)")
    model = _new_model(inputs, embeddings)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses: list[float] = []
    run = BudgetedSteps(
        opt,
        3e-3,
        seconds,
        max_steps=max(1, round(MAX_TEMPORAL_EPOCHS * len(pool) / batch)),
        desc="temporal",
        progress=progress,
        clip=1.0,
    )
    done = False
    while not done:
        epoch_loss, n = 0.0, 0
        for _ in range(50):
            if not run.next():
                done = True
                break
            picks = rng.integers(0, len(pool), batch)
            xb = np.stack(
                [_windows(embeddings[pool[p][0]], np.array([pool[p][1]]), inputs[pool[p][0]].step)[0] for p in picks]
            )
            loss = model.step_errors(torch.from_numpy(xb))[:, 2:].mean()  # after a short warm-up of the GRU
            epoch_loss += run.step(model, loss)
            n += 1
        if n:
            losses.append(epoch_loss / n)
            run.note(loss=f"{losses[-1]:.4f}")
    run.close()
    model.eval()
    errs = []
    with torch.inference_mode():
        for i, idx in enumerate(train_idx):
            sub = idx[::2]
            for k in range(0, len(sub), 64):
                errs.append(
                    model.cell_errors(torch.from_numpy(_windows(embeddings[i], sub[k : k + 64], inputs[i].step)))
                )
    model.fit_scale(torch.cat(errs))
    return model, {
        "epoch_losses": [round(v, 6) for v in losses],
        "steps": run.steps,
        "epochs": round(run.steps * batch / len(pool), 2),
        "stopped_by": run.stopped_by,
        "windows": len(pool),
        "seconds": run.elapsed_s,
    }


def heldout_temporal(inputs: Sequence[NormalInput], embeddings: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    for x, emb in zip(inputs, embeddings, strict=True):
        n = len(x.frames)
        idx = _window_indices(n, heldout_start(x, n), n, x.step)
        for k in range(0, len(idx), 64):
            yield _windows(emb, idx[k : k + 64], x.step)


def seen_temporal(inputs: Sequence[NormalInput], embeddings: Sequence[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """Batches of about ``n`` windows spread evenly over the part of ``inputs`` the model trained on."""
    idx = [_window_indices(len(x.frames), 0, train_end(x, len(x.frames)), x.step) for x in inputs]
    for x, emb, i in zip(inputs, embeddings, _spread(idx, n), strict=True):
        for b in _in_batches(i):
            yield _windows(emb, b, x.step)
