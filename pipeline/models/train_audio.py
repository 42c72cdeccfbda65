"""The audio model's training loop: the next-frame predictor (``pipeline.models.audio``) learns log-mel frames of
normal sound; ``heldout_audio`` / ``seen_audio`` give the windows its calibration scores
(``pipeline.models.calibrate``)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from pipeline.features import LogMelConfig, log_mel
from pipeline.models.audio import AudioPredictor
from pipeline.models.budget import BudgetedSteps
from pipeline.models.footage import NormalInput
from pipeline.models.recipe import AUDIO_HEAD, SAMPLE_RATE, WARMUP_FRAMES, heldout_start, train_end


def _split_audio(x: NormalInput) -> tuple[np.ndarray, np.ndarray]:
    """The audio trained on and the held-out audio of an input (the gap between them in neither)."""
    return x.audio[: train_end(x, len(x.audio))], x.audio[heldout_start(x, len(x.audio)) :]


def train_audio(
    inputs: Sequence[NormalInput],
    seconds: float,
    *,
    seed: int,
    progress: bool,
    batch: int = 32,
    crop: int = 200,
) -> tuple[AudioPredictor, np.ndarray, np.ndarray, dict[str, Any]]:
    rng = np.random.default_rng(seed + 1)
    torch.manual_seed(seed + 1)
    cfg = LogMelConfig(sample_rate=SAMPLE_RATE)
    mels = [log_mel(_split_audio(x)[0], cfg) for x in inputs]
    mels = [m for m in mels if len(m) > crop + 1]
    if not mels:
        raise ValueError("too little normal audio to train on")
    allm = np.concatenate(mels)
    mean = allm.mean(axis=0)
    std = np.maximum(allm.std(axis=0), 1e-3)
    norm = [((m - mean) / std).astype(np.float32) for m in mels]
    weights = np.array([len(m) - crop for m in norm], dtype=np.float64)
    weights /= weights.sum()
    model = AudioPredictor(cfg.n_mels, hidden=64, head=AUDIO_HEAD)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses: list[float] = []
    per_epoch = max(20, int(sum(len(m) for m in norm) / (batch * crop)))
    # time alone ends the run, at the end of a pass (``per_epoch`` batches)
    run = BudgetedSteps(opt, 3e-3, seconds, max_steps=None, desc="audio", progress=progress, clip=1.0)
    while run.fraction() < 1.0:
        epoch_loss = 0.0
        for _ in range(per_epoch):
            run.next()
            src = rng.choice(len(norm), size=batch, p=weights)
            xs = []
            for s in src:
                o = rng.integers(0, len(norm[s]) - crop)
                xs.append(norm[s][o : o + crop])
            xb = torch.from_numpy(np.stack(xs))
            # level changes of +-3 dB: an offset in the log domain
            xb = xb + (torch.rand(batch, 1, 1) - 0.5) * (2 * math.log(10**0.3)) / torch.from_numpy(std)
            epoch_loss += run.step(model, model.loss(xb)[:, WARMUP_FRAMES:].mean())
        losses.append(epoch_loss / per_epoch)
        run.note(loss=f"{losses[-1]:.4f}", epoch=len(losses))
    run.close()
    model.eval()
    return (
        model,
        mean,
        std,
        {
            "epoch_losses": [round(v, 6) for v in losses],
            "steps": run.steps,
            "frames": int(sum(len(m) for m in norm)),
            "seconds": run.elapsed_s,
        },
    )


def heldout_audio(inputs: Sequence[NormalInput], n_samples: int, hop: int) -> Iterator[np.ndarray]:
    for x in inputs:
        held = _split_audio(x)[1]
        starts = np.arange(0, len(held) - n_samples + 1, hop)
        for k in range(0, len(starts), 64):
            yield np.stack([held[s : s + n_samples] for s in starts[k : k + 64]])


def seen_audio(inputs: Sequence[NormalInput], n_samples: int, n: int) -> Iterator[np.ndarray]:
    """Batches of about ``n`` windows spread evenly over the audio the model trained on."""
    seen = [_split_audio(x)[0] for x in inputs]
    total = sum(max(0, len(a) - n_samples) for a in seen)
    hop = max(1, total // max(n, 1))
    for a in seen:
        starts = np.arange(0, len(a) - n_samples + 1, hop)
        for k in range(0, len(starts), 64):
            yield np.stack([a[s : s + n_samples] for s in starts[k : k + 64]])
